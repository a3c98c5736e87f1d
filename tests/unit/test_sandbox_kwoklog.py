"""The Lease hand-over between kwok and the node agent: kwok's log read (``kwoklog``), the
Lease bodies the agent writes (``behaviours``), and the agent's take, release and adoption
against an in-memory API (``nodeagent``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dsroll.sandbox import behaviours as bh
from dsroll.sandbox import kwoklog
from dsroll.sandbox.nodeagent import NodeAgent

KWOK = "vm_3b468327-79c4-433d-9be2-48827c58ed40"
NODE = "kwok-node-011"


def line(msg: str, time: str, node: str = NODE, **extra: str) -> str:
    """A kwok v0.7.0 log line as it writes them (slog JSON, nanosecond times)."""
    record = {"time": time, "level": "INFO", "source": {"function": "f", "file": "x.go", "line": 1}, "msg": msg}
    return json.dumps({**record, "id": KWOK, "node": node, **extra})


def lease(holder: str | None, renew: str = "2026-11-29T12:00:03.000000Z", transitions: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": 6, "renewTime": renew, "leaseTransitions": transitions}
    if holder is not None:
        spec["holderIdentity"] = holder
    return {"metadata": {"name": NODE, "namespace": "kube-node-lease", "resourceVersion": "7"}, "spec": spec}


def test_times_of_any_precision_become_microseconds() -> None:
    assert kwoklog.micros("1970-01-01T00:00:01.5Z") == 1_500_000
    assert kwoklog.micros("1970-01-01T00:00:01.21292043Z") == 1_212_920
    assert kwoklog.micros("1970-01-01T00:00:02Z") == 2_000_000
    assert kwoklog.micros("2026-11-29T12:07:00.212920Z") == kwoklog.micros("2026-11-29T12:07:00.212920999Z")


def test_only_what_kwok_made_of_a_node_is_read() -> None:
    lines = [
        line("Syncing lease", "2026-11-29T12:00:00.1Z"),
        line("Failed to sync lease", "2026-11-29T12:00:00.2Z", err="conflict"),
        line("Skip pod", "2026-11-29T12:00:00.3Z", reason="read only", event="SYNC", pod="ns/p"),
        line("Lease already acquired by another holder", "2026-11-29T12:00:01.6Z"),
        line("Creating lease", "2026-11-29T12:00:02.0Z", node="kwok-node-000"),
        line("Skip pod", "2026-11-29T12:00:02.1Z", reason="not match any stages", pod="ns/p"),
        line("Skip pod", "2026-11-29T12:00:02.2Z", reason="resource version not changed", pod="ns/p"),
        line("Delayed play stage", "2026-11-29T12:00:02.3Z", pod="ns/p", stage="pod-crash"),
        line("Delayed play stage", "2026-11-29T12:00:02.4Z", stage="node-heartbeat-with-lease"),  # kwok's own
        line("Skip pod", "2026-11-29T12:00:02.5Z", reason="not managed", pod="ns/p"),
        line("Patch pod", "2026-11-29T12:00:02.6Z", pod="ns/p"),  # may be a job queued before the agent came
        '{"time": "2026-11-29T12:00:02Z", "msg": "Watch nodes"}',
        "not json at all",
        '{"time": "2026-11-29T12:00:0',  # a line kwok is still writing
    ]
    looks = kwoklog.parse_lines(lines)
    other, own, pod = kwoklog.LEASE_OTHER, kwoklog.LEASE_OWN, kwoklog.POD_PLAYED
    assert [(look.node, look.seen) for look in looks] == [
        (NODE, own),
        (NODE, other),
        ("kwok-node-000", own),
        (NODE, pod),
        (NODE, pod),
        (NODE, pod),
    ]
    assert looks[1].micros - looks[0].micros == 1_500_000


def test_kwok_has_let_go_when_its_latest_look_found_the_agent() -> None:
    stale = kwoklog.parse_lines(
        [
            line("Syncing lease", "2026-11-29T12:00:00.1Z"),  # its copy still named kwok: 409
            line("Failed to sync lease", "2026-11-29T12:00:00.1Z"),
        ]
    )
    assert not kwoklog.kwok_let_go(stale, NODE, lease(bh.AGENT_IDENTITY)), "the Lease names the agent, kwok does not"
    released = stale + kwoklog.parse_lines([line(kwoklog.OTHER_HOLDER, "2026-11-29T12:00:01.6Z")])
    assert kwoklog.kwok_let_go(released, NODE, lease(bh.AGENT_IDENTITY))
    assert not kwoklog.kwok_let_go(released, "kwok-node-000", lease(bh.AGENT_IDENTITY)), "another node's look"
    assert not kwoklog.kwok_let_go(released, NODE, lease(KWOK)), "the agent does not hold it (any more)"
    assert not kwoklog.kwok_let_go([], NODE, lease(bh.AGENT_IDENTITY)), "kwok has not looked yet"
    again = released + kwoklog.parse_lines([line("Syncing lease", "2026-11-29T12:00:03.1Z")])
    assert not kwoklog.kwok_let_go(again, NODE, lease(bh.AGENT_IDENTITY)), "kwok's latest look counts"


def test_kwok_took_back_once_a_renewal_after_the_take_landed() -> None:
    take, second = "2026-11-29T12:00:01.000000001Z", "2026-11-29T12:00:02.5Z"
    looks = kwoklog.parse_lines(
        [
            line(kwoklog.OTHER_HOLDER, "2026-11-29T12:00:00.2Z"),  # before the release reached its cache
            line("Syncing lease", take),
            line("Syncing lease", second),
        ]
    )
    assert not kwoklog.kwok_took_back(looks[:2], NODE, lease(KWOK, renew="2026-11-29T12:00:01.000010Z")), (
        "the take alone: kwok's cache may still name no one"
    )
    assert not kwoklog.kwok_took_back(looks, NODE, lease(KWOK, renew="2026-11-29T12:00:01.000010Z")), (
        "the second renewal did not land (its copy was stale: 409)"
    )
    assert kwoklog.kwok_took_back(looks, NODE, lease(KWOK, renew="2026-11-29T12:00:02.500020Z"))
    assert kwoklog.kwok_took_back(looks, NODE, lease(KWOK, renew="2026-11-29T12:00:02.500000Z")), "same µs"
    assert not kwoklog.kwok_took_back(looks, NODE, lease(None, renew="2026-11-29T12:00:09Z")), "nobody holds it"
    assert not kwoklog.kwok_took_back(looks, NODE, lease(bh.AGENT_IDENTITY, renew="2026-11-29T12:00:09Z"))
    assert not kwoklog.kwok_took_back(looks, NODE, None), "no Lease"


def test_kwok_took_back_once_it_played_a_pod_after_the_take() -> None:
    renewed = lease(KWOK, renew="2026-11-29T12:00:01.000100Z")

    def pod(time: str, reason: str) -> list[kwoklog.Look]:
        return kwoklog.parse_lines([line("Skip pod", time, reason=reason, pod="ns/p")])

    take = kwoklog.parse_lines([line("Syncing lease", "2026-11-29T12:00:01.0Z")])
    dropped = pod("2026-11-29T12:00:01.01Z", "read only")
    played = pod("2026-11-29T12:00:01.02Z", "not match any stages")
    assert not kwoklog.kwok_took_back(take + dropped, NODE, renewed), "its cache did not know yet"
    assert kwoklog.kwok_took_back(take + dropped + played, NODE, renewed)
    before = pod("2026-11-29T12:00:00.5Z", "not match any stages")
    assert not kwoklog.kwok_took_back(before + take, NODE, renewed), "a pod played before the take proves nothing"
    assert not kwoklog.kwok_took_back(take + played, NODE, lease(KWOK, renew="2026-11-29T12:00:00.9Z")), (
        "the take did not land"
    )


def test_describe_says_what_kwok_last_saw() -> None:
    assert kwoklog.describe([], NODE) == "kwok has not looked at its Lease since"
    looks = kwoklog.parse_lines([line("Syncing lease", "2026-11-29T12:00:00.25Z")])
    assert kwoklog.describe(looks, NODE) == "kwok's last look (12:00:00.250 UTC) found itself the holder"


# --- the Lease bodies the agent writes ------------------------------------------------


def test_held_leases_never_expire_in_kwoks_eyes() -> None:
    now = "2026-11-29T12:00:09.000000Z"
    renewing = bh.held_lease(lease(KWOK), NODE, now, renew=True)
    assert renewing["spec"]["holderIdentity"] == bh.AGENT_IDENTITY
    assert renewing["spec"]["renewTime"] == now, "renewed: the node-lifecycle controller sees a live kubelet"
    assert renewing["spec"]["leaseDurationSeconds"] >= 365 * 86400, "a late renewal must not hand the node to kwok"
    assert renewing["metadata"]["resourceVersion"] == "7", "written with its resourceVersion: no lost update"
    assert renewing["spec"]["leaseTransitions"] == 1
    silent = bh.held_lease(lease(KWOK), NODE, now, renew=False)
    assert silent["spec"]["renewTime"] == "2026-11-29T12:00:03.000000Z", "not-ready: the last renewal stays"
    assert silent["spec"]["leaseDurationSeconds"] == renewing["spec"]["leaseDurationSeconds"]
    new = bh.held_lease(None, NODE, now, renew=False)
    assert new["metadata"] == {"name": NODE, "namespace": "kube-node-lease"} and new["spec"]["renewTime"] == now


def test_a_released_lease_has_no_holder_and_keeps_the_rest() -> None:
    held = bh.held_lease(lease(KWOK), NODE, "2026-11-29T12:00:09.000000Z", renew=True)
    released = bh.released_lease(held)
    assert "holderIdentity" not in released["spec"] and not bh.held_by_agent(released)
    assert released["metadata"]["resourceVersion"] == "7"
    assert released["spec"]["renewTime"] == held["spec"]["renewTime"]
    assert bh.held_by_agent(held) and not bh.held_by_agent(None)


# --- the agent against an in-memory API -------------------------------------------------


class FakeApi:
    """Leases in kube-node-lease with resourceVersions, as the API server keeps them."""

    PREFIX = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"

    def __init__(self, leases: dict[str, dict[str, Any]]) -> None:
        self.leases = leases
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None, content_type: str = "", timeout: float = 10) -> Any:
        self.calls.append((method, path))
        name = path.removeprefix(self.PREFIX).strip("/")
        if method == "GET" and not name:
            return 200, {"items": list(self.leases.values())}
        if method == "GET":
            return (200, json.loads(json.dumps(self.leases[name]))) if name in self.leases else (404, None)
        if method == "DELETE":
            raise AssertionError("the agent never deletes a Lease: kwok may miss a deletion for good")
        name = name or body["metadata"]["name"]
        current = self.leases.get(name)
        if method == "PUT" and current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            return 409, None
        rv = str(int((current or {"metadata": {"resourceVersion": "0"}})["metadata"]["resourceVersion"]) + 1)
        self.leases[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
        return (201 if method == "POST" else 200), self.leases[name]


@pytest.mark.parametrize("kind", ["not-ready", "kubelet-gone", "slow-start"])
def test_the_agent_takes_a_lease_and_hands_it_back_by_clearing_its_holder(kind: str) -> None:
    api = FakeApi({NODE: lease(KWOK)})
    agent = NodeAgent(api, 6)  # type: ignore[arg-type]
    agent.wanted[NODE] = bh.parse(kind)
    agent.tick()
    spec = api.leases[NODE]["spec"]
    assert spec["holderIdentity"] == bh.AGENT_IDENTITY and spec["leaseDurationSeconds"] == bh.FOREVER_SECONDS
    assert (spec["renewTime"] == "2026-11-29T12:00:03.000000Z") == (kind == "not-ready")
    agent.wanted[NODE] = None
    agent.tick()
    assert "holderIdentity" not in api.leases[NODE]["spec"] and NODE not in agent.held
    assert ("DELETE", f"{FakeApi.PREFIX}/{NODE}") not in api.calls


def test_the_agent_keeps_a_node_it_has_not_taken_yet_out_of_kwoks_hands() -> None:
    api = FakeApi({})  # no Lease yet: the agent creates one
    agent = NodeAgent(api, 6)  # type: ignore[arg-type]
    agent.wanted[NODE] = bh.parse("kubelet-gone")
    agent.tick()
    assert bh.held_by_agent(api.leases[NODE])


def test_a_restarted_agent_hands_back_the_leases_it_finds_itself_holding() -> None:
    healthy, still_gone, kwoks = NODE, "kwok-node-010", "kwok-node-009"
    api = FakeApi(
        {
            healthy: {**lease(bh.AGENT_IDENTITY), "metadata": {"name": healthy, "resourceVersion": "3"}},
            still_gone: {**lease(bh.AGENT_IDENTITY), "metadata": {"name": still_gone, "resourceVersion": "4"}},
            kwoks: {**lease(KWOK), "metadata": {"name": kwoks, "resourceVersion": "5"}},
        }
    )
    agent = NodeAgent(api, 6)  # type: ignore[arg-type]
    agent.wanted.update({healthy: None, still_gone: bh.parse("kubelet-gone"), kwoks: None})
    agent._adopt_leases({healthy, still_gone, kwoks})
    assert set(agent.held) == {healthy, still_gone}
    agent.tick()
    assert not bh.held_by_agent(api.leases[healthy]), "healed while no agent ran: handed back"
    assert bh.held_by_agent(api.leases[still_gone]) and api.leases[still_gone]["metadata"]["resourceVersion"] == "5"
    assert api.leases[kwoks]["metadata"]["resourceVersion"] == "5", "kwok's own Lease is left alone"
