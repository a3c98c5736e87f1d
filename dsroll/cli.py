"""The typer app: flags → one core call → output. No decisions live here.

Exit codes (README.md, "Exit codes"): 0 success / no difference, 1 differences or
drift, 2 bad input or any error (nothing applied).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dsroll import output
from dsroll.diff import DiffReport, against_git, against_live
from dsroll.errors import DsrollError
from dsroll.gitsource import Project, locate
from dsroll.kube import Kube, KubeOptions
from dsroll.nodes import classify_nodes
from dsroll.render import RenderResult, load_environment, render_environment
from dsroll.rendered import check_neighbours, sync
from dsroll.sandbox.cli import app as sandbox_app

PROG = os.environ.get("DSROLL_PROG", "dsroll")

app = typer.Typer(
    name=PROG,
    help=(
        "GitOps rollouts for DaemonSets: one variant per hardware class, rendered from Jinja2 templates, "
        "diffed against git and the live cluster."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(sandbox_app, name="sandbox", help="A local Kubernetes cluster (real control plane, kwok nodes).")


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def _complete_env(incomplete: str) -> list[str]:
    """Environment names for shell completion; completion must never fail loudly."""
    try:
        from git import Repo

        top = Repo(Path.cwd(), search_parent_directories=True).working_tree_dir or Path.cwd()
    except Exception:
        top = Path.cwd()
    return sorted(p.stem for p in (Path(top) / "environments").glob("*.yaml") if p.stem.startswith(incomplete))


EnvArg = Annotated[
    str,
    typer.Argument(
        metavar="ENV",
        help="Environment name (environments/ENV.yaml under the project root) or a path to an environment file.",
        autocompletion=_complete_env,
        show_default=False,
    ),
]
KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", help="Path to the kubeconfig file to use.")]
ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context",
        help="The kubeconfig context to use (default: the environment's cluster.context, else the current one).",
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        help="Namespace for workloads that name none (default: the environment's cluster.namespace).",
    ),
]
AsOpt = Annotated[str | None, typer.Option("--as", help="Username to impersonate for the operation.")]
AsGroupOpt = Annotated[str | None, typer.Option("--as-group", help="Group to impersonate for the operation.")]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--request-timeout",
        help="Client-side timeout of each API request (30s, 1m; 0 for none). Default 30s.",
    ),
]
OutputOpt = Annotated[OutputFormat, typer.Option("-o", "--output", help="Output format.")]

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit(fn: F) -> F:
    """Every DsrollError becomes one line on stderr and its exit code, in one place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsrollError as exc:
            output.error(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _render(env_arg: str, namespace: str | None) -> tuple[Project, RenderResult]:
    project = locate(env_arg)
    env = load_environment(project.source, project.env_path, namespace)
    return project, render_environment(env, project.source)


def _connect(
    kubeconfig: str | None,
    context: str | None,
    as_user: str | None,
    as_group: str | None,
    timeout: str | None,
    default_context: str | None,
) -> Kube:
    kube = Kube(KubeOptions(kubeconfig, context, as_user, as_group, timeout), default_context)
    output.info(f"Using {kube.describe()}")
    return kube


@app.command()
@_errors_to_exit
def render(
    env: EnvArg,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 if the files on disk differ (a CI drift gate)."),
    ] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Render every variant to <renderedDir>/<namespace>/<name>.yaml, byte-for-byte deterministic."""
    project, result = _render(env, namespace)
    if project.repo is not None and project.repo.bare:
        raise DsrollError(f"{project.root} is a bare repository: render needs a work tree to write to")
    synced = sync(project.root, result, check=check)
    result = dataclasses.replace(result, warnings=(*result.warnings, *synced.warnings))
    output.render_result(result, synced.changes, check=check, fmt=out.value)
    if check and any(c.drift for c in synced.changes):
        raise typer.Exit(1)


@app.command()
@_errors_to_exit
def diff(
    env: EnvArg,
    against: Annotated[
        str,
        typer.Option(
            "--against",
            help="live (the cluster, normalised by a server-side dry-run), git (HEAD) "
            "or git:REF (the rendered files committed at REF).",
        ),
    ] = "live",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Compare a fresh render with git or the live cluster. Exit 0 no difference, 1 differences, 2 error."""
    project, result = _render(env, namespace)
    report: DiffReport
    if against == "live":
        kube = _connect(kubeconfig, context, as_user, as_group, request_timeout, result.env.context)
        report = against_live(result.env, result.variants, kube)
        from dsroll.rollout.run import replacements_for_diff

        found = replacements_for_diff(kube, result.env, result.variants, report)
        report = dataclasses.replace(report, replacements=tuple(found))
    elif against == "git" or against.startswith("git:"):
        ref = against.partition(":")[2] or "HEAD"
        for warning in check_neighbours(result.env, project.source):
            output.warn(warning)
        report = against_git(result.env, result.variants, project.at(ref), ref)
    else:
        raise DsrollError(f"--against {against!r}: use live, git or git:REF")
    output.diff_report(report, fmt=out.value)
    if report.has_differences:
        raise typer.Exit(1)


@app.command()
@_errors_to_exit
def nodes(
    env: EnvArg,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    as_user: AsOpt = None,
    as_group: AsGroupOpt = None,
    request_timeout: TimeoutOpt = None,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Per live node: every hardware class that matched and the one that won; nodes no variant covers."""
    project = locate(env)
    environment = load_environment(project.source, project.env_path, namespace)
    kube = _connect(kubeconfig, context, as_user, as_group, request_timeout, environment.context)
    output.nodes_report(classify_nodes(environment, kube.list_nodes()), fmt=out.value)


from dsroll import cli_rollout as _rollout_commands  # noqa: E402,F401  (registers its commands on `app`)


def main() -> None:
    app(prog_name=PROG)
