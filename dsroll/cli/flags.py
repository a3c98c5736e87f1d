"""Flags shared by the commands, each declared once.

``KubeFlags`` is kubectl's genericclioptions ``ConfigFlags``: how to reach the cluster
(--kubeconfig, --context, -n/--namespace, --as, --as-group, --request-timeout). A
command takes one ``kube: KubeFlags`` parameter and ``@with_kube_flags`` puts the six
options in its place, so every command offers them with the same names and help.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dsroll import output
from dsroll.rollout.observe import Scope

if TYPE_CHECKING:
    from dsroll.kube import Kube


@dataclass(frozen=True)
class KubeFlags:
    """How to reach the cluster, as the operator gave it on the command line (``None``: not given)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # for workloads that name none; also picks the environment's default
    as_user: str | None = None
    as_group: str | None = None
    request_timeout: str | None = None

    def connect(self, default_context: str | None) -> Kube:
        """A client for the cluster; ``default_context`` (the environment's) applies when --context is not given."""
        from dsroll.kube import Kube, KubeOptions  # the client loads when a command connects

        options = KubeOptions(self.kubeconfig, self.context, self.as_user, self.as_group, self.request_timeout)
        kube = Kube(options, default_context)
        output.info(f"Using {kube.describe()}")
        return kube


KUBE_FLAGS = KubeFlags()
"""A command's ``kube`` default, for Python's sake: ``with_kube_flags`` always passes the flags given."""

NAMESPACE_HELP = "Namespace for workloads that name none (default: the environment's cluster.namespace)."
_HELP = {
    "kubeconfig": typer.Option("--kubeconfig", metavar="PATH", help="Path to the kubeconfig file to use."),
    "context": typer.Option(
        "--context",
        metavar="NAME",
        help="The kubeconfig context to use (default: the environment's cluster.context, else the current one).",
    ),
    "namespace": typer.Option(
        "-n",
        "--namespace",
        metavar="NAME",
        help=NAMESPACE_HELP,
    ),
    "as_user": typer.Option("--as", metavar="USER", help="Username to impersonate for the operation."),
    "as_group": typer.Option("--as-group", metavar="GROUP", help="Group to impersonate for the operation."),
    "request_timeout": typer.Option(
        "--request-timeout",
        metavar="DURATION",
        help="Client-side timeout of each API request, a duration (30s, 1m30s) or seconds; 0 for none. Default 30s.",
    ),
}
_KUBE_PARAMETERS = tuple(
    inspect.Parameter(
        f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[str | None, _HELP[f.name]]
    )
    for f in fields(KubeFlags)
)

Command = TypeVar("Command", bound=Callable[..., Any])


def with_kube_flags(command: Command) -> Command:
    """Offer the kube flags in place of ``command``'s ``kube`` parameter, and hand it them as one ``KubeFlags``.

    typer reads a command's options from its signature, so the wrapper shows typer the
    six flags where ``kube`` stood (keeping their place in ``--help``).
    """
    signature = inspect.signature(command, eval_str=True)
    parameters = list(signature.parameters.values())
    at = [p.name for p in parameters].index("kube")
    parameters[at : at + 1] = _KUBE_PARAMETERS
    names = [p.name for p in _KUBE_PARAMETERS]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        kube = KubeFlags(**{name: kwargs.pop(name) for name in names})
        return command(kube=kube, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]


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
OutputOpt = Annotated[OutputFormat, typer.Option("-o", "--output", metavar="text|json", help="Output format.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("-n", "--namespace", metavar="NAME", help=NAMESPACE_HELP, show_default=False)
]
"""-n alone, for the commands that never talk to the cluster (``render``, ``rbac``)."""
WorkloadOpt = Annotated[
    list[str] | None,
    typer.Option("--workload", metavar="NAME", help="Only this workload (repeatable).", show_default=False),
]
ClassOpt = Annotated[
    list[str] | None,
    typer.Option("--class", metavar="NAME", help="Only this hardware class (repeatable).", show_default=False),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: start at once and approve every manual pause.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
AllowDirtyOpt = Annotated[
    bool, typer.Option("--allow-dirty", help="Roll out even though the git work tree has uncommitted changes.")
]
EventsOpt = Annotated[bool, typer.Option("--events", help="Print JSON lines on stdout while it runs.")]
RetryBudgetOpt = Annotated[
    str | None,
    typer.Option(
        "--retry-budget",
        metavar="DURATION",
        envvar="DSROLL_RETRY_BUDGET",
        show_envvar=False,
        help=(
            "How long the run rides out an API server that is unreachable, times out or answers 429/5xx "
            "before it stops with exit 5 (resume continues); 0 retries nothing. Default 2m (env DSROLL_RETRY_BUDGET)."
        ),
    ),
]


def scope(workload: list[str] | None, cls: list[str] | None) -> Scope:
    """``--workload`` / ``--class`` as the variants a command acts on."""
    return Scope(tuple(workload or ()), tuple(cls or ()))
