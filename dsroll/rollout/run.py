"""The rollout commands' core: observe → plan, run a plan, status, history, requests.

``observe`` gathers what the pure planner needs from the cluster; ``execute`` hands each
variant's plan to the executor in order and stops at the first variant that does not
finish; the others read state for ``status``, ``history``, ``pause`` and ``abort``.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dsroll import orphans
from dsroll.classes import classify
from dsroll.config import Environment
from dsroll.diff import Change, DiffReport, against_live
from dsroll.errors import DsrollError, InputError
from dsroll.kube import Kube
from dsroll.labels import REQUEST_ANNOTATION, ROLLOUT_ANNOTATION
from dsroll.orphans import Operation
from dsroll.plan import (
    Action,
    LiveFingerprint,
    Plan,
    PodView,
    Policy,
    VariantPlan,
    plan_steps,
    plan_variant,
    pods_by_node,
)
from dsroll.render import Variant
from dsroll.rollout import backup, replacements
from dsroll.rollout import revisions as revs
from dsroll.rollout.executor import VariantRollout
from dsroll.rollout.handover import Handover
from dsroll.rollout.lease import Lease
from dsroll.rollout.outcome import Result, RunOptions, RunSummary, Target, VariantResult
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.state import (
    FINISHED,
    Phase,
    RolloutState,
    now_iso,
    read_request,
    read_state,
)
from dsroll.rollout.state import Operation as RolloutOperation


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


def _observe_pods(kube: Kube, live: Mapping[str, Any]) -> tuple[list[PodView], str | None]:
    meta = live["metadata"]
    pods, _ = kube.pods.list(meta["namespace"], revs.selector_string(live["spec"]["selector"]))
    owned = [p for p in pods if revs.owned_by(p, meta["uid"])]
    current = revs.current(revs.revisions(kube, live))
    return [PodView.of(p) for p in owned], current.hash if current else None


def _nodes(kube: Kube, env: Environment) -> tuple[dict[str, dict[str, str]], dict[str, str | None]]:
    """Every node's labels, and the class each belongs to."""
    labels = kube.nodes.labels()
    return labels, {name: classify(env.classes, lb)[1] for name, lb in labels.items()}


def replacements_for_diff(
    kube: Kube, env: Environment, variants: Sequence[Variant], report: DiffReport
) -> list[dict[str, Any]]:
    """The orphan replacements a live diff implies, as plan JSON with each target's steps."""
    labels, winners = _nodes(kube, env)
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
    labels, winners = _nodes(kube, env)
    manifests = {v.key: v.manifest for v in chosen}
    owned: dict[tuple[str, str], list[PodView]] = {}
    planned: list[VariantPlan] = []
    for diff in report.variants:
        if diff.change is Change.REMOVED and not scope.admits(diff.workload, diff.cls):
            continue
        key = (diff.namespace, diff.name)
        live = lives[key] if key in lives else kube.daemonsets.get(diff.namespace, diff.name)
        pods, current = _observe_pods(kube, live) if live else ([], None)
        lives[key], owned[key] = live, pods
        planned.append(
            plan_variant(
                diff,
                manifest=manifests.get((diff.namespace, diff.name)),
                live=live,
                pods=pods,
                current_revision=current,
                node_labels=labels,
                class_nodes=[n for n, w in winners.items() if w == diff.cls],
                policy=_policy(env, diff.workload, steps),
                state=read_state(live),
                partition=partition,
            )
        )
    seen = replacements.Observed(labels, winners, lives, report, owned)
    planned, found = replacements.fold(
        kube, env, variants, planned, seen,
        workloads=scope.workloads, classes=scope.classes,
        policy_of=lambda workload: _policy(env, workload, steps), partition=partition,
    )  # fmt: skip
    return Plan(env.name, kube.context, kube.server or "", commit, tuple(planned), tuple(found))


def execute(
    kube: Kube,
    plan: Plan,
    options: RunOptions,
    reporter: Reporter,
    *,
    prune: bool = False,
    targets: Mapping[tuple[str, str], Target] | None = None,
) -> RunSummary:
    """Run every variant's plan in order; stop at the first that does not finish.

    The members of an orphan replacement run together, as one handover, where the first
    of them comes in the plan. An error that would say "nothing was applied" (exit 2), or
    Ctrl-C, once this run has changed the cluster, ends the run as interrupted instead:
    the summary says how far it got, and running again continues from the state recorded
    in the cluster.
    """
    results: list[VariantResult] = []
    handed: set[str] = set()
    done: list[dict[str, Any]] = []
    by_name = {vp.name: vp for vp in plan.variants}
    writes = kube.writes
    in_flight: list[VariantPlan] = []
    rollout: VariantRollout | None = None
    try:
        for vp in plan.variants:
            if vp.action is Action.UNCHANGED or (vp.action is Action.PRUNE and not prune):
                if vp.action is Action.PRUNE:
                    reporter.emit("skipped", f"{vp.namespace}/{vp.name}", "no longer rendered; --prune deletes it")
                continue
            group = next((g for g in plan.replacements if vp.key in replacements.replaced_keys(g)), None)
            if group is not None:
                if group.backup in handed:
                    continue
                handed.add(group.backup)
                members = {t: by_name[t] for t in group.targets if t in by_name}
                runner = Handover(
                    kube, group, members, options, reporter, policy=vp.policy, environment=plan.environment,
                    backup_dir=options.backup_dir or backup.default_backup_dir(),
                )  # fmt: skip
                in_flight, rollout = list(members.values()) or [vp], None
                try:
                    results.extend(runner.run())
                finally:
                    done.append(runner.summary())
            elif vp.action is Action.ORPHAN_REPLACE:
                raise InputError(f"{vp.namespace}/{vp.name}: {vp.reason}, but the plan holds no replacement for it")
            else:
                target = (targets or {}).get(vp.key) or (Target(manifest=vp.manifest) if vp.applies else None)
                in_flight, rollout = [vp], VariantRollout(kube, vp, options, reporter, target)
                results.append(rollout.run())
            in_flight, rollout = [], None
            if results and results[-1].result.exit_code != 0:
                break
    except (DsrollError, KeyboardInterrupt) as exc:
        refused = isinstance(exc, KeyboardInterrupt) or exc.exit_code == InputError.exit_code
        if not refused or kube.writes == writes:
            raise
        cause = "stopped by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        for vp in in_flight:
            reporter.emit("interrupted", f"{vp.namespace}/{vp.name}", cause)
        if rollout is not None:
            results.append(rollout.interrupted(cause))
        else:
            results.extend(VariantResult(vp.namespace, vp.name, vp.action.value, Result.INTERRUPTED, message=cause)
                           for vp in in_flight)  # fmt: skip
        return RunSummary(
            plan.environment, options.operation.value, results, kube.requests, reporter.elapsed, False, done, cause
        )
    return RunSummary(plan.environment, options.operation.value, results, kube.requests, reporter.elapsed, False, done)


# --- rollback targets ------------------------------------------------------------------


def rollback_plan(
    kube: Kube,
    plan: Plan,
    *,
    to_revision: int | None,
    manifests: Mapping[tuple[str, str], Mapping[str, Any]] | None,
) -> tuple[Plan, dict[tuple[str, str], Target]]:
    """Retarget every live variant of ``plan`` at a previous revision or a git render.

    A variant an orphan replacement created, with no revision of its own to go back to,
    and a replacement not finished, are rolled back by restoring the backup instead.
    """
    variants, targets = [], {}
    plain = to_revision is None and manifests is None
    restores = {
        r.backup: replace(
            r,
            operation=Operation.restore,
            reason=f"restores {', '.join(s.name for s in r.sources)} from configmap {r.backup} (stopped at {r.stage})",
        )
        for r in plan.replacements
        if r.resumes and plain
    }
    for vp in plan.variants:
        group = next((r for r in restores.values() if vp.key in replacements.replaced_keys(r)), None)
        if group is not None:
            variants.append(replace(vp, action=Action.ORPHAN_REPLACE, reason=group.reason, pending=(), steps=()))
            continue
        if vp.live.uid is None:
            continue
        live = kube.daemonsets.get(vp.namespace, vp.name)
        assert live is not None
        history = revs.revisions(kube, live)
        where = f"{vp.namespace}/{vp.name}"
        state = read_state(live)
        if plain and state is not None and state.replacement and len(history) < 2:
            found = replacements.restore_of(kube, vp.namespace, state.replacement, vp.workload or "")
            if found is not None:
                restores.setdefault(found.backup, found)
                variants.append(replace(vp, action=Action.ORPHAN_REPLACE, reason=found.reason, pending=(), steps=()))
                continue
        if manifests is not None:
            if vp.key not in manifests:
                raise InputError(f"{where}: not part of the environment at that git ref")
            target = Target(manifest=manifests[vp.key])
            reason, target_hash = "rollback to the render at git ref", None
        else:
            if to_revision is not None:
                revision = revs.by_number(history, to_revision, where)
            elif continued := _unfinished_rollback(state, history):
                revision = continued  # a rollback cut off half-way goes on to where it was going
            elif state is not None and not state.finished and state.previous_revision:
                revision = next((r for r in history if r.hash == state.previous_revision), None) or revs.previous(
                    history, where
                )
            else:
                revision = revs.previous(history, where)
            target = Target(revision=revision)
            reason, target_hash = f"rollback to revision {revision.number} ({revision.hash})", revision.hash
        pods, _ = _observe_pods(kube, live)
        on_node = pods_by_node(pods)
        pending = tuple(
            n for n in vp.nodes if target_hash is None or getattr(on_node.get(n), "revision", None) != target_hash
        )
        steps = plan_steps(vp.nodes, pending, vp.policy, vp.partition)
        variants.append(replace(vp, action=Action.UPDATE, reason=reason, pending=pending, steps=steps, applies=True))
        targets[vp.key] = target
    return replace(plan, variants=tuple(variants), replacements=tuple(restores.values())), targets


def _unfinished_rollback(state: RolloutState | None, history: Sequence[revs.Revision]) -> revs.Revision | None:
    """The target of a ``rollback`` that did not finish (its previous revision is the one it left)."""
    if state is None or state.finished or state.operation is not RolloutOperation.rollback:
        return None
    return next((r for r in history if r.hash == state.target_revision), None)


# --- status, history, pause/abort -----------------------------------------------------


def status(kube: Kube, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        live = kube.daemonsets.get(variant.namespace, variant.name)
        row: dict[str, Any] = {"namespace": variant.namespace, "name": variant.name, "deployed": live is not None}
        if live is not None:
            pods, current = _observe_pods(kube, live)
            on_node = pods_by_node(pods)
            state = read_state(live)
            row.update(
                revision=current,
                nodesTotal=len(on_node),
                nodesUpdated=sum(1 for p in on_node.values() if p.revision == current and not p.terminating),
                nodesReady=sum(1 for p in on_node.values() if p.ready and not p.terminating),
                updateStrategy=((live.get("spec") or {}).get("updateStrategy") or {}).get("type"),
                request=read_request(live),
                rollout=json.loads(state.to_json()) if state else None,
            )
        rows.append(row)
    return rows


def replacement_status(kube: Kube, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """The latest orphan replacement recorded for each workload of ``variants``."""
    rows = []
    for namespace, workload in sorted({(v.namespace, v.workload) for v in variants}):
        found = orphans.latest((cm["metadata"]["name"], rec) for cm, rec in backup.records(kube, namespace, workload))
        if found is None:
            continue
        name, record = found
        rows.append(
            {
                "namespace": namespace,
                "workload": workload,
                "configMap": name,
                "operation": record.operation.value,
                "stage": record.stage.value,
                "deletes": [s.name for s in record.sources],
                "creates": list(record.targets),
                "who": record.who,
                "startedAt": record.started_at,
                "updatedAt": record.updated_at,
                "failure": record.failure,
                "file": record.file,
            }
        )
    return rows


def history(kube: Kube, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        live = kube.daemonsets.get(variant.namespace, variant.name)
        found = revs.revisions(kube, live) if live else []
        current = revs.current(found)
        rows.append(
            {
                "namespace": variant.namespace,
                "name": variant.name,
                "deployed": live is not None,
                "currentRevision": current.number if current else None,
                "revisions": [r.to_json() for r in found],
            }
        )
    return rows


def request(kube: Kube, variants: Sequence[Variant], action: str, by: str) -> list[dict[str, Any]]:
    """`pause` / `abort`: ask the running rollout, or mark the saved state when none runs."""
    rows = []
    for variant in variants:
        live = kube.daemonsets.get(variant.namespace, variant.name)
        state = read_state(live)
        row = {"namespace": variant.namespace, "name": variant.name, "action": action}
        if state is None or state.phase in FINISHED:
            rows.append({**row, "result": "none", "message": "no rollout in progress"})
            continue
        lease = Lease(kube.leases, variant.namespace, variant.name)
        try:
            lease.acquire()
        except DsrollError:
            ask = json.dumps({"action": action, "by": by, "at": now_iso()})
            kube.daemonsets.annotate(variant.namespace, variant.name, {REQUEST_ANNOTATION: ask})
            message = f"asked the running rollout to {action} after the batch in flight"
            rows.append({**row, "result": "requested", "message": message})
            continue
        try:
            phase = Phase.paused if action == "pause" else Phase.aborted
            if action == "pause" and state.phase in (Phase.paused, Phase.awaiting_approval, Phase.partitioned):
                rows.append({**row, "result": "none", "message": f"already stopped (phase {state.phase})"})
                continue
            moved = state.moved(phase, in_flight=())
            annotations = {ROLLOUT_ANNOTATION: moved.to_json(), REQUEST_ANNOTATION: None}
            kube.daemonsets.annotate(variant.namespace, variant.name, annotations)
            rows.append({**row, "result": phase.value, "message": f"marked {phase.value} (no rollout was running)"})
        finally:
            lease.release()
    return rows


def moved_since(kube: Kube, saved: Plan) -> list[str]:
    """What changed in the cluster since ``saved`` was made (empty: it can run as planned)."""
    if saved.server and kube.server and saved.server != kube.server:
        return [f"the plan was made against {saved.server}, this is {kube.server}"]
    found = []
    for vp in saved.variants:
        live = kube.daemonsets.get(vp.namespace, vp.name)
        pods, current = _observe_pods(kube, live) if live else ([], None)
        meta = (live or {}).get("metadata") or {}
        nodes = tuple(sorted(pods_by_node(pods)))
        now = LiveFingerprint(meta.get("uid"), meta.get("generation"), current, nodes)
        found.extend(vp.live.moves(now, f"{vp.namespace}/{vp.name}"))
    return found
