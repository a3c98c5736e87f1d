"""Decisions for ``rollout.applier: external``: which revision a rollout conducts, from
which, and who applied it. Pure.

Under an external applier (Argo CD, Flux, ``kubectl apply`` in CI) the DaemonSet carries
``updateStrategy: OnDelete``: a new template makes the controller record a new
ControllerRevision and restarts no pod. The *target* is then the current (newest)
revision; the nodes to do are those whose pod is not on it. The way back is the
*stable* revision: the one every node ran when the last rollout completed, as the store
recorded it (``store.Stable``); without a record (the first rollout dsroll conducts, or
a record lost), the revision most pods run apart from the target, then the newest
revision before it. It is never the target itself: going "back" to the revision being
rolled out is no way back at all (issue 14's ``previous = current``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsroll.rollout.writers import spec_writers


@dataclass(frozen=True)
class RevisionRef:
    """A ControllerRevision as a plan or a message names it."""

    number: int
    hash: str
    commit: str | None = None

    def __str__(self) -> str:
        commit = f", commit {self.commit[:12]}" if self.commit else ""
        return f"revision {self.number} ({self.hash}{commit})"

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.number, "hash": self.hash, "commit": self.commit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RevisionRef | None:
        if not data:
            return None
        return cls(int(data["revision"]), str(data["hash"]), data.get("commit"))


@dataclass(frozen=True)
class Applied:
    """What the applier put in the cluster: the revision a rollout conducts, the stable one it
    conducts from, the field manager that last wrote the spec (with its operation and time),
    and whether the live pod template is the render at the current commit."""

    target: RevisionRef
    stable: RevisionRef | None
    manager: str | None
    operation: str | None
    time: str | None
    matches_render: bool

    def describe(self) -> str:
        by = f" applied by {self.manager} ({self.operation} at {self.time})" if self.manager else ""
        since = f" from {self.stable}" if self.stable else " (no stable revision: nothing to go back to)"
        render = "" if self.matches_render else "; the render at HEAD differs from it: the applier has not synced yet"
        return f"{self.target}{by}{since}{render}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.to_json(),
            "stable": self.stable.to_json() if self.stable else None,
            "manager": self.manager,
            "operation": self.operation,
            "time": self.time,
            "matchesRender": self.matches_render,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Applied | None:
        if not data:
            return None
        target = RevisionRef.from_json(data["target"])
        assert target is not None
        return cls(
            target,
            RevisionRef.from_json(data.get("stable")),
            data.get("manager"),
            data.get("operation"),
            data.get("time"),
            bool(data.get("matchesRender")),
        )


def stable_revision(
    target: str,
    history: Sequence[str],
    pod_revisions: Iterable[str | None],
    recorded: Iterable[str | None] = (),
) -> str | None:
    """The revision a rollout to ``target`` conducts from (its way back), never ``target``.

    ``history``: the revision hashes, oldest first (the last is the current one);
    ``recorded``: what the cluster remembers, best first (the store's stable revision, the
    previous revision of an unfinished rollout); each counts only while its revision
    exists. Then the revision most pods run apart from the target (ties: the newer one);
    then the newest revision before the target; None when there is no other."""
    known = set(history)
    for candidate in recorded:
        if candidate and candidate != target and candidate in known:
            return candidate
    counts = Counter(r for r in pod_revisions if r and r != target and r in known)
    if counts:
        newest = {h: i for i, h in enumerate(history)}
        return max(counts, key=lambda r: (counts[r], newest[r]))
    older = [h for h in history if h != target]
    return older[-1] if older else None


def last_writer(daemonset: Mapping[str, Any], exclude: str) -> tuple[str | None, str | None, str | None]:
    """(manager, operation, time) of the newest field manager of the spec other than ``exclude``."""
    writers = spec_writers(daemonset, exclude)
    if not writers:
        return None, None, None
    return writers[0]
