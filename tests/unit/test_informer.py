"""The informer through an outage, against a scripted collection: a watch that drops is
resumed from where it was, 410 Gone relists into a SYNC, a spent retry budget reaches the
waiter at once, and a bug in the watch thread is raised, not waited on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dsroll.errors import ApiUnavailable
from dsroll.kube import WatchExpired
from dsroll.rollout.view import PodIndex
from dsroll.rollout.watching import Informer


def pod(uid: str, node: str, rv: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": uid,
            "name": f"agent-{uid}",
            "resourceVersion": rv,
            "ownerReferences": [{"uid": "ds", "controller": True}],
            "labels": {"controller-revision-hash": "new"},
        },
        "spec": {"nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class Scripted:
    """A collection whose watches play ``script``: each entry is one watch (a list of
    events, then it ends), or an exception that opening that watch raises."""

    def __init__(self, listed: list[dict[str, Any]], script: list[Any]) -> None:
        self.listed = listed
        self.script = list(script)
        self.lists = 0
        self.list_transforms: list[Any] = []  # what each list was told to reduce its items with
        self.watched_from: list[str] = []
        self.done = threading.Event()
        self.go = threading.Event()  # the first watch waits for it
        self.go.set()

    def list(
        self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        self.list_transforms.append(transform)
        return [item if transform is None else transform(item) for item in self.listed], str(10 * self.lists)

    def watch(self, resource_version: str, timeout: float) -> Iterator[tuple[str, dict[str, Any]]]:
        self.watched_from.append(resource_version)
        self.go.wait(5)
        if not self.script:
            self.done.set()
            threading.Event().wait(timeout)  # a quiet watch until the test ends
            return
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        yield from step


def test_a_dropped_watch_resumes_from_the_last_resource_version() -> None:
    source = Scripted([pod("a", "n1", "1")], [[("MODIFIED", pod("a", "n1", "11", ready=False))], []])
    with Informer(source, watch_seconds=0.2, log_changes=True) as informer:
        assert source.done.wait(5)
        changes = informer.changes()
    assert source.watched_from == ["10", "11", "11"], "each new watch starts where the last one ended"
    assert [kind for kind, _ in changes] == ["SYNC", "MODIFIED"]
    assert source.lists == 1, "no relist for a watch that merely ended"


def test_after_410_gone_a_relist_hands_the_reader_a_sync_it_absorbs() -> None:
    """Events lost with the expired watch (a pod replaced on n1) show in the relist."""
    source = Scripted([pod("a", "n1", "1", ready=False)], [WatchExpired()])
    source.go.clear()
    index = PodIndex("ds", ["n1"], "new")
    with Informer(source, watch_seconds=0.2, log_changes=True) as informer:
        index.absorb(informer.changes())
        assert index.unavailable == {"n1"}
        source.listed = [pod("b", "n1", "15")]  # what happened while the watch was away
        source.go.set()
        assert source.done.wait(5)
        changes = informer.changes()
    assert [kind for kind, _ in changes] == ["SYNC"] and source.lists == 2
    index.absorb(changes)
    assert index.unavailable == set() and index.updated == {"n1"}
    assert source.watched_from[-1] == "20", "the new watch starts at the relist's resourceVersion"


def test_a_spent_retry_budget_reaches_the_waiter_at_once() -> None:
    spent = ApiUnavailable("cannot reach https://x: refused (failing for 2m, the retry budget)")
    source = Scripted([], [spent, []])
    with Informer(source, watch_seconds=0.2) as informer, pytest.raises(ApiUnavailable) as caught:
        informer.wait(5, informer.generation)
    assert caught.value is spent
    assert source.watched_from == ["10"], "not retried again: the client already spent the budget"


def test_a_bug_in_the_watch_thread_is_raised_to_the_waiter() -> None:
    source = Scripted([], [[("ADDED", {"metadata": {}})]])  # no uid: a KeyError in the thread
    with Informer(source, watch_seconds=0.2) as informer, pytest.raises(KeyError):
        informer.wait(5, informer.generation)


def test_the_list_reduces_each_item_as_it_comes_not_after_the_whole_list() -> None:
    def slim(obj: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {k: obj["metadata"][k] for k in ("uid", "resourceVersion")}}

    source = Scripted([pod("a", "n1", "1"), pod("b", "n2", "2")], [])
    with Informer(source, log_changes=True, transform=slim, keep_items=False) as informer:
        ((kind, items),) = informer.changes()
    assert source.list_transforms == [slim], "the transform goes to the list, which applies it page by page"
    assert kind == "SYNC" and items == [slim(pod("a", "n1", "1")), slim(pod("b", "n2", "2"))]
