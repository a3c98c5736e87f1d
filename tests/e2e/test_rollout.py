"""The staged rollout end to end: the CLI as a subprocess, judged by an independent pod watcher.

Each test works in its own namespace on the real control plane with kwok nodes. A project
(environment, template, git repository) is deployed once at revision 1.0 (`rollout`
creates the variants), then changed and rolled out while `PodWatcher` records every pod
event; the invariants of DESIGN.md are asserted on that timeline and on the cluster's
objects, never on what dsroll reports alone. docs/rollout.md is the contract.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_max_unavailable,
    assert_never_two_pods,
    assert_replaced_first,
    assert_untouched,
    disruptions,
    live_pods,
    replacement_order,
    replacements,
)
from e2e.podwatch import PodEvent, PodWatcher
from kubernetes import client, watch

if TYPE_CHECKING:
    from conftest import K8sCluster

WORKLOAD = "agent"
STATE = "dsroll.io/rollout"
BEHAVIOUR = "sandbox.dsroll.io/behaviour"
CANARY = "dsroll.io/canary"
ZONE = "topology.kubernetes.io/zone"

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
spec:
  selector:
    matchLabels: {app: "{{ workload.name }}"}
  template:
    metadata:
      labels: {app: "{{ workload.name }}"}
{%- if values.behaviour %}
      annotations: {sandbox.dsroll.io/behaviour: "{{ values.behaviour }}"}
{%- endif %}
    spec:
      containers:
        - name: agent
          image: "example.com/agent:{{ values.tag }}"
"""


def env_text(
    namespace: str,
    *,
    tag: str = "1.0",
    behaviour: str = "",
    classes: Sequence[str] = ("gpu", "arm64", "general"),
    steps: Sequence[str] = ("1", "50%", "100%"),
    max_unavailable: int = 1,
    pause: str = "1s",
    ready_timeout: str = "20s",
    min_ready_seconds: int = 0,
    on_failure: str = "rollback",
    unready_nodes: str = "skip",
) -> str:
    return f"""\
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {{name: {namespace}}}
cluster: {{namespace: {namespace}}}
hardwareClasses:
  - name: gpu
    nodeSelector: {{nvidia.com/gpu.present: "true"}}
  - name: arm64
    matchExpressions: [{{key: kubernetes.io/arch, operator: In, values: [arm64]}}]
  - name: general
    default: true
workloads:
  - name: {WORKLOAD}
    template: templates/agent.yaml.j2
    classes: {json.dumps(list(classes))}
    values: {{tag: "{tag}", behaviour: "{behaviour}"}}
rollout:
  steps: {json.dumps(list(steps))}
  maxUnavailable: {max_unavailable}
  pause: {json.dumps(pause)}
  readyTimeout: {ready_timeout}
  minReadySeconds: {min_ready_seconds}
  onFailure: {on_failure}
  unreadyNodes: {unready_nodes}
  canaryNodeSelector: {{{CANARY}: "true"}}
"""


@dataclass(frozen=True)
class Run:
    """One finished CLI call."""

    argv: Sequence[str]
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        """The `-o json` object (with `--events`, the last line)."""
        text = self.stdout.strip()
        try:
            return dict(json.loads(text))
        except ValueError:
            return dict(json.loads(text.splitlines()[-1]))

    def __str__(self) -> str:
        return f"$ dsroll {' '.join(self.argv)}\nexit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass(frozen=True)
class Background:
    argv: Sequence[str]
    proc: subprocess.Popen[str]

    def kill(self) -> Run:
        """SIGKILL: no handler runs, nothing is cleaned up, as when a laptop dies."""
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.finish()

    def finish(self, timeout: float = 240) -> Run:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return Run(self.argv, self.proc.returncode, stdout, stderr)


class Project:
    """A git-tracked dsroll project whose environment targets one namespace of the test cluster."""

    def __init__(self, root: Path, namespace: str, cluster: K8sCluster) -> None:
        self.root, self.namespace, self.cluster = root, namespace, cluster
        self.apps = client.AppsV1Api(cluster.api_client)
        self.core = client.CoreV1Api(cluster.api_client)
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)}
        self.watchers: list[PodWatcher] = []
        self.git("init", "-q", "-b", "main")

    # -- files and git -------------------------------------------------------------
    def git(self, *args: str) -> str:
        argv = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com", *args]
        return subprocess.run(argv, cwd=self.root, check=True, capture_output=True, text=True).stdout.strip()

    def write(self, **settings: Any) -> None:
        (self.root / "environments" / "e2e.yaml").write_text(env_text(self.namespace, **settings))

    def commit(self, message: str, **settings: Any) -> str:
        """Write the environment with these settings, commit everything; the commit's sha."""
        self.write(**settings)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    # -- the CLI -------------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        if args[:1] == ("render",):  # it never asks the cluster, and so takes no connection flags
            return list(args)
        extra = ["--context", self.cluster.context] if self.cluster.context else []
        return [*args, "--kubeconfig", str(self.cluster.kubeconfig_path), *extra]

    def dsroll(self, *args: str, timeout: float = 240) -> Run:
        argv = self.argv(*args)
        proc = subprocess.run(
            [sys.executable, "-m", "dsroll", *argv],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,  # no TTY: the CLI must never prompt
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(argv, proc.returncode, proc.stdout, proc.stderr)

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[Background]:
        """The CLI in the background (stdin not a TTY); SIGKILLed if the block fails."""
        argv = self.argv(*args)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsroll", *argv],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield Background(argv, proc)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise

    # -- the cluster ---------------------------------------------------------------
    def daemonset(self, cls: str) -> dict[str, Any]:
        response = self.apps.read_namespaced_daemon_set(f"{WORKLOAD}-{cls}", self.namespace, _preload_content=False)
        return dict(json.loads(response.data))

    def state(self, cls: str) -> dict[str, Any]:
        text = (self.daemonset(cls)["metadata"].get("annotations") or {}).get(STATE)
        assert text, f"{WORKLOAD}-{cls} has no {STATE} annotation"
        return dict(json.loads(text))

    def revisions(self, cls: str) -> dict[str, int]:
        """Hash → number of the variant's ControllerRevisions (a template applied again gets a new number)."""
        found = self.apps.list_namespaced_controller_revision(
            self.namespace, label_selector=f"dsroll.io/workload={WORKLOAD},dsroll.io/class={cls}"
        ).items
        return {r.metadata.labels["controller-revision-hash"]: r.revision for r in found}

    def current_revision(self, cls: str) -> str:
        """The hash of the variant's newest ControllerRevision: the template the DaemonSet has now."""
        revisions = self.revisions(cls)
        assert revisions, f"no ControllerRevision of {WORKLOAD}-{cls}"
        return max(revisions, key=lambda h: revisions[h])

    def watcher(self) -> PodWatcher:
        pods = PodWatcher(self.namespace, kubeconfig=self.cluster.kubeconfig_path, context=self.cluster.context)
        self.watchers.append(pods)
        return pods.start()

    def node_labels(self) -> dict[str, dict[str, str]]:
        return {n.metadata.name: n.metadata.labels or {} for n in self.core.list_node().items}

    def wait_for_state(
        self, cls: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 120
    ) -> dict[str, Any]:
        """Watch the variant's DaemonSet until its rollout state satisfies `predicate`."""
        name = f"{WORKLOAD}-{cls}"
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            listed = json.loads(
                self.apps.list_namespaced_daemon_set(
                    self.namespace, field_selector=f"metadata.name={name}", _preload_content=False
                ).data
            )
            objects = listed["items"]
            stream = watch.Watch().stream(
                self.apps.list_namespaced_daemon_set,
                self.namespace,
                field_selector=f"metadata.name={name}",
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            )
            for obj in itertools.chain(objects, (event["raw_object"] for event in stream)):
                text = (obj["metadata"].get("annotations") or {}).get(STATE)
                last = json.loads(text) if text else {}
                if last and predicate(last):
                    return last
        raise AssertionError(f"{name}: no rollout state with {what} within {timeout}s; last: {last}")


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[Project]:
    root = make_project(env=env_text(namespace), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = Project(root, namespace, k8s_cluster)
    yield made
    for pods in made.watchers:  # a test that failed half-way has not stopped its watcher
        pods.stop(sync=False)


@pytest.fixture
def behaviours(k8s_cluster: K8sCluster) -> None:
    if not k8s_cluster.simulates_behaviours:
        pytest.skip(f"the {k8s_cluster.backend} backend has no kwok to play {BEHAVIOUR}")


@dataclass
class Deployed:
    """The fleet at revision 1.0, as the watcher saw it when it started."""

    watcher: PodWatcher
    nodes: dict[str, list[str]]  # class → nodes running its variant
    old: dict[str, str]  # class → revision hash of every pod
    canary: dict[str, list[str]]  # class → canary nodes of the variant

    def stop(self) -> list[PodEvent]:
        return self.watcher.stop()


def deploy(project: Project, **settings: Any) -> Deployed:
    """Create the variants at 1.0 with `rollout` and start watching their pods."""
    project.commit("agent 1.0", **settings)
    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert run.code == 0, run
    assert {v["action"] for v in run.report["variants"]} == {"create"}, run
    watcher = project.watcher()
    start = watcher.timeline()
    classes = sorted({e.cls for e in start if e.cls})
    nodes = {c: sorted(live_pods(start, workload=WORKLOAD, cls=c)) for c in classes}
    old: dict[str, str] = {}
    for cls in classes:
        pods = [p for found in live_pods(start, workload=WORKLOAD, cls=cls).values() for p in found]
        revisions = {p.revision for p in pods}
        assert len(revisions) == 1 and all(p.serving for p in pods), [p.describe() for p in pods]
        old[cls] = str(revisions.pop())
    labels = project.node_labels()
    canary = {c: [n for n in nodes[c] if labels[n].get(CANARY) == "true"] for c in classes}
    assert all(canary.values()), f"the cluster must label one canary node per class: {canary}"
    return Deployed(watcher, nodes, old, canary)


def expected_order(nodes: Sequence[str], labels: Mapping[str, Mapping[str, str]]) -> list[str]:
    """docs/rollout.md: canary nodes first (by name), then round-robin across zones (zones, nodes by name)."""
    canary = sorted(n for n in nodes if labels[n].get(CANARY) == "true")
    zones: dict[str, list[str]] = {}
    for node in sorted(set(nodes) - set(canary)):
        zones.setdefault(labels[node].get(ZONE, ""), []).append(node)
    rest: list[str] = []
    queues = [zones[z] for z in sorted(zones)]
    while any(queues):
        rest.extend(q.pop(0) for q in queues if q)
    return canary + rest


def assert_rolled_out(
    project: Project, timeline: Sequence[PodEvent], fleet: Deployed, cls: str, *, max_unavailable: int
) -> str:
    """Every node of the variant replaced once, on the new revision, within maxUnavailable; the new hash."""
    nodes = fleet.nodes[cls]
    state = project.state(cls)
    target = project.current_revision(cls)
    assert state["phase"] == "complete", state
    assert state["targetRevision"] == target != fleet.old[cls], (state, target, fleet.old[cls])
    assert state["previousRevision"] == fleet.old[cls], state
    assert_final_revision(timeline, nodes, target, workload=WORKLOAD, cls=cls)
    assert_max_unavailable(timeline, nodes, max_unavailable, workload=WORKLOAD, cls=cls)
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_replaced_first(timeline, fleet.canary[cls], workload=WORKLOAD, cls=cls)
    assert replacements(timeline, workload=WORKLOAD, cls=cls) == dict.fromkeys(nodes, 1), (
        f"{WORKLOAD}-{cls}: every node is replaced exactly once"
    )
    strategy = project.daemonset(cls)["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate", f"the original update strategy is restored: {strategy}"
    return target


# -- a. the happy path ------------------------------------------------------------


@pytest.mark.parametrize("max_unavailable", [1, 2])
def test_staged_rollout_replaces_canary_first_then_every_node_within_max_unavailable(
    project: Project, max_unavailable: int
) -> None:
    settings = {"max_unavailable": max_unavailable, "pause": "1s"}
    fleet = deploy(project, **settings)
    sha = project.commit("agent 2.0", tag="2.0", **settings)
    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()

    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    labels = project.node_labels()
    targets = {}
    for cls, nodes in fleet.nodes.items():
        targets[cls] = assert_rolled_out(project, timeline, fleet, cls, max_unavailable=max_unavailable)
        state = project.state(cls)
        assert state["commit"] == sha, state
        assert state["nodeCount"] == len(nodes) and "nodes" not in state, "the state counts nodes, lists none"
        order, replaced = expected_order(nodes, labels), replacement_order(timeline, workload=WORKLOAD, cls=cls)
        assert replaced[0] in fleet.canary[cls]
        late = [(i, n) for i, n in enumerate(replaced) if order.index(n) >= i + max_unavailable]
        assert not late, f"replaced in the order canary first, then across zones ({order}): {replaced}"
        # The timed pause: after the canary's pod is Ready, the next node waits ~1s (0.5s: watch latency).
        ready = next(e.time for e in timeline if e.cls == cls and e.revision == targets[cls] and e.ready)
        later = [t for _, t in disruptions(timeline, workload=WORKLOAD, cls=cls) if t > ready]
        assert later and later[0] - ready >= 0.5, f"{cls}: no pause between step 1 and 2 ({later[:1]} vs {ready})"

    variants = {v["name"]: v for v in run.report["variants"]}
    for cls, nodes in fleet.nodes.items():
        v = variants[f"{WORKLOAD}-{cls}"]
        assert (v["action"], v["phase"], v["targetRevision"]) == ("update", "complete", targets[cls]), v
        assert v["nodesUpdated"] == v["nodesTotal"] == len(nodes), v

    status = project.dsroll("status", "e2e", "-o", "json")
    assert status.code == 0, status
    for v in status.report["variants"]:
        cls = v["name"].removeprefix(f"{WORKLOAD}-")
        assert v["nodesUpdated"] == v["nodesReady"] == v["nodesTotal"] == len(fleet.nodes[cls]), v
        assert v["revision"] == targets[cls] and v["rollout"]["phase"] == "complete", v

    history = project.dsroll("history", "e2e", "-o", "json")
    assert history.code == 0, history
    for v in history.report["variants"]:
        cls = v["name"].removeprefix(f"{WORKLOAD}-")
        commits = {r["hash"]: r.get("commit") for r in v["revisions"]}
        assert commits[targets[cls]] == sha, f"history records the rollout's git commit: {v}"
        assert fleet.old[cls] in commits, v


# -- b. partition -----------------------------------------------------------------


def test_partition_keeps_the_last_nodes_on_the_old_revision_and_a_lower_one_continues(project: Project) -> None:
    settings = {"classes": ["general"], "pause": "0"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0", tag="2.0", **settings)
    nodes = fleet.nodes["general"]
    assert len(nodes) >= 4, nodes

    run = project.dsroll("rollout", "e2e", "--yes", "--partition", "2", "-o", "json")
    fleet.watcher.sync()
    first = fleet.watcher.timeline()
    assert run.code == 0, run
    assert run.report["result"] == "partitioned", run
    state = project.state("general")
    assert state["phase"] == "partitioned" and state["partition"] == 2, state
    order = expected_order(nodes, project.node_labels())
    assert state["nodeCount"] == len(order), state
    kept = order[-2:]
    target = project.current_revision("general")
    assert_untouched(first, kept, workload=WORKLOAD, cls="general")
    assert_final_revision(first, kept, fleet.old["general"], workload=WORKLOAD, cls="general")
    assert_final_revision(first, order[:-2], target, workload=WORKLOAD, cls="general")
    assert project.daemonset("general")["spec"]["updateStrategy"]["type"] == "OnDelete", (
        "a partitioned variant stays OnDelete, or the controller would replace the kept nodes"
    )

    run = project.dsroll("rollout", "e2e", "--yes", "--partition", "0", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    assert_rolled_out(project, timeline, fleet, "general", max_unavailable=1)


# -- c. / d. failures -------------------------------------------------------------


def assert_rolled_back(project: Project, timeline: Sequence[PodEvent], fleet: Deployed, cls: str) -> None:
    """Every node on the old revision, the old template, nodes outside the canary never touched."""
    canary, nodes, old = fleet.canary[cls], fleet.nodes[cls], fleet.old[cls]
    state = project.state(cls)
    assert state["phase"] == "rolled-back", state
    ds = project.daemonset(cls)
    template = ds["spec"]["template"]
    assert BEHAVIOUR not in (template["metadata"].get("annotations") or {}), "the old template is back"
    assert template["spec"]["containers"][0]["image"] == "example.com/agent:1.0"
    assert project.current_revision(cls) == old
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert_final_revision(timeline, nodes, old, workload=WORKLOAD, cls=cls)
    assert_untouched(timeline, set(nodes) - set(canary), workload=WORKLOAD, cls=cls)
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls=cls)
    assert_never_two_pods(timeline, workload=WORKLOAD)


@pytest.mark.usefixtures("behaviours")
def test_crashing_canary_is_rolled_back_and_no_other_node_is_touched(project: Project) -> None:
    settings = {"classes": ["general"], "on_failure": "rollback", "ready_timeout": "20s"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0 crashes", tag="2.0", behaviour="crash", **settings)

    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()

    assert run.code == 1, run
    assert run.report["result"] == "rolled-back", run
    assert_rolled_back(project, timeline, fleet, "general")
    canary, old = fleet.canary["general"], fleet.old["general"]
    state = project.state("general")
    crashed = [e for e in timeline if e.node in canary and e.revision not in (None, old)]
    assert any(e.crashed for e in crashed), "the canary did crash"
    # Why it rolled back stays on record: in the state (as for `pause`) and in the JSON result.
    assert state["failure"] and state["failure"]["node"] in canary, f"no failure in the state: {state}"
    assert run.report["variants"][0]["failure"], f"no failure in the JSON result:\n{run}"


@pytest.mark.usefixtures("behaviours")
@pytest.mark.parametrize("kill_when", ["rolling-back", "rollback-batch"])
def test_cli_killed_during_the_automatic_rollback_resumes_to_the_rolled_back_state(
    project: Project, kill_when: str
) -> None:
    settings = {"classes": ["general"], "on_failure": "rollback", "min_ready_seconds": 2}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0 crashes", tag="2.0", behaviour="crash", **settings)
    old = fleet.old["general"]

    with project.background("rollout", "e2e", "--yes", "-o", "json") as cli:
        seen = project.wait_for_state("general", lambda s: s["phase"] == "rolling-back", "phase rolling-back")
        if kill_when == "rollback-batch":  # the canary's old pod being brought back (minReadySeconds: 2)
            seen = project.wait_for_state(
                "general", lambda s: s["targetRevision"] == old and bool(s["inFlight"]), "the rollback in flight"
            )
        killed = cli.kill()
        killed_at = time.time()
    assert killed.code == -signal.SIGKILL, killed
    failed = {h: n for h, n in project.revisions("general").items() if h != old}

    run = project.dsroll("resume", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code in (0, 1), run
    assert_rolled_back(project, timeline, fleet, "general")
    # Resuming a rollback finishes the rollback: the failed template is never applied again
    # (it would get a new revision number) and no pod of it is created again.
    again = [e.describe() for e in timeline if e.type == "ADDED" and e.time > killed_at and e.revision != old]
    reapplied = {h: n for h, n in project.revisions("general").items() if h != old}
    assert reapplied == failed and not again, (
        f"resuming the rollback deployed the failed revision again: revisions {failed} → {reapplied}, "
        f"new pods after the kill: {again}; killed at {seen}\n{killed}\n{run}"
    )
    assert replacements(timeline, workload=WORKLOAD, cls="general") == dict.fromkeys(fleet.canary["general"], 2), (
        f"the canary is replaced twice (new, then old again) and nothing else, as in an unbroken run; "
        f"killed at {seen}\n{killed}\n{run}"
    )


@pytest.mark.usefixtures("behaviours")
def test_failure_with_on_failure_pause_stops_and_resume_finishes_after_the_fix(project: Project) -> None:
    settings = {"classes": ["general"], "on_failure": "pause", "ready_timeout": "20s"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0 crashes", tag="2.0", behaviour="crash", **settings)
    canary, nodes, old = fleet.canary["general"], fleet.nodes["general"], fleet.old["general"]

    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    fleet.watcher.sync()
    paused = fleet.watcher.timeline()
    assert run.code == 1, run
    assert run.report["variants"][0]["phase"] == "paused", run
    state = project.state("general")
    assert state["phase"] == "paused" and state["failure"]["node"] in canary, state
    assert_untouched(paused, set(nodes) - set(canary), workload=WORKLOAD, cls="general")

    project.commit("agent 2.0 fixed", tag="2.0", **settings)
    run = project.dsroll("resume", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    fixed = project.current_revision("general")
    state = project.state("general")
    assert state["phase"] == "complete" and state["targetRevision"] == fixed, state
    assert state["previousRevision"] == old, "the previous revision stays the pre-rollout one"
    assert BEHAVIOUR not in (project.daemonset("general")["spec"]["template"]["metadata"].get("annotations") or {})
    assert_final_revision(timeline, nodes, fixed, workload=WORKLOAD, cls="general")
    # The crashed canary counts as unavailable: resume must not take a second node down beside it.
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)


# -- e. a killed CLI --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kill_when", "continue_with"),
    [("in-flight", "resume"), ("pausing", "resume"), ("in-flight", "rollout")],
)
def test_cli_killed_mid_rollout_resumes_to_the_same_end_state(
    project: Project, kill_when: str, continue_with: str
) -> None:
    settings = {"classes": ["general"], "pause": "2s", "min_ready_seconds": 1}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0", tag="2.0", **settings)

    with project.background("rollout", "e2e", "--yes", "-o", "json") as cli:
        if kill_when == "in-flight":
            seen = project.wait_for_state(
                "general",
                lambda s: s["phase"] == "progressing" and s["nodesDone"] >= 1 and bool(s["inFlight"]),
                "a node in flight after the first step",
            )
        else:
            seen = project.wait_for_state("general", lambda s: s["phase"] == "pausing", "phase pausing")
        killed = cli.kill()
    assert killed.code == -signal.SIGKILL, killed
    after_kill = project.state("general")
    assert after_kill["phase"] == seen["phase"] != "complete", (seen, after_kill)

    args = ["resume", "e2e"] if continue_with == "resume" else ["rollout", "e2e"]
    run = project.dsroll(*args, "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    state = project.state("general")
    assert state["nodeCount"] == after_kill["nodeCount"], "the same nodes, counted (the order is derived again)"
    assert state["startedAt"] == after_kill["startedAt"], "the same rollout continued, not a new one"
    assert_rolled_out(project, timeline, fleet, "general", max_unavailable=1)


# -- f. the lease -----------------------------------------------------------------


def test_second_concurrent_rollout_is_refused_naming_the_holder(project: Project) -> None:
    settings = {"classes": ["general"], "steps": ["1", "100%"], "pause": "4s"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0", tag="2.0", **settings)

    with project.background("rollout", "e2e", "--yes", "-o", "json") as first:
        project.wait_for_state("general", lambda s: s["phase"] == "pausing", "phase pausing")
        lease = client.CoordinationV1Api(project.cluster.api_client).read_namespaced_lease(
            f"dsroll-{WORKLOAD}-general", project.namespace
        )
        holder = lease.spec.holder_identity
        second = project.dsroll("rollout", "e2e", "--yes")
        done = first.finish()
    timeline = fleet.stop()

    assert second.code == 4, second
    assert holder and holder in second.stdout + second.stderr, f"holder {holder!r} not named:\n{second}"
    assert done.code == 0, f"the first rollout must not be disturbed:\n{done}"
    assert_rolled_out(project, timeline, fleet, "general", max_unavailable=1)


# -- g. rollback ------------------------------------------------------------------


def test_rollback_to_a_revision_and_to_a_git_ref(project: Project) -> None:
    settings = {"classes": ["general"], "pause": "0", "max_unavailable": 2}
    fleet = deploy(project, **settings)
    v2 = project.commit("agent 2.0", tag="2.0", **settings)
    run = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert run.code == 0, run
    nodes, old = fleet.nodes["general"], fleet.old["general"]
    new = project.current_revision("general")

    history = project.dsroll("history", "e2e", "-o", "json")
    assert history.code == 0, history
    revisions = {r["hash"]: r["revision"] for r in history.report["variants"][0]["revisions"]}
    fleet.watcher.sync()
    mark = len(fleet.watcher.timeline())

    run = project.dsroll("rollback", "e2e", "--to-revision", str(revisions[old]), "--yes", "-o", "json")
    fleet.watcher.sync()
    back = fleet.watcher.timeline()
    assert run.code == 0, run
    assert project.current_revision("general") == old
    state = project.state("general")
    assert (state["operation"], state["phase"], state["targetRevision"]) == ("rollback", "complete", old), state
    assert project.daemonset("general")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")
    assert_final_revision(back, nodes, old, workload=WORKLOAD, cls="general")
    assert replacements(back[mark:], workload=WORKLOAD, cls="general") == dict.fromkeys(nodes, 1)
    assert_max_unavailable(back, nodes, 2, workload=WORKLOAD, cls="general")

    mark = len(back)
    run = project.dsroll("rollback", "e2e", "--to-git", v2, "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert project.current_revision("general") == new
    assert_final_revision(timeline, nodes, new, workload=WORKLOAD, cls="general")
    assert replacements(timeline[mark:], workload=WORKLOAD, cls="general") == dict.fromkeys(nodes, 1)
    assert_max_unavailable(timeline, nodes, 2, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert project.daemonset("general")["spec"]["updateStrategy"]["type"] == "RollingUpdate"


# -- h. CI: a manual pause without a TTY -------------------------------------------


def test_manual_pause_without_a_tty_exits_3_and_resume_finishes(project: Project) -> None:
    settings = {"classes": ["general"], "steps": ["1", "100%"], "pause": "manual"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0", tag="2.0", **settings)
    canary, nodes = fleet.canary["general"], fleet.nodes["general"]

    run = project.dsroll("rollout", "e2e", "-o", "json")  # no --yes: the pause needs an approval
    fleet.watcher.sync()
    waiting = fleet.watcher.timeline()
    assert run.code == 3, run
    assert run.report["result"] == "awaiting-approval", run
    state = project.state("general")
    assert state["phase"] == "awaiting-approval" and state["nodesDone"] == len(canary), state
    assert_untouched(waiting, set(nodes) - set(canary), workload=WORKLOAD, cls="general")
    target = project.current_revision("general")
    assert_final_revision(waiting, canary, target, workload=WORKLOAD, cls="general")

    run = project.dsroll("resume", "e2e", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    assert_rolled_out(project, timeline, fleet, "general", max_unavailable=1)


# -- i. dry run -------------------------------------------------------------------


def resource_versions(project: Project) -> dict[str, str]:
    ns = project.namespace
    found: dict[str, str] = {}
    kinds: dict[str, Any] = {
        "daemonset": project.apps.list_namespaced_daemon_set,
        "pod": project.core.list_namespaced_pod,
        "controllerrevision": project.apps.list_namespaced_controller_revision,
        "configmap": project.core.list_namespaced_config_map,
        "lease": client.CoordinationV1Api(project.cluster.api_client).list_namespaced_lease,
    }
    for kind, list_them in kinds.items():
        for item in list_them(ns).items:
            found[f"{kind}/{item.metadata.name}"] = item.metadata.resource_version
    return found


def test_dry_run_changes_nothing(project: Project) -> None:
    fleet = deploy(project)
    project.commit("agent 2.0", tag="2.0")
    fleet.watcher.sync()
    before = resource_versions(project)

    run = project.dsroll("rollout", "e2e", "--dry-run", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "dry-run", run
    assert resource_versions(project) == before
    assert {e.type for e in timeline} == {"ADDED"}, "no pod event after the initial list"
    for cls in fleet.nodes:
        assert project.current_revision(cls) == fleet.old[cls]


def test_a_saved_plan_runs_as_saved_and_an_edited_one_is_refused(project: Project) -> None:
    """A saved plan is a file anyone can edit: only what a plan made now would do is carried out."""
    fleet = deploy(project, pause="0")
    project.commit("agent 2.0", tag="2.0", pause="0")
    saved = project.root.parent / "plan.json"  # outside the work tree: a plan is no source file
    run = project.dsroll("plan", "e2e", "--out", str(saved))
    assert run.code == 0, run
    honest = json.loads(saved.read_text())
    updates = [v for v in honest["variants"] if v["action"] == "update"]
    assert updates and all(v["manifest"] for v in updates), honest

    def edited(change: Callable[[dict[str, Any]], None]) -> Path:
        plan = json.loads(json.dumps(honest))
        change(plan["variants"][honest["variants"].index(updates[0])])
        path = project.root.parent / "edited.json"
        path.write_text(json.dumps(plan))
        return path

    def privileged(variant: dict[str, Any]) -> None:
        container = variant["manifest"]["spec"]["template"]["spec"]["containers"][0]
        container["securityContext"] = {"privileged": True}

    def pruned(variant: dict[str, Any]) -> None:
        variant["action"] = "prune"

    def hurried(variant: dict[str, Any]) -> None:
        variant["policy"]["maxUnavailable"] = "100%"

    fleet.watcher.sync()
    before = resource_versions(project)
    for change, why in ((privileged, "its manifest is not what the environment renders"),
                        (pruned, "would be prune, a plan made now says update"),
                        (hurried, "its rollout policy is not the environment's")):  # fmt: skip
        run = project.dsroll("rollout", "e2e", "--plan", str(edited(change)), "--prune", "--yes", "-o", "json")
        assert run.code == 2, run
        assert why in run.stderr and "nothing applied" in run.stderr, run.stderr
        assert resource_versions(project) == before, f"{change.__name__}: a refused plan changed the cluster"

    run = project.dsroll("rollout", "e2e", "--plan", str(saved), "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    for cls in fleet.nodes:
        assert_rolled_out(project, timeline, fleet, cls, max_unavailable=1)
