"""Rollback targets, observed: read each variant's history, state and pods, and ask
``decide.rollback_target`` / ``decide.pending`` which revision (or git render) it goes
back to and on which nodes.

A variant an orphan replacement created, with no revision of its own to go back to, and
a replacement not finished, are rolled back by restoring the backup instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dsroll.errors import InputError
from dsroll.orphans import Operation
from dsroll.plan import Action, Plan, plan_steps, pods_by_node
from dsroll.rollout import decide, replacements
from dsroll.rollout import revisions as revs
from dsroll.rollout.observe import observe_pods
from dsroll.rollout.outcome import Target
from dsroll.rollout.state import read_state

if TYPE_CHECKING:
    from dsroll.kube import Kube


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
            revision = decide.rollback_target(history, state, to_revision, where)
            target = Target(revision=revision)
            reason, target_hash = f"rollback to revision {revision.number} ({revision.hash})", revision.hash
        pods, _ = observe_pods(kube, live)
        pending = decide.pending(vp.nodes, pods_by_node(pods).get, target_hash)
        steps = plan_steps(vp.nodes, pending, vp.policy, vp.partition)
        variants.append(replace(vp, action=Action.UPDATE, reason=reason, pending=pending, steps=steps, applies=True))
        targets[vp.key] = target
    return replace(plan, variants=tuple(variants), replacements=tuple(restores.values())), targets
