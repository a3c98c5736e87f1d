"""A restart, the pure part: every pod replaced in the rollout's steps, the template unchanged.

``dsroll restart ENV`` is ``kubectl rollout restart`` done the staged way, for a rotated
certificate or a stuck agent: the same steps, batches, health gates, pauses, partition,
Lease and state as a rollout, but nothing is applied. kubectl restarts by writing a
``restartedAt`` annotation into the pod template; that makes a new ControllerRevision,
and the next apply of the rendered files would remove it and restart every pod again
(and ``diff`` and ``render --check`` would see drift meanwhile). So dsroll leaves the
DaemonSet's spec alone and tells restarted pods from the others by time instead.

The clock. The state records ``restartedAt``: the API server's time when the restart
began (the ``Date`` of its answer, whole seconds, as every Kubernetes timestamp), and a
node counts as done when its live pod on the current revision was created *after* it.
Pods created at or before it are deleted in steps. ``creationTimestamp`` has a resolution
of one second, so a pod created in the very second of ``restartedAt`` could be either;
the first pod is therefore deleted only once the API server's clock has passed that
second (``clock_past``). Then every replacement the restart causes is created later
than ``restartedAt`` and is never restarted twice, and every pod that existed when the
restart began was created at or before it and is never missed. A pod created meanwhile
by someone else (a new node, a pod deleted by hand) counts as restarted: it is new.

This module decides which variants a restart takes and from where (``restart_plan``),
refusing — before anything is changed — a variant whose render differs from its live
template (that is a rollout), one with a rollout or rollback unfinished, one with nodes
not on the current revision (deleting their pods would move them to it), and a pending
orphan replacement; a variant not deployed is skipped. ``onFailure: rollback`` has no
revision to go back to in a restart, so it pauses (``on_failure``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from dsroll.errors import InputError
from dsroll.plan import Action, Plan, VariantPlan, plan_steps, resolve_partition
from dsroll.rollout.state import RolloutState, RunKind


def on_failure(policy: str) -> str:
    """A restart's ``onFailure``: ``rollback`` pauses instead (every node already runs the only
    revision there is, so there is nothing to go back to); ``pause`` and ``abort`` as they are."""
    return "pause" if policy == "rollback" else policy


def timestamp(moment: datetime) -> str:
    """A moment as Kubernetes writes timestamps: UTC, whole seconds (truncated)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_past(server_now: datetime, restarted_at: str) -> bool:
    """Whether the API server's clock (read to the second) has passed the recorded second, so
    that a pod created from now on has a ``creationTimestamp`` later than ``restartedAt``."""
    return timestamp(server_now) > restarted_at


def restart_plan(
    plan: Plan,
    recorded: Mapping[tuple[str, str], RolloutState | None],
    partition: str | None,
    env: str,
) -> tuple[Plan, list[str]]:
    """The restart of ``plan``'s variants (a plan ``observe`` made, as for a rollout), and a
    message for each variant skipped; an ``InputError`` naming every refusal.

    ``recorded``: each live variant's state; ``env``: the environment as the operator named
    it, for the commands a refusal suggests.
    """
    refusals: dict[str, list[str]] = {}  # why → the variants (or workloads) it stops
    for r in plan.replacements:
        why = f"an orphan replacement is pending ({r.reason}): `dsroll rollout {env}` carries it out"
        refusals.setdefault(why, []).append(f"{r.namespace}/{r.workload}")
    variants: list[VariantPlan] = []
    skipped: list[str] = []
    for vp in plan.variants:
        label = f"{vp.namespace}/{vp.name}"
        if vp.action in (Action.PRUNE, Action.ORPHAN_REPLACE):
            continue  # no longer rendered; or refused above with its replacement
        if vp.live.uid is None:
            skipped.append(f"{label}: not deployed, nothing to restart (`dsroll rollout {env}` creates it)")
            variants.append(replace(vp, action=Action.UNCHANGED, reason="not deployed: nothing to restart"))
            continue
        state = recorded.get(vp.key)
        found = _refusal(vp, state, env)
        if found is not None:
            refusals.setdefault(found, []).append(label)
            continue
        variants.append(_restart(vp, state, partition))
    if refusals:
        shown = "; ".join(f"{', '.join(labels)}: {why}" for why, labels in refusals.items())
        raise InputError(f"restart refused, nothing changed: {shown}")
    return replace(plan, variants=tuple(variants), replacements=()), skipped


def _refusal(vp: VariantPlan, state: RolloutState | None, env: str) -> str | None:
    """Why the variant cannot be restarted now, or None."""
    if vp.applies:
        return f"the render differs from the live pod template: a restart is not a rollout (`dsroll rollout {env}`)"
    if state is not None and not state.finished and state.operation is not RunKind.restart:
        return (
            f"a {state.operation} is unfinished (phase {state.phase}): `dsroll resume {env}` finishes it, "
            f"`dsroll abort {env}` stops it"
        )
    unfinished_restart = state is not None and not state.finished
    if vp.action is Action.UPDATE and not unfinished_restart:
        behind = ", ".join(vp.pending[:3]) + (" …" if len(vp.pending) > 3 else "")
        return (
            f"{len(vp.pending)} node(s) not on the current revision ({behind}): deleting their pods would "
            f"move them to it; `dsroll rollout {env}` finishes that"
        )
    return None


def _restart(vp: VariantPlan, state: RolloutState | None, partition: str | None) -> VariantPlan:
    """The variant's restart: from the start, or continuing the unfinished one recorded."""
    if state is not None and not state.finished:  # a restart (anything else was refused)
        pending, reason = vp.pending, f"continues the restart recorded in the cluster (phase {state.phase})"
    else:
        pending = vp.nodes
        reason = f"every pod replaced in steps, revision {vp.live.revision} unchanged"
        if vp.action is Action.IN_PLACE:
            reason += " (the render also differs outside the pod template: not applied; `dsroll rollout` applies it)"
    kept = resolve_partition(partition, len(vp.nodes))
    return replace(
        vp,
        action=Action.RESTART,
        reason=reason,
        pending=tuple(pending),
        steps=plan_steps(vp.nodes, pending, vp.policy, kept),
        partition=kept,
        resumes=state is not None and not state.finished,
        applies=False,
    )
