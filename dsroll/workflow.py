"""The core call behind each command: from its parsed flags to the value the CLI prints.

The CLI parses flags, calls one function here, prints the result and maps it to an exit
code; everything in between lives here: finding the project, rendering (at a git ref
for ``rollback --to-git``), checking flags against the environment before anything
talks to the cluster, refusing a dirty work tree, loading a saved plan and refusing it
when the cluster moved, and building the options a run is carried out with.

The cluster is reached through ``connect``, given by the CLI: the client's default
context comes from the environment, so it can only be made once that is loaded.
Warnings found on the way go to stderr as they are found, before any long wait.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsroll import output
from dsroll.diff import DiffReport, against_git, against_live
from dsroll.errors import DsrollError, InputError
from dsroll.gitsource import Project, locate
from dsroll.kube import Kube
from dsroll.masking import compile_mask
from dsroll.nodes import NodeReport, classify_nodes
from dsroll.plan import Plan, parse_steps, resolve_partition
from dsroll.planfile import plan_from_json, plan_to_json
from dsroll.render import RenderResult, load_environment, render_environment
from dsroll.rendered import FileChange, check_neighbours, sync
from dsroll.rollout import inspect, requests
from dsroll.rollout.observe import Scope, drift_since, observe, replacements_for_diff, who
from dsroll.rollout.outcome import RunOptions, RunSummary, Target
from dsroll.rollout.rollback import rollback_plan
from dsroll.rollout.state import RunKind

Connect = Callable[[str | None], Kube]
"""Makes the cluster client; its argument is the environment's context, the default when no --context is given."""

Ask = Callable[[str], bool]
"""Asks the operator a yes/no question on a TTY; ``None`` where there is no one to ask."""


# --- render, diff, nodes ---------------------------------------------------------------


def _render(env_arg: str, namespace: str | None) -> tuple[Project, RenderResult]:
    project = locate(env_arg)
    env = load_environment(project.source, project.env_path, namespace)
    return project, render_environment(env, project.source)


def render(env_arg: str, namespace: str | None, *, check: bool) -> tuple[RenderResult, tuple[FileChange, ...]]:
    """Render and write (with ``check``: only compare) the rendered files; the render and each file's change."""
    project, result = _render(env_arg, namespace)
    if project.repo is not None and project.repo.bare:
        raise DsrollError(f"{project.root} is a bare repository: render needs a work tree to write to")
    synced = sync(project.root, result, check=check)
    return dataclasses.replace(result, warnings=(*result.warnings, *synced.warnings)), synced.changes


def diff(env_arg: str, namespace: str | None, against: str, *, show_secrets: bool, connect: Connect) -> DiffReport:
    """A fresh render against the live cluster (with the orphan replacements it implies) or git."""
    project, result = _render(env_arg, namespace)
    mask = None if show_secrets else compile_mask(result.env.mask_env)
    if against == "live":
        kube = connect(result.env.context)
        report = against_live(result.env, result.variants, kube, mask=mask)
        found = replacements_for_diff(kube, result.env, result.variants, report)
        return dataclasses.replace(report, replacements=tuple(found))
    if against == "git" or against.startswith("git:"):
        ref = against.partition(":")[2] or "HEAD"
        for warning in check_neighbours(result.env, project.source):
            output.warn(warning)
        return against_git(result.env, result.variants, project.at(ref), ref, mask)
    raise DsrollError(f"--against {against!r}: use live, git or git:REF")


def nodes(env_arg: str, namespace: str | None, connect: Connect) -> NodeReport:
    """Per live node, every class that matched and the one that won."""
    project = locate(env_arg)
    environment = load_environment(project.source, project.env_path, namespace)
    kube = connect(environment.context)
    return classify_nodes(environment, kube.nodes.list())


# --- plan and run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A plan ready to be carried out: the client, the plan, how to run it, and rollback targets."""

    kube: Kube
    plan: Plan
    options: RunOptions
    targets: Mapping[tuple[str, str], Target] | None = None


def check_steps(steps: str | None, partition: str | None) -> tuple[str, ...] | None:
    """Check --steps and --partition before anything else happens; the parsed steps."""
    resolve_partition(partition, 0)
    return parse_steps(steps) if steps else None


def load_plan(path: Path) -> Plan:
    """A plan saved by ``plan --out``; a file that cannot be read or is not a plan is bad input."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the plan: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not a dsroll plan (not UTF-8 text)", str(path)) from None
    return plan_from_json(text, str(path))


def commit_to_record(project: Project, *, allow_dirty: bool, dry_run: bool) -> str | None:
    """The commit a run records; a dirty work tree is refused, since what it deploys is not in git.

    ``--allow-dirty`` accepts it, and a dry run changes nothing, so it does too.
    """
    if project.is_dirty() and not (allow_dirty or dry_run):
        raise InputError(
            f"the git work tree at {project.root} has uncommitted changes: commit them (a rollout records its commit) "
            "or pass --allow-dirty"
        )
    return project.head_commit()


def dry_run_json(plan: Plan, operation: RunKind, api_requests: int) -> dict[str, Any]:
    """What ``--dry-run -o json`` prints: a run summary that ran nothing, with the plan it would carry out."""
    summary = RunSummary(plan.environment, operation.value, [], api_requests, 0, dry_run=True)
    return {**summary.to_json(), "plan": plan_to_json(plan, manifests=False)}


def _prepare(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> tuple[Project, RenderResult, Kube]:
    """Render and check every flag against the environment before anything talks to the cluster."""
    project, result = _render(env_arg, namespace)
    scope.check(result.env)
    for warning in result.warnings:
        output.warn(warning)
    return project, result, connect(result.env.context)


def _options(kube: Kube, commit: str | None, ask: Ask | None, **kwargs: Any) -> RunOptions:
    return RunOptions(who=who(kube), commit=commit, interactive=ask is not None, ask=ask, **kwargs)


def plan(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    partition: str | None,
    steps: str | None,
    save_to: Path | None = None,
) -> Plan:
    """What a rollout would do, from live state; saved (with manifests) to ``save_to`` for ``rollout --plan``."""
    step_specs = check_steps(steps, partition)
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    found = observe(
        kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=project.head_commit()
    )
    if save_to is not None:
        save_to.write_text(json.dumps(plan_to_json(found), indent=2) + "\n")
    return found


def rollout(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    steps: str | None,
    partition: str | None,
    saved: Path | None,
    allow_dirty: bool,
    dry_run: bool,
    yes: bool,
    ask: Ask | None,
) -> Run:
    """The plan a rollout carries out: ``saved`` if given and the cluster has not moved since, else a fresh one."""
    step_specs = check_steps(steps, partition)
    saved_plan = load_plan(saved) if saved is not None else None
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    commit = commit_to_record(project, allow_dirty=allow_dirty, dry_run=dry_run)
    if saved_plan is not None:
        drifted = drift_since(kube, saved_plan)
        if drifted:
            raise InputError(f"the cluster moved since the plan was made, nothing applied: {'; '.join(drifted)}")
        the_plan = saved_plan
    else:
        the_plan = observe(
            kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=commit
        )
    return Run(kube, the_plan, _options(kube, commit, ask, yes=yes, steps=step_specs))


def resume(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    allow_dirty: bool,
    yes: bool,
    ask: Ask | None,
) -> Run:
    """The plan that continues a paused or interrupted rollout, approving its pending manual pause."""
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    commit = commit_to_record(project, allow_dirty=allow_dirty, dry_run=False)
    the_plan = observe(kube, result.env, result.variants, scope, commit=commit)
    return Run(kube, the_plan, _options(kube, commit, ask, approve=True, yes=yes))


def rollback(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    to_revision: int | None,
    to_git: str | None,
    yes: bool,
    ask: Ask | None,
) -> Run:
    """The plan back to the previous revision, revision ``to_revision``, or the render of git ref ``to_git``."""
    if to_revision is not None and to_git is not None:
        raise InputError("--to-revision and --to-git: give one of them")
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    manifests, commit = None, None
    if to_git is not None:
        source = project.at(to_git)
        old = render_environment(load_environment(source, project.env_path, namespace), source)
        manifests = {v.key: v.manifest for v in old.variants}
        commit = source.commit.hexsha
    base = observe(kube, result.env, result.variants, scope, commit=project.head_commit())
    the_plan, targets = rollback_plan(kube, base, to_revision=to_revision, manifests=manifests)
    return Run(kube, the_plan, _options(kube, commit, ask, operation=RunKind.rollback, yes=yes), targets)


# --- status, history, pause, abort ------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Rows about the scoped variants of one environment, as ``status`` and ``history`` print them."""

    environment: str
    variants: Sequence[Mapping[str, Any]]
    replacements: Sequence[Mapping[str, Any]] = ()


def _scoped(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> tuple[str, list[Any], Kube]:
    """The environment's name, the variants in scope, and a client for its cluster."""
    _, result = _render(env_arg, namespace)
    scope.check(result.env)
    return result.env.name, scope.select(result.variants), connect(result.env.context)


def status(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> Report:
    """Progress per variant, and the latest orphan replacement of each workload."""
    name, variants, kube = _scoped(env_arg, namespace, scope, connect)
    found = inspect.replacement_status(kube, variants)
    return Report(name, inspect.status(kube, variants), found)


def history(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> Report:
    """The ControllerRevisions of each variant."""
    name, variants, kube = _scoped(env_arg, namespace, scope, connect)
    return Report(name, inspect.history(kube, variants))


def request(action: str, env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> list[dict[str, Any]]:
    """``pause`` or ``abort`` every scoped variant's rollout in progress."""
    _, variants, kube = _scoped(env_arg, namespace, scope, connect)
    return requests.request(kube, variants, action, who(kube))
