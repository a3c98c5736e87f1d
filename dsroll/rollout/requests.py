"""``pause`` and ``abort`` from any machine: ask the running rollout, or mark its saved state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dsroll.errors import DsrollError
from dsroll.kube import Kube
from dsroll.render import Variant
from dsroll.rollout.lease import Lease
from dsroll.rollout.state import ANNOTATION, FINISHED, REQUEST_ANNOTATION, Phase, now_iso, read_state


def request(kube: Kube, variants: Sequence[Variant], action: str, by: str) -> list[dict[str, Any]]:
    """`pause` / `abort`: ask the running rollout, or mark the saved state when none runs."""
    rows = []
    for variant in variants:
        live = kube.get_daemonset(variant.namespace, variant.name)
        state = read_state(live)
        row = {"namespace": variant.namespace, "name": variant.name, "action": action}
        path = f"/apis/apps/v1/namespaces/{variant.namespace}/daemonsets/{variant.name}"
        if state is None or state.phase in FINISHED:
            rows.append({**row, "result": "none", "message": "no rollout in progress"})
            continue
        lease = Lease(kube, variant.namespace, variant.name)
        try:
            lease.acquire()
        except DsrollError:
            ask = json.dumps({"action": action, "by": by, "at": now_iso()})
            kube.patch(path, {"metadata": {"annotations": {REQUEST_ANNOTATION: ask}}})
            message = f"asked the running rollout to {action} after the batch in flight"
            rows.append({**row, "result": "requested", "message": message})
            continue
        try:
            phase = Phase.paused if action == "pause" else Phase.aborted
            if action == "pause" and state.phase in (Phase.paused, Phase.awaiting_approval, Phase.partitioned):
                rows.append({**row, "result": "none", "message": f"already stopped (phase {state.phase})"})
                continue
            moved = state.moved(phase, in_flight=())
            kube.patch(path, {"metadata": {"annotations": {ANNOTATION: moved.to_json(), REQUEST_ANNOTATION: None}}})
            rows.append({**row, "result": phase.value, "message": f"marked {phase.value} (no rollout was running)"})
        finally:
            lease.release()
    return rows
