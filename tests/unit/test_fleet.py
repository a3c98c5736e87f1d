"""The node view a rollout keeps (``rollout/fleet.py``) and what a node's turn brings."""

from __future__ import annotations

from typing import Any

import pytest

from dsroll.rollout.fleet import NodeIndex, NodeView, Turn, skipped_at_start, turn
from dsroll.rollout.state import SkippedNode, SkipReason


def a_node(name: str, ready: str | None = "True", *, held: bool = False, cordoned: bool = False, **why: str) -> dict:
    labels = {"dsroll.io/hold": "true"} if held else {}
    conditions: list[dict[str, Any]] = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, **why})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"conditions": conditions},
    }


def test_a_node_view_reads_ready_hold_and_cordon() -> None:
    view = NodeView.of(a_node("n1"))
    assert (view.ready, view.held, view.cordoned, view.why) == (True, False, False, "")
    lost = NodeView.of(
        a_node("n2", "Unknown", message="Kubelet stopped posting node status.", reason="NodeStatusUnknown")
    )
    assert (lost.ready, lost.why) == (False, "Ready=Unknown: Kubelet stopped posting node status.")
    assert NodeView.of(a_node("n3", "False", reason="KubeletNotReady")).why == "Ready=False: KubeletNotReady"
    assert NodeView.of(a_node("n4", None)).why == "no Ready condition"
    assert NodeView.of(a_node("n5", held=True, cordoned=True)).held
    assert NodeView.of(a_node("n5", held=True, cordoned=True)).cordoned
    other = a_node("n6")
    other["metadata"]["labels"] = {"dsroll.io/hold": "yes"}  # only "true" holds
    assert not NodeView.of(other).held


def test_the_index_follows_lists_and_events() -> None:
    index = NodeIndex()
    assert index.exists("anything")  # before the first list, nothing is known to be gone
    index.absorb([("SYNC", [a_node("a"), a_node("b", "False")])])
    assert index.take_touched() == {"a", "b"}
    assert index.exists("a") and not index.exists("c")
    assert index.on_its_own("b") and not index.on_its_own("a")
    index.absorb([("MODIFIED", a_node("a", held=True)), ("DELETED", a_node("b")), ("ADDED", a_node("c"))])
    assert index.take_touched() == {"a", "b", "c"}
    assert index.on_its_own("a") and index.gone == {"b"} and not index.exists("b")
    index.absorb([("SYNC", [a_node("c"), a_node("b")])])  # a relist: a is gone, b is back
    assert index.gone == {"a"} and index.exists("b") and not index.exists("a")
    assert index.take_touched() == {"a", "b"}  # c did not change


HEALTHY = NodeView("n", True, "", False, False)
DOWN = NodeView("n", False, "Ready=Unknown: Kubelet stopped posting node status.", False, False)
HELD = NodeView("n", True, "", True, False)


@pytest.mark.parametrize(
    ("node", "policy", "waited", "expected"),
    [
        (HEALTHY, "skip", 0, Turn.GO),
        (HEALTHY, "fail", 0, Turn.GO),
        (None, "fail", 0, Turn.GO),  # not listed yet: the pod's gate judges it
        (DOWN, "skip", 0, Turn.SKIP),
        (DOWN, "fail", 0, Turn.FAIL),
        (DOWN, "wait", 0, Turn.WAIT),
        (DOWN, "wait", 9.9, Turn.WAIT),
        (DOWN, "wait", 10, Turn.FAIL),
        (HELD, "skip", 0, Turn.SKIP),
        (HELD, "wait", 0, Turn.SKIP),  # a hold is the operator's word, whatever the policy
        (HELD, "fail", 0, Turn.SKIP),
    ],
)
def test_a_nodes_turn(node: NodeView | None, policy: str, waited: float, expected: Turn) -> None:
    assert turn(node, policy, waited=waited, timeout=10).action is expected


def test_a_turn_says_why() -> None:
    assert turn(DOWN, "skip", waited=0, timeout=10).reason is SkipReason.not_ready
    assert "Kubelet stopped posting" in turn(DOWN, "skip", waited=0, timeout=10).detail
    assert turn(HELD, "skip", waited=0, timeout=10).reason is SkipReason.held
    assert "within readyTimeout (10s)" in turn(DOWN, "wait", waited=11, timeout=10).detail
    assert "unreadyNodes is fail" in turn(DOWN, "fail", waited=0, timeout=10).detail


def test_nodes_left_out_from_the_start() -> None:
    views = {"a": HEALTHY, "b": DOWN, "c": HELD}
    found = skipped_at_start(["a", "b", "c", "d"], views.get, "skip")
    assert [s.node for s in found] == ["b", "c"]
    assert all(isinstance(s, SkippedNode) for s in found)
    assert [s.node for s in skipped_at_start(["a", "b", "c"], views.get, "wait")] == ["c"]  # their turn decides
    assert [s.node for s in skipped_at_start(["a", "b", "c"], views.get, "fail")] == ["c"]
