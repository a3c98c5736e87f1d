"""Why a new pod is not Ready, in words: from its conditions, container states and Events.

The health gate (``health.py``) decides *whether* a node failed, and when; this module
says *why*, the way ``kubectl describe pod`` would, and whether the cause can go away by
itself. Three sources, all as the API returns them:

- the ``PodScheduled`` condition: ``reason: Unschedulable`` with the scheduler's message
  ("0/12 nodes are available: 1 Insufficient cpu, 11 node(s) didn't satisfy plugin(s)
  [NodeAffinity]. preemption: …"). A daemon pod is pinned to one node (the DaemonSet
  controller gives it a required ``matchFields`` affinity on the node's name), so the
  reasons about the other nodes — node affinity — are left out and the rest is about its
  node. A taken hostPort, a taint not tolerated and a node selector or affinity the node
  does not match will not change by themselves (``PERMANENT``); insufficient resources
  may (another pod leaves), as may anything this module does not know;
- container states: ``waiting`` reasons, ``terminated`` and ``lastState.terminated``
  (OOMKilled, Error and the exit code), restart counts;
- the pod's Events (``involvedObject.uid``), read by ``evidence.py`` only when needed: the
  kubelet's ``Pulling image`` and ``FailedMount``, a readiness probe's ``Unhealthy``, the
  node controller's ``NodeNotReady``. Without them (RBAC may forbid reading Events) every
  cause is still named from the pod alone, only with fewer details.

Pure: no clock, no I/O. Messages are one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dsroll.plan import node_of

#: Container waiting reasons that mean the new version will not come up by itself.
FATAL_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

#: Scheduler reasons (its plugins' words, matched as substrings) that no wait resolves:
#: someone must free the port, add a toleration or change labels or the template.
PERMANENT = (
    "didn't have free ports",  # NodePorts: a hostPort is taken on the node
    "untolerated taint",  # TaintToleration (1.27+)
    "taints that the pod didn't tolerate",  # TaintToleration (older)
    "that the pod didn't tolerate",  # "had taint {k: v}, that the pod didn't tolerate" (oldest)
    "didn't match pod's node affinity/selector",  # NodeAffinity (the pod's own node)
    "didn't match the requested node name",  # NodeName
    "didn't match persistentvolume's node affinity",  # VolumeBinding
    "had volume node affinity conflict",  # VolumeBinding (older)
)

#: What a pinned daemon pod's scheduler message says about the *other* nodes.
_OTHER_NODES = ("didn't satisfy plugin(s) [nodeaffinity]", "didn't satisfy plugin [nodeaffinity]")
_AFFINITY = "didn't match pod's node affinity/selector"
_AVAILABLE = re.compile(r"^\s*\d+/\d+ nodes are available:\s*(?P<reasons>.*?)(?:\.\s|\.$|$)", re.DOTALL)
_COUNTED = re.compile(r"^(?:\d+\s+)?(?P<reason>.+)$")
_EVENT_TEXT = 200  # characters of an Event message kept in a one-line cause


def label(pod: Mapping[str, Any], node: str = "") -> str:
    """``pod NAME on NODE``: how every message names the pod."""
    where = node_of(pod) or node
    name = (pod.get("metadata") or {}).get("name", "?")
    return f"pod {name} on {where}" if where else f"pod {name}"


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def one_line(text: str, limit: int = _EVENT_TEXT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- scheduling ------------------------------------------------------------------------


@dataclass(frozen=True)
class Unschedulable:
    """The scheduler's reasons for not placing the pod on its node, and whether they last."""

    reasons: tuple[str, ...]
    permanent: bool
    detail: str = ""  # what of the pod they are about: "hostPort 9100/TCP", "agent requests cpu 1000"

    def __str__(self) -> str:
        return "; ".join(self.reasons) + (f" ({self.detail})" if self.detail else "")


def scheduler_reasons(message: str) -> list[str]:
    """The reasons of a scheduler message, without their node counts, about the pod's own node.

    "0/4 nodes are available: 1 Insufficient cpu, 3 node(s) didn't satisfy plugin(s)
    [NodeAffinity]. preemption: …" gives ["Insufficient cpu"]. Reasons about other nodes
    (node affinity, for a pod pinned to one node) are dropped unless nothing else is left.
    A message of another shape is one reason, as it is."""
    found = _AVAILABLE.match(message or "")
    if not found:
        text = one_line(message or "")
        return [text] if text else []
    reasons = []
    for item in found.group("reasons").split(", "):
        counted = _COUNTED.match(item.strip())
        if counted and counted.group("reason"):
            reasons.append(counted.group("reason").strip())
    own = [r for r in reasons if not any(o in r.lower() for o in (*_OTHER_NODES, _AFFINITY))]
    return own or reasons


def is_permanent(reason: str) -> bool:
    lowered = reason.lower()
    return any(p in lowered for p in PERMANENT)


def unschedulable(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> Unschedulable | None:
    """Why the scheduler has not placed the pod (None while it is placed, or has not said)."""
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") != "False" or scheduled.get("reason") != "Unschedulable":
        return None
    message = scheduled.get("message") or ""
    if not message:
        failed = latest(events, reasons=("FailedScheduling",))
        message = str(failed.get("message") or "") if failed else ""
    reasons = scheduler_reasons(message) or ["Unschedulable"]
    permanent = any(is_permanent(r) for r in reasons)
    return Unschedulable(tuple(reasons), permanent, _scheduling_detail(pod, reasons))


def _scheduling_detail(pod: Mapping[str, Any], reasons: Sequence[str]) -> str:
    """The part of the pod spec a reason is about: its host ports, its resource requests."""
    containers = (pod.get("spec") or {}).get("containers") or []
    details: list[str] = []
    if any("free ports" in r for r in reasons):
        ports = [
            f"{p['hostPort']}/{p.get('protocol') or 'TCP'}"
            for c in containers
            for p in c.get("ports") or []
            if p.get("hostPort")
        ]
        if ports:
            details.append(f"hostPort {', '.join(ports)}")
    for reason in reasons:
        if reason.startswith("Insufficient "):
            resource = reason.removeprefix("Insufficient ").strip()
            asked = [
                f"{c.get('name')} requests {resource} {((c.get('resources') or {}).get('requests') or {})[resource]}"
                for c in containers
                if resource in ((c.get("resources") or {}).get("requests") or {})
            ]
            details.extend(asked)
    return ", ".join(details)


# --- containers ------------------------------------------------------------------------


def termination(terminated: Mapping[str, Any]) -> str:
    """``OOMKilled (exit code 137)``, ``exited with code 1 (Error)``."""
    reason, code = terminated.get("reason"), terminated.get("exitCode")
    if reason == "OOMKilled":
        return f"OOMKilled (exit code {code})" if code is not None else "OOMKilled"
    shown = f" ({reason})" if reason else ""
    return f"exited with code {code}{shown}" if code is not None else f"terminated{shown}"


def _failed_termination(container: Mapping[str, Any], init: bool) -> Mapping[str, Any] | None:
    """The termination that broke the container: its current state if it ended badly (an
    init container that completed is fine), else the last one before a restart."""
    current = (container.get("state") or {}).get("terminated")
    if current and (current.get("reason") == "OOMKilled" or int(current.get("exitCode") or 0) != 0):
        return current
    if current and not init:
        return None  # exited 0 and about to restart: the restart count will say so
    last = (container.get("lastState") or {}).get("terminated")
    if last and int(container.get("restartCount") or 0) > 0:
        return last
    return None


def container_failure(pod: Mapping[str, Any]) -> str | None:
    """The first container that will not come up by itself, in one line; None if none.

    ``container agent OOMKilled (exit code 137), restarted 5 time(s), CrashLoopBackOff``;
    ``container agent: ImagePullBackOff: Back-off pulling image "…"``;
    ``container agent restarted 1 time(s)``."""
    status = pod.get("status") or {}
    inits = {c.get("name") for c in status.get("initContainerStatuses") or []}
    for container in _statuses(pod):
        name = container.get("name")
        waiting = (container.get("state") or {}).get("waiting") or {}
        ended = _failed_termination(container, init=name in inits)
        restarts = int(container.get("restartCount") or 0)
        fatal = waiting.get("reason") if waiting.get("reason") in FATAL_WAITING else None
        if ended is not None:
            parts = [f"container {name} {termination(ended)}"]
            if restarts:
                parts.append(f"restarted {restarts} time(s)")
            if fatal:
                parts.append(str(fatal))
            return ", ".join(parts)
        if fatal:
            detail = f": {one_line(waiting['message'])}" if waiting.get("message") else ""
            return f"container {name}: {fatal}{detail}"
        if restarts:
            return f"container {name} restarted {restarts} time(s)"
    return None


# --- what a pod not Ready is waiting for ------------------------------------------------


def pending(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    """What a new pod that is neither Ready nor failed is at, in a few words.

    ``unschedulable: Insufficient cpu (agent requests cpu 1000)``; ``still creating
    containers (Pulling image "…")``; ``scheduled, no container started yet``;
    ``running, not Ready (Unhealthy: Readiness probe failed: …)``."""
    blocked = unschedulable(pod, events)
    if blocked is not None:
        return f"unschedulable: {blocked}"
    scheduled = _condition(pod, "PodScheduled")
    if not (pod.get("spec") or {}).get("nodeName") and scheduled.get("status") != "True":
        return "not scheduled yet"
    statuses = _statuses(pod)
    clue = latest(events, warning=True) or latest(events, reasons=("Pulling", "Pulled", "Created", "Started"))
    if not statuses:
        return f"scheduled, no container started yet ({event_text(clue)})" if clue else (
            "scheduled, no container started yet")  # fmt: skip
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ContainerCreating", "PodInitializing"):
            return f"still creating containers ({event_text(clue)})" if clue else "still creating containers"
        if waiting.get("reason"):
            detail = f": {one_line(waiting['message'])}" if waiting.get("message") else ""
            return f"container {container.get('name')} waiting: {waiting['reason']}{detail}"
    return f"running, not Ready ({readiness(pod, events)})"


def readiness(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    """Why the pod is (or was) not Ready: the latest Warning Event (a failed readiness probe,
    the node controller's NodeNotReady), else the Ready condition's reason and message."""
    warning = latest(events, warning=True)
    if warning is not None:
        return event_text(warning)
    ready = _condition(pod, "Ready")
    if ready.get("status") == "True":
        return "Ready again"
    words = [str(w) for w in (ready.get("reason"), ready.get("message")) if w]
    return one_line(": ".join(words)) if words else "Ready is False"


# --- Events -----------------------------------------------------------------------------


def _when(event: Mapping[str, Any]) -> datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        text = event.get(key)
        if text:
            try:
                return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
            except ValueError:
                continue
    created = (event.get("metadata") or {}).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else datetime.min.replace(
            tzinfo=UTC)  # fmt: skip
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def latest(
    events: Iterable[Mapping[str, Any]], *, warning: bool = False, reasons: Sequence[str] = ()
) -> Mapping[str, Any] | None:
    """The newest Event that is a Warning (``warning``) or has one of ``reasons``."""
    chosen = [
        e for e in events if (not warning or e.get("type") == "Warning") and (not reasons or e.get("reason") in reasons)
    ]
    return max(chosen, key=_when) if chosen else None


def event_text(event: Mapping[str, Any]) -> str:
    """A Warning as ``Reason: message``; a Normal Event by its message (``Pulling image "…"``)."""
    message = one_line(str(event.get("message") or ""))
    if event.get("type") == "Warning" and event.get("reason"):
        return f"{event['reason']}: {message}" if message else str(event["reason"])
    return message or str(event.get("reason") or "")
