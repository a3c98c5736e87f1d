"""``Kube.watch`` and the ``Informer`` against a real API server: 410 Gone, relist, event order.

How a resourceVersion expires on kube-apiserver 1.35 (``k8s.io/apiserver`` ``pkg/storage/cacher``,
checked on the sandbox): a watch with a resourceVersion is served from the collection's watch
cache, a ring buffer of recent events. ``getAllEventsSinceLocked`` answers "too old resource
version: RV (OLDEST)" (410, reason Expired) when RV is older than what the buffer can replay:
the resourceVersion of the cache's initial list while it has dropped no event, else the oldest
buffered event. The answer is an HTTP 200 stream whose only line is an ERROR event carrying the
410 Status (not an HTTP 410), which ``Kube.watch`` turns into ``WatchExpired``.

Churning objects cannot push a fresh resourceVersion out of that buffer quickly: the buffer
doubles, instead of dropping its oldest event, while that event is younger than 75 s (up to
102,400 events). Measured on the sandbox: 1,000 configmap writes in 3.7 s grew the configmaps
cache from 100 to 1,600 events and a watch from the resourceVersion read before them still
replayed all 1,000; a fresh sandbox's configmaps cache even replays from resourceVersion "1"
(it was filled from an empty etcd). So these tests use a collection that is younger than the
resourceVersion: a CustomResourceDefinition created after reading it. Its watch cache starts
from a list at a later resourceVersion, so the earlier one is too old for it at once, through
the same server code path as an evicted one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from dsroll import kube as adapter
from dsroll.kube import Kube, KubeOptions, WatchExpired
from dsroll.rollout.watching import Informer

if TYPE_CHECKING:
    from conftest import K8sCluster

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class Collection:
    """A namespaced custom resource collection, and a resourceVersion its watch cache never had."""

    path: str
    api_version: str
    expired_rv: str


@pytest.fixture()
def kube(k8s_cluster: K8sCluster) -> Kube:
    return Kube(KubeOptions(kubeconfig=str(k8s_cluster.kubeconfig_path), context=k8s_cluster.context))


def create_probe(kube: Kube, collection_path: str, api_version: str, name: str, value: int = 1) -> dict[str, Any]:
    body = {"apiVersion": api_version, "kind": "Probe", "metadata": {"name": name}, "spec": {"value": value}}
    result: dict[str, Any] = kube.request("POST", collection_path, body=body)
    return result


def server_state(kube: Kube, collection_path: str) -> dict[str, str]:
    """What the API server holds now: name -> resourceVersion."""
    return state(kube.request("GET", collection_path)["items"])


def state(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items}


def _wait_served(kube: Kube, crd_name: str, path: str, api_version: str, timeout: float = 30) -> None:
    """Until the CRD is Established and a watch from a list's resourceVersion is accepted.

    The first requests to a new custom resource create its watch cache; a list served while
    that cache still initialises comes from etcd and may carry a resourceVersion older than
    the cache's start, so the fixture waits until list-then-watch works (a warm-up object
    proves the watch delivers). Polling here is of the server, not of an informer. Most of
    the fixture's ~2.3 s is the apiserver's own: it holds creates of a custom resource for
    2 s while its CRD has been Established for less than that.
    """
    deadline = time.monotonic() + timeout
    while True:
        crd = kube.request("GET", f"{CRDS}/{crd_name}")
        conditions = crd.get("status", {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            break
        assert time.monotonic() < deadline, f"CRD {crd_name} not Established after {timeout}s: {conditions}"
        time.sleep(0.05)
    for attempt in range(100):
        listed = kube.request("GET", path, allow_missing=True)
        if listed is None:  # not served yet
            assert time.monotonic() < deadline, f"{path} still 404 after {timeout}s"
            time.sleep(0.05)
            continue
        name = f"warmup-{attempt}"
        create_probe(kube, path, api_version, name)
        rv = listed["metadata"]["resourceVersion"]
        try:
            with closing(kube.watch(path, resource_version=rv, timeout=10)) as events:
                kind, obj = next(events)
        except WatchExpired:
            assert time.monotonic() < deadline, f"{path}: a fresh list's resourceVersion still expired after {timeout}s"
            continue
        assert (kind, obj["metadata"]["name"]) == ("ADDED", name)
        return
    raise AssertionError(f"{path}: list-then-watch never worked")


@pytest.fixture()
def fresh_collection(kube: Kube, namespace: str) -> Iterator[Collection]:
    """A CRD created after reading the cluster's resourceVersion: that version is too old for it."""
    expired_rv = str(kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")["metadata"]["resourceVersion"])
    group = f"w{uuid.uuid4().hex[:10]}.e2e.dsroll.io"
    crd_name = f"probes.{group}"
    manifest = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name, "labels": {"dsroll.io/e2e": "true"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "probes", "singular": "probe", "kind": "Probe", "listKind": "ProbeList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    kube.request("POST", CRDS, body=manifest)
    try:
        path = f"/apis/{group}/v1/namespaces/{namespace}/probes"
        _wait_served(kube, crd_name, path, f"{group}/v1")
        yield Collection(path=path, api_version=f"{group}/v1", expired_rv=expired_rv)
    finally:
        kube.request("DELETE", f"{CRDS}/{crd_name}", allow_missing=True)


def wait_until(
    informer: Informer, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    """The informer's snapshot once ``predicate`` holds, blocking in ``Informer.wait`` between changes."""
    deadline = time.monotonic() + timeout
    while True:
        seen = informer.generation  # read before the snapshot, so a change in between wakes the wait
        items = informer.snapshot()
        if predicate(items):
            return items
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"informer did not converge in {timeout}s; it has {state(items)}"
        informer.wait(remaining, seen)


class RelistCountingInformer(Informer):
    """The Informer under test, counting its completed relists (the one thing it does not expose)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relists = 0

    def _relist(self) -> None:
        # The condition's lock is reentrant: holding it makes the count and the relist's
        # generation bump visible to a waiter together.
        with self._changed:
            super()._relist()
            self.relists += 1


def test_watch_from_a_too_old_resource_version_raises_watch_expired(kube: Kube, fresh_collection: Collection) -> None:
    """A resourceVersion older than the collection's watch history ends the watch with ``WatchExpired``.

    ``fresh_collection.expired_rv`` was read before the CRD existed; the CRD's watch cache
    started from a list at a later resourceVersion, so the server answers "too old resource
    version: <expired_rv> (<its start>)", code 410, as an ERROR event (see the module
    docstring for why churn is no quick way to the same answer). The control: a watch from
    a current resourceVersion of the same collection is accepted and delivers an event.
    """
    path = fresh_collection.path
    current = kube.request("GET", path)["metadata"]["resourceVersion"]
    create_probe(kube, path, fresh_collection.api_version, "after-current")
    with closing(kube.watch(path, resource_version=current, timeout=10)) as events:
        kind, obj = next(events)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "after-current")

    started = time.monotonic()
    with (
        pytest.raises(WatchExpired),
        closing(kube.watch(path, resource_version=fresh_collection.expired_rv, timeout=30)) as events,
    ):
        next(events)
    assert time.monotonic() - started < 10, "the server answers 410 at once, not at the watch's timeout"


def test_informer_relists_when_its_resource_version_expired(kube: Kube, fresh_collection: Collection) -> None:
    """An informer that missed changes and holds an expired resourceVersion relists and catches up.

    The informer thread overwrites ``_rv`` with every event it receives, so forcing an expired
    ``_rv`` and then making changes would race with the still-open watch delivering those
    changes (and replacing ``_rv``). Instead the test lets the informer follow the changes,
    then, at a quiet moment and under the informer's lock, puts back the items it had before
    them together with the expired resourceVersion: exactly the state of an informer whose
    watch dropped before the changes and whose resourceVersion expired meanwhile. With
    ``watch_seconds=1`` the open watch ends within a second and gets no bookmark (the server
    schedules one 2 s before a watch's deadline, or a minute on); the next watch gets 410, the informer
    relists, and its snapshot converges to the server's. Afterwards it follows by watching
    again, with no further relist.
    """
    path, api_version = fresh_collection.path, fresh_collection.api_version
    for name in ("a", "b", "c"):
        create_probe(kube, path, api_version, name)
    with RelistCountingInformer(adapter.Collection(kube, path), watch_seconds=1) as informer:
        truth = server_state(kube, path)
        wait_until(informer, lambda items: state(items) == truth)
        before = {item["metadata"]["uid"]: item for item in informer.snapshot()}

        kube.request("DELETE", f"{path}/a")
        kube.patch(f"{path}/b", {"spec": {"value": 2}})
        create_probe(kube, path, api_version, "d")
        truth = server_state(kube, path)
        assert {"b", "c", "d"} <= set(truth) and "a" not in truth
        wait_until(informer, lambda items: state(items) == truth)  # followed through the watch

        with informer._changed:  # private state, set on purpose: see the docstring
            informer._items = before
            informer._rv = fresh_collection.expired_rv
            seen, relists = informer.generation, informer.relists
        assert state(informer.snapshot()) != truth

        items = wait_until(informer, lambda items: state(items) == truth)
        assert informer.relists > relists, "converged without a relist"
        assert informer.generation > seen
        values = {item["metadata"]["name"]: item["spec"]["value"] for item in items}
        assert "a" not in values and (values["b"], values["c"], values["d"]) == (2, 1, 1)

        relists = informer.relists
        create_probe(kube, path, api_version, "e")
        truth = server_state(kube, path)
        wait_until(informer, lambda items: state(items) == truth)
        assert informer.relists == relists, "after the relist the informer should follow by watching, not relisting"


def change_while_waiting(informer: Informer, change: Callable[[], object], timeout: float = 10) -> tuple[int, float]:
    """Block in ``informer.wait`` while another thread makes ``change`` 0.2 s later.

    Returns the generation ``wait`` returned and how long it blocked.
    """
    seen = informer.generation
    errors: list[BaseException] = []

    def run() -> None:
        try:
            change()
        except BaseException as exc:
            errors.append(exc)

    changer = threading.Timer(0.2, run)
    started = time.monotonic()
    changer.start()
    try:
        generation = informer.wait(timeout, seen)
        blocked = time.monotonic() - started
    finally:
        changer.join()
    if errors:
        raise errors[0]
    assert blocked >= 0.2, f"wait returned after {blocked:.2f}s, before the change was made"
    assert blocked < timeout / 2, f"wait did not wake on the change: it returned after {blocked:.2f}s"
    assert generation == seen + 1, f"one change should be one event (generation {seen} -> {generation})"
    return generation, blocked


def test_informer_follows_configmap_events_in_order_and_wait_wakes_on_them(kube: Kube, namespace: str) -> None:
    """ADDED, MODIFIED and DELETED configmaps reach the snapshot in order; ``wait`` wakes on each.

    A label selector keeps out the namespace's ``kube-root-ca.crt``, which the controller
    manager creates at its own pace.
    """
    token = uuid.uuid4().hex[:8]
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    labels = {"dsroll.io/e2e-watch": token}

    def configmap(name: str, value: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}, "data": {"value": value}}

    with Informer(
        adapter.Collection(kube, path, {"labelSelector": f"dsroll.io/e2e-watch={token}"}), watch_seconds=5
    ) as informer:
        assert informer.snapshot() == []
        start = informer.generation

        # Nothing changes: wait runs to its timeout and reports the same generation.
        started = time.monotonic()
        assert informer.wait(0.3, start) == start
        assert time.monotonic() - started >= 0.3

        change_while_waiting(informer, lambda: kube.request("POST", path, body=configmap("one", "v1")))
        [added] = informer.snapshot()
        assert (added["metadata"]["name"], added["data"]) == ("one", {"value": "v1"})

        change_while_waiting(informer, lambda: kube.patch(f"{path}/one", {"data": {"value": "v2"}}))
        [modified] = informer.snapshot()
        assert modified["metadata"]["uid"] == added["metadata"]["uid"]
        assert modified["metadata"]["resourceVersion"] != added["metadata"]["resourceVersion"]
        assert modified["data"] == {"value": "v2"}

        change_while_waiting(informer, lambda: kube.request("DELETE", f"{path}/one"))
        assert informer.snapshot() == []
        assert informer.generation == start + 3

        # A burst, applied in order: were any event of "two" applied out of order, it would linger.
        burst = informer.generation
        kube.request("POST", path, body=configmap("two", "v1"))
        kube.patch(f"{path}/two", {"data": {"value": "v2"}})
        kube.request("DELETE", f"{path}/two")
        kube.request("POST", path, body=configmap("three", "v1"))
        items = wait_until(informer, lambda items: "three" in state(items))
        assert set(state(items)) == {"three"}
        assert informer.generation == burst + 4, "four changes, four events"
