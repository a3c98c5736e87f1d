"""Cascade-orphan replacement, the acting part: back up, orphan, relabel, adopt, replace.

``Handover.run`` carries out one ``ReplacementPlan`` (decided in ``dsroll/orphans.py``).
Every stage is written to the backup ConfigMap's record before it is acted on, and each
stage is level-triggered — it looks at the cluster and does what is still missing — so a
run killed anywhere finishes by running again. Once the new DaemonSets own the pods they
are ordinary variants: ``VariantRollout`` replaces the pods in steps, with its health
gates and ``onFailure``; ``rollback`` there means "restore the old objects", which is the
same handover in reverse, from the backup.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsroll import names
from dsroll.errors import ClusterError
from dsroll.labels import ROLLOUT_ANNOTATION
from dsroll.orphans import (
    Operation,
    Record,
    ReplacementPlan,
    Stage,
)
from dsroll.plan import (
    Action,
    LiveFingerprint,
    PodView,
    Policy,
    VariantPlan,
    order_nodes,
    resume_order,
)
from dsroll.rollout import decide
from dsroll.rollout import revisions as revs
from dsroll.rollout import state as st
from dsroll.rollout.adoption import WAIT_SECONDS, Adoption
from dsroll.rollout.backup import Backup, owned_revisions
from dsroll.rollout.executor import ON_DELETE, VariantRollout
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.outcome import Result, RunOptions, VariantResult
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.watching import Informer

if TYPE_CHECKING:
    from dsroll.kube import Kube


class Handover:
    def __init__(
        self,
        kube: Kube,
        plan: ReplacementPlan,
        variants: Mapping[str, VariantPlan],
        options: RunOptions,
        reporter: Reporter,
        *,
        policy: Policy,
        environment: str,
        backup_dir: Path,
    ) -> None:
        self.kube = kube
        self.plan = plan
        self.variants = dict(variants)
        self.options = options
        self.reporter = reporter
        self.policy = policy
        self.environment = environment
        self.backup_dir = backup_dir
        self.ns = plan.namespace
        self.label = f"{plan.namespace}/{plan.workload}"
        self.lease = Lease(kube.leases, plan.namespace, names.replacement_lease_subject(plan.workload))
        self.backup = Backup(kube, plan.namespace, plan.backup)
        self.adoption = Adoption(kube, plan.namespace, plan.workload, self.label, self.lease, reporter)
        self.record: Record | None = None

    def summary(self) -> dict[str, Any]:
        """Where the replacement stands after ``run``, for the run's JSON and text summary."""
        record = self.record
        return {
            "namespace": self.ns,
            "workload": self.plan.workload,
            "operation": record.operation.value if record else self.plan.operation.value,
            "stage": record.stage.value if record else None,
            "backup": {"configMap": f"{self.ns}/{self.plan.backup}", "file": record.file if record else None},
            "deleted": [s.name for s in record.sources] if record else [],
            "created": list(record.targets) if record else [],
        }

    # --- entry ---------------------------------------------------------------------

    def run(self) -> list[VariantResult]:
        self.lease.acquire()
        try:
            record = self._load() or self._backup()
            if self.plan.operation is Operation.restore and record.operation is Operation.replace:
                record = self._write(record.entering(Stage.orphaning, operation=Operation.restore))
            if record.finished:
                return []
            if record.operation is Operation.replace:
                return self._forward(record)
            return self._reverse(record)
        finally:
            self.lease.release()

    # --- the record ------------------------------------------------------------------

    def _load(self) -> Record | None:
        self.record = self.backup.load()
        return self.record

    def _write(self, record: Record) -> Record:
        self.record = self.backup.write(record)
        return record

    def _backup(self) -> Record:
        """Save every source (and its revisions) to a local file, then to the ConfigMap that
        also holds the record: nothing is deleted before both exist."""
        objects = []
        for ref in self.plan.sources:
            live = self.kube.daemonsets.get(ref.namespace, ref.name)
            if live is None or live["metadata"]["uid"] != ref.uid:
                raise ClusterError(f"daemonset {ref.namespace}/{ref.name} changed since the plan; nothing was deleted")
            objects.append(live)
        file = self.backup_dir / self.kube.context / self.ns / f"{self.plan.backup}.yaml"
        record = Record(
            operation=Operation.replace,
            stage=Stage.backed_up,
            workload=self.plan.workload,
            sources=self.plan.sources,
            targets=self.plan.targets,
            who=self.options.who,
            commit=self.options.commit,
            file=str(file),
        )
        history = [rev for obj in objects for rev in owned_revisions(self.kube, obj)]
        self.backup.create(objects, history, record, file, environment=self.environment)
        self.record = record
        names = ", ".join(s.name for s in self.plan.sources)
        message = f"backed up {names} to configmap {self.ns}/{self.plan.backup} and {file}"
        self.reporter.emit("backup", self.label, message, configMap=f"{self.ns}/{self.plan.backup}", file=str(file))
        return record

    # --- forward -------------------------------------------------------------------

    def _forward(self, record: Record) -> list[VariantResult]:
        targets = {name: self._manifest(name) for name in record.targets}
        selectors = [obj["spec"]["selector"] for obj in self.backup.objects.values()]
        if record.stage.rank <= Stage.orphaning.rank:
            record = self._write(record.entering(Stage.orphaning))
            self._orphan({s.name: s.uid for s in record.sources})
        if record.stage.rank <= Stage.relabelling.rank:
            record = self._write(record.entering(Stage.relabelling))
            node_target = {n: t for t in record.targets for n in self.variants[t].nodes}
            self.adoption.relabel(selectors, node_target, targets)
        if record.stage.rank <= Stage.creating.rank:
            record = self._write(record.entering(Stage.creating))
            for name, manifest in targets.items():
                self._create(name, manifest, Operation.replace)
            self.adoption.wait_adopted(targets)
            record = self._write(record.entering(Stage.handed_over))
        failure = self._failed_target(record)
        results = [] if failure else self._staged(record.targets, Operation.replace)
        failure = failure or self._failed_target(record)
        if failure:
            record = self._write(record.entering(Stage.orphaning, operation=Operation.restore, failure=failure))
            restored = self._reverse(record)
            for result in results:  # the variant that failed is rolled back with the rest
                if result.phase == st.Phase.rolling_back.value:
                    result.result = Result.ROLLED_BACK
            for result in restored:
                if result.result is Result.COMPLETE:
                    result.result = Result.ROLLED_BACK
                    result.message = failure
            return [*results, *restored]
        if all(r.result is Result.COMPLETE for r in results):
            self._write(record.entering(Stage.complete))
            self.reporter.emit("complete", self.label, f"orphan replacement complete: {', '.join(record.targets)}")
        return results

    def _manifest(self, name: str) -> dict[str, Any]:
        vp = self.variants.get(name)
        if vp is None or vp.manifest is None:
            raise ClusterError(f"{self.label}: {name} is recorded as a target but not rendered any more")
        return copy.deepcopy(dict(vp.manifest))

    # --- reverse -------------------------------------------------------------------

    def _reverse(self, record: Record) -> list[VariantResult]:
        """Give the pods back to the objects in the backup and recreate those objects."""
        originals = {s.name: self._original(s.name) for s in record.sources}
        if record.stage.rank <= Stage.orphaning.rank:
            self.reporter.emit("restore", self.label, f"restoring {', '.join(originals)} from {self.plan.backup}")
            record = self._write(record.entering(Stage.orphaning))
            current = {}
            for name in dict.fromkeys([*record.targets, *originals]):
                live = self.kube.daemonsets.get(self.ns, name)
                if live is not None and not self._ours(live, Operation.restore):
                    current[name] = live["metadata"]["uid"]
            self._orphan(current)
        if record.stage.rank <= Stage.relabelling.rank:
            record = self._write(record.entering(Stage.relabelling))
            selectors = [sel for t in record.targets if (sel := self._selector(t)) is not None]
            selectors += [obj["spec"]["selector"] for obj in originals.values()]
            node_target = {n: s.name for s in record.sources for n in s.nodes}
            fallback = record.sources[0].name if len(record.sources) == 1 else None
            self.adoption.relabel(selectors, node_target, originals, fallback=fallback)
        if record.stage.rank <= Stage.creating.rank:
            record = self._write(record.entering(Stage.creating))
            for name, obj in originals.items():
                self._create(name, obj, Operation.restore)
            self.adoption.wait_adopted(originals)
            record = self._write(record.entering(Stage.handed_over))
        results = self._staged(tuple(originals), Operation.restore)
        if all(r.result is Result.COMPLETE for r in results):
            self._write(record.entering(Stage.restored))
            self.reporter.emit("restored", self.label, f"restored {', '.join(originals)} from {self.plan.backup}")
        return results

    def _ours(self, live: Mapping[str, Any], operation: Operation) -> bool:
        """Whether a live object is already what ``operation`` creates: made by this
        replacement in that direction, or (restoring) an original that was never deleted."""
        record = self.record
        meta = live["metadata"]
        if operation is Operation.restore and record and meta["uid"] in {s.uid for s in record.sources}:
            return not meta.get("deletionTimestamp")  # one being deleted is finished off and recreated
        state = st.read_state(dict(live))
        wanted = st.RunKind.rollout if operation is Operation.replace else st.RunKind.rollback
        return state is not None and state.replacement == self.plan.backup and state.operation is wanted

    def _failed_target(self, record: Record) -> str | None:
        """A new object whose staged rollout failed with onFailure rollback: why, else None."""
        for name in record.targets:
            state = st.read_state(self.kube.daemonsets.get(self.ns, name))
            if state and state.replacement == self.plan.backup and state.phase is st.Phase.rolling_back:
                return f"{state.failure.node}: {state.failure.reason}" if state.failure else "failed"
        return None

    def _original(self, name: str) -> dict[str, Any]:
        try:
            return self.backup.original(name)
        except KeyError:
            raise ClusterError(f"{self.label}: the backup {self.plan.backup} has no daemonset {name}") from None

    def _selector(self, name: str) -> Mapping[str, Any] | None:
        """A new object's selector: rendered, else live, else None (nothing to look for)."""
        vp = self.variants.get(name)
        if vp is not None and vp.manifest is not None:
            return vp.manifest["spec"]["selector"]
        live = self.kube.daemonsets.get(self.ns, name)
        return live["spec"]["selector"] if live else None

    # --- the stages ------------------------------------------------------------------

    def _orphan(self, uids: Mapping[str, str]) -> None:
        """Delete with propagationPolicy Orphan; wait until the objects are gone, which the
        garbage collector allows only once every dependent has lost its owner reference.

        Their ControllerRevisions are orphaned too; they are deleted afterwards (the backup
        holds the old ones), so that a new object with the same selector starts its own
        history instead of adopting them."""
        history = {
            cr["metadata"]["name"]: cr["metadata"]["uid"]
            for cr in self.backup.revisions
            if any(revs.owned_by(cr, uid) for uid in uids.values())
        }
        selectors = {name: (obj.get("spec") or {}).get("selector") for name, obj in self.backup.objects.items()}
        for name, uid in uids.items():
            live = self.kube.daemonsets.get(self.ns, name)
            if live is not None and live["metadata"]["uid"] == uid:
                selectors[name] = live["spec"]["selector"]
                history.update(
                    {cr["metadata"]["name"]: cr["metadata"]["uid"] for cr in owned_revisions(self.kube, live)}
                )
            self.kube.daemonsets.delete(self.ns, name, uid, orphan=True)  # False: gone, or a namesake now
            self.reporter.emit("orphan-delete", self.label, f"deleting {name} with propagationPolicy Orphan", name=name)
        gone = set(uids.values())
        informer = Informer(self.kube.daemonsets.collection(self.ns))
        deadline, seen = time.monotonic() + WAIT_SECONDS, -1
        with informer:
            while {ds["metadata"]["uid"] for ds in informer.snapshot()} & gone:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{self.label}: the garbage collector did not orphan {', '.join(uids)} in time")
                self.lease.renew()
                seen = informer.wait(min(RENEW_EVERY, deadline - time.monotonic()), seen)
        for name, uid in uids.items():
            selector = selectors.get(name) or self._selector(name)
            if selector is None:
                continue
            self.adoption.wait_released(name, uid, selector)
        for name, uid in history.items():
            self.kube.revisions.delete(self.ns, name, uid)
        whose = "its" if len(uids) == 1 else "their"
        self.reporter.emit("orphaned", self.label, f"{', '.join(uids) or 'nothing'} deleted; {whose} pods are orphans")

    def _create(self, name: str, manifest: Mapping[str, Any], operation: Operation) -> None:
        """The new object, with OnDelete and its rollout state in the same request."""
        live = self.kube.daemonsets.get(self.ns, name)
        if live is not None and self._ours(live, operation):
            return  # created by an earlier run
        order = self._order(name, operation)
        vp = self.variants.get(name)
        policy = vp.policy if vp is not None else self.policy
        restoring = operation is Operation.restore
        state = decide.fresh_state(
            policy,
            order,
            kind=st.RunKind.rollback if restoring else st.RunKind.rollout,
            who=self.options.who,
            commit=self.options.commit,
            steps=self.options.steps,
            previous=None,
            original_strategy=(manifest.get("spec") or {}).get("updateStrategy"),
            partition=None if restoring or vp is None else vp.partition,
            on_failure="abort" if restoring else None,
            replacement=self.plan.backup,
        )
        body = copy.deepcopy(dict(manifest))
        body["spec"]["updateStrategy"] = dict(ON_DELETE)
        body["metadata"].setdefault("annotations", {})[ROLLOUT_ANNOTATION] = state.to_json()
        if operation is Operation.replace:
            created = self.kube.daemonsets.apply(body, dry_run=False)
        else:
            created = self.kube.daemonsets.create(self.ns, body)
        self.reporter.emit("created", self.label, f"created {name} with updateStrategy OnDelete: it adopts the pods",
                           daemonset=created, name=name)  # fmt: skip

    def _order(self, name: str, operation: Operation) -> tuple[str, ...]:
        vp = self.variants.get(name)
        if vp is not None and operation is Operation.replace:
            return vp.nodes
        record = self.record
        assert record is not None
        nodes = self.kube.nodes.labels()
        source = next(s for s in record.sources if s.name == name)
        mine = {n: lb for n, lb in nodes.items() if n in source.nodes or len(record.sources) == 1}
        return order_nodes(mine, self.policy.canary_node_selector)

    def _staged(self, names: Sequence[str], operation: Operation) -> list[VariantResult]:
        """Each new object's pods replaced in steps by the ordinary executor."""
        results = []
        where = self.kube.nodes.labels()
        for name in names:
            live = self.kube.daemonsets.get(self.ns, name)
            if live is None:
                raise ClusterError(f"daemonset {self.ns}/{name} disappeared during the replacement")
            state = st.read_state(live)
            if state is None or state.replacement != self.plan.backup or state.phase is st.Phase.complete:
                continue  # an original never deleted, or done
            base = self.variants.get(name) or self._restore_plan(name)
            pods, _ = self.kube.pods.list(self.ns, revs.selector_string(live["spec"]["selector"]))
            pods = [p for p in pods if revs.owned_by(p, live["metadata"]["uid"])]
            running = {p["spec"].get("nodeName") for p in pods if p["spec"].get("nodeName") in where}
            fresh = order_nodes({n: where[n] for n in running}, base.policy.canary_node_selector)
            on_target = {p["spec"].get("nodeName") for p in pods if PodView.of(p).revision == state.target_revision}
            order = resume_order(fresh, [n for n in fresh if n not in on_target or not state.target_revision])
            vp = replace(base, action=Action.UPDATE, resumes=True, nodes=order)
            if operation is Operation.restore:
                vp = replace(vp, manifest=None)
            result = VariantRollout(self.kube, vp, self.options, self.reporter).run()
            result.action = Action.ORPHAN_REPLACE.value
            results.append(result)
            if result.result.exit_code != 0:
                break
        return results

    def _restore_plan(self, name: str) -> VariantPlan:
        return VariantPlan(
            namespace=self.ns,
            name=name,
            workload=self.plan.workload,
            cls=None,
            action=Action.UPDATE,
            reason=f"restored from {self.plan.backup}",
            changed_paths=(),
            policy=self.policy,
            nodes=self._order(name, Operation.restore),
            pending=(),
            steps=(),
            partition=None,
            live=LiveFingerprint(None, None, None, ()),
            manifest=None,
        )
