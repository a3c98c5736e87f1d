"""What the rollout code needs of the cluster, as small protocols.

``Kube``'s resources satisfy them; a test hands in a fake that keeps objects in a dict,
and the lease, the node replacement and the informer run without a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist and watch again."""


class Watchable(Protocol):
    """A collection an ``Informer`` lists once and then follows."""

    def list(
        self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """The items, each reduced by ``transform`` as it arrives, and the list's resourceVersion."""
        ...

    def watch(self, resource_version: str, timeout: float) -> Iterator[tuple[str, dict[str, Any]]]: ...


class SeenWatchable(Watchable, Protocol):
    def seen(self) -> Watchable:
        """The collection, listed no older than this process last listed it (``Collection.seen``)."""
        ...


class PodsApi(Protocol):
    def collection(
        self, namespace: str | None = None, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> SeenWatchable: ...

    def delete(self, namespace: str, name: str, uid: str) -> bool: ...


class LeasesApi(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete(self, namespace: str, name: str, uid: str) -> bool: ...

    def guard_writes(self, check: Callable[[], None]) -> Callable[[], None]:
        """Run ``check`` before every write of the workloads; returns its remover."""
        ...
