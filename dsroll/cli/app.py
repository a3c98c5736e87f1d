"""The typer app, the one place exceptions become exit codes, and ``sandbox`` loaded on use.

Exit codes (README.md, "Exit codes"): 0 success / no difference, 1 differences or
drift, 2 bad input or an error before anything was applied, 5 interrupted after
something was applied, 70 internal error (a bug), 130 Ctrl-C and 143 SIGTERM before
anything was applied. ``Guarded.invoke`` maps them for every command, ``sandbox`` included.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import dsroll
from dsroll import crash, output
from dsroll.cli import signals
from dsroll.errors import DsrollError, SandboxError, Terminated

PROG = os.environ.get("DSROLL_PROG", "dsroll")


def _usage_error_base() -> type[Exception]:
    """click's ``ClickException``, found through typer's public ``BadParameter``.

    Older typer depends on click, newer typer vendors it under a private module; in both
    ``typer.BadParameter`` derives from the class every usage error and ``--help`` exit
    derives from, so its ancestry names it without importing either private path.
    """
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


#: What the CLI framework raises to end a run itself (usage errors, ``Exit``, ``Abort``):
#: it handles these, so ``Guarded`` lets them pass.
_FRAMEWORK_EXITS: tuple[type[BaseException], ...] = (_usage_error_base(), typer.Exit, typer.Abort)


class Guarded(TyperGroup):
    """Every command runs inside ``invoke``: the one place exceptions become exit codes.

    A ``DsrollError`` is one line and its ``exit_code``; typer's own exits, usage errors
    and Ctrl-C (130) pass through; SIGTERM that no run turned into exit 5 is 143; anything
    else is a bug: exit 70, one line, and the traceback in a file (and on stderr with
    ``--debug`` or ``DSROLL_DEBUG=1``).
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXITS:
            raise
        except Terminated:
            output.error("terminated by SIGTERM")
            raise typer.Exit(signals.EXIT_CODE) from None
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


#: The sandbox's own dependencies (its certificates) come with the ``sandbox`` extra.
SANDBOX_EXTRA_MISSING = "the sandbox needs the 'sandbox' extra: pip install 'dsroll[sandbox]'"


@functools.cache
def _sandbox_commands() -> TyperGroup:
    if importlib.util.find_spec("cryptography") is None:
        raise SandboxError(SANDBOX_EXTRA_MISSING)
    from dsroll.sandbox.cli import app as sandbox_app

    group = typer.main.get_group(sandbox_app)
    assert isinstance(group, TyperGroup)
    return group


class SandboxGroup(TyperGroup):
    """``dsroll sandbox``: its commands, and with them certificates and process control, load on use.

    The group itself (name, help, options) is built by typer like any other, so ``dsroll
    --help`` lists it without loading anything; only asking for its commands (running,
    ``dsroll sandbox --help``, completion below it) imports ``dsroll.sandbox.cli``.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return _sandbox_commands().list_commands(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return _sandbox_commands().get_command(ctx, cmd_name)


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
app.add_typer(
    typer.Typer(cls=SandboxGroup, no_args_is_help=True),
    name="sandbox",
    help="A local Kubernetes cluster (real control plane, kwok nodes).",
)


def _print_version(value: bool) -> None:
    """``--version``: the distribution's version, then exit, like kubectl's and helm's."""
    if value:
        typer.echo(f"dsroll {dsroll.version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
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
