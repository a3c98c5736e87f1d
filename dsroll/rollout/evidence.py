"""The health gate's eyes beyond the pod watch: a new pod's Events and a node without a new pod.

The cause of a stuck pod often lives only in its Events (the kubelet's ``Pulling image``,
``FailedMount``, a readiness probe's ``Unhealthy``), and the cause of *no* pod only in the
Node (a taint the DaemonSet controller will not place a pod over). Reading them on every
watch event would cost a request per event; ``health.look`` decides when a look is worth
it (a pod not Ready after a few seconds, no pod after a couple, a failure to name; at
most one look per pod or node every ten seconds) and this object does the reading: one
LIST of Events by ``involvedObject.uid``, one GET of the Node, and judges again with what
it found (``decide.judge`` with ``health.Clues``, whose wording is ``causes.py``'s).

Both reads are optional in effect: a refusal (RBAC without ``list events`` or ``get
nodes``) or any other error is said once and that kind of read stops for the step; the
gate then names the cause from the pod alone and waits ``readyTimeout`` where it could
have failed at once. While a node waits, each new cause a look finds is reported once
(event ``node-waiting``), so an operator facing a long ``readyTimeout`` sees why early.

What a look found is kept only while its node is in flight, and only the fields the gate
reads (``kept_event``, ``kept_node``): under a slow control plane nearly every new pod is
looked at, and whole Events and Nodes kept to the end cost ~20 KB of Python objects per
node replaced, most of dsroll's memory growth with the fleet (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from dsroll.errors import DsrollError
from dsroll.rollout.decide import InFlight, judge
from dsroll.rollout.health import Clues, Gate, Look, Outcome, Verdict, look
from dsroll.rollout.placement import Misfit, MisfitKind, misfit

if TYPE_CHECKING:
    from dsroll.rollout.reporter import Reporter


#: What ``causes`` reads of an Event (its time: ``causes._when``; its words: ``event_text``).
_EVENT_FIELDS = ("type", "reason", "message", "lastTimestamp", "eventTime", "firstTimestamp")


def kept_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Event as the gate reads it: kind, reason, message and when; not its managedFields,
    involvedObject and source."""
    kept = {key: event[key] for key in _EVENT_FIELDS if key in event}
    created = (event.get("metadata") or {}).get("creationTimestamp")
    if created:
        kept["metadata"] = {"creationTimestamp": created}
    return kept


def kept_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """The Node as ``placement.misfit`` reads it: name, labels and taints; not its images,
    addresses, conditions and managedFields."""
    meta = node.get("metadata") or {}
    kept_meta = {key: meta[key] for key in ("name", "labels") if key in meta}
    taints = (node.get("spec") or {}).get("taints")
    return {"metadata": kept_meta, "spec": {"taints": taints} if taints else {}}


class EventsApi(Protocol):
    def about(self, namespace: str, uid: str) -> list[dict[str, Any]]: ...


class NodesApi(Protocol):
    def get(self, name: str) -> dict[str, Any] | None: ...


@dataclass
class _Seen:
    """What the last look at one pod (or at one node without a pod) found, and when."""

    at: float
    events: list[dict[str, Any]] = field(default_factory=list)
    node: dict[str, Any] | None = None
    node_read: bool = False  # the node was read (and ``node`` None means there is none)


class Evidence:
    """Judges nodes in flight like ``decide.judge``, reading Events and Nodes when ``health.look`` says so."""

    def __init__(
        self, events: EventsApi | None, nodes: NodesApi | None, namespace: str, label: str, reporter: Reporter | None
    ) -> None:
        self.events = events
        self.nodes = nodes
        self.ns = namespace
        self.label = label
        self.reporter = reporter
        self._seen: dict[str, _Seen] = {}  # by pod uid, or "node/<name>" while there is no pod
        self._told: dict[str, str] = {}  # node → the last waiting cause reported

    def judge(
        self,
        node: str,
        track: InFlight,
        pod: Mapping[str, Any] | None,
        gate: Gate,
        now: float,
        template: Mapping[str, Any],
    ) -> tuple[InFlight, Verdict]:
        """``decide.judge`` for ``node``'s new pod, after reading what is due; the verdict's
        ``wake_at`` also wakes the caller for the next look."""
        key = f"node/{node}" if pod is None else str(pod["metadata"]["uid"])
        kept, verdict = judge(track, pod, gate, now, self._clues(node, key, template))
        kind, due = look(verdict, pod, started=track.started, now=now, last=self._last(key))
        if kind is not Look.NONE and self._read(kind, node, key, pod, now):
            clues = self._clues(node, key, template)
            kept, verdict = judge(track, pod, gate, now, clues)
            if verdict.outcome is Outcome.WAITING and (pod is not None or clues.misfit is not None):
                self._tell(node, verdict.message)  # a cause found (a node that fits only awaits the controller)
            kind, due = look(verdict, pod, started=track.started, now=now, last=self._last(key))
        if verdict.outcome is Outcome.WAITING and due is not None and due > now and self._can(pod):
            verdict = replace(verdict, wake_at=min(due, verdict.wake_at or due))
        if verdict.outcome is Outcome.HEALTHY:  # the node leaves the flight: what was seen of it is done
            self._seen.pop(key, None)
            self._seen.pop(f"node/{node}", None)
        return kept, verdict

    # --- reading ------------------------------------------------------------------------

    def _last(self, key: str) -> float | None:
        seen = self._seen.get(key)
        return seen.at if seen is not None else None

    def _can(self, pod: Mapping[str, Any] | None) -> bool:
        """Whether the kind of read a look at this node would make is still on."""
        return (self.nodes if pod is None else self.events) is not None

    def _read(self, kind: Look, node: str, key: str, pod: Mapping[str, Any] | None, now: float) -> bool:
        """One request; False (and that kind of read off for the step) when it failed."""
        try:
            if kind is Look.NODE:
                if self.nodes is None:
                    return False
                found = self.nodes.get(node)
                self._seen[key] = _Seen(now, node=kept_node(found) if found is not None else None, node_read=True)
            else:
                if self.events is None or pod is None:
                    return False
                events = self.events.about(self.ns, str(pod["metadata"]["uid"]))
                self._seen[key] = _Seen(now, events=[kept_event(e) for e in events])
        except DsrollError as exc:
            what = "get nodes" if kind is Look.NODE else f"list events in namespace {self.ns}"
            if kind is Look.NODE:
                self.nodes = None
            else:
                self.events = None
            self._say("warning", f"cannot {what} ({exc}): stuck pods are named from their status alone")
            return False
        return True

    def _clues(self, node: str, key: str, template: Mapping[str, Any]) -> Clues:
        seen = self._seen.get(key)
        if seen is None:
            return Clues(node=node)
        found = misfit(template, seen.node) if seen.node is not None else None
        if seen.node_read and seen.node is None:
            found = Misfit(MisfitKind.GONE, f"node {node} no longer exists", permanent=False)
        return Clues(node=node, events=tuple(seen.events), misfit=found)

    # --- telling ------------------------------------------------------------------------

    def _tell(self, node: str, message: str) -> None:
        if self._told.get(node) != message:
            self._told[node] = message
            self._say("node-waiting", message, node=node)

    def _say(self, event: str, message: str, **fields: Any) -> None:
        if self.reporter is not None:
            self.reporter.emit(event, self.label, message, **fields)
