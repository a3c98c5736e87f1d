"""``status --watch``: follow the DaemonSets of a rollout run elsewhere until it is over.

DaemonSet changes arrive through informers (one watch per namespace), so progress is
reported as it happens without polling. A Lease that expires produces no event, so the
Leases are read again on a timer of a few seconds. Whether the wait is over, and with
which code, is ``waiting.watch_verdict``'s answer; this module only observes and reports.

The runner releases a variant's Lease before it takes the next variant's, so a moment
with nobody working may be a gap between two variants: a verdict reached after something
was seen running is confirmed by one more look at the Leases a moment later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dsroll import names
from dsroll.render import Variant
from dsroll.rollout.state import read_state
from dsroll.rollout.store import Record, store_for
from dsroll.rollout.waiting import RUNNING, Verdict, Watched, lease_seen, running, watch_verdict
from dsroll.rollout.watching import Informer, wait_any

if TYPE_CHECKING:
    from dsroll.kube import Kube

LEASE_CHECK_SECONDS = 3.0
SETTLE_SECONDS = 2.0

__all__ = ["Emit", "Verdict", "progress", "progress_line", "watch"]

Emit = Callable[[Mapping[str, Any]], None]


def progress(variant: Variant, live: Mapping[str, Any] | None, watched: Watched) -> dict[str, Any]:
    """One variant's progress as a JSON line says it (the counts are the controller's)."""
    status = (live or {}).get("status") or {}
    state = watched.state
    steps = list(state.steps) if state else []
    return {
        "namespace": variant.namespace,
        "name": variant.name,
        "deployed": live is not None,
        "phase": state.phase.value if state else None,
        "step": min(state.step + 1, len(steps)) if state and steps else None,
        "steps": len(steps) or None,
        "nodesUpdated": status.get("updatedNumberScheduled", 0),
        "nodesReady": status.get("numberReady", 0),
        "nodesTotal": status.get("desiredNumberScheduled", 0),
        "holder": watched.lease.holder if watched.lease else None,
    }


def progress_line(row: Mapping[str, Any]) -> str:
    """``fluent-bit-gpu: step 2/3, 5/10 nodes updated, 5 ready (progressing)``."""
    if not row["deployed"]:
        return f"{row['name']}: not deployed"
    step = f"step {row['step']}/{row['steps']}, " if row["steps"] else ""
    phase = row["phase"] or "no rollout recorded"
    return (
        f"{row['name']}: {step}{row['nodesUpdated']}/{row['nodesTotal']} nodes updated, "
        f"{row['nodesReady']} ready ({phase})"
    )


def record(kube: Kube, daemonset: Mapping[str, Any]) -> Record:
    """The record of a variant under ``applier: external`` (its ConfigMap)."""
    meta = daemonset["metadata"]
    return store_for(kube, meta["namespace"], meta["name"], "external").load(daemonset)


def watch(
    kube: Kube, variants: Sequence[Variant], env: str, timeout: float | None, emit: Emit, *, waited: str = ""
) -> tuple[Verdict, list[dict[str, Any]]]:
    """Wait until nobody works on ``variants``; emit each variant's progress when it changes.
    The verdict, and the last progress row of each variant. ``waited`` is the timeout as given."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    changed = threading.Condition()
    namespaces = sorted({v.namespace for v in variants})
    informers = [Informer(kube.daemonsets.collection(ns), changed=changed) for ns in namespaces]
    seen_running: set[str] = set()
    leases: dict[str, Any] = {}
    leases_read = float("-inf")
    shown: dict[str, dict[str, Any]] = {}
    confirming = False
    with ExitStack() as stack:
        for informer in informers:
            stack.enter_context(informer)
        seen: tuple[int, ...] | None = None
        while True:
            if time.monotonic() - leases_read >= LEASE_CHECK_SECONDS or confirming:
                leases = {v.name: lease_seen(kube.leases.get(v.namespace, names.lease_name(v.name))) for v in variants}
                leases_read = time.monotonic()
            live = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for i in informers for o in i.snapshot()}
            now = time.time()
            watched = []
            for variant in variants:
                ds = live.get((variant.namespace, variant.name))
                # applier: external keeps the state in a ConfigMap: read at each wake (status changes, leases)
                state = read_state(ds) if variant.applier != "external" or not ds else record(kube, ds).state
                w = Watched(variant.namespace, variant.name, state, leases.get(variant.name))
                if running(w, now) or (state is not None and state.phase in RUNNING):
                    seen_running.add(variant.name)
                w = Watched(w.namespace, w.name, state, w.lease, variant.name in seen_running)
                watched.append(w)
                row = progress(variant, ds, w)
                if shown.get(variant.name) != row:
                    shown[variant.name] = row
                    emit({"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **row})
            timed_out = deadline is not None and time.monotonic() >= deadline
            verdict = watch_verdict(watched, env, now, timed_out=timed_out, waited=waited)
            if verdict.done and (confirming or not seen_running or timed_out):
                return verdict, list(shown.values())
            confirming = verdict.done  # one more look a moment later: the runner may be between variants
            pause = SETTLE_SECONDS if confirming else LEASE_CHECK_SECONDS
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            seen = wait_any(informers, pause, seen)
