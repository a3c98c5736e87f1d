"""Stuck pods fail fast and say why: one rollout per cause, on the real control plane.

Each test deploys the `general` variant at 1.0, then rolls out a 2.0 whose canary pod is
stuck for a reason the real scheduler, DaemonSet controller, kwok or the sandbox's node
agent plays: a hostPort taken on the node, a taint the template does not tolerate, more
cpu than the node has, an image pull slower than readyTimeout, an OOMKilled container.
The rollout's `--events` lines and JSON summary must name the cause, and the time from
the target revision to the `node-failed` event shows how fast: causes that cannot resolve
themselves fail long before readyTimeout, causes that may resolve fail right after it.
One test rolls back and lets the pod watcher judge the invariants (docs/rollout.md,
"The health gate").
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from e2e.invariants import assert_final_revision, assert_max_unavailable, assert_never_two_pods, assert_untouched
from e2e.polling import wait_until
from e2e.test_rollout import WORKLOAD, Deployed, Project, Run, deploy

from dsroll import permissions

if TYPE_CHECKING:
    from conftest import K8sCluster

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
      terminationGracePeriodSeconds: 0
      containers:
        - name: agent
          image: "example.com/agent:{{ values.tag }}"
{%- if values.hostPort %}
          ports: [{containerPort: {{ values.hostPort }}, hostPort: {{ values.hostPort }}}]
{%- endif %}
{%- if values.cpu %}
          resources: {requests: {cpu: "{{ values.cpu }}"}}
{%- endif %}
"""

PORT = 9123
TAINT = "dsroll.io/e2e-stuck"


def env_text(
    namespace: str,
    *,
    tag: str = "1.0",
    behaviour: str = "",
    host_port: int = 0,
    cpu: str = "",
    ready_timeout: str = "8s",
    on_failure: str = "abort",
) -> str:
    values = {"tag": tag, "behaviour": behaviour, "hostPort": host_port, "cpu": cpu}
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
    classes: [general]
    values: {json.dumps(values)}
rollout:
  steps: ["1", "100%"]
  maxUnavailable: 1
  pause: "0"
  readyTimeout: {ready_timeout}
  onFailure: {on_failure}
  canaryNodeSelector: {{dsroll.io/canary: "true"}}
"""


class StuckProject(Project):
    def write(self, **settings: Any) -> None:
        (self.root / "environments" / "e2e.yaml").write_text(env_text(self.namespace, **settings))


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[StuckProject]:
    if not k8s_cluster.simulates_behaviours:
        pytest.skip(f"the {k8s_cluster.backend} backend has no kwok to play stuck pods")
    root = make_project(env=env_text(namespace), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = StuckProject(root, namespace, k8s_cluster)
    yield made
    for pods in made.watchers:
        pods.stop(sync=False)


@dataclass(frozen=True)
class Failed:
    """A rollout that failed the health gate: its node, its reason, and how long it took."""

    run: Run
    node: str
    reason: str
    seconds: float  # from the target revision's `start` event to `node-failed`


def roll_out_and_fail(project: Project, fleet: Deployed, *extra: str) -> Failed:
    """`rollout --events -o json` of the committed 2.0, which must fail on the canary."""
    run = project.dsroll("rollout", "e2e", "--yes", "--events", "-o", "json", *extra)
    assert run.code == 1, run
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    events, summary = lines[:-1], lines[-1]
    times = {e["event"]: datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events}
    assert "node-failed" in times, run
    (variant,) = summary["variants"]
    failure = variant["failure"]
    assert failure["node"] in fleet.canary["general"], run
    seconds = (times["node-failed"] - times["start"]).total_seconds()  # the last `start`: the target revision
    print(f"failed after {seconds:.1f}s: {failure['reason']}")
    return Failed(run, failure["node"], failure["reason"], seconds)


def test_a_taken_host_port_fails_at_once(project: StuckProject) -> None:
    settings = {"ready_timeout": "30s"}
    fleet = deploy(project, **settings)
    canary = fleet.canary["general"][0]
    squatter = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "squatter"},
        "spec": {
            "nodeName": canary,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "s", "image": "example.com/s:1", "ports": [{"containerPort": PORT, "hostPort": PORT}]}
            ],
        },
    }
    project.core.create_namespaced_pod(project.namespace, squatter)
    project.commit("agent 2.0 wants a taken hostPort", tag="2.0", host_port=PORT, **settings)

    failed = roll_out_and_fail(project, fleet)
    fleet.stop()
    assert "cannot be scheduled: node(s) didn't have free ports for the requested pod ports" in failed.reason
    assert f"hostPort {PORT}/TCP" in failed.reason and canary in failed.reason
    assert failed.seconds < 10, f"a taken hostPort waits for nothing, not readyTimeout (30s): {failed.seconds:.1f}s"
    assert failed.run.report["variants"][0]["phase"] == "aborted"


def test_a_taint_not_tolerated_fails_at_once_though_no_pod_comes(
    project: StuckProject, k8s_cluster: K8sCluster
) -> None:
    settings = {"ready_timeout": "30s"}
    fleet = deploy(project, **settings)
    canary = fleet.canary["general"][0]
    project.commit("agent 2.0", tag="2.0", **settings)
    # NoSchedule evicts nothing: the 1.0 pod stays, but the controller will create no new one.
    k8s_cluster.kubectl("taint", "node", canary, f"{TAINT}=db:NoSchedule")
    try:
        failed = roll_out_and_fail(project, fleet)
    finally:
        k8s_cluster.kubectl("taint", "node", canary, f"{TAINT}-")
    timeline = fleet.stop()
    assert failed.reason == (
        f"no new pod on {canary}, the DaemonSet controller will not create one: "
        f"the node has taint {TAINT}=db:NoSchedule, not tolerated by the pod template"
    )
    assert failed.seconds < 10, f"an untolerated taint fails before readyTimeout (30s): {failed.seconds:.1f}s"
    others = set(fleet.nodes["general"]) - {canary}
    assert_untouched(timeline, others, workload=WORKLOAD, cls="general")


def test_insufficient_cpu_fails_after_ready_timeout_and_rolls_back(project: StuckProject) -> None:
    settings = {"ready_timeout": "8s", "on_failure": "rollback"}
    fleet = deploy(project, **settings)
    canary, nodes, old = fleet.canary["general"], fleet.nodes["general"], fleet.old["general"]
    project.commit("agent 2.0 asks for 1000 cpus", tag="2.0", cpu="1000", **settings)  # the API says 1k

    failed = roll_out_and_fail(project, fleet)
    timeline = fleet.stop()
    assert (
        "not Ready within readyTimeout (8s): unschedulable: Insufficient cpu (agent requests cpu 1k)" in failed.reason
    )
    assert 8 <= failed.seconds < 13, (
        f"insufficient cpu may resolve: waited readyTimeout (8s), took {failed.seconds:.1f}s"
    )
    assert failed.run.report["result"] == "rolled-back", failed.run
    # The pod watcher's verdict: back on 1.0 everywhere, within the budget, never two pods.
    assert_final_revision(timeline, nodes, old, workload=WORKLOAD, cls="general")
    assert_untouched(timeline, set(nodes) - set(canary), workload=WORKLOAD, cls="general")
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert project.state("general")["phase"] == "rolled-back"


def test_an_image_pull_slower_than_ready_timeout_names_the_pull(project: StuckProject, k8s_cluster: K8sCluster) -> None:
    fleet = deploy(project)
    canary = fleet.canary["general"][0]
    project.commit("agent 2.0", tag="2.0")
    with k8s_cluster.misbehaving(canary, "slow-pull=40s"):
        failed = roll_out_and_fail(project, fleet)
    fleet.stop()
    assert failed.reason.endswith(
        'not Ready within readyTimeout (8s): still creating containers (Pulling image "example.com/agent:2.0")'
    ), failed.reason
    assert 8 <= failed.seconds < 13, failed.seconds
    waiting = [json.loads(line) for line in failed.run.stdout.splitlines() if '"node-waiting"' in line]
    assert waiting and "still creating containers" in waiting[0]["message"], "told while it waited"


def test_an_oom_killed_container_fails_naming_its_exit_code(project: StuckProject) -> None:
    settings = {"ready_timeout": "30s", "on_failure": "pause"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0 runs out of memory", tag="2.0", behaviour="oom-killed", **settings)

    failed = roll_out_and_fail(project, fleet)
    fleet.stop()
    assert ": container agent OOMKilled (exit code 137)" in failed.reason, failed.reason
    assert failed.seconds < 10, failed.seconds
    state = project.state("general")
    assert state["phase"] == "paused" and state["failure"]["reason"] == failed.reason, state

    def unhealthy_canary() -> tuple[bool, Any]:
        pods = project.core.list_namespaced_pod(project.namespace, field_selector=f"spec.nodeName={failed.node}").items
        restarts = [cs.restart_count for p in pods for cs in p.status.container_statuses or []]
        return bool(restarts), restarts

    wait_until("the canary's pod still there, paused as it failed", unhealthy_canary, timeout=5)


def test_without_list_events_or_get_nodes_the_gate_still_names_the_cause(
    project: StuckProject, k8s_cluster: K8sCluster
) -> None:
    """The gate's reads are optional in effect: the shipped deployer minus `list events` and
    `get nodes` passes the preflight, warns once, and fails naming the cause from the pod."""
    settings = {"ready_timeout": "8s"}
    fleet = deploy(project, **settings)
    project.commit("agent 2.0 is never Ready", tag="2.0", behaviour="never-ready", **settings)
    printed = subprocess.run(
        [sys.executable, "-m", "dsroll", "rbac", "e2e"],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
    )
    assert printed.returncode == 0, printed.stderr
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    for doc in docs:  # the deployer's Role and ClusterRole, without the gate's reads
        for rule in doc.get("rules") or [] if doc["metadata"]["name"].endswith("-deployer") else []:
            if rule["resources"] == ["events"]:
                rule["verbs"].remove("list")
            if rule["resources"] == ["nodes"]:
                rule["verbs"].remove("get")
    manifests = yaml.safe_dump_all(docs)
    k8s_cluster.kubectl("apply", "-f", "-", input=manifests)
    deployer = f"system:serviceaccount:{project.namespace}:{permissions.account_name(project.namespace, 'deployer')}"

    def granted() -> tuple[bool, str]:
        answer = k8s_cluster.kubectl(
            "auth", "can-i", "delete", "pods", "-n", project.namespace, "--as", deployer, check=False
        )
        return answer.stdout.strip() == "yes", answer.stdout

    wait_until("the deployer's Role in force", granted, timeout=10)
    try:
        failed = roll_out_and_fail(project, fleet, "--as", deployer)
    finally:
        k8s_cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests, check=False)
    fleet.stop()
    assert "cannot list events in namespace" in failed.run.stderr, failed.run
    assert failed.reason.endswith("not Ready within readyTimeout (8s): running, not Ready (ContainersNotReady)"), (
        failed.reason
    )
