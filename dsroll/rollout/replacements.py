"""Observe the orphan replacements a render asks for, and fold them into the plan.

For each workload this reads what the pure ``orphans.group`` needs — the live objects
that may hand pods over (its variants, variants no longer rendered, the objects named in
``replaces``), where their pods run, and any replacement already recorded — and turns the
answer into a ``ReplacementPlan`` plus the variant plans of everything it deletes and
creates. A replacement recorded in the cluster and not finished is continued as recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dsroll.config import Environment, Workload
from dsroll.diff import Change, DiffReport
from dsroll.errors import InputError
from dsroll.labels import LABEL_CLASS, LABEL_WORKLOAD, MANAGED_BY, MANAGER
from dsroll.orphans import (
    Candidate,
    Operation,
    Record,
    ReplacementPlan,
    SourceRef,
    backup_name,
    group,
    latest,
    place,
    read_record,
)
from dsroll.plan import (
    Action,
    LiveFingerprint,
    PodView,
    Policy,
    VariantPlan,
    order_nodes,
    plan_steps,
    resolve_partition,
)
from dsroll.render import Variant
from dsroll.rollout import revisions as revs
from dsroll.rollout.adoption import orphan_pods, placement_rows
from dsroll.rollout.backup import records, saved_objects

if TYPE_CHECKING:
    from dsroll.kube import Kube


@dataclass(frozen=True)
class Observed:
    """What ``observe`` already knows about the cluster."""

    labels: Mapping[str, Mapping[str, str]]  # node → labels
    winners: Mapping[str, str | None]  # node → its class
    lives: Mapping[tuple[str, str], dict[str, Any] | None]
    report: DiffReport
    pods: Mapping[tuple[str, str], Sequence[PodView]] = field(default_factory=dict)  # owned, by DaemonSet


def fold(
    kube: Kube,
    env: Environment,
    variants: Sequence[Variant],
    planned: Sequence[VariantPlan],
    seen: Observed,
    *,
    workloads: Sequence[str],
    classes: Sequence[str],
    policy_of: Callable[[str], Policy],
    partition: str | None,
) -> tuple[list[VariantPlan], list[ReplacementPlan]]:
    """The variant plans with every replacement's members replaced, and the replacements."""
    by_key = {vp.key: vp for vp in planned}
    extra: list[VariantPlan] = []
    found: list[ReplacementPlan] = []
    for workload in env.workloads:
        if workloads and workload.name not in workloads:
            continue
        rendered = [v for v in variants if v.workload == workload.name]
        if not rendered:
            continue
        policy = policy_of(workload.name)
        observer = _Workload(kube, workload, rendered, seen, policy, partition)
        result = observer.observe()
        if result is None:
            continue
        plan, members = result
        outside = sorted({m.cls for m in members if m.cls and classes and m.cls not in classes})
        if outside:
            raise InputError(
                f"{plan.namespace}/{plan.workload}: the orphan replacement also touches class(es) "
                f"{', '.join(outside)}; run it without --class (or with every class it touches)"
            )
        found.append(plan)
        for member in members:
            if member.key in by_key:
                by_key[member.key] = member
            else:
                extra.append(member)
    return [*by_key.values(), *extra], found


class _Workload:
    def __init__(
        self,
        kube: Kube,
        workload: Workload,
        rendered: Sequence[Variant],
        seen: Observed,
        policy: Policy,
        partition: str | None,
    ) -> None:
        self.kube = kube
        self.workload = workload
        self.rendered = rendered
        self.seen = seen
        self.policy = policy
        self.partition = partition
        self.ns = rendered[0].namespace
        by_class = {v.cls: v.name for v in rendered}
        self.node_target = {n: by_class.get(c) if c else None for n, c in seen.winners.items()}

    def _live(self, name: str) -> dict[str, Any] | None:
        key = (self.ns, name)
        return self.seen.lives[key] if key in self.seen.lives else self.kube.daemonsets.get(self.ns, name)

    def _pods(self, live: Mapping[str, Any]) -> list[PodView]:
        """The live pods ``live`` owns (read by ``observe`` already, for the variants it planned)."""
        meta = live["metadata"]
        known = self.seen.pods.get((self.ns, meta["name"]))
        if known is None:
            pods, _ = self.kube.pods.list(self.ns, revs.selector_string(live["spec"]["selector"]))
            known = [PodView.of(p) for p in pods if revs.owned_by(p, meta["uid"])]
        return [p for p in known if not p.terminating]

    def observe(self) -> tuple[ReplacementPlan, list[VariantPlan]] | None:
        found = {cm["metadata"]["name"]: (cm, rec) for cm, rec in records(self.kube, self.ns, self.workload.name)}
        recorded = latest((name, rec) for name, (_, rec) in found.items())
        if recorded is not None and not recorded[1].finished:
            return self._continued(found[recorded[0]][0], recorded[1])
        return self._fresh()

    # --- a new replacement ---------------------------------------------------------------

    def _fresh(self) -> tuple[ReplacementPlan, list[VariantPlan]] | None:
        changed = {(d.namespace, d.name): d.change for d in self.seen.report.variants}
        candidates, objects = [], {}
        names = {v.name for v in self.rendered}
        for variant in self.rendered:
            live = self._live(variant.name)
            if live is not None:
                why = "selector changed (immutable)" if changed.get(variant.key) is Change.SELECTOR else None
                objects[variant.name] = live
                candidates.append((variant.name, live, True, why, False))
        for diff in self.seen.report.variants:
            if diff.change is Change.REMOVED and diff.workload == self.workload.name and diff.namespace == self.ns:
                live = self._live(diff.name)
                if live is not None:
                    objects[diff.name] = live
                    candidates.append((diff.name, live, False, "no longer rendered (class renamed or removed)", True))
        for ref in self.workload.replaces:  # in the workload's namespace: config.py checks that
            live = None if ref.name in names or ref.name in objects else self._live(ref.name)
            if live is not None:
                objects[ref.name] = live
                candidates.append((ref.name, live, False, "replaced (`replaces` in the environment file)", False))
        pods = {name: self._pods(obj) for name, obj in objects.items()}
        nodes = {name: frozenset(p.node for p in pods[name]) - {""} for name in objects}
        found = group(
            [Candidate(n, live["metadata"]["uid"], nodes[n], r, why, once) for n, live, r, why, once in candidates],
            self.node_target,
            [v.name for v in self.rendered],
        )
        if found is None:
            return None
        rows = [(p.name, p.uid, p.node, name) for name in found.sources for p in pods[name]]
        placements = place(rows, self.node_target, self.seen.labels, self.workload.name)
        sources = tuple(
            SourceRef(
                self.ns,
                name,
                objects[name]["metadata"]["uid"],
                tuple(sorted(nodes[name])),
                (objects[name]["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER,
            )
            for name in found.sources
        )
        plan = ReplacementPlan(
            namespace=self.ns,
            workload=self.workload.name,
            operation=Operation.replace,
            reason="; ".join(f"{name}: {why}" for name, why in zip(found.sources, found.reasons, strict=True)),
            sources=sources,
            targets=found.targets,
            placements=placements,
            backup=backup_name(self.workload.name, (s.uid for s in sources)),
        )
        return plan, self._members(plan, objects)

    # --- a replacement recorded in the cluster -------------------------------------------

    def _continued(self, cm: Mapping[str, Any], record: Record) -> tuple[ReplacementPlan, list[VariantPlan]]:
        name = cm["metadata"]["name"]
        rendered = {v.name for v in self.rendered}
        missing = [t for t in record.targets if t not in rendered]
        if record.operation is Operation.replace and missing:
            raise InputError(
                f"{self.ns}/{self.workload.name}: the orphan replacement recorded in configmap {name} creates "
                f"{', '.join(missing)}, which is no longer rendered: render it again to finish, or `dsroll rollback`"
            )
        selectors = [obj["spec"]["selector"] for obj in saved_objects(cm).values()]
        rows = placement_rows(orphan_pods(self.kube, self.ns, selectors))
        objects = {}
        for source in record.sources:
            live = self._live(source.name)
            if live is not None:
                objects[source.name] = live
        what = "restore" if record.operation is Operation.restore else "orphan replacement"
        plan = ReplacementPlan(
            namespace=self.ns,
            workload=self.workload.name,
            operation=record.operation,
            reason=f"continues the {what} recorded in configmap {name} (stage {record.stage})",
            sources=record.sources,
            targets=record.targets,
            placements=place(rows, self.node_target, self.seen.labels, self.workload.name),
            backup=name,
            stage=record.stage,
        )
        return plan, self._members(plan, objects)

    # --- the variant plans of a replacement ---------------------------------------------

    def _members(self, plan: ReplacementPlan, objects: Mapping[str, Mapping[str, Any]]) -> list[VariantPlan]:
        members = []
        for variant in self.rendered:
            if variant.name not in plan.targets:
                continue
            mine = {n: self.seen.labels[n] for n, t in self.node_target.items() if t == variant.name}
            order = order_nodes(mine, self.policy.canary_node_selector)
            adopted = set(plan.adopted(variant.name))
            pending = tuple(n for n in order if n in adopted)
            kept = resolve_partition(self.partition, len(order))
            live = self._live(variant.name)
            meta = (live or {}).get("metadata") or {}
            what = f"adopts {len(pending)} pod(s) from {', '.join(s.name for s in plan.sources)}"
            members.append(
                VariantPlan(
                    namespace=self.ns,
                    name=variant.name,
                    workload=variant.workload,
                    cls=variant.cls,
                    action=Action.ORPHAN_REPLACE,
                    reason=f"created with OnDelete, {what}, then replaces them in steps",
                    changed_paths=(),
                    policy=self.policy,
                    nodes=order,
                    pending=pending,
                    steps=plan_steps(order, pending, self.policy, kept),
                    partition=kept,
                    live=LiveFingerprint(meta.get("uid"), meta.get("generation"), None, ()),
                    manifest=variant.manifest,
                    resumes=plan.resumes,
                    applies=True,
                )
            )
        for source in plan.sources:
            if source.name in plan.targets:
                continue
            obj = objects.get(source.name) or {}
            meta = obj.get("metadata") or {}
            labels = meta.get("labels") or {}
            gone_to = sorted({p.target for p in plan.placements if p.source == source.name and p.target})
            members.append(
                VariantPlan(
                    namespace=self.ns,
                    name=source.name,
                    workload=labels.get(LABEL_WORKLOAD, self.workload.name),
                    cls=labels.get(LABEL_CLASS),
                    action=Action.ORPHAN_REPLACE,
                    reason=f"deleted (propagationPolicy Orphan); its pods go to {', '.join(gone_to) or 'no variant'}",
                    changed_paths=(),
                    policy=self.policy,
                    nodes=source.nodes,
                    pending=(),
                    steps=(),
                    partition=None,
                    live=LiveFingerprint(meta.get("uid"), meta.get("generation"), None, ()),
                    manifest=None,
                    resumes=plan.resumes,
                )
            )
        return members


def replaced_keys(plan: ReplacementPlan) -> set[tuple[str, str]]:
    """Every variant key a replacement deletes or creates."""
    return {(plan.namespace, s.name) for s in plan.sources} | {(plan.namespace, t) for t in plan.targets}


def restore_of(kube: Kube, namespace: str, backup: str, workload: str) -> ReplacementPlan | None:
    """The restore of the replacement recorded in ``backup`` (None when there is nothing to undo)."""
    cm = kube.configmaps.get(namespace, backup)
    record = read_record(cm) if cm is not None else None
    if record is None or (record.operation is Operation.restore and record.finished):
        return None  # no record, or restored already: nothing of it left to undo
    return ReplacementPlan(
        namespace=namespace,
        workload=workload,
        operation=Operation.restore,
        reason=f"restores {', '.join(s.name for s in record.sources)} from configmap {backup}",
        sources=record.sources,
        targets=record.targets,
        placements=(),
        backup=backup,
        stage=record.stage if record.operation is Operation.restore else None,
    )
