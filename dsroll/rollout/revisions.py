"""A DaemonSet's ControllerRevisions: history, the current revision, lookups by number.

Which revision a rollback goes to is ``decide.rollback_target``'s choice; this reads them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsroll.errors import InputError
from dsroll.labels import COMMIT_ANNOTATION, REVISION_LABEL

if TYPE_CHECKING:
    from dsroll.kube import Kube


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as the labelSelector query parameter."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(expr.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)


@dataclass(frozen=True)
class Revision:
    number: int
    hash: str
    name: str
    created: str
    commit: str | None
    template: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.number,
            "hash": self.hash,
            "name": self.name,
            "created": self.created,
            "commit": self.commit,
        }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` has an owner reference to the object with ``uid``."""
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def revisions(kube: Kube, daemonset: Mapping[str, Any]) -> list[Revision]:
    """The DaemonSet's revisions, oldest first, as of ``daemonset`` or later.

    The controller records a template's revision before it reports the generation
    observed, so when ``daemonset`` shows its spec observed, its current revision is in
    the list. Asked at least as new as the object's resourceVersion, the API server answers
    from its cache at once rather than first proving the cache current (``Collection``)."""
    meta = daemonset["metadata"]
    found = []
    selector = selector_string(daemonset["spec"]["selector"])
    for cr in kube.revisions.list(meta["namespace"], selector, not_older_than=meta.get("resourceVersion") or ""):
        if not owned_by(cr, meta["uid"]):
            continue
        template = copy.deepcopy((cr.get("data") or {}).get("spec", {}).get("template") or {})
        template.pop("$patch", None)
        cm = cr["metadata"]
        found.append(
            Revision(
                number=int(cr.get("revision") or 0),
                hash=(cm.get("labels") or {}).get(REVISION_LABEL) or cm["name"].rsplit("-", 1)[-1],
                name=cm["name"],
                created=cm.get("creationTimestamp", ""),
                commit=(cm.get("annotations") or {}).get(COMMIT_ANNOTATION),
                template=template,
            )
        )
    return sorted(found, key=lambda r: r.number)


def current(revs: list[Revision]) -> Revision | None:
    return revs[-1] if revs else None


def by_number(revs: list[Revision], number: int, where: str) -> Revision:
    for rev in revs:
        if rev.number == number:
            return rev
    have = ", ".join(str(r.number) for r in revs) or "none"
    raise InputError(f"{where}: no revision {number} (has: {have})")


def previous(revs: list[Revision], where: str) -> Revision:
    if len(revs) < 2:
        raise InputError(f"{where}: no previous revision to roll back to")
    return revs[-2]


def record_commit(kube: Kube, namespace: str, revision: Revision, commit: str | None) -> None:
    """Remember which git commit first produced a revision (shown by `history`)."""
    if commit and revision.commit is None:
        kube.revisions.annotate(namespace, revision.name, {COMMIT_ANNOTATION: commit})
