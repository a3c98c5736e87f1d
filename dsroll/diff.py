"""Normalisation and the diff model: what changed per variant, and what that means.

``compare`` is pure: (old, new) objects in, a ``VariantDiff`` out. The two ways of
finding "old" — the rendered files at a git ref, or the live cluster normalised by a
server-side dry-run — live in ``against_git`` and ``against_live`` at the bottom.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import yaml

from dsroll import layout, yamlio
from dsroll.errors import InputError
from dsroll.labels import (
    LABEL_CLASS,
    LABEL_ENV,
    LABEL_WORKLOAD,
    LAST_APPLIED_ANNOTATION,
    MANAGED_BY,
    MANAGER,
    ROLLOUT_ANNOTATION,
    TEMPLATE_GENERATION_ANNOTATION,
)
from dsroll.masking import mask_pair
from dsroll.namespaces import NamespaceStatus, Presence, presence

if TYPE_CHECKING:  # the adapters are passed in; this module loads no client, git or template engine
    from dsroll.config import Environment
    from dsroll.gitsource import GitSource
    from dsroll.kube import Kube
    from dsroll.render import Variant

_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
_SERVER_ANNOTATIONS = (TEMPLATE_GENERATION_ANNOTATION, LAST_APPLIED_ANNOTATION, ROLLOUT_ANNOTATION)


class Change(StrEnum):
    """How a variant differs, most severe last among the changed kinds."""

    UNCHANGED = "unchanged"
    ADDED = "added"
    REMOVED = "removed"
    METADATA = "metadata-only"
    SPEC = "spec"
    POD_TEMPLATE = "pod-template"
    SELECTOR = "selector"

    @property
    def describe(self) -> str:
        return {
            Change.UNCHANGED: "unchanged",
            Change.ADDED: "added",
            Change.REMOVED: "removed",
            Change.METADATA: "changed: metadata only, no pod restarts",
            Change.SPEC: "changed: DaemonSet spec outside the pod template, no pod restarts",
            Change.POD_TEMPLATE: "changed: pod template, pods will restart",
            Change.SELECTOR: "changed: selector is immutable, needs orphan replacement",
        }[self]


@dataclass(frozen=True)
class VariantDiff:
    namespace: str
    name: str
    workload: str | None
    cls: str | None
    change: Change
    changed_paths: tuple[str, ...]
    ignored: int
    diff: str
    note: str | None = None
    masked: int = 0  # env values shown as *** in ``diff`` (masking.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "workload": self.workload,
            "class": self.cls,
            "change": self.change.value,
            "restartsPods": self.change in (Change.POD_TEMPLATE, Change.SELECTOR),
            "needsOrphanReplacement": self.change is Change.SELECTOR,
            "changedPaths": list(self.changed_paths),
            "ignoredDifferences": self.ignored,
            "note": self.note,
            "maskedValues": self.masked,
            "diff": self.diff,
        }


@dataclass(frozen=True)
class DiffReport:
    environment: str
    against: str
    variants: tuple[VariantDiff, ...]
    context: str | None = None
    server: str | None = None
    commit: str | None = None
    replacements: tuple[Mapping[str, Any], ...] = ()  # orphan replacements (plan JSON), live diffs only
    normalised_by: str | None = None  # live diffs: "server-dry-run", or "client" without patch permission
    namespaces: tuple[NamespaceStatus, ...] = ()  # live diffs: where the variants live, and what a rollout does

    @property
    def has_differences(self) -> bool:
        return bool(self.replacements) or any(v.change is not Change.UNCHANGED for v in self.variants)

    def summary(self) -> dict[str, int]:
        counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
        for v in self.variants:
            key = v.change.value if v.change in (Change.ADDED, Change.REMOVED, Change.UNCHANGED) else "changed"
            counts[key] += 1
        counts["ignoredDifferences"] = sum(v.ignored for v in self.variants)
        counts["maskedValues"] = sum(v.masked for v in self.variants)
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "against": self.against,
            "context": self.context,
            "server": self.server,
            "commit": self.commit,
            "normalisedBy": self.normalised_by,
            "variants": [v.to_json() for v in self.variants],
            "replacements": list(self.replacements),
            "namespaces": [n.to_json() for n in self.namespaces],
            "summary": self.summary(),
        }


def normalise(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop what the server sets and nobody declares: status, bookkeeping metadata."""
    if obj is None:
        return None
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS}
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    if not meta.get("labels"):
        meta.pop("labels", None)
    template_meta = ((out.get("spec") or {}).get("template") or {}).get("metadata")
    if isinstance(template_meta, dict) and template_meta.get("creationTimestamp") is None:
        template_meta.pop("creationTimestamp", None)
    return out


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _pop_pointer(obj: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    """Remove the value at ``parts``, and the maps that removal left empty; (found, value)."""
    trail: list[tuple[Any, Any]] = []
    for part in parts:
        if isinstance(obj, dict) and part in obj:
            trail.append((obj, part))
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            trail.append((obj, int(part)))
            obj = obj[int(part)]
        else:
            return False, None
    if not trail:
        return False, None
    parent, key = trail.pop()
    value = parent.pop(key)
    while trail and isinstance(parent, dict) and not parent:
        parent, key = trail.pop()
        parent.pop(key)
    return True, value


def strip_ignored(old: Any, new: Any, pointers: Sequence[str]) -> int:
    """Remove ignored fields from both sides in place; count those that differed."""
    differed = 0
    for pointer in pointers:
        parts = _pointer_parts(pointer)
        a = _pop_pointer(old, parts) if old is not None else (False, None)
        b = _pop_pointer(new, parts) if new is not None else (False, None)
        if a != b:
            differed += 1
    return differed


def changed_paths(old: Any, new: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            child = f"{prefix}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in old or key not in new:
                yield child
            else:
                yield from changed_paths(old[key], new[key], child)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from changed_paths(a, b, f"{prefix}/{i}")
    elif old != new:
        yield prefix or "/"


def classify(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    if old is None and new is None:
        return Change.UNCHANGED
    if old is None:
        return Change.ADDED
    if new is None:
        return Change.REMOVED
    if old == new:
        return Change.UNCHANGED
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec.get("selector") != new_spec.get("selector"):
        return Change.SELECTOR
    if old_spec.get("template") != new_spec.get("template"):
        return Change.POD_TEMPLATE
    if old_spec != new_spec:
        return Change.SPEC
    return Change.METADATA


def compare(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    labels: tuple[str, str],
    ignore: Sequence[str] = (),
    note: str | None = None,
    mask: re.Pattern[str] | None = None,
) -> VariantDiff:
    """Diff two normalised objects (None: absent) after removing ignored fields.

    The change is judged on the real values; with ``mask``, the text shows matching env
    values as ``***`` (and one that changed as ``*** (changed)``).
    """
    old_n, new_n = copy.deepcopy(old), copy.deepcopy(new)
    ignored = strip_ignored(old_n, new_n, ignore)
    change = classify(old_n, new_n)
    some = new_n or old_n or {}
    meta = some.get("metadata") or {}
    obj_labels = meta.get("labels") or {}
    # Unchanged objects show no text, so nothing of theirs is masked (or counted).
    old_shown, new_shown, masked = mask_pair(old_n, new_n, mask if change is not Change.UNCHANGED else None)
    text = "".join(
        difflib.unified_diff(
            yamlio.dump(old_shown).splitlines(keepends=True) if old_shown is not None else [],
            yamlio.dump(new_shown).splitlines(keepends=True) if new_shown is not None else [],
            fromfile=f"{labels[0]}/{meta.get('namespace')}/{meta.get('name')}",
            tofile=f"{labels[1]}/{meta.get('namespace')}/{meta.get('name')}",
        )
    )
    paths = tuple(changed_paths(old_n or {}, new_n or {})) if change not in (Change.ADDED, Change.REMOVED) else ()
    return VariantDiff(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        workload=obj_labels.get(LABEL_WORKLOAD),
        cls=obj_labels.get(LABEL_CLASS),
        change=change,
        changed_paths=paths,
        ignored=ignored,
        diff=text,
        note=note,
        masked=masked,
    )


def _ignores(env: Environment, workload: str | None) -> tuple[str, ...]:
    own = next((w.ignore_differences for w in env.workloads if w.name == workload), ())
    return (*env.ignore_differences, *own)


def against_git(
    env: Environment,
    variants: Sequence[Variant],
    old_source: GitSource,
    ref: str,
    mask: re.Pattern[str] | None = None,
) -> DiffReport:
    """Fresh render vs the rendered files committed at ``ref``; ``mask``: env values shown as ***.

    Only files this environment's render wrote count, as for ``render``: a
    kustomization.yaml, a README or another environment's manifest committed in the
    folder is neither "removed" nor compared.
    """
    committed = {}
    for path in old_source.list_files(env.rendered_dir):
        rel = path[len(env.rendered_dir) + 1 :]
        if not layout.is_variant_path(rel):
            continue
        text = old_source.read_text(path)
        if layout.written_for(text.partition("\n")[0]) != env.name:
            continue
        try:
            committed[rel] = yamlio.load_plain(text)
        except yaml.YAMLError as exc:
            line, problem = yamlio.problem_at(exc)
            raise InputError(f"rendered file at git {ref}: {problem}", path, line) from None
    diffs = []
    for variant in variants:
        old = normalise(committed.pop(variant.path, None))
        diffs.append(
            compare(
                old,
                normalise(variant.manifest),
                labels=(f"git:{ref}", "rendered"),
                ignore=_ignores(env, variant.workload),
                mask=mask,
            )
        )
    for old_obj in committed.values():
        if isinstance(old_obj, dict):
            diffs.append(compare(normalise(old_obj), None, labels=(f"git:{ref}", "rendered"), mask=mask))
    ordered = tuple(sorted(diffs, key=lambda d: (d.namespace, d.name)))
    return DiffReport(env.name, f"git:{ref}", ordered, commit=old_source.commit.hexsha)


def within(live: Any, rendered: Any) -> Any:
    """``live`` cut down to the fields ``rendered`` sets: the client's stand-in for a dry-run.

    Without a server-side dry-run, every default the API server filled in (and every field
    another manager owns) would show as a difference; comparing only what the render sets
    hides them. What it cannot see: a field dropped from the template, and what admission
    would change. Lists are cut element by element when they have the same length.
    """
    if isinstance(live, dict) and isinstance(rendered, dict):
        return {k: within(v, rendered[k]) for k, v in live.items() if k in rendered}
    if isinstance(live, list) and isinstance(rendered, list) and len(live) == len(rendered):
        return [within(a, b) for a, b in zip(live, rendered, strict=True)]
    return live


def _desired_live(kube: Kube, variant: Variant, live: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """What the server would store if the variant were applied, without storing it."""
    manifest = copy.deepcopy(dict(variant.manifest))
    there = presence(kube.namespaces.get(variant.namespace)) if live is None else Presence.ACTIVE
    if there is not Presence.ACTIVE:  # the server refuses even a dry-run of a new object there
        state = "does not exist yet" if there is Presence.MISSING else "is being deleted"
        return manifest, f"namespace {variant.namespace} {state}: shown as rendered, not server-normalised"
    rendered_selector = manifest["spec"]["selector"]
    if live is not None and (live.get("spec") or {}).get("selector") != rendered_selector:
        manifest["spec"]["selector"] = live["spec"]["selector"]
        try:
            desired = kube.daemonsets.apply(manifest, dry_run=True)
        except InputError:
            return dict(variant.manifest), "selector change: shown as rendered, not server-normalised"
        desired["spec"]["selector"] = rendered_selector
        return desired, None
    return kube.daemonsets.apply(manifest, dry_run=True), None


def against_live(
    env: Environment,
    variants: Sequence[Variant],
    kube: Kube,
    live_objects: Mapping[tuple[str, str], dict[str, Any] | None] | None = None,
    mask: re.Pattern[str] | None = None,
    *,
    server_dry_run: bool = True,
) -> DiffReport:
    """Fresh render, normalised by a server-side dry-run apply, vs the cluster.

    ``live_objects`` are the variants' DaemonSets (None: not there) when the caller has
    read them already; ``mask``: env values shown as ***. Without ``server_dry_run`` (a
    caller who may not patch DaemonSets) the live side is cut to what the render sets
    (``within``) and nothing is sent but reads.
    """
    diffs = []
    wanted = {v.key for v in variants}
    for variant in variants:
        if live_objects is not None and variant.key in live_objects:
            live = live_objects[variant.key]
        else:
            live = kube.daemonsets.get(variant.namespace, variant.name)
        if server_dry_run:
            desired, note = _desired_live(kube, variant, live)
            seen = normalise(live)
        else:
            desired, note = dict(variant.manifest), None
            seen = within(normalise(live), normalise(desired)) if live is not None else None
        diffs.append(
            compare(
                seen,
                normalise(desired),
                labels=("live", "rendered"),
                ignore=_ignores(env, variant.workload),
                note=note,
                mask=mask,
            )
        )
    selector = f"{MANAGED_BY}={MANAGER},{LABEL_ENV}={env.name}"
    for live in kube.daemonsets.list(selector):
        meta = live["metadata"]
        if (meta["namespace"], meta["name"]) not in wanted:
            diffs.append(compare(normalise(live), None, labels=("live", "rendered"), mask=mask))
    return DiffReport(
        env.name,
        "live",
        tuple(sorted(diffs, key=lambda d: (d.namespace, d.name))),
        context=kube.context,
        server=kube.server,
        normalised_by="server-dry-run" if server_dry_run else "client",
    )
