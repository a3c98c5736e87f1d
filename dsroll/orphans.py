"""Cascade-orphan replacement, the pure part: who hands pods to whom, and the record.

Some changes cannot be applied to a live DaemonSet: a new selector (immutable), a new
name, one DaemonSet split into per-class variants, variants merged. Their pods are handed
over instead: the old objects are deleted with ``propagationPolicy: Orphan``, each orphan
is relabelled so that exactly one new variant's selector matches it (chosen by its node),
and the new variants are created with ``OnDelete`` so they adopt the pods, which are then
replaced in the usual steps. This module decides the groups, the placements and the
labels, and models the record kept in the backup ConfigMap; ``rollout/handover.py`` acts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from dsroll.classes import Requirement
from dsroll.errors import ClusterError
from dsroll.labels import IDENTITY, RECORD_ANNOTATION, TEMPLATE_GENERATION
from dsroll.names import backup_name as backup_name  # where replacements and plans find it
from dsroll.rollout.state import camel_json, now_iso, snake_fields


class Operation(StrEnum):
    replace = "replace"  # old objects → rendered variants
    restore = "restore"  # rendered variants → old objects, from the backup


class Stage(StrEnum):
    """A replacement's phases, each recorded before it is acted on."""

    backed_up = "backed-up"
    orphaning = "orphaning"
    relabelling = "relabelling"
    creating = "creating"
    handed_over = "handed-over"  # the new objects own the pods; their staged rollouts follow
    complete = "complete"
    restored = "restored"

    @property
    def rank(self) -> int:
        return list(Stage).index(self)


FINISHED_STAGES = frozenset({Stage.complete, Stage.restored})


# --- who hands pods to whom -----------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A live DaemonSet of a workload that may have to hand its pods over."""

    name: str
    uid: str
    nodes: frozenset[str]  # where its pods run
    rendered: bool  # a variant of the same name is still rendered
    why: str | None  # why it must go (selector changed, replaced, no longer rendered); None: maybe not
    if_it_hands_over: bool = False  # a source only when some variant takes its pods (else a prune)


@dataclass(frozen=True)
class Group:
    sources: tuple[str, ...]  # deleted (orphaning their pods), in the order given
    targets: tuple[str, ...]  # created (adopting the pods), in render order
    reasons: tuple[str, ...]


def group(
    candidates: Sequence[Candidate], node_target: Mapping[str, str | None], rendered: Sequence[str]
) -> Group | None:
    """The sources and targets of one workload's replacement, or None when there is none.

    A source's pods go to the variant of their node's class; a live variant some of whose
    nodes now belong to another variant (a class added) hands those over too. A live
    variant that would receive pods must itself be recreated: applied in place, its
    controller would either start second pods beside the orphans or adopt them and delete
    those outside its old node set. So the group grows until it is closed under "receives pods from a source".
    A variant no longer rendered whose nodes no variant covers is not a source: that is a
    plain prune.
    """
    by_name: dict[str, Candidate] = {}
    for c in candidates:  # one object named twice (no longer rendered and in `replaces`) is one candidate
        by_name.setdefault(c.name, c)
    candidates = list(by_name.values())

    def receives(c: Candidate) -> set[str]:
        return {t for n in c.nodes if (t := node_target.get(n)) is not None}

    sources: dict[str, str] = {}
    for c in candidates:
        if c.why is not None and (receives(c) or not c.if_it_hands_over):
            sources[c.name] = c.why
        elif c.why is None and c.rendered and (moved := receives(c) - {c.name}):
            sources[c.name] = f"some of its nodes now belong to {', '.join(sorted(moved))}"
    changed = True
    while changed:
        changed = False
        covered = {t for name in sources for t in receives(by_name[name])}
        for name in sorted(covered):
            c = by_name.get(name)
            if c is not None and name not in sources:
                sources[name] = f"{name} receives pods of {', '.join(sorted(sources))}: recreated so it adopts them"
                changed = True
    if not sources:
        return None
    covered = {t for name in sources for t in receives(by_name[name])}
    targets = tuple(r for r in rendered if r in covered or (r in sources and by_name[r].rendered))
    ordered = tuple(c.name for c in candidates if c.name in sources)
    return Group(ordered, targets, tuple(sources[n] for n in ordered))


# --- where each orphan goes -----------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One orphaned pod: the variant it is handed to, or why it cannot be placed."""

    pod: str
    uid: str
    node: str
    source: str
    target: str | None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "uid"}


def place(
    pods: Iterable[tuple[str, str, str, str]],
    node_target: Mapping[str, str | None],
    nodes: Iterable[str],
    workload: str,
) -> tuple[Placement, ...]:
    """(pod, uid, node, source) → where it goes. Unplaceable pods say why; they are deleted."""
    present = set(nodes)
    found = []
    for pod, uid, node, source in sorted(pods, key=lambda p: (p[2], p[0])):
        if not node:
            found.append(Placement(pod, uid, node, source, None, "not scheduled to a node"))
        elif node not in present:
            found.append(Placement(pod, uid, node, source, None, f"node {node} is gone"))
        elif node_target.get(node) is None:
            found.append(Placement(pod, uid, node, source, None, f"node {node} is in no class of {workload}"))
        else:
            found.append(Placement(pod, uid, node, source, node_target[node]))
    return tuple(found)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(
        Requirement(e["key"], e["operator"], tuple(e.get("values") or ())).matches(labels)
        for e in selector.get("matchExpressions") or []
    )


def relabelled(
    labels: Mapping[str, str], selector: Mapping[str, Any], template_labels: Mapping[str, str]
) -> dict[str, str]:
    """The labels an orphan needs so that its new owner's selector matches it.

    The selector's labels are set (a key its expressions name takes the template's value,
    or is removed when the template has none), dsroll's identity labels follow the new
    owner's template (added for a variant, removed when handed back to an object without
    them), and the stale template generation goes. Everything else the pod carries stays.
    """
    out = {k: v for k, v in labels.items() if k != TEMPLATE_GENERATION}
    for key in IDENTITY:
        if key in template_labels:
            out[key] = template_labels[key]
        else:
            out.pop(key, None)
    out.update(selector.get("matchLabels") or {})
    for expr in selector.get("matchExpressions") or []:
        key = expr["key"]
        if key in template_labels:  # the template satisfies the selector, as the API server requires
            out[key] = template_labels[key]
        elif key not in (selector.get("matchLabels") or {}) and not selector_matches({"matchExpressions": [expr]}, out):
            out.pop(key, None)
    if not selector_matches(selector, out):
        raise ValueError(f"no labels satisfy the selector {json.dumps(selector, sort_keys=True)}")
    return out


def label_patch(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str | None]:
    """A merge patch taking ``old`` labels to ``new`` (None removes); empty when equal."""
    patch: dict[str, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


# --- the plan and the record ------------------------------------------------------------


@dataclass(frozen=True)
class SourceRef:
    namespace: str
    name: str
    uid: str
    nodes: tuple[str, ...] = ()
    managed: bool = True  # a dsroll variant (else an object dsroll takes over)


@dataclass(frozen=True)
class ReplacementPlan:
    """One workload's orphan replacement, as ``plan`` shows it and ``rollout`` carries it out."""

    namespace: str
    workload: str
    operation: Operation
    reason: str
    sources: tuple[SourceRef, ...]
    targets: tuple[str, ...]
    placements: tuple[Placement, ...]
    backup: str
    stage: Stage | None = None  # the recorded stage when it continues one

    @property
    def resumes(self) -> bool:
        return self.stage is not None

    @property
    def unplaced(self) -> tuple[Placement, ...]:
        return tuple(p for p in self.placements if p.target is None)

    def adopted(self, target: str) -> tuple[str, ...]:
        return tuple(p.node for p in self.placements if p.target == target)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "workload": self.workload,
            "operation": self.operation.value,
            "reason": self.reason,
            "stage": self.stage.value if self.stage else None,
            "deletes": [
                {
                    "namespace": s.namespace,
                    "name": s.name,
                    "uid": s.uid,
                    "managed": s.managed,
                    "pods": len(s.nodes),
                    "nodes": list(s.nodes),
                }
                for s in self.sources
            ],
            "creates": list(self.targets),
            "adopts": {t: list(self.adopted(t)) for t in self.targets},
            "unplaced": [{**p.to_json(), "handling": "deleted"} for p in self.unplaced],
            "backup": {"configMap": self.backup},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplacementPlan:
        adopts = data.get("adopts") or {}
        placements = [Placement("", "", n, "", t) for t, nodes in adopts.items() for n in nodes]
        placements += [Placement(p["pod"], "", p["node"], p["source"], None, p["reason"]) for p in data["unplaced"]]
        return cls(
            namespace=data["namespace"],
            workload=data["workload"],
            operation=Operation(data["operation"]),
            reason=data["reason"],
            sources=tuple(
                SourceRef(s["namespace"], s["name"], s["uid"], tuple(s.get("nodes") or ()), s.get("managed", True))
                for s in data["deletes"]
            ),
            targets=tuple(data["creates"]),
            placements=tuple(placements),
            backup=data["backup"]["configMap"],
            stage=Stage(data["stage"]) if data.get("stage") else None,
        )


@dataclass(frozen=True)
class Record:
    """A replacement's progress, in the backup ConfigMap's ``dsroll.io/replacement`` annotation.

    ``sources`` are the objects saved in the backup (with the nodes their pods ran on, so a
    restore knows where each pod goes back to); ``targets`` the variants they became.
    """

    operation: Operation
    stage: Stage
    workload: str
    sources: tuple[SourceRef, ...]
    targets: tuple[str, ...]
    who: str
    commit: str | None = None
    file: str | None = None
    started_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    failure: str | None = None
    version: int = 1

    @property
    def finished(self) -> bool:
        return self.stage in FINISHED_STAGES

    def entering(self, stage: Stage, **changes: Any) -> Record:
        return replace(self, stage=stage, updated_at=now_iso(), **changes)

    def to_json(self) -> str:
        data = asdict(self)
        data["sources"] = [asdict(s) for s in self.sources]
        return camel_json(data)

    @classmethod
    def from_json(cls, text: str, where: str) -> Record:
        try:
            data = snake_fields(text, cls.__dataclass_fields__)
            data["operation"] = Operation(data["operation"])
            data["stage"] = Stage(data["stage"])
            data["sources"] = tuple(
                SourceRef(s["namespace"], s["name"], s["uid"], _strings(s.get("nodes") or []), s.get("managed", True))
                for s in data["sources"]
            )
            data["targets"] = _strings(data["targets"])
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ClusterError(f"{where}: annotation {RECORD_ANNOTATION} is not a dsroll replacement ({exc})") from None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def read_record(configmap: Mapping[str, Any]) -> Record | None:
    meta = configmap["metadata"]
    text = (meta.get("annotations") or {}).get(RECORD_ANNOTATION)
    return Record.from_json(text, f"configmap {meta['namespace']}/{meta['name']}") if text else None


def latest(records: Iterable[tuple[str, Record]]) -> tuple[str, Record] | None:
    """The most recent replacement of a workload: (ConfigMap name, record)."""
    return max(records, key=lambda item: (item[1].started_at, item[0]), default=None)
