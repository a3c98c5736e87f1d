"""Durations, in one grammar everywhere: Go's, as kubectl and Kubernetes write them. Pure.

``30s``, ``5m``, ``1m30s``, ``1h2m3.5s``, ``250ms`` and ``0``: a sequence of numbers, each
with its unit (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``). The environment file's
``pause`` and ``readyTimeout`` and every ``--…timeout`` flag read the same way, so a value
copied from one to the other, or from ``kubectl --request-timeout``, means the same.
Command-line timeouts also take a bare number of seconds, as kubectl's does.
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_WHOLE = re.compile(r"^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
PATTERN = _WHOLE.pattern  # anchored; the JSON Schema uses it too (a regex both Python and ECMA read alike)
HINT = "use a duration like 30s, 5m or 1m30s (or 0)"


def is_duration(text: str) -> bool:
    return text == "0" or bool(_WHOLE.match(text))


def seconds(text: str) -> float:
    """The seconds ``text`` stands for; ValueError (saying what is expected) if it is no duration."""
    if not is_duration(text):
        raise ValueError(f"{text!r} is not a duration: {HINT}")
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def flag_seconds(text: str) -> float:
    """A command-line timeout: a duration, or a bare number of seconds (kubectl's --request-timeout)."""
    stripped = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        return float(stripped)
    return seconds(stripped)
