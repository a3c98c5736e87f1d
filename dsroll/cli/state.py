"""``status``, ``history``, ``pause`` and ``abort``: read or act on a rollout's state in the cluster."""

from __future__ import annotations

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


@app.command(
    epilog=epilog([("Progress of every variant of node-exporter", "status dev --workload node-exporter")], BAD_INPUT)
)
@with_kube_flags
def status(
    env: EnvArg,
    workload: WorkloadOpt = None,
    cls: ClassOpt = None,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Per variant: nodes updated / ready / total, step, phase, who, since when."""
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
