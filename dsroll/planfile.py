"""A plan as a file: the documented JSON ``plan --out`` writes and ``rollout --plan`` reads.

Kept apart from ``plan.py`` (which decides) because it only translates: every field the
plan JSON carries, in both directions, and one error for a file that is not a plan.
"""

from __future__ import annotations

import json
from typing import Any

from dsroll.errors import InputError
from dsroll.namespaces import NamespaceStatus
from dsroll.orphans import ReplacementPlan
from dsroll.plan import Action, LiveFingerprint, Plan, Policy, StepPlan, VariantPlan
from dsroll.rollout.external import Applied
from dsroll.rollout.state import SkippedNode, SkipReason

PLAN_KIND = {"apiVersion": "dsroll.io/v1alpha1", "kind": "Plan"}


def plan_to_json(plan: Plan, *, manifests: bool = True) -> dict[str, Any]:
    """The plan as documented JSON; with ``manifests`` it can be executed by ``rollout --plan``."""
    variants = []
    for v in plan.variants:
        item: dict[str, Any] = {
            "namespace": v.namespace,
            "name": v.name,
            "workload": v.workload,
            "class": v.cls,
            "action": v.action.value,
            "reason": v.reason,
            "changedPaths": list(v.changed_paths),
            "resumes": v.resumes,
            "applies": v.applies,
            "nodes": list(v.nodes),
            "pending": list(v.pending),
            "skipped": [{"node": s.node, "reason": s.reason.value, "detail": s.detail} for s in v.skipped],
            "partition": v.partition,
            "steps": [
                {"step": s.number, "count": s.count, "nodes": list(s.nodes), "batches": [list(b) for b in s.batches]}
                for s in v.steps
            ],
            "policy": {
                "steps": list(v.policy.steps),
                "maxUnavailable": v.policy.max_unavailable,
                "pause": v.policy.pause,
                "readyTimeout": v.policy.ready_timeout,
                "minReadySeconds": v.policy.min_ready_seconds,
                "onFailure": v.policy.on_failure,
                "canaryNodeSelector": dict(v.policy.canary_node_selector),
                "unreadyNodes": v.policy.unready_nodes,
                "applier": v.policy.applier,
            },
            "applied": v.applied.to_json() if v.applied else None,
            "live": {
                "uid": v.live.uid,
                "generation": v.live.generation,
                "revision": v.live.revision,
                "nodes": list(v.live.nodes),
            },
        }
        if manifests:
            item["manifest"] = v.manifest
        variants.append(item)
    return {
        **PLAN_KIND,
        "environment": plan.environment,
        "context": plan.context,
        "server": plan.server,
        "commit": plan.commit,
        "variants": variants,
        "replacements": [r.to_json() for r in plan.replacements],
        "namespaces": [n.to_json() for n in plan.namespaces],
    }


def plan_from_json(text: str, file: str) -> Plan:
    """A saved plan; a file that is not one is bad input."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or {k: data.get(k) for k in PLAN_KIND} != PLAN_KIND:
            raise ValueError("not a dsroll plan (apiVersion/kind)")
        variants = []
        for item in data["variants"]:
            p, live = item["policy"], item["live"]
            policy = Policy(
                steps=tuple(p["steps"]),
                max_unavailable=p["maxUnavailable"],
                pause=p["pause"],
                ready_timeout=p["readyTimeout"],
                min_ready_seconds=p["minReadySeconds"],
                on_failure=p["onFailure"],
                canary_node_selector=p.get("canaryNodeSelector") or {},
                unready_nodes=_one_of(p.get("unreadyNodes") or "skip", ("skip", "wait", "fail"), "unreadyNodes"),
                applier=_one_of(p.get("applier") or "dsroll", ("dsroll", "external"), "applier"),
            )
            steps = tuple(
                StepPlan(s["step"], s["count"], tuple(s["nodes"]), tuple(tuple(b) for b in s["batches"]))
                for s in item["steps"]
            )
            variants.append(
                VariantPlan(
                    namespace=item["namespace"],
                    name=item["name"],
                    workload=item.get("workload"),
                    cls=item.get("class"),
                    action=Action(item["action"]),
                    reason=item["reason"],
                    changed_paths=tuple(item.get("changedPaths") or ()),
                    policy=policy,
                    nodes=tuple(item["nodes"]),
                    pending=tuple(item["pending"]),
                    steps=steps,
                    partition=item.get("partition"),
                    live=LiveFingerprint(live["uid"], live["generation"], live["revision"], tuple(live["nodes"])),
                    manifest=item.get("manifest"),
                    resumes=bool(item.get("resumes")),
                    applies=bool(item.get("applies")),
                    skipped=tuple(
                        SkippedNode(str(s["node"]), SkipReason(s["reason"]), str(s.get("detail") or ""))
                        for s in item.get("skipped") or ()
                    ),
                    applied=Applied.from_json(item.get("applied")),
                )
            )
        replacements = tuple(ReplacementPlan.from_json(r) for r in data.get("replacements") or ())
        spaces = tuple(NamespaceStatus.from_json(n) for n in data.get("namespaces") or ())
        return Plan(
            data["environment"],
            data["context"],
            data["server"],
            data.get("commit"),
            tuple(variants),
            replacements,
            spaces,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"not a valid dsroll plan: {exc}", file) from None


def _one_of(value: Any, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ValueError(f"{key} {value!r} is not one of {', '.join(allowed)}")
    return str(value)
