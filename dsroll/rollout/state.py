"""The rollout state saved in the DaemonSet annotation ``dsroll.io/rollout``.

The state is written before every transition is acted on, so that any process — this
one after a crash, or another on another machine — continues from the cluster alone.
Pure: parsing, serialising and the phase rules live here; writing it is the executor's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dsroll.errors import ClusterError
from dsroll.labels import REQUEST_ANNOTATION, ROLLOUT_ANNOTATION


class Phase(StrEnum):
    progressing = "progressing"
    pausing = "pausing"
    awaiting_approval = "awaiting-approval"
    paused = "paused"
    partitioned = "partitioned"
    rolling_back = "rolling-back"
    rolled_back = "rolled-back"
    aborted = "aborted"
    failed = "failed"
    complete = "complete"


#: Phases in which a rollout has stopped for good: a new `rollout` starts afresh.
FINISHED = frozenset({Phase.complete, Phase.rolled_back, Phase.aborted, Phase.failed})


class RunKind(StrEnum):
    rollout = "rollout"
    rollback = "rollback"
    restart = "restart"  # every pod replaced, the template unchanged (``rollout/restart.py``)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created_after(created: str | None, moment: str | None) -> bool:
    """Whether a pod whose ``creationTimestamp`` is ``created`` was created after ``moment``
    (both Kubernetes timestamps, whole seconds); with no ``moment``, every pod was.

    A restart's pods are told apart this way: those created at or before its recorded
    ``restartedAt`` are still to be restarted (``rollout/restart.py`` says why that is exact).
    """
    if moment is None:
        return True
    if not created:
        return False
    return datetime.fromisoformat(created) > datetime.fromisoformat(moment)


@dataclass(frozen=True)
class Failure:
    node: str
    reason: str


class SkipReason(StrEnum):
    not_ready = "not-ready"  # the node's own Ready condition was not True when its turn came
    held = "held"  # the node carries dsroll.io/hold=true


@dataclass(frozen=True)
class SkippedNode:
    """A node left on its revision by this rollout; a later `rollout` or `resume` does it."""

    node: str
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class RolloutState:
    """One variant's rollout, as recorded in the cluster."""

    operation: RunKind
    phase: Phase
    target_revision: str
    previous_revision: str | None
    steps: tuple[int, ...]
    step: int
    nodes: tuple[str, ...]
    max_unavailable: int
    pause: str
    ready_timeout: str
    min_ready_seconds: int
    on_failure: str
    original_strategy: dict[str, Any] | None
    who: str
    commit: str | None = None
    partition: int | None = None
    nodes_done: int = 0
    in_flight: tuple[str, ...] = ()
    started_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    failure: Failure | None = None
    replacement: str | None = None  # the backup ConfigMap of the orphan replacement that created this object
    unready_nodes: str = "skip"  # rollout.unreadyNodes: skip | wait | fail
    skipped: tuple[SkippedNode, ...] = ()
    restarted_at: str | None = None  # a restart: the API server's time when it began; older pods are due
    version: int = 1

    @property
    def finished(self) -> bool:
        """Stopped for good: a new `rollout` starts afresh. A rollout (or rollback) that
        skipped nodes is not: those nodes are still to do, from the recorded revisions."""
        return self.phase in FINISHED and not (self.skipped and self.phase in (Phase.complete, Phase.rolled_back))

    @property
    def skipped_names(self) -> frozenset[str]:
        return frozenset(s.node for s in self.skipped)

    @property
    def updatable(self) -> int:
        """The nodes this rollout can update: all but the skipped and held ones."""
        return len(self.nodes) - len(self.skipped_names & set(self.nodes))

    @property
    def cap(self) -> int:
        """How many nodes this rollout may replace: every updatable one but the partition."""
        return max(0, self.updatable - (self.partition or 0))

    def entering(self, phase: Phase, **changes: Any) -> RolloutState:
        return replace(self, phase=phase, updated_at=now_iso(), **changes)

    def to_json(self) -> str:
        data = asdict(self)
        data["failure"] = asdict(self.failure) if self.failure else None
        data["skipped"] = [asdict(s) for s in self.skipped]
        return camel_json(data)

    @classmethod
    def from_json(cls, text: str, where: str) -> RolloutState:
        try:
            data = snake_fields(text, cls.__dataclass_fields__)
            data["operation"] = RunKind(data["operation"])
            data["phase"] = Phase(data["phase"])
            for key in ("steps", "nodes", "in_flight"):
                data[key] = tuple(data.get(key) or ())
            failure = data.get("failure")
            data["failure"] = Failure(**failure) if failure else None
            data["skipped"] = tuple(
                SkippedNode(str(s["node"]), SkipReason(s["reason"]), str(s.get("detail") or ""))
                for s in data.get("skipped") or ()
            )
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ClusterError(
                f"{where}: annotation {ROLLOUT_ANNOTATION} is not a dsroll rollout state ({exc})"
            ) from None


def read_state(daemonset: dict[str, Any] | None) -> RolloutState | None:
    if not daemonset:
        return None
    text = (daemonset["metadata"].get("annotations") or {}).get(ROLLOUT_ANNOTATION)
    if not text:
        return None
    meta = daemonset["metadata"]
    return RolloutState.from_json(text, f"daemonset {meta['namespace']}/{meta['name']}")


def read_request(daemonset: dict[str, Any] | None) -> str | None:
    """A pending `dsroll pause` / `dsroll abort` from another process: "pause", "abort" or None."""
    if not daemonset:
        return None
    return request_action((daemonset["metadata"].get("annotations") or {}).get(REQUEST_ANNOTATION))


def request_action(text: str | None) -> str | None:
    """The action of a recorded request (JSON ``{"action", "by", "at"}``): "pause", "abort" or None."""
    if not text:
        return None
    try:
        request = json.loads(text)
    except ValueError:
        return None
    action = request.get("action") if isinstance(request, dict) else None
    return action if action in ("pause", "abort") else None


def request_json(action: str, by: str) -> str:
    """What ``dsroll pause`` / ``abort`` records for the running rollout to honour."""
    return json.dumps({"action": action, "by": by, "at": now_iso()})


def camel_json(data: Mapping[str, Any]) -> str:
    """A record as compact JSON with camelCase keys, as the annotations carry it."""
    return json.dumps({_camel(k): v for k, v in data.items()}, separators=(",", ":"))


def snake_fields(text: str, fields: Iterable[str]) -> dict[str, Any]:
    """The known fields of a camelCase JSON object, snake_cased; ValueError if it is not one."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    known = set(fields)
    return {_snake(k): v for k, v in raw.items() if _snake(k) in known}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
