"""The sandbox misbehaves on purpose, and really: node behaviours, pod faults the scheduler
and kwok play, and control-plane processes restarted or frozen under a live cluster.

Every test leaves the session's cluster as it found it: annotations removed and nodes
Ready and untainted (``K8sCluster.misbehaving`` heals in ``finally``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.polling import wait_until
from kubernetes import client
from kubernetes.client.exceptions import ApiException

PAUSE = "registry.k8s.io/pause:3.10"
CLASS = "sandbox.dsroll.io/class"
HOSTNAME = "kubernetes.io/hostname"


def apis(k8s_cluster: Any) -> tuple[client.CoreV1Api, client.AppsV1Api]:
    return client.CoreV1Api(k8s_cluster.api_client), client.AppsV1Api(k8s_cluster.api_client)


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _needs_sandbox(k8s_cluster: Any) -> None:
    if k8s_cluster.backend != "sandbox":
        pytest.skip("needs the sandbox backend (its node agent and processes)")


def _general_nodes(core: client.CoreV1Api, count: int) -> list[str]:
    names = sorted(n.metadata.name for n in core.list_node(label_selector=f"{CLASS}=general").items)
    assert len(names) >= count, f"need {count} general nodes, the cluster has {names}"
    return names[-count:]  # the last ones: never a canary


def _pod(name: str, node: str, *, behaviour: str | None = None, grace: int = 0, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sandbox.dsroll.io/behaviour": behaviour} if behaviour else {}},
        "spec": {
            "nodeSelector": {HOSTNAME: node},
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "agent", "image": PAUSE, **container}],
        },
    }


def _daemonset(name: str, nodes: list[str]) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": nodes}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
                        }
                    },
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "agent", "image": PAUSE}],
                },
            },
        },
    }


def _pods_by_node(core: client.CoreV1Api, namespace: str, app: str) -> dict[str, client.V1Pod]:
    return {p.spec.node_name: p for p in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items}


def _ds_ready(core: client.CoreV1Api, namespace: str, app: str, nodes: list[str]) -> None:
    def probe() -> tuple[bool, Any]:
        pods = _pods_by_node(core, namespace, app)
        return set(pods) == set(nodes) and all(is_ready(p) for p in pods.values()), sorted(pods)

    wait_until(f"{app} Ready on {nodes}", probe, timeout=30)


def _ready_status(node: client.V1Node) -> str:
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "absent")


# --- node behaviours --------------------------------------------------------------------


def test_not_ready_node_turns_unknown_tainted_and_heals(k8s_cluster: Any, namespace: str) -> None:
    _needs_sandbox(k8s_cluster)
    core, apps = apis(k8s_cluster)
    (node,) = _general_nodes(core, 1)
    apps.create_namespaced_daemon_set(namespace, _daemonset("nr", [node]))
    _ds_ready(core, namespace, "nr", [node])
    pod_uid = _pods_by_node(core, namespace, "nr")[node].metadata.uid
    started = time.monotonic()
    with k8s_cluster.misbehaving(node, "not-ready"):

        def unreachable() -> tuple[bool, Any]:
            obj = core.read_node(node)
            taints = {(t.key, t.effect) for t in obj.spec.taints or []}
            pod = _pods_by_node(core, namespace, "nr").get(node)
            seen = (_ready_status(obj), taints, pod is not None and is_ready(pod))
            wanted = {("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")}
            return seen[0] == "Unknown" and wanted <= taints and pod is not None and not seen[2], seen

        wait_until("Ready=Unknown, unreachable taints and the pod not Ready", unreachable, timeout=25)
        took = time.monotonic() - started
        reason = next(c.reason for c in core.read_node(node).status.conditions if c.type == "Ready")
        assert reason == "NodeStatusUnknown"
        # DaemonSet pods tolerate unreachable:NoExecute: not evicted.
        assert _pods_by_node(core, namespace, "nr")[node].metadata.uid == pod_uid
    _ds_ready(core, namespace, "nr", [node])
    assert _pods_by_node(core, namespace, "nr")[node].metadata.uid == pod_uid
    print(f"not-ready seen after {took:.1f}s")


def test_flapping_node_toggles_ready(k8s_cluster: Any) -> None:
    _needs_sandbox(k8s_cluster)
    core, _ = apis(k8s_cluster)
    (node,) = _general_nodes(core, 1)
    seen: list[str] = []
    with k8s_cluster.misbehaving(node, "flapping"):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = _ready_status(core.read_node(node))
            if not seen or seen[-1] != status:
                seen.append(status)
            if seen.count("True") >= 2 and "False" in seen[seen.index("True") :]:
                break
            time.sleep(0.3)
    assert "False" in seen and seen.count("True") >= 2, f"Ready went {seen}"


def test_kubelet_gone_leaves_pods_pending_and_deletions_hanging(k8s_cluster: Any, namespace: str) -> None:
    _needs_sandbox(k8s_cluster)
    core, _ = apis(k8s_cluster)
    (node,) = _general_nodes(core, 1)
    core.create_namespaced_pod(namespace, _pod("old", node, grace=30))
    wait_until("pod old Ready", lambda: (is_ready(p := core.read_namespaced_pod("old", namespace)), p.status.phase))
    with k8s_cluster.misbehaving(node, "kubelet-gone"):  # returns once kwok has let go of the node
        core.delete_namespaced_pod("old", namespace)
        core.create_namespaced_pod(namespace, _pod("new", node))
        time.sleep(5)
        old = core.read_namespaced_pod("old", namespace)
        new = core.read_namespaced_pod("new", namespace)
        assert old.metadata.deletion_timestamp is not None, "old should be Terminating"
        assert new.spec.node_name == node and new.status.phase == "Pending" and not new.status.pod_ip
        assert _ready_status(core.read_node(node)) == "True", "kubelet-gone keeps the node Ready"

    def healed() -> tuple[bool, Any]:
        try:
            core.read_namespaced_pod("old", namespace)
            gone = False
        except ApiException as exc:
            gone = exc.status == 404
        new = core.read_namespaced_pod("new", namespace)
        return gone and is_ready(new), (gone, new.status.phase)

    wait_until("old finalised and new Ready once healed", healed, timeout=20)


def test_slow_start_and_slow_pull_take_their_time(k8s_cluster: Any, namespace: str) -> None:
    _needs_sandbox(k8s_cluster)
    core, _ = apis(k8s_cluster)
    starter, puller = _general_nodes(core, 2)
    with k8s_cluster.misbehaving(starter, "slow-start=3s"), k8s_cluster.misbehaving(puller, "slow-pull=3s"):
        t0 = time.monotonic()
        core.create_namespaced_pod(namespace, _pod("starter", starter))
        core.create_namespaced_pod(namespace, _pod("puller", puller))
        states: dict[str, set[str]] = {"starter": set(), "puller": set()}
        ready_at: dict[str, float] = {}
        while len(ready_at) < 2 and time.monotonic() - t0 < 20:
            for name in states:
                pod = core.read_namespaced_pod(name, namespace)
                cs = (pod.status.container_statuses or [None])[0]
                if cs and cs.state.waiting:
                    states[name].add(f"waiting:{cs.state.waiting.reason}")
                if pod.status.phase == "Running" and not is_ready(pod):
                    states[name].add("running-unready")
                if is_ready(pod) and name not in ready_at:
                    ready_at[name] = time.monotonic() - t0
            time.sleep(0.2)
    assert set(ready_at) == {"starter", "puller"}, f"not Ready in 20s: {states}"
    assert ready_at["starter"] >= 3 and ready_at["puller"] >= 3, ready_at
    assert "running-unready" in states["starter"], states
    assert "waiting:ContainerCreating" in states["puller"], states
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=puller").items
    assert {"Pulling", "Pulled"} <= {e.reason for e in events}


# --- pod faults: kwok's stages and the real scheduler -----------------------------------


@pytest.mark.parametrize(("behaviour", "reason", "code"), [("oom-killed", "OOMKilled", 137), ("error", "Error", 1)])
def test_terminations_loop_with_reason_and_exit_code(
    k8s_cluster: Any, namespace: str, behaviour: str, reason: str, code: int
) -> None:
    _needs_sandbox(k8s_cluster)
    core, _ = apis(k8s_cluster)
    (node,) = _general_nodes(core, 1)
    core.create_namespaced_pod(namespace, _pod("victim", node, behaviour=behaviour))

    def looping(minimum: int) -> Any:
        def probe() -> tuple[bool, Any]:
            cs = (core.read_namespaced_pod("victim", namespace).status.container_statuses or [None])[0]
            last = cs.last_state.terminated if cs and cs.last_state else None
            seen = (cs.restart_count if cs else -1, last.reason if last else None, last.exit_code if last else None)
            return seen[0] > minimum and seen[1:] == (reason, code), seen

        return probe

    restarts, _, _ = wait_until(f"{reason} terminations", looping(0), timeout=20)
    wait_until("restartCount to rise", looping(restarts), timeout=10)


def _scheduling_message(core: client.CoreV1Api, namespace: str, pod: str) -> tuple[bool, str]:
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
    text = " | ".join(e.message or "" for e in events if e.reason == "FailedScheduling")
    return bool(text), text


def test_unschedulable_pods_stay_pending_with_the_schedulers_reason(k8s_cluster: Any, namespace: str) -> None:
    _needs_sandbox(k8s_cluster)
    core, _ = apis(k8s_cluster)
    (node,) = _general_nodes(core, 1)
    core.create_namespaced_pod(namespace, _pod("too-big", node, resources={"requests": {"cpu": "1000"}}))
    core.create_namespaced_pod(namespace, _pod("port-a", node, ports=[{"containerPort": 9100, "hostPort": 9100}]))
    wait_until("port-a Ready", lambda: (is_ready(p := core.read_namespaced_pod("port-a", namespace)), p.status.phase))
    core.create_namespaced_pod(namespace, _pod("port-b", node, ports=[{"containerPort": 9100, "hostPort": 9100}]))
    big = wait_until("FailedScheduling for too-big", lambda: _scheduling_message(core, namespace, "too-big"))
    port = wait_until("FailedScheduling for port-b", lambda: _scheduling_message(core, namespace, "port-b"))
    assert "Insufficient cpu" in big
    assert "didn't have free ports" in port
    for name in ("too-big", "port-b"):
        pod = core.read_namespaced_pod(name, namespace)
        assert pod.status.phase == "Pending" and not pod.spec.node_name


# --- component faults -------------------------------------------------------------------


@pytest.fixture()
def patient_nodes(k8s_cluster: Any) -> Iterator[None]:
    """A 60 s node grace period while the control plane is away, the sandbox's own after.

    An outage longer than the grace period marks every node Unknown for a moment (as it
    would in a real cluster set up that way), which would leak into later tests.
    """
    _needs_sandbox(k8s_cluster)
    with k8s_cluster.patient_nodes(60):
        yield


def test_apiserver_and_etcd_restarts_keep_the_cluster(k8s_cluster: Any, namespace: str, patient_nodes: None) -> None:
    core, _ = apis(k8s_cluster)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "keep"}, "data": {"k": "v"}})
    for kind in ("restart-apiserver", "restart-etcd"):
        before = k8s_cluster.fault(kind)
        assert core.read_namespaced_config_map("keep", namespace).data == {"k": "v"}, kind
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"after-{kind}"}})
        assert before.pid > 0


def test_paused_apiserver_times_out_then_answers(k8s_cluster: Any, namespace: str, patient_nodes: None) -> None:
    from dsroll.sandbox import faults

    api = faults.admin_api(k8s_cluster.sandbox_name)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    timer = k8s_cluster.fault("pause-apiserver", seconds=4, wait=False)
    try:
        with pytest.raises(OSError, match="timed out"):
            api.call("GET", path, timeout=1)
    finally:
        timer.join()
    assert api.call("GET", path, timeout=10)[0] == 200


def test_restarted_controller_manager_still_runs_daemonsets(
    k8s_cluster: Any, namespace: str, patient_nodes: None
) -> None:
    core, apps = apis(k8s_cluster)
    k8s_cluster.fault("restart-controller-manager")
    added = k8s_cluster.add_nodes(count=1, labels={"dsroll.io/e2e-pool": namespace})
    try:
        ds = _daemonset("late", [added[0].name])
        apps.create_namespaced_daemon_set(namespace, ds)
        _ds_ready(core, namespace, "late", [added[0].name])
    finally:
        core.delete_node(added[0].name)


def test_a_stalled_node_agent_does_not_hand_its_node_to_kwok(
    k8s_cluster: Any, namespace: str, patient_nodes: None
) -> None:
    """The agent frozen for longer than kwok's Lease duration: kwok still leaves the node alone.

    kwok takes a Lease whose renewTime + leaseDurationSeconds has passed; the agent's Leases
    carry a duration kwok never sees run out, so a late renewal (a busy machine) does not
    let kwok finalise a hung deletion. (The grace period is raised: the node may look silent.)
    """
    from dsroll.sandbox.behaviours import LEASE_NAMESPACE, lease_timing

    core, _ = apis(k8s_cluster)
    coordination = client.CoordinationV1Api(k8s_cluster.api_client)
    (node,) = _general_nodes(core, 1)
    core.create_namespaced_pod(namespace, _pod("old", node, grace=30))
    wait_until("pod old Ready", lambda: (is_ready(p := core.read_namespaced_pod("old", namespace)), p.status.phase))
    kwok_lease = lease_timing(len(k8s_cluster.node_specs))[0]
    with k8s_cluster.misbehaving(node, "kubelet-gone"):
        transitions = coordination.read_namespaced_lease(node, LEASE_NAMESPACE).spec.lease_transitions
        core.delete_namespaced_pod("old", namespace)
        # kwok's lease duration, one of its renew intervals and the agent's own renew interval
        k8s_cluster.fault("pause-node-agent", seconds=kwok_lease * 1.5)
        lease = coordination.read_namespaced_lease(node, LEASE_NAMESPACE).spec
        assert lease.lease_transitions == transitions, "kwok took the Lease while the agent was frozen"
        old = core.read_namespaced_pod("old", namespace)
        assert old.metadata.deletion_timestamp is not None, "old should still be Terminating"

    def finalised() -> tuple[bool, Any]:
        try:
            core.read_namespaced_pod("old", namespace)
        except ApiException as exc:
            return exc.status == 404, exc.status
        return False, "still there"

    wait_until("old finalised once healed", finalised, timeout=20)
