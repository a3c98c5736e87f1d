"""``kubectl-dsroll``: the kubectl plugin entry point that ``pip install`` puts on PATH.

kubectl runs any ``kubectl-<name>`` on PATH for ``kubectl <name>``. Help, usage and
"run … to continue" hints must then say ``kubectl dsroll``, so the program name is set
before the CLI is imported (it reads ``DSROLL_PROG`` once, as the checkout's
``kubectl-dsroll`` script sets it).
"""

from __future__ import annotations

import os

PROG = "kubectl dsroll"


def main() -> None:
    os.environ["DSROLL_PROG"] = PROG
    from dsroll.cli import main as cli_main

    cli_main()
