"""The rollout lock against a fake Leases API: taken, refused while held, taken over when stale,
and proven still held before a write after an outage longer than the Lease."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from dsroll.errors import ClusterError
from dsroll.kube.protocols import LeasesApi
from dsroll.rollout import lease as lease_module
from dsroll.rollout.lease import EXPIRY_MARGIN, LEASE_SECONDS, Lease, LockHeld

NS, VARIANT = "agents", "agent-general"


class FakeLeases:
    """Leases in a dict, with the API server's optimistic concurrency: a stale resourceVersion is a 409."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self.guards: list[Callable[[], None]] = []  # what the client would run before each write

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
        if key not in self.objects:
            raise ClusterError(f"leases {key[1]} not found", status=404)
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

    def guard_writes(self, check: Callable[[], None]) -> Callable[[], None]:
        self.guards.append(check)
        return lambda: self.guards.remove(check)


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


class Clocks:
    """Wall and monotonic time, moved by the test (the Lease writes one and measures with the other)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.mono = 1_700_000_000.0, 1000.0
        monkeypatch.setattr(lease_module.time, "time", lambda: self.wall)
        monkeypatch.setattr(lease_module.time, "monotonic", lambda: self.mono)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def test_a_held_lease_guards_writes_until_it_is_released() -> None:
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    assert leases.guards == [lock.ensure_held]
    lock.release()
    assert leases.guards == []


def test_a_write_within_the_lease_duration_needs_no_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(monkeypatch)
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    version = leases.get(NS, lock.name)["metadata"]["resourceVersion"]  # type: ignore[index]
    clocks.advance(LEASE_SECONDS - EXPIRY_MARGIN - 1)
    lock.ensure_held()
    assert leases.get(NS, lock.name)["metadata"]["resourceVersion"] == version  # type: ignore[index]


def test_after_an_outage_longer_than_the_lease_a_write_first_proves_the_lock_is_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clocks = Clocks(monkeypatch)
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    clocks.advance(LEASE_SECONDS + 20)  # the API server was away; nobody else came
    lock.ensure_held()
    stored = leases.get(NS, lock.name)
    assert stored is not None and stored["spec"]["holderIdentity"] == "alice@laptop/1"
    assert lease_module._parse(stored["spec"]["renewTime"]) == clocks.wall, "renewed before the write"


def test_after_an_outage_in_which_another_rollout_took_the_lock_the_write_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clocks = Clocks(monkeypatch)
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    clocks.advance(LEASE_SECONDS + 1)
    a_lease(leases, "bob@ci/2").acquire()  # alice's Lease looked expired to bob
    with pytest.raises(LockHeld, match=r"lost the lock dsroll-agent-general to bob@ci/2 \(not renewed within 30s"):
        lock.ensure_held()
    assert LockHeld.exit_code == 4


def test_a_lock_released_by_another_rollout_in_the_meantime_is_lost_too(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(monkeypatch)
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    clocks.advance(LEASE_SECONDS + 1)
    other = a_lease(leases, "bob@ci/2")
    other.acquire()
    other.release()  # bob finished the rollout while alice was cut off
    with pytest.raises(LockHeld, match="to another rollout \\(since released\\)"):
        lock.ensure_held()


def test_a_renewal_whose_answer_was_lost_is_still_ours() -> None:
    """The PUT went through but its answer did not come back; the client's retry then meets a 409."""
    leases = FakeLeases()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    stale = copy.deepcopy(lock._object)
    lock.renew(force=True)  # went through ...
    lock._object = stale  # ... but the process never heard: it still has the old resourceVersion
    lock.renew(force=True)
    stored = leases.get(NS, lock.name)
    assert stored is not None and stored["spec"]["holderIdentity"] == "alice@laptop/1"


def test_a_create_whose_answer_was_lost_is_still_ours() -> None:
    class LostAnswer(FakeLeases):
        def create(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
            super().create(namespace, name, spec)  # stored, then the retry of the request finds it
            raise ClusterError(f"leases {name} already exists", status=409)

    leases = LostAnswer()
    lock = a_lease(leases, "alice@laptop/1")
    lock.acquire()
    with pytest.raises(LockHeld, match="is being rolled out by alice@laptop/1"):
        a_lease(leases, "bob@ci/2").acquire()
