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
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsroll import gitrevert, output, permissions, scaffold
from dsroll import namespaces as spaces
from dsroll.config import DNS_LABEL, Environment
from dsroll.diff import DiffReport, against_git, against_live
from dsroll.durations import flag_seconds
from dsroll.errors import DsrollError, InputError
from dsroll.gitsource import Project, locate
from dsroll.masking import compile_mask
from dsroll.nodes import NodeReport, classify_nodes
from dsroll.plan import Action, Plan, parse_steps, resolve_partition
from dsroll.planfile import plan_from_json, plan_to_json
from dsroll.render import RenderResult, Variant, load_environment, render_environment
from dsroll.rendered import FileChange, check_neighbours, sync
from dsroll.rollout import decide, inspect, requests, watch_status
from dsroll.rollout.applied import wait_applied
from dsroll.rollout.observe import Scope, drift_since, observe, record, replacements_for_diff, who
from dsroll.rollout.outcome import RunOptions, RunSummary, Target
from dsroll.rollout.restart import restart_plan
from dsroll.rollout.rollback import rollback_plan
from dsroll.rollout.state import RunKind
from dsroll.schema import schema_text

if TYPE_CHECKING:
    from dsroll.kube import Kube

Connect = Callable[[str | None], "Kube"]
"""Makes the cluster client; its argument is the environment's context, the default when no --context is given."""

Ask = Callable[[str], bool]
"""Asks the operator a yes/no question on a TTY; ``None`` where there is no one to ask."""


# --- render, diff, nodes ---------------------------------------------------------------


def namespaces(env: Environment) -> set[str]:
    """The namespaces the environment's workloads live in: where the RBAC preflight asks."""
    return {w.namespace for w in env.workloads}


def namespace_statuses(kube: Kube, env: Environment, variants: Sequence[Variant]) -> tuple[spaces.NamespaceStatus, ...]:
    """Each namespace ``variants`` live in, read once (a 403 stays an RBAC error, never "missing"),
    and what a rollout does about it."""
    wanted = spaces.wanted((v.namespace, v.workload) for v in variants)
    observed = {name: spaces.presence(kube.namespaces.get(name)) for name in wanted}
    return spaces.assess(observed, wanted, create=env.create_namespace)


def check_namespaces(
    kube: Kube, env: Environment, variants: Sequence[Variant], command: str, *, dry_run: bool
) -> tuple[spaces.NamespaceStatus, ...]:
    """Before a rollout writes anything: a missing namespace is refused (exit 2, with the command
    that creates it) unless ``cluster.createNamespace``, and then the caller must be allowed to
    create it; a namespace being deleted is refused either way."""
    found = namespace_statuses(kube, env, variants)
    refused = spaces.refusal(found, env.file)
    if refused:
        first = next(s.name for s in found if s.action is spaces.NamespaceAction.REFUSE)
        line = env.namespace_lines.get(first)
        raise InputError(f"{refused}; nothing was applied", env.file if line else None, line)
    if spaces.to_create(found) and not dry_run:
        permissions.preflight(kube, command, (), warn=output.warn, needed=permissions.CREATE_NAMESPACES)
    return found


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
        permissions.preflight(kube, "diff", namespaces(result.env), warn=output.warn)
        denied = permissions.dry_run_denied(kube, namespaces(result.env), warn=output.warn)
        if denied:
            first = next((c for c in denied if c.access.verb == "patch"), denied[0])  # what RBAC calls a dry-run
            output.warn(
                f"cannot {first}, which a server-side dry-run needs: comparing without it, only the fields "
                "the render sets (server defaults hidden; a field removed from the template does not show)"
            )
        spaces_found = namespace_statuses(kube, result.env, result.variants)
        report = against_live(result.env, result.variants, kube, mask=mask, server_dry_run=not denied)
        found = replacements_for_diff(kube, result.env, result.variants, report)
        return dataclasses.replace(report, replacements=tuple(found), namespaces=spaces_found)
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
    permissions.preflight(kube, "nodes", (), warn=output.warn)
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


def commit_to_record(project: Project, result: RenderResult, *, allow_dirty: bool, dry_run: bool) -> str | None:
    """The commit a run records; refused while what determines the render has uncommitted
    changes (the environment file, the templates it read, its rendered folder), since then
    what it deploys is not what that commit holds. Other files in the work tree do not count.

    ``--allow-dirty`` accepts it, and a dry run changes nothing, so it does too.
    """
    if not (allow_dirty or dry_run):
        changed = project.uncommitted([*result.inputs, result.env.rendered_dir])
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise InputError(
                f"uncommitted changes to what {result.env.file} renders from: {shown}: commit them "
                "(a rollout records its commit) or pass --allow-dirty"
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
    with permissions.preflight_beside(kube, "plan", namespaces(result.env), warn=output.warn):
        spaces_found = namespace_statuses(kube, result.env, scope.select(result.variants))
        commit = project.head_commit()
        found = observe(kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=commit)
    refused = spaces.refusal(spaces_found, result.env.file)  # said once the preflight let the plan through
    if refused:
        output.warn(f"a rollout would be refused: {refused}")
    found = dataclasses.replace(found, namespaces=spaces_found)
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
    wait: str | None = None,
    timeout: str | None = None,
) -> Run:
    """The plan a rollout carries out: ``saved`` if given and the cluster has not moved since, else a fresh one.

    ``wait`` (``--wait-applied``, "" or the run's commit): first wait, up to ``timeout``, until
    an external applier has applied the render (``rollout/applied.py``)."""
    step_specs = check_steps(steps, partition)
    seconds = _wait_flags(wait is not None, timeout, saved)
    saved_plan = load_plan(saved) if saved is not None else None
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    if wait is not None:
        _external_only("--wait-applied", scope.select(result.variants), result.env.file, external=True)
    command = "plan" if dry_run else "rollout"
    # everything up to the plan only reads: the RBAC preflight is asked meanwhile
    with permissions.preflight_beside(kube, command, namespaces(result.env), warn=output.warn) as allowed:
        spaces_found = check_namespaces(kube, result.env, scope.select(result.variants), "rollout", dry_run=dry_run)
        commit = commit_to_record(project, result, allow_dirty=allow_dirty, dry_run=dry_run)
        if wait is not None:
            allowed()  # not a long wait for an applier to end in a refusal
            progress = _progress(wait)
            wait_applied(
                kube, result.env, scope.select(result.variants), seconds, progress, commit=commit, waited=timeout or ""
            )
        if saved_plan is not None:
            drifted = drift_since(kube, saved_plan)
            if drifted:
                raise InputError(f"the cluster moved since the plan was made, nothing applied: {'; '.join(drifted)}")
            fresh = observe(kube, result.env, result.variants, scope, partition=None, steps=None, commit=commit)
            differs = decide.saved_plan_differs(saved_plan, fresh)
            if differs:
                raise InputError(
                    f"the plan does not match what {result.env.file} renders and plans now, nothing applied: "
                    + "; ".join(differs[:5])
                    + (f" (and {len(differs) - 5} more)" if len(differs) > 5 else ""),
                    str(saved),
                )
            the_plan = saved_plan
        else:
            the_plan = observe(
                kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=commit
            )
    the_plan = dataclasses.replace(the_plan, namespaces=spaces_found)
    _refuse_external_replacements(the_plan, env_arg)
    return Run(kube, the_plan, _options(kube, commit, ask, yes=yes, steps=step_specs))


def _wait_flags(wait: bool, timeout: str | None, saved: Path | None) -> float | None:
    """``--wait-applied [--timeout D]``, checked before anything talks to the cluster."""
    if timeout is not None and not wait:
        raise InputError("--timeout goes with --wait-applied")
    if wait and saved is not None:
        raise InputError("--wait-applied and --plan: a saved plan is refused once the applier has moved the cluster")
    try:
        return flag_seconds(timeout) if timeout is not None else None
    except ValueError as exc:
        raise InputError(f"--timeout: {exc}") from None


def _progress(mode: str) -> Callable[[str, list[dict[str, Any]]], None]:
    """How ``--wait-applied`` tells its progress: lines on stderr (``mode`` "json": JSON lines)."""

    def say(message: str, rows: list[dict[str, Any]]) -> None:
        if mode == "json":
            sys.stderr.write(json.dumps({"event": "wait-applied", "message": message, "pending": rows}) + "\n")
            sys.stderr.flush()
        else:
            output.info(message)

    return say


def _external_only(flag: str, variants: Sequence[Variant], file: str, *, external: bool) -> None:
    """Refuse ``flag`` (exit 2) for variants whose applier is not the one it is for."""
    wrong = sorted({v.workload for v in variants if (v.applier == "external") is not external})
    if not variants:
        raise InputError(f"{flag}: no variant in scope")
    if wrong:
        which = "dsroll (the default)" if external else "external"
        raise InputError(
            f"{flag} is for rollout.applier: {'external' if external else 'dsroll'}; in {file} "
            f"{', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} applier {which}: narrow it with --workload"
        )


def _refuse_external_replacements(plan: Plan, env_arg: str) -> None:
    """Under an external applier dsroll never deletes or creates the applier's DaemonSets."""
    external = {(vp.namespace, vp.workload) for vp in plan.variants if vp.policy.external}
    for group in plan.replacements:
        if (group.namespace, group.workload) in external:
            raise InputError(
                f"{group.namespace}/{group.workload}: {group.reason}: orphan replacement would delete and create "
                f"DaemonSets the applier owns; revert the change in git (`dsroll rollback {env_arg} --git-revert`), "
                "or move the objects with the applier; nothing was applied"
            )
    for vp in plan.variants:
        if vp.policy.external and vp.action is Action.ORPHAN_REPLACE:
            raise InputError(
                f"{vp.namespace}/{vp.name}: {vp.reason}: orphan replacement would delete and create DaemonSets "
                f"the applier owns; revert the change in git (`dsroll rollback {env_arg} --git-revert`), or move "
                "the objects with the applier; nothing was applied"
            )


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
    permissions.preflight(kube, "resume", namespaces(result.env), warn=output.warn)
    spaces_found = check_namespaces(kube, result.env, scope.select(result.variants), "resume", dry_run=False)
    commit = commit_to_record(project, result, allow_dirty=allow_dirty, dry_run=False)
    the_plan = observe(kube, result.env, result.variants, scope, commit=commit)
    the_plan = dataclasses.replace(the_plan, namespaces=spaces_found)
    _refuse_external_replacements(the_plan, env_arg)
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
    external = sorted({v.workload for v in scope.select(result.variants) if v.applier == "external"})
    if external:
        how = "--to-revision" if to_revision is not None else "--to-git" if to_git is not None else "a rollback"
        raise InputError(
            f"{how} would write the DaemonSets of {', '.join(external)}, which have rollout.applier: external: "
            f"the applier would undo it at its next sync; roll back in git: `dsroll rollback {env_arg} --git-revert`",
            result.env.file,
        )
    permissions.preflight(kube, "rollback", namespaces(result.env), warn=output.warn)
    _rollback_namespaces(kube, result.env, scope.select(result.variants))
    manifests, commit = None, None
    if to_git is not None:
        source = project.at(to_git)
        old = render_environment(load_environment(source, project.env_path, namespace), source)
        manifests = {v.key: v.manifest for v in old.variants}
        commit = source.commit.hexsha
    base = observe(kube, result.env, result.variants, scope, commit=project.head_commit())
    the_plan, targets = rollback_plan(kube, base, to_revision=to_revision, manifests=manifests)
    return Run(kube, the_plan, _options(kube, commit, ask, operation=RunKind.rollback, yes=yes), targets)


@dataclass(frozen=True)
class GitRevert:
    """``rollback --git-revert``: the revert commit, and the run that conducts the way back
    once the applier has applied it (``--wait-applied``), if asked for."""

    revert: gitrevert.Revert
    run: Run | None


def git_revert(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    push: bool,
    wait: str | None,
    timeout: str | None,
    yes: bool,
    ask: Ask | None,
) -> GitRevert:
    """One commit restoring this environment's inputs as of the stable commit; with ``push``
    pushed; with ``wait`` the way back conducted once the applier has applied it."""
    seconds = _wait_flags(wait is not None, timeout, None)
    project, result, kube = _prepare(env_arg, namespace, scope, connect)
    chosen = scope.select(result.variants)
    _external_only("--git-revert", chosen, result.env.file, external=True)
    if project.repo is None or project.repo.bare:
        raise InputError(f"{project.root} is not a git work tree: --git-revert makes a commit")
    permissions.preflight(kube, "rollback", namespaces(result.env), warn=output.warn)
    commits = []
    for variant in chosen:
        found = record(kube, kube.daemonsets.get(*variant.key), "external")
        if found.stable is not None and found.stable.commit:
            commits.append(found.stable.commit)
    if not commits:
        raise InputError(
            f"--git-revert: no stable commit recorded for {', '.join(v.name for v in chosen)} (a rollout under "
            "applier: external records it when it completes): revert in git yourself (docs/gitops.md)"
        )
    repo = project.repo
    for commit in set(commits):
        try:
            repo.commit(commit)
        except (ValueError, gitrevert.git.BadName):
            raise InputError(
                f"--git-revert: the stable commit {commit[:12]} is not in {project.root}: fetch it"
            ) from None
    stable = gitrevert.newest(commits, lambda a, b: repo.is_ancestor(a, b))
    done = gitrevert.revert(project, result, stable, namespace)
    if done.commit is not None and push:
        done = dataclasses.replace(done, pushed=gitrevert.push(project))
    if wait is None or done.commit is None:
        return GitRevert(done, None)
    if not push:
        output.warn("not pushed: waiting for an applier that reads this repository (push it for one that does not)")
    _, after, _ = _prepare(env_arg, namespace, scope, lambda _context: kube)
    wait_applied(kube, after.env, scope.select(after.variants), seconds, _progress(wait), commit=done.commit,
                 waited=timeout or "")  # fmt: skip
    the_plan = observe(kube, after.env, after.variants, scope, commit=done.commit)
    the_plan = dataclasses.replace(
        the_plan, namespaces=namespace_statuses(kube, after.env, scope.select(after.variants))
    )
    options = _options(kube, done.commit, ask, operation=RunKind.rollback, yes=yes)
    return GitRevert(done, Run(kube, the_plan, options))


def _rollback_namespaces(kube: Kube, env: Environment, variants: Sequence[Variant]) -> None:
    """A rollback never creates a namespace: one that is missing holds nothing to roll back
    (said, and the rest rolls back); one being deleted takes no Lease, so it is refused."""
    found = namespace_statuses(kube, env, variants)
    going = [s for s in found if s.presence is spaces.Presence.TERMINATING]
    if going:
        line = env.namespace_lines.get(going[0].name)
        raise InputError(f"{spaces.refusal(going, env.file)}; nothing was applied", env.file if line else None, line)
    for status in found:
        if status.presence is spaces.Presence.MISSING:
            output.warn(f"namespace {status.name} does not exist: nothing in it to roll back")


def restart(
    env_arg: str,
    namespace: str | None,
    scope: Scope,
    connect: Connect,
    *,
    steps: str | None,
    partition: str | None,
    dry_run: bool,
    yes: bool,
    ask: Ask | None,
) -> Run:
    """The plan that replaces every pod of the scoped variants in steps, the template unchanged.

    Refused (nothing changed) where the render differs from the live template, a rollout is
    unfinished, or nodes are not on the current revision (``restart.restart_plan``); a
    variant not deployed is skipped with a warning. Nothing is applied, so uncommitted
    changes do not matter: a change to the render is refused as a difference anyway.
    """
    step_specs = check_steps(steps, partition)
    _, result, kube = _prepare(env_arg, namespace, scope, connect)
    permissions.preflight(kube, "plan" if dry_run else "restart", namespaces(result.env), warn=output.warn)
    base = observe(kube, result.env, result.variants, scope, partition=partition, steps=step_specs)
    recorded = {
        vp.key: record(kube, kube.daemonsets.get(*vp.key), vp.policy.applier).state
        for vp in base.variants
        if vp.live.uid
    }
    the_plan, skipped = restart_plan(base, recorded, partition, env_arg)
    for message in skipped:
        output.warn(message)
    return Run(kube, the_plan, _options(kube, None, ask, operation=RunKind.restart, yes=yes, steps=step_specs))


# --- status, history, pause, abort ------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Rows about the scoped variants of one environment, as ``status`` and ``history`` print them."""

    environment: str
    variants: Sequence[Mapping[str, Any]]
    replacements: Sequence[Mapping[str, Any]] = ()


def _scoped(
    command: str, env_arg: str, namespace: str | None, scope: Scope, connect: Connect
) -> tuple[str, list[Any], Kube]:
    """The environment's name, the variants in scope, and a client for its cluster that may run ``command``."""
    _, result = _render(env_arg, namespace)
    scope.check(result.env)
    kube = connect(result.env.context)
    permissions.preflight(kube, command, namespaces(result.env), warn=output.warn)
    return result.env.name, scope.select(result.variants), kube


def status(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> Report:
    """Progress per variant, and the latest orphan replacement of each workload."""
    name, variants, kube = _scoped("status", env_arg, namespace, scope, connect)
    found = inspect.replacement_status(kube, variants)
    return Report(name, inspect.status(kube, variants), found)


def watch(
    env_arg: str, namespace: str | None, scope: Scope, connect: Connect, timeout: str | None, emit: watch_status.Emit
) -> tuple[str, watch_status.Verdict, list[dict[str, Any]]]:
    """``status --watch``: wait for the rollout in progress, whoever runs it; its verdict and last progress."""
    try:
        seconds = flag_seconds(timeout) if timeout is not None else None
    except ValueError as exc:
        raise InputError(f"--timeout: {exc}") from None
    name, variants, kube = _scoped("status-watch", env_arg, namespace, scope, connect)
    verdict, rows = watch_status.watch(kube, variants, name, seconds, emit, waited=timeout or "")
    return name, verdict, rows


def history(env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> Report:
    """The ControllerRevisions of each variant."""
    name, variants, kube = _scoped("history", env_arg, namespace, scope, connect)
    return Report(name, inspect.history(kube, variants))


def request(action: str, env_arg: str, namespace: str | None, scope: Scope, connect: Connect) -> list[dict[str, Any]]:
    """``pause`` or ``abort`` every scoped variant's rollout in progress."""
    _, variants, kube = _scoped(action, env_arg, namespace, scope, connect)
    return requests.request(kube, variants, action, who(kube))


# --- init, rbac --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaffolded:
    """What ``init`` did: each file and what happened to it, and the classes the environment has."""

    root: Path
    environment: str
    namespace: str
    files: Sequence[tuple[str, str]]  # (path, created | overwritten | updated | unchanged)
    classes: Sequence[scaffold.ProposedClass]
    from_cluster: bool


def _existing(root: Path, paths: Sequence[str]) -> dict[str, str | None]:
    """Each path's text, None where nothing is; a folder or unreadable file in the way is "" (a conflict)."""
    found: dict[str, str | None] = {}
    for path in paths:
        target = root / path
        try:
            found[path] = target.read_text() if target.exists() or target.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            found[path] = ""
    return found


def init(
    directory: Path, name: str, namespace: str | None, *, from_cluster: bool, force: bool, connect: Connect,
    context: str | None,
) -> Scaffolded:  # fmt: skip
    """Write a new repo's files into ``directory``; refuse, writing nothing, where one would be overwritten."""
    for what, value in (("--name", name), ("--namespace", namespace or scaffold.DEFAULT_NAMESPACE)):
        if not DNS_LABEL.match(value) or len(value) > 63:
            raise InputError(f"{what} {value!r} is not a DNS label (lowercase a-z, 0-9, '-', at most 63)")
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is not a folder")
    classes: Sequence[scaffold.ProposedClass] = scaffold.EXAMPLE_CLASSES
    if from_cluster:
        kube = connect(None)
        permissions.preflight(kube, "nodes", (), warn=output.warn)
        classes = scaffold.propose_classes(kube.nodes.labels())
    home = namespace or scaffold.DEFAULT_NAMESPACE
    planned = scaffold.scaffold(name, home, classes, context, schema_text())
    existing = _existing(directory, [*planned, ".gitignore"])
    clashes = scaffold.conflicts(planned, existing)
    if clashes and not force:
        where = f"{', '.join(clashes)} in {directory}"
        raise InputError(f"init would overwrite {where}: nothing written (--force overwrites)")
    planned[".gitignore"] = scaffold.gitignore_text(existing[".gitignore"])
    done = []
    for path, text in planned.items():
        before = existing[path]
        if before == text:
            done.append((path, "unchanged"))
            continue
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()  # never write through a link: replace it (only with --force, or .gitignore's own)
        target.write_text(text)
        done.append((path, "created" if before is None else "updated" if path == ".gitignore" else "overwritten"))
    return Scaffolded(directory, name, home, tuple(done), tuple(classes), from_cluster)


def rbac(env_arg: str, namespace: str | None) -> str:
    """The RBAC manifests of an environment's deployer and reviewer, for ``kubectl apply -f``."""
    project = locate(env_arg)
    env = load_environment(project.source, project.env_path, namespace)
    return scaffold.rbac_text(env.name, env.namespace, sorted(namespaces(env)), create_namespace=env.create_namespace)
