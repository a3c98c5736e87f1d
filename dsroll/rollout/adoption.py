"""The pods' side of an orphan replacement: find orphans, relabel them, see them adopted.

``handover.py`` runs the stages and records them; this module does what happens to the
pods in between. Which pod goes to which new owner is decided by ``orphans.place``
(pure); here it is carried out. Waiting (for the garbage collector to clear owner
references, for the new DaemonSet to adopt) follows informers, woken by watch events: no
request per tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from dsroll.errors import ClusterError
from dsroll.orphans import Placement, label_patch, place, relabelled
from dsroll.rollout import revisions as revs
from dsroll.rollout.decide import observed
from dsroll.rollout.lease import RENEW_EVERY, Lease
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.watching import Informer, wait_any

if TYPE_CHECKING:
    from dsroll.kube import Kube

WAIT_SECONDS = 120.0


def controller_uid(pod: Mapping[str, Any]) -> str | None:
    refs = pod["metadata"].get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


def orphan_pods(kube: Kube, namespace: str, selectors: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The live pods any of ``selectors`` matches that no controller owns, by uid."""
    found: dict[str, dict[str, Any]] = {}
    for selector in selectors:
        pods, _ = kube.pods.list(namespace, revs.selector_string(selector))
        for pod in pods:
            if controller_uid(pod) is None and not pod["metadata"].get("deletionTimestamp"):
                found[pod["metadata"]["uid"]] = pod
    return found


def placement_rows(pods: Mapping[str, Mapping[str, Any]], source: str = "") -> list[tuple[str, str, str, str]]:
    """Pods by uid as ``orphans.place`` takes them: (pod, uid, node, source)."""
    return [
        (p["metadata"]["name"], uid, (p.get("spec") or {}).get("nodeName") or "", source) for uid, p in pods.items()
    ]


class Adoption:
    """Moves one workload's pods from their old owners to their new ones."""

    def __init__(self, kube: Kube, namespace: str, workload: str, label: str, lease: Lease, reporter: Reporter) -> None:
        self.kube = kube
        self.ns = namespace
        self.workload = workload
        self.label = label
        self.lease = lease
        self.reporter = reporter

    def relabel(
        self,
        selectors: Sequence[Mapping[str, Any]],
        node_target: Mapping[str, str],
        owners: Mapping[str, Mapping[str, Any]],
        *,
        fallback: str | None = None,
    ) -> None:
        """Each orphan gets the labels of the one new owner of its node; pods that cannot be
        placed are deleted (the plan lists them)."""
        orphans = orphan_pods(self.kube, self.ns, selectors)
        nodes = {n["metadata"]["name"] for n in self.kube.nodes.list()}
        mapping = {n: node_target.get(n, fallback) for n in nodes}
        for placement in place(placement_rows(orphans), mapping, nodes, self.workload):
            self.lease.renew()
            pod = orphans[placement.uid]
            if placement.target is None:
                self._drop(placement)
                continue
            owner = owners[placement.target]
            labels = pod["metadata"].get("labels") or {}
            template_labels = owner["spec"]["template"]["metadata"].get("labels") or {}
            patch = label_patch(labels, relabelled(labels, owner["spec"]["selector"], template_labels))
            if patch and not self._patch_pod(placement, patch):
                continue
            self.reporter.emit("relabel", self.label, f"{placement.pod} on {placement.node} → {placement.target}",
                               pod=placement.pod, node=placement.node, target=placement.target)  # fmt: skip

    def _patch_pod(self, placement: Placement, labels: Mapping[str, str | None]) -> bool:
        """Relabel exactly this pod (its uid in the patch is a precondition); False when it is gone."""
        if not self.kube.pods.relabel(self.ns, placement.pod, placement.uid, labels):
            self.reporter.emit(
                "gone", self.label, f"{placement.pod} is gone; its node gets a new pod", pod=placement.pod
            )
            return False
        return True

    def _drop(self, placement: Placement) -> None:
        self.kube.pods.delete(self.ns, placement.pod, placement.uid)
        message = f"{placement.pod}: {placement.reason}; deleted (no variant of {self.workload} takes it)"
        self.reporter.emit("unplaced", self.label, message, pod=placement.pod, node=placement.node,
                           reason=placement.reason, handling="deleted")  # fmt: skip

    def wait_released(self, name: str, uid: str, selector: Mapping[str, Any]) -> None:
        """Until no pod ``selector`` matches has an owner reference to ``uid`` any more."""
        pods = self.kube.pods.collection(self.ns, label_selector=revs.selector_string(selector))

        def released(pods: Informer) -> bool:
            return not [p for p in pods.snapshot() if revs.owned_by(p, uid)]

        self._await(released, f"pods of {name} still have an owner reference", pods)

    def wait_adopted(self, owners: Mapping[str, Mapping[str, Any]]) -> None:
        """Until every pod each new object's selector matches is owned by it, and the
        controller has observed the object's spec."""
        for name, manifest in owners.items():
            live = self.kube.daemonsets.get(self.ns, name)
            if live is None:
                raise ClusterError(f"daemonset {self.ns}/{name} disappeared after it was created")
            uid, selector = live["metadata"]["uid"], manifest["spec"]["selector"]
            pods_source = self.kube.pods.collection(self.ns, label_selector=revs.selector_string(selector))
            ds_source = self.kube.daemonsets.collection(self.ns, field_selector=f"metadata.name={name}")

            def adopted(pods: Informer, daemonsets: Informer, uid: str = uid) -> bool:
                live_pods = [p for p in pods.snapshot() if not p["metadata"].get("deletionTimestamp")]
                if not all(controller_uid(p) == uid for p in live_pods):
                    return False
                return observed(next(iter(daemonsets.snapshot()), {}), written=1)

            what = f"{name} has not adopted every pod its selector matches"
            count = self._await(adopted, what, pods_source, ds_source)
            self.reporter.emit("adopted", self.label, f"{name} owns its {count} pod(s)", name=name, pods=count)

    def _await(self, done: Callable[..., bool], what: str, *sources: Any) -> int:
        """Until ``done`` holds over informers of ``sources`` (woken by their events); the
        number of objects the first of them holds then."""
        changed = threading.Condition()
        informers = [Informer(source, changed=changed) for source in sources]
        deadline = time.monotonic() + WAIT_SECONDS
        with ExitStack() as stack:
            for informer in informers:
                stack.enter_context(informer)
            seen: tuple[int, ...] | None = None
            while not done(*informers):
                if time.monotonic() > deadline:
                    raise ClusterError(f"{self.label}: {what} after {WAIT_SECONDS:.0f}s")
                self.lease.renew()
                seen = wait_any(informers, min(RENEW_EVERY, deadline - time.monotonic()), seen)
            return len(informers[0].snapshot())
