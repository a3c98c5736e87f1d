"""Node behaviours a sandbox can be told to show, and what each one means (pure).

A test (or a person with kubectl) sets ``sandbox.dsroll.io/node-behaviour`` on a node at
any time; removing it makes the node healthy again. Two mechanisms play them:

* kwok's node stages (``stages/node-behaviours.yaml``) for what a kubelet *posts*:
  ``flapping``.
* the sandbox's node agent (``nodeagent.py``) for what a kubelet *does*, through the
  node's Lease. kwok manages a node only while it holds the node's Lease in
  ``kube-node-lease``; the agent takes the Lease over, which stops kwok on that node (its
  status and its pods), and either lets it go stale (the node-lifecycle controller then
  sees a silent kubelet) or renews it itself (the node stays Ready) while it plays the
  node's pods its own way. Handing the Lease back (clearing its holder) gives the node to
  kwok. When kwok has really let go, or taken the node back, is ``kwoklog.py``'s question.

Everything here is a pure function of annotation values, pod objects and the clock, so
the agent's decisions are unit-tested without a cluster.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NODE_BEHAVIOUR = "sandbox.dsroll.io/node-behaviour"
POD_BEHAVIOUR = "sandbox.dsroll.io/behaviour"
AGENT_IDENTITY = "dsroll-sandbox-node-agent"

# name -> (needs the agent's Lease, agent renews it, agent plays the pods, default seconds)
_KINDS: dict[str, tuple[bool, bool, bool, float]] = {
    "flapping": (False, False, False, 0.0),
    "not-ready": (True, False, False, 0.0),
    "kubelet-gone": (True, True, False, 0.0),
    "slow-start": (True, True, True, 5.0),
    "slow-pull": (True, True, True, 10.0),
}
KINDS = tuple(_KINDS)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


class BehaviourError(ValueError):
    """An annotation value that names no behaviour, or a bad duration."""


@dataclass(frozen=True)
class NodeBehaviour:
    """One node's behaviour: ``kind`` and, for the slow ones, the base delay in seconds."""

    kind: str
    seconds: float = 0.0

    @property
    def holds_lease(self) -> bool:
        """The agent, not kwok, owns the node's Lease (kwok leaves the node alone)."""
        return _KINDS[self.kind][0]

    @property
    def renews_lease(self) -> bool:
        """The agent keeps the Lease fresh, so the node-lifecycle controller sees a live kubelet."""
        return _KINDS[self.kind][1]

    @property
    def plays_pods(self) -> bool:
        return _KINDS[self.kind][2]

    def delay(self, rng: random.Random | None = None) -> float:
        """How long one pod waits: the base delay plus up to 50 % jitter, as pulls and probes vary."""
        return self.seconds * (1 + 0.5 * (rng or random).random())

    def annotation(self) -> str:
        return f"{self.kind}={_format_seconds(self.seconds)}" if self.plays_pods else self.kind


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """``5``, ``5s``, ``1500ms``, ``2m`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise BehaviourError(f"{text!r} is not a duration (use e.g. 5s, 1500ms, 2m)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def parse(value: str | None) -> NodeBehaviour | None:
    """The annotation's value -> a behaviour; None (healthy) when absent or empty.

    Raises BehaviourError for a value that names no behaviour, so a typo is reported
    (the agent records it as an Event on the node) instead of silently meaning healthy.
    """
    if value is None or not value.strip():
        return None
    kind, _, arg = value.strip().partition("=")
    if kind not in _KINDS:
        raise BehaviourError(f"unknown node behaviour {value!r}; known: {', '.join(KINDS)}")
    default = _KINDS[kind][3]
    if arg and not _KINDS[kind][2]:
        raise BehaviourError(f"node behaviour {kind!r} takes no argument (got {value!r})")
    return NodeBehaviour(kind, parse_duration(arg) if arg else default)


def lease_timing(node_count: int) -> tuple[int, int]:
    """(kwok's node lease duration, kube-controller-manager's node-monitor grace period), seconds.

    A kubelet renews its Lease every quarter of its duration; the node-lifecycle
    controller calls a node Unknown after the grace period without a renewal. Small
    sandboxes (the e2e suite) want a fault seen within seconds: a 6 s lease renewed every
    1.5 s against a 10 s grace leaves six renewals of slack on a busy machine. Large ones
    keep upstream's 40 s / 50 s, so a thousand nodes do not renew 600 Leases a second; above
    a thousand the lease grows with the fleet (5,000 nodes: 200 s / 250 s), so that the
    renewals stay at about 100 a second, which 2 cores can serve beside a rollout.
    """
    if node_count <= 100:
        return 6, 10
    if node_count <= 1000:
        return 40, 50
    lease = node_count // 25
    return lease, lease * 5 // 4


# --- the node's Lease while the agent holds it ----------------------------------------------

# kwok takes a Lease back once renewTime + leaseDurationSeconds has passed, and would then
# play the node again. The node-lifecycle controller reads only renewTime (when it moved),
# never the duration. So every Lease the agent holds carries a duration kwok never sees
# run out: a renewing agent that falls behind (a busy machine, a slow API call) leaves a
# node that looks silent, as a late kubelet would, instead of handing it to kwok.
FOREVER_SECONDS = 10 * 365 * 86400
LEASE_NAMESPACE = "kube-node-lease"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"


def lease_path(node: str) -> str:
    """The API path of ``node``'s Lease."""
    return f"{LEASES}/{node}"


def lease_holder(lease: Mapping[str, Any] | None) -> str | None:
    """Who holds the Lease (None: no Lease, or no holder)."""
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def held_lease(lease: Mapping[str, Any] | None, node: str, now: str, renew: bool) -> dict[str, Any]:
    """The node's Lease (None: there is none yet) as the agent holds it at ``now``.

    ``renew`` (the behaviours that keep the node Ready) sets renewTime; otherwise the last
    one stays, so the node-lifecycle controller sees a kubelet that went silent.
    """
    body: dict[str, Any] = dict(lease or {"metadata": {"name": node, "namespace": LEASE_NAMESPACE}})
    spec = dict(body.get("spec") or {})
    spec["holderIdentity"] = AGENT_IDENTITY
    spec["leaseDurationSeconds"] = FOREVER_SECONDS
    if renew or not spec.get("renewTime"):
        spec["renewTime"] = now
    body["spec"] = spec
    return body


def released_lease(lease: Mapping[str, Any]) -> dict[str, Any]:
    """The node's Lease handed back to kwok: no holder, so kwok's next look takes it.

    Taking a Lease from another holder is a transition for kwok, which then plays the
    node and every pod on it again. The Lease is cleared, not deleted: kwok's informers
    re-watch from resourceVersion 0 after a watch gap, which replays the objects that
    exist but not the deletions, and a deletion kwok missed would leave it with its old
    copy for good (renewing it in vain, never creating a new one).
    """
    spec = {k: v for k, v in (lease.get("spec") or {}).items() if k != "holderIdentity"}
    return {**lease, "spec": spec}


def held_by_agent(lease: Mapping[str, Any] | None) -> bool:
    return lease_holder(lease) == AGENT_IDENTITY


# --- pods the agent plays on slow nodes ----------------------------------------------------


def pod_ip(pod_cidr: str | None, used: set[str], uid: str) -> str:
    """An address from the top of the node's pod CIDR (kwok allocates from the bottom)."""
    if pod_cidr:
        net = ipaddress.ip_network(pod_cidr, strict=False)
        for offset in range(2, min(net.num_addresses - 1, 128)):
            candidate = str(net.broadcast_address - offset + 1)
            if candidate not in used:
                return candidate
    digest = int(re.sub(r"[^0-9a-f]", "", uid)[:6] or "1", 16)
    return str(ipaddress.ip_address("10.127.255.0") - (digest % 60000))


def _conditions(now: str, ready: bool, initialized: bool = True) -> list[dict[str, Any]]:
    status = "True" if ready else "False"
    reason = {} if ready else {"reason": "ContainersNotReady"}
    return [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True" if initialized else "False", "lastTransitionTime": now},
        {"type": "Ready", "status": status, "lastTransitionTime": now, **reason},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": now, **reason},
    ]


def creating_status(pod: Mapping[str, Any], host_ip: str, now: str) -> dict[str, Any]:
    """Pending, every container waiting in ContainerCreating (what a pull looks like)."""
    containers = pod["spec"]["containers"]
    return {
        "phase": "Pending",
        "hostIP": host_ip,
        "startTime": now,
        "conditions": _conditions(now, ready=False),
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for c in containers
        ],
    }


def running_status(pod: Mapping[str, Any], host_ip: str, ip: str, now: str, ready: bool) -> dict[str, Any]:
    """Running, containers started; ``ready`` says whether the readiness probe passed yet."""
    status = pod.get("status") or {}
    started = {
        cs["name"]: (cs.get("state") or {}).get("running", {}).get("startedAt")
        for cs in status.get("containerStatuses") or []
    }
    return {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": status.get("startTime") or now,
        "conditions": _conditions(now, ready=ready),
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started.get(c["name"]) or now}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def pod_stage(pod: Mapping[str, Any]) -> str:
    """Where a pod on an agent-played node stands: new, creating, starting, ready or deleting."""
    meta, status = pod["metadata"], pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "deleting"
    if not status.get("podIP"):
        statuses = status.get("containerStatuses") or []
        return "creating" if statuses else "new"
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return "ready" if ready else "starting"
