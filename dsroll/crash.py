"""Internal errors: the traceback goes to a file, the terminal gets one line.

A bug must never look like an answer. CI reads exit 1 as "differences found" and 2 as
"nothing was applied", so an unexpected exception exits 70 (BSD's EX_SOFTWARE) with one
line naming it, and the full traceback is kept in a file for the bug report (or shown
with ``--debug``). Writing that file must never be a second failure.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

from dsroll import version

EXIT_CODE = 70
MESSAGE_MAX = 300


def crash_dir() -> Path:
    """``$DSROLL_STATE_DIR/crash``, else ``$XDG_STATE_HOME/dsroll/crash`` (~/.local/state)."""
    override = os.environ.get("DSROLL_STATE_DIR")
    if override:
        return Path(override).expanduser() / "crash"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "dsroll" / "crash"


def _report(exc: BaseException) -> str:
    lines = [
        f"dsroll {version()}, Python {platform.python_version()} on {platform.platform()}",
        f"argv: {sys.argv!r}",
        f"time: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        "",
    ]
    return "\n".join(lines) + "".join(traceback.format_exception(exc))


def save_traceback(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc``; its path, or None when no place would take it."""
    text = _report(exc)
    name = f"crash-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    try:
        folder = crash_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text)
        return path
    except OSError:
        pass
    try:
        fd, tmp = tempfile.mkstemp(prefix="dsroll-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return Path(tmp)
    except OSError:
        return None


def describe(exc: BaseException, saved: Path | None) -> str:
    """The one line an internal error gets on stderr."""
    message = " ".join(str(exc).split()) or "(no message)"
    if len(message) > MESSAGE_MAX:  # the one line stays readable; the file has it all
        message = message[: MESSAGE_MAX - 1] + "…"
    where = f"traceback written to {saved}" if saved else "the traceback could not be saved: run with --debug"
    return f"internal error: {type(exc).__name__}: {message} (a bug in dsroll; {where})"


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
