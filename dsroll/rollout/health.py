"""The per-node health gate, as a pure function of the new pod, what is known about it, and the clock.

Like kubectl's StatusViewer: a snapshot in, a verdict with a one-line message naming the
pod, its node and what is awaited or what went wrong out. The executor feeds it every pod
event and the times it observed; ``evidence.py`` adds, when it is worth a request, the
pod's Events and, for a node that got no new pod, why the node cannot run it.

Causes that cannot resolve themselves fail at once: a container that crashed, was
OOMKilled, exited with an error, restarted or cannot pull its image; a pod the scheduler
cannot place for good (a hostPort taken on the node, a taint not tolerated, a node
selector or affinity the node does not match); no pod at all because the DaemonSet
controller will not place one on the node (``placement.py``); Ready lost within
``minReadySeconds``. Causes that may resolve (insufficient resources, a slow image pull,
a volume not mounted yet, a node not Ready) are waited for up to ``readyTimeout`` and then
named in the failure. The wording is ``causes.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dsroll.rollout import causes
from dsroll.rollout.causes import FATAL_WAITING
from dsroll.rollout.placement import Misfit

__all__ = ["FATAL_WAITING", "Clues", "Gate", "Outcome", "Verdict", "assess", "is_ready"]


class Outcome(StrEnum):
    WAITING = "waiting"
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str
    wake_at: float | None = None  # when the verdict can change without an event


@dataclass(frozen=True)
class Gate:
    ready_timeout: float
    min_ready_seconds: float


@dataclass(frozen=True)
class Clues:
    """What the gate knows beyond the pod: none of it is needed, all of it sharpens the message.

    ``node``: the node in flight (a pod that does not exist yet cannot name it);
    ``events``: the new pod's Events; ``misfit``: why the node cannot run the pod
    template, when no new pod came (``placement.misfit``)."""

    node: str = ""
    events: Sequence[Mapping[str, Any]] = ()
    misfit: Misfit | None = None


NO_CLUES = Clues()


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def assess(
    pod: Mapping[str, Any] | None,
    *,
    gate: Gate,
    started: float,
    ready_since: float | None,
    lost_ready: bool,
    now: float,
    clues: Clues = NO_CLUES,
) -> Verdict:
    """Judge the new pod on a node whose old pod was deleted at ``started``.

    ``ready_since`` is when the executor first saw this pod Ready (its own clock, so no
    skew with the server), ``lost_ready`` whether it saw Ready turn false afterwards.
    """
    deadline = started + gate.ready_timeout
    timeout = f"readyTimeout ({gate.ready_timeout:g}s)"
    if pod is None:
        return _no_pod(clues, deadline, timeout, now)
    events = clues.events
    name = causes.label(pod, clues.node)
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        detail = f": {causes.one_line(status['message'])}" if status.get("message") else ""
        return Verdict(Outcome.FAILED, f"{name} failed: {status.get('reason') or 'phase Failed'}{detail}")
    blocked = causes.unschedulable(pod, events)
    if blocked is not None and blocked.permanent:
        return Verdict(Outcome.FAILED, f"{name} cannot be scheduled: {blocked}")
    broken = causes.container_failure(pod)
    if broken is not None:
        return Verdict(Outcome.FAILED, f"{name}: {broken}")
    if lost_ready:
        why = causes.readiness(pod, events)
        return Verdict(Outcome.FAILED, f"{name} lost Ready within minReadySeconds ({gate.min_ready_seconds:g}s): {why}")
    if ready_since is not None and is_ready(pod):
        settled = ready_since + gate.min_ready_seconds
        if now >= settled:
            return Verdict(Outcome.HEALTHY, f"{name} Ready")
        return Verdict(Outcome.WAITING, f"{name} Ready, waiting {settled - now:.0f}s of minReadySeconds", settled)
    if now >= deadline:
        return Verdict(Outcome.FAILED, f"{name} not Ready within {timeout}: {causes.pending(pod, events)}")
    return Verdict(Outcome.WAITING, f"waiting for {name} to be Ready: {causes.pending(pod, events)}", deadline)


def _no_pod(clues: Clues, deadline: float, timeout: str, now: float) -> Verdict:
    where = f" on {clues.node}" if clues.node else ""
    misfit = clues.misfit
    if misfit is not None and misfit.permanent:
        why = f"the DaemonSet controller will not create one: {misfit.reason}"
        return Verdict(Outcome.FAILED, f"no new pod{where}, {why}")
    why = f": {misfit.reason}" if misfit is not None else ""
    if now >= deadline:
        return Verdict(Outcome.FAILED, f"no new pod{where} within {timeout}{why}")
    return Verdict(Outcome.WAITING, f"waiting for the DaemonSet controller to create the new pod{where}{why}", deadline)


# --- when the cause is worth a request ----------------------------------------------------

#: A new pod not Ready this long has its Events read (a pod Ready at once never costs one).
EVENTS_AFTER = 5.0
#: No new pod this long: the DaemonSet controller has had its chance; read the node.
NODE_AFTER = 2.0
#: At most one look per pod, or per node without a pod, this often while it waits.
LOOK_EVERY = 10.0
#: A look this recent is fresh enough to name a failure.
FRESH = 1.0


class Look(StrEnum):
    NONE = "none"
    EVENTS = "events"  # one LIST of the new pod's Events
    NODE = "node"  # one GET of the node that has no new pod


def look(
    verdict: Verdict,
    pod: Mapping[str, Any] | None,
    *,
    started: float,
    now: float,
    last: float | None,
    pace: float = 0.0,
    free_at: float | None,
    pod_at: float | None,
) -> tuple[Look, float | None]:
    """What to read now to name the cause, and when the next look is due (None: never).

    Only a node still in question is looked at: no pod ``NODE_AFTER`` after its old pod
    was gone (``free_at``; is the node one the controller will not place a pod on?), a pod
    not Ready ``EVENTS_AFTER`` after it appeared (``pod_at``), then every ``LOOK_EVERY``;
    and once more, unless the last look is ``FRESH``, to name a failure. A healthy pod, or
    one Ready and waiting out ``minReadySeconds``, costs nothing. While the old pod is
    still there (its kubelet may take the whole grace period to stop it) the controller
    has had no chance yet, and the node is not read.

    ``pace``: how long a replacement takes in this run so far (``Evidence``'s median). A
    node is in question only once it is slower than its peers: with no pod ``pace`` after
    ``started`` (its old pod's deletion), not Ready after twice ``pace``. On a cluster where
    every pod takes 20 s to pull its image, looking at each after 5 s would read the Events
    of every pod in flight, find nothing wrong, and load the API server the rollout waits on."""
    if verdict.outcome is Outcome.HEALTHY or (pod is not None and is_ready(pod) and verdict.outcome is Outcome.WAITING):
        return Look.NONE, None
    kind = Look.NODE if pod is None else Look.EVENTS
    if verdict.outcome is Outcome.FAILED:
        return (kind if last is None or now - last >= FRESH else Look.NONE), None
    if pod is None:
        if free_at is None:
            return Look.NONE, None  # judged again when the old pod goes: its node's pods change
        first = max(free_at + NODE_AFTER, started + pace)
    else:
        first = max((started if pod_at is None else pod_at) + EVENTS_AFTER, started + 2 * pace)
    due = first if last is None else last + LOOK_EVERY
    return (kind, now + LOOK_EVERY) if now >= due else (Look.NONE, due)
