"""What keeps a rollout's work per event and its memory bounded as the fleet grows.

Slim objects (an informer keeps only what the rollout reads, and reads the same from
it), paged lists, and the timers that let the pod swap judge only the nodes whose pods
changed or whose time came (docs/performance.md says why each one matters).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from dsroll.kube.resources import PAGE, Collection
from dsroll.plan import PodView
from dsroll.rollout.fleet import NodeView, slim_node, watched_node
from dsroll.rollout.health import Gate, assess
from dsroll.rollout.podswap import Timers
from dsroll.rollout.view import PodIndex, slim_pod


def a_pod(**status: Any) -> dict[str, Any]:
    """A pod as the API server sends it: managedFields, a full spec, statuses."""
    return {
        "metadata": {
            "name": "agent-x1", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
            "labels": {"controller-revision-hash": "abc", "app": "agent"},
            "ownerReferences": [{"uid": "ds-1", "controller": True, "kind": "DaemonSet", "name": "agent"}],
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {"x": {}}}}] * 5,
        },
        "spec": {
            "nodeName": "node-1", "containers": [{"name": "agent", "image": "a:1", "env": [{"name": "X"}] * 20}],
            "affinity": {"nodeAffinity": {"required": "…"}}, "tolerations": [{"operator": "Exists"}],
        },
        "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIPs": [{"ip": "10.1.0.1"}], **status},
    }  # fmt: skip


POD_STATUSES = [
    {"conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [{"name": "agent", "restartCount": 0}]},
    {"conditions": [{"type": "Ready", "status": "False"}]},
    {"containerStatuses": [{"name": "agent", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "x"}}}]},
    {"containerStatuses": [{"name": "agent", "restartCount": 2}], "conditions": []},
    {"phase": "Failed", "reason": "Evicted"},
    {"initContainerStatuses": [{"name": "init", "state": {"waiting": {"reason": "ErrImagePull"}}}]},
]


@pytest.mark.parametrize("status", POD_STATUSES)
def test_a_slim_pod_reads_as_the_whole_one(status: dict[str, Any]) -> None:
    pod = a_pod(**status)
    slim = slim_pod(pod)
    assert PodView.of(slim) == PodView.of(pod)
    gate = Gate(ready_timeout=60, min_ready_seconds=0)
    for ready_since in (None, 0.0):
        for now in (1.0, 100.0):
            whole = assess(pod, gate=gate, started=0.0, ready_since=ready_since, lost_ready=False, now=now)
            assert assess(slim, gate=gate, started=0.0, ready_since=ready_since, lost_ready=False, now=now) == whole
    index, whole_index = PodIndex("ds-1", ["node-1"], "abc"), PodIndex("ds-1", ["node-1"], "abc")
    index.apply("ADDED", slim)
    whole_index.apply("ADDED", pod)
    assert (index.updated, index.unavailable) == (whole_index.updated, whole_index.unavailable)
    assert slim["metadata"]["resourceVersion"] == "42"  # a watch resumes from it
    assert len(json.dumps(slim)) < len(json.dumps(pod)) / 3


@pytest.mark.parametrize(
    "node",
    [
        {"metadata": {"name": "n1", "labels": {"dsroll.io/hold": "true"}}, "spec": {"unschedulable": True},
         "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                   {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                    "message": "Kubelet stopped posting node status."}], "images": [{"x": 1}] * 30}},
        {"metadata": {"name": "n2", "labels": {}, "resourceVersion": "7"}, "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "n3"}, "status": {}},
    ],
)  # fmt: skip
def test_a_slim_node_reads_as_the_whole_one(node: dict[str, Any]) -> None:
    slim = slim_node(node)
    assert NodeView.of(slim) == NodeView.of(node)
    assert slim["metadata"]["labels"] == (node["metadata"].get("labels") or {})  # the plan orders and classes by them
    watched = watched_node(node)
    assert NodeView.of(watched) == NodeView.of(node)
    assert set(watched["metadata"]["labels"]) <= {"dsroll.io/hold"}


class Pages:
    """A kube that answers a list in pages of ``limit``, as the API server does."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.queries: list[dict[str, str]] = []
        self.listed: dict[Any, str] = {}

    def request(self, method: str, path: str, *, query: dict[str, str]) -> dict[str, Any]:
        self.queries.append(dict(query))
        start = int(query.get("continue", "0"))
        end = min(self.total, start + int(query["limit"]))
        items = [{"metadata": {"name": f"n{i}", "managedFields": ["…"]}} for i in range(start, end)]
        return {"items": items, "metadata": {"resourceVersion": "99", "continue": str(end) if end < self.total else ""}}


@pytest.mark.parametrize("total", [0, 1, PAGE, PAGE + 1, 3 * PAGE + 7])
def test_a_list_comes_in_pages_each_item_reduced(total: int) -> None:
    kube = Pages(total)
    items, version = Collection(kube, "/api/v1/nodes", {"labelSelector": "a=b"}).list(  # type: ignore[arg-type]
        lambda item: {"metadata": {"name": item["metadata"]["name"]}}
    )
    assert [i["metadata"]["name"] for i in items] == [f"n{i}" for i in range(total)] and version == "99"
    assert all("managedFields" not in i["metadata"] for i in items)
    assert len(kube.queries) == max(1, -(-total // PAGE))
    assert all(q["labelSelector"] == "a=b" and q["limit"] == str(PAGE) for q in kube.queries)


@pytest.mark.parametrize("total", [1, PAGE + 1, 2 * PAGE + 3])
def test_a_list_not_older_than_a_version_asks_it_on_the_first_page_only(total: int) -> None:
    """The API server refuses a resourceVersion beside a continue token: the token carries the snapshot."""
    kube = Pages(total)
    found = Collection(kube, "/apis/apps/v1/controllerrevisions", {"labelSelector": "a=b"}, not_older_than="42")  # type: ignore[arg-type]
    items, _ = found.list()
    assert len(items) == total
    first, *rest = kube.queries
    assert first["resourceVersion"] == "42" and first["resourceVersionMatch"] == "NotOlderThan"
    assert all("resourceVersion" not in q and "resourceVersionMatch" not in q and q["continue"] for q in rest)
    assert all(q["labelSelector"] == "a=b" and q["limit"] == str(PAGE) for q in kube.queries)
    kube = Pages(total)
    Collection(kube, "/api/v1/nodes", {"labelSelector": "a=b"}).list()  # type: ignore[arg-type]
    assert all("resourceVersion" not in q for q in kube.queries)  # a consistent read


def test_a_collection_seen_is_listed_no_older_than_this_process_last_listed_it() -> None:
    """The rollout's informers list what the planning listed a moment ago: from the API
    server's cache (NotOlderThan what was seen), not a consistent read that waits for it."""
    kube = Pages(PAGE + 1)
    nodes = Collection(kube, "/api/v1/nodes", {"labelSelector": "a=b"})  # type: ignore[arg-type]
    assert nodes.seen() == nodes, "never listed: a consistent read"
    nodes.list()
    kube.queries.clear()
    nodes.seen().list()
    first, rest = kube.queries
    assert (first["resourceVersion"], first["resourceVersionMatch"]) == ("99", "NotOlderThan")
    assert "resourceVersion" not in rest and rest["continue"]
    other = Collection(kube, "/api/v1/nodes", {"labelSelector": "a=c"})  # type: ignore[arg-type]
    assert other.seen() == other, "another selector is another collection"
    pinned = replace(nodes, not_older_than="7")
    assert pinned.seen() == pinned, "a version asked for stands"


def test_timers_give_the_nodes_due_once_and_forget_the_rest() -> None:
    timers = Timers()
    timers.at(5.0, "a")
    timers.at(5.0, "a")  # asked again for the same time: one entry
    timers.at(3.0, "b")
    timers.at(9.0, "c")
    assert timers.next() == 3.0 and not timers.due(2.0) and timers.due(5.0)
    assert timers.pop_due(5.0, {"a"}) == {"a"}  # b is no longer in flight: forgotten
    assert timers.next() == 9.0 and timers.pop_due(5.0, {"a", "b"}) == set()
    timers.at(1.0, "c")  # an earlier time for c
    assert timers.pop_due(1.0, {"c"}) == {"c"}
