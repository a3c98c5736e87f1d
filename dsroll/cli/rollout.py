"""``plan``, ``rollout``, ``resume``, ``rollback`` and ``restart``: plan, confirm on a TTY, carry out, summarise.

Exit codes: 0 done, 1 failed (rolled back, stopped or aborted), 2 bad input or an error
before anything was applied, 3 paused waiting for approval, 4 another rollout holds the
lock, 5 interrupted after something was applied (the summary is still printed; running
again continues), 70 internal error (``Guarded``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dsroll import output, workflow
from dsroll.cli.app import PROG, app
from dsroll.cli.flags import (
    KUBE_FLAGS,
    AllowDirtyOpt,
    ClassOpt,
    DryRunOpt,
    EnvArg,
    EventsOpt,
    KubeFlags,
    OutputFormat,
    OutputOpt,
    WorkloadOpt,
    YesOpt,
    scope,
    with_kube_flags,
)
from dsroll.cli.helptext import epilog
from dsroll.errors import BAD_INPUT, Interrupted
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.run import execute
from dsroll.rollout.state import RunKind

StepsOpt = Annotated[
    str | None, typer.Option("--steps", metavar="1,10%,100%", help="Override the steps: node counts or percentages.")
]
RUN_EXITS = ("1 rolled back or stopped", BAD_INPUT, "3 paused", "4 locked", "5 interrupted (resume continues)")


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _ask(question: str) -> bool:
    from rich.prompt import Confirm  # only on a terminal: start-up time

    return Confirm.ask(question, console=output.err, default=False)


def _asker() -> workflow.Ask | None:
    """Who answers manual pauses: the operator on a TTY, no one without one."""
    return _ask if _tty() else None


def _carry_out(run: workflow.Run, *, out: OutputFormat, events: bool, yes: bool, dry_run: bool, again: str,
               prune: bool = False) -> None:  # fmt: skip
    """Show the plan, confirm on a TTY, execute, print the summary, exit with its code.

    ``again`` is the command (after the program name) that continues an interrupted run.
    """
    kube, plan, options = run.kube, run.plan, run.options
    if out is OutputFormat.text or dry_run:
        if out is OutputFormat.json:
            output.emit_json(workflow.dry_run_json(plan, options.operation, kube.requests))
        else:
            output.plan_view(plan, fmt="text", stream=output.err)
    if dry_run:
        output.info("dry-run: nothing was changed")
        return
    if not plan.has_changes:
        nothing = "no variant deployed" if options.operation is RunKind.restart else "every variant matches the render"
        output.info(f"nothing to do: {nothing}")
    elif _tty() and not yes and not _ask(f"{options.operation.value.capitalize()} {plan.environment}?"):
        output.info("cancelled: nothing was changed")
        raise typer.Exit(1)
    reporter = Reporter(kube, json_lines=events, tty=_tty() and not events)
    try:
        summary = execute(kube, plan, options, reporter, prune=prune, targets=run.targets)
    finally:
        reporter.close()
    output.run_summary(summary, fmt=out.value, compact=events)
    if summary.interruption is not None:
        raise Interrupted(
            f"interrupted after changes were applied: {summary.interruption}; state is saved in the cluster: "
            f"run '{PROG} {again}' to continue"
        )
    raise typer.Exit(summary.exit_code)


@app.command(
    epilog=epilog(
        [
            ("The node batches of every step for node-exporter", "plan dev --workload node-exporter"),
            ("Save it for review; `rollout --plan` carries it out later", "plan prod --out plan.json"),
        ],
        BAD_INPUT,
    )
)
@with_kube_flags
def plan(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    partition: Annotated[
        str | None, typer.Option("--partition", metavar="N|P%", help="Nodes (N or P%) kept on the old revision.")
    ] = None,
    steps: StepsOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", metavar="PATH", help="Save the plan (with manifests) for `rollout --plan`."),
    ] = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """What a rollout would do, per variant, and the node batches of every step, from live state."""
    found = workflow.plan(
        env, kube.namespace, scope(workload, cls), kube.connect, partition=partition, steps=steps, save_to=out_file
    )
    if out_file is not None:
        output.info(f"plan saved to {out_file}: `rollout {env} --plan {out_file}` executes it")
    output.plan_view(found, fmt=out.value)


@app.command(
    epilog=epilog(
        [
            ("Roll node-exporter out in the environment's steps", "rollout dev --workload node-exporter"),
            ("In CI: one node, then 10 %, then all, approving every pause", "rollout prod --steps 1,10%,100% --yes"),
        ],
        *RUN_EXITS,
    )
)
@with_kube_flags
def rollout(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    steps: StepsOpt = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", metavar="N|P%", help="Keep N nodes (or P%) on the old revision and stop there."),
    ] = None,
    saved: Annotated[
        Path | None,
        typer.Option(
            "--plan", metavar="PATH", help="Execute a plan saved by `plan --out`; refused if the cluster moved."
        ),
    ] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete live variants that are no longer rendered.")] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    events: EventsOpt = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Staged rollout: replace pods node by node, step by step, with health gates and rollback."""
    run = workflow.rollout(
        env, kube.namespace, scope(workload, cls), kube.connect, steps=steps, partition=partition, saved=saved,
        allow_dirty=allow_dirty, dry_run=dry_run, yes=yes, ask=_asker(),
    )  # fmt: skip
    _carry_out(run, out=out, events=events, yes=yes, dry_run=dry_run, again=f"resume {env}", prune=prune)


@app.command(
    epilog=epilog(
        [
            ("Approve the pending pause of every variant and continue", "resume dev --yes"),
            ("Continue only node-exporter's gpu variant", "resume dev --workload node-exporter --class gpu"),
        ],
        *RUN_EXITS,
    )
)
@with_kube_flags
def resume(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    yes: YesOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    events: EventsOpt = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Approve the pending manual pause (or clear a pause) and continue, from any machine."""
    run = workflow.resume(
        env, kube.namespace, scope(workload, cls), kube.connect, allow_dirty=allow_dirty, yes=yes, ask=_asker()
    )
    _carry_out(run, out=out, events=events, yes=True, dry_run=False, again=f"resume {env}")


@app.command(
    epilog=epilog(
        [
            ("Back to the previous revision of node-exporter", "rollback dev --workload node-exporter"),
            ("Back to what main rendered (even if that revision was pruned)", "rollback dev --to-git main"),
        ],
        "1 failed",
        BAD_INPUT,
        "4 locked",
        "5 interrupted (rollback again continues)",
    )
)
@with_kube_flags
def rollback(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    to_revision: Annotated[
        int | None, typer.Option("--to-revision", metavar="N", help="The ControllerRevision number.")
    ] = None,
    to_git: Annotated[str | None, typer.Option("--to-git", metavar="REF", help="The render of this git ref.")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    events: EventsOpt = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Back to the previous revision (or --to-revision N, or --to-git REF), replacing only nodes that changed."""
    run = workflow.rollback(
        env, kube.namespace, scope(workload, cls), kube.connect, to_revision=to_revision, to_git=to_git, yes=yes,
        ask=_asker(),
    )  # fmt: skip
    again = f"rollback {env}" + (f" --to-git {to_git}" if to_git else "")
    _carry_out(run, out=out, events=events, yes=yes, dry_run=dry_run, again=again)


@app.command(
    epilog=epilog(
        [
            ("Restart fluent-bit's pods in the environment's steps", "restart dev --workload fluent-bit"),
            ("In CI: one node, a quarter, then all, approving every pause", "restart prod --steps 1,25%,100% --yes"),
            ("What it would do, changing nothing", "restart dev --class gpu --dry-run"),
        ],
        "1 stopped by a failure or aborted",
        BAD_INPUT,
        "3 paused",
        "4 locked",
        "5 interrupted (resume continues)",
    )
)
@with_kube_flags
def restart(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    steps: StepsOpt = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", metavar="N|P%", help="Leave N nodes (or P%) unrestarted and stop there."),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    events: EventsOpt = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Restart every pod in the rollout's steps, with health gates, and no template change (no new revision)."""
    run = workflow.restart(
        env, kube.namespace, scope(workload, cls), kube.connect, steps=steps, partition=partition, dry_run=dry_run,
        yes=yes, ask=_asker(),
    )  # fmt: skip
    _carry_out(run, out=out, events=events, yes=yes, dry_run=dry_run, again=f"resume {env}")
