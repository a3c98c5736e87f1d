"""Cascade-orphan replacement, the pure part: groups, placements, labels, the plan and the record.

Inputs are shaped like what ``rollout/replacements.py`` hands ``dsroll/orphans.py`` from a
real cluster: live DaemonSets as candidates with the nodes their pods run on, a node →
variant map from the hardware classes, pod label maps as the API server returns them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import orphans
from dsroll.errors import ClusterError
from dsroll.labels import (
    BACKUP_LABEL,
    IDENTITY,
    LABEL_CLASS,
    LABEL_ENV,
    LABEL_WORKLOAD,
    MANAGED_BY,
    RECORD_ANNOTATION,
    TEMPLATE_GENERATION,
)
from dsroll.orphans import (
    FINISHED_STAGES,
    Candidate,
    Group,
    Operation,
    Placement,
    Record,
    ReplacementPlan,
    SourceRef,
    Stage,
    backup_name,
    group,
    label_patch,
    latest,
    place,
    read_record,
    relabelled,
    selector_matches,
)

NS, WORKLOAD = "agents", "agent"
GENERAL, GPU, ARM = "agent-general", "agent-gpu", "agent-arm64"
LEGACY = "node-agent"  # a hand-made DaemonSet named in `replaces`
STD = "agent-standard"  # a variant of a class since renamed to "general"
SELECTOR_CHANGED = "selector changed (immutable)"
NOT_RENDERED = "no longer rendered (class renamed or removed)"
REPLACED = "replaced (`replaces` in the environment file)"
UIDS = {
    GENERAL: "9d3c1f0e-1111-4c59-9a57-3f1f6d1a2b01",
    GPU: "9d3c1f0e-2222-4c59-9a57-3f1f6d1a2b02",
    ARM: "9d3c1f0e-3333-4c59-9a57-3f1f6d1a2b03",
    LEGACY: "9d3c1f0e-4444-4c59-9a57-3f1f6d1a2b04",
    STD: "9d3c1f0e-5555-4c59-9a57-3f1f6d1a2b05",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --- builders --------------------------------------------------------------------------


def rendered_variant(name: str, nodes: Sequence[str], why: str | None = None) -> Candidate:
    """A live DaemonSet that is still rendered (its own selector change is ``why``)."""
    return Candidate(name, UIDS[name], frozenset(nodes), True, why)


def removed_variant(name: str, nodes: Sequence[str]) -> Candidate:
    """A live dsroll variant no longer rendered: a source only when some variant takes its pods."""
    return Candidate(name, UIDS[name], frozenset(nodes), False, NOT_RENDERED, True)


def replaced_object(name: str, nodes: Sequence[str]) -> Candidate:
    """An object named in ``replaces``: always a source."""
    return Candidate(name, UIDS[name], frozenset(nodes), False, REPLACED)


def variant_labels(cls: str, env: str = "prod", **extra: str) -> dict[str, str]:
    """Template labels of a rendered variant (render.py adds the identity labels)."""
    return {
        "app": WORKLOAD,
        MANAGED_BY: "dsroll",
        LABEL_ENV: env,
        LABEL_WORKLOAD: WORKLOAD,
        LABEL_CLASS: cls,
        **extra,
    }


def variant_selector(cls: str) -> dict[str, Any]:
    return {"matchLabels": {"app": WORKLOAD, LABEL_WORKLOAD: WORKLOAD, LABEL_CLASS: cls}}


def a_record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "operation": Operation.replace,
        "stage": Stage.relabelling,
        "workload": WORKLOAD,
        "sources": (
            SourceRef(NS, LEGACY, UIDS[LEGACY], ("node-a1", "node-g1"), managed=False),
            SourceRef(NS, STD, UIDS[STD], ("node-a2",)),
        ),
        "targets": (GENERAL, GPU),
        "who": "alice@laptop (cluster user kubernetes-admin)",
        "commit": "3ba79aa",
        "file": "/home/alice/.local/state/dsroll/backups/prod/agents/dsroll-backup-agent-1a2b3c4d.yaml",
        "started_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-23T10:00:05Z",
    }
    fields.update(changes)
    return Record(**fields)


def a_plan(**changes: Any) -> ReplacementPlan:
    """A merge of a hand-made DaemonSet and a renamed class into two variants, one pod unplaceable."""
    fields: dict[str, Any] = {
        "namespace": NS,
        "workload": WORKLOAD,
        "operation": Operation.replace,
        "reason": f"{LEGACY}: {REPLACED}; {STD}: {NOT_RENDERED}",
        "sources": (
            SourceRef(NS, LEGACY, UIDS[LEGACY], ("node-a1", "node-g1", "node-x9"), managed=False),
            SourceRef(NS, STD, UIDS[STD], ("node-a2",)),
        ),
        "targets": (GENERAL, GPU),
        "placements": (
            Placement("node-agent-7xk2p", "uid-p1", "node-a1", LEGACY, GENERAL),
            Placement("agent-standard-q8d4n", "uid-p2", "node-a2", STD, GENERAL),
            Placement("node-agent-m2c9v", "uid-p3", "node-g1", LEGACY, GPU),
            Placement("node-agent-zz9q1", "uid-p4", "node-x9", LEGACY, None, "node node-x9 is gone"),
        ),
        "backup": backup_name(WORKLOAD, [UIDS[LEGACY], UIDS[STD]]),
    }
    fields.update(changes)
    return ReplacementPlan(**fields)


def apply_patch(old: Mapping[str, str], patch: Mapping[str, str | None]) -> dict[str, str]:
    """A JSON merge patch of ``metadata.labels``, as the API server applies it."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- strategies ------------------------------------------------------------------------

label_keys = st.sampled_from(["app", "tier", "team", "version", "controller-revision-hash", TEMPLATE_GENERATION])
label_values = st.sampled_from(["agent", "fluent-bit", "canary", "stable", "1", "2"])
label_maps = st.dictionaries(st.one_of(label_keys, st.sampled_from(IDENTITY)), label_values, max_size=8)
dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
uids = st.uuids().map(str)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Candidate], dict[str, str | None], list[str]]:
    """A workload's live objects, where their pods run, and the node → variant map of a new render."""
    variants = [GENERAL, GPU, ARM]
    rendered = draw(st.lists(st.sampled_from(variants), unique=True))
    nodes = [f"node-{i}" for i in range(6)]
    node_target = {n: draw(st.sampled_from([None, *rendered]), label=n) for n in nodes}
    some_nodes = st.frozensets(st.sampled_from(nodes))
    candidates = []
    for name in rendered:
        if draw(st.booleans(), label=f"{name} live"):
            why = draw(st.sampled_from([None, SELECTOR_CHANGED]), label=f"{name} why")
            candidates.append(Candidate(name, UIDS[name], draw(some_nodes), True, why))
    for name in (n for n in variants if n not in rendered):
        if draw(st.booleans(), label=f"{name} left behind"):
            candidates.append(Candidate(name, UIDS[name], draw(some_nodes), False, NOT_RENDERED, True))
    if draw(st.booleans(), label="replaces"):
        candidates.append(Candidate(LEGACY, UIDS[LEGACY], draw(some_nodes), False, REPLACED))
    return candidates, node_target, rendered


# --- group -----------------------------------------------------------------------------


def test_group_a_changed_selector_makes_the_variant_a_source_and_a_target() -> None:
    candidates = [
        rendered_variant(GENERAL, ["node-a1", "node-a2"], why=SELECTOR_CHANGED),
        rendered_variant(GPU, ["node-g1"]),
    ]
    node_target = {"node-a1": GENERAL, "node-a2": GENERAL, "node-g1": GPU}
    got = group(candidates, node_target, [GENERAL, GPU])
    assert got == Group(sources=(GENERAL,), targets=(GENERAL,), reasons=(SELECTOR_CHANGED,))


def test_group_a_changed_selector_without_pods_still_recreates_the_variant() -> None:
    got = group([rendered_variant(GENERAL, [], why=SELECTOR_CHANGED)], {"node-a1": GENERAL}, [GENERAL])
    assert got == Group(sources=(GENERAL,), targets=(GENERAL,), reasons=(SELECTOR_CHANGED,))


def test_group_a_replaced_object_with_pods_splits_into_the_variants_of_its_nodes_classes() -> None:
    candidates = [replaced_object(LEGACY, ["node-a1", "node-g1", "node-g2"])]
    node_target = {"node-a1": GENERAL, "node-g1": GPU, "node-g2": GPU, "node-r1": ARM}
    got = group(candidates, node_target, [GENERAL, GPU, ARM])
    assert got == Group(sources=(LEGACY,), targets=(GENERAL, GPU), reasons=(REPLACED,))


def test_group_a_variant_no_longer_rendered_hands_over_and_the_live_receiver_is_recreated() -> None:
    # class "standard" renamed to "general": agent-standard's nodes go to the live agent-general
    candidates = [
        rendered_variant(GENERAL, ["node-a3"]),
        rendered_variant(GPU, ["node-g1"]),
        removed_variant(STD, ["node-a1", "node-a2"]),
    ]
    node_target = {"node-a1": GENERAL, "node-a2": GENERAL, "node-a3": GENERAL, "node-g1": GPU}
    got = group(candidates, node_target, [GENERAL, GPU])
    assert got is not None
    assert (got.sources, got.targets) == ((GENERAL, STD), (GENERAL,))
    assert got.reasons[1] == NOT_RENDERED
    assert got.reasons[0] == f"{GENERAL} receives pods of {STD}: recreated so it adopts them"


def test_group_grows_until_every_live_variant_receiving_pods_is_recreated() -> None:
    # agent-standard → agent-general (live); agent-general's own node-a3 now belongs to arm64 (live)
    candidates = [
        rendered_variant(GENERAL, ["node-a2", "node-a3"]),
        rendered_variant(ARM, ["node-r1"]),
        rendered_variant(GPU, ["node-g1"]),
        removed_variant(STD, ["node-a1"]),
    ]
    node_target = {"node-a1": GENERAL, "node-a2": GENERAL, "node-a3": ARM, "node-r1": ARM, "node-g1": GPU}
    got = group(candidates, node_target, [GENERAL, GPU, ARM])
    assert got is not None
    assert got.sources == (GENERAL, ARM, STD)
    assert got.targets == (GENERAL, ARM)


def test_group_a_live_variant_whose_nodes_now_belong_to_another_variant_hands_them_over() -> None:
    # a class "gpu" added: node-a2 moves from agent-general to the new agent-gpu
    candidates = [rendered_variant(GENERAL, ["node-a1", "node-a2"])]
    got = group(candidates, {"node-a1": GENERAL, "node-a2": GPU}, [GENERAL, GPU])
    assert got is not None
    assert (got.sources, got.targets) == ((GENERAL,), (GENERAL, GPU))
    assert got.reasons == (f"some of its nodes now belong to {GPU}",)


def test_group_a_live_variant_whose_nodes_left_every_class_is_not_a_source() -> None:
    # the DaemonSet controller removes those pods itself (node affinity); nothing to hand over
    candidates = [rendered_variant(GENERAL, ["node-a1", "node-a2"])]
    assert group(candidates, {"node-a1": GENERAL, "node-a2": None}, [GENERAL]) is None


def test_group_a_no_longer_rendered_variant_whose_nodes_no_variant_covers_is_a_plain_prune() -> None:
    candidates = [rendered_variant(GENERAL, ["node-a1"]), removed_variant(STD, ["node-s1", "node-s2"])]
    node_target = {"node-a1": GENERAL, "node-s1": None}  # node-s2: in no class either
    assert group(candidates, node_target, [GENERAL]) is None


def test_group_a_no_longer_rendered_variant_without_pods_is_a_plain_prune() -> None:
    assert group([removed_variant(STD, [])], {"node-a1": GENERAL}, [GENERAL]) is None


def test_group_an_explicitly_replaced_object_without_pods_is_still_a_source() -> None:
    got = group([replaced_object(LEGACY, [])], {"node-a1": GENERAL}, [GENERAL])
    assert got == Group(sources=(LEGACY,), targets=(), reasons=(REPLACED,))


def test_group_an_explicitly_replaced_object_whose_nodes_no_variant_covers_is_still_a_source() -> None:
    got = group([replaced_object(LEGACY, ["node-x1"])], {"node-x1": None}, [GENERAL])
    assert got == Group(sources=(LEGACY,), targets=(), reasons=(REPLACED,))


def test_group_a_new_variant_that_receives_pods_is_a_target_but_not_a_source() -> None:
    candidates = [replaced_object(LEGACY, ["node-g1"]), rendered_variant(GENERAL, ["node-a1"])]
    got = group(candidates, {"node-g1": GPU, "node-a1": GENERAL}, [GENERAL, GPU])
    assert got == Group(sources=(LEGACY,), targets=(GPU,), reasons=(REPLACED,))


def test_group_targets_come_in_render_order_sources_in_the_order_given() -> None:
    candidates = [replaced_object(LEGACY, ["node-a1", "node-r1"]), removed_variant(STD, ["node-g1"])]
    node_target = {"node-a1": GENERAL, "node-g1": GPU, "node-r1": ARM}
    got = group(candidates, node_target, [GPU, ARM, GENERAL])
    assert got is not None
    assert got.targets == (GPU, ARM, GENERAL)
    assert got.sources == (LEGACY, STD)
    reversed_got = group(candidates[::-1], node_target, [GENERAL, ARM, GPU])
    assert reversed_got is not None
    assert (reversed_got.sources, reversed_got.targets) == ((STD, LEGACY), (GENERAL, ARM, GPU))


def test_group_nothing_to_hand_over_is_none() -> None:
    candidates = [rendered_variant(GENERAL, ["node-a1"]), rendered_variant(GPU, ["node-g1"])]
    assert group(candidates, {"node-a1": GENERAL, "node-g1": GPU}, [GENERAL, GPU]) is None
    assert group([], {"node-a1": GENERAL}, [GENERAL]) is None


def test_group_an_object_both_no_longer_rendered_and_named_in_replaces_is_one_source() -> None:
    # a removed variant also named in `replaces` arrives as two candidates: deleted once
    candidates = [removed_variant(STD, ["node-a1"]), replaced_object(STD, ["node-a1"])]
    got = group(candidates, {"node-a1": GENERAL}, [GENERAL])
    assert got is not None
    assert got.sources == (STD,)


@settings(max_examples=300)
@given(world=worlds())
def test_group_every_node_of_every_source_goes_to_a_target_of_the_group_or_nowhere(
    world: tuple[list[Candidate], dict[str, str | None], list[str]],
) -> None:
    candidates, node_target, rendered = world
    got = group(candidates, node_target, rendered)
    if got is None:
        return
    by_name = {c.name: c for c in candidates}
    for source in got.sources:
        for node in by_name[source].nodes:
            assert node_target.get(node) is None or node_target[node] in got.targets


@settings(max_examples=300)
@given(world=worlds())
def test_group_is_closed_every_live_rendered_variant_receiving_pods_is_a_source(
    world: tuple[list[Candidate], dict[str, str | None], list[str]],
) -> None:
    candidates, node_target, rendered = world
    got = group(candidates, node_target, rendered)
    by_name = {c.name: c for c in candidates}
    sources = got.sources if got else ()
    receiving = {node_target.get(n) for s in sources for n in by_name[s].nodes} - {None}
    for c in candidates:
        if c.rendered and c.name in receiving:
            assert c.name in sources
        if c.rendered and c.name in sources:
            assert got is not None and c.name in got.targets  # recreated, never just deleted


@settings(max_examples=300)
@given(world=worlds())
def test_group_is_none_only_when_no_object_has_to_hand_pods_over(
    world: tuple[list[Candidate], dict[str, str | None], list[str]],
) -> None:
    candidates, node_target, rendered = world
    got = group(candidates, node_target, rendered)

    def receives(c: Candidate) -> set[str]:
        return {t for n in c.nodes if (t := node_target.get(n)) is not None}

    must = [
        c.name
        for c in candidates
        if (c.why is not None and (receives(c) or not c.if_it_hands_over))
        or (c.why is None and c.rendered and receives(c) - {c.name})
    ]
    assert (got is None) == (not must)
    if got is not None:
        assert set(must) <= set(got.sources)
        assert list(got.targets) == [r for r in rendered if r in got.targets]  # render order
        assert len(set(got.sources)) == len(got.sources) == len(got.reasons)
        assert list(got.sources) == [c.name for c in candidates if c.name in got.sources]


# --- place -----------------------------------------------------------------------------


def test_place_says_why_each_pod_cannot_be_placed_and_sorts_by_node() -> None:
    pods = [
        ("node-agent-ok", "uid-1", "node-a1", LEGACY),
        ("node-agent-noclass", "uid-2", "node-b1", LEGACY),
        ("node-agent-gone", "uid-3", "node-z9", LEGACY),
        ("node-agent-pending", "uid-4", "", LEGACY),
        ("agent-standard-ok", "uid-5", "node-a0", STD),
    ]
    node_target = {"node-a0": GENERAL, "node-a1": GENERAL, "node-b1": None}
    got = place(pods, node_target, ["node-a0", "node-a1", "node-b1", "node-c1"], WORKLOAD)
    assert got == (
        Placement("node-agent-pending", "uid-4", "", LEGACY, None, "not scheduled to a node"),
        Placement("agent-standard-ok", "uid-5", "node-a0", STD, GENERAL),
        Placement("node-agent-ok", "uid-1", "node-a1", LEGACY, GENERAL),
        Placement("node-agent-noclass", "uid-2", "node-b1", LEGACY, None, "node node-b1 is in no class of agent"),
        Placement("node-agent-gone", "uid-3", "node-z9", LEGACY, None, "node node-z9 is gone"),
    )


def test_place_a_node_missing_from_the_class_map_is_in_no_class() -> None:
    got = place([("p", "u", "node-c1", LEGACY)], {"node-a1": GENERAL}, ["node-a1", "node-c1"], WORKLOAD)
    assert got == (Placement("p", "u", "node-c1", LEGACY, None, "node node-c1 is in no class of agent"),)


def test_place_pods_on_the_same_node_are_sorted_by_name() -> None:
    pods = [("node-agent-b", "u2", "node-a1", LEGACY), ("agent-standard-a", "u1", "node-a1", STD)]
    got = place(pods, {"node-a1": GENERAL}, ["node-a1"], WORKLOAD)
    assert [(p.pod, p.target) for p in got] == [("agent-standard-a", GENERAL), ("node-agent-b", GENERAL)]


def test_placement_json_leaves_out_the_uid() -> None:
    placement = Placement("node-agent-zz9q1", "uid-p4", "node-x9", LEGACY, None, "node node-x9 is gone")
    assert placement.to_json() == {
        "pod": "node-agent-zz9q1",
        "node": "node-x9",
        "source": LEGACY,
        "target": None,
        "reason": "node node-x9 is gone",
    }


@given(
    pods=st.lists(
        st.tuples(
            st.from_regex(r"pod-[a-z]{1,3}", fullmatch=True),
            uids,
            st.sampled_from(["", "node-0", "node-1", "node-2", "node-gone"]),
            st.sampled_from([LEGACY, STD]),
        ),
        max_size=12,
    ),
    targets=st.lists(st.sampled_from([None, GENERAL, GPU]), min_size=3, max_size=3),
)
def test_place_places_every_pod_once_on_its_node_class_or_says_why_not(
    pods: list[tuple[str, str, str, str]], targets: list[str | None]
) -> None:
    node_target = dict(zip(["node-0", "node-1", "node-2"], targets, strict=True))
    got = place(pods, node_target, list(node_target), WORKLOAD)
    assert sorted((p.pod, p.uid, p.node, p.source) for p in got) == sorted(pods)
    assert [(p.node, p.pod) for p in got] == sorted((p.node, p.pod) for p in got)
    for p in got:
        expected = node_target.get(p.node)
        assert p.target == expected
        assert (p.reason == "") == (expected is not None)


# --- selector_matches --------------------------------------------------------------------

POD = {"app": "agent", "tier": "node", "version": "12"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": None, "matchExpressions": None}, True),
        ({"matchLabels": {"app": "agent"}}, True),
        ({"matchLabels": {"app": "agent", "tier": "node"}}, True),
        ({"matchLabels": {"app": "fluent-bit"}}, False),
        ({"matchLabels": {"team": "obs"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["node", "edge"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["obs"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["edge"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["node"]}]}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["obs"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        ({"matchExpressions": [{"key": "version", "operator": "Gt", "values": ["11"]}]}, True),
        ({"matchExpressions": [{"key": "version", "operator": "Gt", "values": ["12"]}]}, False),
        ({"matchExpressions": [{"key": "version", "operator": "Lt", "values": ["13"]}]}, True),
        ({"matchExpressions": [{"key": "version", "operator": "Lt", "values": ["12"]}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, False),  # not a number
        ({"matchExpressions": [{"key": "team", "operator": "Lt", "values": ["1"]}]}, False),  # missing
        (  # every part must hold
            {
                "matchLabels": {"app": "agent"},
                "matchExpressions": [
                    {"key": "tier", "operator": "Exists"},
                    {"key": "version", "operator": "In", "values": ["11"]},
                ],
            },
            False,
        ),
        (
            {
                "matchLabels": {"app": "agent"},
                "matchExpressions": [
                    {"key": "tier", "operator": "Exists"},
                    {"key": "team", "operator": "DoesNotExist"},
                ],
            },
            True,
        ),
    ],
)
def test_selector_matches_match_labels_and_each_operator(selector: dict[str, Any], expected: bool) -> None:
    assert selector_matches(selector, POD) is expected


# --- relabelled ------------------------------------------------------------------------


def test_relabelled_takes_the_new_selector_and_the_variant_identity_and_keeps_the_rest() -> None:
    # a fluent-bit pod orphaned by a hand-made DaemonSet, handed to agent-general
    pod_labels = {
        "app": "fluent-bit",
        "team": "observability",
        "controller-revision-hash": "7d9c8b6f5",
        TEMPLATE_GENERATION: "4",
    }
    template = variant_labels("general", version="1.1")
    got = relabelled(pod_labels, variant_selector("general"), template)
    assert got == {
        "app": WORKLOAD,
        "team": "observability",
        "controller-revision-hash": "7d9c8b6f5",
        MANAGED_BY: "dsroll",
        LABEL_ENV: "prod",
        LABEL_WORKLOAD: WORKLOAD,
        LABEL_CLASS: "general",
    }
    assert "version" not in got  # template labels outside the selector and identity are not copied


def test_relabelled_between_variants_the_identity_follows_the_new_owner() -> None:
    pod_labels = {**variant_labels("standard", env="staging"), TEMPLATE_GENERATION: "2"}
    got = relabelled(pod_labels, variant_selector("general"), variant_labels("general"))
    assert got == variant_labels("general")


def test_relabelled_handed_back_to_an_object_without_identity_removes_it() -> None:
    pod_labels = {**variant_labels("general"), "controller-revision-hash": "6d9f7c5b8d", TEMPLATE_GENERATION: "1"}
    got = relabelled(pod_labels, {"matchLabels": {"app": "fluent-bit"}}, {"app": "fluent-bit", "team": "obs"})
    assert got == {"app": "fluent-bit", "controller-revision-hash": "6d9f7c5b8d"}


def test_relabelled_keeps_a_match_expression_the_pod_already_satisfies() -> None:
    selector = {**variant_selector("general"), "matchExpressions": [{"key": "team", "operator": "Exists"}]}
    got = relabelled({"app": "fluent-bit", "team": "obs"}, selector, variant_labels("general", team="obs"))
    assert selector_matches(selector, got)
    assert got["team"] == "obs"


@pytest.mark.parametrize(
    "selector",
    [
        {
            "matchLabels": {"tier": "node"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["node"]}],
        },
        {"matchLabels": {"tier": "node"}, "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
        {"matchLabels": {"tier": "node"}, "matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["1"]}]},
    ],
    ids=["NotIn-its-own-label", "DoesNotExist-its-own-label", "Gt-on-a-word"],
)
def test_relabelled_refuses_a_selector_no_labels_can_satisfy(selector: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^no labels satisfy the selector \{"):
        relabelled({"app": "agent", "tier": "edge"}, selector, {"app": "agent", "tier": "node"})


@pytest.mark.parametrize(
    ("pod_labels", "expression", "template_extra", "expected"),
    [
        pytest.param(
            {"app": "fluent-bit"},
            {"key": "tier", "operator": "In", "values": ["node-agent"]},
            {"tier": "node-agent"},
            {"tier": "node-agent"},
            id="In-on-a-label-the-pod-lacks",
        ),
        pytest.param(
            {"app": "fluent-bit", "tier": "canary"},
            {"key": "tier", "operator": "NotIn", "values": ["canary"]},
            {"tier": "stable"},
            {"tier": "stable"},
            id="NotIn-against-the-pods-value",
        ),
        pytest.param(
            {"app": "fluent-bit", "legacy": "true"},
            {"key": "legacy", "operator": "DoesNotExist"},
            {},
            {},
            id="DoesNotExist-on-a-label-the-pod-carries",
        ),
        pytest.param(
            {"app": "fluent-bit", "tier": "canary"},
            {"key": "tier", "operator": "NotIn", "values": ["edge"]},
            {},
            {"tier": "canary"},
            id="NotIn-the-pod-already-satisfies",
        ),
    ],
)
def test_relabelled_meets_a_match_expression_the_way_the_new_owners_template_does(
    pod_labels: dict[str, str], expression: dict[str, Any], template_extra: dict[str, str], expected: dict[str, str]
) -> None:
    # once only matchLabels were set: each of these raised "no labels satisfy the selector"
    selector = {**variant_selector("general"), "matchExpressions": [expression]}
    template = variant_labels("general", **template_extra)
    assert selector_matches(selector, template)  # a DaemonSet the API server accepts
    got = relabelled(pod_labels, selector, template)
    assert selector_matches(selector, got)
    assert got == {**variant_labels("general"), **expected}


@st.composite
def owners(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A selector and template labels the API server accepts: the template matches the selector."""
    keys = ["app", "tier", "team", "version", "zone"]
    template = draw(st.dictionaries(st.sampled_from(keys), label_values, max_size=5))
    template.update(draw(st.dictionaries(st.sampled_from(IDENTITY), label_values, max_size=4)))
    named = draw(st.lists(st.sampled_from(sorted(template)), unique=True)) if template else []
    match_labels = {k: template[k] for k in named}
    expressions = []
    for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=4)):
        if key in template:
            choice = draw(st.sampled_from(["In", "NotIn", "Exists"]))
            if choice == "In":
                expressions.append({"key": key, "operator": "In", "values": [template[key], draw(label_values)]})
            elif choice == "NotIn":
                expressions.append({"key": key, "operator": "NotIn", "values": [f"not-{template[key]}"]})
            else:
                expressions.append({"key": key, "operator": "Exists"})
        elif draw(st.booleans()):
            expressions.append({"key": key, "operator": "DoesNotExist"})
        else:
            expressions.append({"key": key, "operator": "NotIn", "values": [draw(label_values)]})
    selector: dict[str, Any] = {"matchLabels": match_labels}
    if expressions:
        selector["matchExpressions"] = expressions
    return selector, template


@settings(max_examples=300)
@given(pod_labels=label_maps, owner=owners())
def test_relabelled_meets_any_selector_its_owners_template_meets(
    pod_labels: dict[str, str], owner: tuple[dict[str, Any], dict[str, str]]
) -> None:
    selector, template = owner
    assert selector_matches(selector, template)
    got = relabelled(pod_labels, selector, template)
    assert selector_matches(selector, got)
    assert TEMPLATE_GENERATION not in got
    named = {*(selector.get("matchLabels") or {}), *(e["key"] for e in selector.get("matchExpressions") or [])}
    for key, value in pod_labels.items():
        if key not in (*IDENTITY, TEMPLATE_GENERATION, *named):
            assert got[key] == value  # labels the selector does not name stay


@given(
    pod_labels=label_maps,
    match_labels=st.dictionaries(label_keys.filter(lambda k: k != TEMPLATE_GENERATION), label_values, max_size=3),
    template_extra=label_maps,
)
def test_relabelled_always_matches_the_selector_and_touches_only_what_it_must(
    pod_labels: dict[str, str], match_labels: dict[str, str], template_extra: dict[str, str]
) -> None:
    selector = {"matchLabels": match_labels}
    template = {**template_extra, **match_labels}  # the API server requires the template to match
    got = relabelled(pod_labels, selector, template)
    assert selector_matches(selector, got)
    assert TEMPLATE_GENERATION not in got
    for key in IDENTITY:
        if key not in match_labels:
            assert got.get(key) == template.get(key)
    for key, value in pod_labels.items():
        if key not in (*IDENTITY, TEMPLATE_GENERATION, *match_labels):
            assert got[key] == value
    assert set(got) <= {*pod_labels, *IDENTITY, *match_labels}


# --- label_patch -----------------------------------------------------------------------


def test_label_patch_of_equal_labels_is_empty() -> None:
    labels = variant_labels("general")
    assert label_patch(labels, dict(labels)) == {}
    assert label_patch({}, {}) == {}


def test_label_patch_sets_changed_and_added_labels_and_removes_the_rest_with_none() -> None:
    old = {"app": "fluent-bit", "team": "obs", TEMPLATE_GENERATION: "4", "controller-revision-hash": "7d9c8b6f5"}
    new = {"app": "agent", "team": "obs", "controller-revision-hash": "7d9c8b6f5", LABEL_CLASS: "general"}
    assert label_patch(old, new) == {"app": "agent", LABEL_CLASS: "general", TEMPLATE_GENERATION: None}


@given(old=label_maps, new=label_maps)
def test_label_patch_applied_to_the_old_labels_gives_the_new_ones(old: dict[str, str], new: dict[str, str]) -> None:
    patch = label_patch(old, new)
    assert apply_patch(old, patch) == new
    assert (patch == {}) == (old == new)
    assert all(old.get(k) != v for k, v in patch.items())  # nothing sent that is already so


# --- backup_name -----------------------------------------------------------------------


def test_backup_name_is_deterministic_in_the_sources_whatever_their_order() -> None:
    name = backup_name(WORKLOAD, [UIDS[LEGACY], UIDS[STD]])
    assert name == backup_name(WORKLOAD, [UIDS[STD], UIDS[LEGACY]])
    assert name == backup_name(WORKLOAD, iter([UIDS[LEGACY], UIDS[STD]]))
    assert re.fullmatch(r"dsroll-backup-agent-[0-9a-f]{8}", name)


def test_backup_name_differs_for_other_sources_or_another_workload() -> None:
    names = {
        backup_name(WORKLOAD, [UIDS[LEGACY]]),
        backup_name(WORKLOAD, [UIDS[STD]]),
        backup_name(WORKLOAD, [UIDS[LEGACY], UIDS[STD]]),
        backup_name(WORKLOAD, []),
        backup_name("log-shipper", [UIDS[LEGACY]]),
    }
    assert len(names) == 5


@given(workload=dns_labels, sources=st.lists(uids, max_size=6), data=st.data())
def test_backup_name_is_a_dns_subdomain_independent_of_uid_order(
    workload: str, sources: list[str], data: st.DataObject
) -> None:
    name = backup_name(workload, sources)
    assert len(name) <= 253
    assert DNS_SUBDOMAIN.fullmatch(name)
    assert name == backup_name(workload, data.draw(st.permutations(sources)))


@given(workload=dns_labels, first=st.lists(uids, min_size=1, max_size=4, unique=True), other=uids)
def test_backup_name_changes_when_a_source_changes(workload: str, first: list[str], other: str) -> None:
    if other in first:
        return
    assert backup_name(workload, first) != backup_name(workload, [*first[:-1], other])


# --- Stage, Record ---------------------------------------------------------------------


def test_stage_rank_follows_the_order_a_replacement_goes_through() -> None:
    order = ["backed-up", "orphaning", "relabelling", "creating", "handed-over", "complete", "restored"]
    assert [s.value for s in sorted(Stage, key=lambda s: s.rank)] == order
    assert [Stage(v).rank for v in order] == list(range(len(order)))


@pytest.mark.parametrize("stage", list(Stage))
def test_record_is_finished_only_when_complete_or_restored(stage: Stage) -> None:
    assert a_record(stage=stage).finished is (stage in (Stage.complete, Stage.restored))
    assert (stage in FINISHED_STAGES) is (stage in (Stage.complete, Stage.restored))


def test_record_json_uses_camel_case_keys_and_round_trips() -> None:
    record = a_record(failure="agent-gpu: 1 pod(s) not ready after 2m")
    data = json.loads(record.to_json())
    assert set(data) == {
        "operation",
        "stage",
        "workload",
        "sources",
        "targets",
        "who",
        "commit",
        "file",
        "startedAt",
        "updatedAt",
        "failure",
        "version",
    }
    assert (data["operation"], data["stage"], data["startedAt"], data["version"]) == (
        "replace",
        "relabelling",
        "2026-11-23T10:00:00Z",
        1,
    )
    assert data["sources"][0] == {
        "namespace": NS,
        "name": LEGACY,
        "uid": UIDS[LEGACY],
        "nodes": ["node-a1", "node-g1"],
        "managed": False,
    }
    assert data["targets"] == [GENERAL, GPU]
    assert Record.from_json(record.to_json(), "configmap agents/x") == record


def test_record_from_json_ignores_unknown_keys() -> None:
    data = json.loads(a_record().to_json())
    data["addedInVersion2"] = {"anything": True}
    assert Record.from_json(json.dumps(data), "configmap agents/x") == a_record()


@given(
    operation=st.sampled_from(Operation),
    stage=st.sampled_from(Stage),
    sources=st.lists(
        st.builds(
            SourceRef,
            namespace=st.just(NS),
            name=dns_labels,
            uid=uids,
            nodes=st.lists(st.from_regex(r"node-[a-z0-9]{1,4}", fullmatch=True)).map(tuple),
            managed=st.booleans(),
        ),
        max_size=3,
    ).map(tuple),
    targets=st.lists(dns_labels, max_size=3).map(tuple),
    commit=st.one_of(st.none(), st.from_regex(r"[0-9a-f]{7}", fullmatch=True)),
    failure=st.one_of(st.none(), st.text(max_size=30)),
)
def test_record_json_round_trips_any_record(
    operation: Operation,
    stage: Stage,
    sources: tuple[SourceRef, ...],
    targets: tuple[str, ...],
    commit: str | None,
    failure: str | None,
) -> None:
    record = a_record(
        operation=operation, stage=stage, sources=sources, targets=targets, commit=commit, failure=failure
    )
    assert Record.from_json(record.to_json(), "configmap agents/x") == record


BAD_RECORDS = [
    pytest.param("{not json", id="not-json"),
    pytest.param("[]", id="a-list"),
    pytest.param("null", id="null"),
    pytest.param('"replace"', id="a-string"),
    pytest.param("{}", id="empty"),
]


def _bad(**changes: Any) -> str:
    data = json.loads(a_record().to_json())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


BAD_RECORDS += [
    pytest.param(_bad(operation="explode"), id="unknown-operation"),
    pytest.param(_bad(stage="finished"), id="unknown-stage"),
    pytest.param(_bad(who=KeyError), id="no-who"),
    pytest.param(_bad(sources=KeyError), id="no-sources"),
    pytest.param(_bad(sources=None), id="null-sources"),
    pytest.param(_bad(sources=[1]), id="a-source-not-an-object"),
    pytest.param(_bad(sources=[{"name": LEGACY}]), id="a-source-without-uid"),
    pytest.param(_bad(targets=None), id="null-targets"),
]


@pytest.mark.parametrize("text", BAD_RECORDS)
def test_record_from_json_refuses_what_is_not_a_record_naming_the_object(text: str) -> None:
    where = "configmap agents/dsroll-backup-agent-1a2b3c4d"
    with pytest.raises(ClusterError) as info:
        Record.from_json(text, where)
    assert str(info.value).startswith(f"{where}: annotation {RECORD_ANNOTATION} is not a dsroll replacement (")


def test_record_moved_changes_the_stage_and_the_update_time_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans, "now_iso", lambda: "2026-11-23T10:07:00Z")
    record = a_record()
    moved = record.entering(Stage.creating)
    assert (moved.stage, moved.updated_at) == (Stage.creating, "2026-11-23T10:07:00Z")
    assert moved.started_at == record.started_at
    assert {**vars(moved), "stage": None, "updated_at": None} == {**vars(record), "stage": None, "updated_at": None}
    failed = record.entering(Stage.orphaning, operation=Operation.restore, failure="agent-gpu: not ready")
    assert (failed.stage, failed.operation, failed.failure) == (
        Stage.orphaning,
        Operation.restore,
        "agent-gpu: not ready",
    )
    assert record.stage is Stage.relabelling  # a value: the original is untouched


def a_configmap(annotation: str | None, name: str = "dsroll-backup-agent-1a2b3c4d") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {BACKUP_LABEL: WORKLOAD}}
    if annotation is not None:
        meta["annotations"] = {RECORD_ANNOTATION: annotation}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"daemonsets.yaml": "[]"}}


def test_read_record_from_the_backup_configmap() -> None:
    assert read_record(a_configmap(a_record().to_json())) == a_record()


def test_read_record_of_a_configmap_without_the_annotation_is_none() -> None:
    assert read_record(a_configmap(None)) is None
    unannotated = a_configmap(None)
    unannotated["metadata"]["annotations"] = None
    assert read_record(unannotated) is None


def test_read_record_of_a_bad_annotation_names_the_configmap() -> None:
    with pytest.raises(ClusterError, match=r"^configmap agents/dsroll-backup-agent-1a2b3c4d: annotation "):
        read_record(a_configmap('{"operation": "replace"}'))


def test_latest_is_the_most_recently_started_replacement_whatever_the_order() -> None:
    items = [
        (
            "dsroll-backup-agent-00000001",
            a_record(started_at="2026-11-23T09:00:00Z", updated_at="2026-11-23T12:00:00Z"),
        ),
        ("dsroll-backup-agent-00000002", a_record(started_at="2026-11-23T11:00:00Z")),
        ("dsroll-backup-agent-00000003", a_record(started_at="2026-11-22T23:59:59Z")),
    ]
    assert latest(items) == items[1]
    assert latest(reversed(items)) == items[1]
    assert latest([]) is None


def test_latest_breaks_a_tie_the_same_way_whatever_the_order() -> None:
    items = [("dsroll-backup-agent-aaaaaaaa", a_record()), ("dsroll-backup-agent-bbbbbbbb", a_record())]
    assert latest(items) == latest(items[::-1])


# --- ReplacementPlan -------------------------------------------------------------------


def test_replacement_plan_json_is_the_documented_shape() -> None:
    plan = a_plan()
    data = plan.to_json()
    assert data == {
        "namespace": NS,
        "workload": WORKLOAD,
        "operation": "replace",
        "reason": f"{LEGACY}: {REPLACED}; {STD}: {NOT_RENDERED}",
        "stage": None,
        "deletes": [
            {
                "namespace": NS,
                "name": LEGACY,
                "uid": UIDS[LEGACY],
                "managed": False,
                "pods": 3,
                "nodes": ["node-a1", "node-g1", "node-x9"],
            },
            {"namespace": NS, "name": STD, "uid": UIDS[STD], "managed": True, "pods": 1, "nodes": ["node-a2"]},
        ],
        "creates": [GENERAL, GPU],
        "adopts": {GENERAL: ["node-a1", "node-a2"], GPU: ["node-g1"]},
        "unplaced": [
            {
                "pod": "node-agent-zz9q1",
                "node": "node-x9",
                "source": LEGACY,
                "target": None,
                "reason": "node node-x9 is gone",
                "handling": "deleted",
            }
        ],
        "backup": {"configMap": plan.backup},
    }
    json.dumps(data)  # serialisable as is


def test_replacement_plan_adopted_unplaced_and_resumes() -> None:
    plan = a_plan()
    assert plan.adopted(GENERAL) == ("node-a1", "node-a2")
    assert plan.adopted(GPU) == ("node-g1",)
    assert plan.adopted(ARM) == ()
    assert [p.pod for p in plan.unplaced] == ["node-agent-zz9q1"]
    assert not plan.resumes
    assert a_plan(stage=Stage.creating).resumes


@pytest.mark.parametrize("stage", [None, Stage.relabelling])
@pytest.mark.parametrize("operation", list(Operation))
def test_replacement_plan_from_json_keeps_what_the_rollout_needs(stage: Stage | None, operation: Operation) -> None:
    plan = a_plan(stage=stage, operation=operation)
    back = ReplacementPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert (back.namespace, back.workload, back.operation, back.reason, back.stage, back.backup) == (
        NS,
        WORKLOAD,
        operation,
        plan.reason,
        stage,
        plan.backup,
    )
    assert back.resumes is (stage is not None)
    assert [(s.namespace, s.name, s.uid, s.managed) for s in back.sources] == [
        (NS, LEGACY, UIDS[LEGACY], False),
        (NS, STD, UIDS[STD], True),
    ]
    assert back.sources == plan.sources
    assert back.targets == (GENERAL, GPU)
    assert {t: back.adopted(t) for t in back.targets} == {GENERAL: ("node-a1", "node-a2"), GPU: ("node-g1",)}
    assert [(p.pod, p.node, p.source, p.reason) for p in back.unplaced] == [
        ("node-agent-zz9q1", "node-x9", LEGACY, "node node-x9 is gone")
    ]
    assert back.to_json() == plan.to_json()


@settings(max_examples=100)
@given(
    rows=st.lists(
        st.tuples(
            st.from_regex(r"pod-[a-z0-9]{1,4}", fullmatch=True),
            uids,
            st.sampled_from(["", "node-0", "node-1", "node-2", "node-3", "node-gone"]),
            st.sampled_from([LEGACY, STD]),
        ),
        max_size=10,
        unique_by=lambda r: r[0],
    ),
    classes=st.lists(st.sampled_from([None, GENERAL, GPU]), min_size=4, max_size=4),
    stage=st.one_of(st.none(), st.sampled_from(Stage)),
    operation=st.sampled_from(Operation),
)
def test_replacement_plan_json_round_trip_is_a_fixpoint(
    rows: list[tuple[str, str, str, str]],
    classes: list[str | None],
    stage: Stage | None,
    operation: Operation,
) -> None:
    node_target = dict(zip(["node-0", "node-1", "node-2", "node-3"], classes, strict=True))
    placements = place(rows, node_target, list(node_target), WORKLOAD)
    targets = tuple(t for t in (GPU, GENERAL) if any(p.target == t for p in placements))
    sources = tuple(
        SourceRef(NS, name, UIDS[name], tuple(sorted({r[2] for r in rows if r[3] == name} - {""})), name == STD)
        for name in (LEGACY, STD)
    )
    plan = a_plan(sources=sources, targets=targets, placements=placements, stage=stage, operation=operation)
    data = json.loads(json.dumps(plan.to_json()))
    back = ReplacementPlan.from_json(data)
    assert back.to_json() == data
    assert {t: back.adopted(t) for t in targets} == {t: plan.adopted(t) for t in targets}
    assert [(p.pod, p.node, p.source, p.reason) for p in back.unplaced] == [
        (p.pod, p.node, p.source, p.reason) for p in plan.unplaced
    ]
