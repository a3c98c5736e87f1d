"""``--wait-applied``: wait until the applier has synced, i.e. the live DaemonSets are the
committed render.

"Equal" is judged as ``diff --against live`` judges it: the render is applied as a
server-side *dry run* (nothing is stored) on top of the live object, and the answer is
compared with the live object. So what the server defaults, what other managers own
(Argo CD's tracking label, ``kubectl``'s last-applied annotation) and what dsroll itself
keeps elsewhere never count; only a field the render sets and the live object does not
(yet) hold does. Each variant is checked again whenever its DaemonSet changes (a watch),
and every 10 seconds in case a dry run raced the applier. A variant the render no longer
has is not waited for: pruning is the applier's (its prune setting decides).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from dsroll.config import Environment
from dsroll.diff import Change, VariantDiff, against_live
from dsroll.errors import WaitTimedOut
from dsroll.labels import LABEL_ENV
from dsroll.render import Variant
from dsroll.rollout.watching import Informer, wait_any

if TYPE_CHECKING:
    from dsroll.kube import Kube

RECHECK_SECONDS = 10.0

#: Told each line of progress: (message, the variants still waited for as JSON rows).
Progress = Callable[[str, list[dict[str, Any]]], None]


def pending(diffs: Sequence[VariantDiff], scoped: set[tuple[str, str]]) -> list[VariantDiff]:
    """The scoped variants whose live object is not the render yet (removed ones: the applier's)."""
    return [d for d in diffs if (d.namespace, d.name) in scoped and d.change not in (Change.UNCHANGED, Change.REMOVED)]


def describe(diff: VariantDiff, limit: int = 4) -> str:
    """One variant still waited for: what differs, by path."""
    if diff.change is Change.ADDED:
        return f"{diff.namespace}/{diff.name}: not created yet"
    paths = list(diff.changed_paths)
    shown = ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
    return f"{diff.namespace}/{diff.name}: {shown or diff.change.value} differ"


def wait_applied(
    kube: Kube,
    env: Environment,
    variants: Sequence[Variant],
    timeout: float | None,
    progress: Progress,
    *,
    commit: str | None,
    waited: str = "",
) -> float:
    """Block until every one of ``variants`` is live as rendered; the seconds it took.

    WaitTimedOut (exit 6) after ``timeout`` seconds, naming the fields that still differ."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    scoped = {v.key for v in variants}
    changed = threading.Condition()
    selector = f"{LABEL_ENV}={env.name}"
    informers = [
        Informer(kube.daemonsets.collection(ns, label_selector=selector), changed=changed)
        for ns in sorted({v.namespace for v in variants})
    ]
    what = f"commit {commit[:12]}" if commit else "the render"
    said: list[str] | None = None
    with ExitStack() as stack:
        for informer in informers:
            stack.enter_context(informer)
        seen: tuple[int, ...] | None = None
        while True:
            lives: Mapping[tuple[str, str], dict[str, Any] | None] = {  # a list's items carry no kind
                (o["metadata"]["namespace"], o["metadata"]["name"]): {"apiVersion": "apps/v1", "kind": "DaemonSet", **o}
                for i in informers
                for o in i.snapshot()
            }
            lives = {v.key: lives.get(v.key) for v in variants}
            left = pending(against_live(env, variants, kube, lives).variants, scoped)
            lines = [describe(d) for d in left]
            if not left:
                elapsed = time.monotonic() - started
                progress(f"applied: every variant is live as {what} renders it ({elapsed:.0f}s)", [])
                return elapsed
            if lines != said:
                said = lines
                rows = [{"namespace": d.namespace, "name": d.name, "paths": list(d.changed_paths)} for d in left]
                progress(f"waiting for the applier to apply {what}: {'; '.join(lines)}", rows)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(
                    f"--wait-applied: the applier did not apply {what} within {waited or f'{timeout:g}s'}: "
                    + "; ".join(lines)
                )
            wait = RECHECK_SECONDS if deadline is None else min(RECHECK_SECONDS, max(0.0, deadline - time.monotonic()))
            seen = wait_any(informers, wait, seen)
