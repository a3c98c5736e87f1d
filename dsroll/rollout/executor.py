"""Carries out one variant's plan: apply, update nodes step by step, gate, record.

The executor decides nothing: what the plan holds comes from ``plan.py``, and every
choice on the way (start afresh or resume, pause, the batches, what a failure leads to)
from ``decide.py``. It observes, asks, performs and records. It is level-triggered:
each choice is taken from a fresh view of the DaemonSet, its revisions and its pods, so a
killed process resumes by running again. The state is written before each transition is
acted on, through the variant's store (``store.py``): the DaemonSet's annotation, or under
``applier: external`` a ConfigMap beside it.

Under ``applier: external`` the same steps run with three differences, and nothing else
(docs/gitops.md): nothing is applied (the target is the revision the applier made current,
conducted from the stable one, ``external.stable_revision``); nothing on the DaemonSet is
written (no annotation, no update strategy; a created variant is waited for, a pruned one
reported); and a completed rollout records its revision and commit as the new stable one.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dsroll.config import parse_duration
from dsroll.errors import ClusterError
from dsroll.kube import FIELD_MANAGER
from dsroll.labels import ROLLOUT_ANNOTATION
from dsroll.plan import PodView, VariantPlan
from dsroll.rollout import decide, restart
from dsroll.rollout import revisions as revs
from dsroll.rollout.decide import AfterFailure, Pause, Start
from dsroll.rollout.evidence import Evidence
from dsroll.rollout.external import last_writer, stable_revision
from dsroll.rollout.fleet import skipped_at_start, watched_node
from dsroll.rollout.health import Gate
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import NodeFailed, Result, RunOptions, SecondHand, Stopped, Target, VariantResult
from dsroll.rollout.podswap import PodSwap, Surroundings
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import Failure, Phase, RolloutState, RunKind, SkippedNode
from dsroll.rollout.store import Stable, store_for
from dsroll.rollout.watching import Informer
from dsroll.rollout.writers import changed_by

if TYPE_CHECKING:
    from dsroll.kube import Kube

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
        self._watches = ExitStack()
        self._around: Surroundings | None = None
        self.external = plan.policy.external
        self.store = store_for(kube, self.ns, self.name, plan.policy.applier)
        self.stable: Stable | None = None  # applier: external: the stable revision recorded
        self._request: str | None = None  # a pause/abort request, as the last write answered
        self._recorded: RolloutState | None = None  # the state found when the run began

    # --- entry ---------------------------------------------------------------------

    def run(self) -> VariantResult:
        self.lease.acquire()
        try:
            with self._watches:
                return self._run()
        finally:
            self.lease.release()

    def _surroundings(self) -> Surroundings:
        """The nodes and the DaemonSet, watched from the first time a step needs them."""
        if self._around is None:
            changed = threading.Condition()
            nodes = Informer(
                self.kube.nodes.collection(None).seen(),  # the planning listed them a moment ago
                log_changes=True,
                changed=changed,
                transform=watched_node,
                keep_items=False,
            )
            own = self.kube.daemonsets.collection(self.ns, field_selector=f"metadata.name={self.name}")
            # no older than the copy this run read (the cache has it, where a consistent read
            # waits); none read yet: "", a consistent read
            read = (self.ds.get("metadata") or {}).get("resourceVersion", "")
            daemonset = Informer(replace(own, not_older_than=read), changed=changed)
            self._watches.enter_context(nodes)
            self._watches.enter_context(daemonset)
            self._around = Surroundings(changed, nodes, daemonset)
            self._around.absorb()
        return self._around

    def _skipped_now(self, unready_nodes: str) -> tuple[SkippedNode, ...]:
        """The plan's nodes held, or not Ready with ``unreadyNodes: skip``, as the run starts."""
        fleet = self._surroundings().fleet
        found = skipped_at_start(self.plan.nodes, fleet.get, unready_nodes)
        for s in found:
            message = f"{s.node} skipped: {s.reason.value} ({s.detail}); a later rollout does it"
            self.reporter.emit(
                "node-skipped", self.label, message, daemonset=self.ds, node=s.node, reason=s.reason.value
            )
        return found

    def _run(self) -> VariantResult:
        def start(recorded: RolloutState | None) -> Start:
            return decide.start(
                self.plan.action, recorded, retargeted=self.target is not None, approve=self.options.approve
            )

        first = start(None)  # these three need no look at a recorded state
        if first is Start.CREATE:
            return self._await_created() if self.external else self._create()
        if self.external and first in (Start.IN_PLACE, Start.PRUNE):
            message = (
                "no longer rendered: the applier prunes it; dsroll never deletes a DaemonSet under applier: external"
                if first is Start.PRUNE
                else "differs from the render outside the pod template: the applier applies it, no pod restarts"
            )
            self.reporter.emit("not-pruned" if first is Start.PRUNE else "complete", self.label, message)
            return self._result(Result.COMPLETE)
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
        found = self.store.load(self.ds)
        recorded, self.stable, self._request = found.state, found.stable, found.request
        self._recorded = recorded
        if self.external and recorded is not None and not recorded.finished and not self.options.approve:
            moved = recorded.target_revision not in ("", self._current_revision().hash)
            then = decide.start(self.plan.action, recorded, retargeted=moved, approve=False)  # the applier's new target
        else:
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
            try:
                resumed = self._resume(unfinished)
            except SecondHand as moved:
                self.state = unfinished
                return self._second_hand(moved)
            return self._steps(resumed)
        return self._steps(self._begin(unfinished))

    # --- cluster reads and writes ------------------------------------------------------

    def _get(self) -> dict[str, Any]:
        ds = self.kube.daemonsets.get(self.ns, self.name)
        if ds is None:
            raise ClusterError(f"daemonset {self.label} disappeared during the rollout")
        return ds

    def _write(self, state: RolloutState, *, clear_request: bool = False, stable: Stable | None = None) -> RolloutState:
        """Record the state before acting on it; the answer carries any pause/abort request."""
        written = self.store.write(self.ds, state, clear_request=clear_request, stable=stable)
        if written.daemonset is not None:
            self.ds = written.daemonset
        self._request = written.request
        self.stable = written.stable or self.stable
        self.state = state
        self._written_at = time.monotonic()
        return state

    def _record(self, state: RolloutState) -> tuple[bool, str | None]:
        """For a step's pod swap: write ``state`` when due; (written, a pause/abort request)."""
        if not decide.record_due(self.state, state, time.monotonic() - self._written_at):
            return False, None
        self._write(state)
        return True, self._request

    def _swap(
        self, state: RolloutState, count: int | None, step: int, steps: int, planned: bool, unready: str | None = None
    ) -> RolloutState:
        around = self._surroundings()
        evidence = Evidence(self.kube.events, self.kube.nodes, self.ns, self.label, self.reporter)
        swap = PodSwap(
            self.kube.pods, self.ns, self.label, self.gate, self.lease, self.reporter, self._record, around, evidence
        )
        return swap.run(self.ds, state, count, step, steps, set(self.plan.pending) if planned else None, unready)

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
        """Until the controller has seen the latest spec (and so recorded its revision);
        through the rollout's DaemonSet watch once it has one, else a watch of its own."""
        written = int((self.ds.get("metadata") or {}).get("generation") or 0)  # what this run wrote last
        if self._around is not None:
            self._observed(self._around.daemonset, written, timeout)
            return
        with self._watch_daemonset() as watch:
            self._observed(watch, written, timeout)

    def _observed(self, watch: Informer, written: int, timeout: float) -> None:
        """``watch`` may not have seen this run's last write yet: a DaemonSet older than
        generation ``written`` does not count, however observed."""
        deadline, seen = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            for ds in watch.snapshot():
                if decide.observed(ds, written):
                    self.ds = ds
                    return
            seen = watch.wait(deadline - time.monotonic(), seen)
        raise ClusterError(f"the DaemonSet controller did not observe {self.label} within {timeout:.0f}s")

    def _current_revision(self) -> revs.Revision:
        current = revs.current(revs.revisions(self.kube, self.ds))
        if current is None:
            raise ClusterError(f"{self.label} has no ControllerRevision")
        return current

    def _settle_created(self) -> None:
        """A variant the applier created, every pod Ready: its revision is the stable one."""
        self._wait_observed()
        current = self._current_revision()
        rendered = self.plan.applied is None or self.plan.applied.matches_render
        commit = current.commit or (self.options.commit if rendered else None)
        if rendered and self.options.operation is RunKind.rollout:
            revs.record_commit(self.kube, self.ns, current, self.options.commit)
        state = decide.fresh_state(
            self.plan.policy, self.plan.nodes, kind=self.options.operation, who=self.options.who, commit=commit,
            steps=None, previous=None, original_strategy=None, partition=None,
        )  # fmt: skip
        done = state.entering(Phase.complete, target_revision=current.hash, nodes_done=state.updatable)
        self._write(done, stable=Stable(current.hash, commit))

    def _record_commit(self) -> None:
        if self.options.commit and self.options.operation is RunKind.rollout:
            self._wait_observed()
            revs.record_commit(self.kube, self.ns, self._current_revision(), self.options.commit)

    # --- create --------------------------------------------------------------------

    def _create(self, *, apply: bool = True) -> VariantResult:
        if apply:
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
        if self.external:
            self._settle_created()
        else:
            self._record_commit()
        self.reporter.emit("complete", self.label, f"created: {desired} pod(s) Ready", daemonset=self.ds)
        return self._result(Result.COMPLETE, total=desired, updated=desired)

    # --- the staged update -----------------------------------------------------------

    def _resume(self, recorded: RolloutState) -> RolloutState:
        """Continue the recorded rollout on the plan's nodes; a target revision not known
        yet (killed before the controller made it) is waited for."""
        if recorded.target_revision:
            current = self._current_revision()
            if current.hash != recorded.target_revision:
                raise SecondHand(
                    f"its current revision is {current.number} ({current.hash}), not the target "
                    f"{recorded.target_revision} this rollout recorded: the spec was changed "
                    f"{changed_by(self.ds, FIELD_MANAGER)}"
                )
        state = decide.resumed_state(
            recorded,
            self.plan.nodes,
            steps=self.options.steps,
            partition=self.plan.partition,
            approve=self.options.approve,
            who=self.options.who,
            skipped=self._skipped_now(recorded.unready_nodes),
        )
        self._write(state, clear_request=True)
        if state.restarted_at:
            self._wait_clock_past(state.restarted_at)
        if not state.target_revision:
            self._wait_observed()
            state = self._write(replace(state, target_revision=self._current_revision().hash))
        return state

    def _begin(self, unfinished: RolloutState | None) -> RolloutState:
        """Apply the target (if any) with OnDelete and the new state in one request."""
        if self.options.operation is RunKind.restart:
            return self._begin_restart()
        if self.external:
            return self._begin_conducting(unfinished)
        current = self._current_revision()
        recorded = self._recorded  # a variant an orphan replacement created keeps the way back
        state = decide.fresh_state(
            self.plan.policy,
            self.plan.nodes,
            kind=self.options.operation,
            who=self.options.who,
            commit=self.options.commit,
            steps=self.options.steps,
            previous=(
                unfinished.previous_revision
                if unfinished and unfinished.operation is not RunKind.restart  # a restart has none
                else current.hash
            ),
            original_strategy=(
                unfinished.original_strategy if unfinished else (self.ds.get("spec") or {}).get("updateStrategy")
            ),
            partition=self.plan.partition,
            replacement=recorded.replacement if recorded else None,
            skipped=self._skipped_now(self.plan.policy.unready_nodes),
        )
        what = f"revision {self.target.revision.number}" if self.target and self.target.revision else "the render"
        message = f"{self.options.operation} to {what}: {state.updatable} node(s), steps {list(state.steps)}"
        self.reporter.emit("start", self.label, message)
        self._apply_target(state)
        self._wait_observed()
        target = self._current_revision()
        if self.options.operation is RunKind.rollout:
            revs.record_commit(self.kube, self.ns, target, self.options.commit)
        if state.previous_revision == target.hash:  # another hand applied this template before the run
            history = revs.revisions(self.kube, self.ds)
            state = replace(state, previous_revision=self._way_back(target, history, None))
        state = self._write(replace(state, target_revision=target.hash), clear_request=True)
        self.reporter.emit("start", self.label, f"target revision {target.number} ({target.hash})", daemonset=self.ds)
        return state

    def _begin_conducting(self, unfinished: RolloutState | None) -> RolloutState:
        """``applier: external``: nothing is applied. The target is the revision the applier
        made current; the way back is the stable one (``external.stable_revision``), never
        the target. The target's commit is recorded only when it is known: the revision
        carries it, or the live template is the render of the commit this run records."""
        self._wait_observed()  # the controller has recorded a revision of the applier's latest template
        history = revs.revisions(self.kube, self.ds)
        target = revs.current(history)
        if target is None:
            raise ClusterError(f"{self.label} has no ControllerRevision")
        previous = self._way_back(target, history, unfinished)
        applied = self.plan.applied
        rendered = applied is not None and applied.matches_render and applied.target.hash == target.hash
        if rendered and self.options.operation is RunKind.rollout:
            revs.record_commit(self.kube, self.ns, target, self.options.commit)
        state = decide.fresh_state(
            self.plan.policy, self.plan.nodes, kind=self.options.operation, who=self.options.who,
            commit=target.commit or (self.options.commit if rendered else None), steps=self.options.steps,
            previous=previous, original_strategy=None, partition=self.plan.partition,
            skipped=self._skipped_now(self.plan.policy.unready_nodes),
        )  # fmt: skip
        if unfinished is not None and unfinished.target_revision not in ("", target.hash):
            message = (
                f"the applier applied revision {target.number} ({target.hash}) while the rollout of "
                f"{unfinished.target_revision} was {unfinished.phase}: it is superseded, every node not on "
                f"{target.hash} is replaced"
            )
            self.reporter.emit("superseded", self.label, message, daemonset=self.ds)
        manager, operation, at = last_writer(self.ds, FIELD_MANAGER)
        by = f" applied by {manager} ({operation} at {at})" if manager else ""
        numbers = {r.hash: r.number for r in history}
        since = f"from revision {numbers[previous]} ({previous})" if previous else "no stable revision to go back to"
        message = (
            f"{self.options.operation} of revision {target.number} ({target.hash}){by}, {since}: "
            f"{state.updatable} node(s), steps {list(state.steps)}"
        )
        self.reporter.emit("start", self.label, message, daemonset=self.ds)
        return self._write(replace(state, target_revision=target.hash), clear_request=True)

    def _way_back(
        self, target: revs.Revision, history: list[revs.Revision], unfinished: RolloutState | None
    ) -> str | None:
        """The revision a rollout to ``target`` goes back to (``external.stable_revision``):
        the recorded stable one, the unfinished rollout's, the one most pods run; never the target."""
        pods, _ = self.kube.pods.list(self.ns, revs.selector_string(self.ds["spec"]["selector"]))
        on = [PodView.of(p).revision for p in pods if revs.owned_by(p, self.ds["metadata"]["uid"])]
        remembered = [
            self.stable.revision if self.stable else None,
            unfinished.previous_revision if unfinished else None,
        ]
        return stable_revision(target.hash, [r.hash for r in history], on, remembered)

    def _await_created(self) -> VariantResult:
        """``applier: external``: the applier creates the variant; wait for it, then gate its
        pods as a created one (``_create``), and record its revision as the stable one."""
        deadline = time.monotonic() + self.gate.ready_timeout
        self.reporter.emit("start", self.label, "not applied yet: waiting for the applier to create it")
        with self._watch_daemonset() as watch:
            seen = -1
            while not watch.snapshot():
                if time.monotonic() >= deadline:
                    message = "the applier did not create it within readyTimeout"
                    self.reporter.emit("failed", self.label, message)
                    return self._result(Result.FAILED, message=message)
                self.lease.renew()
                seen = watch.wait(min(RENEW_EVERY, deadline - time.monotonic()), seen)
            self.ds = watch.snapshot()[0]
        return self._create(apply=False)

    def _begin_restart(self) -> RolloutState:
        """A restart applies nothing: its target is the current revision, and the API server's
        time, recorded, tells the pods it must replace (created at or before it) from the rest."""
        current = self._current_revision()
        recorded = self._recorded
        strategy = (self.ds.get("spec") or {}).get("updateStrategy")  # left as it is: nothing is applied
        state = decide.fresh_state(
            self.plan.policy, self.plan.nodes, kind=RunKind.restart, who=self.options.who, commit=None,
            steps=self.options.steps, previous=None, original_strategy=strategy, partition=self.plan.partition,
            on_failure=restart.on_failure(self.plan.policy.on_failure),
            replacement=recorded.replacement if recorded else None,
            skipped=self._skipped_now(self.plan.policy.unready_nodes),
        )  # fmt: skip
        revision = f"revision {current.number} ({current.hash})"
        message = f"restart: {state.updatable} node(s), steps {list(state.steps)}, {revision} unchanged"
        self.reporter.emit("start", self.label, message)
        since = restart.timestamp(self.kube.server_time())
        state = self._write(replace(state, target_revision=current.hash, restarted_at=since), clear_request=True)
        message = f"restarting every pod created at or before {since} (API server time)"
        self.reporter.emit("start", self.label, message, daemonset=self.ds)
        self._wait_clock_past(since)
        return state

    def _wait_clock_past(self, since: str) -> None:
        """Until the API server's clock has passed the second ``since``: every pod created from
        then on, the replacements of those deleted next included, is later than it."""
        deadline = time.monotonic() + 10
        while not restart.clock_past(self.kube.server_time(), since):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.label}: the API server's clock did not pass {since} within 10s")
            time.sleep(0.2)

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
        """Carry out the state's steps; each step's nodes are the first of the plan's order
        that are not skipped; the last step without a partition takes them all."""
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
            last = number == len(counts) - 1 and not state.partition
            try:
                state = self._swap(state, None if last else counts[number], number + 1, len(counts), bool(planned))
            except NodeFailed as failed:
                return self._on_failure(failed)
            except Stopped as stopped:
                return self._honour(stopped.action)
            except SecondHand as moved:
                return self._second_hand(moved)
            state = replace(state, nodes_done=max(state.nodes_done, min(counts[number], state.updatable)))
            skipped = f", {len(state.skipped)} skipped" if state.skipped else ""
            self.reporter.emit(
                "step-complete",
                self.label,
                f"step {number + 1}/{len(counts)} complete: {min(counts[number], state.updatable)}/{state.updatable}"
                f" node(s) updated{skipped}",
                daemonset=self.ds,
                step=number + 1,
                nodes=counts[number],
            )
        if state.partition:
            cap = state.cap
            state = self._write(state.entering(Phase.partitioned, in_flight=()))
            done = "restarted" if state.operation is RunKind.restart else "on the new revision"
            message = f"partition reached: {cap}/{state.updatable} node(s) {done}, {state.partition} kept"
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
            if (request := self._request) is not None:
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
        if self.external:
            hint = "revert the change in git (`dsroll rollback ENV --git-revert`), or fix it and `dsroll resume`"
        else:
            hint = "fix and `dsroll resume`" if phase is Phase.paused else "left as it is (`dsroll rollback` goes back)"
        self.reporter.emit(phase.value, self.label, f"{phase.value} after a failure: {hint}", daemonset=self.ds)
        return self._result(Result.FAILED, state, message=f"{failed.node}: {failed.reason}")

    def _rollback(self, state: RolloutState) -> VariantResult:
        """Put the previous template back and replace every node not on it."""
        if state.counts is not None:  # read back from the annotation, which counts nodes: the plan's are today's
            state = replace(state, nodes=tuple(self.plan.nodes), skipped=(), in_flight=(), counts=None)
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
            state = self._swap(state, None, 1, 1, planned=False, unready="skip")
        except (NodeFailed, Stopped, SecondHand) as exc:
            state = self._write(state.entering(Phase.failed))
            message = f"rollback stopped: {exc}"
            self.reporter.emit("failed", self.label, message, daemonset=self.ds)
            return self._result(Result.FAILED, state, message=message)
        return self._finish(state, Phase.rolled_back)

    def _finish(self, state: RolloutState, phase: Phase) -> VariantResult:
        """The end of a rollout or rollback: the update strategy back, unless nodes were
        skipped — then it stays OnDelete, because the native controller would replace
        them with no health gate, and the state keeps the way to do them later."""
        manifest = self.plan.manifest or {}
        applied = phase is Phase.complete and state.operation is not RunKind.restart  # a restart applies nothing
        wanted = (manifest.get("spec") or {}).get("updateStrategy") if applied else None
        strategy = wanted or state.original_strategy or {"type": "RollingUpdate"}
        state = state.entering(phase, in_flight=(), nodes_done=state.updatable)
        if self.external:  # the DaemonSet is the applier's: only the record changes
            stable = Stable(state.target_revision, state.commit) if not state.skipped else None
            settled = phase is Phase.complete and state.operation is not RunKind.restart
            self._write(state, stable=stable if settled else None)
        elif state.skipped:
            self._write(state)
        else:
            self.ds = self.kube.daemonsets.set_strategy(
                self.ns, self.name, update_strategy=strategy, annotations={ROLLOUT_ANNOTATION: state.to_json()}
            )
            self.state = state
        skipped = f", {len(state.skipped)} node(s) skipped (the DaemonSet stays OnDelete)" if state.skipped else ""
        if phase is Phase.rolled_back:
            failure = state.failure
            message = (
                f"rolled back{skipped}: every other node on revision {state.target_revision}"
                if skipped
                else (f"rolled back: every node on revision {state.target_revision}")
            )
            self.reporter.emit("rolled-back", self.label, message, daemonset=self.ds)
            reason = (
                f"{failure.node}: {failure.reason}"
                if failure and failure.node
                else (failure.reason if failure else "rolled back")
            )
            return self._result(Result.ROLLED_BACK, state, message=reason)
        message = f"{state.operation} complete{skipped}: {state.updatable} node(s) on revision {state.target_revision}"
        self.reporter.emit("complete", self.label, message, daemonset=self.ds)
        return self._result(Result.COMPLETE, state)

    def _second_hand(self, moved: SecondHand) -> VariantResult:
        """Someone else changed the spec: stop replacing pods, keep the state, say who."""
        state = self.state
        assert state is not None
        reason = f"stopped: {moved.reason}; dsroll never rolls a revision it did not plan"
        state = self._write(state.entering(Phase.paused, failure=Failure("", reason), in_flight=()))
        hint = (
            "`dsroll rollout` conducts the new revision from the stable one; `dsroll rollback --git-revert` goes back"
            if self.external
            else "`dsroll rollout` applies the render again; `dsroll rollback` goes back"
        )
        self.reporter.emit("paused", self.label, f"{reason} ({hint})", daemonset=self.ds)
        return self._result(Result.FAILED, state, message=reason)

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
