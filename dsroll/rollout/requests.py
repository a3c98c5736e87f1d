"""``pause`` and ``abort`` from any machine: ask the running rollout, or mark its saved state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dsroll.errors import DsrollError
from dsroll.labels import REQUEST_ANNOTATION, ROLLOUT_ANNOTATION
from dsroll.render import Variant
from dsroll.rollout.lease import Lease
from dsroll.rollout.state import FINISHED, Phase, now_iso, read_state

if TYPE_CHECKING:
    from dsroll.kube import Kube


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
            entered = state.entering(phase, in_flight=())
            annotations = {ROLLOUT_ANNOTATION: entered.to_json(), REQUEST_ANNOTATION: None}
            kube.daemonsets.annotate(variant.namespace, variant.name, annotations)
            rows.append({**row, "result": phase.value, "message": f"marked {phase.value} (no rollout was running)"})
        finally:
            lease.release()
    return rows
