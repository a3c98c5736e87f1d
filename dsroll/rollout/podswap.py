"""One step's pod swap: bring nodes to the target revision within the budget.

Per node: delete the old pod, then judge the controller's new pod on that node by the
health gate. This module observes (the informer's change log, absorbed by a
``view.PodIndex``), asks ``decide.next_batch`` and ``decide.judge`` (through
``evidence.Evidence``, which reads a stuck pod's Events, or the Node of a node that got
no new pod, when that is worth a request), performs (deletes)
and records (through the executor's ``record``, before pods are deleted); it chooses
nothing itself. (Orphan *replacement* — handing pods to a new DaemonSet — is
``handover.py``; this is the ordinary per-node update.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dsroll.kube.protocols import PodsApi
from dsroll.plan import PodView
from dsroll.rollout import revisions as revs
from dsroll.rollout.decide import Batch, InFlight, next_batch
from dsroll.rollout.evidence import Evidence
from dsroll.rollout.health import Gate, Outcome
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import NodeFailed, Stopped
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import Phase, RolloutState
from dsroll.rollout.view import PodIndex, StepQueue
from dsroll.rollout.watching import Informer

#: Records a state when due; answers (whether it was written, a pending pause/abort request).
Recorder = Callable[[RolloutState], tuple[bool, str | None]]


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

    def run(
        self,
        daemonset: Mapping[str, Any],
        state: RolloutState,
        wanted: Sequence[str],
        step: int,
        steps: int,
        planned: Collection[str] | None = None,
    ) -> RolloutState:
        """Bring every node in ``wanted`` to the target revision, Ready, within the budget.

        ``planned``: the plan's pending nodes; a node started outside them, or ahead of
        its turn, is reported as off the plan."""
        index = PodIndex(daemonset["metadata"]["uid"], state.nodes, state.target_revision)
        flight: dict[str, InFlight] = {}
        wanted_set = set(wanted)
        stopping: str | None = None
        blocked = False
        pending: list[Future[bool]] = []
        selector = revs.selector_string(daemonset["spec"]["selector"])
        template = daemonset["spec"]["template"]
        informer = Informer(self.pods.collection(self.ns, label_selector=selector), log_changes=True)
        with informer, ThreadPoolExecutor(max_workers=8, thread_name_prefix="delete") as pool:
            index.absorb(informer.changes())
            index.take_touched()
            queue = StepQueue(wanted, lambda n: n not in index.updated and n not in flight)
            seen = -1
            while True:
                self.lease.renew()
                self._check_deletes(pending)
                index.absorb(informer.changes())
                for node in index.take_touched():
                    queue.offer(node)
                now = time.monotonic()
                wake = now + RENEW_EVERY
                for node, track in list(flight.items()):
                    new = index.new_pod(node, track.old_uid)
                    flight[node], verdict = self.evidence.judge(node, track, new, self.gate, now, template)
                    if verdict.outcome is Outcome.FAILED:
                        raise NodeFailed(node, verdict.message)
                    if verdict.outcome is Outcome.HEALTHY:
                        del flight[node]
                        queue.offer(node)
                        seconds = round(now - track.started, 2)
                        message = f"{node} updated ({now - track.started:.1f}s)"
                        self.reporter.emit("node-replaced", self.label, message, node=node, seconds=seconds)
                    elif verdict.wake_at is not None:
                        wake = min(wake, verdict.wake_at)
                done = len(index.updated) - sum(1 for n in flight if n in index.updated)
                self.reporter.progress(
                    self.label, step=step, steps=steps, done=done, total=len(state.nodes), in_flight=sorted(flight)
                )
                if stopping and not flight:
                    raise Stopped(stopping)
                if not flight and queue.empty():
                    return state
                batch = next_batch(
                    budget=state.max_unavailable,
                    unavailable=index.unavailable,
                    in_flight=flight,
                    todo_unavailable=[n for n in index.unavailable if n in wanted_set and queue.eligible(n)],
                    first_todo=queue.first,
                    position=queue.position,
                    planned=planned,
                )
                if batch.nodes and not stopping:
                    rolling_back = state.phase is Phase.rolling_back  # keeps its phase and its cause
                    entered = state.entering(
                        Phase.rolling_back if rolling_back else Phase.progressing,
                        in_flight=tuple(sorted({*flight, *batch.nodes})),
                        nodes_done=done,
                        failure=state.failure if rolling_back else None,
                    )
                    written, stopping = self.record(entered)
                    state = entered if written else state
                    if stopping:
                        continue
                    self._off_plan(batch)
                    olds = {n: index.old_pod(n) for n in batch.nodes}
                    self._delete([pod for pod in olds.values() if pod is not None], pool, pending)
                    for node, old in olds.items():
                        flight[node] = InFlight(started=time.monotonic(), old_uid=old.uid if old else None)
                    continue
                if batch.blocked and not blocked:
                    blocked = True  # said once: the operator must see why nothing moves
                    unavailable = sorted(index.unavailable)
                    message = (
                        f"waiting: {len(unavailable)} node(s) without a Ready pod ({', '.join(unavailable[:5])}) "
                        f"use the whole maxUnavailable budget of {state.max_unavailable}"
                    )
                    self.reporter.emit("blocked", self.label, message)
                seen = informer.wait(max(0.05, wake - time.monotonic()), seen)

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
