"""The command line: flags → one core call (``dsroll.workflow``) → output. No decisions live here.

``app`` is the typer app; each module below adds its commands to it, in the order
``--help`` lists them; ``sandbox`` is added by ``app`` itself and loads only when used.
"""

from __future__ import annotations

from dsroll.cli import init, render, rollout, state
from dsroll.cli.app import PROG, app
from dsroll.cli.quickexit import leave
from dsroll.cli.signals import terminate_as_interrupt

__all__ = ["app", "init", "main", "render", "rollout", "state"]


def main() -> None:
    """The console script: run the command, then end the process at once (``quickexit``)."""
    try:
        with terminate_as_interrupt():
            app(prog_name=PROG)
    except SystemExit as done:
        leave(done.code)
    leave(0)
