"""(desired, observed) → Plan. Pure: no I/O, so `plan` and `rollout` share every decision.

A ``Plan`` says per variant what will happen (create, update with node replacement,
in-place change, orphan replacement, prune, nothing) and cuts the variant's nodes into
the configured steps and batches. It is a value: printed by ``plan``, saved with
``--out``, and re-checked against a fresh observation before ``rollout --plan`` acts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import zip_longest
from typing import Any

from dsroll.config import RolloutPolicy
from dsroll.diff import Change, VariantDiff
from dsroll.errors import InputError
from dsroll.labels import REVISION_LABEL, ZONE_LABEL
from dsroll.namespaces import NamespaceStatus, to_create
from dsroll.orphans import ReplacementPlan
from dsroll.rollout.external import Applied
from dsroll.rollout.fleet import NodeView, skipped_at_start
from dsroll.rollout.state import Phase, RolloutState, SkippedNode, created_after

_DECIMAL = re.compile(r"[0-9]+")


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    IN_PLACE = "in-place"
    ORPHAN_REPLACE = "orphan-replace"
    PRUNE = "prune"
    RESTART = "restart"  # every pod replaced in steps, the template unchanged (`dsroll restart`)
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PodView:
    """The facts about one daemon pod that rollout decisions need."""

    name: str
    uid: str
    node: str
    revision: str | None
    ready: bool
    terminating: bool
    created: str | None = None  # creationTimestamp: a restart replaces the pods created before it began

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodView:
        meta, status = pod["metadata"], pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return cls(
            name=meta["name"],
            uid=meta["uid"],
            node=node_of(pod),
            revision=(meta.get("labels") or {}).get(REVISION_LABEL),
            ready=ready,
            terminating=bool(meta.get("deletionTimestamp")),
            created=meta.get("creationTimestamp"),
        )


def node_of(pod: Mapping[str, Any]) -> str:
    """The node a daemon pod runs on, or is meant for while the scheduler has not bound it
    (or cannot: a taken hostPort, too little cpu): the DaemonSet controller pins each pod to
    its node with a required ``matchFields`` affinity on ``metadata.name``."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        for pin in term.get("matchFields") or []:
            values = pin.get("values") or []
            if pin.get("key") == "metadata.name" and pin.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def pods_by_node(pods: Iterable[PodView]) -> dict[str, PodView]:
    """The live (non-terminating) pod of each node; a terminating one only where nothing else is."""
    result: dict[str, PodView] = {}
    for pod in sorted(pods, key=lambda p: p.terminating, reverse=True):
        if pod.node:
            result[pod.node] = pod
    return result


@dataclass(frozen=True)
class Policy:
    """A variant's rollout policy with the command-line overrides applied."""

    steps: tuple[str, ...]
    max_unavailable: int | str
    pause: str
    ready_timeout: str
    min_ready_seconds: int
    on_failure: str
    canary_node_selector: Mapping[str, str] = field(default_factory=dict)
    unready_nodes: str = "skip"
    applier: str = "dsroll"  # rollout.applier: dsroll | external (docs/gitops.md)

    @property
    def external(self) -> bool:
        """Another hand applies the spec: dsroll never writes the DaemonSet, it replaces pods."""
        return self.applier == "external"

    @classmethod
    def of(cls, policy: RolloutPolicy, steps: Sequence[str] | None = None) -> Policy:
        return cls(
            steps=tuple(str(s) for s in (steps or policy.steps or ["100%"])),
            max_unavailable=policy.max_unavailable or 1,
            pause=str(policy.pause if policy.pause is not None else "manual"),
            ready_timeout=policy.ready_timeout or "5m",
            min_ready_seconds=policy.min_ready_seconds or 0,
            on_failure=policy.on_failure or "rollback",
            canary_node_selector=dict(policy.canary_node_selector or {}),
            unready_nodes=policy.unready_nodes or "skip",
            applier=policy.applier or "dsroll",
        )


def parse_steps(text: str) -> tuple[str, ...]:
    """``--steps 1,25%,100%``: cumulative counts or percentages, growing, ending at 100%."""
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    for step in steps:
        number = step.removesuffix("%")
        if not _DECIMAL.fullmatch(number) or int(number) < 1 or (step.endswith("%") and int(number) > 100):
            raise InputError(f'--steps {text!r}: {step!r} is not a node count ("1") or a percentage ("10%")')
    if not steps or steps[-1] != "100%":
        raise InputError(f'--steps {text!r}: the last step must be "100%"')
    for percent in (False, True):
        sizes = [int(s.removesuffix("%")) for s in steps if s.endswith("%") is percent]
        if sizes != sorted(set(sizes)):
            raise InputError(f"--steps {text!r}: steps are cumulative and must grow")
    return steps


def count_of(spec: str | int, total: int) -> int:
    """A step or partition as a node count: "N" is N, "P%" is ceil(P % of total); clamped."""
    text = str(spec)
    if text.endswith("%"):
        return min(total, math.ceil(int(text[:-1]) * total / 100))
    return min(total, int(text))


def resolve_steps(specs: Sequence[str], total: int, cap: int | None = None) -> tuple[int, ...]:
    """Cumulative node counts per step, capped by a partition, without empty steps."""
    limit = total if cap is None else min(cap, total)
    counts: list[int] = []
    for spec in specs:
        count = min(count_of(spec, total), limit)
        if count > (counts[-1] if counts else 0):
            counts.append(count)
    if limit and (not counts or counts[-1] < limit):
        counts.append(limit)
    return tuple(counts)


def resolve_partition(text: str | None, total: int) -> int | None:
    """``--partition N|P%``: nodes kept on the old revision (P % rounds down)."""
    if text is None:
        return None
    number = text.removesuffix("%")
    if not _DECIMAL.fullmatch(number) or (text.endswith("%") and int(number) > 100):
        raise InputError(f"--partition {text!r}: use a node count (2) or a percentage (25%)")
    if text.endswith("%"):
        return math.floor(int(number) * total / 100)
    return min(int(number), total)


def resolve_max_unavailable(value: int | str, total: int) -> int:
    """Like the DaemonSet controller: a percentage rounds up; never below 1."""
    if isinstance(value, str) and value.endswith("%"):
        return max(1, math.ceil(int(value[:-1]) * total / 100))
    return max(1, int(value))


def order_nodes(labels: Mapping[str, Mapping[str, str]], canary: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Canary nodes first (by name), then round-robin across zones, each zone by name.

    Deterministic in the node labels alone, so separate runs agree.
    """
    selector = dict(canary or {})
    first = sorted(n for n, lb in labels.items() if selector and all(lb.get(k) == v for k, v in selector.items()))
    zones: dict[str, list[str]] = {}
    for name in sorted(set(labels) - set(first)):
        zones.setdefault(labels[name].get(ZONE_LABEL, ""), []).append(name)
    spread = [n for group in zip_longest(*(zones[z] for z in sorted(zones))) for n in group if n is not None]
    return (*first, *spread)


def resume_order(order: Sequence[str], behind: Collection[str]) -> tuple[str, ...]:
    """The order a resumed rollout carries on in: the nodes already done (not ``behind``)
    first, then the rest, each in ``order``.

    The rollout state records no node order (it would grow with the fleet): ``order_nodes``
    recomputes it from the labels, and putting the done nodes first keeps every step a
    window that holds all of them, so a resumed step never updates more nodes than its
    count, even when labels changed (a zone, the canary label) or nodes came and went.
    Where nothing changed the nodes done were a prefix of the order already (but for
    nodes taken early because their pod was down), so the order is the same."""
    late = set(behind)
    return (*(n for n in order if n not in late), *(n for n in order if n in late))


def batches(nodes: Sequence[str], size: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(nodes[i : i + size]) for i in range(0, len(nodes), size))


@dataclass(frozen=True)
class StepPlan:
    """One step as the run carries it out: its count and nodes are what the executor does.

    ``batches`` is a forecast that assumes every node takes as long: live, a slot freed
    early is refilled with the next node in this order, and where the run departs from
    the order (a node already without a Ready pod goes first; a node not in the plan) it
    says so (``decide.Batch.off_plan``)."""

    number: int
    count: int  # cumulative nodes on the new revision after this step
    nodes: tuple[str, ...]  # nodes replaced in this step
    batches: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class LiveFingerprint:
    """What must not have moved between `plan --out` and `rollout --plan`."""

    uid: str | None
    generation: int | None
    revision: str | None
    nodes: tuple[str, ...]

    def drift(self, now: LiveFingerprint, name: str) -> list[str]:
        """What moved between this fingerprint and ``now`` (``decide.drift`` asks it per variant)."""
        found = []
        if self.uid != now.uid:
            found.append(f"{name}: {'created' if self.uid is None else 'deleted or recreated'} since the plan")
        elif self.generation != now.generation:
            found.append(f"{name}: spec changed since the plan (generation {self.generation} → {now.generation})")
        elif self.revision != now.revision:
            found.append(f"{name}: current revision {self.revision} → {now.revision} since the plan")
        added, gone = sorted(set(now.nodes) - set(self.nodes)), sorted(set(self.nodes) - set(now.nodes))
        if added:
            found.append(f"{name}: nodes added since the plan: {', '.join(added)}")
        if gone:
            found.append(f"{name}: nodes gone since the plan: {', '.join(gone)}")
        return found


@dataclass(frozen=True)
class VariantPlan:
    namespace: str
    name: str
    workload: str | None
    cls: str | None
    action: Action
    reason: str
    changed_paths: tuple[str, ...]
    policy: Policy
    nodes: tuple[str, ...]  # the variant's nodes in rollout order
    pending: tuple[str, ...]  # nodes whose pod must be replaced
    steps: tuple[StepPlan, ...]
    partition: int | None
    live: LiveFingerprint
    manifest: Mapping[str, Any] | None
    resumes: bool = False  # continues a rollout recorded in the cluster
    applies: bool = False  # the rendered template differs from the live one: apply it first
    skipped: tuple[SkippedNode, ...] = ()  # held, or not Ready with unreadyNodes: skip, as planned
    applied: Applied | None = None  # applier: external: the revision conducted, from which, applied by whom

    @property
    def updatable(self) -> int:
        return len(self.nodes) - len({s.node for s in self.skipped})

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def plan_steps(
    order: Sequence[str], pending: Iterable[str], policy: Policy, partition: int | None
) -> tuple[StepPlan, ...]:
    """Cut the ordered nodes into cumulative steps; each step replaces its pending nodes in batches."""
    total = len(order)
    cap = None if partition is None else max(0, total - partition)
    size = resolve_max_unavailable(policy.max_unavailable, total)
    todo = set(pending)
    steps, previous = [], 0
    for number, count in enumerate(resolve_steps(policy.steps, total, cap), start=1):
        nodes = tuple(n for n in order[previous:count] if n in todo)
        steps.append(StepPlan(number, count, nodes, batches(nodes, size)))
        previous = count
    return tuple(steps)


def plan_variant(
    diff: VariantDiff,
    *,
    manifest: Mapping[str, Any] | None,
    live: Mapping[str, Any] | None,
    pods: Sequence[PodView],
    current_revision: str | None,
    node_labels: Mapping[str, Mapping[str, str]],
    class_nodes: Sequence[str],
    policy: Policy,
    state: RolloutState | None,
    partition: str | None,
    node_views: Mapping[str, NodeView] | None = None,
    applied: Applied | None = None,
) -> VariantPlan:
    """Decide one variant's action and its node batches from what is desired and what is live.

    Nodes held, or not Ready under ``unreadyNodes: skip``, are forecast as skipped (as the
    rollout will find them if nothing changes) and left out of the steps."""
    on_node = pods_by_node(pods)
    known = {n: node_labels.get(n, {}) for n in (on_node if live is not None else class_nodes)}
    order = order_nodes(known, policy.canary_node_selector)
    unfinished = state is not None and not state.finished
    since = state.restarted_at if unfinished and state is not None else None  # an unfinished restart
    behind = tuple(
        n
        for n in order
        if on_node.get(n) is None
        or on_node[n].revision != current_revision
        or not created_after(on_node[n].created, since)
    )
    if unfinished:
        order = resume_order(order, behind)
    if policy.external:
        action, reason, pending = _decide_external(diff, live, state, unfinished, behind, applied)
    else:
        action, reason, pending = _decide(diff, live, state, unfinished, order, behind)
    skipped: tuple[SkippedNode, ...] = ()
    if action is Action.UPDATE and node_views is not None:
        skipped = skipped_at_start(order, node_views.get, policy.unready_nodes)
    left = {s.node for s in skipped}
    updatable = tuple(n for n in order if n not in left)
    kept = resolve_partition(partition, len(updatable)) if action is Action.UPDATE else None
    steps = (
        plan_steps(updatable, [n for n in pending if n not in left], policy, kept) if action is Action.UPDATE else ()
    )
    meta = (live or {}).get("metadata") or {}
    return VariantPlan(
        namespace=diff.namespace,
        name=diff.name,
        workload=diff.workload,
        cls=diff.cls,
        action=action,
        reason=reason,
        changed_paths=diff.changed_paths,
        policy=policy,
        nodes=order,
        pending=pending,
        steps=steps,
        partition=kept,
        live=LiveFingerprint(meta.get("uid"), meta.get("generation"), current_revision, tuple(sorted(on_node))),
        manifest=manifest,
        resumes=unfinished,
        applies=action is Action.UPDATE and diff.change is Change.POD_TEMPLATE and not policy.external,
        skipped=skipped,
        applied=applied if live is not None else None,
    )


def _decide(
    diff: VariantDiff,
    live: Mapping[str, Any] | None,
    state: RolloutState | None,
    unfinished: bool,
    order: Sequence[str],
    behind: Sequence[str],
) -> tuple[Action, str, tuple[str, ...]]:
    if diff.change is Change.REMOVED:
        return Action.PRUNE, "live variant is no longer rendered (deleted only with --prune)", ()
    if live is None:
        return Action.CREATE, "new variant: created as rendered, nothing to replace", ()
    if diff.change is Change.SELECTOR:
        return Action.ORPHAN_REPLACE, "selector changed (immutable): needs orphan replacement", tuple(order)
    if diff.change is Change.POD_TEMPLATE:
        return Action.UPDATE, "pod template changed: pods are replaced in steps", tuple(order)
    if unfinished and state is not None:
        what = "rollback" if state.phase in (Phase.rolling_back, Phase.rolled_back) else state.operation.value
        if state.phase in (Phase.complete, Phase.rolled_back):
            return (
                Action.UPDATE,
                f"finishes the {what} recorded in the cluster: it skipped {len(behind)} node(s)",
                (tuple(behind)),
            )
        return Action.UPDATE, f"continues the {what} recorded in the cluster (phase {state.phase})", tuple(behind)
    if behind:
        return Action.UPDATE, f"{len(behind)} node(s) not on the current revision", tuple(behind)
    if diff.change in (Change.SPEC, Change.METADATA):
        return Action.IN_PLACE, f"{diff.change.describe}", ()
    return Action.UNCHANGED, "live matches the render", ()


def _decide_external(
    diff: VariantDiff,
    live: Mapping[str, Any] | None,
    state: RolloutState | None,
    unfinished: bool,
    behind: Sequence[str],
    applied: Applied | None,
) -> tuple[Action, str, tuple[str, ...]]:
    """``applier: external``: the applier creates, changes and prunes the DaemonSet; dsroll
    conducts the revision it finds (docs/gitops.md). Nothing here writes the spec."""
    if diff.change is Change.REMOVED:
        return Action.PRUNE, "no longer rendered: the applier prunes it (dsroll never deletes it)", ()
    if live is None:
        return Action.CREATE, "not applied yet: the applier creates it; dsroll waits for its pods to be Ready", ()
    if diff.change is Change.SELECTOR:
        reason = "selector changed (immutable): no orphan replacement under an external applier"
        return Action.ORPHAN_REPLACE, reason, ()
    target = f"{applied.target}" if applied else "the current revision"
    if unfinished and state is not None:
        moved = applied is not None and state.target_revision not in ("", applied.target.hash)
        if moved:
            return (
                Action.UPDATE,
                f"the applier applied {target} while the rollout of {state.target_revision} was unfinished "
                f"(phase {state.phase}): `rollout` conducts it instead, `resume` stops",
                tuple(behind),
            )
        return Action.UPDATE, f"continues the rollout recorded in the cluster (phase {state.phase})", tuple(behind)
    if behind:
        return Action.UPDATE, f"{len(behind)} node(s) not on {target}", tuple(behind)
    status = live.get("status") or {}
    desired, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
    fresh = state is None and (applied is None or applied.stable is None)  # one revision, never conducted
    if fresh and (ready < desired or (applied is not None and applied.matches_render)):
        return (
            Action.CREATE,
            f"created by the applier: waits until its {desired} pod(s) are Ready ({ready} now), then records "
            "its revision as the stable one",
            (),
        )
    if diff.change is Change.POD_TEMPLATE:
        return (
            Action.UNCHANGED,
            "the render differs from the live pod template: not applied yet (`rollout --wait-applied` waits for it)",
            (),
        )
    if diff.change in (Change.SPEC, Change.METADATA):
        return Action.UNCHANGED, f"{diff.change.describe}: the applier's to apply", ()
    return Action.UNCHANGED, "live matches the render", ()


@dataclass(frozen=True)
class Plan:
    environment: str
    context: str
    server: str
    commit: str | None
    variants: tuple[VariantPlan, ...]
    replacements: tuple[ReplacementPlan, ...] = ()
    namespaces: tuple[NamespaceStatus, ...] = ()  # where the variants live, and what a rollout does about each

    @property
    def has_changes(self) -> bool:
        return bool(to_create(self.namespaces)) or any(v.action is not Action.UNCHANGED for v in self.variants)
