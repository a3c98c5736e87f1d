"""Whether the namespaces a command writes to are there, and what a rollout does when one is not.

Kubernetes refuses every namespaced object in a namespace that does not exist, so a
rollout into one would fail at its first write, a Lease or a DaemonSet, with a bare 404.
Before anything is written, every namespace a variant in scope lives in is read once, and
``assess`` decides per namespace: there (nothing to do); missing and created, when the
environment says ``cluster.createNamespace: true`` (Helm's ``--create-namespace``, Argo
CD's ``CreateNamespace=true``); or missing and refused, with the kubectl command that
creates it. A namespace being deleted (phase ``Terminating``) takes no new objects and
cannot be created again until it is gone: refused either way.

A namespace dsroll creates carries dsroll's labels (``namespace_manifest``). dsroll never
deletes a namespace: ``--prune`` deletes DaemonSets only, and no role it ships may delete one.

Pure: what the cluster answered comes in, decisions and one-line messages go out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dsroll.labels import LABEL_ENV, MANAGED_BY, MANAGER

CREATE_KEY = "cluster.createNamespace"


class Presence(StrEnum):
    """What the API server holds under a namespace's name."""

    ACTIVE = "active"
    MISSING = "missing"
    TERMINATING = "terminating"


class NamespaceAction(StrEnum):
    """What a rollout does about a namespace before it writes anything."""

    NONE = "none"  # it is there
    CREATE = "create"  # missing, and cluster.createNamespace: true
    REFUSE = "refuse"  # missing without createNamespace, or being deleted


def presence(found: Mapping[str, Any] | None) -> Presence:
    """The presence of a namespace from its GET: None is a 404; a deletion under way is Terminating."""
    if found is None:
        return Presence.MISSING
    terminating = (found.get("status") or {}).get("phase") == "Terminating"
    if terminating or (found.get("metadata") or {}).get("deletionTimestamp"):
        return Presence.TERMINATING
    return Presence.ACTIVE


@dataclass(frozen=True)
class NamespaceStatus:
    """One namespace the scoped variants live in: is it there, and what a rollout does about it."""

    name: str
    presence: Presence
    action: NamespaceAction
    workloads: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for ``plan`` and ``diff``: the state and what ``rollout`` would do."""
        if self.presence is Presence.ACTIVE:
            return f"namespace {self.name}: exists"
        if self.presence is Presence.TERMINATING:
            return (
                f"namespace {self.name}: being deleted (Terminating): rollout refuses until it is gone "
                f"(kubectl wait --for=delete namespace/{self.name})"
            )
        if self.action is NamespaceAction.CREATE:
            return f"namespace {self.name}: does not exist: rollout creates it ({CREATE_KEY}: true)"
        return (
            f"namespace {self.name}: does not exist: rollout refuses until it does "
            f"(kubectl create namespace {self.name}, or {CREATE_KEY}: true)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.presence is not Presence.MISSING,
            "phase": {Presence.ACTIVE: "Active", Presence.TERMINATING: "Terminating"}.get(self.presence),
            "action": self.action.value,
            "workloads": list(self.workloads),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NamespaceStatus:
        found = (
            Presence.MISSING
            if not data["exists"]
            else Presence.TERMINATING
            if data.get("phase") == "Terminating"
            else Presence.ACTIVE
        )
        return cls(str(data["name"]), found, NamespaceAction(data["action"]), tuple(data.get("workloads") or ()))


def wanted(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Namespace → the workloads living there, from (namespace, workload) pairs; sorted both ways."""
    found: dict[str, set[str]] = {}
    for namespace, workload in pairs:
        found.setdefault(namespace, set()).add(workload)
    return {ns: tuple(sorted(found[ns])) for ns in sorted(found)}


def assess(
    observed: Mapping[str, Presence], workloads: Mapping[str, tuple[str, ...]], *, create: bool
) -> tuple[NamespaceStatus, ...]:
    """Each wanted namespace's status, in name order; ``create`` is ``cluster.createNamespace``."""
    statuses = []
    for name in sorted(workloads):
        seen = observed[name]
        if seen is Presence.ACTIVE:
            action = NamespaceAction.NONE
        elif seen is Presence.MISSING and create:
            action = NamespaceAction.CREATE
        else:
            action = NamespaceAction.REFUSE
        statuses.append(NamespaceStatus(name, seen, action, workloads[name]))
    return tuple(statuses)


def to_create(statuses: Iterable[NamespaceStatus]) -> tuple[str, ...]:
    return tuple(s.name for s in statuses if s.action is NamespaceAction.CREATE)


def refusal(statuses: Iterable[NamespaceStatus], env_file: str) -> str | None:
    """Why a rollout may not start, in one line (None: it may): the namespaces being deleted
    first, then the missing ones with the commands that create them."""
    refused = [s for s in statuses if s.action is NamespaceAction.REFUSE]
    if not refused:
        return None
    going = [s.name for s in refused if s.presence is Presence.TERMINATING]
    if going:
        return (
            f"{_names(going)} {'is' if len(going) == 1 else 'are'} being deleted (Terminating) and cannot take "
            f"new objects: wait until {'it is' if len(going) == 1 else 'they are'} gone "
            f"({'; '.join(f'kubectl wait --for=delete namespace/{n}' for n in going)}), then run again"
        )
    missing = [s.name for s in refused]
    commands = " && ".join(f"kubectl create namespace {n}" for n in missing)
    one = len(missing) == 1
    return (
        f"{_names(missing)} {'does' if one else 'do'} not exist: create {'it' if one else 'them'} with "
        f"'{commands}', or set {CREATE_KEY}: true in {env_file} to have rollout create "
        f"{'it' if one else 'them'}"
    )


def _names(names: list[str]) -> str:
    return f"namespace {names[0]}" if len(names) == 1 else f"namespaces {', '.join(names)}"


def namespace_manifest(name: str, environment: str) -> dict[str, Any]:
    """The Namespace a rollout creates: labelled as dsroll's, for the environment that made it."""
    labels = {MANAGED_BY: MANAGER, LABEL_ENV: environment}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
