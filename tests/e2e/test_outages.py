"""A rollout survives an API server that goes away and comes back, or stops resumably.

One rollout per control-plane fault (kube-apiserver restarted, etcd restarted, kube-apiserver
frozen for 20 s, kube-controller-manager restarted), each injected while the second step's
pods are in flight: the canary has been replaced, and the pods of revision 2.0 take 5 s to
turn Ready (the sandbox's ``slow`` pod behaviour), so the fault meets deleted old pods and
new pods not yet Ready. The run must complete with every invariant held, as the
independent pod watcher saw it, and the cluster checked node by node. An outage longer
than ``--retry-budget`` must stop the run with exit 5, the state saved, and ``resume``
must complete it; so must SIGTERM (a cancelled CI job). docs/rollout.md, "Outages".

The variant covers 4 general nodes (a class selecting them by hostname), so the cost does
not grow with the session's node count. The module raises the node-lifecycle grace period
from the sandbox's 10 s to 60 s while it runs: with 10 s, a control plane away for 10 s or
more (a 20 s freeze every time, a restart sometimes) lets kwok's node Leases go stale, and
the node-lifecycle controller marks every node Unknown and every pod not Ready. The pod
watcher, counting any node without a Ready pod, would then judge that controller, not
dsroll; upstream's default grace period is several times the sandbox's, so a cluster
configured as most are does not do it either. Nodes turning unready on their own during a
rollout are a separate concern (``rollout.unreadyNodes``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_max_unavailable,
    assert_never_two_pods,
    assert_replaced_first,
    replacement_order,
    replacements,
)
from e2e.podwatch import PodEvent, PodWatcher
from e2e.test_rollout import CANARY, TEMPLATE, WORKLOAD, Project
from kubernetes import client

if TYPE_CHECKING:
    from conftest import K8sCluster

CLS = "outage"
VARIANT = f"{WORKLOAD}-{CLS}"
NODES = 4
MAX_UNAVAILABLE = 2


def env_text(namespace: str, nodes: Sequence[str], *, tag: str = "1.0", behaviour: str = "") -> str:
    return f"""\
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {{name: {namespace}}}
cluster: {{namespace: {namespace}}}
hardwareClasses:
  - name: {CLS}
    matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: {json.dumps(list(nodes))}}}]
workloads:
  - name: {WORKLOAD}
    template: templates/agent.yaml.j2
    values: {{tag: "{tag}", behaviour: "{behaviour}"}}
rollout:
  steps: ["1", "100%"]
  maxUnavailable: {MAX_UNAVAILABLE}
  pause: "0"
  readyTimeout: 60s
  canaryNodeSelector: {{{CANARY}: "true"}}
"""


class OutageProject(Project):
    """test_rollout's project, with its variant on ``nodes`` only."""

    def __init__(self, root: Path, namespace: str, cluster: K8sCluster, nodes: Sequence[str]) -> None:
        self.nodes = list(nodes)
        super().__init__(root, namespace, cluster)

    def write(self, **settings: Any) -> None:
        (self.root / "environments" / "e2e.yaml").write_text(env_text(self.namespace, self.nodes, **settings))

    def lease(self) -> Any:
        """The variant's rollout lock, or None."""
        try:
            return client.CoordinationV1Api(self.cluster.api_client).read_namespaced_lease(
                f"dsroll-{VARIANT}", self.namespace
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


@pytest.fixture(scope="module")
def patient_nodes(k8s_cluster: K8sCluster) -> Iterator[None]:
    """The node-lifecycle grace period at 60 s for this module (the docstring says why), then the sandbox's own."""
    if k8s_cluster.backend != "sandbox" or not k8s_cluster.sandbox_name:
        pytest.skip(f"control-plane faults need the sandbox backend, not {k8s_cluster.backend}")
    with k8s_cluster.patient_nodes(60):
        yield


@pytest.fixture
def project(
    make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster, patient_nodes: None
) -> Iterator[OutageProject]:
    general = sorted(s.name for s in k8s_cluster.node_specs if s.hw_class == "general")
    if len(general) < NODES:
        pytest.skip(f"needs {NODES} general nodes, the sandbox has {len(general)} (DSROLL_TEST_NODES)")
    nodes = general[:NODES]  # the first general node is a canary
    root = make_project(env=env_text(namespace, nodes), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = OutageProject(root, namespace, k8s_cluster, nodes)
    yield made
    for pods in made.watchers:  # a test that failed half-way has not stopped its watcher
        pods.stop(sync=False)


def deploy(project: OutageProject) -> tuple[PodWatcher, str]:
    """Revision 1.0 created and watched; 2.0 (slow to turn Ready) committed. The watcher and 1.0's hash."""
    project.commit("agent 1.0")
    created = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert created.code == 0, created
    watcher = project.watcher()
    old = project.current_revision(CLS)
    project.commit("agent 2.0, slow to turn Ready", tag="2.0", behaviour="slow")
    return watcher, old


def second_step_in_flight(timeline: Sequence[PodEvent]) -> bool:
    """The canary is done and the second step has deleted old pods: a fault now meets pods in flight."""
    return len(replacement_order(timeline, workload=WORKLOAD, cls=CLS)) >= 2


def became_ready_after(timeline: Sequence[PodEvent], moment: float, old: str) -> list[str]:
    """Nodes whose new pod first turned Ready after ``moment``."""
    first_ready: dict[str, float] = {}
    for event in timeline:
        if event.cls == CLS and event.node and event.revision != old and event.serving:
            first_ready.setdefault(event.node, event.time)
    return sorted(node for node, at in first_ready.items() if at > moment)


def assert_completed(project: OutageProject, timeline: Sequence[PodEvent], old: str) -> None:
    """Invariants on the watcher's timeline, then the cluster itself, node by node."""
    nodes = project.nodes
    new = project.current_revision(CLS)
    assert new != old
    assert_max_unavailable(timeline, nodes, MAX_UNAVAILABLE, workload=WORKLOAD, cls=CLS)
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_replaced_first(timeline, [nodes[0]], workload=WORKLOAD, cls=CLS)
    assert replacements(timeline, workload=WORKLOAD, cls=CLS) == dict.fromkeys(nodes, 1), "each node replaced once"
    assert_final_revision(timeline, nodes, new, workload=WORKLOAD, cls=CLS)

    pods = project.core.list_namespaced_pod(project.namespace, label_selector=f"dsroll.io/workload={WORKLOAD}").items
    for node in nodes:
        on_node = [p for p in pods if p.spec.node_name == node]
        seen = [(p.metadata.name, p.metadata.labels.get("controller-revision-hash")) for p in on_node]
        assert len(on_node) == 1, f"{node}: {seen}"
        (pod,) = on_node
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        assert not pod.metadata.deletion_timestamp and ready, f"{node}: {seen} not Ready"
        assert pod.metadata.labels["controller-revision-hash"] == new, f"{node}: {seen}, expected {new}"
    state = project.state(CLS)
    assert (state["phase"], state["targetRevision"], state["previousRevision"]) == ("complete", new, old), state
    assert state["nodesDone"] == len(nodes) and state["inFlight"] == [], state
    assert project.daemonset(CLS)["spec"]["updateStrategy"]["type"] == "RollingUpdate", "the strategy is restored"
    assert project.lease() is None, "the lock is released"


@contextlib.contextmanager
def frozen_apiserver(cluster: K8sCluster) -> Iterator[None]:
    """kube-apiserver SIGSTOPped inside the block (its socket still accepts: clients hang)."""
    from dsroll.sandbox import faults

    assert cluster.sandbox_name is not None
    with faults.paused(cluster.sandbox_name):
        yield


def wait_answering(project: OutageProject, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            project.core.list_namespace(_request_timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# -- a fault the run rides out ----------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["restart-apiserver", "restart-etcd", "pause-apiserver", "restart-controller-manager"]
)
def test_a_rollout_rides_out_a_control_plane_fault_with_every_invariant_held(
    project: OutageProject, k8s_cluster: K8sCluster, fault: str
) -> None:
    watcher, old = deploy(project)
    # A short request timeout: the frozen API server is noticed and retried, not waited out.
    with project.background("rollout", "e2e", "--yes", "-o", "json", "--request-timeout", "5s") as cli:
        watcher.wait_for(second_step_in_flight, 60, "the second step's pods in flight")
        fault_at = time.time()
        if fault == "pause-apiserver":
            k8s_cluster.fault(fault, seconds=20, wait=False).join()
        else:
            k8s_cluster.fault(fault)
        run = cli.finish(timeout=180)
    timeline = watcher.stop()

    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    assert became_ready_after(timeline, fault_at, old), "the fault met new pods not yet Ready"
    assert_completed(project, timeline, old)
    # The operator is told when the API server went away and came back; a restarted controller
    # manager is no outage of the API. (etcd: the apiserver may hold requests rather than fail them.)
    told = "is not answering" in run.stderr and "answers again after" in run.stderr
    if fault in ("restart-apiserver", "pause-apiserver"):
        assert told, run
    elif fault == "restart-controller-manager":
        assert "is not answering" not in run.stderr, run


# -- beyond the budget, and SIGTERM: exit 5, then resume ----------------------------------


def test_an_outage_longer_than_the_retry_budget_exits_5_and_resume_completes(
    project: OutageProject, k8s_cluster: K8sCluster
) -> None:
    watcher, old = deploy(project)
    argv = ("rollout", "e2e", "--yes", "-o", "json", "--retry-budget", "3s", "--request-timeout", "1s")
    with project.background(*argv) as cli:
        watcher.wait_for(second_step_in_flight, 60, "the second step's pods in flight")
        with frozen_apiserver(k8s_cluster):
            run = cli.finish(timeout=60)
    assert run.code == 5, run
    assert "interrupted after changes were applied: " in run.stderr, run
    assert "(failing for 3s, the retry budget); state is saved in the cluster: run 'dsroll resume e2e'" in run.stderr
    summary = run.report
    assert (summary["result"], summary["exitCode"]) == ("interrupted", 5), run
    [variant] = summary["variants"]
    assert (variant["name"], variant["result"]) == (VARIANT, "interrupted"), variant

    wait_answering(project)
    saved = project.state(CLS)
    assert saved["phase"] == "progressing" and saved["step"] == 1 and saved["inFlight"], saved
    assert saved["targetRevision"] == project.current_revision(CLS) != old, saved

    resumed = project.dsroll("resume", "e2e", "-o", "json")
    timeline = watcher.stop()
    assert resumed.code == 0, resumed
    assert resumed.report["result"] == "complete", resumed
    assert project.state(CLS)["startedAt"] == saved["startedAt"], "the same rollout continued"
    assert_completed(project, timeline, old)


def test_sigterm_mid_rollout_prints_the_summary_exits_5_and_resume_completes(project: OutageProject) -> None:
    watcher, old = deploy(project)
    with project.background("rollout", "e2e", "--yes", "-o", "json") as cli:
        watcher.wait_for(second_step_in_flight, 60, "the second step's pods in flight")
        cli.proc.send_signal(signal.SIGTERM)
        run = cli.finish(timeout=60)
    assert run.code == 5, run
    assert "state is saved in the cluster: run 'dsroll resume e2e' to continue" in run.stderr, run
    summary = run.report
    assert (summary["result"], summary["exitCode"], summary["interruption"]) == (
        "interrupted",
        5,
        "stopped by SIGTERM",
    ), run
    [variant] = summary["variants"]
    assert (variant["result"], variant["message"]) == ("interrupted", "stopped by SIGTERM"), variant
    assert project.lease() is None, "the lock was released on the way out: resume need not wait for it"
    saved = project.state(CLS)
    assert saved["phase"] == "progressing" and saved["targetRevision"] != old, saved

    resumed = project.dsroll("resume", "e2e", "-o", "json")
    timeline = watcher.stop()
    assert resumed.code == 0, resumed
    assert resumed.report["result"] == "complete", resumed
    assert_completed(project, timeline, old)
