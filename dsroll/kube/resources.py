"""Typed resource methods: every REST path and request body dsroll sends, in one place.

``Kube`` holds one object per kind (``kube.daemonsets``, ``kube.pods``, …); each speaks
the API's own JSON and knows its kind's paths. The bodies that must be exactly right —
the uid precondition that makes a delete or a relabel hit this object and not a namesake
created since, ``propagationPolicy: Orphan``, server-side apply as field manager dsroll —
are written here once. A ``Collection`` is what an ``Informer`` lists and watches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from dsroll.errors import ClusterError

if TYPE_CHECKING:
    from dsroll.kube.client import Kube

FIELD_MANAGER = "dsroll"
PAGE = 250  # items per list request: a page of whole pods or nodes parses to ~10 MiB of Python objects


def delete_options(uid: str | None = None, *, orphan: bool = False) -> dict[str, Any]:
    """DeleteOptions: ``uid`` deletes exactly that object; ``orphan`` leaves its dependents."""
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if orphan:
        body["propagationPolicy"] = "Orphan"
    if uid is not None:
        body["preconditions"] = {"uid": uid}
    return body


@dataclass(frozen=True)
class Collection:
    """One collection of objects (a kind in a namespace, or across namespaces), filtered by
    ``query``: listed once and then watched from the list's resourceVersion."""

    kube: Kube
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    #: A resourceVersion the list must be at least as new as (``resourceVersionMatch=NotOlderThan``):
    #: the API server answers from its cache at once, where a list with no resourceVersion (a
    #: consistent read) waits for the cache to prove it is current, up to ~100 ms for a kind
    #: nothing changed lately (ControllerRevisions, measured). "" : a consistent read.
    not_older_than: str = ""

    def list(
        self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """The items and the list's resourceVersion (to watch from).

        In pages of ``PAGE`` (``limit`` and ``continue``, one consistent snapshot): a list
        of 5,000 nodes or pods is tens of MiB of JSON, and parsed whole it would set the
        process's peak memory; a page at a time, each item reduced by ``transform`` as it
        comes, keeps only what the caller reads. One request up to ``PAGE`` items."""
        items: list[dict[str, Any]] = []
        query = {**self.query, "limit": str(PAGE)}
        if self.not_older_than:
            query.update(resourceVersion=self.not_older_than, resourceVersionMatch="NotOlderThan")
        while True:
            result = self.kube.request("GET", self.path, query=query)
            page = result.get("items") or []
            items.extend(page if transform is None else (transform(item) for item in page))
            meta = result.get("metadata") or {}
            if not meta.get("continue"):
                version = str(meta.get("resourceVersion", ""))
                if version:
                    self.kube.listed[self._key] = version
                return items, version
            # the token carries the snapshot: a resourceVersion beside it is refused
            query = {**self.query, "limit": str(PAGE), "continue": str(meta["continue"])}
            del result, page  # one whole page in memory at a time, not this one and the next

    def seen(self) -> Collection:
        """This collection, to be listed no older than this process last listed it.

        The list then asks ``NotOlderThan`` that resourceVersion, which the API server's
        cache has reached already: it answers at once, where a consistent read waits for the
        cache to prove it current (up to ~100 ms for a kind nothing changed lately, measured
        on the rollout's node list). What comes back is never older than what this process
        saw, and the watch that follows the list brings whatever is newer. Itself, a
        consistent read, when this process never listed it."""
        version = self.kube.listed.get(self._key, "")
        return replace(self, not_older_than=version) if version and not self.not_older_than else self

    @property
    def _key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.path, tuple(sorted(self.query.items()))

    def watch(self, resource_version: str, timeout: float) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.kube.watch(self.path, resource_version=resource_version, query=self.query, timeout=timeout)

    def __str__(self) -> str:
        return self.path


class _Kind:
    """The paths of one kind of object, and the requests every kind makes alike."""

    prefix: ClassVar[str]  # "/api/v1", "/apis/apps/v1", …
    plural: ClassVar[str]

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"{self.prefix}/namespaces/{namespace}/{self.plural}" if namespace else f"{self.prefix}/{self.plural}"
        return f"{base}/{name}" if name else base

    def collection(
        self, namespace: str | None = None, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> Collection:
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        return Collection(self.kube, self.path(namespace), {k: v for k, v in query.items() if v})

    def _get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.kube.request("GET", self.path(namespace, name), allow_missing=True)

    def _items(self, namespace: str | None, label_selector: str | None) -> list[dict[str, Any]]:
        return self.collection(namespace, label_selector=label_selector).list()[0]

    def _annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        """Merge ``annotations`` into the object's (None removes one)."""
        return self.kube.patch(self.path(namespace, name), {"metadata": {"annotations": dict(annotations)}})

    def _delete(self, namespace: str, name: str, uid: str | None = None, *, orphan: bool = False) -> bool:
        """Delete (exactly the object with ``uid``, when given); False when it is gone
        already, or the name now belongs to another object (409: the precondition failed)."""
        body = delete_options(uid, orphan=orphan)
        try:
            found = self.kube.request(
                "DELETE", self.path(namespace, name), body=body, content_type="application/json", allow_missing=True
            )
        except ClusterError as exc:
            if exc.status == 409:
                return False
            raise
        return found is not None


class DaemonSets(_Kind):
    prefix, plural = "/apis/apps/v1", "daemonsets"

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(namespace, name)

    def list(self, label_selector: str) -> list[dict[str, Any]]:
        """Across all namespaces."""
        return self._items(None, label_selector)

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create, refusing (409) when the name is taken: unlike apply, never takes over."""
        return self.kube.request("POST", self.path(namespace), body=dict(manifest))

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool, force: bool = True) -> dict[str, Any]:
        """Server-side apply as field manager ``dsroll``; with ``dry_run`` nothing is stored."""
        meta = manifest["metadata"]
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        if dry_run:
            query["dryRun"] = "All"
        return self.kube.request(
            "PATCH",
            self.path(meta["namespace"], meta["name"]),
            query=query,
            body=json.dumps(manifest),
            content_type="application/apply-patch+yaml",
        )

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        return self._annotate(namespace, name, annotations)

    def set_strategy(
        self,
        namespace: str,
        name: str,
        *,
        update_strategy: Mapping[str, Any],
        annotations: Mapping[str, str],
        template: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One JSON patch (so one new generation): the pod template (when given) replaced,
        the update strategy replaced, ``annotations`` set."""
        ops: list[dict[str, Any]] = []
        if template is not None:
            ops.append({"op": "replace", "path": "/spec/template", "value": template})
        ops.append({"op": "replace", "path": "/spec/updateStrategy", "value": update_strategy})
        for key, value in annotations.items():
            pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            ops.append({"op": "add", "path": pointer, "value": value})
        return self.kube.patch(self.path(namespace, name), ops, kind="json")

    def delete(self, namespace: str, name: str, uid: str | None = None, *, orphan: bool = False) -> bool:
        """``orphan``: propagationPolicy Orphan, the pods stay and lose their owner reference."""
        return self._delete(namespace, name, uid, orphan=orphan)


class Pods(_Kind):
    prefix, plural = "/api/v1", "pods"

    def list(
        self,
        namespace: str,
        label_selector: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Pods (each reduced by ``transform``) and the list's resourceVersion (to watch from)."""
        return self.collection(namespace, label_selector=label_selector).list(transform)

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        """Delete exactly this pod (uid precondition); False when it is already gone."""
        return self._delete(namespace, name, uid)

    def relabel(self, namespace: str, name: str, uid: str, labels: Mapping[str, str | None]) -> bool:
        """Merge ``labels`` into exactly this pod's (its uid in the patch is a precondition;
        None removes a label); False when it is gone."""
        body = {"metadata": {"uid": uid, "labels": dict(labels)}}
        try:
            self.kube.patch(self.path(namespace, name), body)
        except ClusterError as exc:
            if exc.status not in (404, 409):
                raise
            return False
        return True


class ControllerRevisions(_Kind):
    prefix, plural = "/apis/apps/v1", "controllerrevisions"

    def list(self, namespace: str, label_selector: str, *, not_older_than: str = "") -> list[dict[str, Any]]:
        """``not_older_than``: a resourceVersion the answer must include (``Collection``)."""
        found = self.collection(namespace, label_selector=label_selector)
        return replace(found, not_older_than=not_older_than).list()[0]

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        return self._annotate(namespace, name, annotations)

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        return self._delete(namespace, name, uid)


class Leases(_Kind):
    prefix, plural = "/apis/coordination.k8s.io/v1", "leases"

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(namespace, name)

    def create(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Refused with 409 when another holder created it first."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec}
        return self.kube.request("POST", self.path(namespace), body=body)

    def replace(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object: its resourceVersion makes a concurrent change a 409."""
        return self.kube.request("PUT", self.path(namespace, lease["metadata"]["name"]), body=dict(lease))

    def delete(self, namespace: str, name: str, uid: str) -> bool:
        return self._delete(namespace, name, uid)

    def guard_writes(self, check: Callable[[], None]) -> Callable[[], None]:
        """``check`` runs before every request that changes the workloads (the lock proves
        it is still held); returns the function that removes it."""
        return self.kube.guard_writes(check)


class ConfigMaps(_Kind):
    prefix, plural = "/api/v1", "configmaps"

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(namespace, name)

    def list(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self._items(namespace, label_selector)

    def create(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        data: Mapping[str, str],
    ) -> dict[str, Any]:
        metadata = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}
        return self.kube.request("POST", self.path(namespace), body=body)

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        return self._annotate(namespace, name, annotations)

    def put(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create the ConfigMap, or (409: it is there) merge ``manifest`` into it: its metadata
        (labels, owner references) and data, where a None value removes a key."""
        meta = manifest["metadata"]
        try:
            return self.kube.request("POST", self.path(meta["namespace"]), body=_without_nulls(manifest))
        except ClusterError as exc:
            if exc.status != 409:
                raise
        return self.merge(meta["namespace"], meta["name"], manifest)

    def merge(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: a None value removes the key."""
        return self.kube.patch(self.path(namespace, name), dict(patch))


def _without_nulls(obj: Any) -> Any:
    """A merge patch as a body to create: keys whose value is None left out."""
    if isinstance(obj, Mapping):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    return obj


class Events(_Kind):
    prefix, plural = "/api/v1", "events"

    def create(self, obj: Mapping[str, Any], reason: str, message: str, warning: bool = False) -> None:
        """A core/v1 Event on DaemonSet ``obj`` (shown by ``kubectl describe`` and ``kubectl events``)."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "dsroll"},
            "reportingComponent": "dsroll",
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.kube.request("POST", self.path(meta["namespace"]), body=event)

    def about(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The core/v1 Events whose involvedObject is the object with ``uid`` (one LIST, by
        field selector): the scheduler's, the kubelet's and the controllers' word on it."""
        return self.collection(namespace, field_selector=f"involvedObject.uid={uid}").list()[0]


class Nodes(_Kind):
    prefix, plural = "/api/v1", "nodes"

    def list(
        self,
        label_selector: str | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        return self.collection(None, label_selector=label_selector).list(transform)[0]

    def get(self, name: str) -> dict[str, Any] | None:
        """One node (None when there is none of that name)."""
        return self._get(None, quote(name))

    def labels(self) -> dict[str, dict[str, str]]:
        """Every node's labels, by node name."""
        return {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in self.list()}


class Namespaces(_Kind):
    """Read, and created only for ``cluster.createNamespace``; never deleted (no method here does)."""

    prefix, plural = "/api/v1", "namespaces"

    def get(self, name: str) -> dict[str, Any] | None:
        """None only for a 404: a 403 (the caller may not look) is an RBAC error, never "missing"."""
        return self._get(None, quote(name))

    def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create the namespace; False when it is there already (409: someone was quicker)."""
        try:
            self.kube.request("POST", self.path(None), body=dict(manifest))
        except ClusterError as exc:
            if exc.status == 409:
                return False
            raise
        return True


class SelfSubjectRulesReviews(_Kind):
    """Everything the caller may do in one namespace, in one request (``permissions.preflight``)."""

    prefix, plural = "/apis/authorization.k8s.io/v1", "selfsubjectrulesreviews"

    def rules(self, namespace: str) -> tuple[list[dict[str, Any]], bool]:
        """The caller's resource rules in ``namespace``, and whether the answer is incomplete
        (an authorizer that cannot list rules, such as a webhook, leaves some out)."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        }
        status = self.kube.request("POST", self.path(None), body=body).get("status") or {}
        return list(status.get("resourceRules") or []), bool(status.get("incomplete"))


class SelfSubjectAccessReviews(_Kind):
    """Asks "may I?" before a command changes anything (``dsroll.permissions.preflight``)."""

    prefix, plural = "/apis/authorization.k8s.io/v1", "selfsubjectaccessreviews"

    def allowed(self, verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        """Whether the caller (the impersonated user with ``--as``) may ``verb`` ``resource``
        in ``namespace`` (None: cluster-scoped, or in every namespace)."""
        attributes = {"verb": verb, "group": group, "resource": resource}
        if namespace is not None:
            attributes["namespace"] = namespace
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        review = self.kube.request("POST", self.path(None), body=body)
        return bool((review.get("status") or {}).get("allowed"))
