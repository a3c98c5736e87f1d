"""Who else wrote a DaemonSet's spec: a second hand on a rollout, named from managedFields.

While dsroll replaces pods it writes only the DaemonSet's annotations, so its
``metadata.generation`` stays put. When the generation moves, someone else changed the
spec (``kubectl set image``, ``kubectl rollout undo``, ``kubectl edit``, another applier):
the rollout must stop replacing pods, because under ``OnDelete`` every pod it deletes
would come back on a revision it never planned. This module says who and when, from the
server's own record of field ownership. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def spec_writers(daemonset: Mapping[str, Any], exclude: str) -> list[tuple[str, str, str]]:
    """(manager, operation, time) of every field manager but ``exclude`` that owns spec
    fields, newest first (the status subresource is the controller's, not a writer's)."""
    found = []
    for entry in (daemonset.get("metadata") or {}).get("managedFields") or []:
        if entry.get("subresource") or entry.get("manager") == exclude:
            continue
        fields = entry.get("fieldsV1") or {}
        if "f:spec" not in fields:
            continue
        manager, operation = str(entry.get("manager") or "?"), str(entry.get("operation") or "?")
        found.append((manager, operation, str(entry.get("time") or "")))
    return sorted(found, key=lambda w: w[2], reverse=True)


def changed_by(daemonset: Mapping[str, Any], exclude: str) -> str:
    """ "by MANAGER (OPERATION at TIME)": the newest writer of the spec other than ``exclude``."""
    writers = spec_writers(daemonset, exclude)
    if not writers:
        return "by another writer (no field manager recorded)"
    manager, operation, time = writers[0]
    return f"by {manager} ({operation}{f' at {time}' if time else ''})"


def second_hand(daemonset: Mapping[str, Any], planned: Mapping[str, Any], exclude: str) -> str | None:
    """Why the rollout must stop (None: the spec is still the one it ``planned``).

    Names what changed (the spec's top-level fields), and the newest other writer of the
    spec, with the operation and time the API server recorded."""
    generation = (daemonset.get("metadata") or {}).get("generation")
    expected = (planned.get("metadata") or {}).get("generation")
    if not isinstance(generation, int) or not isinstance(expected, int) or generation <= expected:
        return None  # the same spec, or a watch that has not caught up with the rollout's own apply yet
    now, before = daemonset.get("spec") or {}, planned.get("spec") or {}
    fields = sorted(k for k in {*now, *before} if now.get(k) != before.get(k))
    what = f"spec.{', spec.'.join(fields)}" if fields else "its spec"
    return f"{what} changed {changed_by(daemonset, exclude)} (generation {expected} → {generation})"
