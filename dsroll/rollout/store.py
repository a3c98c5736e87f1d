"""Where a variant's rollout record lives: its state, a pending pause/abort request and,
under an external applier, the stable revision and commit.

One seam, two places, chosen by ``rollout.applier`` (docs/rollout.md, "Where the state lives"):

- ``dsroll`` (the default): annotations on the DaemonSet itself (``dsroll.io/rollout``,
  ``dsroll.io/rollout-request``). dsroll applies the object, so its record travels with it,
  and the state and the template can change in one request.
- ``external``: a ConfigMap per variant, ``dsroll-rollout-<variant>`` in the variant's
  namespace. Argo CD, Flux or ``kubectl apply`` own the DaemonSet and re-apply it on drift:
  an annotation there would be drift (and self-healed away, losing the record), and
  patching it would make dsroll a second field manager of the applier's object. A
  ConfigMap the applier never rendered is neither tracked nor pruned by it (Argo CD and
  Flux prune only what carries their own tracking labels); its owner reference to the
  DaemonSet lets the garbage collector remove it with the DaemonSet, and tells a record
  of an older DaemonSet of the same name (another uid) from this one's. The Lease that
  locks a variant is unchanged: a Lease is no object an applier renders either.

The external record also keeps the *stable* revision: the one every node ran when the
last rollout completed, and the git commit it came from. A rollout conducts the revision
the applier made from there (``external.previous``), and ``rollback --git-revert`` goes
back to that commit. Parsing and building the ConfigMap are pure; ``ConfigMapStore`` and
``AnnotationStore`` are the adapters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dsroll.labels import (
    LABEL_CLASS,
    LABEL_ENV,
    LABEL_WORKLOAD,
    MANAGED_BY,
    MANAGER,
    REQUEST_ANNOTATION,
    ROLLOUT_ANNOTATION,
    STORE_LABEL,
)
from dsroll.rollout.state import RolloutState, now_iso, read_request, read_state, request_action, request_json

if TYPE_CHECKING:
    from dsroll.kube import Kube

#: The keys of the external store's ConfigMap data.
STATE_KEY, REQUEST_KEY, STABLE_KEY = "rollout", "request", "stable"


@dataclass(frozen=True)
class Stable:
    """The revision every node ran when the last rollout completed, and its git commit."""

    revision: str
    commit: str | None
    at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Stable | None:
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("revision"), str) or not data["revision"]:
            return None
        commit = data.get("commit")
        return cls(data["revision"], commit if isinstance(commit, str) else None, str(data.get("at") or ""))


@dataclass(frozen=True)
class Record:
    """What a store holds for one variant."""

    state: RolloutState | None
    request: str | None = None  # "pause" | "abort" | None
    stable: Stable | None = None
    daemonset: dict[str, Any] | None = None  # the DaemonSet as a write answered (the annotation store)


class Store(Protocol):
    """A variant's record: read, written before each transition, asked to pause or abort."""

    where: str  # how messages name it

    def load(self, daemonset: Mapping[str, Any]) -> Record: ...

    def write(
        self,
        daemonset: Mapping[str, Any],
        state: RolloutState,
        *,
        clear_request: bool = False,
        stable: Stable | None = None,
    ) -> Record: ...

    def ask(self, daemonset: Mapping[str, Any], action: str, by: str) -> None: ...


# --- pure: the ConfigMap ----------------------------------------------------------------


def configmap_name(variant: str) -> str:
    return f"dsroll-rollout-{variant}"


def record_of(configmap: Mapping[str, Any] | None, daemonset: Mapping[str, Any]) -> Record:
    """The record a ConfigMap holds for ``daemonset``; empty when there is none, or when it
    belongs to an earlier DaemonSet of the same name (its owner reference names another uid)."""
    if not configmap:
        return Record(None)
    meta = daemonset["metadata"]
    owners = [ref.get("uid") for ref in configmap["metadata"].get("ownerReferences") or []]
    if owners and meta.get("uid") not in owners:
        return Record(None)
    data = configmap.get("data") or {}
    where = f"configmap {meta['namespace']}/{configmap_name(meta['name'])}"
    text = data.get(STATE_KEY)
    state = RolloutState.from_json(text, where) if text else None
    return Record(state, request_action(data.get(REQUEST_KEY)), Stable.from_json(data.get(STABLE_KEY)))


def configmap_patch(
    daemonset: Mapping[str, Any], data: Mapping[str, str | None], *, stale: bool = False
) -> dict[str, Any]:
    """The ConfigMap (a merge patch, or the body to create it) that records ``data`` for
    ``daemonset``: labelled as dsroll's, owned by the DaemonSet (not its controller).
    ``stale``: the ConfigMap on the server belongs to an earlier DaemonSet: every key is reset."""
    meta = daemonset["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in (LABEL_ENV, LABEL_WORKLOAD, LABEL_CLASS)}
    owner = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": meta["name"],
        "uid": meta["uid"],
    }
    body = {STATE_KEY: None, REQUEST_KEY: None, STABLE_KEY: None} if stale else {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {**labels, MANAGED_BY: MANAGER, STORE_LABEL: meta["name"]},
            "ownerReferences": [owner],
        },
        "data": {**body, **data},
    }


# --- the adapters ---------------------------------------------------------------------


class AnnotationStore:
    """``applier: dsroll``: the DaemonSet's own annotations."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.ns, self.name = kube, namespace, name
        self.where = f"annotation {ROLLOUT_ANNOTATION} on daemonset {namespace}/{name}"

    def load(self, daemonset: Mapping[str, Any]) -> Record:
        return Record(read_state(dict(daemonset)), read_request(dict(daemonset)))

    def write(
        self,
        daemonset: Mapping[str, Any],
        state: RolloutState,
        *,
        clear_request: bool = False,
        stable: Stable | None = None,
    ) -> Record:
        annotations: dict[str, str | None] = {ROLLOUT_ANNOTATION: state.to_json()}
        if clear_request:
            annotations[REQUEST_ANNOTATION] = None
        written = self.kube.daemonsets.annotate(self.ns, self.name, annotations)
        return Record(state, read_request(written), None, written)

    def ask(self, daemonset: Mapping[str, Any], action: str, by: str) -> None:
        self.kube.daemonsets.annotate(self.ns, self.name, {REQUEST_ANNOTATION: request_json(action, by)})


class ConfigMapStore:
    """``applier: external``: a ConfigMap per variant, beside the DaemonSet the applier owns."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.ns, self.name = kube, namespace, name
        self.where = f"configmap {namespace}/{configmap_name(name)}"
        self._checked = False  # written once by this process: it exists and belongs to this DaemonSet

    def _get(self) -> dict[str, Any] | None:
        return self.kube.configmaps.get(self.ns, configmap_name(self.name))

    def load(self, daemonset: Mapping[str, Any]) -> Record:
        return record_of(self._get(), daemonset)

    def _put(self, daemonset: Mapping[str, Any], data: Mapping[str, str | None]) -> dict[str, Any]:
        found = self._get()
        stale = (
            found is not None
            and record_of(found, daemonset) == Record(None)
            and bool(found["metadata"].get("ownerReferences"))
        )
        return self.kube.configmaps.put(configmap_patch(daemonset, data, stale=stale))

    def write(
        self,
        daemonset: Mapping[str, Any],
        state: RolloutState,
        *,
        clear_request: bool = False,
        stable: Stable | None = None,
    ) -> Record:
        data: dict[str, str | None] = {STATE_KEY: state.to_json()}
        if clear_request:
            data[REQUEST_KEY] = None
        if stable is not None:
            data[STABLE_KEY] = Stable(stable.revision, stable.commit, stable.at or now_iso()).to_json()
        if self._checked:  # it exists, and is this DaemonSet's: one request
            written = self.kube.configmaps.merge(self.ns, configmap_name(self.name), configmap_patch(daemonset, data))
        else:
            written = self._put(daemonset, data)
            self._checked = True
        found = record_of(written, daemonset)
        return Record(state, found.request, found.stable)

    def ask(self, daemonset: Mapping[str, Any], action: str, by: str) -> None:
        self._put(daemonset, {REQUEST_KEY: request_json(action, by)})


def store_for(kube: Kube, namespace: str, name: str, applier: str) -> Store:
    """The store of a variant whose spec ``applier`` applies (``rollout.applier``)."""
    if applier == "external":
        return ConfigMapStore(kube, namespace, name)
    return AnnotationStore(kube, namespace, name)
