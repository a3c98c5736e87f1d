"""An independent observer of pods: what the API server says happened to them, in order.

`PodWatcher` lists and then watches the pods of one namespace (optionally a label
selector) from a background thread, with the official kubernetes client only — nothing
of dsroll's — so the e2e tests judge dsroll by what the API server says happened, not by
what dsroll believes it did. Every ADDED / MODIFIED / DELETED event becomes a `PodEvent`
in a timeline; a watch that expires (410 Gone) is followed by a relist whose differences
with the last known state are recorded as synthetic events, so the timeline stays a
complete account of the pods' states in the order etcd committed them.

`invariants.py` holds the checkers: pure functions of such a timeline.

What the real cluster does (kube-controller-manager v1.35.4 and kwok v0.7.0 of the
sandbox; evidence in `test_podwatch_live.py` and from the experiment described here):

* The DaemonSet controller never creates a node's replacement pod while the old one is
  still terminating, unless the update strategy surges. In
  `pkg/controller/daemon/daemon_controller.go` (`podsShouldBeOnNode`) a pod with a
  deletionTimestamp still makes the node count as having a daemon pod, and without
  `maxSurge` nothing is created for it; the next sync after the pod is gone creates the
  new one. Measured: a pod on a node object kwok does not manage (so no kubelet finalises
  its deletion) stayed terminating with a 30 s grace period, and in the 15 s watched the
  controller created no second pod on that node; once it was force-deleted, the new pod
  was created in the next event (~10 ms). With kwok the terminating window itself is
  only milliseconds (its `pod-delete` stage strips finalizers and deletes at once): in
  `RollingUpdate` and `OnDelete` replacements on kwok nodes the watch always showed the
  old pod's DELETED before the new pod's ADDED, so `terminating_overlaps` is empty there.
* With `maxSurge` the controller deliberately runs the new pod next to the old,
  non-terminating one until the new one is available: `assert_never_two_pods` fails on
  such a rollout (shown in `test_podwatch_live.py`). dsroll must never surge.
* The native `RollingUpdate` does not keep the strict maxUnavailable that dsroll promises.
  `rollingUpdate` (`update.go`) counts unavailability only over nodes that have pods in its
  cache ("Deleted pods do not count as unavailable so that updates make progress when
  nodes are down"): once a replaced node's old pod is gone and before its new pod shows
  up, the controller may delete the next pods. Measured with maxUnavailable 2 on 12 kwok
  nodes: in 4 of 20 rollouts the watch showed 3 nodes without a Ready pod for 10-40 ms
  (one with no pod or a just-created, not yet Ready one, plus two terminating). What it
  does keep: never more than maxUnavailable pods terminating at once (20 of 20). So the
  strict checker is for dsroll, not for the native controller.
* A DaemonSet pod is created with a required node affinity on `metadata.name` and bound
  by the scheduler a moment later, so its first event has no `spec.nodeName`; the node
  is taken from that affinity (`PodEvent.bound` says which).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import urllib3
from kubernetes import client, config, watch

WORKLOAD_LABEL = "dsroll.io/workload"
CLASS_LABEL = "dsroll.io/class"
REVISION_LABEL = "controller-revision-hash"

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str
    uid: str
    controller: bool


@dataclass(frozen=True)
class PodEvent:
    """One pod as an event showed it; `time` is when the watcher received the event."""

    seq: int
    time: float
    type: str
    name: str
    uid: str
    node: str | None
    bound: bool
    labels: Mapping[str, str]
    terminating: bool
    ready: bool
    phase: str | None
    restarts: int
    waiting_reasons: tuple[str, ...]
    owners: tuple[Owner, ...]
    resource_version: str
    terminated_reasons: tuple[str, ...] = ()  # a container's state or lastState terminated: Error, OOMKilled

    @property
    def crashed(self) -> bool:
        """A container of it died or is crash-looping: restarted, terminated, or in back-off."""
        return bool(self.restarts or self.terminated_reasons or "CrashLoopBackOff" in self.waiting_reasons)

    @property
    def workload(self) -> str | None:
        return self.labels.get(WORKLOAD_LABEL)

    @property
    def cls(self) -> str | None:
        return self.labels.get(CLASS_LABEL)

    @property
    def revision(self) -> str | None:
        return self.labels.get(REVISION_LABEL)

    @property
    def serving(self) -> bool:
        """Ready, not terminating, not finished: the node has its daemon."""
        return self.ready and not self.terminating and self.phase not in TERMINAL_PHASES

    def describe(self) -> str:
        state = "Ready" if self.ready else "not Ready"
        extra = "".join(
            [
                ", terminating" if self.terminating else "",
                ", deleted" if self.type == DELETED else "",
                f", {self.restarts} restarts" if self.restarts else "",
                f", {'/'.join(self.waiting_reasons)}" if self.waiting_reasons else "",
            ]
        )
        return f"{self.name} (uid {self.uid[:8]}, rev {self.revision}, {state}{extra})"


def clock(t: float) -> str:
    """Wall-clock time with milliseconds, as messages show it."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def pod_event(seq: int, at: float, kind: str, pod: Mapping[str, Any]) -> PodEvent:
    """A `PodEvent` from a raw pod (the JSON the API server sent)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodEvent(
        seq=seq,
        time=at,
        type=kind,
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        node=spec.get("nodeName") or _affinity_node(spec),
        bound=bool(spec.get("nodeName")),
        labels=MappingProxyType(dict(meta.get("labels") or {})),
        terminating=meta.get("deletionTimestamp") is not None,
        ready=ready,
        phase=status.get("phase"),
        restarts=sum(int(c.get("restartCount") or 0) for c in statuses),
        waiting_reasons=tuple(
            r for c in statuses if (r := ((c.get("state") or {}).get("waiting") or {}).get("reason"))
        ),
        owners=tuple(
            Owner(o.get("kind", ""), o.get("name", ""), o.get("uid", ""), bool(o.get("controller")))
            for o in meta.get("ownerReferences") or []
        ),
        resource_version=meta.get("resourceVersion", ""),
        terminated_reasons=tuple(
            r
            for c in statuses
            for key in ("state", "lastState")
            if (r := ((c.get(key) or {}).get("terminated") or {}).get("reason"))
        ),
    )


def _affinity_node(spec: Mapping[str, Any]) -> str | None:
    """The node a DaemonSet pod is meant for, before the scheduler binds it."""
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None


def relist_changes(
    known: Mapping[str, Mapping[str, Any]], listed: Iterable[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """Events that take the known pods (uid → raw pod) to a fresh list: what a lost watch missed."""
    changes: list[tuple[str, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for pod in listed:
        uid = pod["metadata"]["uid"]
        seen.add(uid)
        before = known.get(uid)
        if before is None:
            changes.append((ADDED, pod))
        elif before["metadata"].get("resourceVersion") != pod["metadata"].get("resourceVersion"):
            changes.append((MODIFIED, pod))
    changes.extend((DELETED, pod) for uid, pod in known.items() if uid not in seen)
    return changes


class PodWatcher:
    """Records every pod event of a namespace in a background thread.

    `start()` lists synchronously (the pods that exist become ADDED events), then watches
    from the list's resourceVersion. `stop()` first waits until the recorded state equals
    a fresh list, so nothing that happened before the call is missing, and returns the
    timeline. Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(
        self,
        namespace: str,
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        label_selector: str | None = None,
        watch_timeout: int = 1,
        outage_seconds: float = 120,
    ) -> None:
        self.namespace = namespace
        self.label_selector = label_selector
        # Short server-side watch timeouts: the loop notices stop() within a second, and
        # each renewal resumes from the last resourceVersion, so no event is lost.
        self._watch_timeout = watch_timeout
        # An API server away (restarted, frozen) for up to this long is waited for: the
        # watch then resumes, or relists on 410 and records what it missed as events.
        self.outage_seconds = outage_seconds
        self._failing_since: float | None = None
        self._api = client.CoreV1Api(
            config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None, context=context)
        )
        self._cond = threading.Condition()
        self._events: list[PodEvent] = []
        self._known: dict[str, Mapping[str, Any]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._rv = ""
        self.relists = 0

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> PodWatcher:
        if self._thread is not None:
            raise RuntimeError("PodWatcher already started")
        self._relist()
        self._thread = threading.Thread(target=self._run, name=f"podwatch-{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, sync: bool = True, timeout: float = 30) -> list[PodEvent]:
        """Stop watching (after catching up with the cluster unless `sync=False`); the timeline."""
        try:
            if sync and self._thread is not None and self._thread.is_alive():
                self.sync(timeout=timeout)
        finally:
            self._stopping.set()
            if self._thread is not None:
                self._thread.join(timeout=self._watch_timeout + 10)
        if self._error is not None:
            raise AssertionError(f"pod watcher of {self.namespace} failed: {self._error!r}") from self._error
        return self.timeline()

    def __enter__(self) -> PodWatcher:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # On an exception inside the block, do not mask it with a sync failure.
        self.stop(sync=exc_type is None)

    # -- reading -------------------------------------------------------------------
    def timeline(self) -> list[PodEvent]:
        with self._cond:
            return list(self._events)

    def wait_for(
        self, predicate: Callable[[Sequence[PodEvent]], bool], timeout: float, what: str = "condition"
    ) -> list[PodEvent]:
        """Block until `predicate(timeline)` holds (re-checked on every event)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._error is not None or predicate(self._events), timeout):
                raise AssertionError(f"pod watcher of {self.namespace}: no {what} within {timeout}s")
            if self._error is not None:
                raise AssertionError(f"pod watcher of {self.namespace} failed: {self._error!r}")
            return list(self._events)

    def sync(self, timeout: float = 30) -> None:
        """Wait until the recorded pods (uid and resourceVersion) equal a fresh list."""
        deadline = time.monotonic() + timeout
        while True:
            listed = {p["metadata"]["uid"]: p["metadata"]["resourceVersion"] for p in self._list()["items"] or []}

            def matches(listed: dict[str, str] = listed) -> bool:
                return self._error is not None or self._known_versions() == listed

            with self._cond:
                caught_up = self._cond.wait_for(
                    matches,
                    timeout=max(0.0, min(2.0, deadline - time.monotonic())),
                )
                if self._error is not None:
                    raise AssertionError(f"pod watcher of {self.namespace} failed: {self._error!r}")
                if caught_up:
                    return
            if time.monotonic() >= deadline:
                raise AssertionError(f"pod watcher of {self.namespace} did not catch up with the cluster in {timeout}s")

    # -- the thread ----------------------------------------------------------------
    def _known_versions(self) -> dict[str, str]:
        return {uid: pod["metadata"].get("resourceVersion", "") for uid, pod in self._known.items()}

    def _list(self) -> dict[str, Any]:
        """The pod list as the API server sent it (raw JSON, like the watch's objects)."""
        kwargs = {"label_selector": self.label_selector} if self.label_selector else {}
        response = self._api.list_namespaced_pod(self.namespace, _preload_content=False, **kwargs)
        return dict(json.loads(response.data))

    def _relist(self, *, after_expiry: bool = False) -> None:
        body = self._list()
        with self._cond:
            for kind, pod in relist_changes(self._known, body.get("items") or []):
                self._record(kind, pod)
            self._rv = body["metadata"]["resourceVersion"]
            if after_expiry:
                self.relists += 1
            self._cond.notify_all()

    def _record(self, kind: str, pod: Mapping[str, Any]) -> None:
        """Append one event (caller holds the condition's lock)."""
        event = pod_event(len(self._events), time.time(), kind, pod)
        self._events.append(event)
        if kind == DELETED:
            self._known.pop(event.uid, None)
        else:
            self._known[event.uid] = pod
        self._cond.notify_all()

    def _run(self) -> None:
        failures = 0
        relist = False
        kwargs: dict[str, Any] = {"label_selector": self.label_selector} if self.label_selector else {}
        while not self._stopping.is_set():
            try:
                if relist:
                    self._relist(after_expiry=True)
                    relist = False
                stream = watch.Watch()
                for item in stream.stream(
                    self._api.list_namespaced_pod,
                    self.namespace,
                    resource_version=self._rv,
                    timeout_seconds=self._watch_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=self._watch_timeout + 10,
                    **kwargs,
                ):
                    raw = item["raw_object"]
                    if item["type"] != "BOOKMARK":
                        with self._cond:
                            self._record(item["type"], raw)
                    self._rv = raw["metadata"]["resourceVersion"]
                    if self._stopping.is_set():
                        stream.stop()
                failures, self._failing_since = 0, None
            except client.ApiException as exc:
                if exc.status == 410:  # expired: relist, record what the lost watch missed, watch on
                    relist = True
                    continue
                failures += 1
                self._retry_or_fail(exc, failures)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                failures += 1
                self._retry_or_fail(exc, failures)
            except Exception as exc:  # anything else is a bug here: fail loudly rather than hang stop()
                self._fail(exc)

    def _retry_or_fail(self, exc: BaseException, failures: int) -> None:
        """Back off and try again, until the API server has failed for ``outage_seconds``."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > self.outage_seconds:
            self._fail(exc)
        else:
            self._stopping.wait(min(1.0, 0.1 * failures))

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._stopping.set()
            self._cond.notify_all()
