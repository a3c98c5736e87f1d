"""The console script ends the process at once, with the status, output and atexit work
of a normal exit (dsroll/cli/quickexit.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dsroll.cli.quickexit import status


@pytest.mark.parametrize(
    ("code", "expected"), [(None, 0), (0, 0), (2, 2), (130, 130), (256 + 5, 5), (True, 1), ("a message", 1)]
)
def test_status_is_what_sys_exit_gives(code: object, expected: int) -> None:
    assert status(code) == expected


def _leave(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import atexit, sys
        from dsroll.cli.quickexit import leave
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        sys.stdout.write("buffered, no newline")
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("code", "expected"), [("None", 0), ("3", 3), ("'refused'", 1)])
def test_leave_flushes_output_runs_atexit_and_exits_with_the_status(code: str, expected: int) -> None:
    done = _leave(f"leave({code})\nprint('never printed')\n")
    assert done.returncode == expected
    assert done.stdout == "buffered, no newline"
    assert "atexit ran" in done.stderr
    assert ("refused" in done.stderr) == (expected == 1)


def test_the_console_script_keeps_exit_codes(tmp_path: object) -> None:
    """A usage error is still 2 and --version still 0 through ``main``."""
    run = [sys.executable, "-m", "dsroll"]
    assert subprocess.run([*run, "--no-such-flag"], capture_output=True, timeout=60).returncode == 2
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip()
