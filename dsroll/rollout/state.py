"""The rollout state saved in the DaemonSet annotation ``dsroll.io/rollout``.

The state is written before every transition is acted on, so that any process — this
one after a crash, or another on another machine — continues from the cluster alone.
Pure: parsing, serialising and the phase rules live here; writing it is the executor's.

The record is bounded whatever the fleet (a few KiB at 5,000 nodes, where a list of
every node name with cloud-style names would be 230 KiB, near the 256 KiB annotation
limit, and re-sent to every DaemonSet watcher on each write). It keeps counts, and short
samples for people, of everything that grows with the fleet:

* the node order is not recorded (``nodeCount`` is): a resumed run re-derives it —
  ``plan.order_nodes`` is deterministic in node labels, and ``plan.resume_order`` puts the
  nodes already on the target revision (observed from the pods) first, so a step's
  window still holds every node done before, whatever changed in the labels meanwhile;
* skipped nodes: ``skippedCount`` and the first ``SAMPLE`` of them (``skipped``); a resumed
  run looks at every node again anyway (held label, Ready condition) and skips the ones
  still held or not Ready, and the run's JSON summary lists them all (output, not state);
* nodes in flight: ``inFlightCount`` and a sample; a resumed run recomputes them from the
  pods (a node whose pod is missing or not Ready is taken first, within the budget);
* texts that come from outside (a failure's reason, a skip's detail, who): clipped.

A state read back from the annotation carries those counts (``RolloutState.counts``) and
empty or sampled lists; the executor fills in the nodes from the plan before it swaps a
pod (``resumed_state``, a rollback's nodes). States written by dsroll before this
(``version`` 1, with ``nodes``) are read as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
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


STATE_VERSION = 2  # 1: every node listed; 2: counts and samples (bounded)
SAMPLE = 10  # entries of a growing list (skipped, in flight) the annotation shows
MAX_TEXT = 300  # characters of an outside text (a failure's reason, a skip's detail, who) it keeps


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
class Counts:
    """The sizes of what a state read back from the annotation lists as a sample, or not at all."""

    nodes: int
    updatable: int
    skipped: int
    in_flight: int


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
    version: int = STATE_VERSION
    counts: Counts | None = None  # read back from the annotation: nodes, skipped and in_flight are samples

    @property
    def finished(self) -> bool:
        """Stopped for good: a new `rollout` starts afresh. A rollout (or rollback) that
        skipped nodes is not: those nodes are still to do, from the recorded revisions."""
        return self.phase in FINISHED and not (self.skipped_count and self.phase in (Phase.complete, Phase.rolled_back))

    @property
    def skipped_names(self) -> frozenset[str]:
        return frozenset(s.node for s in self.skipped)

    @property
    def node_count(self) -> int:
        return self.counts.nodes if self.counts else len(self.nodes)

    @property
    def skipped_count(self) -> int:
        return self.counts.skipped if self.counts else len(self.skipped)

    @cached_property
    def updatable(self) -> int:
        """The nodes this rollout can update: all but the skipped and held ones.
        (Cached: the pod swap asks on every event, and a state is never changed in place.)"""
        if self.counts:
            return self.counts.updatable
        if not self.skipped:
            return len(self.nodes)
        return len(self.nodes) - len(self.skipped_names.intersection(self.nodes))

    @property
    def cap(self) -> int:
        """How many nodes this rollout may replace: every updatable one but the partition."""
        return max(0, self.updatable - (self.partition or 0))

    def entering(self, phase: Phase, **changes: Any) -> RolloutState:
        return replace(self, phase=phase, updated_at=now_iso(), **changes)

    def as_recorded(self) -> RolloutState:
        """This state as a process reading the annotation back gets it: counts, and samples."""
        return replace(
            self,
            nodes=(),
            who=clip(self.who),
            failure=Failure(self.failure.node, clip(self.failure.reason)) if self.failure else None,
            skipped=tuple(replace(s, detail=clip(s.detail)) for s in self.skipped[:SAMPLE]),
            in_flight=self.in_flight[:SAMPLE],
            counts=Counts(
                self.node_count,
                self.updatable,
                self.skipped_count,
                self.counts.in_flight if self.counts else len(self.in_flight),
            ),
            version=STATE_VERSION,
        )

    def to_json(self) -> str:
        """The annotation's text: bounded whatever the fleet (see the module's docstring)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _LISTED}
        data["version"] = STATE_VERSION
        data["who"] = clip(self.who)
        data["failure"] = {"node": self.failure.node, "reason": clip(self.failure.reason)} if self.failure else None
        data["node_count"] = self.node_count
        data["updatable"] = self.updatable
        data["skipped_count"] = self.skipped_count
        data["skipped"] = [
            {"node": s.node, "reason": s.reason.value, "detail": clip(s.detail)} for s in self.skipped[:SAMPLE]
        ]
        data["in_flight_count"] = self.counts.in_flight if self.counts else len(self.in_flight)
        data["in_flight"] = list(self.in_flight[:SAMPLE])
        return camel_json(data)

    @classmethod
    def from_json(cls, text: str, where: str) -> RolloutState:
        try:
            data = snake_fields(text, [*cls.__dataclass_fields__, *_COUNTED])
            counted = {key: data.pop(key) for key in _COUNTED if key in data}
            data.pop("counts", None)
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
            if "node_count" in counted:  # version 2: counts, and samples of the lists
                data["counts"] = Counts(
                    nodes=int(counted["node_count"]),
                    updatable=int(counted.get("updatable", counted["node_count"])),
                    skipped=int(counted.get("skipped_count", len(data["skipped"]))),
                    in_flight=int(counted.get("in_flight_count", len(data["in_flight"]))),
                )
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ClusterError(
                f"{where}: annotation {ROLLOUT_ANNOTATION} is not a dsroll rollout state ({exc})"
            ) from None


_LISTED = frozenset({"nodes", "skipped", "in_flight", "counts", "failure"})  # written as counts and samples
_COUNTED = ("node_count", "updatable", "skipped_count", "in_flight_count")


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
