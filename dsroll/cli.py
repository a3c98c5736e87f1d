"""The typer app: flags → one core call → output. No decisions live here.

Exit codes (README.md, "Exit codes"): 0 success / no difference, 1 differences or
drift, 2 bad input or an error before anything was applied, 5 interrupted after
something was applied, 70 internal error (a bug). ``Guarded.invoke`` is the one place
that turns exceptions into exit codes, for every command including ``sandbox``.
"""

from __future__ import annotations

import dataclasses
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from dsroll import crash, output
from dsroll.diff import DiffReport, against_git, against_live
from dsroll.errors import BAD_INPUT, DsrollError, exits
from dsroll.gitsource import Project, locate
from dsroll.kube import Kube, KubeOptions
from dsroll.masking import compile_mask
from dsroll.nodes import classify_nodes
from dsroll.render import RenderResult, load_environment, render_environment
from dsroll.rendered import check_neighbours, sync
from dsroll.sandbox.cli import app as sandbox_app

PROG = os.environ.get("DSROLL_PROG", "dsroll")


class Guarded(TyperGroup):
    """Every command runs inside ``invoke``: the one place exceptions become exit codes.

    A ``DsrollError`` is one line and its ``exit_code``; typer's own exits, usage errors
    and Ctrl-C (130) pass through; anything else is a bug: exit 70, one line, and the
    traceback in a file (and on stderr with ``--debug`` or ``DSROLL_DEBUG=1``).
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except DsrollError as exc:
            output.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if ctx.params.get("debug") or _env_debug():
                output.err.print(crash.format_traceback(exc), markup=False, highlight=False, end="")
            output.err.print(crash.describe(exc, crash.save_traceback(exc)), markup=False, style="bold red")
            raise typer.Exit(crash.EXIT_CODE) from None


def _env_debug() -> bool:
    return os.environ.get("DSROLL_DEBUG", "").lower() in ("1", "true", "yes", "on")


app = typer.Typer(
    cls=Guarded,
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


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="DSROLL_DEBUG",
            help="On an internal error (exit 70), print the traceback to stderr too.",
        ),
    ] = False,
) -> None:
    """Options for every command (``dsroll --debug render dev``); ``Guarded`` reads them."""


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


@app.command(epilog=exits("1 drift (--check)", BAD_INPUT))
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


@app.command(epilog=exits("1 differences", BAD_INPUT))
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
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets",
            help="Show the values of env entries whose name matches the environment's maskEnv (masked as ***).",
        ),
    ] = False,
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
    mask = None if show_secrets else compile_mask(result.env.mask_env)
    report: DiffReport
    if against == "live":
        kube = _connect(kubeconfig, context, as_user, as_group, request_timeout, result.env.context)
        report = against_live(result.env, result.variants, kube, mask=mask)
        from dsroll.rollout.observe import replacements_for_diff

        found = replacements_for_diff(kube, result.env, result.variants, report)
        report = dataclasses.replace(report, replacements=tuple(found))
    elif against == "git" or against.startswith("git:"):
        ref = against.partition(":")[2] or "HEAD"
        for warning in check_neighbours(result.env, project.source):
            output.warn(warning)
        report = against_git(result.env, result.variants, project.at(ref), ref, mask)
    else:
        raise DsrollError(f"--against {against!r}: use live, git or git:REF")
    output.diff_report(report, fmt=out.value)
    if report.has_differences:
        raise typer.Exit(1)


@app.command(epilog=exits(BAD_INPUT))
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
