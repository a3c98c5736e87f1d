"""A command's ``--help`` epilog: examples in kubectl's style, then what each exit code means.

Typer keeps the epilog's line breaks, so every example reads as a comment line and the
command under it, ready to copy.
"""

from __future__ import annotations

from dsroll.cli.app import PROG
from dsroll.errors import exits


def epilog(examples: list[tuple[str, str]], *codes: str) -> str:
    """``examples`` as (what it does, the arguments after the program name); then ``exits(*codes)``."""
    shown = "\n\n".join(f"  # {comment}\n  {PROG} {command}" for comment, command in examples)
    return f"Examples:\n\n{shown}\n\n{exits(*codes)}"
