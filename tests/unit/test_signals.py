"""SIGTERM is handled as Ctrl-C: ``Terminated`` in the main thread, once; 143 when nothing was changed.

(A rollout that had changed something ends with its summary and exit 5: test_exit_codes.py
for the run, tests/e2e/test_outages.py for the CLI killed by a cancelled CI job.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dsroll import workflow
from dsroll.cli import app
from dsroll.cli.signals import EXIT_CODE, terminate_as_interrupt
from dsroll.errors import Terminated


def test_sigterm_raises_terminated_once_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_sigterm_does_not_cut_the_cleanup_short() -> None:
    cleaned = False
    with pytest.raises(Terminated), terminate_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored while the first one's cleanup runs
            time.sleep(0.05)
            cleaned = True
    assert cleaned


def test_terminated_before_anything_was_changed_exits_143_with_one_line(
    monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    """Where SIGTERM lands in a command that has changed nothing (here: while it reads the nodes)."""

    def cancelled(*_: Any, **__: Any) -> None:
        raise Terminated()

    monkeypatch.chdir(make_project())
    monkeypatch.setattr(workflow, "nodes", cancelled)
    result = CliRunner().invoke(app, ["nodes", "test"])
    assert result.exit_code == EXIT_CODE == 143
    assert result.output.strip().splitlines() == ["error: terminated by SIGTERM"], result.output
