"""One step's node replacement: bring nodes to the target revision within the budget.

Per node: delete the old pod, then judge the controller's new pod on that node by the
health gate. Never more than ``maxUnavailable`` nodes without a Ready pod at once (nodes
already unavailable count, and are replaced first since that costs nothing). Decisions are
taken from the informer's view of the pods after every event; progress is recorded through
the executor's ``record`` before pods are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dsroll.kube.protocols import PodsApi
from dsroll.plan import PodView, pods_by_node
from dsroll.rollout import revisions as revs
from dsroll.rollout.health import Gate, Outcome, assess, is_ready
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import NodeFailed, Stopped
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import Phase, RolloutState
from dsroll.rollout.watching import Informer

#: Records a state when due; answers (whether it was written, a pending pause/abort request).
Recorder = Callable[[RolloutState], tuple[bool, str | None]]


@dataclass
class _Track:
    started: float
    old_uid: str | None
    ready_since: float | None = None
    lost_ready: bool = False


class Replacement:
    def __init__(
        self, pods: PodsApi, namespace: str, label: str, gate: Gate, lease: Lease, reporter: Reporter, record: Recorder
    ) -> None:
        self.pods = pods
        self.ns = namespace
        self.label = label
        self.gate = gate
        self.lease = lease
        self.reporter = reporter
        self.record = record

    def run(
        self, daemonset: Mapping[str, Any], state: RolloutState, wanted: Sequence[str], step: int, steps: int
    ) -> RolloutState:
        """Bring every node in ``wanted`` to the target revision, Ready, within the budget."""
        target = state.target_revision
        uid = daemonset["metadata"]["uid"]
        budget = state.max_unavailable
        selector = revs.selector_string(daemonset["spec"]["selector"])
        tracking: dict[str, _Track] = {}
        stopping: str | None = None
        blocked = False
        pending: list[Future[bool]] = []
        cache: dict[tuple[str, str], PodView] = {}
        informer = Informer(self.pods.collection(self.ns, label_selector=selector))
        with informer, ThreadPoolExecutor(max_workers=8, thread_name_prefix="delete") as pool:
            seen = -1
            while True:
                self.lease.renew()
                self._check_deletes(pending)
                raw = [p for p in informer.snapshot() if revs.owned_by(p, uid)]
                views = {p["metadata"]["uid"]: _view(p, cache) for p in raw}
                by_uid = {p["metadata"]["uid"]: p for p in raw}
                on_node = pods_by_node(views.values())
                now = time.monotonic()
                wake = now + RENEW_EVERY
                for node, track in list(tracking.items()):
                    new = next(
                        (
                            v
                            for v in views.values()
                            if v.node == node and v.revision == target and v.uid != track.old_uid and not v.terminating
                        ),
                        None,
                    )
                    pod = by_uid[new.uid] if new else None
                    if pod is not None:
                        ready = is_ready(pod)
                        if ready and track.ready_since is None:
                            track.ready_since = now
                        elif not ready and track.ready_since is not None:
                            track.lost_ready = True
                    verdict = assess(
                        pod, gate=self.gate, started=track.started, ready_since=track.ready_since,
                        lost_ready=track.lost_ready, now=now,
                    )  # fmt: skip
                    if verdict.outcome is Outcome.FAILED:
                        raise NodeFailed(node, verdict.message)
                    if verdict.outcome is Outcome.HEALTHY:
                        del tracking[node]
                        self.reporter.emit(
                            "node-replaced",
                            self.label,
                            f"{node} updated ({now - track.started:.1f}s)",
                            node=node,
                            seconds=round(now - track.started, 2),
                        )
                    elif verdict.wake_at is not None:
                        wake = min(wake, verdict.wake_at)
                done = {n for n in state.nodes if _healthy(on_node.get(n), target) and n not in tracking}
                todo = [n for n in wanted if n not in done and n not in tracking]
                self.reporter.progress(
                    self.label, step=step, steps=steps, done=len(done), total=len(state.nodes),
                    in_flight=sorted(tracking),
                )  # fmt: skip
                if stopping and not tracking:
                    raise Stopped(stopping)
                if not todo and not tracking:
                    return state
                unavailable = {n for n in state.nodes if not _healthy(on_node.get(n), None)}
                busy = unavailable | set(tracking)
                slots = max(0, budget - len(busy))
                batch = [n for n in todo if n in unavailable] + [n for n in todo if n not in unavailable][:slots]
                if batch and not stopping:
                    rolling_back = state.phase is Phase.rolling_back  # keeps its phase and its cause
                    moved = state.moved(
                        Phase.rolling_back if rolling_back else Phase.progressing,
                        in_flight=tuple(sorted({*tracking, *batch})),
                        nodes_done=len(done),
                        failure=state.failure if rolling_back else None,
                    )
                    written, stopping = self.record(moved)
                    state = moved if written else state
                    if stopping:
                        continue
                    olds = {n: _old_pod(on_node.get(n), target) for n in batch}
                    self._delete([pod for pod in olds.values() if pod is not None], pool, pending)
                    for node, old in olds.items():
                        tracking[node] = _Track(started=time.monotonic(), old_uid=old.uid if old else None)
                    continue
                if todo and not tracking and not batch and not blocked:
                    blocked = True  # said once: the operator must see why nothing moves
                    self.reporter.emit(
                        "blocked",
                        self.label,
                        f"waiting: {len(unavailable)} node(s) without a Ready pod "
                        f"({', '.join(sorted(unavailable)[:5])}) use the whole maxUnavailable budget of {budget}",
                    )
                seen = informer.wait(max(0.05, wake - time.monotonic()), seen)

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


def _view(pod: Mapping[str, Any], cache: dict[tuple[str, str], PodView]) -> PodView:
    """PodView.of, once per pod version: every watch event re-reads the whole snapshot."""
    meta = pod["metadata"]
    key = (meta["uid"], meta.get("resourceVersion", ""))
    if key not in cache:
        cache[key] = PodView.of(pod)
    return cache[key]


def _old_pod(pod: PodView | None, target: str) -> PodView | None:
    """The pod to delete on a node: a live one not on the target revision."""
    return pod if pod is not None and pod.revision != target and not pod.terminating else None


def _healthy(pod: PodView | None, revision: str | None) -> bool:
    """A live Ready pod (on ``revision``, when given)."""
    return pod is not None and pod.ready and not pod.terminating and (revision is None or pod.revision == revision)
