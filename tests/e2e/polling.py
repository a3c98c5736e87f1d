"""Waiting on the sandbox for something no watch announces (a process, a node's status, a taint)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], tuple[bool, T]], timeout: float = 60, interval: float = 0.25) -> T:
    """Poll ``probe`` (-> (done, observation)) until done; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            text = repr(seen)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {text[:1500]}")
        time.sleep(interval)
