"""One rollout per variant at a time: a coordination.k8s.io Lease named dsroll-<variant>.

The holder is ``user@host/pid``. A Lease not renewed within its duration is stale and
taken over; so is one held by a process of this host that no longer runs (a killed CLI
need not wait for the duration to pass before ``resume``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsroll import names
from dsroll.errors import ClusterError, DsrollError
from dsroll.kube.protocols import LeasesApi

LEASE_SECONDS = 30
RENEW_EVERY = 10.0


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
        self._renewed = 0.0
        self._object: dict[str, Any] | None = None

    def _spec(self, now: float, acquired: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
        }

    def acquire(self) -> None:
        now = time.time()
        existing = self.leases.get(self.namespace, self.name)
        try:
            if existing is None:
                self._object = self.leases.create(self.namespace, self.name, self._spec(now))
            else:
                self._take_over(existing, now)
        except ClusterError as exc:
            if exc.status == 409:
                raise LockHeld(
                    f"{self.variant}: another rollout took the lock {self.name} at the same moment"
                ) from None
            raise
        self._renewed = now

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
        now = time.time()
        if self._object is None or (not force and now - self._renewed < RENEW_EVERY):
            return
        self._object["spec"] = self._spec(now, self._object["spec"].get("acquireTime"))
        try:
            self._object = self.leases.replace(self.namespace, self._object)
        except ClusterError as exc:
            if exc.status == 409:
                raise LockHeld(f"{self.variant}: lost the lock {self.name} to another rollout") from None
            raise
        self._renewed = now

    def release(self) -> None:
        if self._object is None:
            return
        with contextlib.suppress(ClusterError):  # else it expires by itself
            self.leases.delete(self.namespace, self.name, self._object["metadata"]["uid"])
        self._object = None
