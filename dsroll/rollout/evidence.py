"""The health gate's eyes beyond the pod watch: a new pod's Events and a node without a new pod.

The cause of a stuck pod often lives only in its Events (the kubelet's ``Pulling image``,
``FailedMount``, a readiness probe's ``Unhealthy``), and the cause of *no* pod only in the
Node (a taint the DaemonSet controller will not place a pod over). Reading them on every
watch event would cost a request per event; ``health.look`` decides when a look is worth
it (a new pod not Ready a few seconds after it appeared, no pod a couple of seconds after
the old one went, later when this run's replacements take longer: ``pace``, the median of
the last ``PACE_OF``; a failure to name; at most one look per pod or node every ten
seconds) and this object does the
reading: one LIST of Events by ``involvedObject.uid``, one GET of the Node, and judges again with what
it found (``decide.judge`` with ``health.Clues``, whose wording is ``causes.py``'s).

Reads run in the background once the pod swap gives them a pool (``read_in``): a look
must never hold up the decisions of every other node in flight (with slow image pulls a
hundred pods in flight each want a look every ten seconds, and a request takes tens of
milliseconds on a busy API server). A finished read wakes the swap (its ``Bell``), which
judges that node again (``arrived``) with what was found. Without a pool a read is made
on the spot and the node judged again at once.

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

import statistics
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
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


#: ``pace`` is the median time of this many replacements, the last ones.
PACE_OF = 50

#: How a pool takes a read: ``ThreadPoolExecutor.submit``'s shape.
Submit = Callable[[Callable[[], "_Seen"]], "Future[_Seen]"]


@dataclass
class _Seen:
    """What the last look at one pod (or at one node without a pod) found, and when."""

    at: float
    events: list[dict[str, Any]] = field(default_factory=list)
    node: dict[str, Any] | None = None
    node_read: bool = False  # the node was read (and ``node`` None means there is none)


def _node_seen(nodes: NodesApi, node: str, now: float) -> _Seen:
    """One GET of the node: what the gate keeps of it (None: there is no such node)."""
    found = nodes.get(node)
    return _Seen(now, node=kept_node(found) if found is not None else None, node_read=True)


def _events_seen(events: EventsApi, namespace: str, uid: str, now: float) -> _Seen:
    """One LIST of the pod's Events: what the gate keeps of each."""
    return _Seen(now, events=[kept_event(e) for e in events.about(namespace, uid)])


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
        self._submit: Submit | None = None  # None: read on the spot
        self._wake: Callable[[], None] = lambda: None
        self._reading: dict[str, tuple[Look, Future[_Seen]]] = {}  # key → a read under way
        self._arrived: set[str] = set()  # nodes whose read finished, not yet judged again (any thread adds)
        self._lock = threading.Lock()
        self._took: deque[float] = deque(maxlen=PACE_OF)  # seconds, the last nodes replaced
        self.pace = 0.0  # their median: a node slower than its peers is looked at (``health.look``)

    def read_in(self, submit: Submit | None, wake: Callable[[], None] = lambda: None) -> None:
        """From now on reads go to ``submit`` (a pool) and ``wake`` is called, from the
        pool's thread, when one is done; ``None``: on the spot again (reads under way are dropped)."""
        self._submit, self._wake = submit, wake
        if submit is None:
            self._reading.clear()

    def arrived(self, in_flight: Collection[str]) -> set[str]:
        """The nodes of ``in_flight`` whose background read finished since the last call:
        judge them again (``judge`` takes in what was found)."""
        with self._lock:
            found, self._arrived = self._arrived, set()
        return found & set(in_flight) if found else set()

    def has_arrived(self) -> bool:
        with self._lock:
            return bool(self._arrived)

    def judge(
        self,
        node: str,
        track: InFlight,
        pod: Mapping[str, Any] | None,
        gate: Gate,
        now: float,
        template: Mapping[str, Any],
        *,
        old_gone: bool = True,
    ) -> tuple[InFlight, Verdict]:
        """``decide.judge`` for ``node``'s new pod with what was read of it, starting the
        read that is due; the verdict's ``wake_at`` also wakes the caller for the next look.
        ``old_gone``: the node's old pod is no longer there (``decide.judge``)."""
        key = f"node/{node}" if pod is None else str(pod["metadata"]["uid"])
        fresh = self._take_read(key)
        clues = self._clues(node, key, template)
        kept, verdict = judge(track, pod, gate, now, clues, old_gone=old_gone)
        if fresh:
            self._told_cause(node, pod, clues, verdict)
        kind, due = self._look(kept, verdict, pod, key, now)
        if kind is not Look.NONE and key not in self._reading:
            if self._submit is not None:
                self._start(kind, node, key, pod, now)
            elif self._read(kind, node, key, pod, now):
                clues = self._clues(node, key, template)
                kept, verdict = judge(track, pod, gate, now, clues, old_gone=old_gone)
                self._told_cause(node, pod, clues, verdict)
                kind, due = self._look(kept, verdict, pod, key, now)
        if verdict.outcome is Outcome.WAITING and due is not None and due > now and self._can(pod):
            verdict = replace(verdict, wake_at=min(due, verdict.wake_at or due))
        if verdict.outcome is Outcome.HEALTHY:  # the node leaves the flight: it sets the pace; what was seen is done
            self._took.append(now - track.started)
            self.pace = statistics.median(self._took)
            for done in (key, f"node/{node}"):
                self._seen.pop(done, None)
                self._reading.pop(done, None)
        return kept, verdict

    def _look(
        self, track: InFlight, verdict: Verdict, pod: Mapping[str, Any] | None, key: str, now: float
    ) -> tuple[Look, float | None]:
        return look(
            verdict,
            pod,
            started=track.started,
            now=now,
            last=self._last(key),
            pace=self.pace,
            free_at=track.free_at,
            pod_at=track.pod_at,
        )

    def _told_cause(self, node: str, pod: Mapping[str, Any] | None, clues: Clues, verdict: Verdict) -> None:
        if verdict.outcome is Outcome.WAITING and (pod is not None or clues.misfit is not None):
            self._tell(node, verdict.message)  # a cause found (a node that fits only awaits the controller)

    # --- reading ------------------------------------------------------------------------

    def _start(self, kind: Look, node: str, key: str, pod: Mapping[str, Any] | None, now: float) -> None:
        """A read in the background; until it is back, the last one found stands, and
        ``look`` counts from now (one look per pod or node every ten seconds still)."""
        assert self._submit is not None
        uid = str(pod["metadata"]["uid"]) if pod is not None else ""
        previous = self._seen.get(key)
        self._seen[key] = replace(previous, at=now) if previous is not None else _Seen(now)
        if kind is Look.NODE:
            nodes = self.nodes
            if nodes is None:
                return
            future = self._submit(lambda: _node_seen(nodes, node, now))
        else:
            events = self.events
            if events is None or pod is None:
                return
            future = self._submit(lambda: _events_seen(events, self.ns, uid, now))
        self._reading[key] = (kind, future)
        future.add_done_callback(lambda _: self._landed(node))

    def _landed(self, node: str) -> None:
        """The pool's thread: a read finished."""
        with self._lock:
            self._arrived.add(node)
        self._wake()

    def _take_read(self, key: str) -> bool:
        """A finished background read of ``key`` taken in (a failure turns that kind of
        read off, said once); whether there was one."""
        found = self._reading.get(key)
        if found is None or not found[1].done():
            return False
        del self._reading[key]
        kind, future = found
        try:
            self._seen[key] = future.result()
        except DsrollError as exc:
            self._refused(kind, exc)
            return False
        return True

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
                self._seen[key] = _node_seen(self.nodes, node, now)
            else:
                if self.events is None or pod is None:
                    return False
                self._seen[key] = _events_seen(self.events, self.ns, str(pod["metadata"]["uid"]), now)
        except DsrollError as exc:
            self._refused(kind, exc)
            return False
        return True

    def _refused(self, kind: Look, exc: DsrollError) -> None:
        if (self.nodes if kind is Look.NODE else self.events) is None:
            return  # said already (another read of that kind was under way)
        what = "get nodes" if kind is Look.NODE else f"list events in namespace {self.ns}"
        if kind is Look.NODE:
            self.nodes = None
        else:
            self.events = None
        self._say("warning", f"cannot {what} ({exc}): stuck pods are named from their status alone")

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
