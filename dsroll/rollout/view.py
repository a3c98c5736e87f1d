"""The live view of one variant's pods, kept up to date one watch event at a time.

A rollout takes a decision after every watch event. Rebuilding the per-node facts from
the whole pod list each time costs O(pods) per event, which a fleet of thousands of
nodes cannot afford; ``PodIndex`` absorbs one event in O(pods on that node) and answers
what the decisions ask — the pod on a node, which nodes lack a Ready pod, which are
updated — in O(1). ``StepQueue`` keeps a step's nodes still to update in plan order,
O(log n) per change. Pure: the informer feeds them; nothing here talks to the cluster.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any

from dsroll.labels import REVISION_LABEL
from dsroll.plan import PodView, node_of
from dsroll.rollout.state import created_after


def _container(status: Mapping[str, Any]) -> dict[str, Any]:
    """A container's status as the health gate reads it (``causes``): restarts, and its
    waiting or terminated state and last termination, with reason, message and exit code."""
    kept: dict[str, Any] = {"name": status.get("name"), "restartCount": status.get("restartCount") or 0}
    for key in ("state", "lastState"):
        found = {
            kind: {k: detail[k] for k in ("reason", "message", "exitCode") if k in detail}
            for kind in ("waiting", "terminated")
            if isinstance(detail := (status.get(key) or {}).get(kind), dict)
        }
        if found:
            kept[key] = found
    return kept


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the rollout reads of a pod — ``PodView`` (name, uid, node, revision label,
    Ready, terminating, creationTimestamp), its owner's uid, what the health gate reads
    (phase, reason, each container's restarts and waiting reason) — and the
    resourceVersion a watch resumes from. An informer keeps this (``Informer(transform=)``)
    instead of the whole object: at 5,000 pods 94 MiB of Python objects become about 10."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    slim_meta: dict[str, Any] = {key: meta[key] for key in _POD_META if key in meta}
    revision = (meta.get("labels") or {}).get(REVISION_LABEL)
    slim_meta["labels"] = {REVISION_LABEL: revision} if revision is not None else {}
    slim_meta["ownerReferences"] = [{"uid": ref.get("uid")} for ref in meta.get("ownerReferences") or []]
    slim_status: dict[str, Any] = {key: status[key] for key in ("phase", "reason") if key in status}
    conditions = [  # Ready for the view; PodScheduled and the others name a stuck pod's cause
        {k: c[k] for k in ("type", "status", "reason", "message") if k in c} for c in status.get("conditions") or []
    ]
    if conditions:
        slim_status["conditions"] = conditions
    for key in ("containerStatuses", "initContainerStatuses"):
        if status.get(key):
            slim_status[key] = [_container(c) for c in status[key]]
    return {
        "metadata": slim_meta,
        "spec": {"nodeName": spec["nodeName"]} if spec.get("nodeName") else _unbound_spec(pod),
        "status": slim_status,
    }


def _unbound_spec(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A pod the scheduler has not bound keeps what the gate reads of its spec: the node the
    DaemonSet controller pinned it to (``plan.node_of``), and its containers' host ports and
    requests, which an unschedulable cause names (``causes``)."""
    pinned = node_of(pod)
    slim: dict[str, Any] = {}
    if pinned:
        pin = {"key": "metadata.name", "operator": "In", "values": [pinned]}
        terms = {"nodeSelectorTerms": [{"matchFields": [pin]}]}
        slim["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        kept: dict[str, Any] = {"name": c.get("name")}
        ports = [p for p in c.get("ports") or [] if p.get("hostPort")]
        if ports:
            kept["ports"] = ports
        requests = (c.get("resources") or {}).get("requests")
        if requests:
            kept["resources"] = {"requests": requests}
        containers.append(kept)
    if containers:
        slim["containers"] = containers
    return slim


_POD_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")


def _owned_by(pod: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])


class PodIndex:
    """The pods one DaemonSet owns, by node, with the rollout's per-node facts.

    ``unavailable``: nodes of the rollout without a live Ready pod (they count against
    ``maxUnavailable`` unless unready or held on their own). ``updated``: nodes of the
    rollout whose live pod is Ready on the target revision. ``touched``: nodes whose pods
    changed since the caller last looked (``take_touched``), so that it re-examines only
    those. ``strangers``: nodes outside the rollout where this DaemonSet has a pod (a
    node that joined, or came into the variant's class, since the rollout began).

    ``not_before`` (a restart's ``restartedAt``): a pod created at or before it is not
    current even on the target revision, so it is deleted and its node is not updated.
    """

    def __init__(self, owner_uid: str, nodes: Iterable[str], target: str, not_before: str | None = None) -> None:
        self.owner = owner_uid
        self.scope = frozenset(nodes)
        self.target = target
        self.not_before = not_before
        self._pods: dict[str, PodView] = {}
        self._raw: dict[str, Mapping[str, Any]] = {}
        self._by_node: dict[str, set[str]] = {}
        self.unavailable: set[str] = set(self.scope)
        self.updated: set[str] = set()
        self.touched: set[str] = set()
        self.strangers: set[str] = set()

    # --- feeding --------------------------------------------------------------------

    def reset(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list (at start, and after the watch relisted)."""
        nodes = set(self._by_node)
        self._pods.clear()
        self._raw.clear()
        self._by_node.clear()
        for pod in pods:
            if _owned_by(pod, self.owner):
                nodes.add(self._put(pod))
        for node in nodes | self.scope:
            self._refresh(node)

    def apply(self, kind: str, pod: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        uid = pod["metadata"]["uid"]
        node = self._drop(uid)
        if kind != "DELETED" and _owned_by(pod, self.owner):
            self._refresh(self._put(pod))
        if node is not None:
            self._refresh(node)

    def absorb(self, changes: Iterable[tuple[str, Any]]) -> None:
        """The informer's change log: ``("SYNC", [pods])`` after a (re)list, else events."""
        for kind, obj in changes:
            if kind == "SYNC":
                self.reset(obj)
            else:
                self.apply(kind, obj)

    def _put(self, pod: Mapping[str, Any]) -> str:
        view = PodView.of(pod)
        self._pods[view.uid] = view
        self._raw[view.uid] = pod
        self._by_node.setdefault(view.node, set()).add(view.uid)
        return view.node

    def _drop(self, uid: str) -> str | None:
        view = self._pods.pop(uid, None)
        self._raw.pop(uid, None)
        if view is None:
            return None
        uids = self._by_node.get(view.node)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._by_node[view.node]
        return view.node

    def add_node(self, node: str) -> None:
        """Take a node into the rollout (one that joined)."""
        self.scope = self.scope | {node}
        self.strangers.discard(node)
        self._refresh(node)

    def drop_node(self, node: str) -> None:
        """Leave a node out of the rollout (one that was deleted)."""
        self.scope = self.scope - {node}
        self.unavailable.discard(node)
        self.updated.discard(node)
        self.strangers.discard(node)

    def _refresh(self, node: str) -> None:
        self.touched.add(node)
        if node not in self.scope:
            if node and self._by_node.get(node):
                self.strangers.add(node)
            else:
                self.strangers.discard(node)
            return
        pod = self.pod_on(node)
        healthy = pod is not None and pod.ready and not pod.terminating
        if healthy:
            self.unavailable.discard(node)
        else:
            self.unavailable.add(node)
        if healthy and pod is not None and self.current(pod):
            self.updated.add(node)
        else:
            self.updated.discard(node)

    # --- questions ------------------------------------------------------------------

    def current(self, pod: PodView) -> bool:
        """On the target revision and, in a restart, created after it began."""
        return pod.revision == self.target and created_after(pod.created, self.not_before)

    def pod_on(self, node: str) -> PodView | None:
        """The node's live pod; a terminating one only where nothing else is (as ``pods_by_node``)."""
        found: PodView | None = None
        for uid in self._by_node.get(node, ()):
            pod = self._pods[uid]
            if found is None or (found.terminating and not pod.terminating):
                found = pod
        return found

    def old_pod(self, node: str) -> PodView | None:
        """The pod to delete on a node: a live one not ``current``."""
        pod = self.pod_on(node)
        return pod if pod is not None and not self.current(pod) and not pod.terminating else None

    def has(self, uid: str) -> bool:
        """The pod is still there (terminating or not)."""
        return uid in self._pods

    def new_pod(self, node: str, old_uid: str | None) -> Mapping[str, Any] | None:
        """The controller's live pod on the target revision that replaced ``old_uid`` on a node."""
        for uid in self._by_node.get(node, ()):
            pod = self._pods[uid]
            if self.current(pod) and uid != old_uid and not pod.terminating:
                return self._raw[uid]
        return None

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched


class StepQueue:
    """A step's nodes still to update, in plan order.

    The step is a window at the front of the rollout's order holding ``count`` nodes that
    are not ``left_out`` (skipped or held); ``None`` is the whole order. When a node in
    the window is left out (``leave_out``), the window grows by the next node, so that a
    step still updates its count where the fleet allows. A node that joined is ``add``-ed
    to the window at the end of the order.

    Nodes leave lazily: ``first`` skips the ones ``eligible`` refuses (updated or in flight
    meanwhile) and forgets them; ``offer`` puts a node back when its pods changed (an
    updated node whose pod someone deleted is due again).
    """

    def __init__(
        self,
        order: Sequence[str],
        eligible: Callable[[str], bool],
        count: int | None = None,
        left_out: Container[str] = (),
    ) -> None:
        self.order = list(order)
        self.position = {node: i for i, node in enumerate(self.order)}
        self.eligible = eligible
        self.left_out = set(n for n in self.order if n in left_out)
        end, kept = 0, 0
        while end < len(self.order) and (count is None or kept < count):
            kept += self.order[end] not in self.left_out
            end += 1
        self.end = end
        wanted = self.order[:end]
        self._heap = [(i, node) for i, node in enumerate(wanted) if node not in self.left_out and eligible(node)]
        heapq.heapify(self._heap)
        self._queued = {node for _, node in self._heap}

    def in_window(self, node: str) -> bool:
        return self.position.get(node, self.end) < self.end and node not in self.left_out

    def offer(self, node: str) -> None:
        if self.in_window(node) and node not in self._queued and self.eligible(node):
            heapq.heappush(self._heap, (self.position[node], node))
            self._queued.add(node)

    def leave_out(self, node: str) -> None:
        """Leave a node out of the step (skipped, held or gone); the window grows by one."""
        if node in self.left_out or node not in self.position:
            return
        self.left_out.add(node)
        if self.position[node] < self.end and self.end < len(self.order):
            self.end += 1
            self.offer(self.order[self.end - 1])

    def add(self, node: str) -> None:
        """A node that joined: at the end of the order, inside the window."""
        if node in self.position:
            return
        self.position[node] = len(self.order)
        self.order.append(node)
        if self.end == len(self.order) - 1:
            self.end += 1
        else:  # keep the window a prefix: move the joined node to its end
            self.order.insert(self.end, self.order.pop())
            for i in range(self.end, len(self.order)):  # queued entries lie before the window's end
                self.position[self.order[i]] = i
            self.end += 1
        self.offer(node)

    def first(self, count: int, skip: Container[str] = ()) -> list[str]:
        """Up to ``count`` eligible nodes in plan order, not in ``skip``; the queue keeps them.

        Stale entries met on the way are dropped for good, so over a step this costs
        O(log n) per node and per change."""
        found: list[str] = []
        kept: list[tuple[int, str]] = []
        while self._heap and len(found) < count:
            entry = heapq.heappop(self._heap)
            if entry[1] in self.left_out or not self.eligible(entry[1]):
                self._queued.discard(entry[1])
                continue
            kept.append(entry)
            if entry[1] not in skip:
                found.append(entry[1])
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return found

    def empty(self) -> bool:
        return not self.first(1)
