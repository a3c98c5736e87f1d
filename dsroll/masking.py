"""Container env values that look like secrets are masked in what dsroll displays.

Diffs end up in CI logs. A password in a template's ``env`` (rather than in a Secret,
``valueFrom.secretKeyRef``, where it belongs) would be printed there by ``diff``. So the
values of ``env`` entries whose name matches the environment's ``maskEnv`` pattern are
shown as ``***``. Comparison is done on the real values; only the display is masked, and
a masked value that changed is shown as ``*** (changed)`` on the new side, which says
that it changed and nothing about what it is. Pure functions; nothing here is applied.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

#: The default ``maskEnv``: names that usually hold credentials.
DEFAULT_MASK_ENV = r"(?i)(pass|secret|token|credential|api_?key|private_?key)"
MASK = "***"
CHANGED = "*** (changed)"
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def compile_mask(pattern: str) -> re.Pattern[str] | None:
    """The pattern to mask with; None for an empty one (mask nothing). Raises re.error."""
    return re.compile(pattern) if pattern else None


def _entries(obj: Mapping[str, Any] | None) -> Iterator[tuple[tuple[str, str, str], dict[str, Any]]]:
    """Every env entry with a literal value in a DaemonSet's pod template, keyed by where it is."""
    pod = (((obj or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    if not isinstance(pod, dict):
        return
    for kind in _CONTAINER_LISTS:
        for container in pod.get(kind) or []:
            if not isinstance(container, dict):
                continue
            for entry in container.get("env") or []:
                if isinstance(entry, dict) and isinstance(entry.get("name"), str) and "value" in entry:
                    yield (kind, str(container.get("name")), entry["name"]), entry


def mask_pair(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, mask: re.Pattern[str] | None
) -> tuple[Any, Any, int]:
    """Copies of ``old`` and ``new`` with matching env values masked; how many entries
    (container and name) were masked on either side.

    A value on the new side that differs from the old side's value of the same container
    and name becomes ``*** (changed)``, so a diff of the two copies still shows the change.
    """
    if mask is None:
        return old, new, 0
    old_c, new_c = copy.deepcopy(old), copy.deepcopy(new)
    before: dict[tuple[str, str, str], Any] = {}
    for key, entry in _entries(old_c):
        if mask.search(key[2]):
            before[key] = entry["value"]
            entry["value"] = MASK
    after = set()
    for key, entry in _entries(new_c):
        if mask.search(key[2]):
            changed = key in before and before[key] != entry["value"]
            entry["value"] = CHANGED if changed else MASK
            after.add(key)
    return old_c, new_c, len(after | set(before))


def mask_object(obj: Mapping[str, Any] | None, mask: re.Pattern[str] | None) -> tuple[Any, int]:
    """A copy of one object with matching env values masked, and how many were."""
    _, masked, count = mask_pair(None, obj, mask)
    return masked, count
