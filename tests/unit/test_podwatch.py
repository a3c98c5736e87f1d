"""The e2e pod watcher's event model and invariant checkers, on small synthetic timelines.

Every checker is shown to pass on a good timeline and to fail, naming node and pods, on a
violating one: a checker that cannot fail would make the e2e rollout tests worthless.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_max_unavailable,
    assert_never_two_pods,
    assert_replaced,
    assert_replaced_first,
    assert_untouched,
    disruptions,
    final_revisions,
    max_unavailable,
    overlaps,
    replacement_order,
    replacements,
    terminating_overlaps,
)
from e2e.podwatch import ADDED, DELETED, MODIFIED, PodEvent, clock, pod_event, relist_changes

T0 = 1_700_000_000.0


def raw_pod(
    name: str,
    node: str,
    *,
    rev: str = "old",
    ready: bool = True,
    bound: bool = True,
    terminating: bool = False,
    workload: str = "agent",
    cls: str = "general",
    restarts: int = 0,
    waiting: str | None = None,
    phase: str = "Running",
    rv: str = "1",
) -> dict[str, Any]:
    """A DaemonSet pod as the API server sends it (only the fields the watcher reads)."""
    container: dict[str, Any] = {"name": "agent", "restartCount": restarts, "ready": ready, "state": {"running": {}}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting}}
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": rv,
        "labels": {"dsroll.io/workload": workload, "dsroll.io/class": cls, "controller-revision-hash": rev},
        "ownerReferences": [
            {"kind": "DaemonSet", "name": f"{workload}-{cls}", "uid": "ds-uid", "controller": True},
        ],
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-11-23T10:00:00Z"
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    spec: dict[str, Any] = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    }
    if bound:
        spec["nodeName"] = node
    status = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [container],
    }
    return {"metadata": meta, "spec": spec, "status": status}


class Story:
    """Builds a timeline event by event; each event 0.1 s after the previous one."""

    def __init__(self) -> None:
        self.events: list[PodEvent] = []
        self.pods: dict[str, dict[str, Any]] = {}

    def _emit(self, kind: str, name: str, **fields: Any) -> Story:
        node = fields.pop("node", None) or self.pods.get(name, {}).get("node")
        current = {**self.pods.get(name, {}), **fields, "node": node}
        self.pods[name] = current
        args = {k: v for k, v in current.items() if k != "node"}
        self.events.append(pod_event(len(self.events), T0 + 0.1 * len(self.events), kind, raw_pod(name, node, **args)))
        return self

    def up(self, name: str, node: str, **fields: Any) -> Story:
        """A pod appears (Ready unless told otherwise)."""
        return self._emit(ADDED, name, node=node, **fields)

    def set(self, name: str, **fields: Any) -> Story:
        return self._emit(MODIFIED, name, **fields)

    def terminate(self, name: str) -> Story:
        return self._emit(MODIFIED, name, terminating=True)

    def gone(self, name: str) -> Story:
        self._emit(DELETED, name)
        return self

    def delete(self, name: str) -> Story:
        return self.terminate(name).gone(name)

    def replace(self, old: str, new: str, rev: str = "new") -> Story:
        """What the DaemonSet controller does after dsroll deletes a pod: delete, create, Ready."""
        node = self.pods[old]["node"]
        return (
            self.delete(old).up(new, node, rev=rev, ready=False, bound=False).set(new, bound=True).set(new, ready=True)
        )


NODES = ["n1", "n2", "n3", "n4"]


def fleet(story: Story | None = None, nodes: list[str] = NODES) -> Story:
    story = story or Story()
    for i, node in enumerate(nodes):
        story.up(f"old-{i + 1}", node)
    return story


def one_at_a_time() -> Story:
    story = fleet()
    for i in range(1, 5):
        story.replace(f"old-{i}", f"new-{i}")
    return story


# -- the event model --------------------------------------------------------------


def test_pod_event_reads_node_from_affinity_before_binding_and_the_health_fields() -> None:
    pod = raw_pod("p", "n7", bound=False, ready=False, restarts=3, waiting="CrashLoopBackOff", terminating=True)
    event = pod_event(4, T0, MODIFIED, pod)
    assert (event.node, event.bound) == ("n7", False)
    assert (event.workload, event.cls, event.revision) == ("agent", "general", "old")
    assert event.terminating and not event.ready and not event.serving
    assert event.restarts == 3 and event.waiting_reasons == ("CrashLoopBackOff",)
    assert event.owners[0].kind == "DaemonSet" and event.owners[0].controller
    assert "terminating" in event.describe() and "CrashLoopBackOff" in event.describe()
    assert pod_event(0, T0, ADDED, raw_pod("p", "n7")).serving


def test_relist_turns_what_a_lost_watch_missed_into_events() -> None:
    known = {"uid-a": raw_pod("a", "n1", rv="5"), "uid-b": raw_pod("b", "n2", rv="6")}
    listed = [raw_pod("a", "n1", rv="9"), raw_pod("c", "n3", rv="7")]
    changes = [(kind, pod["metadata"]["name"]) for kind, pod in relist_changes(known, listed)]
    assert changes == [(MODIFIED, "a"), (ADDED, "c"), (DELETED, "b")]
    assert relist_changes(known, [raw_pod("a", "n1", rv="5"), raw_pod("b", "n2", rv="6")]) == []


def test_clock_shows_milliseconds() -> None:
    assert clock(T0 + 0.25).endswith(".250")


# -- maxUnavailable ---------------------------------------------------------------


def test_max_unavailable_passes_a_one_at_a_time_rollout() -> None:
    timeline = one_at_a_time().events
    assert max_unavailable(timeline, NODES) == 1
    assert assert_max_unavailable(timeline, NODES, 1) == 1


def test_max_unavailable_fails_when_two_nodes_are_down_at_once() -> None:
    story = fleet().delete("old-1").delete("old-2")
    story.up("new-1", "n1", rev="new").up("new-2", "n2", rev="new")
    assert max_unavailable(story.events, NODES) == 2
    with pytest.raises(AssertionError) as failure:
        assert_max_unavailable(story.events, NODES, 1)
    message = str(failure.value)
    assert "maxUnavailable=1" in message and "n1" in message and "n2" in message
    assert "old-2" in message or "no pod" in message
    assert clock(story.events[6].time) in message, message  # when: old-2 started terminating
    assert_max_unavailable(story.events, NODES, 2)


def test_a_node_whose_pod_is_gone_and_not_yet_recreated_counts_as_unavailable() -> None:
    story = fleet().delete("old-1").terminate("old-2").terminate("old-3").up("new-1", "n1", rev="new")
    assert max_unavailable(story.events, NODES) == 3
    with pytest.raises(AssertionError, match=r"for 100 ms: 3 down: n1: no pod; n2: old-2"):
        assert_max_unavailable(story.events, NODES, 2)


def test_a_terminating_pod_that_still_reports_ready_makes_its_node_unavailable() -> None:
    story = fleet().terminate("old-1").terminate("old-2")
    with pytest.raises(AssertionError, match=r"n1: old-1 .*terminating"):
        assert_max_unavailable(story.events, NODES, 1)


def test_a_new_pod_that_never_turns_ready_keeps_its_node_unavailable() -> None:
    story = fleet().replace("old-1", "new-1").delete("old-2").up("crash-2", "n2", rev="new", ready=False)
    story.set("crash-2", restarts=1, waiting="CrashLoopBackOff").delete("old-3")
    with pytest.raises(AssertionError, match="CrashLoopBackOff"):
        assert_max_unavailable(story.events, NODES, 1)


def test_unavailability_counts_only_after_every_node_first_had_a_ready_pod() -> None:
    story = Story().up("a", "n1", ready=False).up("b", "n2", ready=False).set("a", ready=True).set("b", ready=True)
    assert max_unavailable(story.events, ["n1", "n2"]) == 0
    with pytest.raises(AssertionError, match="never all had a Ready pod"):
        max_unavailable(Story().up("a", "n1").events, ["n1", "n2"])


def test_max_unavailable_looks_only_at_the_selected_variant() -> None:
    story = fleet().up("gpu-1", "g1", cls="gpu").up("gpu-2", "g2", cls="gpu").delete("gpu-1").delete("gpu-2")
    story.replace("old-1", "new-1")
    assert max_unavailable(story.events, NODES, workload="agent", cls="general") == 1
    with pytest.raises(AssertionError, match="variant agent-gpu"):
        assert_max_unavailable(story.events, ["g1", "g2"], 1, workload="agent", cls="gpu")


# -- one pod per node -------------------------------------------------------------


def test_never_two_pods_passes_delete_then_create() -> None:
    timeline = one_at_a_time().events
    assert_never_two_pods(timeline)
    assert overlaps(timeline) == []


def test_never_two_pods_fails_when_a_second_live_pod_joins_the_node() -> None:
    story = fleet().up("surge-1", "n1", rev="new", bound=False).set("surge-1", ready=True).delete("old-1")
    with pytest.raises(AssertionError) as failure:
        assert_never_two_pods(story.events)
    message = str(failure.value)
    assert "on n1" in message and "old-1" in message and "surge-1" in message
    assert clock(story.events[4].time) in message


def test_two_variants_of_one_workload_on_one_node_are_a_violation_and_other_workloads_are_not() -> None:
    story = fleet().up("other", "n1", workload="logger")
    assert_never_two_pods(story.events)
    story.up("gpu-on-n1", "n1", cls="gpu")
    with pytest.raises(AssertionError, match="gpu-on-n1"):
        assert_never_two_pods(story.events, workload="agent")


def test_an_overlap_with_a_terminating_pod_is_information_not_a_violation() -> None:
    story = fleet().terminate("old-1").up("new-1", "n1", rev="new").gone("old-1")
    assert_never_two_pods(story.events)
    found = terminating_overlaps(story.events)
    assert [(o.node, o.active) for o in found] == [("n1", 1)]
    assert "old-1" in found[0].describe() and "new-1" in found[0].describe()


# -- untouched nodes (partition, outside the canary) -------------------------------


def test_untouched_passes_when_the_nodes_kept_their_pods() -> None:
    story = fleet().replace("old-1", "new-1").set("old-3", rv="2")  # a status update is no touch
    assert_untouched(story.events, ["n2", "n3", "n4"])


def test_untouched_fails_for_a_replaced_node_and_names_its_pods() -> None:
    story = fleet().replace("old-1", "new-1").replace("old-3", "new-3")
    with pytest.raises(AssertionError) as failure:
        assert_untouched(story.events, ["n2", "n3", "n4"])
    message = str(failure.value)
    assert "n3:" in message and "old-3" in message and "new-3" in message
    assert "n2:" not in message and "n4:" not in message


def test_untouched_fails_for_a_pod_only_marked_for_deletion_and_for_a_node_without_pod() -> None:
    story = fleet().terminate("old-2")
    with pytest.raises(AssertionError, match=r"n2:.*terminating"):
        assert_untouched(story.events, ["n2"])
    with pytest.raises(AssertionError, match="n9: no pod seen"):
        assert_untouched(story.events, ["n9"])


# -- revisions and order ----------------------------------------------------------


def test_final_revision_passes_when_every_node_ends_on_it() -> None:
    timeline = one_at_a_time().events
    assert final_revisions(timeline) == dict.fromkeys(NODES, "new")
    assert_final_revision(timeline, NODES, "new")


@pytest.mark.parametrize(
    ("story", "node"),
    [
        (fleet().replace("old-1", "new-1").replace("old-2", "new-2"), "n3"),  # still on the old revision
        (fleet().replace("old-1", "new-1").delete("old-2").up("new-2", "n2", rev="new", ready=False), "n2"),
        (fleet().replace("old-1", "new-1").delete("old-2"), "n2"),  # no pod at all
        (fleet().replace("old-1", "new-1").up("extra", "n1", rev="new"), "n1"),  # two pods
    ],
    ids=["old-revision", "not-ready", "no-pod", "two-pods"],
)
def test_final_revision_fails_naming_the_node(story: Story, node: str) -> None:
    with pytest.raises(AssertionError, match=rf"revision new with one Ready pod:\n(.*\n)*  {node}: "):
        assert_final_revision(story.events, ["n1", "n2", "n3"] if node == "n3" else ["n1", "n2"], "new")


def test_replacement_order_and_counts() -> None:
    story = fleet().replace("old-2", "new-2").replace("old-1", "new-1").replace("new-2", "newer-2", rev="newer")
    assert replacement_order(story.events) == ["n2", "n1"]
    assert replacements(story.events) == {"n2": 2, "n1": 1}
    assert [node for node, _ in disruptions(story.events)] == ["n2", "n1", "n2"]


def test_replaced_first_passes_for_the_canary_and_fails_otherwise() -> None:
    story = fleet().replace("old-1", "new-1").replace("old-3", "new-3").replace("old-2", "new-2")
    assert_replaced_first(story.events, ["n1"])
    assert_replaced_first(story.events, ["n3", "n1"])
    with pytest.raises(AssertionError) as failure:
        assert_replaced_first(story.events, ["n2"])
    assert "expected ['n2'] to be replaced first" in str(failure.value)
    assert "n1 at" in str(failure.value) and "n3 at" in str(failure.value)


def test_replaced_passes_when_every_node_got_a_new_ready_pod_and_fails_otherwise() -> None:
    assert_replaced(one_at_a_time().events, NODES)
    story = fleet().replace("old-1", "new-1").delete("old-2").up("new-2", "n2", rev="new", ready=False)
    with pytest.raises(AssertionError) as failure:
        assert_replaced(story.events, ["n1", "n2", "n3"])
    message = str(failure.value)
    assert "n2: no Ready pod at the end" in message and "n3: its pod was never deleted" in message
    assert "n1:" not in message
