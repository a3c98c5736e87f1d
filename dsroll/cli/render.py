"""``render``, ``diff`` and ``nodes``: read templates, git and the cluster; change nothing in the cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from dsroll import output, workflow
from dsroll.cli.app import app
from dsroll.cli.flags import KUBE_FLAGS, EnvArg, KubeFlags, NamespaceOpt, OutputFormat, OutputOpt, with_kube_flags
from dsroll.cli.helptext import epilog
from dsroll.errors import BAD_INPUT


@app.command(
    epilog=epilog(
        [
            ("Write rendered/dev/ from environments/dev.yaml and its templates", "render dev"),
            ("In CI: exit 1 when the committed files differ from a fresh render", "render dev --check"),
        ],
        "1 drift (--check)",
        BAD_INPUT,
    )
)
def render(
    env: EnvArg,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 if the files on disk differ (a CI drift gate)."),
    ] = False,
    namespace: NamespaceOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Render every variant to <renderedDir>/<namespace>/<name>.yaml, byte-for-byte deterministic.

    Reads only the environment file and its templates: no cluster is asked.
    """
    result, changes = workflow.render(env, namespace, check=check)
    output.render_result(result, changes, check=check, fmt=out.value)
    if check and any(c.drift for c in changes):
        raise typer.Exit(1)


@app.command(
    epilog=epilog(
        [
            ("What a rollout would change in the cluster (a server-side dry-run)", "diff dev"),
            ("What this branch changes since main (no cluster needed)", "diff dev --against git:main"),
        ],
        "1 differences",
        BAD_INPUT,
    )
)
@with_kube_flags
def diff(
    env: EnvArg,
    against: Annotated[
        str,
        typer.Option(
            "--against",
            metavar="live|git|git:REF",
            help="live (the cluster, normalised by a server-side dry-run), git (HEAD) "
            "or git:REF (the rendered files committed at REF).",
        ),
    ] = "live",
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets",
            help="Show the values of env entries whose name matches the environment's maskEnv (masked as ***).",
        ),
    ] = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Compare a fresh render with git or the live cluster. Exit 0 no difference, 1 differences, 2 error."""
    report = workflow.diff(env, kube.namespace, against, show_secrets=show_secrets, connect=kube.connect)
    output.diff_report(report, fmt=out.value)
    if report.has_differences:
        raise typer.Exit(1)


@app.command(
    epilog=epilog(
        [
            ("Which hardware class each live node falls into", "nodes dev"),
            ("The same, for a script", "nodes dev --context prod-admin -o json"),
        ],
        BAD_INPUT,
    )
)
@with_kube_flags
def nodes(env: EnvArg, kube: KubeFlags = KUBE_FLAGS, out: OutputOpt = OutputFormat.text) -> None:
    """Per live node: every hardware class that matched and the one that won; nodes no variant covers."""
    output.nodes_report(workflow.nodes(env, kube.namespace, kube.connect), fmt=out.value)
