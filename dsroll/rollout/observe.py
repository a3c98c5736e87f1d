"""What the cluster holds, read for planning: ``observe`` a plan, ``drift_since`` a saved one.

``observe`` gathers what the pure planner needs (live DaemonSets, their revisions and
owned pods, node labels) and hands it to ``plan_variant`` and the orphan-replacement
fold; ``drift_since`` re-reads the same facts and asks ``decide.drift`` whether a saved
plan still holds.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsroll.classes import classify
from dsroll.config import Environment
from dsroll.diff import Change, DiffReport, against_live
from dsroll.errors import InputError
from dsroll.kube.resources import FIELD_MANAGER
from dsroll.plan import LiveFingerprint, Plan, PodView, Policy, VariantPlan, plan_variant, pods_by_node
from dsroll.render import Variant
from dsroll.rollout import decide, replacements
from dsroll.rollout import revisions as revs
from dsroll.rollout.external import Applied, RevisionRef, last_writer, stable_revision
from dsroll.rollout.fleet import NodeView, slim_node
from dsroll.rollout.store import Record, store_for
from dsroll.rollout.view import slim_pod

if TYPE_CHECKING:
    from dsroll.kube import Kube


@dataclass(frozen=True)
class Scope:
    """``--workload`` / ``--class``: which variants a command acts on (empty = all)."""

    workloads: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def check(self, env: Environment) -> None:
        known_w, known_c = {w.name for w in env.workloads}, {c.name for c in env.classes}
        for flag, given, known in (("--workload", self.workloads, known_w), ("--class", self.classes, known_c)):
            for name in given:
                if name not in known:
                    raise InputError(f"{flag} {name!r}: not in {env.file} (has: {', '.join(sorted(known))})")

    def admits(self, workload: str | None, cls: str | None) -> bool:
        return (not self.workloads or workload in self.workloads) and (not self.classes or cls in self.classes)

    def select(self, variants: Sequence[Variant]) -> list[Variant]:
        return [v for v in variants if self.admits(v.workload, v.cls)]


def who(kube: Kube) -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} (cluster user {kube.whoami()})"


def _policy(env: Environment, workload: str | None, steps: Sequence[str] | None) -> Policy:
    found = next((w for w in env.workloads if w.name == workload), None)
    return Policy.of(found.rollout if found else env.rollout, steps)


def record(kube: Kube, live: Mapping[str, Any] | None, applier: str) -> Record:
    """The rollout record of a live variant, from where its applier keeps it (``store.py``)."""
    if not live:
        return Record(None)
    meta = live["metadata"]
    return store_for(kube, meta["namespace"], meta["name"], applier).load(live)


def applied(
    kube: Kube, live: Mapping[str, Any], pods: Sequence[PodView], found: Record, *, matches_render: bool
) -> Applied | None:
    """``applier: external``: the revision the applier made current, the stable one a rollout
    conducts from (``external.stable_revision``), and who applied it."""
    history = revs.revisions(kube, live)
    current = revs.current(history)
    if current is None:
        return None
    recorded: list[str | None] = [found.stable.revision if found.stable else None]
    if found.state is not None and not found.state.finished:
        recorded.append(found.state.previous_revision)
    stable = stable_revision(current.hash, [r.hash for r in history], [p.revision for p in pods], recorded)
    by_hash = {r.hash: r for r in history}
    manager, operation, time = last_writer(live, FIELD_MANAGER)
    return Applied(
        RevisionRef(current.number, current.hash, current.commit),
        RevisionRef(by_hash[stable].number, stable, by_hash[stable].commit) if stable else None,
        manager,
        operation,
        time,
        matches_render,
    )


def observe_pods(kube: Kube, live: Mapping[str, Any]) -> tuple[list[PodView], str | None]:
    meta = live["metadata"]
    pods, _ = kube.pods.list(meta["namespace"], revs.selector_string(live["spec"]["selector"]), slim_pod)
    owned = [p for p in pods if revs.owned_by(p, meta["uid"])]
    current = revs.current(revs.revisions(kube, live))
    return [PodView.of(p) for p in owned], current.hash if current else None


def _nodes(
    kube: Kube, env: Environment
) -> tuple[dict[str, dict[str, str]], dict[str, str | None], dict[str, NodeView]]:
    """Every node's labels, the class each belongs to, and what a rollout needs to know of it."""
    nodes = kube.nodes.list(transform=slim_node)
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
    views = {n["metadata"]["name"]: NodeView.of(n) for n in nodes}
    return labels, {name: classify(env.classes, lb)[1] for name, lb in labels.items()}, views


def replacements_for_diff(
    kube: Kube, env: Environment, variants: Sequence[Variant], report: DiffReport
) -> list[dict[str, Any]]:
    """The orphan replacements a live diff implies, as plan JSON with each target's steps."""
    labels, winners, _ = _nodes(kube, env)
    seen = replacements.Observed(labels, winners, {}, report)
    members, found = replacements.fold(
        kube, env, variants, [], seen, workloads=(), classes=(),
        policy_of=lambda workload: _policy(env, workload, None), partition=None,
    )  # fmt: skip
    steps = {vp.name: [list(s.nodes) for s in vp.steps] for vp in members}
    return [{**r.to_json(), "steps": {t: steps.get(t, []) for t in r.targets}} for r in found]


def observe(
    kube: Kube,
    env: Environment,
    variants: Sequence[Variant],
    scope: Scope,
    *,
    partition: str | None = None,
    steps: Sequence[str] | None = None,
    commit: str | None = None,
) -> Plan:
    """Plan the scoped variants of ``env`` from live state."""
    scope.check(env)
    chosen = scope.select(variants)
    lives = {v.key: kube.daemonsets.get(v.namespace, v.name) for v in chosen}
    report = against_live(env, chosen, kube, lives)
    labels, winners, views = _nodes(kube, env)
    manifests = {v.key: v.manifest for v in chosen}
    owned: dict[tuple[str, str], list[PodView]] = {}
    planned: list[VariantPlan] = []
    for diff in report.variants:
        if diff.change is Change.REMOVED and not scope.admits(diff.workload, diff.cls):
            continue
        key = (diff.namespace, diff.name)
        live = lives[key] if key in lives else kube.daemonsets.get(diff.namespace, diff.name)
        pods, current = observe_pods(kube, live) if live else ([], None)
        lives[key], owned[key] = live, pods
        policy = _policy(env, diff.workload, steps)
        found = record(kube, live, policy.applier)
        matches = diff.change not in (Change.POD_TEMPLATE, Change.SELECTOR)
        planned.append(
            plan_variant(
                diff,
                manifest=manifests.get((diff.namespace, diff.name)),
                live=live,
                pods=pods,
                current_revision=current,
                node_labels=labels,
                class_nodes=[n for n, w in winners.items() if w == diff.cls],
                policy=policy,
                state=found.state,
                partition=partition,
                node_views=views,
                applied=applied(kube, live, pods, found, matches_render=matches) if live and policy.external else None,
            )
        )
    seen = replacements.Observed(labels, winners, lives, report, owned)
    planned, found = replacements.fold(
        kube, env, variants, planned, seen,
        workloads=scope.workloads, classes=scope.classes,
        policy_of=lambda workload: _policy(env, workload, steps), partition=partition,
    )  # fmt: skip
    return Plan(env.name, kube.context, kube.server or "", commit, tuple(planned), tuple(found))


def fingerprints(kube: Kube, saved: Plan) -> dict[tuple[str, str], LiveFingerprint]:
    """The saved plan's variants as they are now: what ``decide.drift`` compares."""
    found = {}
    for vp in saved.variants:
        live = kube.daemonsets.get(vp.namespace, vp.name)
        pods, current = observe_pods(kube, live) if live else ([], None)
        meta = (live or {}).get("metadata") or {}
        nodes = tuple(sorted(pods_by_node(pods)))
        found[vp.key] = LiveFingerprint(meta.get("uid"), meta.get("generation"), current, nodes)
    return found


def drift_since(kube: Kube, saved: Plan) -> list[str]:
    """What changed in the cluster since ``saved`` was made (empty: it can run as planned)."""
    if saved.server and kube.server and saved.server != kube.server:
        return decide.drift(saved, {}, kube.server)  # another cluster: no need to read this one
    return decide.drift(saved, fingerprints(kube, saved), kube.server)
