"""The gate's reads beyond the pod watch: only when due, rate-limited, and optional in effect."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from test_stuck_causes import NODE, PULLING, T0, creating, daemon_pod, event, oom_killed, running

from dsroll.errors import ClusterError
from dsroll.rollout import causes
from dsroll.rollout.decide import InFlight
from dsroll.rollout.evidence import Evidence, kept_event, kept_node
from dsroll.rollout.health import Gate, Outcome
from dsroll.rollout.placement import misfit

GATE = Gate(ready_timeout=8.0, min_ready_seconds=0.0)
GATE_LONG = Gate(ready_timeout=60.0, min_ready_seconds=0.0)
TEMPLATE = {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "a:2"}]}}
TRACK = InFlight(started=T0, old_uid="old", free_at=T0, pod_at=T0)  # the looks count from T0


class FakeEvents:
    def __init__(self, found: list[dict[str, Any]] | None = None, error: Exception | None = None) -> None:
        self.found, self.error, self.calls = found or [], error, 0

    def about(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.found


class FakeNodes:
    def __init__(self, found: dict[str, Any] | None, error: Exception | None = None) -> None:
        self.found, self.error, self.calls = found, error, 0

    def get(self, name: str) -> dict[str, Any] | None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.found


class FakeReporter:
    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    def emit(self, event: str, variant: str, message: str, **fields: Any) -> None:
        self.said.append((event, message))


def tainted(effect: str = "NoSchedule") -> dict[str, Any]:
    return {"metadata": {"name": NODE, "labels": {}}, "spec": {"taints": [{"key": "gpu", "effect": effect}]}}


def evidence(events: Any = None, nodes: Any = None) -> tuple[Evidence, FakeReporter]:
    reporter = FakeReporter()
    return Evidence(events, nodes, "e2e", "e2e/agent-general", reporter), reporter  # type: ignore[arg-type]


def test_no_pod_reads_the_node_after_the_controllers_chance_and_fails_at_once() -> None:
    nodes = FakeNodes(tainted())
    eyes, _ = evidence(nodes=nodes)
    _, early = eyes.judge(NODE, TRACK, None, GATE, T0 + 1, TEMPLATE)
    assert early.outcome is Outcome.WAITING and nodes.calls == 0
    assert early.wake_at == T0 + 2, "woken for the look"
    _, late = eyes.judge(NODE, TRACK, None, GATE, T0 + 2, TEMPLATE)
    assert nodes.calls == 1
    assert late.outcome is Outcome.FAILED
    assert late.message == (
        f"no new pod on {NODE}, the DaemonSet controller will not create one: "
        "the node has taint gpu:NoSchedule, not tolerated by the pod template"
    )


def test_no_node_is_read_while_its_old_pod_takes_its_grace_period_to_stop() -> None:
    nodes = FakeNodes(tainted())
    eyes, _ = evidence(nodes=nodes)
    track = InFlight(started=T0, old_uid="old")
    for after in (0.0, 2.0, 12.0, 29.0):
        track, got = eyes.judge(NODE, track, None, GATE_LONG, T0 + after, TEMPLATE, old_gone=False)
        assert got.outcome is Outcome.WAITING
    assert nodes.calls == 0, "the controller creates the new pod only once the old one is gone"
    track, got = eyes.judge(NODE, track, None, GATE_LONG, T0 + 30, TEMPLATE)
    assert nodes.calls == 0 and got.wake_at == T0 + 32
    _, got = eyes.judge(NODE, track, None, GATE_LONG, T0 + 32, TEMPLATE)
    assert nodes.calls == 1 and got.outcome is Outcome.FAILED, "then the taint is found, as before"


def test_a_node_that_fits_is_read_again_only_every_ten_seconds() -> None:
    nodes = FakeNodes({"metadata": {"name": NODE, "labels": {}}, "spec": {}})
    eyes, reporter = evidence(nodes=nodes)
    for after in (2.0, 2.5, 5.0, 11.9):
        _, got = eyes.judge(NODE, TRACK, None, Gate(60.0, 0.0), T0 + after, TEMPLATE)
        assert got.outcome is Outcome.WAITING
    assert nodes.calls == 1
    assert got.wake_at == T0 + 12
    eyes.judge(NODE, TRACK, None, Gate(60.0, 0.0), T0 + 12, TEMPLATE)
    assert nodes.calls == 2
    assert reporter.said == [], "a node that fits only awaits the controller: nothing to tell"


def test_a_node_that_is_gone_is_named_and_waited_for() -> None:
    eyes, reporter = evidence(nodes=FakeNodes(None))
    _, got = eyes.judge(NODE, TRACK, None, GATE, T0 + 3, TEMPLATE)
    assert got.outcome is Outcome.WAITING and got.message.endswith(f"node {NODE} no longer exists")
    assert reporter.said == [("node-waiting", got.message)]


def test_a_stuck_pods_events_are_read_once_it_waited_and_its_cause_told_once() -> None:
    events = FakeEvents([PULLING])
    eyes, reporter = evidence(events=events)
    _, got = eyes.judge(NODE, TRACK, creating(), GATE, T0 + 1, TEMPLATE)
    assert events.calls == 0 and got.wake_at == T0 + 5
    for after in (5.0, 6.0, 7.0):
        _, got = eyes.judge(NODE, TRACK, creating(), GATE, T0 + after, TEMPLATE)
    assert events.calls == 1
    assert reporter.said == [
        ("node-waiting", f'waiting for pod {creating()["metadata"]["name"]} on {NODE} to be Ready: still creating '
         'containers (Pulling image "example.com/agent:2.0")'),
    ]  # fmt: skip
    _, failed = eyes.judge(NODE, TRACK, creating(), GATE, T0 + 8, TEMPLATE)
    assert failed.outcome is Outcome.FAILED and events.calls == 2, "a fresh look to name the failure"
    assert failed.message.endswith('still creating containers (Pulling image "example.com/agent:2.0")')


def test_a_pod_that_fails_on_its_own_is_named_without_waiting_for_a_look() -> None:
    events = FakeEvents([])
    eyes, _ = evidence(events=events)
    pod = daemon_pod(statuses=[oom_killed(1)], phase="Running")
    _, got = eyes.judge(NODE, TRACK, pod, GATE, T0 + 0.5, TEMPLATE)
    assert got.outcome is Outcome.FAILED and "OOMKilled (exit code 137)" in got.message


@pytest.mark.parametrize("error", [ClusterError("RBAC denied: events is forbidden"), ClusterError("timeout")])
def test_events_that_cannot_be_read_are_said_once_and_the_gate_goes_on(error: Exception) -> None:
    events = FakeEvents(error=error)
    eyes, reporter = evidence(events=events)
    for after in (5.0, 6.0, 16.0):
        _, got = eyes.judge(NODE, TRACK, creating(), Gate(60.0, 0.0), T0 + after, TEMPLATE)
        assert got.outcome is Outcome.WAITING
    assert events.calls == 1
    assert [e for e, _ in reporter.said] == ["warning"]
    assert "cannot list events in namespace e2e" in reporter.said[0][1]
    assert got.wake_at == T0 + 60, "no look left to wake for"
    _, failed = eyes.judge(NODE, TRACK, creating(), GATE, T0 + 8, TEMPLATE)
    assert failed.message.endswith("not Ready within readyTimeout (8s): still creating containers")


def test_a_node_that_cannot_be_read_leaves_the_timeout() -> None:
    nodes = FakeNodes(None, error=ClusterError("RBAC denied: nodes is forbidden"))
    eyes, reporter = evidence(nodes=nodes)
    eyes.judge(NODE, TRACK, None, GATE, T0 + 2, TEMPLATE)
    _, got = eyes.judge(NODE, TRACK, None, GATE, T0 + 8, TEMPLATE)
    assert nodes.calls == 1 and got.message == f"no new pod on {NODE} within readyTimeout (8s)"
    assert reporter.said[0][0] == "warning" and "cannot get nodes" in reporter.said[0][1]


def test_without_apis_it_judges_like_decide() -> None:
    from dsroll.rollout import decide

    eyes, reporter = evidence()
    for pod in (None, creating()):
        assert eyes.judge(NODE, TRACK, pod, GATE, T0 + 9, TEMPLATE)[1].outcome is (
            decide.judge(TRACK, pod, GATE, T0 + 9)[1].outcome
        )
    assert reporter.said == []


class Later:
    """A pool that runs each read only when told, as a background thread would, later."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[], Any], Future[Any]]] = []
        self.woken = 0

    def submit(self, read: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.queued.append((read, future))
        return future

    def finish(self) -> None:
        for read, future in self.queued:
            try:
                future.set_result(read())
            except Exception as exc:
                future.set_exception(exc)
        self.queued.clear()

    def wake(self) -> None:
        self.woken += 1


def test_in_the_background_a_read_never_holds_up_the_verdict_and_its_answer_judges_again() -> None:
    nodes = FakeNodes(tainted())
    eyes, _ = evidence(nodes=nodes)
    pool = Later()
    eyes.read_in(pool.submit, pool.wake)  # type: ignore[arg-type]
    _, now = eyes.judge(NODE, TRACK, None, GATE, T0 + 2, TEMPLATE)
    assert now.outcome is Outcome.WAITING and nodes.calls == 0 and len(pool.queued) == 1, "asked, not awaited"
    eyes.judge(NODE, TRACK, None, GATE, T0 + 2.5, TEMPLATE)
    assert len(pool.queued) == 1, "one read under way per node"
    assert eyes.arrived([NODE]) == set() and not eyes.has_arrived()
    pool.finish()
    assert nodes.calls == 1 and pool.woken == 1 and eyes.has_arrived()
    assert eyes.arrived(["another"]) == set(), "only nodes still in flight are judged again"
    _, got = eyes.judge(NODE, TRACK, None, GATE, T0 + 2.6, TEMPLATE)  # judged again with the answer
    assert got.outcome is Outcome.FAILED and "taint gpu:NoSchedule" in got.message
    assert nodes.calls == 1


def test_in_the_background_a_stuck_pods_cause_is_told_once_its_events_are_back() -> None:
    events = FakeEvents([PULLING])
    eyes, reporter = evidence(events=events)
    pool = Later()
    eyes.read_in(pool.submit, pool.wake)  # type: ignore[arg-type]
    eyes.judge(NODE, TRACK, creating(), GATE, T0 + 5, TEMPLATE)
    assert reporter.said == [] and len(pool.queued) == 1
    pool.finish()
    assert eyes.arrived([NODE]) == {NODE}
    _, got = eyes.judge(NODE, TRACK, creating(), GATE, T0 + 5.1, TEMPLATE)
    assert got.outcome is Outcome.WAITING and got.message.endswith('(Pulling image "example.com/agent:2.0")')
    assert reporter.said == [("node-waiting", got.message)]
    eyes.judge(NODE, TRACK, creating(), GATE, T0 + 6, TEMPLATE)
    assert len(reporter.said) == 1 and events.calls == 1 and pool.queued == [], "no second look within ten seconds"


def test_in_the_background_a_refused_read_is_said_once_and_that_kind_stops() -> None:
    events = FakeEvents(error=ClusterError("RBAC denied: events is forbidden"))
    eyes, reporter = evidence(events=events)
    pool = Later()
    eyes.read_in(pool.submit, pool.wake)  # type: ignore[arg-type]
    eyes.judge(NODE, TRACK, creating(), Gate(60.0, 0.0), T0 + 5, TEMPLATE)
    pool.finish()
    for after in (5.1, 16.0, 30.0):
        _, got = eyes.judge(NODE, TRACK, creating(), Gate(60.0, 0.0), T0 + after, TEMPLATE)
        assert got.outcome is Outcome.WAITING
    assert events.calls == 1 and pool.queued == []
    assert [e for e, _ in reporter.said] == ["warning"] and "cannot list events" in reporter.said[0][1]
    assert got.wake_at == T0 + 60, "no look left to wake for"


def test_the_pace_of_the_nodes_replaced_puts_off_the_looks_at_the_others() -> None:
    events = FakeEvents([PULLING])
    eyes, _ = evidence(events=events)
    for n in range(5):  # five peers took 4 s each from delete to Ready
        eyes.judge(f"peer-{n}", TRACK, running(ready=True), GATE, T0 + 4, TEMPLATE)
    assert eyes.pace == 4.0
    _, got = eyes.judge(NODE, TRACK, creating(), Gate(60.0, 0.0), T0 + 5, TEMPLATE)
    assert events.calls == 0 and got.wake_at == T0 + 8, "not Ready after 5 s is normal when peers take 4"
    eyes.judge(NODE, TRACK, creating(), Gate(60.0, 0.0), T0 + 8, TEMPLATE)
    assert events.calls == 1


# --- what a look keeps: the fields the gate reads, while the node is in flight ---------------


def whole_node(**spec: Any) -> dict[str, Any]:
    """A Node as the API server sends it: mostly what the gate never reads."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE, "uid": "u-1", "resourceVersion": "81", "labels": {"zone": "a", "class": "general"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}, "managedFields": [{"manager": "kwok"}] * 5,
        },
        "spec": spec,
        "status": {"images": [{"names": [f"img-{i}"], "sizeBytes": i} for i in range(30)],
                   "conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"address": "10.0.0.3"}]},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("node", "template_spec"),
    [
        (whole_node(taints=[{"key": "gpu", "effect": "NoSchedule"}]), {}),
        (whole_node(taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]), {}),
        (whole_node(), {"nodeSelector": {"class": "gpu"}}),
        (whole_node(), {"nodeName": "another-node"}),
        (whole_node(), {"nodeSelector": {"class": "general"}}),
    ],
    ids=["taint", "self-clearing-taint", "node-selector", "node-name", "fits"],
)
def test_a_kept_node_tells_the_same_misfit_as_the_whole_node(
    node: dict[str, Any], template_spec: dict[str, Any]
) -> None:

    template = {"spec": {**template_spec, "containers": [{"name": "agent", "image": "a:2"}]}}
    assert misfit(template, kept_node(node)) == misfit(template, node)
    assert len(str(kept_node(node))) < len(str(node)) / 5


def test_kept_events_tell_the_same_cause_as_whole_ones() -> None:
    newer_warning = event("BackOff", "Back-off pulling image", warning=True, at="2026-11-29T08:36:50Z")
    created_only = event("Pulled", "pulled", at="2026-11-29T08:36:55Z")
    for key in ("firstTimestamp", "lastTimestamp"):
        del created_only[key]  # an Event with only its creationTimestamp
    whole = [PULLING, event("Failed", "ErrImagePull", warning=True), newer_warning, created_only]
    kept = [kept_event(e) for e in whole]
    pod = creating()
    assert causes.pending(pod, kept) == causes.pending(pod, whole)
    assert causes.readiness(pod, kept) == causes.readiness(pod, whole)
    assert causes.latest(kept, reasons=("Pulling", "Pulled")) == kept_event(created_only), "the newest by creation"
    assert all("involvedObject" not in e and "source" not in e for e in kept)


def test_what_a_look_found_is_dropped_when_its_node_turns_healthy() -> None:
    events, nodes = FakeEvents([PULLING]), FakeNodes(whole_node())
    eyes, _ = evidence(events=events, nodes=nodes)
    eyes.judge(NODE, TRACK, None, GATE, T0 + 2, TEMPLATE)  # no pod yet: the node is read
    eyes.judge(NODE, TRACK, creating(), GATE, T0 + 5, TEMPLATE)  # a stuck pod: its Events are read
    assert nodes.calls == 1 and events.calls == 1 and len(eyes._seen) == 2
    _, healthy = eyes.judge(NODE, TRACK, running(ready=True), GATE, T0 + 6, TEMPLATE)
    assert healthy.outcome is Outcome.HEALTHY
    assert eyes._seen == {}, "nothing of a replaced node is kept to the end of the step"
