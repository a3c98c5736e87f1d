"""The sandbox is a real cluster where dsroll can tell: the DaemonSet controller, the
garbage collector and the scheduler behave as upstream, and kwok's stages play the pod
behaviours dsroll's health gates must react to."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.polling import wait_until
from kubernetes import client
from typer.testing import CliRunner

from dsroll.sandbox import cluster as sandbox
from dsroll.sandbox import processes
from dsroll.sandbox.cli import app as sandbox_cli
from dsroll.sandbox.nodes import node_specs

PAUSE = "registry.k8s.io/pause:3.10"
BEHAVIOUR = "sandbox.dsroll.io/behaviour"
CLASS = "sandbox.dsroll.io/class"


def daemonset(
    name: str,
    node_selector: dict[str, str],
    behaviour: str | None = None,
    strategy: str = "RollingUpdate",
) -> dict[str, Any]:
    annotations = {BEHAVIOUR: behaviour} if behaviour else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": strategy},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {
                    "nodeSelector": node_selector,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "agent", "image": PAUSE}],
                },
            },
        },
    }


def apis(k8s_cluster: Any) -> tuple[client.CoreV1Api, client.AppsV1Api]:
    return client.CoreV1Api(k8s_cluster.api_client), client.AppsV1Api(k8s_cluster.api_client)


def node_names(core: client.CoreV1Api, selector: str) -> set[str]:
    return {n.metadata.name for n in core.list_node(label_selector=selector).items}


def pods_of(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def wait_ds_ready(apps: client.AppsV1Api, namespace: str, name: str, expected: int) -> client.V1DaemonSet:
    def probe() -> tuple[bool, Any]:
        ds = apps.read_namespaced_daemon_set(name, namespace)
        st = ds.status
        seen = (st.observed_generation, st.desired_number_scheduled, st.number_ready, st.updated_number_scheduled)
        done = (
            st.observed_generation == ds.metadata.generation
            and st.desired_number_scheduled == expected
            and st.number_ready == expected
            and (st.updated_number_scheduled or 0) == expected
        )
        return done, (ds if done else f"(observedGeneration, desired, ready, updated)={seen}")

    return wait_until(f"DaemonSet {namespace}/{name} to have {expected} ready pods", probe)


def summary(pods: list[client.V1Pod]) -> dict[str, tuple[str, str, str]]:
    """node -> (pod uid, controller-revision-hash, phase)"""
    return {
        p.spec.node_name: (p.metadata.uid, p.metadata.labels.get("controller-revision-hash", ""), p.status.phase)
        for p in pods
    }


# --- the DaemonSet controller, scheduler and garbage collector are real -----------------


def test_nodes_are_the_pure_node_specs(k8s_cluster: Any) -> None:
    if k8s_cluster.backend != "sandbox":
        pytest.skip("only the sandbox backend promises node_specs(n, classes)")
    core, _ = apis(k8s_cluster)
    live = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
    for spec in k8s_cluster.node_specs:
        node = live[spec.name]
        assert {k: node.metadata.labels.get(k) for k in spec.labels} == dict(spec.labels)
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        assert not node.spec.taints, f"{spec.name} is tainted: {node.spec.taints}"
        assert node.status.allocatable["pods"] == "110"


def test_daemonset_runs_on_exactly_the_matching_nodes(k8s_cluster: Any, namespace: str) -> None:
    core, apps = apis(k8s_cluster)
    gpu = node_names(core, "nvidia.com/gpu.present=true")
    assert gpu, "the cluster has no gpu-class node"
    apps.create_namespaced_daemon_set(namespace, daemonset("gpu-agent", {"nvidia.com/gpu.present": "true"}))
    wait_ds_ready(apps, namespace, "gpu-agent", len(gpu))
    pods = pods_of(core, namespace, "gpu-agent")
    assert sorted(p.spec.node_name for p in pods) == sorted(gpu)
    assert all(is_ready(p) and p.status.phase == "Running" for p in pods)
    assert all(p.status.pod_ip for p in pods)


def _newest_revision_hash(apps: client.AppsV1Api, namespace: str, app: str, count: int) -> tuple[bool, Any]:
    revs = apps.list_namespaced_controller_revision(namespace, label_selector=f"app={app}").items
    if len(revs) != count:
        return False, [(r.metadata.name, r.revision) for r in revs]
    newest = max(revs, key=lambda r: r.revision)
    return True, newest.metadata.labels["controller-revision-hash"]


def test_ondelete_update_touches_no_pod_until_one_is_deleted(k8s_cluster: Any, namespace: str) -> None:
    core, apps = apis(k8s_cluster)
    general = node_names(core, f"{CLASS}=general")
    apps.create_namespaced_daemon_set(namespace, daemonset("od-agent", {CLASS: "general"}, strategy="OnDelete"))
    wait_ds_ready(apps, namespace, "od-agent", len(general))
    before = summary(pods_of(core, namespace, "od-agent"))
    old_hash = wait_until("one ControllerRevision", lambda: _newest_revision_hash(apps, namespace, "od-agent", 1))
    assert {h for _, h, _ in before.values()} == {old_hash}

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.9"}]}}}}
    generation = apps.patch_namespaced_daemon_set("od-agent", namespace, patch).metadata.generation
    new_hash = wait_until("a second ControllerRevision", lambda: _newest_revision_hash(apps, namespace, "od-agent", 2))
    assert new_hash != old_hash

    def observed() -> tuple[bool, Any]:
        st = apps.read_namespaced_daemon_set("od-agent", namespace).status
        return st.observed_generation == generation, st

    status = wait_until("the controller to observe the new generation", observed)
    assert status.updated_number_scheduled in (0, None)
    assert status.number_ready == len(general)
    assert summary(pods_of(core, namespace, "od-agent")) == before, "OnDelete must not replace any pod"

    victim_node = sorted(before)[0]
    victim_uid = before[victim_node][0]
    victim = next(p for p in pods_of(core, namespace, "od-agent") if p.metadata.uid == victim_uid)
    core.delete_namespaced_pod(victim.metadata.name, namespace)

    def replaced() -> tuple[bool, Any]:
        pods = pods_of(core, namespace, "od-agent")
        now = summary(pods)
        uid, rev, _ = now.get(victim_node, ("", "", ""))
        on_node = [p for p in pods if p.spec.node_name == victim_node]
        ok = uid not in ("", victim_uid) and rev == new_hash and all(is_ready(p) for p in on_node)
        return ok, now

    after = wait_until(f"a new-revision pod on {victim_node}", replaced)
    for node, (uid, rev, _) in after.items():
        if node != victim_node:
            assert (uid, rev) == before[node][:2], f"{node}'s pod changed although it was not deleted"


def test_orphan_delete_then_adoption_by_a_new_daemonset(k8s_cluster: Any, namespace: str) -> None:
    core, apps = apis(k8s_cluster)
    general = node_names(core, f"{CLASS}=general")
    apps.create_namespaced_daemon_set(namespace, daemonset("agent", {CLASS: "general"}))
    wait_ds_ready(apps, namespace, "agent", len(general))
    before = summary(pods_of(core, namespace, "agent"))

    apps.delete_namespaced_daemon_set("agent", namespace, propagation_policy="Orphan")

    def gone() -> tuple[bool, Any]:
        try:
            ds = apps.read_namespaced_daemon_set("agent", namespace)
        except client.ApiException as exc:
            return exc.status == 404, exc.status
        return False, ds.metadata.finalizers

    wait_until("the orphan-deleted DaemonSet to disappear (garbage collector's orphan finalizer)", gone)

    def orphaned() -> tuple[bool, Any]:
        pods = pods_of(core, namespace, "agent")
        return all(not p.metadata.owner_references for p in pods), [p.metadata.owner_references for p in pods]

    wait_until("owner references to be cleared from the pods", orphaned, timeout=30)
    assert summary(pods_of(core, namespace, "agent")) == before, "orphaned pods must keep running untouched"
    revs = apps.list_namespaced_controller_revision(namespace, label_selector="app=agent").items
    assert revs and all(not r.metadata.owner_references for r in revs)

    # A new DaemonSet (other name, same selector and template) adopts them.
    adopter = daemonset("agent", {CLASS: "general"})
    adopter["metadata"]["name"] = "agent-adopter"
    uid = apps.create_namespaced_daemon_set(namespace, adopter).metadata.uid

    def adopted() -> tuple[bool, Any]:
        refs = [(p.metadata.owner_references or []) for p in pods_of(core, namespace, "agent")]
        ok = all(len(r) == 1 and r[0].uid == uid and r[0].controller and r[0].kind == "DaemonSet" for r in refs)
        return ok, refs

    wait_until("the new DaemonSet to adopt the orphaned pods", adopted, timeout=30)
    wait_ds_ready(apps, namespace, "agent-adopter", len(general))
    assert summary(pods_of(core, namespace, "agent")) == before, "adoption must not create or replace pods"


def test_added_nodes_get_daemonset_pods(k8s_cluster: Any, namespace: str) -> None:
    core, apps = apis(k8s_cluster)
    added = k8s_cluster.add_nodes(count=2, labels={"dsroll.io/e2e-pool": namespace})
    try:
        apps.create_namespaced_daemon_set(namespace, daemonset("pool-agent", {"dsroll.io/e2e-pool": namespace}))
        wait_ds_ready(apps, namespace, "pool-agent", 2)
        assert sorted(p.spec.node_name for p in pods_of(core, namespace, "pool-agent")) == sorted(s.name for s in added)
    finally:
        for spec in added:
            core.delete_node(spec.name)


# --- kwok's stages: the sandbox.dsroll.io/behaviour annotation --------------------------


def _needs_kwok(k8s_cluster: Any) -> None:
    if not k8s_cluster.simulates_behaviours:
        pytest.skip(f"the {k8s_cluster.backend} cluster has no kwok: pod behaviours are not simulated")


def test_crash_goes_crashloopbackoff_with_rising_restarts(k8s_cluster: Any, namespace: str) -> None:
    _needs_kwok(k8s_cluster)
    core, apps = apis(k8s_cluster)
    expected = len(node_names(core, f"{CLASS}=arm64"))
    apps.create_namespaced_daemon_set(namespace, daemonset("crasher", {CLASS: "arm64"}, behaviour="crash"))

    def crashing(minimum: dict[str, int]) -> Callable[[], tuple[bool, Any]]:
        def probe() -> tuple[bool, Any]:
            seen = {}
            for p in pods_of(core, namespace, "crasher"):
                cs = (p.status.container_statuses or [None])[0]
                waiting = cs.state.waiting.reason if cs and cs.state and cs.state.waiting else None
                seen[p.metadata.name] = (p.status.phase, waiting, cs.restart_count if cs else -1, is_ready(p))
            ok = len(seen) == expected and all(
                phase == "Running" and reason == "CrashLoopBackOff" and count > minimum.get(name, 0) and not ready
                for name, (phase, reason, count, ready) in seen.items()
            )
            return ok, seen

        return probe

    first = wait_until("every crasher pod in CrashLoopBackOff", crashing({}), timeout=30)
    counts = {name: count for name, (_, _, count, _) in first.items()}
    wait_until(f"restart counts to rise above {counts}", crashing(counts), timeout=15)
    ds = apps.read_namespaced_daemon_set("crasher", namespace)
    assert ds.status.number_ready == 0


def test_never_ready_stays_unready_while_slow_becomes_ready(k8s_cluster: Any, namespace: str) -> None:
    _needs_kwok(k8s_cluster)
    core, apps = apis(k8s_cluster)
    expected = len(node_names(core, f"{CLASS}=general"))
    started = time.monotonic()
    apps.create_namespaced_daemon_set(namespace, daemonset("stuck", {CLASS: "general"}, behaviour="never-ready"))
    apps.create_namespaced_daemon_set(namespace, daemonset("slow", {CLASS: "general"}, behaviour="slow"))

    saw_running_unready: set[str] = set()

    def slow_ready() -> tuple[bool, Any]:
        pods = pods_of(core, namespace, "slow")
        for p in pods:
            if p.status.phase == "Running" and not is_ready(p):
                saw_running_unready.add(p.metadata.name)
        return len(pods) == expected and all(is_ready(p) for p in pods), summary(pods)

    wait_until("slow pods to become Ready", slow_ready, timeout=45)
    elapsed = time.monotonic() - started
    assert elapsed >= 4, f"slow pods were Ready after {elapsed:.1f}s, expected about 5s"
    assert saw_running_unready, "slow pods were never seen Running but not Ready"

    stuck = pods_of(core, namespace, "stuck")
    assert len(stuck) == expected
    for p in stuck:
        assert p.status.phase == "Running"
        assert not is_ready(p), f"{p.metadata.name} became Ready"
        assert p.status.container_statuses[0].state.running is not None
    ds = apps.read_namespaced_daemon_set("stuck", namespace)
    assert ds.status.number_ready == 0 and ds.status.current_number_scheduled == expected


# --- the sandbox itself --------------------------------------------------------------------


def test_status_and_cli_report_the_running_sandbox(k8s_cluster: Any) -> None:
    if k8s_cluster.backend != "sandbox":
        pytest.skip("needs the sandbox backend")
    st = sandbox.status(k8s_cluster.sandbox_name)
    assert st.running and st.phase == "running"
    assert st.node_count is not None and st.node_count >= len(k8s_cluster.node_specs)
    assert {c.name for c in st.components if c.alive} == set(sandbox.COMPONENT_ORDER)
    result = CliRunner().invoke(sandbox_cli, ["status", "--name", k8s_cluster.sandbox_name, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert '"running": true' in result.output


def test_two_sandboxes_run_side_by_side(k8s_cluster: Any, tmp_path: Path) -> None:
    if k8s_cluster.backend != "sandbox":
        pytest.skip("needs the sandbox backend (it compares against the session's sandbox)")
    first = sandbox.status(k8s_cluster.sandbox_name)
    name = f"pytest-{os.getpid()}-b"
    kubeconfig = tmp_path / "second.kubeconfig"
    try:
        second = sandbox.up(name=name, nodes=3, kubeconfig=kubeconfig)
        assert not set(second.ports.values()) & set(first.ports.values())
        assert second.server != first.server
        assert kubeconfig.exists()
        cs = CliRunner().invoke(sandbox_cli, ["status", "--name", name])
        assert cs.exit_code == 0, cs.output
        got = subprocess.run(
            [str(second.kubectl), f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        nodes = got.stdout.split()
        assert sorted(nodes) == sorted(f"node/{s.name}" for s in node_specs(3))
        again = sandbox.up(name=name, nodes=3)  # idempotent: returns the running one
        assert again.components == second.components
    finally:
        sandbox.down(name)
    assert all(not processes.is_alive(c) for c in second.components), "a process of the second sandbox survived"
    assert not second.state_dir.exists()
    leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and str(second.state_dir) in _cmdline(p)]
    assert not leftovers, f"processes still refer to {second.state_dir}: {leftovers}"
    assert not kubeconfig.exists(), "down should remove the context it merged into --kubeconfig"
    assert sandbox.status(k8s_cluster.sandbox_name).running, "downing the second sandbox hurt the first"


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_component_that_fails_is_named_and_everything_is_stopped(
    k8s_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if k8s_cluster.backend != "sandbox":
        pytest.skip("needs the sandbox backend")
    from dsroll.errors import SandboxError

    real = sandbox.scheduler_argv
    monkeypatch.setattr(sandbox, "scheduler_argv", lambda *a: [*real(*a), "--no-such-flag"])
    name = f"pytest-{os.getpid()}-broken"
    try:
        with pytest.raises(SandboxError, match=r"kube-scheduler exited .*kube-scheduler\.log") as failure:
            sandbox.up(name=name, nodes=1)
        assert "no-such-flag" in str(failure.value), "the log tail should show why"
        st = sandbox.status(name)
        assert st.phase == "failed" and not st.running
        assert st.components and not any(c.alive for c in st.components)
    finally:
        sandbox.down(name)
    assert not sandbox.status(name).exists
