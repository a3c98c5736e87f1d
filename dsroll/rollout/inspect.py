"""Read-only views for ``status`` and ``history``: progress, replacements, revisions per variant."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dsroll import orphans
from dsroll.plan import pods_by_node
from dsroll.render import Variant
from dsroll.rollout import backup
from dsroll.rollout import revisions as revs
from dsroll.rollout.observe import observe_pods
from dsroll.rollout.state import created_after
from dsroll.rollout.store import store_for

if TYPE_CHECKING:
    from dsroll.kube import Kube


def status(kube: Kube, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        live = kube.daemonsets.get(variant.namespace, variant.name)
        row: dict[str, Any] = {"namespace": variant.namespace, "name": variant.name, "deployed": live is not None}
        if live is not None:
            pods, current = observe_pods(kube, live)
            on_node = pods_by_node(pods)
            record = store_for(kube, variant.namespace, variant.name, variant.applier).load(live)
            state = record.state
            since = state.restarted_at if state else None  # a restart: updated means restarted since it began
            row.update(
                revision=current,
                nodesTotal=len(on_node),
                nodesUpdated=sum(
                    1
                    for p in on_node.values()
                    if p.revision == current and not p.terminating and created_after(p.created, since)
                ),
                nodesReady=sum(1 for p in on_node.values() if p.ready and not p.terminating),
                updateStrategy=((live.get("spec") or {}).get("updateStrategy") or {}).get("type"),
                request=record.request,
                rollout=json.loads(state.to_json()) if state else None,
                applier=variant.applier,
            )
            if record.stable is not None:
                row["stable"] = {"revision": record.stable.revision, "commit": record.stable.commit}
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
        stable = store_for(kube, variant.namespace, variant.name, variant.applier).load(live).stable if live else None
        rows.append(
            {
                "namespace": variant.namespace,
                "name": variant.name,
                "deployed": live is not None,
                "currentRevision": current.number if current else None,
                "stableRevision": next((r.number for r in found if stable and r.hash == stable.revision), None),
                "revisions": [r.to_json() for r in found],
            }
        )
    return rows
