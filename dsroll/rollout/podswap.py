"""One step's pod swap: bring nodes to the target revision within the budget.

Per node: delete the old pod, then judge the controller's new pod on that node by the
health gate. This module observes (the pod informer's change log, absorbed by a
``view.PodIndex``; the nodes, absorbed by a ``fleet.NodeIndex``; the DaemonSet, for a
second hand on its spec), asks ``decide.turn``, ``decide.next_batch`` and
``decide.judge`` (through ``evidence.Evidence``, which reads a stuck pod's Events, or the
Node of a node that got no new pod, when that is worth a request), performs (deletes)
and records (through the executor's ``record``, before pods are deleted); it chooses
nothing itself. Nodes deleted under a step are dropped, nodes that join are gated, nodes
not Ready or held on their turn are passed as ``unreadyNodes`` says. (Orphan
*replacement* — handing pods to a new DaemonSet — is
``handover.py``; this is the ordinary per-node update.)
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Collection, Container, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from dsroll.kube.protocols import PodsApi
from dsroll.kube.resources import FIELD_MANAGER
from dsroll.plan import PodView
from dsroll.rollout import revisions as revs
from dsroll.rollout.decide import Batch, InFlight, gather, next_batch
from dsroll.rollout.evidence import Evidence
from dsroll.rollout.fleet import NodeIndex, NodeTurn, Turn, turn
from dsroll.rollout.health import Gate, Outcome
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import NodeFailed, SecondHand, Stopped
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import Phase, RolloutState, SkippedNode
from dsroll.rollout.view import PodIndex, StepQueue, slim_pod
from dsroll.rollout.watching import Bell, Informer, wait_any
from dsroll.rollout.writers import second_hand

#: Records a state when due; answers (whether it was written, a pending pause/abort request).
Recorder = Callable[[RolloutState], tuple[bool, str | None]]


@dataclass
class Surroundings:
    """What a variant's pod swaps watch besides its pods, made once per variant run: its
    nodes (``fleet``, fed by ``nodes``) and its DaemonSet (``daemonset``), informers that
    share one condition (``changed``) so that one wait serves all."""

    changed: threading.Condition
    nodes: Informer
    daemonset: Informer
    fleet: NodeIndex = field(default_factory=NodeIndex)

    def absorb(self) -> set[str]:
        """Take in node changes; the nodes that changed."""
        self.fleet.absorb(self.nodes.changes())
        return self.fleet.take_touched()


class Timers:
    """When nodes are due a fresh look without an event: a node in flight at its verdict's
    ``wake_at`` (readyTimeout, minReadySeconds), a node waiting its turn at its timeout. A
    heap, so that an event costs O(log n) and not a pass over every node in flight."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._when: dict[str, float] = {}

    def at(self, when: float, node: str) -> None:
        if self._when.get(node) != when:  # a node waiting its turn asks for the same time at every look
            self._when[node] = when
            heapq.heappush(self._heap, (when, node))

    def next(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def due(self, now: float) -> bool:
        return bool(self._heap) and self._heap[0][0] <= now

    def pop_due(self, now: float, keep: Container[str]) -> set[str]:
        """The nodes due by ``now`` that are still in ``keep``; the others are forgotten."""
        found = set()
        while self._heap and self._heap[0][0] <= now:
            when, node = heapq.heappop(self._heap)
            if self._when.get(node) == when:
                del self._when[node]
            if node in keep:
                found.add(node)
        return found


class PodSwap:
    def __init__(
        self,
        pods: PodsApi,
        namespace: str,
        label: str,
        gate: Gate,
        lease: Lease,
        reporter: Reporter,
        record: Recorder,
        around: Surroundings,
        evidence: Evidence | None = None,
    ) -> None:
        self.pods = pods
        self.evidence = evidence or Evidence(None, None, namespace, label, None)  # none: the pod alone
        self.ns = namespace
        self.label = label
        self.gate = gate
        self.lease = lease
        self.reporter = reporter
        self.record = record
        self.around = around

    def run(
        self,
        daemonset: Mapping[str, Any],
        state: RolloutState,
        count: int | None,
        step: int,
        steps: int,
        planned: Collection[str] | None = None,
        unready_nodes: str | None = None,
    ) -> RolloutState:
        """Bring the step's nodes to the target revision, Ready, within the budget.

        The step is the first ``count`` nodes of the state's order that are not skipped
        (``None``: all of them); a node skipped on its turn is replaced in the step by the
        next one. ``planned``: the plan's pending nodes; a node started outside them, or
        ahead of its turn, is reported as off the plan. ``unready_nodes`` overrides the
        state's policy (a rollback skips unready nodes whatever it is)."""
        policy = unready_nodes or state.unready_nodes
        fleet = self.around.fleet
        index = PodIndex(daemonset["metadata"]["uid"], state.nodes, state.target_revision, state.restarted_at)
        flight: dict[str, InFlight] = {}
        skipped = {s.node: s for s in state.skipped}
        waiting_since: dict[str, float] = {}
        told: set[tuple[str, str]] = set()  # (node, what) said once
        stopping: str | None = None
        blocked = False
        pending: list[Future[bool]] = []
        selector = revs.selector_string(daemonset["spec"]["selector"])
        template = daemonset["spec"]["template"]
        pods = self.pods.collection(self.ns, label_selector=selector).seen()  # listed by the planning, or a step before
        informer = Informer(pods, log_changes=True, changed=self.around.changed, transform=slim_pod, keep_items=False)
        bell = Bell(self.around.changed)  # rung when a background read of the health gate's is back
        with informer, ThreadPoolExecutor(max_workers=8, thread_name_prefix="delete") as pool, self._reads(bell):
            index.absorb(informer.changes())
            self.around.absorb()
            watched: list[Informer | Bell] = [informer, self.around.nodes, self.around.daemonset, bell]
            queue = StepQueue(
                state.nodes, lambda n: n not in index.updated and n not in flight and n not in skipped, count, skipped
            )
            index.take_touched()
            seen: tuple[int, ...] | None = None
            noted = (state.nodes, state.skipped)
            timers = Timers()  # when a node in flight, or one waiting its turn, is due a fresh look
            force = True  # the first look, and the one after a batch started
            while True:
                self.lease.renew()
                self._check_deletes(pending)
                self._check_spec(daemonset)
                index.absorb(informer.changes())
                now = time.monotonic()
                moved = False  # anything a decision reads: the work below is skipped for events that change none
                for node in sorted(self.around.absorb()):
                    if node in index.scope and not fleet.exists(node):
                        state = self._gone(node, index, queue, flight, state, daemonset)
                        moved = True
                    elif node in index.scope and (view := fleet.get(node)) is not None:
                        if view.cordoned and (node, "cordoned") not in told:
                            told.add((node, "cordoned"))
                            message = (
                                f"{node} cordoned: its daemon pod stays (DaemonSet pods tolerate unschedulable)"
                                " and is replaced as any other"
                            )
                            self.reporter.emit("node-cordoned", self.label, message, node=node)
                        queue.offer(node)
                        moved = True
                for node in sorted(index.strangers):
                    if fleet.exists(node) and fleet.synced:
                        state = self._joined(node, index, queue, flight, state, now, daemonset)
                        timers.at(now, node)
                        moved = True
                touched = index.take_touched()
                for node in touched:
                    queue.offer(node)
                moved = moved or force or bool(touched) or timers.due(now) or self.evidence.has_arrived()
                force = False
                if not moved:
                    seen = self._wait(watched, now, timers, seen)
                    continue
                # Only the nodes in flight whose pods changed, or whose verdict can change with
                # the clock (a wake_at passed), are judged: O(changes) per event, not O(budget).
                arrived = self.evidence.arrived(flight.keys())  # a background read is back: judged with it
                for node in sorted({n for n in touched if n in flight} | timers.pop_due(now, flight) | arrived):
                    track = flight[node]
                    new = index.new_pod(node, track.old_uid)
                    gone = track.old_uid is None or not index.has(track.old_uid)
                    flight[node], verdict = self.evidence.judge(
                        node, track, new, self.gate, now, template, old_gone=gone
                    )
                    if verdict.outcome is Outcome.FAILED:
                        raise NodeFailed(node, verdict.message)
                    if verdict.outcome is Outcome.HEALTHY:
                        del flight[node]
                        queue.offer(node)
                        seconds = round(now - track.started, 2)
                        message = f"{node} updated ({now - track.started:.1f}s)"
                        self.reporter.emit("node-replaced", self.label, message, node=node, seconds=seconds)
                    elif verdict.wake_at is not None:
                        timers.at(verdict.wake_at, node)
                done = len(index.updated) - len(index.updated & flight.keys())
                self.reporter.progress(
                    self.label, step=step, steps=steps, done=done, total=state.updatable, in_flight=flight.keys()
                )
                if stopping and not flight:
                    raise Stopped(stopping)
                if not flight and queue.empty():
                    return replace(state, skipped=tuple(skipped.values()))

                def node_turn(node: str, now: float = now) -> NodeTurn:
                    waited = now - waiting_since.get(node, now)
                    return turn(fleet.get(node), policy, waited=waited, timeout=self.gate.ready_timeout)

                # Nodes without a Ready pod are mostly the ones in flight: set operations (in C)
                # leave the few others to look at one by one, so an event costs O(1) Python work.
                idle = index.unavailable - flight.keys()
                free = [  # the pod is down, not its node: replacing it costs nothing (a node down waits its turn)
                    n for n in idle if queue.in_window(n) and queue.eligible(n) and not fleet.on_its_own(n)
                ]
                batch = next_batch(
                    budget=state.max_unavailable,
                    unavailable=(index.unavailable & flight.keys())
                    | {n for n in idle if not (n in skipped or fleet.on_its_own(n))},
                    in_flight=flight,
                    todo_unavailable=free,
                    first_todo=queue.first,
                    position=queue.position,
                    planned=planned,
                    turn=node_turn,
                )
                for node, verdict in batch.passed:
                    if verdict.action is Turn.FAIL:
                        raise NodeFailed(node, verdict.detail)
                    if verdict.action is Turn.SKIP and verdict.reason is not None:
                        skipped[node] = SkippedNode(node, verdict.reason, verdict.detail)
                        queue.leave_out(node)
                        waiting_since.pop(node, None)
                        message = f"{node} skipped: {verdict.reason.value} ({verdict.detail}); a later rollout does it"
                        self.reporter.emit(
                            "node-skipped", self.label, message, daemonset=daemonset, node=node,
                            reason=verdict.reason.value,
                        )  # fmt: skip
                    elif verdict.action is Turn.WAIT:
                        since = waiting_since.setdefault(node, now)
                        timers.at(since + self.gate.ready_timeout, node)
                        if (node, "waiting") not in told:
                            told.add((node, "waiting"))
                            self.reporter.emit("node-waiting", self.label, f"{node}: {verdict.detail}", node=node)
                if batch.passed:
                    state = replace(state, skipped=tuple(skipped.values()))
                if (state.nodes is not noted[0] or state.skipped is not noted[1]) and not batch.nodes:
                    # a node joined, left or was skipped: recorded at once (a rollback must know)
                    entered = state.entering(state.phase, in_flight=tuple(sorted(flight)), nodes_done=done)
                    _, request = self.record(entered)
                    state, stopping = entered, stopping or request
                    force = force or request is not None
                noted = (state.nodes, state.skipped)
                if batch.nodes and not stopping:
                    rolling_back = state.phase is Phase.rolling_back  # keeps its phase and its cause
                    entered = state.entering(
                        Phase.rolling_back if rolling_back else Phase.progressing,
                        in_flight=tuple(sorted({*flight, *batch.nodes})),
                        nodes_done=done,
                        failure=state.failure if rolling_back else None,
                    )
                    _, stopping = self.record(entered)
                    state = entered
                    noted = (state.nodes, state.skipped)
                    force = True
                    if stopping:
                        continue
                    self._check_spec(daemonset)  # as late as can be: a pod deleted now comes back on the spec
                    self._off_plan(batch)
                    olds = {n: index.old_pod(n) for n in batch.nodes}
                    self._delete([pod for pod in olds.values() if pod is not None], pool, pending)
                    started = time.monotonic()
                    for node, old in olds.items():
                        waiting_since.pop(node, None)
                        flight[node] = InFlight(started=started, old_uid=old.uid if old else None)
                        timers.at(started, node)  # judged at once: a node with no old pod may be done already
                    continue
                if batch.blocked and not blocked:
                    blocked = True  # said once: the operator must see why nothing moves
                    unavailable = sorted(index.unavailable - set(skipped))
                    message = (
                        f"waiting: {len(unavailable)} node(s) without a Ready pod ({', '.join(unavailable[:5])}) "
                        f"use the whole maxUnavailable budget of {state.max_unavailable}"
                    )
                    self.reporter.emit("blocked", self.label, message)
                seen = self._wait(watched, now, timers, seen)

    def _wait(
        self, watched: list[Informer | Bell], looked: float, timers: Timers, seen: tuple[int, ...] | None
    ) -> tuple[int, ...]:
        """Until something watched changes, a timer is due or the lease wants renewing; not
        before ``decide.gather`` has passed since the look that began at ``looked``."""
        time.sleep(max(0.0, looked + gather(self.evidence.pace) - time.monotonic()))
        return wait_any(watched, max(0.05, min(looked + RENEW_EVERY, timers.next()) - time.monotonic()), seen)

    # --- what moves under a step ----------------------------------------------------------

    @contextlib.contextmanager
    def _reads(self, bell: Bell) -> Iterator[None]:
        """The health gate's reads in a pool of their own for the swap, one at a time: a
        LIST of Events by ``involvedObject.uid`` is not indexed, so the API server scans
        every Event of the namespace for it (0.5-0.7 s with 10,000 Events, measured); one
        under way at the end is not waited for (its answer is no longer needed)."""
        reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        self.evidence.read_in(reads.submit, bell.ring)
        try:
            yield
        finally:
            self.evidence.read_in(None)
            reads.shutdown(wait=False, cancel_futures=True)

    def _check_spec(self, planned: Mapping[str, Any]) -> None:
        """Stop before deleting another pod if someone else changed the DaemonSet's spec."""
        found = self.around.daemonset.snapshot()
        if not found:
            raise SecondHand("the DaemonSet was deleted by someone else")
        reason = second_hand(found[0], planned, FIELD_MANAGER)
        if reason is not None:
            raise SecondHand(reason)

    def _gone(
        self,
        node: str,
        index: PodIndex,
        queue: StepQueue,
        flight: dict[str, InFlight],
        state: RolloutState,
        daemonset: Mapping[str, Any],
    ) -> RolloutState:
        """A node deleted under the rollout: dropped, not waited for."""
        index.drop_node(node)
        queue.leave_out(node)
        was = " (it was being replaced)" if flight.pop(node, None) is not None else ""
        message = f"{node} deleted from the cluster: dropped{was}"
        self.reporter.emit("node-gone", self.label, message, daemonset=daemonset, node=node)
        return replace(state, nodes=tuple(n for n in state.nodes if n != node))

    def _joined(
        self,
        node: str,
        index: PodIndex,
        queue: StepQueue,
        flight: dict[str, InFlight],
        state: RolloutState,
        now: float,
        daemonset: Mapping[str, Any],
    ) -> RolloutState:
        """A node that joined (or came into the class) under the rollout: its pod is
        health-gated like any other, counted in this step, and part of any rollback."""
        index.add_node(node)
        queue.add(node)
        pod = index.pod_on(node)
        if pod is not None and pod.revision == index.target and not pod.terminating:
            flight[node] = InFlight(started=now, old_uid=None)
            what = "its new pod is health-gated"
        else:
            what = "its pod is replaced in this step"
        message = f"{node} joined the variant: {what}"
        self.reporter.emit("node-joined", self.label, message, daemonset=daemonset, node=node)
        return replace(state, nodes=(*state.nodes, node))

    def _off_plan(self, batch: Batch) -> None:
        """Say where the live choice departs from the plan's forecast (the run does not hide it)."""
        if batch.ahead:
            message = f"{', '.join(batch.ahead)} started ahead of the plan's order: already without a Ready pod"
            self.reporter.emit("off-plan", self.label, message, nodes=list(batch.ahead), why="unready")
        if batch.unplanned:
            message = f"{', '.join(batch.unplanned)} not in the plan's pending nodes: joined or changed since"
            self.reporter.emit("off-plan", self.label, message, nodes=list(batch.unplanned), why="unplanned")

    def _delete(self, pods: Sequence[PodView], pool: ThreadPoolExecutor, pending: list[Future[bool]]) -> None:
        """Delete old pods without waiting for the answers: the loop goes on watching, and
        ``_check_deletes`` raises the first delete that failed."""
        for pod in pods:
            pending.append(pool.submit(self.pods.delete, self.ns, pod.name, pod.uid))

    @staticmethod
    def _check_deletes(pending: list[Future[bool]]) -> None:
        for future in [f for f in pending if f.done()]:
            pending.remove(future)
            future.result()  # a refused delete (RBAC, an unreachable server) stops the rollout here
