"""The per-node health gate, as a pure function of the new pod and the clock.

Like kubectl's StatusViewer: a snapshot in, a verdict with a message naming what is
awaited out. The executor feeds it every pod event and the times it observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


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
) -> Verdict:
    """Judge the new pod on a node whose old pod was deleted at ``started``.

    ``ready_since`` is when the executor first saw this pod Ready (its own clock, so no
    skew with the server), ``lost_ready`` whether it saw Ready turn false afterwards.
    """
    deadline = started + gate.ready_timeout
    if pod is None:
        if now >= deadline:
            return Verdict(Outcome.FAILED, f"no new pod within readyTimeout ({gate.ready_timeout:g}s)")
        return Verdict(Outcome.WAITING, "waiting for the DaemonSet controller to create the new pod", deadline)
    name = pod["metadata"]["name"]
    if (pod.get("status") or {}).get("phase") == "Failed":
        return Verdict(
            Outcome.FAILED, f"pod {name} failed: {(pod.get('status') or {}).get('reason') or 'phase Failed'}"
        )
    for container in _statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return Verdict(Outcome.FAILED, f"pod {name} container {container.get('name')}: {waiting['reason']}{detail}")
        if int(container.get("restartCount") or 0) > 0:
            return Verdict(
                Outcome.FAILED,
                f"pod {name} container {container.get('name')} restarted {container['restartCount']} time(s)",
            )
    if lost_ready:
        return Verdict(Outcome.FAILED, f"pod {name} lost Ready within minReadySeconds ({gate.min_ready_seconds:g}s)")
    if ready_since is not None and is_ready(pod):
        settled = ready_since + gate.min_ready_seconds
        if now >= settled:
            return Verdict(Outcome.HEALTHY, f"pod {name} Ready")
        return Verdict(Outcome.WAITING, f"pod {name} Ready, waiting {settled - now:.0f}s of minReadySeconds", settled)
    if now >= deadline:
        return Verdict(Outcome.FAILED, f"pod {name} not Ready within readyTimeout ({gate.ready_timeout:g}s)")
    return Verdict(Outcome.WAITING, f"waiting for pod {name} to be Ready", deadline)
