"""A command's ``--help`` epilog: examples in kubectl's style, then what each exit code means.

Typer keeps the epilog's line breaks, so every example reads as a comment line and the
command under it, ready to copy.
"""

from __future__ import annotations

from importlib import metadata

from dsroll.cli.app import PROG
from dsroll.errors import exits


def _keeps_line_breaks() -> bool:
    """Typer 0.28 and later print an epilog's line breaks as written; older releases join
    the lines of a paragraph (text between blank lines) into one."""
    try:
        major, minor = (int(part) for part in metadata.version("typer").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (0, 28)


# Between a comment and its command: a line break where typer keeps it, else a paragraph.
_LINE = "\n" if _keeps_line_breaks() else "\n\n"


def epilog(examples: list[tuple[str, str]], *codes: str) -> str:
    """``examples`` as (what it does, the arguments after the program name); then ``exits(*codes)``."""
    shown = "\n\n".join(f"  # {comment}{_LINE}  {PROG} {command}" for comment, command in examples)
    return f"Examples:\n\n{shown}\n\n{exits(*codes)}"
