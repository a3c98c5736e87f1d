"""Node behaviours, the node agent's pod steps and the stage files that play the rest (pure)."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import pytest
import yaml

from dsroll.sandbox import behaviours as bh
from dsroll.sandbox.components import CONTROLLERS, Layout, Ports, controller_manager_argv, kwok_argv


@pytest.mark.parametrize(
    ("value", "kind", "seconds"),
    [
        ("not-ready", "not-ready", 0),
        ("flapping", "flapping", 0),
        (" kubelet-gone ", "kubelet-gone", 0),
        ("slow-start", "slow-start", 5),
        ("slow-start=2s", "slow-start", 2),
        ("slow-start=1500ms", "slow-start", 1.5),
        ("slow-pull", "slow-pull", 10),
        ("slow-pull=1m", "slow-pull", 60),
        ("slow-pull=7", "slow-pull", 7),
    ],
)
def test_parse_behaviours(value: str, kind: str, seconds: float) -> None:
    assert bh.parse(value) == bh.NodeBehaviour(kind, seconds)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_absent_means_healthy(value: str | None) -> None:
    assert bh.parse(value) is None


@pytest.mark.parametrize("value", ["notready", "slow-start=fast", "not-ready=5s", "slow-pull=-1s", "Flapping"])
def test_bad_values_are_errors(value: str) -> None:
    with pytest.raises(bh.BehaviourError):
        bh.parse(value)


def test_who_plays_what() -> None:
    roles = {k: (b.holds_lease, b.renews_lease, b.plays_pods) for k in bh.KINDS if (b := bh.parse(k))}
    assert roles == {
        "flapping": (False, False, False),  # kwok's node stages
        "not-ready": (True, False, False),  # stale Lease: node-lifecycle controller says Unknown
        "kubelet-gone": (True, True, False),  # Ready node, nobody plays its pods
        "slow-start": (True, True, True),
        "slow-pull": (True, True, True),
    }


def test_delay_jitters_within_half_again() -> None:
    b = bh.NodeBehaviour("slow-start", 4)
    rng = random.Random(1)
    delays = [b.delay(rng) for _ in range(200)]
    assert all(4 <= d <= 6 for d in delays)
    assert max(delays) - min(delays) > 1.5
    assert bh.parse(b.annotation()) == b
    assert bh.NodeBehaviour("not-ready").annotation() == "not-ready"


def test_lease_timing_leaves_slack_for_renewals() -> None:
    for nodes in (1, 12, 100, 101, 1000, 1001, 5000, 20000):
        lease, grace = bh.lease_timing(nodes)
        assert grace / (lease / 4) >= 5, "five renewals (one every lease/4) must fit in the grace period"
        if nodes > 100:
            assert nodes / (lease / 4) <= 101, "about 100 Lease renewals a second at most"
    assert bh.lease_timing(12) == (6, 10)
    assert bh.lease_timing(1000) == (40, 50)
    assert bh.lease_timing(5000) == (200, 250)


def _pod(**status: object) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u-1"},
        "spec": {"containers": [{"name": "a", "image": "img:1"}, {"name": "b", "image": "img:2"}]},
        "status": status,
    }


def test_pod_stages_and_statuses() -> None:
    pod = _pod(phase="Pending")
    assert bh.pod_stage(pod) == "new"
    creating = bh.creating_status(pod, "172.16.0.1", "T0")
    assert [c["state"] for c in creating["containerStatuses"]] == [{"waiting": {"reason": "ContainerCreating"}}] * 2
    assert bh.pod_stage(_pod(**creating)) == "creating"
    running = bh.running_status(pod, "172.16.0.1", "10.128.0.254", "T1", ready=False)
    assert running["podIP"] == "10.128.0.254" and running["phase"] == "Running"
    assert bh.pod_stage(_pod(**running)) == "starting"
    ready = bh.running_status(_pod(**running), "172.16.0.1", "10.128.0.254", "T2", ready=True)
    assert bh.pod_stage(_pod(**ready)) == "ready"
    assert {c["state"]["running"]["startedAt"] for c in ready["containerStatuses"]} == {"T1"}
    deleting = _pod(**ready)
    deleting["metadata"]["deletionTimestamp"] = "T3"
    assert bh.pod_stage(deleting) == "deleting"


def test_pod_ips_come_from_the_top_of_the_node_cidr() -> None:
    assert bh.pod_ip("10.128.3.0/24", set(), "u") == "10.128.3.254"
    assert bh.pod_ip("10.128.3.0/24", {"10.128.3.254"}, "u") == "10.128.3.253"
    assert bh.pod_ip("", set(), "abc-123").startswith("10.")


# --- stage files ----------------------------------------------------------------------------


def _stages(*files: str) -> dict[str, dict]:
    base = resources.files("dsroll.sandbox").joinpath("stages")
    docs = [d for f in files for d in yaml.safe_load_all(base.joinpath(f).read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs}


def _expressions(stage: dict) -> dict[str, tuple[str, list[str]]]:
    return {e["key"]: (e["operator"], e.get("values", [])) for e in stage["spec"]["selector"]["matchExpressions"]}


def test_node_stages_leave_flapping_nodes_to_the_flap_stages() -> None:
    stages = _stages("node-default.yaml", "node-behaviours.yaml")
    assert set(stages) == {
        "node-initialize",
        "node-heartbeat-with-lease",
        "sandbox-node-flap-down",
        "sandbox-node-flap-up",
    }
    key = f'.metadata.annotations["{bh.NODE_BEHAVIOUR}"]'
    for name, stage in stages.items():
        assert stage["spec"]["resourceRef"] == {"apiGroup": "v1", "kind": "Node"}
        op, values = _expressions(stage)[key]
        assert (op, values) == (("In" if name.startswith("sandbox-") else "NotIn"), ["flapping"]), name
    for name in ("sandbox-node-flap-down", "sandbox-node-flap-up"):
        delay = stages[name]["spec"]["delay"]
        assert delay["durationMilliseconds"] == 3000 and "lastTransitionTime" in delay["durationFrom"]["expressionFrom"]


def test_pod_terminations_and_readiness_again() -> None:
    stages = _stages("pod-default.yaml", "pod-behaviours.yaml")
    behaviour = f'.metadata.annotations["{bh.POD_BEHAVIOUR}"]'
    assert _expressions(stages["sandbox-crash-start"])[behaviour] == ("In", ["crash", "error", "oom-killed"])
    assert _expressions(stages["sandbox-crash-loop"])[behaviour] == ("In", ["crash", "error", "oom-killed"])
    template = stages["sandbox-crash-loop"]["spec"]["next"]["statusTemplate"]
    assert '"OOMKilled"' in template and "137" in template and "exitCode: {{ $code }}" in template
    _, excluded = _expressions(stages["pod-ready"])[behaviour]
    assert set(excluded) == {"crash", "error", "oom-killed", "never-ready", "slow"}
    again = _expressions(stages["sandbox-ready-again"])
    assert again['.status.conditions.[] | select( .type == "Ready" ) | .status'] == ("In", ["False"])
    assert again["[.status.containerStatuses.[].ready] | all"] == ("In", ["true"])


def test_controller_manager_runs_node_lifecycle_with_short_grace(tmp_path: Path) -> None:
    from dsroll.sandbox.build import Binaries
    from dsroll.sandbox.certs import make_pki

    bins = Binaries(*(tmp_path / n for n in ("a", "c", "s", "k", "e", "w")))
    pki = make_pki(tmp_path / "pki", "10.96.0.1")
    argv = controller_manager_argv(bins, Layout(tmp_path), Ports(1, 2, 3, 4, 5), pki, 10)
    assert {"node-lifecycle-controller", "taint-eviction-controller"} <= set(CONTROLLERS)
    assert "--node-monitor-grace-period=10s" in argv and "--node-monitor-period=2s" in argv
    assert "--node-lease-duration-seconds=6" in kwok_argv(bins, Layout(tmp_path), 6)
    assert "-v=debug" in kwok_argv(bins, Layout(tmp_path), 6), "kwoklog.py reads kwok's debug lease lines"
