"""``pause`` and ``abort`` from any machine: ask the running rollout, or mark its saved state
(in the variant's store: ``store.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dsroll.errors import DsrollError
from dsroll.render import Variant
from dsroll.rollout.lease import Lease
from dsroll.rollout.state import FINISHED, Phase
from dsroll.rollout.store import store_for

if TYPE_CHECKING:
    from dsroll.kube import Kube


def request(kube: Kube, variants: Sequence[Variant], action: str, by: str) -> list[dict[str, Any]]:
    """`pause` / `abort`: ask the running rollout, or mark the saved state when none runs."""
    rows = []
    for variant in variants:
        live = kube.daemonsets.get(variant.namespace, variant.name)
        store = store_for(kube, variant.namespace, variant.name, variant.applier)
        state = store.load(live).state if live else None
        row = {"namespace": variant.namespace, "name": variant.name, "action": action}
        if live is None or state is None or state.phase in FINISHED:
            rows.append({**row, "result": "none", "message": "no rollout in progress"})
            continue
        lease = Lease(kube.leases, variant.namespace, variant.name)
        try:
            lease.acquire()
        except DsrollError:
            store.ask(live, action, by)
            message = f"asked the running rollout to {action} after the batch in flight"
            rows.append({**row, "result": "requested", "message": message})
            continue
        try:
            phase = Phase.paused if action == "pause" else Phase.aborted
            if action == "pause" and state.phase in (Phase.paused, Phase.awaiting_approval, Phase.partitioned):
                rows.append({**row, "result": "none", "message": f"already stopped (phase {state.phase})"})
                continue
            store.write(live, state.entering(phase, in_flight=()), clear_request=True)
            rows.append({**row, "result": phase.value, "message": f"marked {phase.value} (no rollout was running)"})
        finally:
            lease.release()
    return rows
