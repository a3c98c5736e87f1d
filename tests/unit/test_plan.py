"""The pure rollout planner: node order, steps, partition, batches, per-variant actions, saved plans.

Inputs are shaped like what ``observe`` hands the planner from a real cluster: node label
maps, pod JSON as the API server returns it, a ``VariantDiff`` from the live diff.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import orphans
from dsroll.config import RolloutPolicy
from dsroll.diff import Change, VariantDiff
from dsroll.errors import InputError
from dsroll.plan import (
    Action,
    LiveFingerprint,
    Plan,
    PodView,
    Policy,
    StepPlan,
    VariantPlan,
    batches,
    count_of,
    order_nodes,
    parse_steps,
    plan_steps,
    plan_variant,
    pods_by_node,
    resolve_max_unavailable,
    resolve_partition,
    resolve_steps,
    resume_order,
)
from dsroll.planfile import plan_from_json, plan_to_json
from dsroll.rollout import decide
from dsroll.rollout.fleet import NodeView
from dsroll.rollout.state import Phase, RolloutState, RunKind

ZONE = "topology.kubernetes.io/zone"
CANARY = {"dsroll.io/canary": "true"}
NS, NAME, DS_UID = "agents", "agent-general", "0b5e3c1e-6d3f-4c59-9a57-3f1f6d1a2b01"
OLD, NEW = "8685cc7865", "6d9f7c5b8d"


# --- builders --------------------------------------------------------------------------


def labels(zone: str | None = None, canary: bool = False) -> dict[str, str]:
    found = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"}
    if zone is not None:
        found[ZONE] = zone
    if canary:
        found["dsroll.io/canary"] = "true"
    return found


#: Six nodes in three zones; node-c1 is the canary.
FLEET = {
    "node-a1": labels("zone-a"),
    "node-a2": labels("zone-a"),
    "node-b1": labels("zone-b"),
    "node-b2": labels("zone-b"),
    "node-c1": labels("zone-c", canary=True),
    "node-c2": labels("zone-c"),
}
FLEET_ORDER = ("node-c1", "node-a1", "node-b1", "node-c2", "node-a2", "node-b2")


def pod(
    node: str,
    revision: str | None,
    *,
    name: str | None = None,
    ready: bool = True,
    terminating: bool = False,
    owner: str = DS_UID,
) -> dict[str, Any]:
    """A daemon pod as the API server returns it."""
    pod_name = name or f"{NAME}-{node[-2:]}{(revision or 'x')[:3]}"
    meta: dict[str, Any] = {
        "name": pod_name,
        "namespace": NS,
        "uid": f"uid-{pod_name}",
        "labels": {"app": "agent", "dsroll.io/workload": "agent", "dsroll.io/class": "general"},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": NAME, "uid": owner, "controller": True}
        ],
    }
    if revision is not None:
        meta["labels"]["controller-revision-hash"] = revision
    if terminating:
        meta["deletionTimestamp"] = "2026-11-23T10:00:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "example.com/agent:1.0"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [{"name": "agent", "ready": ready, "restartCount": 0, "state": {"running": {}}}],
        },
    }


def views(revisions: Mapping[str, str | None]) -> list[PodView]:
    return [PodView.of(pod(node, rev)) for node, rev in revisions.items()]


def daemonset(generation: int = 3, uid: str = DS_UID) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NS, "uid": uid, "generation": generation},
        "spec": {
            "selector": {"matchLabels": {"app": "agent", "dsroll.io/workload": "agent", "dsroll.io/class": "general"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent"}]}},
        },
    }


MANIFEST = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": NAME, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "dsroll"}},
    "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "example.com/agent:1.1"}]}}},
}


def diff(change: Change, paths: Sequence[str] = ()) -> VariantDiff:
    return VariantDiff(NS, NAME, "agent", "general", change, tuple(paths), 0, "")


def policy(
    steps: Sequence[str] = ("1", "50%", "100%"), max_unavailable: int | str = 2, canary: Mapping[str, str] = CANARY
) -> Policy:
    return Policy(
        steps=tuple(steps),
        max_unavailable=max_unavailable,
        pause="manual",
        ready_timeout="5m",
        min_ready_seconds=0,
        on_failure="rollback",
        canary_node_selector=dict(canary),
    )


def state(phase: Phase, nodes: Sequence[str], operation: RunKind = RunKind.rollout, **extra: Any) -> RolloutState:
    return RolloutState(
        operation=operation,
        phase=phase,
        target_revision=NEW,
        previous_revision=OLD,
        steps=(1, 3, 6),
        step=1,
        nodes=tuple(nodes),
        max_unavailable=2,
        pause="manual",
        ready_timeout="5m",
        min_ready_seconds=0,
        on_failure="rollback",
        original_strategy={"type": "RollingUpdate"},
        who="alice@laptop (cluster user kubernetes-admin)",
        **extra,
    )


def plan_of(
    change: Change,
    revisions: Mapping[str, str | None] | None,
    *,
    current: str | None = NEW,
    node_labels: Mapping[str, Mapping[str, str]] = FLEET,
    class_nodes: Sequence[str] = (),
    saved: RolloutState | None = None,
    partition: str | None = None,
    pods: Sequence[PodView] | None = None,
    the_policy: Policy | None = None,
    node_views: Mapping[str, NodeView] | None = None,
) -> VariantPlan:
    live = None if revisions is None and pods is None else daemonset()
    return plan_variant(
        diff(change),
        manifest=MANIFEST,
        live=live,
        pods=pods if pods is not None else views(revisions or {}),
        current_revision=current if live is not None else None,
        node_labels=node_labels,
        class_nodes=class_nodes,
        policy=the_policy or policy(),
        state=saved,
        partition=partition,
        node_views=node_views,
    )


# --- strategies ------------------------------------------------------------------------

node_names = st.from_regex(r"node-[a-z0-9]{1,5}", fullmatch=True)
zones = st.sampled_from(["zone-a", "zone-b", "zone-c", "zone-d", None])
fleets = st.dictionaries(node_names, st.tuples(zones, st.booleans()), max_size=25).map(
    lambda d: {name: labels(zone, canary) for name, (zone, canary) in d.items()}
)
step_specs = st.one_of(st.integers(1, 40).map(str), st.integers(1, 100).map(lambda p: f"{p}%"))
policies = st.builds(
    policy,
    steps=st.lists(step_specs, max_size=5).map(lambda s: (*s, "100%")),
    max_unavailable=st.one_of(st.integers(1, 6), st.integers(1, 100).map(lambda p: f"{p}%")),
)


def zone_of(node_labels: Mapping[str, Mapping[str, str]], name: str) -> str:
    return node_labels[name].get(ZONE, "")


# --- PodView and pods_by_node ----------------------------------------------------------


def test_podview_reads_the_pod_json() -> None:
    view = PodView.of(pod("node-a1", NEW, name="agent-general-x7k2p"))
    assert view == PodView("agent-general-x7k2p", "uid-agent-general-x7k2p", "node-a1", NEW, True, False)


def test_podview_not_ready_terminating_unlabelled_unscheduled() -> None:
    raw = pod("node-a1", None, ready=False, terminating=True)
    raw["spec"].pop("nodeName")
    view = PodView.of(raw)
    assert (view.ready, view.terminating, view.revision, view.node) == (False, True, None, "")


def test_podview_without_status_is_not_ready() -> None:
    raw = pod("node-a1", NEW)
    raw.pop("status")
    assert PodView.of(raw).ready is False


def test_pods_by_node_prefers_the_live_pod_over_a_terminating_one() -> None:
    old = PodView.of(pod("node-a1", OLD, terminating=True))
    new = PodView.of(pod("node-a1", NEW, ready=False))
    for given_order in ([old, new], [new, old]):
        assert pods_by_node(given_order) == {"node-a1": new}


def test_pods_by_node_keeps_a_terminating_pod_where_nothing_else_runs_and_drops_unscheduled() -> None:
    leaving = PodView.of(pod("node-b1", OLD, terminating=True))
    unscheduled = PodView.of(pod("node-a1", NEW))
    unscheduled = PodView(unscheduled.name, unscheduled.uid, "", NEW, False, False)
    assert pods_by_node([leaving, unscheduled]) == {"node-b1": leaving}


# --- Policy ----------------------------------------------------------------------------


def test_policy_of_the_default_rollout_policy() -> None:
    got = Policy.of(RolloutPolicy())
    assert got == Policy(("1", "10%", "50%", "100%"), 1, "manual", "5m", 0, "rollback", {})


def test_policy_of_applies_the_steps_flag_and_keeps_the_rest() -> None:
    configured = RolloutPolicy(
        steps=["2", "100%"], max_unavailable="25%", pause="30s", canary_node_selector={"dsroll.io/canary": "true"}
    )
    got = Policy.of(configured, ("1", "25%", "100%"))
    assert got.steps == ("1", "25%", "100%")
    assert (got.max_unavailable, got.pause, got.canary_node_selector) == ("25%", "30s", CANARY)
    assert Policy.of(configured).steps == ("2", "100%")


def test_policy_of_a_zero_pause_stays_zero() -> None:
    assert Policy.of(RolloutPolicy(pause=0)).pause == "0"


# --- parse_steps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,25%,100%", ("1", "25%", "100%")),
        (" 1 , 10% ,50%, 100% ", ("1", "10%", "50%", "100%")),
        ("100%", ("100%",)),
        ("3,100%,", ("3", "100%")),
    ],
)
def test_parse_steps_accepts_counts_and_percentages_ending_at_100(text: str, expected: tuple[str, ...]) -> None:
    assert parse_steps(text) == expected


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("0,100%", "'0'"),
        ("0%,100%", "'0%'"),
        ("1,101%", "'101%'"),
        ("-1,100%", "'-1'"),
        ("1.5,100%", "'1.5'"),
        ("one,100%", "'one'"),
        ("1,%,100%", "'%'"),
    ],
)
def test_parse_steps_names_the_bad_step(text: str, culprit: str) -> None:
    with pytest.raises(InputError) as info:
        parse_steps(text)
    assert str(info.value).startswith(f"--steps {text!r}: {culprit} is not a node count")


@pytest.mark.parametrize("text", ["1,50%", "1,2,3", "", " , ", "100%,50%"])
def test_parse_steps_requires_the_last_step_to_be_100_percent(text: str) -> None:
    with pytest.raises(InputError, match='the last step must be "100%"'):
        parse_steps(text)


@pytest.mark.parametrize("text", ["50%,10%,100%", "3,1,100%", "1,1,100%", "10%,10%,100%"])
def test_parse_steps_refuses_steps_that_do_not_grow(text: str) -> None:
    # like the environment file: counts and percentages are cumulative, each kind strictly growing
    with pytest.raises(InputError, match="steps are cumulative and must grow"):
        parse_steps(text)


def test_parse_steps_refuses_a_non_decimal_digit_as_bad_input() -> None:
    # "²".isdigit() is True but int("²") raises ValueError: this once escaped as a traceback
    with pytest.raises(InputError, match=r"^--steps '²,100%': '²' is not a node count"):
        parse_steps("²,100%")


# --- count_of and resolve_steps --------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [("1", 10, 1), ("12", 10, 10), (3, 10, 3), ("10%", 10, 1), ("10%", 15, 2), ("1%", 3, 1), ("100%", 7, 7)],
)
def test_count_of(spec: str | int, total: int, expected: int) -> None:
    assert count_of(spec, total) == expected


@given(spec=step_specs, total=st.integers(0, 500))
def test_count_of_is_the_exact_clamped_ceiling(spec: str, total: int) -> None:
    number = int(spec.removesuffix("%"))
    exact = -(-number * total // 100) if spec.endswith("%") else number
    assert count_of(spec, total) == min(total, exact)


@pytest.mark.parametrize(
    ("specs", "total", "cap", "expected"),
    [
        (("1", "10%", "50%", "100%"), 10, None, (1, 5, 10)),  # 10% of 10 is 1 again: dropped
        (("1", "10%", "50%", "100%"), 3, None, (1, 2, 3)),
        (("1", "10%", "50%", "100%"), 1, None, (1,)),
        (("1", "10%", "50%", "100%"), 0, None, ()),
        (("1", "10%", "50%", "100%"), 10, 3, (1, 3)),
        (("1", "10%", "50%", "100%"), 10, 0, ()),
        (("5", "100%"), 10, 12, (5, 10)),
        (("50%", "10%", "100%"), 10, None, (5, 10)),
        (("1", "3"), 10, None, (1, 3, 10)),  # a saved list not reaching the total gets a last step
    ],
)
def test_resolve_steps(specs: tuple[str, ...], total: int, cap: int | None, expected: tuple[int, ...]) -> None:
    assert resolve_steps(specs, total, cap) == expected


@given(specs=st.lists(step_specs, max_size=6), total=st.integers(0, 60), cap=st.one_of(st.none(), st.integers(0, 70)))
def test_resolve_steps_grows_strictly_and_ends_at_the_cap(specs: list[str], total: int, cap: int | None) -> None:
    limit = total if cap is None else min(cap, total)
    counts = resolve_steps(specs, total, cap)
    assert all(a < b for a, b in itertools.pairwise(counts)), "strictly increasing"
    assert all(0 < c <= limit for c in counts), "never empty, never past the cap"
    assert (counts == ()) if limit == 0 else (counts[-1] == limit)
    assert set(counts) <= {min(count_of(s, total), limit) for s in specs} | {limit}


@given(specs=st.lists(step_specs, max_size=6), total=st.integers(1, 60))
def test_resolve_steps_keeps_every_growing_step(specs: list[str], total: int) -> None:
    ordered = sorted(specs, key=lambda s: count_of(s, total))
    assert set(resolve_steps(ordered, total)) == {count_of(s, total) for s in ordered} | {total}


# --- resolve_partition and resolve_max_unavailable -------------------------------------


@pytest.mark.parametrize(
    ("text", "total", "expected"),
    [(None, 10, None), ("2", 10, 2), ("0", 10, 0), ("12", 10, 10), ("25%", 10, 2), ("100%", 7, 7), ("0%", 7, 0)],
)
def test_resolve_partition(text: str | None, total: int, expected: int | None) -> None:
    assert resolve_partition(text, total) == expected


@given(percent=st.integers(0, 100), total=st.integers(0, 500))
def test_resolve_partition_percentage_rounds_down(percent: int, total: int) -> None:
    assert resolve_partition(f"{percent}%", total) == percent * total // 100


@pytest.mark.parametrize("text", ["-1", "two", "101%", "2.5", "", "%", "1 "])
def test_resolve_partition_refuses_bad_input(text: str) -> None:
    with pytest.raises(InputError, match=r"^--partition .*: use a node count \(2\) or a percentage \(25%\)$"):
        resolve_partition(text, 10)


def test_resolve_partition_refuses_a_non_decimal_digit_as_bad_input() -> None:
    # "²".isdigit() is True but int("²") raises ValueError: this once escaped as a traceback
    for text in ("²", "²%"):
        with pytest.raises(InputError, match=r"^--partition '²%?': use a node count"):
            resolve_partition(text, 10)


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(1, 10, 1), (0, 10, 1), (3, 2, 3), ("3", 10, 3), ("25%", 10, 3), ("1%", 10, 1), ("100%", 7, 7), ("50%", 0, 1)],
)
def test_resolve_max_unavailable(value: int | str, total: int, expected: int) -> None:
    assert resolve_max_unavailable(value, total) == expected


@given(percent=st.integers(0, 100), total=st.integers(0, 500))
def test_resolve_max_unavailable_percentage_rounds_up_and_is_at_least_one(percent: int, total: int) -> None:
    assert resolve_max_unavailable(f"{percent}%", total) == max(1, -(-percent * total // 100))


# --- order_nodes and resume_order --------------------------------------------------------


def test_order_nodes_canary_first_then_round_robin_across_zones() -> None:
    assert order_nodes(FLEET, CANARY) == FLEET_ORDER


def test_order_nodes_without_a_canary_selector_spreads_every_node() -> None:
    assert order_nodes(FLEET) == ("node-a1", "node-b1", "node-c1", "node-a2", "node-b2", "node-c2")
    assert order_nodes(FLEET, {}) == order_nodes(FLEET)


def test_order_nodes_canary_selector_needs_every_label_to_match() -> None:
    fleet = {**FLEET, "node-b2": {**labels("zone-b", canary=True), "gpu": "true"}}
    assert order_nodes(fleet, {**CANARY, "gpu": "true"})[0] == "node-b2"
    assert order_nodes(fleet, {**CANARY, "gpu": "true"})[1:] == ("node-a1", "node-b1", "node-c1", "node-a2", "node-c2")
    assert order_nodes({"n1": labels("zone-a"), "n0": {**labels("zone-a"), "dsroll.io/canary": "false"}}, CANARY) == (
        "n0",
        "n1",
    )


def test_order_nodes_several_canaries_by_name_and_nodes_without_a_zone() -> None:
    fleet = {
        "w-3": labels("zone-b", canary=True),
        "w-1": labels("zone-a", canary=True),
        "w-2": labels(None),
        "w-0": labels(None),
        "w-4": labels("zone-a"),
    }
    # nodes without the zone label form one zone of their own ("" sorts first)
    assert order_nodes(fleet, CANARY) == ("w-1", "w-3", "w-0", "w-4", "w-2")


def test_order_nodes_of_no_nodes() -> None:
    assert order_nodes({}, CANARY) == ()


@given(fleet=fleets, use_canary=st.booleans())
def test_order_nodes_is_a_permutation_with_canaries_first(fleet: dict[str, dict[str, str]], use_canary: bool) -> None:
    canary = CANARY if use_canary else None
    order = order_nodes(fleet, canary)
    assert sorted(order) == sorted(fleet)
    is_canary = [use_canary and fleet[n].get("dsroll.io/canary") == "true" for n in order]
    assert is_canary == sorted(is_canary, reverse=True), "every canary before every other node"
    canaries = [n for n, c in zip(order, is_canary, strict=True) if c]
    assert canaries == sorted(canaries)


@given(fleet=fleets, data=st.data())
def test_order_nodes_does_not_depend_on_the_input_order(fleet: dict[str, dict[str, str]], data: st.DataObject) -> None:
    shuffled = dict(data.draw(st.permutations(list(fleet.items()))))
    assert order_nodes(shuffled, CANARY) == order_nodes(fleet, CANARY)


@given(fleet=fleets, use_canary=st.booleans())
def test_order_nodes_spreads_zones(fleet: dict[str, dict[str, str]], use_canary: bool) -> None:
    canary = CANARY if use_canary else None
    order = order_nodes(fleet, canary)
    spread = [n for n in order if not (use_canary and fleet[n].get("dsroll.io/canary") == "true")]
    for i in range(len(spread) - 1):
        if zone_of(fleet, spread[i]) == zone_of(fleet, spread[i + 1]):
            left = {zone_of(fleet, n) for n in spread[i:]}
            assert len(left) == 1, f"{spread[i]} and {spread[i + 1]} share a zone while {sorted(left)} have nodes left"
    for zone in {zone_of(fleet, n) for n in spread}:
        in_zone = [n for n in spread if zone_of(fleet, n) == zone]
        assert in_zone == sorted(in_zone), "each zone's nodes by name"


@given(fleet=fleets)
def test_order_nodes_every_prefix_is_balanced_across_zones_still_in_play(fleet: dict[str, dict[str, str]]) -> None:
    order = order_nodes(fleet)
    for k in range(len(order)):
        done = [zone_of(fleet, n) for n in order[:k]]
        left = {zone_of(fleet, n) for n in order[k:]}
        if done:
            most = max(done.count(z) for z in set(done))
            assert all(done.count(z) >= most - 1 for z in left), f"prefix {order[:k]} skipped a zone"


def test_resume_order_puts_the_nodes_done_first_each_group_in_order() -> None:
    order = ("node-a1", "node-b1", "node-c1", "node-a2", "node-b2")
    assert resume_order(order, ["node-a1", "node-a2"]) == ("node-b1", "node-c1", "node-b2", "node-a1", "node-a2")
    assert resume_order(order, order) == order  # nothing done yet: the order itself
    assert resume_order(order, ()) == order


@given(
    order=st.lists(node_names, unique=True, max_size=15),
    behind=st.sets(node_names, max_size=15),
    count=st.integers(0, 15),
)
def test_a_resumed_window_holds_every_node_done_before(order: list[str], behind: set[str], count: int) -> None:
    resumed = resume_order(order, behind)
    assert sorted(resumed) == sorted(order)
    done = [n for n in order if n not in behind]
    window = resumed[: max(count, len(done))]
    assert set(done) <= set(window)  # a step of count >= the nodes done never takes a node more than its count


# --- batches and plan_steps ------------------------------------------------------------


def test_batches() -> None:
    assert batches(["n1", "n2", "n3", "n4", "n5"], 2) == (("n1", "n2"), ("n3", "n4"), ("n5",))
    assert batches(["n1", "n2"], 5) == (("n1", "n2"),)
    assert batches([], 3) == ()


TEN = tuple(f"kwok-node-{i:03d}" for i in range(10))


def test_plan_steps_cuts_the_documented_steps_into_batches() -> None:
    got = plan_steps(TEN, TEN, policy(("1", "10%", "50%", "100%"), 2), None)
    assert got == (
        StepPlan(1, 1, TEN[:1], (TEN[0:1],)),
        StepPlan(2, 5, TEN[1:5], (TEN[1:3], TEN[3:5])),
        StepPlan(3, 10, TEN[5:], (TEN[5:7], TEN[7:9], TEN[9:])),
    )


def test_plan_steps_with_a_partition_stops_short_and_keeps_the_rest() -> None:
    got = plan_steps(TEN, TEN, policy(("1", "10%", "50%", "100%"), 2), 3)
    assert [s.count for s in got] == [1, 5, 7]
    assert got[-1].nodes == TEN[5:7]
    assert not {n for s in got for n in s.nodes} & set(TEN[7:])


def test_plan_steps_partition_of_every_node_plans_nothing() -> None:
    assert plan_steps(TEN, TEN, policy(), 10) == ()
    assert plan_steps(TEN, TEN, policy(), 15) == ()


def test_plan_steps_skips_nodes_already_done_but_keeps_the_step_numbers() -> None:
    pending = TEN[6:]
    got = plan_steps(TEN, pending, policy(("1", "50%", "100%"), "25%"), None)
    assert [(s.number, s.count, s.nodes) for s in got] == [(1, 1, ()), (2, 5, ()), (3, 10, TEN[6:])]
    assert got[0].batches == got[1].batches == ()
    assert got[2].batches == (TEN[6:9], TEN[9:])  # 25% of 10 rounds up to 3


def test_plan_steps_ignores_pending_nodes_outside_the_order() -> None:
    got = plan_steps(TEN[:2], ["kwok-node-001", "elsewhere"], policy(("100%",), 1), None)
    assert got == (StepPlan(1, 2, ("kwok-node-001",), (("kwok-node-001",),)),)


@given(
    order=st.lists(node_names, unique=True, max_size=30),
    data=st.data(),
    the_policy=policies,
    partition=st.one_of(st.none(), st.integers(0, 35)),
)
def test_plan_steps_partitions_exactly_the_pending_nodes_within_the_cap(
    order: list[str], data: st.DataObject, the_policy: Policy, partition: int | None
) -> None:
    pending = set(data.draw(st.sets(st.sampled_from(order)) if order else st.just(set())))
    pending |= data.draw(st.sets(st.just("not-in-the-order"), max_size=1))
    cap = len(order) if partition is None else max(0, len(order) - partition)
    size = resolve_max_unavailable(the_policy.max_unavailable, len(order))
    steps = plan_steps(order, pending, the_policy, partition)

    assert [s.number for s in steps] == list(range(1, len(steps) + 1))
    assert [s.count for s in steps] == list(resolve_steps(the_policy.steps, len(order), cap))
    replaced = [n for s in steps for n in s.nodes]
    assert replaced == [n for n in order[:cap] if n in pending], "each pending node within the cap once, in order"
    for step in steps:
        assert [n for b in step.batches for n in b] == list(step.nodes)
        assert all(0 < len(b) <= size for b in step.batches), "no batch above maxUnavailable"
        assert set(step.nodes) <= set(order[: step.count])


# --- plan_variant: the action per variant -----------------------------------------------


def test_create_when_the_variant_is_not_live() -> None:
    got = plan_of(Change.ADDED, None, class_nodes=["node-b1", "node-c1", "node-a1"])
    assert (got.action, got.pending, got.steps, got.partition) == (Action.CREATE, (), (), None)
    assert got.nodes == ("node-c1", "node-a1", "node-b1"), "a new variant's nodes are its class's nodes"
    assert got.live == LiveFingerprint(None, None, None, ())
    assert (got.applies, got.resumes) == (False, False)
    assert got.manifest == MANIFEST
    assert "nothing to replace" in got.reason


def test_create_ignores_a_partition() -> None:
    got = plan_of(Change.ADDED, None, class_nodes=list(FLEET), partition="2")
    assert got.partition is None and got.steps == ()


def test_update_when_the_pod_template_changed_replaces_every_node_in_steps() -> None:
    got = plan_of(Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD)
    assert got.action is Action.UPDATE and got.applies
    assert got.nodes == FLEET_ORDER and got.pending == FLEET_ORDER
    assert [(s.count, s.batches) for s in got.steps] == [
        (1, (("node-c1",),)),
        (3, (("node-a1", "node-b1"),)),
        (6, (("node-c2", "node-a2"), ("node-b2",))),
    ]
    assert got.live == LiveFingerprint(DS_UID, 3, OLD, tuple(sorted(FLEET)))
    assert got.key == (NS, NAME) and (got.workload, got.cls) == ("agent", "general")


def test_update_forecasts_held_and_unready_nodes_as_skipped_and_leaves_them_out_of_the_steps() -> None:
    unready = NodeView("node-a1", False, "Ready=Unknown: Kubelet stopped posting node status.", False, False)
    views = {"node-a1": unready, "node-b1": NodeView("node-b1", True, "", True, False)}
    got = plan_of(Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD, node_views=views)
    assert [(s.node, s.reason.value) for s in got.skipped] == [("node-a1", "not-ready"), ("node-b1", "held")]
    assert got.updatable == len(FLEET) - 2
    replaced = [n for step in got.steps for n in step.nodes]
    assert "node-a1" not in replaced and "node-b1" not in replaced and len(replaced) == len(FLEET) - 2
    assert got.steps[-1].count == len(FLEET) - 2
    waiting = plan_of(
        Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD, node_views=views,
        the_policy=replace(policy(), unready_nodes="wait"),
    )  # fmt: skip
    assert [s.node for s in waiting.skipped] == ["node-b1"]  # a node that is not Ready waits for its turn


def test_update_nodes_are_those_running_a_pod_not_the_class() -> None:
    running = {"node-a1": OLD, "node-b1": OLD, "node-c2": OLD}
    got = plan_of(Change.POD_TEMPLATE, running, current=OLD, class_nodes=list(FLEET))
    assert got.nodes == ("node-a1", "node-b1", "node-c2")


def test_update_with_a_node_unknown_to_the_node_list_still_plans_it() -> None:
    got = plan_of(Change.POD_TEMPLATE, {"node-a1": OLD, "node-x9": OLD}, current=OLD)
    assert set(got.nodes) == {"node-a1", "node-x9"}


@pytest.mark.parametrize(("partition", "kept", "counts"), [("2", 2, [1, 3, 4]), ("50%", 3, [1, 3]), ("6", 6, [])])
def test_update_with_a_partition_caps_the_steps(partition: str, kept: int, counts: list[int]) -> None:
    got = plan_of(Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD, partition=partition)
    assert got.partition == kept
    assert [s.count for s in got.steps] == counts
    assert not {n for s in got.steps for n in s.nodes} & set(FLEET_ORDER[len(FLEET) - kept :])


def test_orphan_replace_when_the_selector_changed() -> None:
    got = plan_of(Change.SELECTOR, dict.fromkeys(FLEET, NEW), partition="1")
    assert got.action is Action.ORPHAN_REPLACE
    assert got.pending == FLEET_ORDER
    assert (got.steps, got.partition, got.applies) == ((), None, False)
    assert "orphan replacement" in got.reason


def test_orphan_replace_wins_over_an_unfinished_rollout() -> None:
    saved = state(Phase.awaiting_approval, FLEET_ORDER)
    assert plan_of(Change.SELECTOR, dict.fromkeys(FLEET, NEW), saved=saved).action is Action.ORPHAN_REPLACE


def test_prune_when_the_live_variant_is_no_longer_rendered() -> None:
    got = plan_of(Change.REMOVED, dict.fromkeys(FLEET, NEW))
    assert (got.action, got.pending, got.steps, got.applies) == (Action.PRUNE, (), (), False)
    assert "--prune" in got.reason


def test_prune_wins_over_nodes_behind_and_an_unfinished_rollout() -> None:
    saved = state(Phase.progressing, FLEET_ORDER)
    got = plan_of(Change.REMOVED, dict.fromkeys(FLEET, OLD), current=NEW, saved=saved)
    assert got.action is Action.PRUNE


@pytest.mark.parametrize("change", [Change.SPEC, Change.METADATA])
def test_in_place_when_no_pod_restarts(change: Change) -> None:
    got = plan_of(change, dict.fromkeys(FLEET, NEW), partition="2")
    assert (got.action, got.pending, got.steps, got.partition, got.applies) == (Action.IN_PLACE, (), (), None, False)
    assert got.reason == change.describe


def test_unchanged_when_live_matches_and_every_node_is_current() -> None:
    got = plan_of(Change.UNCHANGED, dict.fromkeys(FLEET, NEW))
    assert (got.action, got.pending, got.steps) == (Action.UNCHANGED, (), ())
    assert got.reason == "live matches the render"


def test_unchanged_after_a_finished_rollout() -> None:
    for phase in (Phase.complete, Phase.rolled_back, Phase.aborted, Phase.failed):
        got = plan_of(Change.UNCHANGED, dict.fromkeys(FLEET, NEW), saved=state(phase, FLEET_ORDER))
        assert (got.action, got.resumes) == (Action.UNCHANGED, False), phase


def test_update_for_nodes_behind_the_current_revision() -> None:
    revisions = {**dict.fromkeys(FLEET, NEW), "node-b1": OLD, "node-c2": OLD}
    got = plan_of(Change.UNCHANGED, revisions)
    assert got.action is Action.UPDATE
    assert got.pending == ("node-b1", "node-c2")
    assert got.reason == "2 node(s) not on the current revision"
    assert not got.applies, "nothing to apply: the live template is already the target"
    assert [s.nodes for s in got.steps] == [(), ("node-b1",), ("node-c2",)]


def test_a_pod_without_a_revision_label_is_behind() -> None:
    got = plan_of(Change.UNCHANGED, {**dict.fromkeys(FLEET, NEW), "node-a2": None})
    assert got.pending == ("node-a2",)


def test_behind_wins_over_an_in_place_change() -> None:
    got = plan_of(Change.METADATA, {**dict.fromkeys(FLEET, NEW), "node-a1": OLD})
    assert (got.action, got.pending) == (Action.UPDATE, ("node-a1",))


def test_a_replaced_node_counts_by_its_new_pod_not_the_terminating_old_one() -> None:
    pods = [
        *views(dict.fromkeys(FLEET, NEW)),
        PodView.of(pod("node-a1", OLD, name="agent-general-old", terminating=True)),
    ]
    got = plan_of(Change.UNCHANGED, None, pods=pods)
    assert (got.action, got.pending) == (Action.UNCHANGED, ())


def test_a_node_with_only_a_terminating_old_pod_is_behind() -> None:
    pods = [*views({n: NEW for n in FLEET if n != "node-b2"}), PodView.of(pod("node-b2", OLD, terminating=True))]
    got = plan_of(Change.UNCHANGED, None, pods=pods)
    assert (got.action, got.pending) == (Action.UPDATE, ("node-b2",))
    assert "node-b2" in got.live.nodes


@pytest.mark.parametrize("phase", [Phase.progressing, Phase.awaiting_approval, Phase.paused, Phase.partitioned])
def test_continues_an_unfinished_rollout_with_the_nodes_done_first(phase: Phase) -> None:
    """The state records no order: it is derived again (labels), the nodes done first."""
    saved_order = ("node-b2", "node-a2", "node-c2", "node-b1", "node-a1", "node-c1", "node-gone")
    revisions = {"node-b2": NEW, "node-a2": NEW, "node-c2": OLD, "node-b1": OLD, "node-a1": OLD, "node-c1": OLD}
    got = plan_of(Change.UNCHANGED, revisions, saved=state(phase, saved_order).as_recorded())
    assert got.action is Action.UPDATE and got.resumes
    assert got.nodes == ("node-a2", "node-b2", "node-c1", "node-a1", "node-b1", "node-c2"), "done first, then labels"
    assert got.pending == ("node-c1", "node-a1", "node-b1", "node-c2")
    assert got.reason == f"continues the rollout recorded in the cluster (phase {phase})"
    assert not got.applies


def test_continuing_appends_nodes_that_joined_since() -> None:
    saved = state(Phase.awaiting_approval, ("node-c1", "node-a1"))
    revisions = {"node-c1": NEW, "node-a1": OLD, "node-b1": OLD, "node-b2": OLD}
    got = plan_of(Change.UNCHANGED, revisions, saved=saved)
    assert got.nodes == ("node-c1", "node-a1", "node-b1", "node-b2")
    assert got.pending == ("node-a1", "node-b1", "node-b2")


def test_continuing_with_every_node_current_still_finishes_the_rollout() -> None:
    got = plan_of(Change.UNCHANGED, dict.fromkeys(FLEET, NEW), saved=state(Phase.partitioned, FLEET_ORDER))
    assert (got.action, got.pending, got.resumes) == (Action.UPDATE, (), True)


def test_continues_a_rollback_recorded_in_the_cluster() -> None:
    saved = state(Phase.rolling_back, FLEET_ORDER, operation=RunKind.rollout)
    revisions = {**dict.fromkeys(FLEET, OLD), "node-c1": NEW}
    got = plan_of(Change.UNCHANGED, revisions, current=OLD, saved=saved)
    assert got.action is Action.UPDATE and got.resumes
    assert got.pending == ("node-c1",)
    assert got.reason == "continues the rollback recorded in the cluster (phase rolling-back)"


def test_continues_a_paused_rollback_operation() -> None:
    saved = state(Phase.paused, FLEET_ORDER, operation=RunKind.rollback)
    got = plan_of(Change.UNCHANGED, {**dict.fromkeys(FLEET, OLD), "node-a1": NEW}, current=OLD, saved=saved)
    assert got.reason == "continues the rollback recorded in the cluster (phase paused)"


def test_a_new_template_during_an_unfinished_rollout_replaces_every_node() -> None:
    saved_order = ("node-a2", "node-b2", "node-c2", "node-a1", "node-b1", "node-c1")
    revisions = {**dict.fromkeys(FLEET, OLD), "node-a2": NEW}
    got = plan_of(Change.POD_TEMPLATE, revisions, current=NEW, saved=state(Phase.paused, saved_order).as_recorded())
    assert (got.action, got.resumes, got.applies) == (Action.UPDATE, True, True)
    assert set(got.pending) == set(saved_order) and got.nodes[0] == "node-a2"
    assert "pod template changed" in got.reason


def test_continuing_honours_a_new_partition() -> None:
    revisions = {n: (NEW if i < 2 else OLD) for i, n in enumerate(FLEET_ORDER)}
    saved = state(Phase.partitioned, FLEET_ORDER, partition=4)
    got = plan_of(Change.UNCHANGED, revisions, saved=saved, partition="1")
    assert got.partition == 1
    assert [n for s in got.steps for n in s.nodes] == list(FLEET_ORDER[2:5])


@given(
    fleet=fleets,
    data=st.data(),
    change=st.sampled_from([Change.UNCHANGED, Change.METADATA, Change.SPEC, Change.POD_TEMPLATE]),
    the_policy=policies,
    partition=st.one_of(st.none(), st.integers(0, 30).map(str), st.integers(0, 100).map(lambda p: f"{p}%")),
)
def test_plan_variant_replaces_exactly_the_nodes_that_need_it(
    fleet: dict[str, dict[str, str]], data: st.DataObject, change: Change, the_policy: Policy, partition: str | None
) -> None:
    revisions = {n: data.draw(st.sampled_from([OLD, NEW, None]), label=n) for n in fleet}
    got = plan_of(change, revisions, current=NEW, node_labels=fleet, the_policy=the_policy, partition=partition)
    assert got.nodes == order_nodes(fleet, the_policy.canary_node_selector)
    behind = tuple(n for n in got.nodes if revisions[n] != NEW)
    if change is Change.POD_TEMPLATE:
        assert (got.action, got.pending) == (Action.UPDATE, got.nodes)
    elif behind:
        assert (got.action, got.pending) == (Action.UPDATE, behind)
    else:
        assert got.action is (Action.UNCHANGED if change is Change.UNCHANGED else Action.IN_PLACE)
        assert got.steps == ()
    if got.action is Action.UPDATE:
        kept = resolve_partition(partition, len(got.nodes)) or 0
        within = got.nodes[: len(got.nodes) - kept]
        assert [n for s in got.steps for n in s.nodes] == [n for n in within if n in got.pending]


# --- LiveFingerprint.moves and Plan.moves ----------------------------------------------

PRINT = LiveFingerprint(DS_UID, 3, OLD, ("node-a1", "node-b1"))


def test_fingerprint_unmoved() -> None:
    assert PRINT.drift(LiveFingerprint(DS_UID, 3, OLD, ("node-a1", "node-b1")), "agents/agent-general") == []


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (LiveFingerprint(None, None, None, ()), "agents/x: deleted or recreated since the plan"),
        (LiveFingerprint("other-uid", 1, NEW, PRINT.nodes), "agents/x: deleted or recreated since the plan"),
        (LiveFingerprint(DS_UID, 4, NEW, PRINT.nodes), "agents/x: spec changed since the plan (generation 3 → 4)"),
        (LiveFingerprint(DS_UID, 3, NEW, PRINT.nodes), f"agents/x: current revision {OLD} → {NEW} since the plan"),
    ],
)
def test_fingerprint_names_the_first_thing_that_moved(now: LiveFingerprint, expected: str) -> None:
    assert PRINT.drift(now, "agents/x")[0] == expected
    assert len([m for m in PRINT.drift(now, "agents/x") if "nodes" not in m]) == 1


def test_fingerprint_a_variant_created_since_the_plan() -> None:
    before = LiveFingerprint(None, None, None, ())
    now = LiveFingerprint(DS_UID, 1, NEW, ("node-a1",))
    assert before.drift(now, "agents/x") == [
        "agents/x: created since the plan",
        "agents/x: nodes added since the plan: node-a1",
    ]


def test_fingerprint_nodes_added_and_gone_sorted() -> None:
    now = LiveFingerprint(DS_UID, 3, OLD, ("node-c2", "node-a1", "node-c1"))
    assert PRINT.drift(now, "agents/x") == [
        "agents/x: nodes added since the plan: node-c1, node-c2",
        "agents/x: nodes gone since the plan: node-b1",
    ]


def a_plan(*variants: VariantPlan) -> Plan:
    return Plan("prod", "prod-admin", "https://10.0.0.1:6443", "3ba79aa", tuple(variants))


def test_drift_prefixes_each_variant_and_notices_a_dropped_variant() -> None:
    updated = plan_of(Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD)
    other = replace(updated, name="agent-gpu")
    fresh = {updated.key: LiveFingerprint(DS_UID, 4, OLD, updated.live.nodes)}
    assert decide.drift(a_plan(updated, other), fresh, None) == [
        "agents/agent-general: spec changed since the plan (generation 3 → 4)",
        "agents/agent-gpu: no longer part of the environment",
    ]
    same = {updated.key: updated.live, other.key: other.live}
    assert decide.drift(a_plan(updated, other), same, "https://10.0.0.1:6443") == []


def test_drift_on_another_cluster_says_only_that() -> None:
    plan = a_plan(plan_of(Change.POD_TEMPLATE, dict.fromkeys(FLEET, OLD), current=OLD))
    assert decide.drift(plan, {}, "https://10.9.9.9:6443") == [
        "the plan was made against https://10.0.0.1:6443, this is https://10.9.9.9:6443"
    ]


def test_plan_has_changes() -> None:
    unchanged = plan_of(Change.UNCHANGED, dict.fromkeys(FLEET, NEW))
    pruned = plan_of(Change.REMOVED, dict.fromkeys(FLEET, NEW))
    assert not a_plan(unchanged).has_changes
    assert a_plan(unchanged, pruned).has_changes
    assert not a_plan().has_changes


# --- plan_to_json / plan_from_json -----------------------------------------------------


def sample_plan() -> Plan:
    revisions = dict.fromkeys(FLEET, OLD)
    return a_plan(
        plan_of(Change.POD_TEMPLATE, revisions, current=OLD, partition="1"),
        replace(
            plan_of(Change.ADDED, None, class_nodes=list(FLEET)),
            name="agent-gpu",
            cls="gpu",
            policy=policy(("1", "100%"), "25%", {}),
        ),
        plan_of(Change.REMOVED, dict.fromkeys(FLEET, NEW)),
        plan_of(Change.UNCHANGED, revisions, current=OLD, saved=state(Phase.awaiting_approval, FLEET_ORDER)),
    )


def test_plan_json_round_trip() -> None:
    plan = sample_plan()
    assert plan_from_json(json.dumps(plan_to_json(plan)), "plan.json") == plan


def test_plan_json_is_the_documented_shape() -> None:
    data = plan_to_json(sample_plan())
    assert (data["apiVersion"], data["kind"], data["environment"], data["commit"]) == (
        "dsroll.io/v1alpha1",
        "Plan",
        "prod",
        "3ba79aa",
    )
    first = data["variants"][0]
    assert first["action"] == "update" and first["class"] == "general" and first["partition"] == 1
    assert first["steps"][0] == {"step": 1, "count": 1, "nodes": ["node-c1"], "batches": [["node-c1"]]}
    assert first["policy"]["maxUnavailable"] == 2 and first["policy"]["canaryNodeSelector"] == CANARY
    assert first["live"] == {"uid": DS_UID, "generation": 3, "revision": OLD, "nodes": sorted(FLEET)}
    assert first["manifest"] == MANIFEST
    assert [v["action"] for v in data["variants"]] == ["update", "create", "prune", "update"]
    assert data["variants"][3]["resumes"] is True
    json.dumps(data)  # serialisable as is


def test_plan_json_without_manifests_cannot_carry_them() -> None:
    data = plan_to_json(sample_plan(), manifests=False)
    assert all("manifest" not in v for v in data["variants"])
    back = plan_from_json(json.dumps(data), "plan.json")
    assert all(v.manifest is None for v in back.variants)
    assert [v.steps for v in back.variants] == [v.steps for v in sample_plan().variants]


@settings(max_examples=60)
@given(
    fleet=fleets,
    data=st.data(),
    change=st.sampled_from(list(Change)),
    the_policy=policies,
    partition=st.one_of(st.none(), st.integers(0, 30).map(str)),
    live=st.booleans(),
)
def test_plan_json_round_trips_any_planned_variant(
    fleet: dict[str, dict[str, str]],
    data: st.DataObject,
    change: Change,
    the_policy: Policy,
    partition: str | None,
    live: bool,
) -> None:
    revisions = {n: data.draw(st.sampled_from([OLD, NEW]), label=n) for n in fleet} if live else None
    variant = plan_of(
        change, revisions, node_labels=fleet, class_nodes=list(fleet), the_policy=the_policy, partition=partition
    )
    plan = Plan("prod", "ctx", "", None, (variant,))
    assert plan_from_json(json.dumps(plan_to_json(plan)), "plan.json") == plan


def a_replacement(stage: orphans.Stage | None = None) -> orphans.ReplacementPlan:
    """agent-general's selector changed: it is recreated and adopts its own pods; one pod is on a gone node."""
    return orphans.ReplacementPlan(
        namespace=NS,
        workload="agent",
        operation=orphans.Operation.replace,
        reason=f"{NAME}: selector changed (immutable)",
        sources=(orphans.SourceRef(NS, NAME, DS_UID, ("node-a1", "node-b1", "node-z9")),),
        targets=(NAME,),
        placements=(
            orphans.Placement(f"{NAME}-a1", "uid-a1", "node-a1", NAME, NAME),
            orphans.Placement(f"{NAME}-b1", "uid-b1", "node-b1", NAME, NAME),
            orphans.Placement(f"{NAME}-z9", "uid-z9", "node-z9", NAME, None, "node node-z9 is gone"),
        ),
        backup=orphans.backup_name("agent", [DS_UID]),
        stage=stage,
    )


@pytest.mark.parametrize("stage", [None, orphans.Stage.creating])
def test_plan_json_round_trip_with_a_replacement(stage: orphans.Stage | None) -> None:
    # what a saved plan can carry of a replacement: the pods' uids and sources are looked up again
    carried = orphans.ReplacementPlan.from_json(a_replacement(stage).to_json())
    plan = replace(sample_plan(), replacements=(carried,))
    back = plan_from_json(json.dumps(plan_to_json(plan)), "plan.json")
    assert back == plan
    assert back.replacements[0].resumes is (stage is not None)


def test_plan_json_carries_each_replacement_as_its_own_json() -> None:
    replacement = a_replacement()
    plan = replace(sample_plan(), replacements=(replacement,))
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert data["replacements"] == [replacement.to_json()]
    assert data["replacements"][0]["adopts"] == {NAME: ["node-a1", "node-b1"]}
    back = plan_from_json(json.dumps(data), "plan.json").replacements[0]
    assert (back.namespace, back.workload, back.operation, back.backup) == (
        NS,
        "agent",
        orphans.Operation.replace,
        replacement.backup,
    )
    assert [(s.name, s.uid, s.nodes) for s in back.sources] == [(NAME, DS_UID, ("node-a1", "node-b1", "node-z9"))]
    assert (back.targets, back.adopted(NAME)) == ((NAME,), ("node-a1", "node-b1"))
    assert [(p.pod, p.reason) for p in back.unplaced] == [(f"{NAME}-z9", "node node-z9 is gone")]
    assert plan_to_json(plan_from_json(json.dumps(data), "plan.json")) == data


def test_plan_json_without_replacements_loads_with_none() -> None:
    data = plan_to_json(sample_plan())
    assert data["replacements"] == []
    del data["replacements"]  # a plan saved before replacements existed
    assert plan_from_json(json.dumps(data), "plan.json").replacements == ()


@pytest.mark.parametrize(
    ("break_it", "cause"),
    [
        (lambda r: r.update(operation="explode"), "'explode' is not a valid Operation"),
        (lambda r: r.update(stage="finished"), "'finished' is not a valid Stage"),
        (lambda r: r.pop("unplaced"), "'unplaced'"),
        (lambda r: r.update(deletes=[{"name": NAME}]), "'namespace'"),
        (lambda r: r.update(backup="dsroll-backup-agent"), ""),
    ],
)
def test_plan_from_json_refuses_a_bad_replacement_naming_the_file(break_it: Any, cause: str) -> None:
    data = plan_to_json(replace(sample_plan(), replacements=(a_replacement(),)))
    break_it(data["replacements"][0])
    with pytest.raises(InputError, match=f"^plan.json: not a valid dsroll plan: .*{cause}") as info:
        plan_from_json(json.dumps(data), "plan.json")
    assert info.value.file == "plan.json"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("{not json", "not a valid dsroll plan: Expecting property name"),
        ('{"apiVersion": "v1", "kind": "ConfigMap"}', "not a dsroll plan (apiVersion/kind)"),
        ('{"apiVersion": "dsroll.io/v1alpha1", "kind": "Plan"}', "not a valid dsroll plan: 'variants'"),
        ('{"apiVersion": "dsroll.io/v1alpha1", "kind": "Plan", "variants": [1]}', "not a valid dsroll plan"),
        ('{"apiVersion": "dsroll.io/v1alpha1", "kind": "Plan", "variants": null}', "not a valid dsroll plan"),
    ],
)
def test_plan_from_json_refuses_what_is_not_a_plan(text: str, cause: str) -> None:
    with pytest.raises(InputError) as info:
        plan_from_json(text, "out/plan.json")
    assert info.value.file == "out/plan.json"
    assert str(info.value).startswith("out/plan.json: ")
    assert cause in str(info.value)


def test_plan_from_json_refuses_an_unknown_action_or_a_missing_field() -> None:
    good = plan_to_json(sample_plan())
    bad_action = json.loads(json.dumps(good))
    bad_action["variants"][0]["action"] = "explode"
    missing_live = json.loads(json.dumps(good))
    del missing_live["variants"][1]["live"]
    missing_env = json.loads(json.dumps(good))
    del missing_env["environment"]
    for data, cause in ((bad_action, "'explode' is not a valid Action"), (missing_live, "'live'"), (missing_env, "")):
        with pytest.raises(InputError, match=f"^plan.json: not a valid dsroll plan: .*{cause}"):
            plan_from_json(json.dumps(data), "plan.json")


@pytest.mark.parametrize("text", ["[]", "null", "42", '"plan"'])
def test_plan_from_json_refuses_a_json_file_that_is_not_an_object(text: str) -> None:
    # once an AttributeError from data.get(): a traceback instead of exit 2
    with pytest.raises(InputError) as info:
        plan_from_json(text, "plan.json")
    assert info.value.file == "plan.json"
    assert str(info.value) == "plan.json: not a valid dsroll plan: not a dsroll plan (apiVersion/kind)"
