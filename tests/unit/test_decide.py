"""Every decision of ``rollout/decide.py``, and the incremental view it reads (``rollout/view.py``).

The properties run the decisions against a pure model of a cluster: a DaemonSet
controller that puts a new pod on every node that has none, pods that turn Ready a tick
later, and nodes unready on their own. A run can be killed after any write and resumed
from the recorded state alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsroll.plan import (
    Action,
    LiveFingerprint,
    Plan,
    PodView,
    Policy,
    StepPlan,
    VariantPlan,
    pods_by_node,
    resume_order,
)
from dsroll.rollout import decide
from dsroll.rollout.decide import AfterFailure, InFlight, Pause, Start
from dsroll.rollout.fleet import NodeTurn, NodeView, Turn, skipped_at_start, turn
from dsroll.rollout.health import Gate, Outcome
from dsroll.rollout.revisions import Revision
from dsroll.rollout.state import Failure, Phase, RolloutState, RunKind, SkippedNode, SkipReason
from dsroll.rollout.view import PodIndex, StepQueue

FAST = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWNER = "ds-uid"
OLD, NEW = "old", "new"


def a_policy(steps: tuple[str, ...] = ("1", "50%", "100%"), max_unavailable: int | str = 1, pause: str = "0") -> Policy:
    return Policy(steps, max_unavailable, pause, "5m", 0, "rollback")


def a_state(nodes: int = 4, **changes: Any) -> RolloutState:
    order = tuple(f"n{i}" for i in range(nodes))
    state = decide.fresh_state(
        a_policy(), order, kind=RunKind.rollout, who="me", commit=None, steps=None,
        previous=OLD, original_strategy=None, partition=None,
    )  # fmt: skip
    return replace(state, **{"target_revision": NEW, **changes})


# --- where a run starts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "phase", "retargeted", "approve", "expected"),
    [
        (Action.CREATE, None, False, False, Start.CREATE),
        (Action.IN_PLACE, Phase.progressing, False, False, Start.IN_PLACE),
        (Action.PRUNE, None, False, False, Start.PRUNE),
        (Action.UPDATE, None, False, False, Start.FRESH),
        (Action.UPDATE, Phase.complete, False, False, Start.FRESH),
        (Action.UPDATE, Phase.aborted, False, True, Start.FRESH),
        (Action.UPDATE, Phase.rolling_back, False, False, Start.CONTINUE_ROLLBACK),
        (Action.UPDATE, Phase.rolling_back, True, False, Start.CONTINUE_ROLLBACK),
        (Action.UPDATE, Phase.paused, False, False, Start.STAY_PAUSED),
        (Action.UPDATE, Phase.paused, False, True, Start.RESUME),
        (Action.UPDATE, Phase.paused, True, False, Start.FRESH),
        (Action.UPDATE, Phase.progressing, False, False, Start.RESUME),
        (Action.UPDATE, Phase.awaiting_approval, False, False, Start.RESUME),
        (Action.UPDATE, Phase.partitioned, False, False, Start.RESUME),
        (Action.UPDATE, Phase.progressing, True, False, Start.FRESH),
    ],
)
def test_start(action: Action, phase: Phase | None, retargeted: bool, approve: bool, expected: Start) -> None:
    recorded = a_state().entering(phase) if phase else None
    assert decide.start(action, recorded, retargeted=retargeted, approve=approve) is expected


def test_fresh_state_resolves_steps_and_budget_on_the_order() -> None:
    state = decide.fresh_state(
        a_policy(("1", "25%", "100%"), "10%"), [f"n{i}" for i in range(20)], kind=RunKind.rollback, who="me",
        commit="abc", steps=None, previous="p", original_strategy={"type": "RollingUpdate"}, partition=3,
    )  # fmt: skip
    assert (state.steps, state.max_unavailable, state.partition, state.cap) == ((1, 5, 20), 2, 3, 17)
    assert (state.operation, state.phase, state.target_revision, state.previous_revision) == (
        RunKind.rollback, Phase.progressing, "", "p",
    )  # fmt: skip


def test_resumed_state_fits_the_saved_steps_and_keeps_an_approved_partition() -> None:
    recorded = a_state(6, steps=(1, 3, 6), partition=2).entering(Phase.awaiting_approval)
    fewer = decide.resumed_state(recorded, ["n0", "n1", "n2", "n3"], steps=None, partition=None, approve=True, who="x")
    assert (fewer.steps, fewer.partition, fewer.phase, fewer.who) == ((1, 3, 4), 2, Phase.awaiting_approval, "x")
    lowered = decide.resumed_state(recorded.entering(Phase.partitioned), recorded.nodes, steps=None, partition=0,
                                   approve=False, who="x")  # fmt: skip
    assert (lowered.partition, lowered.phase) == (0, Phase.progressing)
    given_steps = decide.resumed_state(recorded, recorded.nodes, steps=("50%", "100%"), partition=None,
                                       approve=False, who="x")  # fmt: skip
    assert given_steps.steps == (3, 6)


# --- steps and pauses ------------------------------------------------------------------------


def test_step_counts_are_capped_by_the_partition() -> None:
    assert decide.step_counts(a_state(10, steps=(1, 5, 10))) == (1, 5, 10)
    assert decide.step_counts(a_state(10, steps=(1, 5, 10), partition=7)) == (1, 3)
    assert decide.first_step(a_state(10, step=5), (1, 5, 10)) == 2


@pytest.mark.parametrize(
    ("pause", "phase", "step", "number", "yes", "approve", "expected"),
    [
        ("manual", Phase.progressing, 0, 0, False, False, (Pause.GO, 0.0)),  # never before the first step
        ("manual", Phase.progressing, 1, 1, False, False, (Pause.GO, 0.0)),  # resumed inside the step
        ("manual", Phase.progressing, 0, 1, False, False, (Pause.APPROVAL, 0.0)),
        ("manual", Phase.progressing, 0, 1, True, False, (Pause.APPROVED, 0.0)),
        ("manual", Phase.awaiting_approval, 1, 1, False, True, (Pause.APPROVED, 0.0)),
        ("manual", Phase.progressing, 0, 1, False, True, (Pause.APPROVAL, 0.0)),  # nothing awaited approval
        ("30s", Phase.progressing, 0, 1, False, False, (Pause.WAIT, 30.0)),
        ("0", Phase.progressing, 0, 1, False, False, (Pause.GO, 0.0)),
    ],
)
def test_between_steps(
    pause: str, phase: Phase, step: int, number: int, yes: bool, approve: bool, expected: tuple[Pause, float]
) -> None:
    state = a_state(pause=pause, step=step).entering(phase)
    assert decide.between_steps(state, number, yes=yes, approve=approve) == expected


def test_record_due_writes_transitions_at_once_and_refills_once_a_second() -> None:
    last = a_state(in_flight=("n0",))
    assert decide.record_due(None, last, 0.0)
    assert not decide.record_due(last, replace(last, in_flight=("n1",)), 0.5)
    assert decide.record_due(last, replace(last, in_flight=("n1",)), 1.0)
    assert decide.record_due(last, replace(last, step=1), 0.0)
    assert decide.record_due(last, last.entering(Phase.rolling_back), 0.0)


def test_a_big_fleet_records_progress_less_often() -> None:
    assert [decide.record_interval(n) for n in (1, 100, 200, 1000, 5000, 50_000)] == [1, 1, 1, 5, 10, 10]
    last = a_state(1000, in_flight=("n0",))
    assert not decide.record_due(last, replace(last, in_flight=("n1",)), 4.0)
    assert decide.record_due(last, replace(last, in_flight=("n1",)), 5.0)
    assert decide.record_due(last, replace(last, step=1), 0.0)  # a transition: at once


def test_created_waits_for_the_controller_and_every_pod() -> None:
    ds = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}
    assert not decide.created(ds)[0]  # the controller has not seen the spec yet
    status = {"observedGeneration": 2, "desiredNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 2}
    assert decide.created({"metadata": {"generation": 2}, "status": status}) == (False, 3, 3)
    status["updatedNumberScheduled"] = 3
    assert decide.created({"metadata": {"generation": 2}, "status": status}) == (True, 3, 3)


# --- the batch -----------------------------------------------------------------------------


def batch_of(order: list[str], unavailable: set[str], flight: set[str], done: set[str], budget: int,
             planned: set[str] | None = None) -> decide.Batch:  # fmt: skip
    queue = StepQueue(order, lambda n: n not in done and n not in flight)
    return decide.next_batch(
        budget=budget, unavailable=unavailable, in_flight=flight,
        todo_unavailable=[n for n in unavailable if n in queue.position and queue.eligible(n)], first_todo=queue.first,
        position=queue.position, planned=planned,
    )  # fmt: skip


def test_a_batch_fills_the_budget_in_plan_order() -> None:
    assert batch_of(["a", "b", "c", "d"], set(), set(), set(), 2).nodes == ("a", "b")
    assert batch_of(["a", "b", "c", "d"], {"a"}, {"a"}, set(), 2).nodes == ("b",)  # one in flight
    assert batch_of(["a", "b", "c", "d"], set(), set(), {"a", "b"}, 2).nodes == ("c", "d")


def test_nodes_already_unready_go_first_and_cost_nothing() -> None:
    batch = batch_of(["a", "b", "c", "d"], {"c"}, set(), set(), 2)
    assert (batch.nodes, batch.free, batch.ahead) == (("c", "a"), ("c",), ("c",))
    assert batch.off_plan


def test_unready_nodes_outside_the_step_use_the_budget_and_block() -> None:
    batch = batch_of(["a", "b"], {"x", "y"}, set(), set(), 2)
    assert (batch.nodes, batch.blocked) == ((), True)
    assert not batch_of(["a", "b"], {"x", "y"}, {"a"}, set(), 2).blocked  # something in flight: not stuck


def test_a_node_not_in_the_plan_is_reported() -> None:
    batch = batch_of(["a", "z"], set(), set(), set(), 2, planned={"a"})
    assert (batch.nodes, batch.unplanned) == (("a", "z"), ("z",))
    assert not batch_of(["a", "z"], set(), set(), set(), 2).off_plan


@FAST
@given(
    nodes=st.integers(1, 12),
    budget=st.integers(1, 4),
    own=st.sets(st.integers(0, 11), max_size=5),
    seed=st.integers(0, 10_000),
)
def test_never_more_than_the_budget_in_flight_and_every_node_is_chosen(
    nodes: int, budget: int, own: set[int], seed: int
) -> None:
    """``unreadyNodes: wait``. Not counting nodes unready on their own (they wait for
    their node): dsroll never takes the fleet past the budget, and every node gets its turn."""
    cluster = Cluster(nodes, unready={f"n{i}" for i in own if i < nodes}, seed=seed)
    state = a_state(nodes, max_unavailable=budget, steps=(nodes,), unready_nodes="wait")
    result = run(cluster, state, on_start=check_budget(budget))
    assert result.phase is Phase.complete and not result.skipped
    assert all(pod.revision == NEW for pod in cluster.pods.values())


@FAST
@given(
    nodes=st.integers(1, 12),
    budget=st.integers(1, 4),
    steps=st.lists(st.integers(1, 12), min_size=1, max_size=3).map(lambda s: tuple(sorted(set(s)))),
    own=st.sets(st.integers(0, 11), max_size=5),
    seed=st.integers(0, 10_000),
)
def test_unready_nodes_are_skipped_cost_nothing_and_a_later_run_does_them(
    nodes: int, budget: int, steps: tuple[int, ...], own: set[int], seed: int
) -> None:
    """``unreadyNodes: skip``: a node not Ready when its turn comes is skipped and listed,
    never counted against the budget; every other node is updated; once the skipped ones
    are Ready again, a later run (the recorded state resumed) updates exactly them."""
    cluster = Cluster(nodes, unready={f"n{i}" for i in own if i < nodes}, seed=seed)
    state = a_state(nodes, max_unavailable=budget, steps=decide.fit_steps(steps, nodes))
    store = Store()
    first = run(cluster, state, store, on_start=check_budget(budget))
    skipped = {s.node for s in first.skipped}
    assert first.phase is Phase.complete and first.finished == (not skipped)  # skipped nodes are still to do
    assert skipped <= {f"n{i}" for i in own}
    assert all(s.reason is SkipReason.not_ready for s in first.skipped)
    assert {n for n, pod in cluster.pods.items() if pod.revision != NEW} == skipped
    cluster.unready.clear()
    cluster.tick()
    second = run(cluster, state, store, on_start=check_budget(budget))
    assert second.phase is Phase.complete and second.finished and not second.skipped
    assert second.target_revision == first.target_revision and second.previous_revision == OLD
    assert all(pod.revision == NEW for pod in cluster.pods.values())


def check_budget(budget: int) -> Any:
    def check(before: set[str], after: set[str]) -> None:
        assert len(after) <= max(budget, len(before)), (before, after)

    return check


@pytest.mark.parametrize(
    ("pace", "wait"),
    [
        (0.0, 0.0),  # no node done yet: every event is looked at as it comes
        (-1.0, 0.0),  # a clock that stepped back is no pace
        (0.16, 0.004),  # 100 quiet kwok nodes: a few ms
        (1.0, 0.025),
        (2.0, 0.05),  # where the cap begins
        (2.3, 0.05),  # 1,000 kwok nodes
        (600.0, 0.05),  # a 10-minute image pull: still 50 ms, not 15 s
    ],
)
def test_events_gather_for_a_share_of_the_pace_and_never_long(pace: float, wait: float) -> None:
    assert decide.gather(pace) == pytest.approx(wait)


# --- a node in flight ------------------------------------------------------------------------


def test_judge_remembers_readiness_and_its_loss() -> None:
    gate = Gate(ready_timeout=60.0, min_ready_seconds=10.0)
    ready = {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    unready = {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    track, verdict = decide.judge(InFlight(started=0.0, old_uid="u"), None, gate, 1.0)
    assert verdict.outcome is Outcome.WAITING
    track, verdict = decide.judge(track, ready, gate, 2.0)
    assert (track.ready_since, verdict.outcome) == (2.0, Outcome.WAITING)
    track, verdict = decide.judge(track, ready, gate, 12.0)
    assert verdict.outcome is Outcome.HEALTHY
    lost, _ = decide.judge(replace(track, ready_since=2.0), unready, gate, 5.0)
    assert lost.lost_ready


def test_judge_remembers_when_the_old_pod_went_and_the_new_one_came() -> None:
    gate = Gate(ready_timeout=60.0, min_ready_seconds=0.0)
    creating = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    track, _ = decide.judge(InFlight(started=0.0, old_uid="u"), None, gate, 1.0, old_gone=False)
    assert (track.free_at, track.pod_at) == (None, None), "the old pod is still stopping"
    track, _ = decide.judge(track, None, gate, 3.0, old_gone=True)
    assert (track.free_at, track.pod_at) == (3.0, None)
    track, _ = decide.judge(track, creating, gate, 4.0)
    track, _ = decide.judge(track, creating, gate, 6.0)
    assert (track.free_at, track.pod_at) == (3.0, 4.0), "first seen, not last"
    surged, _ = decide.judge(InFlight(started=0.0, old_uid="u"), creating, gate, 2.0, old_gone=False)
    assert (surged.free_at, surged.pod_at) == (2.0, 2.0), "a new pod beside the old one: the controller had its chance"


# --- failure and rollback ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_failure", "previous", "replacement", "expected"),
    [
        ("rollback", OLD, None, AfterFailure.ROLL_BACK),
        ("rollback", NEW, "backup", AfterFailure.RESTORE),  # no other revision: the backup is the way back
        ("rollback", None, "backup", AfterFailure.RESTORE),
        ("rollback", None, None, AfterFailure.ABORT),
        ("pause", OLD, None, AfterFailure.PAUSE),
        ("abort", OLD, "backup", AfterFailure.ABORT),
    ],
)
def test_after_failure(on_failure: str, previous: str | None, replacement: str | None, expected: AfterFailure) -> None:
    state = a_state(on_failure=on_failure, previous_revision=previous, replacement=replacement)
    assert decide.after_failure(state) is expected


HISTORY = [Revision(n, h, f"ds-{h}", "", None, {}) for n, h in ((1, "r1"), (2, "r2"), (3, "r3"))]


@pytest.mark.parametrize(
    ("recorded", "to_revision", "expected"),
    [
        (None, None, "r2"),
        (None, 1, "r1"),
        (a_state(operation=RunKind.rollout, previous_revision="r1"), None, "r1"),
        (a_state(operation=RunKind.rollout, previous_revision="gone"), None, "r2"),
        (a_state(operation=RunKind.rollback, target_revision="r1", previous_revision="r3"), None, "r1"),
        (a_state(operation=RunKind.rollback, target_revision="r1").entering(Phase.rolled_back), None, "r2"),
        (a_state(operation=RunKind.rollout, previous_revision="r1"), 3, "r3"),
    ],
)
def test_rollback_target(recorded: RolloutState | None, to_revision: int | None, expected: str) -> None:
    assert decide.rollback_target(HISTORY, recorded, to_revision, "ns/ds").hash == expected


def test_rollback_target_refuses_a_missing_revision_or_a_single_one() -> None:
    from dsroll.errors import InputError

    with pytest.raises(InputError, match="no revision 9"):
        decide.rollback_target(HISTORY, None, 9, "ns/ds")
    with pytest.raises(InputError, match="no previous revision"):
        decide.rollback_target(HISTORY[:1], None, None, "ns/ds")


def test_pending_nodes_are_those_not_on_the_target() -> None:
    on = {"a": PodView("pa", "ua", "a", "r1", True, False), "b": PodView("pb", "ub", "b", "r2", True, False)}
    assert decide.pending(["a", "b", "c"], on.get, "r1") == ("b", "c")
    assert decide.pending(["a", "b"], on.get, None) == ("a", "b")  # a git render: no hash to compare


# --- drift -------------------------------------------------------------------------------------

fingerprints = st.builds(
    LiveFingerprint,
    st.one_of(st.none(), st.sampled_from(["u1", "u2"])),
    st.one_of(st.none(), st.integers(1, 3)),
    st.one_of(st.none(), st.sampled_from(["r1", "r2"])),
    st.lists(st.sampled_from(["a", "b", "c"]), unique=True).map(lambda n: tuple(sorted(n))),
)


def a_variant_plan(live: LiveFingerprint) -> VariantPlan:
    return VariantPlan("ns", "ds", "w", "c", Action.UPDATE, "", (), a_policy(), (), (), (), None, live, None)


@FAST
@given(saved=fingerprints, now=fingerprints)
def test_drift_is_empty_exactly_when_nothing_moved(saved: LiveFingerprint, now: LiveFingerprint) -> None:
    plan = Plan("env", "ctx", "https://a", None, (a_variant_plan(saved),))
    found = decide.drift(plan, {("ns", "ds"): now}, "https://a")
    assert (found == []) == (saved == now)
    assert all(line.startswith("ns/ds: ") for line in found)


# --- the incremental view --------------------------------------------------------------------


def raw_pod(uid: str, node: str, revision: str, ready: bool, terminating: bool = False, owner: str = OWNER) -> dict:
    meta: dict[str, Any] = {"uid": uid, "name": f"p-{uid}", "labels": {"controller-revision-hash": revision},
                            "ownerReferences": [{"uid": owner, "controller": True}]}  # fmt: skip
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"conditions": conditions}}


events = st.lists(
    st.tuples(
        st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
        st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([OLD, NEW]),
        st.booleans(),
        st.booleans(),
        st.sampled_from([OWNER, OWNER, "other"]),
    ),
    max_size=30,
)


@FAST
@given(events=events)
def test_the_index_after_any_events_agrees_with_a_fresh_look(events: list[tuple]) -> None:
    index = PodIndex(OWNER, ["a", "b", "c", "d"], NEW)
    pods: dict[str, dict] = {}
    for kind, uid, node, revision, ready, terminating, owner in events:
        pod = raw_pod(uid, node, revision, ready, terminating, owner)
        index.apply(kind, pod)
        if kind == "DELETED":
            pods.pop(uid, None)
        else:
            pods[uid] = pod
    views = [PodView.of(p) for p in pods.values() if p["metadata"]["ownerReferences"][0]["uid"] == OWNER]
    on = pods_by_node(views)
    healthy = {n for n, p in on.items() if p.ready and not p.terminating}
    assert index.unavailable == {"a", "b", "c", "d"} - healthy
    assert index.updated == {n for n in healthy if on[n].revision == NEW}
    for node in "abcd":
        pod = index.pod_on(node)
        assert (pod.terminating if pod else None) == (on[node].terminating if node in on else None)


@FAST
@given(
    order=st.permutations([f"n{i}" for i in range(8)]),
    steps=st.lists(st.tuples(st.sampled_from(["drop", "back", "take"]), st.integers(0, 7)), max_size=20),
)
def test_the_step_queue_gives_what_a_scan_of_the_order_gives(order: list[str], steps: list[tuple[str, int]]) -> None:
    out: set[str] = set()
    queue = StepQueue(order, lambda n: n not in out)
    for what, i in steps:
        node = f"n{i}"
        if what == "drop":
            out.add(node)
        elif what == "back":
            out.discard(node)
            queue.offer(node)
        else:
            assert queue.first(i, {node}) == [n for n in order if n not in out and n != node][:i]


# --- resume after any recorded state -----------------------------------------------------------


@dataclass
class Cluster:
    """A DaemonSet controller in miniature: a node without a pod gets one on the current
    revision; a new pod turns Ready the tick after; some nodes are unready on their own
    until a random tick."""

    size: int
    unready: set[str] = field(default_factory=set)
    seed: int = 0
    revision: str = OLD
    pods: dict[str, PodView] = field(default_factory=dict)
    uids: Iterator[int] = field(default_factory=itertools.count)
    log: list[tuple[str, dict]] = field(default_factory=list)
    tick_count: int = 0

    def __post_init__(self) -> None:
        for i in range(self.size):
            self._create(f"n{i}", ready=f"n{i}" not in self.unready)

    def _raw(self, pod: PodView) -> dict:
        return raw_pod(pod.uid, pod.node, pod.revision or "", pod.ready)

    def _create(self, node: str, ready: bool) -> None:
        pod = PodView(f"p{next(self.uids)}", f"u{next(self.uids)}", node, self.revision, ready, False)
        self.pods[node] = pod
        self.log.append(("ADDED", self._raw(pod)))

    def delete(self, node: str) -> None:
        pod = self.pods.pop(node, None)
        if pod is not None:
            self.log.append(("DELETED", self._raw(pod)))

    def tick(self) -> None:
        self.tick_count += 1
        for i in range(self.size):
            node = f"n{i}"
            if node in self.unready and (self.seed + i + self.tick_count) % 7 == 0:
                self.unready.discard(node)  # recovers on its own
            pod = self.pods.get(node)
            if pod is None:
                self._create(node, ready=False)
            elif not pod.ready and node not in self.unready:
                self.pods[node] = replace(pod, ready=True)
                self.log.append(("MODIFIED", self._raw(self.pods[node])))

    def changes(self) -> list[tuple[str, dict]]:
        found, self.log = self.log, []
        return found


class Killed(Exception):
    pass


@dataclass
class Store:
    """The DaemonSet's annotation: the only thing a resumed run knows (its JSON, which
    counts the nodes and lists no order); ``state`` is what the running process holds."""

    state: RolloutState | None = None
    text: str | None = None
    writes: int = 0
    kill_at: int | None = None

    def write(self, state: RolloutState) -> None:
        self.state = state
        self.text = state.to_json()
        self.writes += 1
        if self.kill_at is not None and self.writes >= self.kill_at:
            raise Killed


def views_of(cluster: Cluster) -> dict[str, NodeView]:
    """The model's nodes as a node informer shows them: unready on their own, or Ready."""
    return {f"n{i}": NodeView(f"n{i}", f"n{i}" not in cluster.unready, "Ready=Unknown", False, False)
            for i in range(cluster.size)}  # fmt: skip


def run(
    cluster: Cluster,
    fresh: RolloutState,
    store: Store | None = None,
    on_start: Any = None,
    relabel: Callable[[Sequence[str]], Sequence[str]] | None = None,
) -> RolloutState:
    """The executor's choices, against the model: start or resume, steps, batches."""
    store = store or Store()
    recorded = RolloutState.from_json(store.text, "model") if store.text else None
    then = decide.start(Action.UPDATE, recorded, retargeted=False, approve=False)
    skipped = skipped_at_start(fresh.nodes, views_of(cluster).get, fresh.unready_nodes)
    if then is Start.RESUME and recorded is not None:
        assert recorded.nodes == () and recorded.node_count == len(fresh.nodes)  # counted, not listed
        labels = relabel(fresh.nodes) if relabel is not None else fresh.nodes  # the order derived again
        behind = [n for n in labels if n not in cluster.pods or cluster.pods[n].revision != recorded.target_revision]
        state = decide.resumed_state(recorded, resume_order(labels, behind), steps=None, partition=fresh.partition,
                                     approve=False, who="me", skipped=skipped)  # fmt: skip
    else:
        total = len(fresh.nodes) - len(skipped)
        state = replace(fresh, skipped=skipped, steps=decide.fit_steps(fresh.steps, total))
        cluster.revision = NEW
    store.write(state)
    counts = decide.step_counts(state)
    for number in range(decide.first_step(state, counts), len(counts)):
        pause, _ = decide.between_steps(state, number, yes=True, approve=False)
        assert pause in (Pause.GO, Pause.APPROVED)
        state = replace(store.state or state, step=number)
        last = number == len(counts) - 1 and not state.partition
        state = swap(cluster, state, None if last else counts[number], store, on_start)
    phase = Phase.partitioned if state.partition else Phase.complete
    state = state.entering(phase, in_flight=())
    store.write(state)
    return state


def swap(cluster: Cluster, state: RolloutState, count: int | None, store: Store, on_start: Any) -> RolloutState:
    """``PodSwap.run`` over the model: the same view, queue and decisions."""
    index = PodIndex(OWNER, state.nodes, state.target_revision)
    flight: dict[str, InFlight] = {}
    skipped = {s.node: s for s in state.skipped}
    index.absorb([("SYNC", [cluster._raw(p) for p in cluster.pods.values()])])
    cluster.changes()
    queue = StepQueue(state.nodes, lambda n: n not in index.updated and n not in flight and n not in skipped,
                      count, skipped)  # fmt: skip
    gate = Gate(ready_timeout=1e9, min_ready_seconds=0.0)
    for now in itertools.count():
        assert now < 10_000, "the run does not end"
        index.absorb(cluster.changes())
        views = views_of(cluster)
        for node in index.take_touched():
            queue.offer(node)
        for node in views:
            queue.offer(node)  # readiness may have changed
        for node, track in list(flight.items()):
            flight[node], verdict = decide.judge(track, index.new_pod(node, track.old_uid), gate, float(now))
            if verdict.outcome is Outcome.HEALTHY:
                del flight[node]
        if not flight and queue.empty():
            return replace(state, skipped=tuple(skipped.values()))
        own = {n for n in index.unavailable if n not in flight and (n in skipped or not views[n].ready)}
        batch = decide.next_batch(
            budget=state.max_unavailable, unavailable=index.unavailable - own, in_flight=flight,
            todo_unavailable=[n for n in index.unavailable if queue.in_window(n) and queue.eligible(n)],
            first_todo=queue.first, position=queue.position,
            turn=lambda n, views=views, policy=state.unready_nodes: turn(views.get(n), policy, waited=0.0, timeout=1e9),
        )  # fmt: skip
        for node, verdict in batch.passed:
            assert verdict.action in (Turn.SKIP, Turn.WAIT)
            if verdict.action is Turn.SKIP and verdict.reason is not None:
                skipped[node] = SkippedNode(node, verdict.reason, verdict.detail)
                queue.leave_out(node)
        state = replace(state, skipped=tuple(skipped.values()))
        if batch.nodes:
            before = (set(index.unavailable) | set(flight)) - own
            state = state.entering(Phase.progressing, in_flight=tuple(sorted({*flight, *batch.nodes})))
            store.write(state)
            for node in batch.nodes:
                old = index.old_pod(node)
                if old is not None:
                    cluster.delete(node)
                flight[node] = InFlight(started=float(now), old_uid=old.uid if old else None)
            index.absorb(cluster.changes())
            if on_start is not None:
                on_start(before, (set(index.unavailable) | set(flight)) - own)
            continue
        cluster.tick()
    raise AssertionError("unreachable")


def end_of(cluster: Cluster, state: RolloutState) -> tuple[Phase, dict[str, str | None]]:
    return state.phase, {node: pod.revision for node, pod in sorted(cluster.pods.items())}


@FAST
@given(
    nodes=st.integers(1, 8),
    budget=st.integers(1, 3),
    steps=st.lists(st.integers(1, 8), min_size=1, max_size=3).map(lambda s: tuple(sorted(set(s)))),
    partition=st.one_of(st.none(), st.integers(0, 8)),
    kills=st.lists(st.integers(1, 40), min_size=1, max_size=3),
)
def test_resume_after_any_recorded_state_reaches_the_end_of_an_unbroken_run(
    nodes: int, budget: int, steps: tuple[int, ...], partition: int | None, kills: list[int]
) -> None:
    fresh = a_state(nodes, max_unavailable=budget, steps=decide.fit_steps(steps, nodes), partition=partition)
    unbroken = Cluster(nodes)
    expected = end_of(unbroken, run(unbroken, fresh))

    cluster, store = Cluster(nodes), Store()
    for kill in kills:
        store.kill_at, store.writes = kill, 0
        try:
            final = run(cluster, fresh, store)
            break
        except Killed:
            cluster.tick()  # the controller goes on while nobody runs
    else:
        store.kill_at = None
        final = run(cluster, fresh, store)
    assert end_of(cluster, final) == expected
    cap = fresh.cap
    assert [cluster.pods[n].revision for n in fresh.nodes] == [NEW] * cap + [OLD] * (nodes - cap)


@FAST
@given(
    nodes=st.integers(1, 8),
    budget=st.integers(1, 3),
    steps=st.lists(st.integers(1, 8), min_size=1, max_size=3).map(lambda s: tuple(sorted(set(s)))),
    partition=st.one_of(st.none(), st.integers(0, 8)),
    kills=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    data=st.data(),
)
def test_resume_with_the_order_derived_again_from_changed_labels_keeps_the_partition(
    nodes: int, budget: int, steps: tuple[int, ...], partition: int | None, kills: list[int], data: st.DataObject
) -> None:
    """The state records no order; if labels changed meanwhile the derived order is another
    one, and putting the nodes done first still ends with exactly the cap on the new revision."""
    permutation = data.draw(st.permutations(range(nodes)))

    def relabel(order: Sequence[str]) -> tuple[str, ...]:
        return tuple(order[i] for i in permutation)

    fresh = a_state(nodes, max_unavailable=budget, steps=decide.fit_steps(steps, nodes), partition=partition)
    cluster, store = Cluster(nodes), Store()
    for kill in kills:
        store.kill_at, store.writes = kill, 0
        try:
            final = run(cluster, fresh, store, relabel=relabel)
            break
        except Killed:
            cluster.tick()
    else:
        store.kill_at = None
        final = run(cluster, fresh, store, relabel=relabel)
    assert final.phase is (Phase.partitioned if fresh.partition else Phase.complete)
    assert sum(pod.revision == NEW for pod in cluster.pods.values()) == fresh.cap


def test_the_model_store_holds_the_bounded_json() -> None:
    store = Store()
    store.write(a_state(500))
    assert store.text is not None and '"nodes"' not in store.text and len(store.text) < 2048


def test_a_failure_recorded_mid_step_is_kept_on_the_state() -> None:
    state = a_state().entering(Phase.rolling_back, failure=Failure("n1", "CrashLoopBackOff"))
    assert decide.start(Action.UPDATE, state, retargeted=False, approve=False) is Start.CONTINUE_ROLLBACK


def test_steps_a_plan_forecasts_are_those_a_fresh_state_carries_out() -> None:
    from dsroll.plan import plan_steps

    order = [f"n{i}" for i in range(10)]
    for partition in (None, 0, 3, 10):
        planned = plan_steps(order, order, a_policy(("1", "30%", "100%"), 2), partition)
        state = decide.fresh_state(
            a_policy(("1", "30%", "100%"), 2), order, kind=RunKind.rollout, who="me", commit=None, steps=None,
            previous=OLD, original_strategy=None, partition=partition,
        )  # fmt: skip
        assert tuple(s.count for s in planned) == decide.step_counts(state)
        assert all(isinstance(s, StepPlan) for s in planned)


# --- nodes that are skipped, join or leave ------------------------------------------------------


def test_a_node_that_does_not_go_costs_no_slot() -> None:
    queue = StepQueue(["a", "b", "c", "d"], lambda n: True)
    verdicts = {"a": NodeTurn(Turn.SKIP, SkipReason.held, "dsroll.io/hold=true"), "b": NodeTurn(Turn.WAIT)}
    batch = decide.next_batch(
        budget=2, unavailable=set(), in_flight={}, todo_unavailable=["a"], first_todo=queue.first,
        position=queue.position, turn=lambda n: verdicts.get(n, NodeTurn(Turn.GO)),
    )  # fmt: skip
    assert batch.nodes == ("c", "d") and dict(batch.passed) == verdicts
    assert batch.free == () and not batch.blocked


def test_a_failing_turn_is_passed_to_the_caller() -> None:
    queue = StepQueue(["a", "b"], lambda n: True)
    batch = decide.next_batch(
        budget=1, unavailable=set(), in_flight={}, todo_unavailable=[], first_todo=queue.first,
        position=queue.position, turn=lambda n: NodeTurn(Turn.FAIL, detail="node not Ready"),
    )  # fmt: skip
    assert batch.nodes == () and [n for n, _ in batch.passed] == ["a", "b"]


def test_a_step_window_counts_only_nodes_not_left_out_and_grows_when_one_is() -> None:
    order = ["a", "b", "c", "d", "e"]
    queue = StepQueue(order, lambda n: True, 2, {"a"})
    assert queue.first(5) == ["b", "c"] and not queue.in_window("a") and not queue.in_window("d")
    queue.leave_out("b")  # skipped on its turn: the next node takes its place
    assert queue.first(5) == ["c", "d"]
    queue.add("z")  # joined: inside the window, after the nodes already in it
    assert queue.first(5) == ["c", "d", "z"] and queue.in_window("z")
    assert StepQueue(order, lambda n: True, None, {"c"}).first(9) == ["a", "b", "d", "e"]
    whole = StepQueue(order, lambda n: True, 9)
    whole.leave_out("a")
    assert whole.first(9) == ["b", "c", "d", "e"]  # a window at the end of the order stays there


def test_the_index_sees_pods_on_nodes_outside_the_rollout() -> None:
    index = PodIndex(OWNER, ["a"], NEW)
    index.apply("ADDED", raw_pod("u1", "a", NEW, True))
    index.apply("ADDED", raw_pod("u2", "z", NEW, False))
    index.apply("ADDED", raw_pod("u3", "y", NEW, True, owner="other"))
    assert index.strangers == {"z"} and index.updated == {"a"}
    index.add_node("z")
    assert index.strangers == set() and "z" in index.unavailable and "z" in index.scope
    index.apply("MODIFIED", raw_pod("u2", "z", NEW, True))
    assert index.updated == {"a", "z"}
    index.drop_node("a")
    assert index.updated == {"z"} and "a" not in index.scope and "a" not in index.unavailable


def test_a_rollout_that_skipped_nodes_is_not_finished_until_they_are_done() -> None:
    skipped = (SkippedNode("n3", SkipReason.not_ready, "Ready=Unknown"),)
    done = a_state(phase=Phase.complete, skipped=skipped)
    assert not done.finished and done.updatable == 3 and done.cap == 3
    assert decide.start(Action.UPDATE, done, retargeted=False, approve=False) is Start.RESUME
    assert decide.start(Action.UPDATE, done, retargeted=True, approve=False) is Start.FRESH  # a new render
    assert a_state(phase=Phase.complete).finished
    assert not a_state(phase=Phase.rolled_back, skipped=skipped).finished
    assert a_state(phase=Phase.aborted, skipped=skipped).finished
    assert decide.step_counts(replace(done, steps=(1, 3, 4))) == (1, 3)


def test_a_node_that_joins_or_leaves_is_recorded_at_once() -> None:
    state = a_state(in_flight=("n0",))
    assert not decide.record_due(state, state.entering(state.phase), 0.1)
    assert decide.record_due(state, replace(state, nodes=(*state.nodes, "n9")), 0.1)
    assert decide.record_due(state, replace(state, skipped=(SkippedNode("n1", SkipReason.held),)), 0.1)


def test_a_fresh_state_counts_its_steps_on_the_nodes_it_can_update() -> None:
    order = tuple(f"n{i}" for i in range(10))
    skipped = (SkippedNode("n1", SkipReason.held), SkippedNode("n2", SkipReason.not_ready))
    state = decide.fresh_state(
        a_policy(("1", "50%", "100%")), order, kind=RunKind.rollout, who="me", commit=None, steps=None,
        previous=OLD, original_strategy=None, partition=None, skipped=skipped,
    )  # fmt: skip
    assert state.steps == (1, 4, 8) and state.updatable == 8 and state.unready_nodes == "skip"
