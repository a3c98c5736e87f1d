"""Cascade-orphan replacement end to end: the CLI as a subprocess, judged by independent watchers.

Each test works in its own namespace on the real control plane with kwok nodes. The old
objects are either variants dsroll created (selector change, class or workload renamed,
class removed or added) or the Kubernetes documentation's `fluentd-elasticsearch` DaemonSet that
dsroll takes over and splits into per-class variants. While the CLI hands the pods over,
`PodWatcher` records every pod event of the namespace and `DaemonSetLog` every DaemonSet
event; the invariants of DESIGN.md ("Cascade-orphan replacement") and docs/orphan.md are
asserted on those timelines and on the cluster's objects, never on what dsroll reports alone:

* never more than maxUnavailable nodes without a Ready pod of the workload (the namespace
  holds only that workload: pods are selected by namespace, since a taken-over pod has no
  dsroll label until it is relabelled), nodes that no class of the workload covers excepted;
* never two live pods of the workload on one node;
* every pod deleted (other than the unplaced ones) was owned, as controller, by a DaemonSet
  created during the run and meant for its node when it was deleted: adopted before replaced;
* the end state is the render (or, after a restore, the original object) with every node of
  every variant on one Ready pod of its DaemonSet's current revision, and the backup kept.
"""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from e2e.invariants import (
    assert_max_unavailable,
    assert_never_two_pods,
    assert_untouched,
    disruptions,
    live_pods,
    replacements,
)
from e2e.podwatch import DELETED, PodEvent, PodWatcher
from e2e.test_rollout import Project, Run, expected_order, resource_versions
from kubernetes import client, config, watch

if TYPE_CHECKING:
    from conftest import K8sCluster

STATE = "dsroll.io/rollout"
RECORD = "dsroll.io/replacement"
BACKUP_OF = "dsroll.io/backup-of"
BEHAVIOUR = "sandbox.dsroll.io/behaviour"
CANARY = "dsroll.io/canary"
GPU = "nvidia.com/gpu.present"
ARCH = "kubernetes.io/arch"
REVISION = "controller-revision-hash"
ORIGINAL = "fluentd-elasticsearch"  # the DaemonSet dsroll takes over
ORIGINAL_IMAGE = "quay.io/fluentd_elasticsearch/fluentd:v5.0.1"
NEW_IMAGE = "quay.io/fluentd_elasticsearch/fluentd:v5.0.2"

AGENT_TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
spec:
  selector:
    matchLabels: {app: "{{ workload.name }}"{% if values.tier %}, tier: "{{ values.tier }}"{% endif %}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}
  template:
    metadata:
      labels: {app: "{{ workload.name }}"{% if values.tier %}, tier: "{{ values.tier }}"{% endif %}}
    spec:
      containers:
        - name: agent
          image: "example.com/agent:{{ values.tag }}"
"""

# The documentation's fluentd as a dsroll template: same selector label, so the restored
# original's selector also matches the variants' pods (dsroll must orphan those first).
FLUENTD_TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
  labels: {k8s-app: fluentd-logging}
spec:
  selector:
    matchLabels: {name: fluentd-elasticsearch}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}
  template:
    metadata:
      labels: {name: fluentd-elasticsearch}
{%- if values.behaviour %}
      annotations: {sandbox.dsroll.io/behaviour: "{{ values.behaviour }}"}
{%- endif %}
    spec:
      tolerations:
        - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      containers:
        - name: fluentd-elasticsearch
          image: "quay.io/fluentd_elasticsearch/fluentd:{{ values.tag }}"
      terminationGracePeriodSeconds: 30
"""

# https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/ (with a distinctive
# updateStrategy, so that a restore can be seen to bring the original one back).
ORIGINAL_MANIFEST: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": ORIGINAL, "labels": {"k8s-app": "fluentd-logging"}},
    "spec": {
        "selector": {"matchLabels": {"name": ORIGINAL}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}},
        "template": {
            "metadata": {"labels": {"name": ORIGINAL}},
            "spec": {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
                ],
                "containers": [
                    {
                        "name": "fluentd-elasticsearch",
                        "image": ORIGINAL_IMAGE,
                        "resources": {
                            "limits": {"memory": "200Mi"},
                            "requests": {"cpu": "100m", "memory": "200Mi"},
                        },
                        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}],
                    }
                ],
                "terminationGracePeriodSeconds": 30,
                "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}],
            },
        },
    },
}

HARDWARE = {
    "gpu": f'  - name: gpu\n    nodeSelector: {{{GPU}: "true"}}',
    "accel": f'  - name: accel\n    nodeSelector: {{{GPU}: "true"}}',
    "arm64": f"  - name: arm64\n    matchExpressions: [{{key: {ARCH}, operator: In, values: [arm64]}}]",
    "general": "  - name: general\n    default: true",
}


def env_text(
    namespace: str,
    *,
    workload: str = "agent",
    template: str = "agent.yaml.j2",
    hw: Sequence[str] = ("gpu", "arm64", "general"),
    classes: Sequence[str] | None = None,
    replaces: Sequence[str] = (),
    tag: str = "1.0",
    tier: str = "",
    behaviour: str = "",
    steps: Sequence[str] = ("1", "50%", "100%"),
    max_unavailable: int = 1,
    pause: str = "0",
    ready_timeout: str = "20s",
    on_failure: str = "rollback",
) -> str:
    lines = [
        "apiVersion: dsroll.io/v1alpha1",
        "kind: Environment",
        f"metadata: {{name: {namespace}}}",
        f"cluster: {{namespace: {namespace}}}",
        "hardwareClasses:",
        *(HARDWARE[c] for c in hw),
        "workloads:",
        f"  - name: {workload}",
        f"    template: templates/{template}",
        f'    values: {{tag: "{tag}", tier: "{tier}", behaviour: "{behaviour}"}}',
    ]
    if classes is not None:
        lines.append(f"    classes: {json.dumps(list(classes))}")
    if replaces:
        lines.append(f"    replaces: {json.dumps([{'namespace': namespace, 'name': n} for n in replaces])}")
    lines += [
        "rollout:",
        f"  steps: {json.dumps(list(steps))}",
        f"  maxUnavailable: {max_unavailable}",
        f"  pause: {json.dumps(pause)}",
        f"  readyTimeout: {ready_timeout}",
        "  minReadySeconds: 0",
        f"  onFailure: {on_failure}",
        f'  canaryNodeSelector: {{{CANARY}: "true"}}',
    ]
    return "\n".join(lines) + "\n"


def env_class(labels: Mapping[str, str], hw: Sequence[str]) -> str:
    """The class of a sandbox node under the classes `hw` (first match in file order, else general)."""
    for name in hw:
        if name in ("gpu", "accel") and labels.get(GPU) == "true":
            return name
        if name == "arm64" and labels.get(ARCH) == "arm64":
            return name
    return "general"


# -- a DaemonSet recorder ---------------------------------------------------------------


class DaemonSetLog:
    """Every DaemonSet of one namespace as the API server showed it, from a background thread.

    Objects that exist at `start()` are the old ones; `created()` is every DaemonSet first
    seen afterwards (uid → its first version), i.e. the objects dsroll created.
    """

    def __init__(self, cluster: K8sCluster, namespace: str) -> None:
        self.namespace = namespace
        self._apps = client.AppsV1Api(
            config.new_client_from_config(config_file=str(cluster.kubeconfig_path), context=cluster.context)
        )
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.initial: dict[str, dict[str, Any]] = {}
        self._known: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._rv = ""
        self._error: BaseException | None = None

    def start(self) -> DaemonSetLog:
        self._relist()
        self.initial = dict(self._known)
        self._thread = threading.Thread(target=self._run, name=f"dslog-{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._relist()  # whatever the last watch missed
        if self._error is not None:
            raise AssertionError(f"DaemonSet log of {self.namespace} failed: {self._error!r}")

    def already_there(self, obj: Mapping[str, Any]) -> None:
        """Count an object the test itself created after `start()` as an old one."""
        with self._lock:
            self.initial[obj["metadata"]["uid"]] = dict(obj)

    def created(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            found: dict[str, dict[str, Any]] = {}
            for _, kind, obj in self.events:
                uid = obj["metadata"]["uid"]
                if kind != DELETED and uid not in self.initial and uid not in found:
                    found[uid] = obj
            return found

    def _relist(self) -> None:
        listed = json.loads(self._apps.list_namespaced_daemon_set(self.namespace, _preload_content=False).data)
        with self._lock:
            seen = set()
            for obj in listed["items"]:
                uid = obj["metadata"]["uid"]
                seen.add(uid)
                before = self._known.get(uid)
                if before is None or before["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                    self._record("ADDED" if before is None else "MODIFIED", obj)
            for uid in set(self._known) - seen:
                self._record(DELETED, self._known[uid])
            self._rv = listed["metadata"]["resourceVersion"]

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((time.time(), kind, obj))
        if kind == DELETED:
            self._known.pop(obj["metadata"]["uid"], None)
        else:
            self._known[obj["metadata"]["uid"]] = obj

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                for item in watch.Watch().stream(
                    self._apps.list_namespaced_daemon_set,
                    self.namespace,
                    resource_version=self._rv,
                    timeout_seconds=1,
                    allow_watch_bookmarks=True,
                    _request_timeout=11,
                ):
                    raw = item["raw_object"]
                    if item["type"] != "BOOKMARK":
                        with self._lock:
                            self._record(item["type"], raw)
                    self._rv = raw["metadata"]["resourceVersion"]
                failures = 0
            except Exception as exc:  # 410 Gone: relist; anything else: retry, then fail the test
                try:
                    if isinstance(exc, client.ApiException) and exc.status == 410:
                        self._relist()
                        continue
                except Exception as again:
                    exc = again
                failures += 1
                if failures >= 10:
                    self._error = exc
                    return
                self._stopping.wait(0.1 * failures)

    def close(self) -> None:
        """Stop without the final relist (a test that failed half-way)."""
        self._stopping.set()


# -- the project -------------------------------------------------------------------------


class OrphanProject(Project):
    """test_rollout's project with this file's environment, templates and a backup directory."""

    def __init__(self, root: Path, namespace: str, cluster: K8sCluster, backups: Path) -> None:
        super().__init__(root, namespace, cluster)
        self.backups = backups
        self.env["DSROLL_BACKUP_DIR"] = str(backups)
        self.settings: dict[str, Any] = {}
        self.ds_logs: list[DaemonSetLog] = []

    def write(self, **settings: Any) -> None:
        self.settings = settings
        (self.root / "environments" / "e2e.yaml").write_text(env_text(self.namespace, **settings))

    # -- the cluster ---------------------------------------------------------------
    def daemonsets(self) -> dict[str, dict[str, Any]]:
        listed = json.loads(self.apps.list_namespaced_daemon_set(self.namespace, _preload_content=False).data)
        return {d["metadata"]["name"]: d for d in listed["items"]}

    def pods(self) -> list[dict[str, Any]]:
        return list(json.loads(self.core.list_namespaced_pod(self.namespace, _preload_content=False).data)["items"])

    def configmaps(self, selector: str | None = None) -> dict[str, dict[str, Any]]:
        kwargs = {"label_selector": selector} if selector else {}
        listed = json.loads(self.core.list_namespaced_config_map(self.namespace, _preload_content=False, **kwargs).data)
        return {c["metadata"]["name"]: c for c in listed["items"]}

    def revisions_of(self, ds: Mapping[str, Any]) -> list[Any]:
        """The ControllerRevisions the DaemonSet owns, oldest first."""
        uid = ds["metadata"]["uid"]
        owned = [
            r
            for r in self.apps.list_namespaced_controller_revision(self.namespace).items
            if any(o.uid == uid for o in r.metadata.owner_references or [])
        ]
        return sorted(owned, key=lambda r: r.revision)

    def current_revision_of(self, ds: Mapping[str, Any]) -> str:
        """The hash of the newest ControllerRevision the DaemonSet owns."""
        owned = self.revisions_of(ds)
        assert owned, f"{ds['metadata']['name']} owns no ControllerRevision"
        return str(owned[-1].metadata.labels[REVISION])

    def node_classes(self, hw: Sequence[str] | None = None) -> dict[str, str]:
        """Node → its class under the environment's classes (default: the last written)."""
        chosen = hw if hw is not None else self.settings.get("hw", ("gpu", "arm64", "general"))
        return {n: env_class(lb, chosen) for n, lb in self.node_labels().items()}

    def rendered(self) -> dict[str, dict[str, Any]]:
        """`dsroll render` of the environment as it is now: variant name → manifest."""
        run = self.dsroll("render", "e2e")
        assert run.code == 0, str(run)
        found = {}
        for path in (self.root / "rendered" / self.namespace / self.namespace).glob("*.yaml"):
            manifest = yaml.safe_load(path.read_text())
            found[manifest["metadata"]["name"]] = manifest
        assert found, f"nothing rendered:\n{run}"
        return found

    # -- watching --------------------------------------------------------------------
    def start_watching(self) -> Watch:
        pods = self.watcher()
        daemonsets = DaemonSetLog(self.cluster, self.namespace).start()
        self.ds_logs.append(daemonsets)
        return Watch(pods, daemonsets)

    def create_original(self, watching: Watch) -> dict[str, Any]:
        """The documentation's fluentd-elasticsearch, on every node with a Ready pod."""
        self.apps.create_namespaced_daemon_set(self.namespace, ORIGINAL_MANIFEST)
        nodes = set(self.node_labels())

        def everywhere(timeline: Sequence[PodEvent]) -> bool:
            found = live_pods(timeline)
            return set(found) == nodes and all(len(p) == 1 and p[0].serving for p in found.values())

        watching.pods.wait_for(everywhere, timeout=60, what=f"a Ready {ORIGINAL} pod on each of {len(nodes)} nodes")
        original = self.daemonsets()[ORIGINAL]
        watching.daemonsets.already_there(original)
        return original


@dataclass
class Watch:
    pods: PodWatcher
    daemonsets: DaemonSetLog

    def stop(self) -> list[PodEvent]:
        timeline = self.pods.stop()
        self.daemonsets.stop()
        return timeline


@pytest.fixture
def project(
    make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrphanProject]:
    root = make_project(
        env=env_text(namespace),
        templates={"agent.yaml.j2": AGENT_TEMPLATE, "fluentd.yaml.j2": FLUENTD_TEMPLATE},
        name="e2e",
    )
    (root / ".gitignore").write_text("rendered/\n")
    made = OrphanProject(root, namespace, k8s_cluster, tmp_path_factory.mktemp("backups"))
    yield made
    for pods in made.watchers:  # a test that failed half-way has not stopped its watchers
        pods.stop(sync=False)
    for log in made.ds_logs:
        log.close()


@pytest.fixture
def behaviours(k8s_cluster: K8sCluster) -> None:
    if not k8s_cluster.simulates_behaviours:
        pytest.skip(f"the {k8s_cluster.backend} backend has no kwok to play {BEHAVIOUR}")


# -- running the CLI ---------------------------------------------------------------------


def events(run: Run) -> list[dict[str, Any]]:
    """The `--events` JSON lines of a run (the summary line excluded)."""
    found = []
    for line in run.stdout.splitlines():
        if line.strip().startswith("{"):
            item = json.loads(line)
            if "event" in item:
                found.append(item)
    return found


def named(found: Sequence[Mapping[str, Any]], event: str) -> list[Mapping[str, Any]]:
    return [e for e in found if e["event"] == event]


def rollout(project: OrphanProject, *args: str) -> Run:
    return project.dsroll("rollout", "e2e", "--yes", "--events", "-o", "json", *args)


def kill_at(project: OrphanProject, event: str, *args: str, command: str = "rollout") -> Run:
    """Start `command --events` (`rollout`, `rollback`, ...) and SIGKILL it as soon as it prints `event`."""
    with project.background(command, "e2e", "--yes", "--events", "-o", "json", *args) as cli:
        lines = []
        assert cli.proc.stdout is not None
        while True:
            line = cli.proc.stdout.readline()
            if not line:
                done = cli.finish()
                raise AssertionError(f"the CLI ended before the {event!r} event:\n{''.join(lines)}\n{done}")
            lines.append(line)
            if line.startswith("{") and json.loads(line).get("event") == event:
                break
        killed = cli.kill()
    assert killed.code == -signal.SIGKILL, str(killed)
    return Run(killed.argv, killed.code, "".join(lines) + killed.stdout, killed.stderr)


def plan_json(project: OrphanProject) -> dict[str, Any]:
    run = project.dsroll("plan", "e2e", "-o", "json")
    assert run.code == 0, str(run)
    return run.report


def recorded(project: OrphanProject, workload: str) -> dict[str, Any]:
    """The record of the workload's one backup ConfigMap, as the cluster has it now."""
    (cm,) = project.configmaps(f"{BACKUP_OF}={workload}").values()
    return dict(json.loads(cm["metadata"]["annotations"][RECORD]))


def variant_state(project: OrphanProject, name: str) -> dict[str, Any]:
    """The `dsroll.io/rollout` state of a live DaemonSet of the namespace."""
    text = (project.daemonsets()[name]["metadata"].get("annotations") or {}).get(STATE)
    assert text, f"{name} has no {STATE} annotation"
    return dict(json.loads(text))


def the_replacement(plan: Mapping[str, Any], workload: str) -> dict[str, Any]:
    found = [r for r in plan["replacements"] if r["workload"] == workload]
    assert len(found) == 1, f"expected one replacement of {workload}: {json.dumps(plan['replacements'], indent=1)}"
    return dict(found[0])


# -- what must hold ----------------------------------------------------------------------


def controller(pod: PodEvent | Mapping[str, Any]) -> Any:
    if isinstance(pod, PodEvent):
        return next((o for o in pod.owners if o.controller), None)
    return next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("controller")), None)


def assert_adopted_before_deleted(
    timeline: Sequence[PodEvent],
    created: Mapping[str, Mapping[str, Any]],
    owners: Mapping[str, set[str]],
    *,
    unplaced: Collection[str] = (),
    in_place: Mapping[str, str] | None = None,
) -> int:
    """Every pod deleted (unplaced ones aside) was owned, as controller, by a DaemonSet created
    during the run whose name is in `owners[its node]`, at the moment it was deleted (or by one
    of the `in_place` variants, name → uid, that an ordinary staged update replaced). Returns
    how many deletions were checked."""
    problems, checked, gone = [], 0, set()
    names = {uid: obj["metadata"]["name"] for uid, obj in created.items()}
    names.update({uid: name for name, uid in (in_place or {}).items()})
    for event in timeline:
        if event.uid in gone or not (event.terminating or event.type == DELETED):
            continue
        gone.add(event.uid)
        if event.name in unplaced:
            continue
        checked += 1
        owner = controller(event)
        allowed = owners.get(event.node or "", set())
        if owner is None or owner.kind != "DaemonSet" or owner.uid not in names or owner.name not in allowed:
            what = f"{owner.kind}/{owner.name} uid {owner.uid[:8]}" if owner else "no controller (an orphan)"
            problems.append(
                f"  {event.name} on {event.node}: deleted while owned by {what}; expected a new DaemonSet of "
                f"{sorted(allowed)} (created: {sorted(names.values())})"
            )
    assert not problems, "pods deleted before their new DaemonSet adopted them:\n" + "\n".join(problems)
    return checked


def assert_relabelled_as_orphans(timeline: Sequence[PodEvent]) -> int:
    """A pod's labels change only while it has no controller (after the garbage collector
    cleared the old owner, before the new one adopted it). Returns how many pods were relabelled."""
    last: dict[str, PodEvent] = {}
    problems, relabelled = [], set()
    for event in timeline:
        before = last.get(event.uid)
        last[event.uid] = event
        if before is None or event.type == DELETED:
            continue
        # The API server copies the node's topology labels to a pod when it is bound (not a relabel).
        changed = sorted(
            k
            for k in {*before.labels, *event.labels}
            if before.labels.get(k) != event.labels.get(k) and not k.startswith("topology.kubernetes.io/")
        )
        if not changed:
            continue
        relabelled.add(event.uid)
        owner = controller(event)
        if owner is not None:
            problems.append(f"  {event.name} on {event.node}: labels {changed} changed while owned by {owner}")
    assert not problems, "pods relabelled while a DaemonSet owned them:\n" + "\n".join(problems)
    return len(relabelled)


def assert_created_on_delete(created: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> None:
    """Every DaemonSet dsroll created is one of `names` and was created with OnDelete."""
    seen = {obj["metadata"]["name"]: obj for obj in created.values()}
    assert set(seen) >= set(names), f"expected {sorted(names)} to be created, saw {sorted(seen)}"
    for name, obj in seen.items():
        strategy = obj["spec"]["updateStrategy"]["type"]
        assert strategy == "OnDelete", f"{name} was created with updateStrategy {strategy}, not OnDelete"


def assert_handover(
    timeline: Sequence[PodEvent],
    log: DaemonSetLog,
    *,
    nodes: Sequence[str],
    owners: Mapping[str, set[str]],
    max_unavailable: int = 1,
    unplaced: Collection[str] = (),
    in_place: Mapping[str, str] | None = None,
) -> int:
    """The watcher's invariants of a handover; the number of pod deletions checked."""
    assert_max_unavailable(timeline, nodes, max_unavailable)
    assert_never_two_pods(timeline, key=lambda pod: "the workload")  # the namespace holds one workload
    assert_relabelled_as_orphans(timeline)
    return assert_adopted_before_deleted(timeline, log.created(), owners, unplaced=unplaced, in_place=in_place)


def assert_event_order(found: Sequence[Mapping[str, Any]], order: Sequence[str]) -> None:
    """Every event of each kind comes after every event of the kinds before it."""
    kinds = [e["event"] for e in found]
    for before, after in itertools.pairwise(order):
        assert before in kinds and after in kinds, f"missing {before} or {after} in {kinds}"
        last_before = max(i for i, k in enumerate(kinds) if k == before)
        first_after = min(i for i, k in enumerate(kinds) if k == after)
        assert last_before < first_after, f"{before} after {after}: {kinds}"


def assert_backup(
    project: OrphanProject, workload: str, *, old: Sequence[str], stage: str, operation: str = "replace"
) -> dict[str, Any]:
    """The one backup ConfigMap of the workload and its local file: the record and the old objects."""
    found = project.configmaps(f"{BACKUP_OF}={workload}")
    assert len(found) == 1, f"expected one backup ConfigMap of {workload}, found {sorted(found)}"
    ((name, cm),) = found.items()
    assert name.startswith(f"dsroll-backup-{workload}-") and len(name) == len(f"dsroll-backup-{workload}-") + 8, name
    record = json.loads(cm["metadata"]["annotations"][RECORD])
    assert (record["operation"], record["stage"]) == (operation, stage), record
    assert sorted(s["name"] for s in record["sources"]) == sorted(old), record
    saved = yaml.safe_load(cm["data"]["daemonsets.yaml"])
    assert saved["kind"] == "List" and sorted(i["metadata"]["name"] for i in saved["items"]) == sorted(old), saved
    uids = {i["metadata"]["uid"] for i in saved["items"]}
    history = yaml.safe_load(cm["data"]["controllerrevisions.yaml"])
    assert history["kind"] == "List" and history["items"], "the old objects' ControllerRevisions are saved"
    for rev in history["items"]:
        assert (rev.get("apiVersion"), rev.get("kind")) == ("apps/v1", "ControllerRevision"), rev["metadata"]
        assert {o["uid"] for o in rev["metadata"]["ownerReferences"]} <= uids, rev["metadata"]
    file = Path(record["file"])
    assert file.is_file() and project.backups in file.parents, (
        f"local backup {file} (DSROLL_BACKUP_DIR {project.backups})"
    )
    local = yaml.safe_load(file.read_text())
    assert {(i.get("apiVersion"), i.get("kind")) for i in local["items"]} == {
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ControllerRevision"),
    }, f"{file}: every item a whole object"
    kept = sorted(i["metadata"]["name"] for i in local["items"] if i["kind"] == "DaemonSet")
    assert local["kind"] == "List" and kept == sorted(old), f"{file} names {kept}, expected {sorted(old)}"
    return {"name": name, "record": record}


def assert_rendered_state(
    project: OrphanProject,
    workload: str,
    *,
    old: Sequence[str],
    replaced: Sequence[str],
    unplaced_nodes: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The cluster is the render: variants, selectors, strategies, one Ready current pod per
    node of each class, old objects gone, no orphan pod, the backup complete. Returns the live DSs."""
    rendered = project.rendered()
    live = project.daemonsets()
    assert set(live) == set(rendered), f"live {sorted(live)} != rendered {sorted(rendered)}"
    assert not (set(old) - set(rendered)) & set(live), "old objects are gone"
    backup = assert_backup(project, workload, old=old, stage="complete")
    classes = project.node_classes()
    wanted = {name: {n for n, c in classes.items() if c == m["metadata"]["labels"]["dsroll.io/class"]}
              for name, m in rendered.items()}  # fmt: skip
    by_uid = {d["metadata"]["uid"]: name for name, d in live.items()}
    pods: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in live}
    for pod in project.pods():
        owner = controller(pod)
        where = f"pod {pod['metadata']['name']} on {pod['spec'].get('nodeName')}"
        assert owner is not None and owner["uid"] in by_uid, f"{where} is an orphan or owned by an old object: {owner}"
        assert not pod["metadata"].get("deletionTimestamp"), f"{where} is still terminating"
        pods[by_uid[owner["uid"]]].setdefault(pod["spec"].get("nodeName") or "", []).append(pod)
    for name, manifest in rendered.items():
        ds = live[name]
        assert ds["spec"]["selector"] == manifest["spec"]["selector"], name
        strategy, rendered_strategy = ds["spec"]["updateStrategy"], manifest["spec"]["updateStrategy"]
        assert strategy["type"] == rendered_strategy["type"], (name, strategy)
        assert rendered_strategy["rollingUpdate"].items() <= strategy["rollingUpdate"].items(), (name, strategy)
        image = manifest["spec"]["template"]["spec"]["containers"][0]["image"]
        assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == image, name
        if name in replaced:  # what `rollback` recognises: one revision, the state naming the backup
            state = json.loads(ds["metadata"]["annotations"][STATE])
            assert (state["phase"], state["replacement"]) == ("complete", backup["name"]), (name, state)
            assert len(project.revisions_of(ds)) == 1, f"{name} starts its own history, not the old object's"
        current = project.current_revision_of(ds)
        on = pods[name]
        assert set(on) == wanted[name], f"{name} runs on {sorted(on)}, its class has {sorted(wanted[name])}"
        for node, found in on.items():
            assert len(found) == 1, f"{name}: {len(found)} pods on {node}"
            labels = found[0]["metadata"]["labels"]
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in found[0]["status"].get("conditions") or []
            )
            assert ready and labels.get(REVISION) == current, (
                f"{name} on {node}: {labels}, Ready {ready}, want {current}"
            )
    running = {n for on in pods.values() for n in on}
    assert not running & set(unplaced_nodes), f"unplaced nodes got a pod again: {sorted(running & set(unplaced_nodes))}"
    return live


def assert_restored(project: OrphanProject, original: Mapping[str, Any], *, stage: str = "restored") -> None:
    """Back to the original object: same name, selector, template, strategy and labels, its pods
    without a dsroll label, one Ready pod of its current revision on every node."""
    live = project.daemonsets()
    assert set(live) == {ORIGINAL}, f"only {ORIGINAL} is left, found {sorted(live)}"
    ds = live[ORIGINAL]
    assert ds["spec"]["selector"] == original["spec"]["selector"]
    assert ds["spec"]["template"] == original["spec"]["template"], "the original template is back"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == ORIGINAL_IMAGE
    assert ds["spec"]["updateStrategy"] == original["spec"]["updateStrategy"], ds["spec"]["updateStrategy"]
    assert ds["metadata"].get("labels") == original["metadata"].get("labels")
    current = project.current_revision_of(ds)
    on: dict[str, list[dict[str, Any]]] = {}
    for pod in project.pods():
        owner = controller(pod)
        name = pod["metadata"]["name"]
        assert owner is not None and owner["uid"] == ds["metadata"]["uid"], f"{name} is not the restored object's"
        labels = pod["metadata"]["labels"]
        assert not [k for k in labels if k.startswith("dsroll.io/") or k == "app.kubernetes.io/managed-by"], labels
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
        assert ready and labels.get(REVISION) == current, f"{name}: {labels}, Ready {ready}, want {current}"
        on.setdefault(pod["spec"]["nodeName"], []).append(pod)
    nodes = set(project.node_labels())
    assert set(on) == nodes and all(len(p) == 1 for p in on.values()), {n: len(p) for n, p in on.items()}
    assert_backup(project, "fluentd", old=[ORIGINAL], stage=stage, operation="restore")


# -- scenarios ---------------------------------------------------------------------------


def deploy(project: OrphanProject, **settings: Any) -> None:
    """Create the variants with `rollout` (no replacement: nothing to hand over yet)."""
    project.commit("deploy", **settings)
    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert run.code == 0, str(run)
    assert {v["action"] for v in run.report["variants"]} == {"create"}, str(run)


TAKEOVER = {"workload": "fluentd", "template": "fluentd.yaml.j2", "tag": "v5.0.2", "replaces": [ORIGINAL]}


@dataclass
class Takeover:
    watching: Watch
    original: dict[str, Any]
    pods: dict[str, str]  # node → the original pod on it
    classes: dict[str, str]  # node → class


def take_over_setup(project: OrphanProject, **settings: Any) -> Takeover:
    """fluentd-elasticsearch on every node, watched; the environment that takes it over committed."""
    watching = project.start_watching()
    original = project.create_original(watching)
    pods = {n: p[0].name for n, p in live_pods(watching.pods.timeline()).items()}
    project.commit("take over fluentd-elasticsearch", **{**TAKEOVER, **settings})
    return Takeover(watching, original, pods, project.node_classes())


def forward_owners(classes: Mapping[str, str], workload: str) -> dict[str, set[str]]:
    return {n: {f"{workload}-{c}"} for n, c in classes.items()}


# -- 1. a selector change ------------------------------------------------------------------


def test_selector_change_hands_every_pod_to_the_recreated_variant_then_replaces_it_in_steps(
    project: OrphanProject,
) -> None:
    deploy(project)
    watching = project.start_watching()
    start = live_pods(watching.pods.timeline())
    old_uids = {d["metadata"]["name"]: d["metadata"]["uid"] for d in project.daemonsets().values()}
    project.commit("agent gets tier: node", tier="node")
    classes = project.node_classes()
    variants = [f"agent-{c}" for c in ("gpu", "arm64", "general")]

    plan = plan_json(project)
    found = the_replacement(plan, "agent")
    assert found["operation"] == "replace" and "selector" in found["reason"], found
    assert {d["name"]: (d["uid"], d["managed"]) for d in found["deletes"]} == {
        n: (u, True) for n, u in old_uids.items()
    }, found
    assert sorted(found["creates"]) == sorted(variants) and found["unplaced"] == [], found
    assert {t: set(n) for t, n in found["adopts"].items()} == {
        v: {n for n, c in classes.items() if f"agent-{c}" == v} for v in variants
    }, found
    assert {v["name"]: v["action"] for v in plan["variants"]} == dict.fromkeys(variants, "orphan-replace"), plan
    assert all(v["steps"] for v in plan["variants"]), "each recreated variant replaces its pods in steps"

    run = rollout(project)
    timeline = watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    assert_event_order(seen, ["backup", "orphan-delete", "orphaned", "relabel", "created", "adopted", "node-replaced"])
    assert {(e["pod"], e["node"], e["target"]) for e in named(seen, "relabel")} == {
        (p[0].name, n, f"agent-{classes[n]}") for n, p in start.items()
    }, "each orphan relabelled once, for the variant of its node's class"
    assert sorted(e["name"] for e in named(seen, "created")) == sorted(variants)

    nodes = sorted(classes)
    checked = assert_handover(timeline, watching.daemonsets, nodes=nodes, owners=forward_owners(classes, "agent"))
    assert checked == len(nodes)
    assert_created_on_delete(watching.daemonsets.created(), variants)
    assert replacements(timeline) == dict.fromkeys(nodes, 1), "every node's pod is replaced exactly once"
    live = assert_rendered_state(project, "agent", old=variants, replaced=variants)
    assert {n: d["metadata"]["uid"] for n, d in live.items()}.keys() == old_uids.keys()
    assert not {d["metadata"]["uid"] for d in live.values()} & set(old_uids.values()), "all three recreated"


# -- 2. renames ---------------------------------------------------------------------------


def test_class_renamed_hands_its_pods_to_the_new_variant_and_leaves_the_others_alone(project: OrphanProject) -> None:
    deploy(project)
    watching = project.start_watching()
    project.commit("gpu is now accel", hw=("accel", "arm64", "general"))
    classes = project.node_classes()
    accel = sorted(n for n, c in classes.items() if c == "accel")
    others = sorted(set(classes) - set(accel))

    plan = plan_json(project)
    found = the_replacement(plan, "agent")
    assert [d["name"] for d in found["deletes"]] == ["agent-gpu"], found
    assert found["creates"] == ["agent-accel"] and found["unplaced"] == [], found
    assert sorted(found["adopts"]["agent-accel"]) == accel, found
    actions = {v["name"]: v["action"] for v in plan["variants"]}
    assert actions == {"agent-gpu": "orphan-replace", "agent-accel": "orphan-replace",
                       "agent-arm64": "unchanged", "agent-general": "unchanged"}, actions  # fmt: skip

    run = rollout(project)
    timeline = watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    assert_event_order(seen, ["backup", "orphaned", "relabel", "created", "adopted", "node-replaced"])
    assert sorted(e["node"] for e in named(seen, "relabel")) == accel
    assert {e["target"] for e in named(seen, "relabel")} == {"agent-accel"}

    checked = assert_handover(
        timeline, watching.daemonsets, nodes=sorted(classes), owners=forward_owners(classes, "agent")
    )
    assert checked == len(accel)
    assert_created_on_delete(watching.daemonsets.created(), ["agent-accel"])
    assert_untouched(timeline, others)
    assert replacements(timeline) == dict.fromkeys(accel, 1)
    assert_rendered_state(project, "agent", old=["agent-gpu"], replaced=["agent-accel"])


def test_workload_renamed_with_replaces_hands_every_pod_to_the_new_variants(project: OrphanProject) -> None:
    deploy(project)
    old = [f"agent-{c}" for c in ("gpu", "arm64", "general")]
    watching = project.start_watching()
    project.commit("agent is now collector", workload="collector", replaces=old)
    classes = project.node_classes()
    new = [f"collector-{c}" for c in ("gpu", "arm64", "general")]

    found = the_replacement(plan_json(project), "collector")
    assert sorted(d["name"] for d in found["deletes"]) == sorted(old), found
    assert sorted(found["creates"]) == sorted(new) and found["unplaced"] == [], found

    run = rollout(project)
    timeline = watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    assert {e["target"] for e in named(events(run), "relabel")} == set(new)
    nodes = sorted(classes)
    checked = assert_handover(timeline, watching.daemonsets, nodes=nodes, owners=forward_owners(classes, "collector"))
    assert checked == len(nodes)
    assert_created_on_delete(watching.daemonsets.created(), new)
    assert replacements(timeline) == dict.fromkeys(nodes, 1)
    assert_rendered_state(project, "collector", old=old, replaced=new)


# -- 3. taking over a DaemonSet dsroll did not create ------------------------------------


def test_takeover_splits_an_existing_daemonset_into_per_class_variants(project: OrphanProject) -> None:
    setup = take_over_setup(project)
    classes, nodes = setup.classes, sorted(setup.classes)
    variants = [f"fluentd-{c}" for c in ("gpu", "arm64", "general")]

    plan = plan_json(project)
    found = the_replacement(plan, "fluentd")
    (deleted,) = found["deletes"]
    assert (deleted["name"], deleted["uid"], deleted["pods"], deleted["managed"]) == (
        ORIGINAL,
        setup.original["metadata"]["uid"],
        len(nodes),
        False,
    ), found
    assert sorted(found["creates"]) == sorted(variants) and found["unplaced"] == [], found
    assert {t: sorted(n) for t, n in found["adopts"].items()} == {
        v: sorted(n for n, c in classes.items() if f"fluentd-{c}" == v) for v in variants
    }
    backup = found["backup"]["configMap"]
    actions = {v["name"]: (v["action"], bool(v["steps"])) for v in plan["variants"]}
    assert actions == {**dict.fromkeys(variants, ("orphan-replace", True)), ORIGINAL: ("orphan-replace", False)}

    run = rollout(project)
    timeline = setup.watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    assert_event_order(seen, ["backup", "orphan-delete", "orphaned", "relabel", "created", "adopted", "node-replaced"])
    assert named(seen, "backup")[0]["configMap"].endswith(backup), seen[0]
    assert [e["name"] for e in named(seen, "orphan-delete")] == [ORIGINAL]
    assert {(e["pod"], e["node"], e["target"]) for e in named(seen, "relabel")} == {
        (setup.pods[n], n, f"fluentd-{c}") for n, c in classes.items()
    }
    checked = assert_handover(
        timeline, setup.watching.daemonsets, nodes=nodes, owners=forward_owners(classes, "fluentd")
    )
    assert checked == len(nodes)
    assert assert_relabelled_as_orphans(timeline) == len(nodes), "every original pod relabelled"
    assert_created_on_delete(setup.watching.daemonsets.created(), variants)
    assert replacements(timeline) == dict.fromkeys(nodes, 1)
    labels = project.node_labels()
    for variant in variants:  # each variant's canary goes first, as in any staged rollout
        mine = [n for n in nodes if f"fluentd-{classes[n]}" == variant]
        order = [n for n, _ in disruptions(timeline) if n in mine]
        assert labels[order[0]].get(CANARY) == "true", (variant, order)
    assert_rendered_state(project, "fluentd", old=[ORIGINAL], replaced=variants)
    saved = assert_backup(project, "fluentd", old=[ORIGINAL], stage="complete")
    assert backup.endswith(saved["name"])
    # The local file is what an operator restores by hand: kubectl must accept it as it is.
    file = saved["record"]["file"]
    check = project.cluster.kubectl("create", "--dry-run=client", "-o", "name", "-f", file, check=False)
    assert check.returncode == 0, f"kubectl create --dry-run=client -f {file}:\n{check.stdout}{check.stderr}"
    created = check.stdout.split()
    assert f"daemonset.apps/{ORIGINAL}" in created and any(n.startswith("controllerrevision.apps/") for n in created)


def assert_taken_over_then_restored(
    project: OrphanProject, setup: Takeover, back: Run, context: str
) -> list[dict[str, Any]]:
    """A takeover rolled back to the end: the original recreated once, with OnDelete, every
    pod adopted before it was replaced, every node replaced twice (by the variants, by the
    restore), and the original's spec back. The rollback's events."""
    nodes = sorted(setup.classes)
    timeline = setup.watching.stop()
    assert back.code == 0, context
    assert back.report["result"] == "complete", str(back)
    owners = {n: {f"fluentd-{c}", ORIGINAL} for n, c in setup.classes.items()}
    checked = assert_handover(timeline, setup.watching.daemonsets, nodes=nodes, owners=owners)
    assert checked == 2 * len(nodes)
    assert replacements(timeline) == dict.fromkeys(nodes, 2), "replaced once by the variants, once by the restore"
    restored = [o for o in setup.watching.daemonsets.created().values() if o["metadata"]["name"] == ORIGINAL]
    assert len(restored) == 1 and restored[0]["spec"]["updateStrategy"]["type"] == "OnDelete", restored
    assert_restored(project, setup.original)
    return events(back)


def test_takeover_then_rollback_restores_the_original_daemonset(project: OrphanProject) -> None:
    setup = take_over_setup(project)
    run = rollout(project)
    assert run.code == 0, str(run)

    back = project.dsroll("rollback", "e2e", "--yes", "--events", "-o", "json")
    seen = assert_taken_over_then_restored(project, setup, back, str(back))
    assert_event_order(seen, ["restore", "orphan-delete", "orphaned", "relabel", "created", "adopted", "restored"])
    assert {e["target"] for e in named(seen, "relabel")} == {ORIGINAL}
    assert [e["name"] for e in named(seen, "created")] == [ORIGINAL]


# -- a killed CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kill_after", "continue_with"),
    [
        ("backup", "rollout"),
        ("orphaned", "resume"),
        ("relabel", "rollout"),
        ("created", "resume"),
        ("adopted", "rollout"),
    ],
)
def test_takeover_killed_then_continued_ends_as_an_unbroken_run(
    project: OrphanProject, kill_after: str, continue_with: str
) -> None:
    setup = take_over_setup(project)
    nodes = sorted(setup.classes)
    variants = [f"fluentd-{c}" for c in ("gpu", "arm64", "general")]

    killed = kill_at(project, kill_after)
    (cm,) = project.configmaps(f"{BACKUP_OF}=fluentd").values()
    stage = json.loads(cm["metadata"]["annotations"][RECORD])["stage"]
    assert stage not in ("handed-over", "complete"), f"killed after {kill_after}, the record says {stage}"
    if kill_after == "relabel":  # half-way: some orphans relabelled, some not
        relabelled = [p for p in project.pods() if "dsroll.io/workload" in p["metadata"]["labels"]]
        assert 0 < len(relabelled) < len(nodes), f"{len(relabelled)} of {len(nodes)} relabelled when killed"

    run = project.dsroll(continue_with, "e2e", "--yes", "--events", "-o", "json")
    timeline = setup.watching.stop()
    assert run.code == 0, f"killed after {kill_after} (stage {stage}):\n{killed}\n{run}"
    assert run.report["result"] == "complete", str(run)
    checked = assert_handover(
        timeline, setup.watching.daemonsets, nodes=nodes, owners=forward_owners(setup.classes, "fluentd")
    )
    assert checked == len(nodes)
    created = setup.watching.daemonsets.created()
    assert_created_on_delete(created, variants)
    assert len(created) == len(variants), "each variant created once"
    assert replacements(timeline) == dict.fromkeys(nodes, 1), "every node replaced exactly once, as in one run"
    assert_rendered_state(project, "fluentd", old=[ORIGINAL], replaced=variants)


@pytest.mark.parametrize("kill_after", ["orphaned", "relabel", "adopted"])
def test_takeover_killed_then_rolled_back_restores_the_original(project: OrphanProject, kill_after: str) -> None:
    setup = take_over_setup(project)
    nodes = sorted(setup.classes)

    killed = kill_at(project, kill_after)
    back = project.dsroll("rollback", "e2e", "--yes", "--events", "-o", "json")
    timeline = setup.watching.stop()
    assert back.code == 0, f"killed after {kill_after}:\n{killed}\n{back}"
    assert back.report["result"] == "complete", str(back)
    assert named(events(back), "restored"), str(back)
    # Killed before the staged phase: every pod is still on the original template, so the
    # restore replaces none of them.
    assert_handover(timeline, setup.watching.daemonsets, nodes=nodes, owners={})
    assert_untouched(timeline, nodes)
    assert_restored(project, setup.original)


@pytest.mark.parametrize("kill_after", ["restore", "relabel", "adopted", "node-replaced"])
def test_restore_killed_then_rolled_back_again_ends_with_the_original_restored(
    project: OrphanProject, kill_after: str
) -> None:
    setup = take_over_setup(project)
    nodes = sorted(setup.classes)
    run = rollout(project)
    assert run.code == 0, str(run)

    killed = kill_at(project, kill_after, command="rollback")
    record = recorded(project, "fluentd")
    assert record["operation"] == "restore" and record["stage"] != "restored", f"{killed}\n{record}"
    if kill_after == "relabel":  # half-way: some pods given back to the original's labels, some not
        back = [p for p in project.pods() if "dsroll.io/workload" not in p["metadata"]["labels"]]
        assert 0 < len(back) < len(nodes), f"{len(back)} of {len(nodes)} relabelled back when killed"
        assert record["stage"] == "relabelling", record

    again = project.dsroll("rollback", "e2e", "--yes", "--events", "-o", "json")
    context = f"killed after {kill_after} (stage {record['stage']}):\n{killed}\n{again}"
    seen = assert_taken_over_then_restored(project, setup, again, context)
    assert named(seen, "restored") and not named(seen, "backup"), "the recorded restore continues; no new backup"
    assert {e["target"] for e in named(seen, "relabel")} <= {ORIGINAL}


# -- a failure in the staged phase ---------------------------------------------------------


@pytest.mark.usefixtures("behaviours")
def test_crashing_new_version_during_takeover_restores_the_original_automatically(project: OrphanProject) -> None:
    setup = take_over_setup(project, behaviour="crash", on_failure="rollback")
    nodes = sorted(setup.classes)

    run = rollout(project)
    timeline = setup.watching.stop()
    assert run.code == 1, str(run)
    assert run.report["result"] == "rolled-back", str(run)
    results = {v["name"]: v["result"] for v in run.report["variants"]}
    assert results.get(ORIGINAL) == "rolled-back", f"the restored original reports rolled-back:\n{run}"
    failures = [v["failure"] for v in run.report["variants"] if v.get("failure")]
    assert failures, f"the failure is reported:\n{run}"
    failed = failures[0]["node"]
    assert project.node_labels()[failed].get(CANARY) == "true", "the first variant's canary fails"
    crashed = [e for e in timeline if e.node == failed and e.labels.get("dsroll.io/workload") and e.revision]
    assert any(e.crashed for e in crashed), "the canary did crash"
    seen = events(run)
    failed_at = next(i for i, e in enumerate(seen) if e["event"] == "node-failed")
    assert_event_order(seen[: failed_at + 1], ["backup", "orphaned", "relabel", "created", "adopted", "node-failed"])
    restore = seen[failed_at:]
    assert_event_order(restore, ["restore", "orphan-delete", "orphaned", "relabel", "created", "adopted", "restored"])
    assert {e["target"] for e in named(restore, "relabel")} == {ORIGINAL}
    owners = {n: {f"fluentd-{c}", ORIGINAL} for n, c in setup.classes.items()}
    assert_handover(timeline, setup.watching.daemonsets, nodes=nodes, owners=owners)
    assert replacements(timeline) == {failed: 2}, "only the canary: to the new version and back"
    assert_untouched(timeline, [n for n in nodes if n != failed])
    assert_restored(project, setup.original)


# -- the staged phase's own controls: --partition, a manual pause ----------------------------


def assert_continued_as_one_run(
    project: OrphanProject, setup: Takeover, run: Run, variants: Sequence[str]
) -> list[dict[str, Any]]:
    """A takeover finished by a second run: complete, no handover stage repeated, and the
    whole as one unbroken run (each variant created once, each node replaced once). Its events."""
    nodes = sorted(setup.classes)
    timeline = setup.watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    assert not [e for e in seen if e["event"] in ("backup", "orphan-delete", "relabel", "created")], seen
    owners = forward_owners(setup.classes, "fluentd")
    assert assert_handover(timeline, setup.watching.daemonsets, nodes=nodes, owners=owners) == len(nodes)
    assert len(setup.watching.daemonsets.created()) == len(variants), "each variant created once"
    assert replacements(timeline) == dict.fromkeys(nodes, 1)
    assert_rendered_state(project, "fluentd", old=[ORIGINAL], replaced=variants)
    return seen


def test_partition_during_a_takeover_keeps_half_of_each_variant_on_the_adopted_pods(project: OrphanProject) -> None:
    setup = take_over_setup(project)
    classes, nodes = setup.classes, sorted(setup.classes)
    variants = [f"fluentd-{c}" for c in ("gpu", "arm64", "general")]
    (old,) = {p[0].revision for p in live_pods(setup.watching.pods.timeline()).values()}

    run = rollout(project, "--partition", "50%")
    setup.watching.pods.sync()
    first = setup.watching.pods.timeline()
    assert run.code == 0, str(run)
    assert run.report["result"] == "partitioned", str(run)
    assert {v["name"]: v["result"] for v in run.report["variants"] if v["name"] in variants} == dict.fromkeys(
        variants, "partitioned"
    ), str(run)
    assert sorted(e["variant"].split("/")[-1] for e in named(events(run), "partitioned")) == sorted(variants)
    assert recorded(project, "fluentd")["stage"] == "handed-over", "not complete while nodes are kept"
    live = project.daemonsets()
    assert set(live) == set(variants), f"{ORIGINAL} is gone, the variants adopted its pods: {sorted(live)}"
    by_node = {p["spec"]["nodeName"]: p for p in project.pods()}
    assert sorted(by_node) == nodes and len(project.pods()) == len(nodes)
    kept_all: list[str] = []
    for name in variants:
        ds = live[name]
        mine = sorted(n for n, c in classes.items() if f"fluentd-{c}" == name)
        state = variant_state(project, name)
        kept = len(mine) // 2  # 50% rounds down
        assert (state["phase"], state["partition"], state["nodeCount"]) == ("partitioned", kept, len(mine)), state
        assert ds["spec"]["updateStrategy"]["type"] == "OnDelete", f"{name}: a partitioned variant stays OnDelete"
        current = project.current_revision_of(ds)
        assert current != old
        kept_nodes = expected_order(mine, project.node_labels())[len(mine) - kept :]  # the order the plan derives
        kept_all += kept_nodes
        for node in mine:
            pod = by_node[node]
            owner = controller(pod)
            assert owner is not None and owner["uid"] == ds["metadata"]["uid"], f"{name} adopted the pod on {node}"
            want = old if node in kept_nodes else current
            assert pod["metadata"]["labels"].get(REVISION) == want, (name, node, pod["metadata"]["labels"])
    assert_untouched(first, kept_all)
    assert replacements(first) == dict.fromkeys(set(nodes) - set(kept_all), 1)

    seen = assert_continued_as_one_run(project, setup, rollout(project), variants)
    assert sorted(e["node"] for e in named(seen, "node-replaced")) == sorted(kept_all), "only the kept nodes"


def test_manual_pause_during_a_takeover_exits_3_and_resume_finishes(project: OrphanProject) -> None:
    setup = take_over_setup(project, pause="manual")
    classes, nodes = setup.classes, sorted(setup.classes)
    variants = [f"fluentd-{c}" for c in ("gpu", "arm64", "general")]
    first = variants[0]
    labels = project.node_labels()
    (canary,) = [n for n, c in classes.items() if f"fluentd-{c}" == first and labels[n].get(CANARY) == "true"]

    run = project.dsroll("rollout", "e2e", "--events", "-o", "json")  # no --yes and no TTY
    setup.watching.pods.sync()
    waiting = setup.watching.pods.timeline()
    assert run.code == 3, str(run)
    assert run.report["result"] == "awaiting-approval", str(run)
    state = variant_state(project, first)
    assert (state["phase"], state["nodesDone"]) == ("awaiting-approval", 1), state
    assert replacements(waiting) == {canary: 1}, "only the first variant's first step"
    assert_untouched(waiting, [n for n in nodes if n != canary])
    assert recorded(project, "fluentd")["stage"] == "handed-over"
    status = project.dsroll("status", "e2e", "-o", "json")
    assert status.code == 0, str(status)
    shown = status.report["replacements"]
    assert (shown[0]["workload"], shown[0]["operation"], shown[0]["stage"]) == ("fluentd", "replace", "handed-over")

    resumed = project.dsroll("resume", "e2e", "--yes", "--events", "-o", "json")
    seen = assert_continued_as_one_run(project, setup, resumed, variants)
    assert canary not in {e["node"] for e in named(seen, "node-replaced")}, "the canary is not replaced again"


# -- 4. a class removed: its nodes merge into the default class ------------------------------


def test_removed_class_merges_into_the_recreated_default_variant(project: OrphanProject) -> None:
    deploy(project)
    watching = project.start_watching()
    before = project.node_classes()
    arm64_uid = project.daemonsets()["agent-arm64"]["metadata"]["uid"]
    project.commit("no gpu class any more", hw=("arm64", "general"))
    classes = project.node_classes()
    gpu = sorted(n for n, c in before.items() if c == "gpu")
    general = sorted(n for n, c in classes.items() if c == "general")
    assert set(gpu) < set(general)

    plan = plan_json(project)
    found = the_replacement(plan, "agent")
    assert sorted(d["name"] for d in found["deletes"]) == ["agent-general", "agent-gpu"], found
    assert found["creates"] == ["agent-general"] and found["unplaced"] == [], found
    assert sorted(found["adopts"]["agent-general"]) == general, found
    # agent-arm64 no longer excludes the gpu nodes in its affinity: an ordinary pod-template
    # update, in place, of the variant that keeps its nodes.
    (arm64_plan,) = [v for v in plan["variants"] if v["name"] == "agent-arm64"]
    assert arm64_plan["action"] == "update", arm64_plan
    assert any("affinity" in p for p in arm64_plan["changedPaths"]), arm64_plan

    run = rollout(project)
    timeline = watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    assert sorted(e["node"] for e in named(events(run), "relabel")) == general
    owners = forward_owners(classes, "agent")
    checked = assert_handover(
        timeline, watching.daemonsets, nodes=sorted(classes), owners=owners, in_place={"agent-arm64": arm64_uid}
    )
    assert checked == len(classes)
    assert_created_on_delete(watching.daemonsets.created(), ["agent-general"])
    assert len(watching.daemonsets.created()) == 1, "only agent-general is recreated"
    assert replacements(timeline) == dict.fromkeys(classes, 1)
    live = assert_rendered_state(project, "agent", old=["agent-general", "agent-gpu"], replaced=["agent-general"])
    assert live["agent-arm64"]["metadata"]["uid"] == arm64_uid, "agent-arm64 is updated in place, not recreated"


# -- 5. a class added: it takes its nodes from the default variant --------------------------


def test_class_added_takes_its_nodes_from_the_default_variant_which_is_recreated(project: OrphanProject) -> None:
    deploy(project, hw=("general",), classes=["general"])
    watching = project.start_watching()
    before = project.node_classes()
    assert set(before.values()) == {"general"}, "agent-general runs on every node"
    general_uid = project.daemonsets()["agent-general"]["metadata"]["uid"]
    project.commit("a gpu class", hw=("gpu", "general"), classes=["gpu", "general"])
    classes = project.node_classes()
    nodes = sorted(classes)
    gpu = sorted(n for n, c in classes.items() if c == "gpu")
    general = sorted(n for n, c in classes.items() if c == "general")
    assert gpu and general, classes
    variants = ["agent-gpu", "agent-general"]

    plan = plan_json(project)
    found = the_replacement(plan, "agent")
    assert found["operation"] == "replace" and "agent-gpu" in found["reason"], found
    assert [(d["name"], d["uid"], d["managed"], sorted(d["nodes"])) for d in found["deletes"]] == [
        ("agent-general", general_uid, True, nodes)
    ], found
    assert sorted(found["creates"]) == sorted(variants) and found["unplaced"] == [], found
    assert {t: sorted(n) for t, n in found["adopts"].items()} == {"agent-gpu": gpu, "agent-general": general}, found
    actions = {v["name"]: (v["action"], bool(v["steps"])) for v in plan["variants"]}
    assert actions == dict.fromkeys(variants, ("orphan-replace", True)), actions

    run = rollout(project)
    timeline = watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    assert_event_order(seen, ["backup", "orphan-delete", "orphaned", "relabel", "created", "adopted", "node-replaced"])
    assert [e["name"] for e in named(seen, "orphan-delete")] == ["agent-general"]
    assert sorted((e["node"], e["target"]) for e in named(seen, "relabel")) == [
        (n, f"agent-{classes[n]}") for n in nodes
    ], "agent-general hands its gpu-node pods to agent-gpu and the rest to its recreated self"
    assert sorted(e["name"] for e in named(seen, "created")) == sorted(variants)

    checked = assert_handover(timeline, watching.daemonsets, nodes=nodes, owners=forward_owners(classes, "agent"))
    assert checked == len(nodes)
    created = watching.daemonsets.created()
    assert_created_on_delete(created, variants)
    assert len(created) == len(variants), "agent-gpu and agent-general, each created once"
    assert replacements(timeline) == dict.fromkeys(nodes, 1), "every node's pod is replaced exactly once"
    live = assert_rendered_state(project, "agent", old=["agent-general"], replaced=variants)
    assert live["agent-general"]["metadata"]["uid"] != general_uid, "agent-general is recreated"


# -- unplaced pods -------------------------------------------------------------------------


def test_takeover_deletes_and_reports_only_the_pods_no_class_of_the_workload_covers(project: OrphanProject) -> None:
    setup = take_over_setup(project, classes=["gpu", "general"])
    arm64 = sorted(n for n, c in setup.classes.items() if c == "arm64")
    placed = sorted(n for n in setup.classes if n not in arm64)
    unplaced_pods = {setup.pods[n] for n in arm64}

    found = the_replacement(plan_json(project), "fluentd")
    assert sorted(found["creates"]) == ["fluentd-general", "fluentd-gpu"], found
    assert sorted(n for nodes in found["adopts"].values() for n in nodes) == placed, found
    assert sorted((u["pod"], u["node"]) for u in found["unplaced"]) == sorted((setup.pods[n], n) for n in arm64)
    for u in found["unplaced"]:
        assert (u["source"], u["target"], u["handling"]) == (ORIGINAL, None, "deleted"), u
        assert u["node"] in u["reason"] and "class" in u["reason"], u

    run = rollout(project)
    timeline = setup.watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "complete", str(run)
    seen = events(run)
    reported = named(seen, "unplaced")
    assert sorted((e["pod"], e["node"]) for e in reported) == sorted((setup.pods[n], n) for n in arm64), reported
    assert all(e["handling"] == "deleted" and e["reason"] for e in reported), reported
    assert_event_order(seen, ["orphaned", "unplaced", "created"])
    assert sorted(e["node"] for e in named(seen, "relabel")) == placed
    # The unplaced pods were orphans when deleted, each once; nothing else was lost.
    for pod in unplaced_pods:
        ends = [e for e in timeline if e.name == pod and (e.terminating or e.type == DELETED)]
        assert ends and controller(ends[0]) is None, f"{pod} deleted while owned: {ends[:1]}"
    checked = assert_handover(
        timeline,
        setup.watching.daemonsets,
        nodes=placed,
        owners=forward_owners(setup.classes, "fluentd"),
        unplaced=unplaced_pods,
    )
    assert checked == len(placed)
    assert replacements(timeline) == dict.fromkeys(setup.classes, 1)
    assert not {n for n in live_pods(timeline) if n in arm64}, "the arm64 nodes end without a pod"
    assert_rendered_state(project, "fluentd", old=[ORIGINAL], replaced=["fluentd-gpu", "fluentd-general"],
                          unplaced_nodes=arm64)  # fmt: skip


# -- dry run ---------------------------------------------------------------------------------


def test_dry_run_of_an_orphan_replacement_changes_nothing(project: OrphanProject) -> None:
    setup = take_over_setup(project)
    setup.watching.pods.sync()
    before = resource_versions(project)
    mark = len(setup.watching.pods.timeline())

    run = project.dsroll("rollout", "e2e", "--dry-run", "-o", "json")
    timeline = setup.watching.stop()
    assert run.code == 0, str(run)
    assert run.report["result"] == "dry-run", str(run)
    shown = the_replacement(run.report["plan"], "fluentd")
    assert [d["name"] for d in shown["deletes"]] == [ORIGINAL], "the dry run shows the replacement it would do"
    assert resource_versions(project) == before
    assert not [k for k in before if k.startswith("configmap/dsroll-backup")]
    assert timeline[mark:] == [], [e.describe() for e in timeline[mark:]]
    assert not setup.watching.daemonsets.created()
    assert not any(project.backups.rglob("*")), "no local backup file either"
