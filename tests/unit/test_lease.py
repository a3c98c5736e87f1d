"""The rollout lock against a fake Leases API: taken, refused while held, taken over when stale."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from dsroll.errors import ClusterError
from dsroll.kube.protocols import LeasesApi
from dsroll.rollout import lease as lease_module
from dsroll.rollout.lease import LEASE_SECONDS, Lease, LockHeld

NS, VARIANT = "agents", "agent-general"


class FakeLeases:
    """Leases in a dict, with the API server's optimistic concurrency: a stale resourceVersion is a 409."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        if (namespace, name) in self.objects:
            raise ClusterError(f"leases {name} already exists", status=409)
        meta = {"name": name, "namespace": namespace, "uid": f"uid-{next(self._uids)}"}
        self.objects[namespace, name] = {"metadata": meta, "spec": dict(spec)}
        return self.replace(namespace, self.objects[namespace, name], check=False)

    def replace(self, namespace: str, lease: Mapping[str, Any], check: bool = True) -> dict[str, Any]:
        key = (namespace, lease["metadata"]["name"])
        stored = self.objects[key]
        if check and stored["metadata"].get("resourceVersion") != lease["metadata"].get("resourceVersion"):
            raise ClusterError("the object has been modified", status=409)
        updated = copy.deepcopy(dict(lease))
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = updated
        return copy.deepcopy(updated)

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        found = self.objects.get((namespace, name))
        if found is None or found["metadata"]["uid"] != uid:
            return False
        del self.objects[namespace, name]
        return True


def a_lease(leases: LeasesApi, holder: str) -> Lease:
    lock = Lease(leases, NS, VARIANT)
    lock.holder = holder
    return lock


def test_a_held_lease_refuses_a_second_rollout_naming_the_holder() -> None:
    leases = FakeLeases()
    first = a_lease(leases, "alice@laptop/1")
    first.acquire()
    with pytest.raises(LockHeld, match=r"is being rolled out by alice@laptop/1"):
        a_lease(leases, "bob@ci/2").acquire()
    first.release()
    assert leases.objects == {}
    a_lease(leases, "bob@ci/2").acquire()


def test_a_stale_lease_is_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    leases = FakeLeases()
    now = 1_700_000_000.0
    monkeypatch.setattr(lease_module.time, "time", lambda: now)
    a_lease(leases, "alice@laptop/1").acquire()  # never released: the process was killed elsewhere
    now += LEASE_SECONDS + 1
    second = a_lease(leases, "bob@ci/2")
    second.acquire()
    (stored,) = leases.objects.values()
    assert stored["spec"]["holderIdentity"] == "bob@ci/2"


def test_a_renewal_after_someone_else_took_the_lease_loses_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    leases = FakeLeases()
    now = 1_700_000_000.0
    monkeypatch.setattr(lease_module.time, "time", lambda: now)
    first = a_lease(leases, "alice@laptop/1")
    first.acquire()
    now += LEASE_SECONDS + 1
    a_lease(leases, "bob@ci/2").acquire()
    with pytest.raises(LockHeld, match="lost the lock"):
        first.renew(force=True)
