"""Carries out one variant's plan: apply, update nodes step by step, gate, record.

The executor decides nothing: what the plan holds comes from ``plan.py``, and every
choice on the way (start afresh or resume, pause, the batches, what a failure leads to)
from ``decide.py``. It observes, asks, performs and records. It is level-triggered:
each choice is taken from a fresh view of the DaemonSet, its revisions and its pods, so a
killed process resumes by running again. The state annotation is written before each
transition is acted on.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dsroll.config import parse_duration
from dsroll.errors import ClusterError
from dsroll.kube import Kube
from dsroll.labels import REQUEST_ANNOTATION, ROLLOUT_ANNOTATION
from dsroll.plan import VariantPlan
from dsroll.rollout import decide
from dsroll.rollout import revisions as revs
from dsroll.rollout.decide import AfterFailure, Pause, Start
from dsroll.rollout.evidence import Evidence
from dsroll.rollout.health import Gate
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import NodeFailed, Result, RunOptions, Stopped, Target, VariantResult
from dsroll.rollout.podswap import PodSwap
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import Failure, Phase, RolloutState, RunKind, read_request, read_state
from dsroll.rollout.watching import Informer

ON_DELETE = {"type": "OnDelete"}


class VariantRollout:
    def __init__(
        self, kube: Kube, plan: VariantPlan, options: RunOptions, reporter: Reporter, target: Target | None = None
    ) -> None:
        self.kube = kube
        self.plan = plan
        self.options = options
        self.reporter = reporter
        self.target = target
        self.ns, self.name = plan.namespace, plan.name
        self.label = f"{self.ns}/{self.name}"
        self.lease = Lease(kube.leases, self.ns, self.name)
        self.ds: dict[str, Any] = {}
        self.state: RolloutState | None = None
        self._written_at = 0.0
        self.gate = Gate(parse_duration(plan.policy.ready_timeout), float(plan.policy.min_ready_seconds))

    # --- entry ---------------------------------------------------------------------

    def run(self) -> VariantResult:
        self.lease.acquire()
        try:
            return self._run()
        finally:
            self.lease.release()

    def _run(self) -> VariantResult:
        def start(recorded: RolloutState | None) -> Start:
            return decide.start(
                self.plan.action, recorded, retargeted=self.target is not None, approve=self.options.approve
            )

        first = start(None)  # these three need no look at a recorded state
        if first is Start.CREATE:
            return self._create()
        if first is Start.IN_PLACE:
            self.ds = self.kube.daemonsets.apply(self._manifest(), dry_run=False)
            self._record_commit()
            self.reporter.emit("complete", self.label, "applied in place (no pod restarts)", daemonset=self.ds)
            return self._result(Result.COMPLETE)
        if first is Start.PRUNE:
            self.kube.daemonsets.delete(self.ns, self.name)
            self.reporter.emit("pruned", self.label, "deleted: no longer rendered")
            return self._result(Result.COMPLETE)
        self.ds = self._get()
        recorded = read_state(self.ds)
        then = start(recorded)
        unfinished = recorded if recorded is not None and not recorded.finished else None
        if then is Start.CONTINUE_ROLLBACK and unfinished is not None:
            return self._rollback(unfinished)
        if then is Start.STAY_PAUSED and unfinished is not None:
            failure = unfinished.failure
            by = f" ({failure.node}: {failure.reason})" if failure else ""
            self.reporter.emit("paused", self.label, f"rollout is paused{by}; `dsroll resume` continues")
            return self._result(Result.PAUSED, unfinished)
        if then is Start.RESUME and unfinished is not None:
            return self._steps(self._resume(unfinished))
        return self._steps(self._begin(unfinished))

    # --- cluster reads and writes ------------------------------------------------------

    def _get(self) -> dict[str, Any]:
        ds = self.kube.daemonsets.get(self.ns, self.name)
        if ds is None:
            raise ClusterError(f"daemonset {self.label} disappeared during the rollout")
        return ds

    def _write(self, state: RolloutState, *, clear_request: bool = False) -> RolloutState:
        """Record the state before acting on it; the answer carries any pause/abort request."""
        annotations: dict[str, str | None] = {ROLLOUT_ANNOTATION: state.to_json()}
        if clear_request:
            annotations[REQUEST_ANNOTATION] = None
        self.ds = self.kube.daemonsets.annotate(self.ns, self.name, annotations)
        self.state = state
        self._written_at = time.monotonic()
        return state

    def _record(self, state: RolloutState) -> tuple[bool, str | None]:
        """For a step's pod swap: write ``state`` when due; (written, a pause/abort request)."""
        if not decide.record_due(self.state, state, time.monotonic() - self._written_at):
            return False, None
        self._write(state)
        return True, read_request(self.ds)

    def _swap(self, state: RolloutState, wanted: Sequence[str], step: int, steps: int, planned: bool) -> RolloutState:
        evidence = Evidence(self.kube.events, self.kube.nodes, self.ns, self.label, self.reporter)
        swap = PodSwap(
            self.kube.pods, self.ns, self.label, self.gate, self.lease, self.reporter, self._record, evidence=evidence
        )
        return swap.run(self.ds, state, wanted, step, steps, set(self.plan.pending) if planned else None)

    def _manifest(self, state: RolloutState | None = None) -> dict[str, Any]:
        manifest = copy.deepcopy(dict(self.target.manifest if self.target and self.target.manifest else {}))
        manifest = manifest or copy.deepcopy(dict(self.plan.manifest or {}))
        if state is not None:
            manifest["spec"]["updateStrategy"] = dict(ON_DELETE)
            manifest["metadata"].setdefault("annotations", {})[ROLLOUT_ANNOTATION] = state.to_json()
        return manifest

    def _watch_daemonset(self) -> Informer:
        return Informer(self.kube.daemonsets.collection(self.ns, field_selector=f"metadata.name={self.name}"))

    def _wait_observed(self, timeout: float = 60) -> None:
        """Until the controller has seen the latest spec (and so recorded its revision)."""
        with self._watch_daemonset() as watch:
            deadline, seen = time.monotonic() + timeout, -1
            while time.monotonic() < deadline:
                for ds in watch.snapshot():
                    if (ds.get("status") or {}).get("observedGeneration", 0) >= ds["metadata"]["generation"]:
                        self.ds = ds
                        return
                seen = watch.wait(deadline - time.monotonic(), seen)
        raise ClusterError(f"the DaemonSet controller did not observe {self.label} within {timeout:.0f}s")

    def _current_revision(self) -> revs.Revision:
        current = revs.current(revs.revisions(self.kube, self.ds))
        if current is None:
            raise ClusterError(f"{self.label} has no ControllerRevision")
        return current

    def _record_commit(self) -> None:
        if self.options.commit and self.options.operation is RunKind.rollout:
            self._wait_observed()
            revs.record_commit(self.kube, self.ns, self._current_revision(), self.options.commit)

    # --- create --------------------------------------------------------------------

    def _create(self) -> VariantResult:
        self.ds = self.kube.daemonsets.apply(self._manifest(), dry_run=False)
        self.reporter.emit("start", self.label, "created; waiting for its pods", daemonset=self.ds)
        deadline, seen = time.monotonic() + self.gate.ready_timeout, -1
        with self._watch_daemonset() as watch:
            while True:
                ds = next(iter(watch.snapshot()), self.ds)
                done, ready, desired = decide.created(ds)
                self.reporter.progress(self.label, step=1, steps=1, done=ready, total=desired, in_flight=[])
                if done:
                    self.ds = ds
                    break
                if time.monotonic() >= deadline:
                    message = f"only {ready}/{desired} pods Ready within readyTimeout"
                    self.reporter.emit("failed", self.label, message, daemonset=ds)
                    return self._result(Result.FAILED, message=message)
                self.lease.renew()
                seen = watch.wait(min(RENEW_EVERY, deadline - time.monotonic()), seen)
        self._record_commit()
        self.reporter.emit("complete", self.label, f"created: {desired} pod(s) Ready", daemonset=self.ds)
        return self._result(Result.COMPLETE, total=desired, updated=desired)

    # --- the staged update -----------------------------------------------------------

    def _resume(self, recorded: RolloutState) -> RolloutState:
        """Continue the recorded rollout on the plan's nodes; a target revision not known
        yet (killed before the controller made it) is waited for."""
        state = decide.resumed_state(
            recorded,
            self.plan.nodes,
            steps=self.options.steps,
            partition=self.plan.partition,
            approve=self.options.approve,
            who=self.options.who,
        )
        self._write(state, clear_request=True)
        if not state.target_revision:
            self._wait_observed()
            state = self._write(replace(state, target_revision=self._current_revision().hash))
        return state

    def _begin(self, unfinished: RolloutState | None) -> RolloutState:
        """Apply the target (if any) with OnDelete and the new state in one request."""
        current = self._current_revision()
        recorded = read_state(self.ds)  # a variant an orphan replacement created keeps the way back
        state = decide.fresh_state(
            self.plan.policy,
            self.plan.nodes,
            kind=self.options.operation,
            who=self.options.who,
            commit=self.options.commit,
            steps=self.options.steps,
            previous=unfinished.previous_revision if unfinished else current.hash,
            original_strategy=(
                unfinished.original_strategy if unfinished else (self.ds.get("spec") or {}).get("updateStrategy")
            ),
            partition=self.plan.partition,
            replacement=recorded.replacement if recorded else None,
        )
        what = f"revision {self.target.revision.number}" if self.target and self.target.revision else "the render"
        message = f"{self.options.operation} to {what}: {len(state.nodes)} node(s), steps {list(state.steps)}"
        self.reporter.emit("start", self.label, message)
        self._apply_target(state)
        self._wait_observed()
        target = self._current_revision()
        if self.options.operation is RunKind.rollout:
            revs.record_commit(self.kube, self.ns, target, self.options.commit)
        state = self._write(replace(state, target_revision=target.hash), clear_request=True)
        self.reporter.emit("start", self.label, f"target revision {target.number} ({target.hash})", daemonset=self.ds)
        return state

    def _apply_target(self, state: RolloutState) -> None:
        if self.target is not None and self.target.revision is not None:
            self._restore_template(self.target.revision.template, state)
        else:
            self.ds = self.kube.daemonsets.apply(self._manifest(state), dry_run=False)
        self.state = state

    def _restore_template(self, template: Mapping[str, Any], state: RolloutState) -> None:
        self.ds = self.kube.daemonsets.set_strategy(
            self.ns, self.name, template=template, update_strategy=ON_DELETE,
            annotations={ROLLOUT_ANNOTATION: state.to_json()},
        )  # fmt: skip

    def _steps(self, state: RolloutState) -> VariantResult:
        """Carry out the state's steps; each step's nodes are the first of the plan's order."""
        counts = decide.step_counts(state)
        planned = tuple(s.count for s in self.plan.steps)
        if planned and planned != counts:
            message = f"carrying out steps {list(counts)} recorded in the cluster; the plan forecast {list(planned)}"
            self.reporter.emit("off-plan", self.label, message, steps=list(counts), planned=list(planned))
        for number in range(decide.first_step(state, counts), len(counts)):
            stop = self._pause_before(state, number, len(counts))
            if stop is not None:
                return stop
            state = replace(self.state or state, step=number)
            try:
                state = self._swap(state, state.nodes[: counts[number]], number + 1, len(counts), bool(planned))
            except NodeFailed as failed:
                return self._on_failure(failed)
            except Stopped as stopped:
                return self._honour(stopped.action)
            state = replace(self.state or state, nodes_done=max(state.nodes_done, counts[number]))
            self.reporter.emit(
                "step-complete",
                self.label,
                f"step {number + 1}/{len(counts)} complete: {counts[number]}/{len(state.nodes)} node(s) updated",
                daemonset=self.ds,
                step=number + 1,
                nodes=counts[number],
            )
        cap = state.cap
        if cap < len(state.nodes):
            state = self._write(state.entering(Phase.partitioned, in_flight=()))
            message = f"partition reached: {cap}/{len(state.nodes)} node(s) on the new revision, {state.partition} kept"
            self.reporter.emit("partitioned", self.label, message, daemonset=self.ds)
            return self._result(Result.PARTITIONED, state, updated=cap)
        return self._finish(state, Phase.complete)

    def _pause_before(self, state: RolloutState, number: int, steps: int) -> VariantResult | None:
        pause, seconds = decide.between_steps(state, number, yes=self.options.yes, approve=self.options.approve)
        if pause is Pause.APPROVED:
            self.options = replace(self.options, approve=False)  # one approval per resume
        if pause is Pause.APPROVAL:
            state = self._write(state.entering(Phase.awaiting_approval, step=number, in_flight=()))
            question = f"{self.label}: step {number}/{steps} done. Continue with step {number + 1}/{steps}?"
            if (
                self.options.interactive
                and self.options.ask is not None
                and self.reporter.ask(question, self.options.ask)
            ):
                return None
            message = f"paused after step {number}/{steps}, waiting for approval: `dsroll resume` continues"
            self.reporter.emit("awaiting-approval", self.label, message, daemonset=self.ds)
            return self._result(Result.AWAITING_APPROVAL, state)
        if pause is Pause.WAIT:
            state = self._write(state.entering(Phase.pausing, step=number, in_flight=()))
            if (request := read_request(self.ds)) is not None:
                return self._honour(request)
            self.reporter.emit("pause", self.label, f"pausing {state.pause} before step {number + 1}/{steps}")
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 5.0))
                self.lease.renew()
        return None

    # --- failure, rollback, the end ----------------------------------------------------

    def _on_failure(self, failed: NodeFailed) -> VariantResult:
        state = self.state
        assert state is not None
        failure = Failure(failed.node, failed.reason)
        self.reporter.emit(
            "node-failed", self.label, f"{failed.node} failed the health gate: {failed.reason}", daemonset=self.ds
        )
        then = decide.after_failure(state)
        if then is AfterFailure.ROLL_BACK:
            return self._rollback(state.entering(Phase.rolling_back, failure=failure))
        if then is AfterFailure.RESTORE:
            # No revision to go back to: the old objects come back from the backup (handover.py).
            state = self._write(state.entering(Phase.rolling_back, failure=failure, in_flight=()))
            message = f"restoring the objects it replaced from backup {state.replacement}"
            self.reporter.emit("rollback", self.label, message, daemonset=self.ds)
            return self._result(Result.FAILED, state, message=f"{failed.node}: {failed.reason}")
        phase = Phase.paused if then is AfterFailure.PAUSE else Phase.aborted
        state = self._write(state.entering(phase, failure=failure, in_flight=()))
        hint = "fix and `dsroll resume`" if phase is Phase.paused else "left as it is (`dsroll rollback` goes back)"
        self.reporter.emit(phase.value, self.label, f"{phase.value} after a failure: {hint}", daemonset=self.ds)
        return self._result(Result.FAILED, state, message=f"{failed.node}: {failed.reason}")

    def _rollback(self, state: RolloutState) -> VariantResult:
        """Put the previous template back and replace every node not on it."""
        self.ds = self._get()
        history = revs.revisions(self.kube, self.ds)
        previous = next((r for r in history if r.hash == state.previous_revision), None)
        if previous is None:
            state = self._write(state.entering(Phase.failed, in_flight=()))
            message = f"cannot roll back: revision {state.previous_revision} is gone"
            self.reporter.emit("failed", self.label, message, daemonset=self.ds)
            return self._result(Result.FAILED, state, message=message)
        state = state.entering(Phase.rolling_back, in_flight=())
        self.reporter.emit(
            "rollback", self.label, f"rolling back to revision {previous.number} ({previous.hash})", daemonset=self.ds
        )
        if revs.current(history) != previous or state.target_revision != previous.hash:
            self._restore_template(previous.template, state)
            self._wait_observed()
        state = self._write(replace(state, target_revision=self._current_revision().hash))
        try:
            state = self._swap(state, state.nodes, 1, 1, planned=False)
        except (NodeFailed, Stopped) as exc:
            state = self._write(state.entering(Phase.failed))
            message = f"rollback stopped: {exc}"
            self.reporter.emit("failed", self.label, message, daemonset=self.ds)
            return self._result(Result.FAILED, state, message=message)
        return self._finish(state, Phase.rolled_back)

    def _finish(self, state: RolloutState, phase: Phase) -> VariantResult:
        manifest = self.plan.manifest or {}
        wanted = (manifest.get("spec") or {}).get("updateStrategy") if phase is Phase.complete else None
        strategy = wanted or state.original_strategy or {"type": "RollingUpdate"}
        state = state.entering(phase, in_flight=(), nodes_done=len(state.nodes))
        self.ds = self.kube.daemonsets.set_strategy(
            self.ns, self.name, update_strategy=strategy, annotations={ROLLOUT_ANNOTATION: state.to_json()}
        )
        self.state = state
        if phase is Phase.rolled_back:
            failure = state.failure
            message = f"rolled back: every node on revision {state.target_revision}"
            self.reporter.emit("rolled-back", self.label, message, daemonset=self.ds)
            reason = f"{failure.node}: {failure.reason}" if failure else "rolled back"
            return self._result(Result.ROLLED_BACK, state, message=reason)
        message = f"{state.operation} complete: {len(state.nodes)} node(s) on revision {state.target_revision}"
        self.reporter.emit("complete", self.label, message, daemonset=self.ds)
        return self._result(Result.COMPLETE, state)

    def _honour(self, action: str) -> VariantResult:
        state = self.state
        assert state is not None
        phase = Phase.paused if action == "pause" else Phase.aborted
        state = self._write(state.entering(phase, in_flight=()), clear_request=True)
        self.reporter.emit(phase.value, self.label, f"{phase.value} on request", daemonset=self.ds)
        return self._result(Result.PAUSED if phase is Phase.paused else Result.ABORTED, state)

    def interrupted(self, cause: str) -> VariantResult:
        """How far this variant got when the run was cut off (its state is in the cluster)."""
        return self._result(Result.INTERRUPTED, message=cause)

    def _result(
        self,
        result: Result,
        state: RolloutState | None = None,
        *,
        message: str = "",
        total: int | None = None,
        updated: int | None = None,
    ) -> VariantResult:
        return VariantResult.of(
            self.ns, self.name, self.plan.action.value, result, state or self.state, len(self.plan.nodes),
            message=message, total=total, updated=updated,
        )  # fmt: skip
