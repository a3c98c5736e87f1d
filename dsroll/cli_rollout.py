"""The rollout commands: plan, rollout, status, history, pause, resume, abort, rollback.

Same shape as ``cli.py``: flags → one core call (``dsroll.rollout.run``) → output.
Exit codes: 0 done, 1 failed (rolled back, stopped or aborted), 2 bad input or an error
before anything was applied, 3 paused waiting for approval, 4 another rollout holds the
lock, 5 interrupted after something was applied (the summary is still printed; running
again continues), 70 internal error (``cli.Guarded``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.prompt import Confirm

from dsroll import output
from dsroll.cli import (
    PROG,
    AsGroupOpt,
    AsOpt,
    ContextOpt,
    EnvArg,
    KubeconfigOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    TimeoutOpt,
    _connect,
    _render,
    app,
)
from dsroll.errors import BAD_INPUT, InputError, Interrupted, exits
from dsroll.gitsource import Project
from dsroll.kube import Kube
from dsroll.plan import Plan, parse_steps, plan_from_json, plan_to_json, resolve_partition
from dsroll.render import RenderResult, load_environment, render_environment
from dsroll.rollout import inspect, requests
from dsroll.rollout import observe as core
from dsroll.rollout.outcome import RunOptions, RunSummary
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.rollback import rollback_plan
from dsroll.rollout.run import execute
from dsroll.rollout.state import Operation

WorkloadOpt = Annotated[
    list[str] | None, typer.Option("--workload", help="Only this workload (repeatable).", show_default=False)
]
ClassOpt = Annotated[
    list[str] | None, typer.Option("--class", help="Only this hardware class (repeatable).", show_default=False)
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: start at once and approve every manual pause.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
AllowDirtyOpt = Annotated[
    bool, typer.Option("--allow-dirty", help="Roll out even though the git work tree has uncommitted changes.")
]
EventsOpt = Annotated[bool, typer.Option("--events", help="Print JSON lines on stdout while it runs.")]


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _scope(workload: list[str] | None, cls: list[str] | None) -> core.Scope:
    return core.Scope(tuple(workload or ()), tuple(cls or ()))


def _flags(steps: str | None, partition: str | None) -> tuple[str, ...] | None:
    """Check --steps and --partition before anything else happens; the parsed steps."""
    resolve_partition(partition, 0)
    return parse_steps(steps) if steps else None


def _commit(project: Project, allow_dirty: bool, dry_run: bool) -> str | None:
    if project.is_dirty() and not (allow_dirty or dry_run):
        raise InputError(
            f"the git work tree at {project.root} has uncommitted changes: commit them (a rollout records its commit) "
            "or pass --allow-dirty"
        )
    return project.head_commit()


def _ask(question: str) -> bool:
    return Confirm.ask(question, console=output.err, default=False)


def _options(kube: Kube, commit: str | None, **kwargs: object) -> RunOptions:
    return RunOptions(who=core.who(kube), commit=commit, interactive=_tty(), ask=_ask, **kwargs)  # type: ignore[arg-type]


def _run(
    kube: Kube,
    plan: Plan,
    options: RunOptions,
    *,
    out: OutputFormat,
    events: bool,
    yes: bool,
    dry_run: bool,
    again: str,
    prune: bool = False,
    targets: dict | None = None,
) -> None:
    """Show the plan, confirm on a TTY, execute, print the summary, exit with its code.

    ``again`` is the command (after the program name) that continues an interrupted run.
    """
    if out is OutputFormat.text or dry_run:
        if out is OutputFormat.json:
            summary = RunSummary(plan.environment, options.operation.value, [], kube.requests, 0, dry_run=True)
            output.emit_json({**summary.to_json(), "plan": plan_to_json(plan, manifests=False)})
        else:
            output.plan_view(plan, fmt="text", stream=output.err)
    if dry_run:
        output.info("dry-run: nothing was changed")
        return
    if not plan.has_changes:
        output.info("nothing to do: every variant matches the render")
    elif _tty() and not yes and not _ask(f"{options.operation.value.capitalize()} {plan.environment}?"):
        output.info("cancelled: nothing was changed")
        raise typer.Exit(1)
    reporter = Reporter(kube, json_lines=events, tty=_tty() and not events)
    try:
        summary = execute(kube, plan, options, reporter, prune=prune, targets=targets)
    finally:
        reporter.close()
    output.run_summary(summary, fmt=out.value, compact=events)
    if summary.interruption is not None:
        raise Interrupted(
            f"interrupted after changes were applied: {summary.interruption}; state is saved in the cluster: "
            f"run '{PROG} {again}' to continue"
        )
    raise typer.Exit(summary.exit_code)


def _prepare(
    env: str,
    namespace: str | None,
    scope: core.Scope,
    kubeconfig: str | None,
    context: str | None,
    as_user: str | None,
    as_group: str | None,
    timeout: str | None,
) -> tuple[Project, RenderResult, Kube]:
    """Render and check every flag against the environment before anything talks to the cluster."""
    project, result = _render(env, namespace)
    scope.check(result.env)
    for warning in result.warnings:
        output.warn(warning)
    kube = _connect(kubeconfig, context, as_user, as_group, timeout, result.env.context)
    return project, result, kube


@app.command(epilog=exits(BAD_INPUT))
def plan(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    partition: Annotated[
        str | None, typer.Option("--partition", help="Nodes (N or P%) kept on the old revision.")
    ] = None,
    steps: Annotated[str | None, typer.Option("--steps", help='Override the steps, e.g. "1,25%,100%".')] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Save the plan (with manifests) for `rollout --plan`.")
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """What a rollout would do, per variant, and the node batches of every step, from live state."""
    scope, step_specs = _scope(workload, cls), _flags(steps, partition)
    project, result, kube = _prepare(env, namespace, scope, kubeconfig, context, as_user, as_group, request_timeout)
    the_plan = core.observe(
        kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=project.head_commit()
    )
    if out_file is not None:
        out_file.write_text(json.dumps(plan_to_json(the_plan), indent=2) + "\n")
        output.info(f"plan saved to {out_file}: `rollout {env} --plan {out_file}` executes it")
    output.plan_view(the_plan, fmt=out.value)


@app.command(
    epilog=exits("1 rolled back or stopped", BAD_INPUT, "3 paused", "4 locked", "5 interrupted (resume continues)")
)
def rollout(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    steps: Annotated[str | None, typer.Option("--steps", help='Override the steps, e.g. "1,25%,100%".')] = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="Keep N nodes (or P%) on the old revision and stop there."),
    ] = None,
    saved: Annotated[
        Path | None, typer.Option("--plan", help="Execute a plan saved by `plan --out`; refused if the cluster moved.")
    ] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete live variants that are no longer rendered.")] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    events: EventsOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Staged rollout: replace pods node by node, step by step, with health gates and rollback."""
    scope, step_specs = _scope(workload, cls), _flags(steps, partition)
    saved_plan = None
    if saved is not None:
        try:
            saved_plan = plan_from_json(saved.read_text(), str(saved))
        except OSError as exc:
            raise InputError(f"cannot read the plan: {exc.strerror}", str(saved)) from None
    project, result, kube = _prepare(env, namespace, scope, kubeconfig, context, as_user, as_group, request_timeout)
    commit = _commit(project, allow_dirty, dry_run)
    if saved_plan is not None:
        moved = core.moved_since(kube, saved_plan)
        if moved:
            raise InputError(f"the cluster moved since the plan was made, nothing applied: {'; '.join(moved)}")
        the_plan = saved_plan
    else:
        the_plan = core.observe(
            kube, result.env, result.variants, scope, partition=partition, steps=step_specs, commit=commit
        )
    options = _options(kube, commit, yes=yes, steps=step_specs)
    _run(kube, the_plan, options, out=out, events=events, yes=yes, dry_run=dry_run, again=f"resume {env}", prune=prune)


@app.command(
    epilog=exits("1 rolled back or stopped", BAD_INPUT, "3 paused", "4 locked", "5 interrupted (resume continues)")
)
def resume(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    yes: YesOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    events: EventsOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Approve the pending manual pause (or clear a pause) and continue, from any machine."""
    scope = _scope(workload, cls)
    project, result, kube = _prepare(env, namespace, scope, kubeconfig, context, as_user, as_group, request_timeout)
    commit = _commit(project, allow_dirty, False)
    the_plan = core.observe(kube, result.env, result.variants, scope, commit=commit)
    options = _options(kube, commit, approve=True, yes=yes)
    _run(kube, the_plan, options, out=out, events=events, yes=True, dry_run=False, again=f"resume {env}")


@app.command(epilog=exits("1 failed", BAD_INPUT, "4 locked", "5 interrupted (rollback again continues)"))
def rollback(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    to_revision: Annotated[int | None, typer.Option("--to-revision", help="The ControllerRevision number.")] = None,
    to_git: Annotated[str | None, typer.Option("--to-git", help="The render of this git ref.")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    events: EventsOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Back to the previous revision (or --to-revision N, or --to-git REF), replacing only nodes that changed."""
    if to_revision is not None and to_git is not None:
        raise InputError("--to-revision and --to-git: give one of them")
    scope = _scope(workload, cls)
    project, result, kube = _prepare(env, namespace, scope, kubeconfig, context, as_user, as_group, request_timeout)
    manifests = None
    if to_git is not None:
        source = project.at(to_git)
        old = render_environment(load_environment(source, project.env_path, namespace), source)
        manifests = {v.key: v.manifest for v in old.variants}
    base = core.observe(kube, result.env, result.variants, scope, commit=project.head_commit())
    the_plan, targets = rollback_plan(kube, base, to_revision=to_revision, manifests=manifests)
    commit = source.commit.hexsha if to_git is not None else None
    options = _options(kube, commit, operation=Operation.rollback, yes=yes)
    again = f"rollback {env}" + (f" --to-git {to_git}" if to_git else "")
    _run(kube, the_plan, options, out=out, events=events, yes=yes, dry_run=dry_run, again=again, targets=targets)


def _variants(env: str, namespace: str | None, workload: list[str] | None, cls: list[str] | None) -> RenderResult:
    _, result = _render(env, namespace)
    scope = _scope(workload, cls)
    scope.check(result.env)
    return RenderResult(result.env, tuple(scope.select(result.variants)), result.warnings)


@app.command(epilog=exits(BAD_INPUT))
def status(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Per variant: nodes updated / ready / total, step, phase, who, since when."""
    result = _variants(env, namespace, workload, cls)
    kube = _connect(kubeconfig, context, as_user, as_group, request_timeout, result.env.context)
    found = inspect.replacement_status(kube, result.variants)
    output.status_view(result.env.name, inspect.status(kube, result.variants), fmt=out.value, replacements=found)


@app.command(epilog=exits(BAD_INPUT))
def history(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """The ControllerRevisions of each variant: revision, hash, date and the git commit recorded."""
    result = _variants(env, namespace, workload, cls)
    kube = _connect(kubeconfig, context, as_user, as_group, request_timeout, result.env.context)
    output.history_view(result.env.name, inspect.history(kube, result.variants), fmt=out.value)


def _request(action: str, env: str, namespace: str | None, workload: list[str] | None, cls: list[str] | None,
             kube_args: tuple, out: OutputFormat) -> None:  # fmt: skip
    result = _variants(env, namespace, workload, cls)
    kube = _connect(*kube_args, result.env.context)
    output.request_view(requests.request(kube, result.variants, action, core.who(kube)), fmt=out.value)


@app.command(epilog=exits(BAD_INPUT))
def pause(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Pause a rollout in progress after its batch in flight (`resume` continues)."""
    _request("pause", env, namespace, workload, cls, (kubeconfig, context, as_user, as_group, request_timeout), out)


@app.command(epilog=exits(BAD_INPUT))
def abort(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Stop a rollout in progress after its batch in flight and leave every node as it is."""
    _request("abort", env, namespace, workload, cls, (kubeconfig, context, as_user, as_group, request_timeout), out)
