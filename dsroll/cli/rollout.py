"""``plan``, ``rollout``, ``resume``, ``rollback`` and ``restart``: plan, confirm on a TTY, carry out, summarise.

Exit codes: 0 done, 1 failed (rolled back, stopped or aborted), 2 bad input or an error
before anything was applied, 3 paused waiting for approval, 4 another rollout holds the
lock, 5 interrupted after something was applied (the summary is still printed; running
again continues), 6 ``--wait-applied --timeout`` ran out before the applier had synced
(nothing changed in the cluster), 70 internal error (``Guarded``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
    RetryBudgetOpt,
    WorkloadOpt,
    YesOpt,
    scope,
    with_kube_flags,
)
from dsroll.cli.helptext import epilog
from dsroll.errors import BAD_INPUT, InputError, Interrupted
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.run import execute
from dsroll.rollout.state import RunKind

StepsOpt = Annotated[
    str | None, typer.Option("--steps", metavar="1,10%,100%", help="Override the steps: node counts or percentages.")
]
RUN_EXITS = ("1 rolled back or stopped", BAD_INPUT, "3 paused", "4 locked", "5 interrupted (resume continues)")
WAIT_EXIT = "6 --wait-applied timed out (nothing changed)"
WaitAppliedOpt = Annotated[
    bool,
    typer.Option(
        "--wait-applied",
        help="rollout.applier: external: first wait until the applier has applied the committed render.",
    ),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", metavar="DURATION", help="How long --wait-applied waits (e.g. 5m); exit 6 after it."),
]


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _ask(question: str) -> bool:
    from rich.prompt import Confirm  # only on a terminal: start-up time

    return Confirm.ask(question, console=output.err, default=False)


def _asker() -> workflow.Ask | None:
    """Who answers manual pauses: the operator on a TTY, no one without one."""
    return _ask if _tty() else None


def _carry_out(run: workflow.Run, *, out: OutputFormat, events: bool, yes: bool, dry_run: bool, again: str,
               prune: bool = False, retry_budget: float | None = None,
               extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Show the plan, confirm on a TTY, execute, print the summary, exit with its code.

    ``again`` is the command (after the program name) that continues an interrupted run;
    ``retry_budget`` the seconds of API server outage the run rides out (``--retry-budget``);
    ``extra``: keys added to the JSON summary (``rollback --git-revert``'s commit).
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
        summary = execute(kube, plan, options, reporter, prune=prune, targets=run.targets, retry_budget=retry_budget)
    finally:
        reporter.close()
    output.run_summary(summary, fmt=out.value, compact=events, extra=extra)
    if summary.interruption is not None:
        raise Interrupted(
            f"interrupted after changes were applied: {summary.interruption}; state is saved in the cluster: "
            f"run '{PROG} {again}' to continue"
        )
    raise typer.Exit(summary.exit_code)


def _retry_budget(text: str | None) -> float | None:
    """``--retry-budget``, parsed where the client lives (the kubernetes package loads only to connect)."""
    from dsroll.kube.retry import parse_retry_budget

    return parse_retry_budget(text)


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
            (
                "applier: external: once Argo CD or Flux has synced, conduct",
                "rollout prod --wait-applied --timeout 10m",
            ),
        ],
        *RUN_EXITS,
        WAIT_EXIT,
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
    wait_applied: WaitAppliedOpt = False,
    timeout: TimeoutOpt = None,
    events: EventsOpt = False,
    retry_budget: RetryBudgetOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Staged rollout: replace pods node by node, step by step, with health gates and rollback."""
    budget = _retry_budget(retry_budget)
    run = workflow.rollout(
        env, kube.namespace, scope(workload, cls), kube.connect, steps=steps, partition=partition, saved=saved,
        allow_dirty=allow_dirty, dry_run=dry_run, yes=yes, ask=_asker(),
        wait=(out.value if wait_applied else None), timeout=timeout,
    )  # fmt: skip
    _carry_out(
        run, out=out, events=events, yes=yes, dry_run=dry_run, again=f"resume {env}", prune=prune, retry_budget=budget
    )


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
    retry_budget: RetryBudgetOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Approve the pending manual pause (or clear a pause) and continue, from any machine."""
    budget = _retry_budget(retry_budget)
    run = workflow.resume(
        env, kube.namespace, scope(workload, cls), kube.connect, allow_dirty=allow_dirty, yes=yes, ask=_asker()
    )
    _carry_out(run, out=out, events=events, yes=True, dry_run=False, again=f"resume {env}", retry_budget=budget)


@app.command(
    epilog=epilog(
        [
            ("Back to the previous revision of node-exporter", "rollback dev --workload node-exporter"),
            ("Back to what main rendered (even if that revision was pruned)", "rollback dev --to-git main"),
            (
                "applier: external: revert in git, push, conduct the way back",
                "rollback prod --git-revert --push --wait-applied",
            ),
        ],
        "1 failed",
        BAD_INPUT,
        "4 locked",
        "5 interrupted (rollback again continues)",
        WAIT_EXIT,
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
    git_revert: Annotated[
        bool,
        typer.Option(
            "--git-revert",
            help="rollout.applier: external: one git commit restoring the environment's files as of the stable"
            " commit, and its render.",
        ),
    ] = False,
    push: Annotated[bool, typer.Option("--push", help="With --git-revert: push the revert commit.")] = False,
    wait_applied: Annotated[
        bool,
        typer.Option("--wait-applied", help="With --git-revert: wait until the applier applied it, then conduct back."),
    ] = False,
    timeout: TimeoutOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    events: EventsOpt = False,
    retry_budget: RetryBudgetOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Back to the previous revision (or --to-revision N, --to-git REF, --git-revert); only nodes that changed."""
    budget = _retry_budget(retry_budget)
    if git_revert:
        if to_revision is not None or to_git is not None or dry_run:
            raise InputError("--git-revert goes with neither --to-revision, --to-git nor --dry-run")
        _git_revert(env, workload, cls, kube, out, push=push, wait_applied=wait_applied, timeout=timeout, yes=yes,
                    events=events, retry_budget=budget)  # fmt: skip
        return
    if push or wait_applied or timeout is not None:
        raise InputError("--push, --wait-applied and --timeout go with --git-revert")
    run = workflow.rollback(
        env, kube.namespace, scope(workload, cls), kube.connect, to_revision=to_revision, to_git=to_git, yes=yes,
        ask=_asker(),
    )  # fmt: skip
    again = f"rollback {env}" + (f" --to-git {to_git}" if to_git else "")
    _carry_out(run, out=out, events=events, yes=yes, dry_run=dry_run, again=again, retry_budget=budget)


def _git_revert(env: str, workload: list[str] | None, cls: list[str] | None, kube: Any, out: OutputFormat, *,
                push: bool, wait_applied: bool, timeout: str | None, yes: bool, events: bool,
                retry_budget: float | None) -> None:  # fmt: skip
    """``rollback --git-revert``: the revert commit, and with --wait-applied the way back conducted."""
    found = workflow.git_revert(
        env, kube.namespace, scope(workload, cls), kube.connect, push=push,
        wait=(out.value if wait_applied else None), timeout=timeout, yes=yes, ask=_asker(),
    )  # fmt: skip
    done = found.revert
    if done.commit is None:
        output.info(f"nothing to revert: the files {env} renders from are as at the stable commit {done.stable[:12]}")
    else:
        output.info(
            f"reverted {env} to {done.stable[:12]} in commit {done.commit[:12]}: restored "
            f"{', '.join(done.restored) or 'nothing'}; re-rendered "
            f"{', '.join(c.path for c in done.rendered if c.status != 'unchanged') or 'nothing'}"
        )
        if done.pushed:
            output.info(f"pushed to {done.pushed}")
        elif found.run is None:
            output.info(f"push it (git push) so the applier applies it, then `{PROG} rollout {env} --wait-applied`")
    if found.run is None:
        if out is OutputFormat.json:
            output.emit_json({"revert": done.to_json()})
        return
    _carry_out(found.run, out=out, events=events, yes=yes, dry_run=False, again=f"resume {env}",
               retry_budget=retry_budget, extra={"revert": done.to_json()})  # fmt: skip


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
    retry_budget: RetryBudgetOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Restart every pod in the rollout's steps, with health gates, and no template change (no new revision)."""
    budget = _retry_budget(retry_budget)
    run = workflow.restart(
        env, kube.namespace, scope(workload, cls), kube.connect, steps=steps, partition=partition, dry_run=dry_run,
        yes=yes, ask=_asker(),
    )  # fmt: skip
    _carry_out(run, out=out, events=events, yes=yes, dry_run=dry_run, again=f"resume {env}", retry_budget=budget)
