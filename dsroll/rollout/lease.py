"""One rollout per variant at a time: a coordination.k8s.io Lease named dsroll-<variant>.

The holder is ``user@host/pid``. A Lease not renewed within its duration is stale and
taken over; so is one held by a process of this host that no longer runs (a killed CLI
need not wait for the duration to pass before ``resume``).

An outage can outlast the Lease (the retry budget is longer than its 30 s), and another
process may then take it over. So the held Lease guards every write the client sends
(``guard_writes``): once its last renewal is older than the duration less a margin, the
write waits for a renewal first. The renewal carries the Lease's resourceVersion, so it
succeeds only if nobody wrote the Lease since: the lock is proven still held, or the run
stops with ``LockHeld`` (exit 4) naming who has it. A renewal whose answer was lost (it
went through, the retry meets a 409) is told apart by reading the Lease: still ours.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsroll import names
from dsroll.errors import ClusterError, DsrollError
from dsroll.kube.protocols import LeasesApi

LEASE_SECONDS = 30
RENEW_EVERY = 10.0
#: A write waits for a renewal once the last one is this close to the Lease's expiry.
EXPIRY_MARGIN = 5.0


class LockHeld(DsrollError):
    """Another rollout holds the variant's Lease."""

    exit_code = 4


def holder_identity() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}"


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _holder_gone(holder: str) -> bool:
    """True for a holder on this host whose process is no longer a running dsroll."""
    host, _, pid = holder.rpartition("@")[2].partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return int(pid) != os.getpid() and b"dsroll" not in cmdline


class Lease:
    def __init__(self, leases: LeasesApi, namespace: str, variant: str) -> None:
        self.leases = leases
        self.namespace = namespace
        self.name = names.lease_name(variant)
        self.variant = variant
        self.holder = holder_identity()
        self._renewed = 0.0  # monotonic: when the last successful renewal was sent
        self._object: dict[str, Any] | None = None
        self._lock = threading.RLock()  # the pod deletes of a batch check it from their threads
        self._unguard: Callable[[], None] | None = None

    def _spec(self, now: float, acquired: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
        }

    def acquire(self) -> None:
        now, sent = time.time(), time.monotonic()
        existing = self.leases.get(self.namespace, self.name)
        try:
            if existing is None:
                self._object = self.leases.create(self.namespace, self.name, self._spec(now))
            else:
                self._take_over(existing, now)
        except ClusterError as exc:
            if exc.status != 409:
                raise
            mine = self.leases.get(self.namespace, self.name)  # a retry after an answer that was lost?
            if mine is None or (mine.get("spec") or {}).get("holderIdentity") != self.holder:
                raise LockHeld(
                    f"{self.variant}: another rollout took the lock {self.name} at the same moment"
                ) from None
            self._object = mine
        self._renewed = sent
        self._unguard = self.leases.guard_writes(self.ensure_held)

    def _take_over(self, existing: dict[str, Any], now: float) -> None:
        spec = existing.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = _parse(spec.get("renewTime")) or 0.0
        duration = spec.get("leaseDurationSeconds") or LEASE_SECONDS
        live = holder and holder != self.holder and now < renewed + duration and not _holder_gone(holder)
        if live:
            acquired = _parse(spec.get("acquireTime")) or renewed
            raise LockHeld(
                f"{self.namespace}/{self.variant} is being rolled out by {holder} "
                f"(lock {self.name} held for {now - acquired:.0f}s, renewed {now - renewed:.0f}s ago); "
                f"it expires {renewed + duration - now:.0f}s after its last renewal"
            )
        existing["spec"] = self._spec(now)
        self._object = self.leases.replace(self.namespace, existing)

    def renew(self, force: bool = False) -> None:
        """Renew when due (every ``RENEW_EVERY``), or now with ``force``."""
        with self._lock:
            if self._object is None or (not force and time.monotonic() - self._renewed < RENEW_EVERY):
                return
            self._renew(self._object)

    def ensure_held(self) -> None:
        """Before a write: if the Lease may have expired (an outage outlasted it), renew it
        first, which proves nobody took it meanwhile, or raises ``LockHeld``."""
        with self._lock:
            if self._object is not None and time.monotonic() - self._renewed >= LEASE_SECONDS - EXPIRY_MARGIN:
                self._renew(self._object)

    def _renew(self, held: dict[str, Any]) -> None:
        sent = time.monotonic()
        for attempt in (1, 2):
            held["spec"] = self._spec(time.time(), held["spec"].get("acquireTime"))
            try:
                self._object = self.leases.replace(self.namespace, held)
                self._renewed = sent
                return
            except ClusterError as exc:
                if exc.status not in (404, 409):  # changed or deleted since our last renewal
                    raise
                found = self.leases.get(self.namespace, self.name)
                holder = ((found or {}).get("spec") or {}).get("holderIdentity")
                if found is None or holder != self.holder or attempt == 2:
                    who = holder if found is not None and holder else "another rollout (since released)"
                    raise LockHeld(
                        f"{self.variant}: lost the lock {self.name} to {who} (not renewed within "
                        f"{LEASE_SECONDS}s: was the API server away?); this run stops here"
                    ) from None
                held = found  # our earlier renewal went through; its answer was lost

    def release(self) -> None:
        with self._lock:
            if self._unguard is not None:
                self._unguard()
                self._unguard = None
            if self._object is None:
                return
            with contextlib.suppress(ClusterError):  # else it expires by itself
                self.leases.delete(self.namespace, self.name, self._object["metadata"]["uid"])
            self._object = None
