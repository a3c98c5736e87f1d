"""dsroll: staged, per-hardware-class DaemonSet rollouts from git."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed distribution's version: pyproject.toml's ``version`` is the one source.

    A checkout run without installing (``PYTHONPATH=.``) has no metadata; it says so
    rather than guess.
    """
    try:
        return metadata.version("dsroll")
    except metadata.PackageNotFoundError:
        return "(not installed)"
