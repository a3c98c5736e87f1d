"""SIGTERM handled as Ctrl-C: a cancelled CI job stops a rollout the way an operator would.

Python's default for SIGTERM ends the process on the spot: no ``finally`` runs, so the
rollout's Lease is not released, no summary is printed, and the exit status says nothing
a CI job can act on. ``terminate_as_interrupt`` makes the first SIGTERM raise ``Terminated``
(a ``KeyboardInterrupt``) in the main thread, so it takes Ctrl-C's path: a run that had
changed the cluster prints its summary with ``"result": "interrupted"`` and exits 5
(``rollout/run.py``), one that had not exits 143 (``app.Guarded``). Later SIGTERMs are
ignored while that cleanup runs (SIGKILL still ends it).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from dsroll.errors import Terminated

#: What a shell reports for a process that SIGTERM ended: 128 + 15.
EXIT_CODE = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup it starts must finish
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises ``Terminated`` in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
