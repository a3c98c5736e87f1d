"""``dsroll restart``'s pure part: which pods a restart replaces, what it refuses, and the clock.

A node is done when its live pod on the current revision was created after the restart's
recorded ``restartedAt`` (API server time, whole seconds). The model at the end runs the
restart's choices against a miniature DaemonSet controller with a clock, killing and
resuming it after any write: every node's pod is replaced exactly once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsroll.diff import Change, VariantDiff
from dsroll.errors import InputError
from dsroll.orphans import Operation, ReplacementPlan
from dsroll.plan import Action, Plan, PodView, Policy, VariantPlan, plan_variant
from dsroll.rollout import decide, restart
from dsroll.rollout.decide import InFlight, Pause, Start
from dsroll.rollout.health import Gate, Outcome
from dsroll.rollout.state import Phase, RolloutState, RunKind, created_after
from dsroll.rollout.view import PodIndex, StepQueue

FAST = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWNER, NS, REV = "ds-uid", "agents", "5d7cf7d55f"
AT = "2026-11-23T10:00:05Z"  # restartedAt
BEFORE, SAME, AFTER = "2026-11-23T10:00:04Z", AT, "2026-11-23T10:00:06Z"
NODES = ("n0", "n1", "n2", "n3")


# --- the clock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "moment", "after"),
    [
        (BEFORE, AT, False),
        (SAME, AT, False),  # the same second could be before or after: not restarted
        (AFTER, AT, True),
        ("2026-11-23T10:00:05.999999Z", AT, True),  # a MicroTime later in that second
        (None, AT, False),  # no creationTimestamp: not known to be new
        (BEFORE, None, True),  # no restart: every pod counts
        (None, None, True),
    ],
)
def test_a_pod_is_restarted_only_when_created_after_the_recorded_second(
    created: str | None, moment: str | None, after: bool
) -> None:
    assert created_after(created, moment) is after


def test_the_recorded_time_is_the_servers_second_truncated_like_kubernetes_timestamps() -> None:
    moment = datetime(2026, 11, 23, 10, 0, 5, 987654, tzinfo=UTC)
    assert restart.timestamp(moment) == AT
    assert restart.timestamp(moment.astimezone(datetime.now().astimezone().tzinfo)) == AT


@pytest.mark.parametrize(
    ("now", "past"),
    [
        (datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC), False),  # the Date header of that very second
        (datetime(2026, 11, 23, 10, 0, 4, tzinfo=UTC), False),  # a server clock behind
        (datetime(2026, 11, 23, 10, 0, 6, tzinfo=UTC), True),
    ],
)
def test_pods_are_deleted_only_once_the_server_clock_has_passed_the_recorded_second(now: datetime, past: bool) -> None:
    assert restart.clock_past(now, AT) is past


@pytest.mark.parametrize(("policy", "restart_does"), [("rollback", "pause"), ("pause", "pause"), ("abort", "abort")])
def test_on_failure_rollback_pauses_a_restart_since_there_is_no_revision_to_go_back_to(
    policy: str, restart_does: str
) -> None:
    assert restart.on_failure(policy) == restart_does


# --- the view: pods created at or before restartedAt are old -------------------------------


def raw_pod(uid: str, node: str, created: str, *, ready: bool = True, revision: str = REV) -> dict[str, Any]:
    meta = {
        "uid": uid, "name": f"p-{uid}", "creationTimestamp": created,
        "labels": {"controller-revision-hash": revision}, "ownerReferences": [{"uid": OWNER, "controller": True}],
    }  # fmt: skip
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"conditions": conditions}}


def test_the_index_of_a_restart_counts_only_pods_created_after_it_as_updated() -> None:
    index = PodIndex(OWNER, ["a", "b", "c"], REV, not_before=AT)
    index.absorb([("SYNC", [raw_pod("1", "a", BEFORE), raw_pod("2", "b", SAME), raw_pod("3", "c", AFTER)])])
    assert index.updated == {"c"}
    assert index.unavailable == set()  # old pods are Ready: nothing is down yet
    assert [index.old_pod(n).uid if index.old_pod(n) else None for n in "abc"] == ["1", "2", None]
    assert index.new_pod("a", "1") is None, "the pod to delete is not its own replacement"
    index.apply("DELETED", raw_pod("1", "a", BEFORE))
    index.apply("ADDED", raw_pod("4", "a", AFTER, ready=False))
    assert index.new_pod("a", "1") is not None and "a" not in index.updated and "a" in index.unavailable
    index.apply("MODIFIED", raw_pod("4", "a", AFTER))
    assert index.updated == {"a", "c"} and index.old_pod("a") is None


def test_the_index_of_a_rollout_ignores_creation_times() -> None:
    index = PodIndex(OWNER, ["a", "b"], REV)
    index.absorb([("SYNC", [raw_pod("1", "a", BEFORE), raw_pod("2", "b", AFTER, revision="old")])])
    assert index.updated == {"a"} and index.old_pod("a") is None and index.old_pod("b") is not None


def test_a_pod_view_carries_its_creation_time() -> None:
    assert PodView.of(raw_pod("1", "a", AFTER)).created == AFTER


# --- the plan ------------------------------------------------------------------------------


def policy(steps: tuple[str, ...] = ("1", "50%", "100%"), max_unavailable: int = 1) -> Policy:
    return Policy(steps, max_unavailable, "manual", "5m", 0, "rollback")


def state(phase: Phase, operation: RunKind = RunKind.restart, **extra: Any) -> RolloutState:
    fields: dict[str, Any] = {"restarted_at": AT if operation is RunKind.restart else None}
    return RolloutState(
        operation=operation, phase=phase, target_revision=REV, previous_revision=None, steps=(1, 2, 4), step=1,
        nodes=NODES, max_unavailable=1, pause="manual", ready_timeout="5m", min_ready_seconds=0,
        on_failure="pause", original_strategy={"type": "RollingUpdate"}, who="me", **{**fields, **extra},
    )  # fmt: skip


def variant(
    change: Change = Change.UNCHANGED,
    *,
    created: Mapping[str, str] | None = None,
    revision: str = REV,
    recorded: RolloutState | None = None,
    deployed: bool = True,
    name: str = "agent-general",
) -> VariantPlan:
    """A variant planned as ``observe`` plans it: its pods on ``NODES`` (created as given)."""
    made = dict.fromkeys(NODES, BEFORE) | dict(created or {})
    pods = [PodView.of(raw_pod(f"u-{n}", n, made[n], revision=revision)) for n in NODES] if deployed else []
    live = {"metadata": {"name": name, "namespace": NS, "uid": OWNER, "generation": 1}} if deployed else None
    return plan_variant(
        VariantDiff(NS, name, "agent", "general", Change.ADDED if not deployed else change, (), 0, ""),
        manifest={"kind": "DaemonSet"}, live=live, pods=pods, current_revision=REV if deployed else None,
        node_labels={n: {} for n in NODES}, class_nodes=NODES, policy=policy(), state=recorded, partition=None,
    )  # fmt: skip


def restarted(
    *variants: VariantPlan, recorded: Mapping[str, RolloutState | None] | None = None, partition: str | None = None
) -> tuple[Plan, list[str]]:
    plan = Plan("dev", "ctx", "https://x", None, tuple(variants))
    states = {(NS, name): s for name, s in (recorded or {}).items()}
    return restart.restart_plan(plan, states, partition, "dev")


def test_a_variant_as_rendered_restarts_every_node_in_the_policys_steps() -> None:
    plan, skipped = restarted(variant())
    [vp] = plan.variants
    assert (vp.action, vp.pending, vp.applies, skipped) == (Action.RESTART, NODES, False, [])
    assert [s.count for s in vp.steps] == [1, 2, 4] and vp.steps[0].nodes == ("n0",)
    assert vp.reason == f"every pod replaced in steps, revision {REV} unchanged"


def test_a_finished_restart_or_rollout_is_followed_by_a_fresh_restart_of_every_node() -> None:
    for before in (state(Phase.complete), state(Phase.aborted), state(Phase.complete, RunKind.rollout)):
        plan, _ = restarted(
            variant(created=dict.fromkeys(NODES, AFTER), recorded=before), recorded={"agent-general": before}
        )
        assert plan.variants[0].pending == NODES and not plan.variants[0].resumes


def test_the_partition_keeps_the_last_nodes_unrestarted() -> None:
    [vp] = restarted(variant(), partition="1")[0].variants
    assert (vp.partition, [s.count for s in vp.steps]) == (1, [1, 2, 3])


def test_an_unfinished_restart_continues_on_the_nodes_not_restarted_yet() -> None:
    recorded = state(Phase.awaiting_approval)
    vp = variant(created={"n0": AFTER, "n2": AFTER}, recorded=recorded)
    assert (vp.action, vp.pending) == (Action.UPDATE, ("n1", "n3")), "resume and rollout continue it the same way"
    [restarting] = restarted(vp, recorded={"agent-general": recorded})[0].variants
    assert (restarting.action, restarting.pending, restarting.resumes) == (Action.RESTART, ("n1", "n3"), True)
    assert "continues the restart recorded in the cluster (phase awaiting-approval)" in restarting.reason


def test_a_variant_not_deployed_is_skipped_with_a_message() -> None:
    plan, skipped = restarted(variant(deployed=False, name="agent-gpu"), variant())
    assert [(v.name, v.action) for v in plan.variants] == [
        ("agent-gpu", Action.UNCHANGED),
        ("agent-general", Action.RESTART),
    ]
    assert skipped == [f"{NS}/agent-gpu: not deployed, nothing to restart (`dsroll rollout dev` creates it)"]


def test_a_change_outside_the_pod_template_does_not_stop_a_restart_and_is_not_applied() -> None:
    [vp] = restarted(variant(Change.SPEC))[0].variants
    assert vp.action is Action.RESTART and not vp.applies
    assert "not applied; `dsroll rollout` applies it" in vp.reason


@pytest.mark.parametrize(
    ("made", "recorded", "why"),
    [
        (
            lambda: variant(Change.POD_TEMPLATE),
            None,
            "the render differs from the live pod template: a restart is not a rollout (`dsroll rollout dev`)",
        ),
        (
            lambda: variant(recorded=state(Phase.awaiting_approval, RunKind.rollout)),
            state(Phase.awaiting_approval, RunKind.rollout),
            "a rollout is unfinished (phase awaiting-approval): `dsroll resume dev` finishes it, "
            "`dsroll abort dev` stops it",
        ),
        (
            lambda: variant(recorded=state(Phase.rolling_back, RunKind.rollout)),
            state(Phase.rolling_back, RunKind.rollout),
            "a rollout is unfinished (phase rolling-back)",
        ),
        (
            lambda: variant(revision="older"),
            None,
            "4 node(s) not on the current revision (n0, n1, n2 …): deleting their pods would move them to it",
        ),
    ],
)
def test_a_restart_is_refused_before_anything_with_one_line_naming_why(
    made: Any, recorded: RolloutState | None, why: str
) -> None:
    with pytest.raises(InputError) as caught:
        restarted(made(), recorded={"agent-general": recorded})
    message = str(caught.value)
    assert message.startswith(f"restart refused, nothing changed: {NS}/agent-general: ") and why in message
    assert "\n" not in message


def test_variants_refused_for_one_reason_are_named_together_on_one_line() -> None:
    with pytest.raises(InputError) as caught:
        restarted(variant(Change.POD_TEMPLATE, name="agent-gpu"), variant(Change.POD_TEMPLATE), variant(name="ok"))
    assert str(caught.value) == (
        f"restart refused, nothing changed: {NS}/agent-gpu, {NS}/agent-general: the render differs from the live "
        "pod template: a restart is not a rollout (`dsroll rollout dev`)"
    )


def test_a_pending_orphan_replacement_is_refused_and_prunes_are_left_out() -> None:
    pending = ReplacementPlan(NS, "agent", Operation.replace, "selector changed", (), ("agent-general",), (), "b")
    plan = Plan("dev", "ctx", "https://x", None, (variant(),), (pending,))
    with pytest.raises(InputError, match=r"agents/agent: an orphan replacement is pending \(selector changed\)"):
        restart.restart_plan(plan, {}, None, "dev")
    pruned = replace(variant(name="gone"), action=Action.PRUNE)
    plan, _ = restarted(pruned, variant())
    assert [v.name for v in plan.variants] == ["agent-general"]


# --- a restart killed after any write and resumed: every pod replaced exactly once ----------


EPOCH = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def stamp(second: int) -> str:
    return restart.timestamp(EPOCH + timedelta(seconds=second))


@dataclass
class Cluster:
    """A DaemonSet controller with a clock of whole seconds: a deleted pod is replaced at
    once, in the same second, by one that turns Ready at the next tick (a second later)."""

    size: int
    now: int = 0
    pods: dict[str, PodView] = field(default_factory=dict)
    uids: Iterator[int] = field(default_factory=itertools.count)
    log: list[tuple[str, dict]] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)  # node → pods deleted

    def __post_init__(self) -> None:
        for i in range(self.size):
            self._create(f"n{i}", ready=True)

    def raw(self, node: str) -> dict:
        pod = self.pods[node]
        return raw_pod(pod.uid, node, pod.created or "", ready=pod.ready)

    def _create(self, node: str, *, ready: bool) -> None:
        uid = f"u{next(self.uids)}"
        self.pods[node] = PodView(f"p-{uid}", uid, node, REV, ready, False, stamp(self.now))
        self.log.append(("ADDED", self.raw(node)))

    def delete(self, node: str) -> None:
        self.log.append(("DELETED", self.raw(node)))
        self.deleted[node] = self.deleted.get(node, 0) + 1
        self._create(node, ready=False)

    def tick(self) -> None:
        self.now += 1
        for node, pod in self.pods.items():
            if not pod.ready:
                self.pods[node] = replace(pod, ready=True)
                self.log.append(("MODIFIED", self.raw(node)))

    def changes(self) -> list[tuple[str, dict]]:
        found, self.log = self.log, []
        return found


class Killed(Exception):
    pass


class Stuck(Exception):
    """The run waits for something that never comes (live: a node failing its readyTimeout)."""


@dataclass
class Store:
    """The DaemonSet's annotation: the only thing a resumed run knows."""

    state: RolloutState | None = None
    writes: int = 0
    kill_at: int | None = None

    def write(self, state: RolloutState) -> None:
        self.state = state
        self.writes += 1
        if self.kill_at is not None and self.writes >= self.kill_at:
            raise Killed


def run(cluster: Cluster, fresh: RolloutState, store: Store, *, wait: bool = True) -> RolloutState:
    """The executor's restart, against the model: begin (record the server's second, then
    wait until its clock has passed it) or resume; then each step's pod swap."""
    recorded = store.state
    if decide.start(Action.RESTART, recorded, retargeted=False, approve=False) is Start.RESUME and recorded:
        state = decide.resumed_state(recorded, fresh.nodes, steps=None, partition=None, approve=False, who="me")
    else:
        state = replace(fresh, restarted_at=stamp(cluster.now))
    store.write(state)
    while wait and not restart.clock_past(EPOCH + timedelta(seconds=cluster.now), state.restarted_at or ""):
        cluster.tick()
    counts = decide.step_counts(state)
    for number in range(decide.first_step(state, counts), len(counts)):
        assert decide.between_steps(state, number, yes=True, approve=False)[0] in (Pause.GO, Pause.APPROVED)
        state = replace(store.state or state, step=number)
        state = swap(cluster, state, state.nodes[: counts[number]], store)
    state = state.entering(Phase.complete, in_flight=())
    store.write(state)
    return state


def swap(cluster: Cluster, state: RolloutState, wanted: tuple[str, ...], store: Store) -> RolloutState:
    """``PodSwap.run`` over the model, with the index a restart gets."""
    index = PodIndex(OWNER, state.nodes, state.target_revision, state.restarted_at)
    index.absorb([("SYNC", [cluster.raw(n) for n in cluster.pods])])
    cluster.changes()
    flight: dict[str, InFlight] = {}
    queue = StepQueue(wanted, lambda n: n not in index.updated and n not in flight)
    gate = Gate(ready_timeout=1e9, min_ready_seconds=0.0)
    for step in itertools.count():
        if step >= 10_000:
            raise Stuck(f"waiting for {sorted(flight)} forever")
        index.absorb(cluster.changes())
        for node in index.take_touched():
            queue.offer(node)
        for node, track in list(flight.items()):
            flight[node], verdict = decide.judge(track, index.new_pod(node, track.old_uid), gate, float(cluster.now))
            if verdict.outcome is Outcome.HEALTHY:
                del flight[node]
        if not flight and queue.empty():
            return state
        batch = decide.next_batch(
            budget=state.max_unavailable, unavailable=index.unavailable, in_flight=flight,
            todo_unavailable=[n for n in index.unavailable if n in wanted and queue.eligible(n)],
            first_todo=queue.first, position=queue.position,
        )  # fmt: skip
        if batch.nodes:
            state = state.entering(Phase.progressing, in_flight=tuple(sorted({*flight, *batch.nodes})))
            store.write(state)
            for node in batch.nodes:
                old = index.old_pod(node)
                if old is not None:
                    cluster.delete(node)
                flight[node] = InFlight(started=float(cluster.now), old_uid=old.uid if old else None)
            continue
        cluster.tick()
    raise AssertionError("unreachable")


def a_restart(nodes: int, budget: int, steps: tuple[int, ...]) -> RolloutState:
    order = tuple(f"n{i}" for i in range(nodes))
    fresh = decide.fresh_state(
        policy(tuple(str(s) for s in steps), max_unavailable=budget), order, kind=RunKind.restart, who="me",
        commit=None, steps=None, previous=None, original_strategy=None, partition=None,
        on_failure=restart.on_failure("rollback"),
    )  # fmt: skip
    return replace(fresh, target_revision=REV)


@FAST
@given(
    nodes=st.integers(1, 7),
    budget=st.integers(1, 3),
    steps=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(lambda s: tuple(sorted(set(s)))),
    kills=st.lists(st.integers(1, 30), max_size=3),
)
def test_a_restart_killed_anywhere_and_resumed_replaces_every_pod_exactly_once(
    nodes: int, budget: int, steps: tuple[int, ...], kills: list[int]
) -> None:
    cluster, fresh, store = Cluster(nodes), a_restart(nodes, budget, steps), Store()
    for kill in [*kills, None]:
        store.kill_at = None if kill is None else store.writes + kill
        try:
            run(cluster, fresh, store)
            break
        except Killed:
            if store.state is not None and store.state.finished:
                break
    assert store.state is not None and store.state.phase is Phase.complete
    assert cluster.deleted == dict.fromkeys(fresh.nodes, 1), "every pod replaced exactly once"
    began = store.state.restarted_at
    assert all(created_after(pod.created, began) and pod.ready for pod in cluster.pods.values())


def test_without_waiting_for_the_clock_a_replacement_made_in_the_recorded_second_is_never_done() -> None:
    """Why the executor waits: a pod deleted in the second ``restartedAt`` records is
    replaced by one created in that second too, which can never count as restarted."""
    cluster, fresh = Cluster(3), a_restart(3, 1, (3,))
    with pytest.raises(Stuck, match=r"\['n0'\]"):
        run(cluster, fresh, Store(), wait=False)
    assert cluster.deleted == {"n0": 1} and cluster.pods["n0"].created == stamp(0)
