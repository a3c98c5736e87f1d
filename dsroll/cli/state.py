"""``status``, ``history``, ``pause`` and ``abort``: read or act on a rollout's state in the cluster."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dsroll import output, workflow
from dsroll.cli.app import app
from dsroll.cli.flags import (
    KUBE_FLAGS,
    ClassOpt,
    EnvArg,
    KubeFlags,
    OutputFormat,
    OutputOpt,
    WorkloadOpt,
    scope,
    with_kube_flags,
)
from dsroll.cli.helptext import epilog
from dsroll.errors import BAD_INPUT
from dsroll.rollout.watch_status import progress_line

WatchOpt = Annotated[
    bool,
    typer.Option(
        "--watch",
        "-w",
        help="Wait for the rollout in progress (whoever runs it), printing each change; exit with its exit code.",
    ),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--timeout", metavar="DURATION", help="With --watch: give up after this long (30s, 1m30s, 2h), exit 6."
    ),
]


@app.command(
    epilog=epilog(
        [
            ("Progress of every variant of node-exporter", "status dev --workload node-exporter"),
            (
                "Wait up to 30 minutes for a rollout another job runs; exit with its code",
                "status prod --watch --timeout 30m",
            ),
        ],
        "1 failed (rolled back, stopped on failure or aborted)",
        BAD_INPUT,
        "3 paused, awaiting approval",
        "5 its runner is gone before it finished (run resume)",
        "6 --timeout passed first",
    )
)
@with_kube_flags
def status(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    watch: WatchOpt = False,
    timeout: TimeoutOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Per variant: nodes updated / ready / total, step, phase, who, since when; --watch waits for the rollout."""
    if timeout is not None and not watch:
        raise typer.BadParameter("--timeout needs --watch", param_hint="--timeout")
    if watch:

        def emit(row: Any) -> None:
            output.watch_progress(row, fmt=out.value, line=progress_line(row))

        name, verdict, rows = workflow.watch(env, kube.namespace, scope(workload, cls), kube.connect, timeout, emit)
        output.watch_result(name, verdict.exit_code, verdict.message, rows, fmt=out.value)
        raise typer.Exit(verdict.exit_code)
    report = workflow.status(env, kube.namespace, scope(workload, cls), kube.connect)
    output.status_view(report.environment, report.variants, fmt=out.value, replacements=report.replacements)


@app.command(
    epilog=epilog(
        [
            (
                "The revisions of one variant (* marks the current one)",
                "history dev --workload node-exporter --class gpu",
            ),
            ("The revision numbers, for rollback --to-revision", "history dev --workload node-exporter -o json"),
        ],
        BAD_INPUT,
    )
)
@with_kube_flags
def history(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """The ControllerRevisions of each variant: revision, hash, date and the git commit recorded."""
    report = workflow.history(env, kube.namespace, scope(workload, cls), kube.connect)
    output.history_view(report.environment, report.variants, fmt=out.value)


@app.command(
    epilog=epilog(
        [("Pause node-exporter's rollout, from any machine", "pause dev --workload node-exporter")], BAD_INPUT
    )
)
@with_kube_flags
def pause(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Pause a rollout in progress after its batch in flight (`resume` continues)."""
    rows = workflow.request("pause", env, kube.namespace, scope(workload, cls), kube.connect)
    output.request_view(rows, fmt=out.value)


@app.command(
    epilog=epilog([("Stop the gpu variants' rollout; every node stays as it is", "abort dev --class gpu")], BAD_INPUT)
)
@with_kube_flags
def abort(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Stop a rollout in progress after its batch in flight and leave every node as it is."""
    rows = workflow.request("abort", env, kube.namespace, scope(workload, cls), kube.connect)
    output.request_view(rows, fmt=out.value)
