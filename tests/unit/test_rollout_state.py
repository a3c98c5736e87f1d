"""The rollout state in the ``dsroll.io/rollout`` annotation, and the pause/abort request beside it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsroll.errors import ClusterError
from dsroll.labels import REQUEST_ANNOTATION, ROLLOUT_ANNOTATION
from dsroll.rollout import state as state_module
from dsroll.rollout.state import (
    FINISHED,
    Failure,
    Phase,
    RolloutState,
    RunKind,
    SkippedNode,
    SkipReason,
    read_request,
    read_state,
)

#: The example in docs/rollout.md, verbatim.
DOC_EXAMPLE = """\
{"version": 2, "operation": "rollout", "phase": "progressing",
 "targetRevision": "6d9f7c5b8d", "previousRevision": "8685cc7865",
 "steps": [1, 2, 3], "step": 1, "partition": null,
 "nodeCount": 3, "updatable": 2, "nodesDone": 1,
 "inFlightCount": 1, "inFlight": ["kwok-node-001"],
 "maxUnavailable": 2, "pause": "5s", "readyTimeout": "2m", "minReadySeconds": 0,
 "onFailure": "rollback", "originalStrategy": {"type": "RollingUpdate"},
 "commit": "3ba79aa…", "who": "alice@laptop (cluster user kubernetes-admin)",
 "startedAt": "2026-11-23T10:00:00Z", "updatedAt": "2026-11-23T10:00:05Z",
 "failure": null, "replacement": null, "unreadyNodes": "skip",
 "skippedCount": 1,
 "skipped": [{"node": "kwok-node-002", "reason": "not-ready",
              "detail": "Ready=Unknown: Kubelet stopped posting node status."}],
 "restartedAt": null}
"""

#: What dsroll before bounded states wrote (version 1: every node listed); still read.
V1_EXAMPLE = """\
{"version": 1, "operation": "rollout", "phase": "progressing",
 "targetRevision": "6d9f7c5b8d", "previousRevision": "8685cc7865",
 "steps": [1, 2, 3], "step": 1, "partition": null,
 "nodes": ["kwok-node-000", "kwok-node-001", "kwok-node-002"],
 "nodesDone": 1, "inFlight": ["kwok-node-001"],
 "maxUnavailable": 2, "pause": "5s", "readyTimeout": "2m", "minReadySeconds": 0,
 "onFailure": "rollback", "originalStrategy": {"type": "RollingUpdate"},
 "commit": "3ba79aa…", "who": "alice@laptop (cluster user kubernetes-admin)",
 "startedAt": "2026-11-23T10:00:00Z", "updatedAt": "2026-11-23T10:00:05Z",
 "failure": null, "replacement": null, "unreadyNodes": "skip",
 "skipped": [{"node": "kwok-node-002", "reason": "not-ready",
              "detail": "Ready=Unknown: Kubelet stopped posting node status."}],
 "restartedAt": null}
"""

DOC_KEYS = set(json.loads(DOC_EXAMPLE))


def a_state(**changes: Any) -> RolloutState:
    fields: dict[str, Any] = {
        "operation": RunKind.rollout,
        "phase": Phase.progressing,
        "target_revision": "6d9f7c5b8d",
        "previous_revision": "8685cc7865",
        "steps": (1, 2, 3),
        "step": 1,
        "nodes": ("kwok-node-000", "kwok-node-001", "kwok-node-002"),
        "max_unavailable": 2,
        "pause": "5s",
        "ready_timeout": "2m",
        "min_ready_seconds": 0,
        "on_failure": "rollback",
        "original_strategy": {"type": "RollingUpdate"},
        "who": "alice@laptop (cluster user kubernetes-admin)",
        "started_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-23T10:00:05Z",
    }
    return RolloutState(**{**fields, **changes})


def daemonset(annotations: dict[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "agent-general", "namespace": "agents", "uid": "u-1", "generation": 4}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": {}}


# --- the JSON --------------------------------------------------------------------------


def test_reads_the_documented_example() -> None:
    got = RolloutState.from_json(DOC_EXAMPLE, "daemonset agents/agent-general")
    why = "Ready=Unknown: Kubelet stopped posting node status."
    skipped = (SkippedNode("kwok-node-002", SkipReason.not_ready, why),)
    written = a_state(commit="3ba79aa…", nodes_done=1, in_flight=("kwok-node-001",), skipped=skipped)
    assert got == written.as_recorded()
    assert got.operation is RunKind.rollout and got.phase is Phase.progressing
    assert isinstance(got.steps, tuple) and isinstance(got.nodes, tuple) and isinstance(got.in_flight, tuple)
    assert (got.node_count, got.updatable, got.skipped_count, got.nodes) == (3, 2, 1, ())
    assert json.loads(written.to_json()) == json.loads(DOC_EXAMPLE)


def test_reads_a_state_an_earlier_dsroll_wrote_with_every_node() -> None:
    got = RolloutState.from_json(V1_EXAMPLE, "daemonset agents/agent-general")
    why = "Ready=Unknown: Kubelet stopped posting node status."
    skipped = (SkippedNode("kwok-node-002", SkipReason.not_ready, why),)
    assert got == a_state(commit="3ba79aa…", nodes_done=1, in_flight=("kwok-node-001",), skipped=skipped, version=1)
    assert got.counts is None and got.updatable == 2


def test_writes_exactly_the_documented_camel_case_keys() -> None:
    data = json.loads(a_state().to_json())
    assert set(data) == DOC_KEYS
    assert data["targetRevision"] == "6d9f7c5b8d"
    assert data["inFlight"] == [] and data["nodesDone"] == 0 and data["minReadySeconds"] == 0
    assert data["operation"] == "rollout" and data["phase"] == "progressing"
    assert data["failure"] is None and data["partition"] is None and data["version"] == 2
    assert data["nodeCount"] == 3 and "nodes" not in data


CLOUD = "ip-10-{}-{}-{}.eu-west-1.compute.internal"


def cloud_nodes(count: int) -> tuple[str, ...]:
    return tuple(CLOUD.format(i // 65536 % 256, i // 256 % 256, i % 256) for i in range(count))


@pytest.mark.parametrize("fleet", [3, 100, 1000, 5000, 20000])
def test_the_state_stays_bounded_whatever_the_fleet(fleet: int) -> None:
    """At 5,000 nodes with cloud-style names, 500 skipped and 500 in flight: a few KiB,
    the same as at 100 (a list of every name was ~230 KiB, near the 256 KiB limit)."""
    nodes = cloud_nodes(fleet)
    skipped = tuple(
        SkippedNode(n, SkipReason.not_ready, "Ready=Unknown: Kubelet stopped posting node status. " * 20)
        for n in nodes[: fleet // 10]
    )
    state = a_state(
        nodes=nodes, skipped=skipped, in_flight=nodes[-fleet // 10 :], max_unavailable=max(1, fleet // 10),
        who="w" * 5000, failure=Failure(nodes[0], "r" * 100_000),
    )  # fmt: skip
    text = state.to_json()
    assert len(text.encode()) < 6 * 1024
    got = RolloutState.from_json(text, "here")
    assert (got.node_count, got.skipped_count, got.updatable) == (fleet, fleet // 10, fleet - fleet // 10)
    assert got.counts is not None and got.counts.in_flight == len(state.in_flight)
    assert got == state.as_recorded()


def test_a_state_read_back_and_written_again_keeps_its_counts() -> None:
    """`dsroll pause` writes back a state it read: the counts survive, not the empty lists."""
    state = a_state(nodes=cloud_nodes(50), skipped=(SkippedNode("x", SkipReason.held),))
    again = RolloutState.from_json(state.to_json(), "here").entering(Phase.paused)
    reread = RolloutState.from_json(again.to_json(), "here")
    assert (reread.node_count, reread.skipped_count, reread.updatable) == (50, 1, 50)
    assert not reread.finished and reread.phase is Phase.paused


def test_writes_compact_json_fit_for_an_annotation() -> None:
    text = a_state().to_json()
    assert "\n" not in text and ", " not in text and ": " not in text


def test_failure_round_trips_as_an_object() -> None:
    failed = a_state(phase=Phase.paused, failure=Failure("kwok-node-001", "pod x container agent: CrashLoopBackOff"))
    data = json.loads(failed.to_json())
    assert data["failure"] == {"node": "kwok-node-001", "reason": "pod x container agent: CrashLoopBackOff"}
    assert RolloutState.from_json(failed.to_json(), "here") == failed.as_recorded()


def test_unknown_keys_are_ignored() -> None:
    data = json.loads(a_state().to_json())
    data.update(futureField={"x": 1}, anotherOne=7)
    assert RolloutState.from_json(json.dumps(data), "here") == a_state().as_recorded()


def test_missing_optional_keys_take_their_defaults() -> None:
    data = json.loads(a_state().to_json())
    for key in ("commit", "partition", "nodesDone", "inFlight", "failure", "version"):
        del data[key]
    got = RolloutState.from_json(json.dumps(data), "here")
    assert (got.commit, got.partition, got.nodes_done, got.in_flight, got.failure, got.version) == (
        None,
        None,
        0,
        (),
        None,
        2,
    )


def test_null_lists_read_as_empty() -> None:
    data = json.loads(a_state().to_json())
    data.update(inFlight=None, steps=None)
    got = RolloutState.from_json(json.dumps(data), "here")
    assert (got.in_flight, got.steps) == ((), ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "{}",
        '{"phase": "progressing"}',
        json.dumps({**json.loads(DOC_EXAMPLE), "phase": "exploding"}),
        json.dumps({**json.loads(DOC_EXAMPLE), "operation": "rollsideways"}),
        json.dumps({k: v for k, v in json.loads(DOC_EXAMPLE).items() if k != "targetRevision"}),
        json.dumps({**json.loads(DOC_EXAMPLE), "failure": {"node": "n1"}}),
        json.dumps({**json.loads(DOC_EXAMPLE), "failure": "boom"}),
        json.dumps({**json.loads(DOC_EXAMPLE), "steps": 3}),
    ],
)
def test_what_is_not_a_state_is_a_cluster_error_naming_the_daemonset(text: str) -> None:
    with pytest.raises(ClusterError) as info:
        RolloutState.from_json(text, "daemonset agents/agent-general")
    message = str(info.value)
    assert message.startswith(
        f"daemonset agents/agent-general: annotation {ROLLOUT_ANNOTATION} is not a dsroll rollout state ("
    )
    assert "\n" not in message


@pytest.mark.parametrize("text", ["[]", "null", '"progressing"'])
def test_json_that_is_not_an_object_is_a_cluster_error(text: str) -> None:
    # once an AttributeError from raw.items()
    with pytest.raises(
        ClusterError, match=rf"^daemonset agents/agent-general: annotation {ROLLOUT_ANNOTATION} is not a"
    ):
        RolloutState.from_json(text, "daemonset agents/agent-general")


names = st.from_regex(r"kwok-node-[0-9]{3}", fullmatch=True)
revisions = st.from_regex(r"[0-9a-f]{10}", fullmatch=True)
times = st.from_regex(r"2026-1[0-2]-[0-2][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z", fullmatch=True)
texts = st.text(max_size=40)
states = st.builds(
    RolloutState,
    operation=st.sampled_from(RunKind),
    phase=st.sampled_from(Phase),
    target_revision=st.one_of(st.just(""), revisions),
    previous_revision=st.one_of(st.none(), revisions),
    steps=st.lists(st.integers(1, 500), max_size=5).map(lambda s: tuple(sorted(set(s)))),
    step=st.integers(0, 5),
    nodes=st.lists(names, unique=True, max_size=12).map(tuple),
    max_unavailable=st.integers(1, 20),
    pause=st.sampled_from(["manual", "0", "5s", "1m30s"]),
    ready_timeout=st.sampled_from(["2m", "5m", "90s"]),
    min_ready_seconds=st.integers(0, 600),
    on_failure=st.sampled_from(["rollback", "pause", "abort"]),
    original_strategy=st.one_of(
        st.none(),
        st.just({"type": "OnDelete"}),
        st.just({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    ),
    who=texts,
    commit=st.one_of(st.none(), st.from_regex(r"[0-9a-f]{40}", fullmatch=True)),
    partition=st.one_of(st.none(), st.integers(0, 20)),
    nodes_done=st.integers(0, 20),
    in_flight=st.lists(names, unique=True, max_size=3).map(tuple),
    started_at=times,
    updated_at=times,
    failure=st.one_of(st.none(), st.builds(Failure, node=names, reason=texts)),
)


@given(states)
def test_state_json_round_trips(state: RolloutState) -> None:
    text = state.to_json()
    assert RolloutState.from_json(text, "here") == state.as_recorded()
    assert set(json.loads(text)) == DOC_KEYS


# --- phases, cap, entering ----------------------------------------------------------------


def test_finished_phases_are_the_terminal_ones() -> None:
    assert {Phase.complete, Phase.rolled_back, Phase.aborted, Phase.failed} == FINISHED
    for phase in Phase:
        assert a_state(phase=phase).finished is (phase in FINISHED), phase


def test_phase_values_are_the_documented_names() -> None:
    assert [p.value for p in Phase] == [
        "progressing",
        "pausing",
        "awaiting-approval",
        "paused",
        "partitioned",
        "rolling-back",
        "rolled-back",
        "aborted",
        "failed",
        "complete",
    ]


@pytest.mark.parametrize(("partition", "cap"), [(None, 3), (0, 3), (1, 2), (3, 0), (5, 0)])
def test_cap_is_every_node_but_the_partition(partition: int | None, cap: int) -> None:
    assert a_state(partition=partition).cap == cap


def test_entering_changes_phase_and_fields_and_stamps_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "now_iso", lambda: "2026-11-23T10:07:00Z")
    before = a_state(in_flight=("kwok-node-001",))
    after = before.entering(Phase.awaiting_approval, step=2, in_flight=())
    assert (after.phase, after.step, after.in_flight, after.updated_at) == (
        Phase.awaiting_approval,
        2,
        (),
        "2026-11-23T10:07:00Z",
    )
    assert after.started_at == before.started_at and after.nodes == before.nodes and after.who == before.who
    assert before.phase is Phase.progressing and before.in_flight == ("kwok-node-001",), "the original is a value"


def test_entering_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError):
        a_state().entering(Phase.paused, no_such_field=1)


def test_new_state_is_stamped_now_in_utc() -> None:
    fresh = RolloutState(
        operation=RunKind.rollout,
        phase=Phase.progressing,
        target_revision="",
        previous_revision=None,
        steps=(),
        step=0,
        nodes=(),
        max_unavailable=1,
        pause="manual",
        ready_timeout="5m",
        min_ready_seconds=0,
        on_failure="rollback",
        original_strategy=None,
        who="ci",
    )
    assert fresh.started_at.endswith("Z") and len(fresh.started_at) == len("2026-11-23T10:00:00Z")


# --- read_state and read_request -------------------------------------------------------


def test_read_state_of_no_daemonset_or_no_annotation() -> None:
    assert read_state(None) is None
    assert read_state({}) is None
    assert read_state(daemonset(None)) is None
    assert read_state(daemonset({"other": "x"})) is None
    assert read_state(daemonset({ROLLOUT_ANNOTATION: ""})) is None


def test_read_state_reads_the_annotation() -> None:
    ds = daemonset({ROLLOUT_ANNOTATION: a_state().to_json(), "deprecated.daemonset.template.generation": "4"})
    assert read_state(ds) == a_state().as_recorded()


def test_read_state_names_the_daemonset_when_the_annotation_is_bad() -> None:
    with pytest.raises(ClusterError, match=rf"^daemonset agents/agent-general: annotation {ROLLOUT_ANNOTATION} is not"):
        read_state(daemonset({ROLLOUT_ANNOTATION: "{oops"}))


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (json.dumps({"action": "pause", "by": "bob@ci", "at": "2026-11-23T10:00:00Z"}), "pause"),
        (json.dumps({"action": "abort", "by": "bob@ci", "at": "2026-11-23T10:00:00Z"}), "abort"),
        (json.dumps({"action": "resume"}), None),
        (json.dumps({"by": "bob"}), None),
        ("pause", None),  # not JSON
        ("", None),
    ],
)
def test_read_request(annotation: str, expected: str | None) -> None:
    assert read_request(daemonset({REQUEST_ANNOTATION: annotation})) == expected


def test_read_request_without_a_request() -> None:
    assert read_request(None) is None
    assert read_request(daemonset(None)) is None
    assert read_request(daemonset({ROLLOUT_ANNOTATION: a_state().to_json()})) is None


@pytest.mark.parametrize("annotation", ["1", '"pause"', "[]", "null"])
def test_read_request_of_json_that_is_not_an_object_is_no_request(annotation: str) -> None:
    # once an AttributeError from .get(), raised inside the executor's batch loop and by `status`
    assert read_request(daemonset({REQUEST_ANNOTATION: annotation})) is None
