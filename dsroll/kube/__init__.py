"""The one door to the cluster: the client (``client.py``) and its typed resources (``resources.py``).

Nothing outside this package builds a REST path or a request body; the rollout code asks
for what it needs through the small protocols in ``protocols.py``.

The client (and with it the kubernetes package, a third of dsroll's start-up) loads on
first use of ``Kube``: ``render``, ``diff --against git``, ``schema`` and ``--help`` never
need it. Modules that only name ``Kube`` in type hints import it under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsroll.kube.protocols import WatchExpired
from dsroll.kube.resources import FIELD_MANAGER, Collection

if TYPE_CHECKING:
    from dsroll.kube.client import Kube, KubeOptions, parse_request_timeout

__all__ = ["FIELD_MANAGER", "Collection", "Kube", "KubeOptions", "WatchExpired", "parse_request_timeout"]

_LAZY = frozenset({"Kube", "KubeOptions", "parse_request_timeout"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dsroll.kube import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
