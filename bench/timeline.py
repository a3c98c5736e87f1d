"""Per-node replacement figures from an independent pod timeline (``tests/e2e/podwatch.py``).

For ``bench/rollout_bench.py --watch-pods``: the same measure for dsroll and for the native
controller, taken by a witness that is neither. Per node, from the moment its old pod
started terminating (or was deleted) to the first Ready event of the pod that replaced
it (``replaced``); and per slot, from a new pod's Ready to the next node's disruption
(``refill``: how long a freed slot stayed idle, measured as the gap between a Ready and
the next disruption after it, which a controller that refills at once keeps near zero).
Pure functions of the timeline.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DELETED = "DELETED"


@dataclass(frozen=True)
class Replacement:
    node: str
    disrupted: float  # the old pod's first terminating (or DELETED) event
    ready: float  # the new pod's first Ready event

    @property
    def seconds(self) -> float:
        return self.ready - self.disrupted


def replacements(timeline: Sequence[Any], revision: str) -> list[Replacement]:
    """Per node: when its old pod went and when its pod on ``revision`` first showed Ready."""
    gone: dict[str, float] = {}
    ready: dict[str, float] = {}
    old_uids: set[str] = set()
    for event in timeline:
        if not event.node:
            continue
        if event.revision != revision:
            if (event.terminating or event.type == DELETED) and event.uid not in old_uids:
                old_uids.add(event.uid)
                gone.setdefault(event.node, event.time)
        elif event.ready and not event.terminating and event.node in gone:
            ready.setdefault(event.node, event.time)
    return sorted(
        (Replacement(node, gone[node], ready[node]) for node in ready if node in gone), key=lambda r: r.disrupted
    )


def refill_gaps(done: Iterable[Replacement]) -> list[float]:
    """For every Ready (but the last few): the time until the next disruption after it."""
    done = list(done)
    starts = sorted(r.disrupted for r in done)
    gaps = []
    for r in done:
        at = bisect.bisect_left(starts, r.ready)
        if at < len(starts):
            gaps.append(starts[at] - r.ready)
    return gaps


STAGES = ("terminating->deleted", "deleted->created", "created->bound", "bound->ready")


def stages(timeline: Sequence[Any], revision: str) -> dict[str, float]:
    """Median seconds of each stage of a node's replacement, as the witness saw them: the
    old pod terminating -> gone (kwok finalising it), gone -> the new pod created (the
    DaemonSet controller), created -> bound (the scheduler), bound -> Ready (kwok)."""
    first: dict[tuple[str, str], float] = {}
    old_seen: set[str] = set()
    for event in timeline:
        node = event.node
        if not node:
            continue
        if event.revision != revision:
            if event.terminating and (node, "terminating") not in first:
                first[(node, "terminating")] = event.time
            if event.type == DELETED and event.uid not in old_seen:
                old_seen.add(event.uid)
                first.setdefault((node, "deleted"), event.time)
        else:
            first.setdefault((node, "created"), event.time)
            if event.bound:
                first.setdefault((node, "bound"), event.time)
            if event.ready:
                first.setdefault((node, "ready"), event.time)
    points = ("terminating", "deleted", "created", "bound", "ready")
    found: dict[str, float] = {}
    for name, (a, b) in zip(STAGES, itertools.pairwise(points), strict=True):
        gaps = sorted(first[(n, b)] - first[(n, a)] for (n, p) in first if p == a and (n, b) in first)
        if gaps:
            found[name] = round(statistics.median(gaps), 3)
    return found


def decision_lags(done: Sequence[Replacement], replaced_at: dict[str, float]) -> list[float]:
    """Per node: from the witness receiving the new pod's Ready event to dsroll's
    ``node-replaced`` event for that node (both clocks of this machine): how long a watch
    event takes from the API server to dsroll's decision, less the witness's own delay."""
    return sorted(replaced_at[r.node] - r.ready for r in done if r.node in replaced_at)


def mean_down(done: Sequence[Replacement]) -> float:
    """How many nodes were in replacement at once, on average, from the first disruption to
    the last Ready: every node's replacement time over that span (Little's law). Whoever
    drives the rollout, that is the concurrency it kept, counted the same way for both."""
    if not done:
        return 0.0
    span = max(r.ready for r in done) - min(r.disrupted for r in done)
    return sum(r.seconds for r in done) / span if span > 0 else 0.0


def summary(done: Sequence[Replacement], label: str) -> dict[str, float | int | str]:
    if not done:
        return {"who": label, "nodes": 0}
    seconds = sorted(r.seconds for r in done)
    gaps = sorted(refill_gaps(done))
    span = max(r.ready for r in done) - min(r.disrupted for r in done)
    return {
        "who": label,
        "nodes": len(done),
        "replaceMedian": round(statistics.median(seconds), 3),
        "replaceP90": round(seconds[int(0.9 * (len(seconds) - 1))], 3),
        "replaceMax": round(seconds[-1], 3),
        "refillMedian": round(statistics.median(gaps), 3) if gaps else 0.0,
        "refillP90": round(gaps[int(0.9 * (len(gaps) - 1))], 3) if gaps else 0.0,
        "firstToLastSeconds": round(span, 3),
        "meanDown": round(mean_down(done), 1),
    }


def describe(s: dict[str, float | int | str]) -> str:
    if not s.get("nodes"):
        return f"{s['who']}: no replacement seen"
    return (
        f"{s['who']}: {s['nodes']} nodes, delete->Ready median {s['replaceMedian']:.2f}s "
        f"(p90 {s['replaceP90']:.2f}, max {s['replaceMax']:.2f}); Ready->next delete median "
        f"{s['refillMedian']:.3f}s (p90 {s['refillP90']:.3f}); "
        f"first delete to last Ready {s['firstToLastSeconds']:.1f}s; {s['meanDown']:.1f} nodes in "
        "replacement at once on average"
    )
