"""A small informer: list once, then follow a watch in a background thread.

The executor waits on it (a condition variable, no polling loop) and reads snapshots,
or, to keep an incremental view (``view.PodIndex``), drains the change log: one entry
per event, so the reader's work per event does not grow with the number of objects.
A watch that ends (the server's timeout, or a dropped connection) is resumed from the last
resourceVersion (bookmarks keep it fresh); 410 Gone relists, and the change log then
starts again with a ``SYNC`` of the full list, so a reader that absorbs it misses nothing
that happened while it was away. Opening a watch and listing ride out an outage within
the client's retry budget; once the budget is spent (``ApiUnavailable``) the error
reaches the waiter at once. Other errors (a watch that ends with an error event) back
off and relist, and reach the waiter after 5 in a row.

``transform`` (client-go's TransformFunc) reduces each object, in the watch thread, to
the fields its reader needs (``view.slim_pod``, ``fleet.slim_node``): a pod or node the
API server sends is mostly managedFields, images and statuses a rollout never reads, and
at 5,000 nodes keeping whole objects costs hundreds of MiB. ``keep_items=False``: only
the change log, no snapshot (for readers that keep their own index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dsroll.errors import ApiUnavailable, DsrollError
from dsroll.kube import WatchExpired
from dsroll.kube.protocols import Watchable


class Informer:
    def __init__(
        self,
        source: Watchable,
        watch_seconds: float = 45,
        *,
        log_changes: bool = False,
        changed: threading.Condition | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        keep_items: bool = True,
    ) -> None:
        self.source = source
        self._transform = transform
        self._keep_items = keep_items
        self._log: list[tuple[str, Any]] | None = [] if log_changes else None
        self.watch_seconds = watch_seconds
        self._items: dict[str, dict[str, Any]] = {}
        self._rv = ""
        self._changed = changed or threading.Condition()  # shared by informers waited on together
        self._generation = 0
        self._stopped = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Informer:
        self._relist()
        self._thread = threading.Thread(target=self._follow, name=f"watch {self.source}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()

    def _relist(self) -> None:
        items, resource_version = self.source.list(self._transform)  # each page reduced as it comes
        with self._changed:
            self._items = {item["metadata"]["uid"]: item for item in items} if self._keep_items else {}
            self._rv = resource_version
            if self._log is not None:
                self._log[:] = [("SYNC", list(items))]
            self._generation += 1
            self._changed.notify_all()

    def _follow(self) -> None:
        failures = 0
        relist = False
        while not self._stopped.is_set():
            try:
                if relist:
                    self._relist()
                    relist = False
                for kind, obj in self.source.watch(self._rv, self.watch_seconds):
                    if self._stopped.is_set():
                        return
                    if kind != "BOOKMARK" and self._transform is not None:
                        obj = self._transform(obj)
                    with self._changed:
                        self._rv = obj["metadata"].get("resourceVersion", self._rv)
                        if kind == "BOOKMARK":
                            continue
                        if not self._keep_items:
                            pass
                        elif kind == "DELETED":
                            self._items.pop(obj["metadata"]["uid"], None)
                        else:
                            self._items[obj["metadata"]["uid"]] = obj
                        if self._log is not None:
                            self._log.append((kind, obj))
                        self._generation += 1
                        self._changed.notify_all()
                failures = 0
            except WatchExpired:
                relist = True  # 410 Gone: the history moved on; start again from a fresh list
            except DsrollError as exc:
                failures += 1
                # The client retried an outage for its whole budget: waiting longer helps no one.
                if isinstance(exc, ApiUnavailable) or failures >= 5:
                    self._fail(exc)
                    return
                time.sleep(min(5.0, 0.2 * 2**failures))
                relist = True
            except Exception as exc:  # a bug: the waiter raises it (exit 70) rather than wait in vain
                self._fail(exc)
                return

    def _fail(self, exc: Exception) -> None:
        """The informer gives up: the waiter (``wait``, ``snapshot``, ``changes``) raises ``exc``."""
        with self._changed:
            self._error = exc
            self._changed.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        assert self._keep_items, "an informer made with keep_items=False"
        with self._changed:
            if self._error is not None:
                raise self._error
            return list(self._items.values())

    def changes(self) -> list[tuple[str, Any]]:
        """What happened since the last call: ``("SYNC", items)`` for a (re)list, then
        ``(ADDED|MODIFIED|DELETED, object)`` per event (needs ``log_changes``)."""
        with self._changed:
            if self._error is not None:
                raise self._error
            assert self._log is not None, "an informer made without log_changes"
            found, self._log = self._log, []
            return found

    def wait(self, timeout: float, seen: int) -> int:
        """Block until something changed after generation ``seen`` or ``timeout`` passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen or self._error is not None, timeout=max(0, timeout))
            if self._error is not None:
                raise self._error
            return self._generation

    @property
    def generation(self) -> int:
        with self._changed:
            return self._generation


class Bell:
    """A wake-up for ``wait_any`` from outside the watches (a background read that finished):
    waited on beside the informers that share its condition, as if it were one."""

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self._generation = 0
        self._error: Exception | None = None

    def ring(self) -> None:
        """Any thread: wake whoever waits in ``wait_any``."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()


def wait_any(informers: Sequence[Informer | Bell], timeout: float, seen: Sequence[int] | None) -> tuple[int, ...]:
    """Block until any of ``informers`` (made with one shared ``changed`` condition; a
    ``Bell`` counts as one) changed after the generations ``seen``, or ``timeout`` passed;
    their generations now."""
    if not informers:
        return ()
    changed = informers[0]._changed

    def now() -> tuple[int, ...]:
        return tuple(i._generation for i in informers)

    with changed:
        changed.wait_for(
            lambda: now() != tuple(seen or ()) or any(i._error is not None for i in informers), timeout=max(0, timeout)
        )
        for informer in informers:
            if informer._error is not None:
                raise informer._error
        return now()
