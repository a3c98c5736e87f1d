"""Rollouts on a cluster that misbehaves: unready and held nodes, nodes that come and go,
and a second hand on the DaemonSet (docs/rollout.md, "When the cluster misbehaves").

Each test deploys one class (the sandbox's six general nodes) at 1.0, then rolls out
while the independent pod watcher records every pod; the invariants are asserted on that
timeline, counting only what dsroll caused: a node unready on its own is left out of the
``maxUnavailable`` count (DESIGN.md). New pods start in seconds, with jitter, on nodes
that play ``slow-start`` (docs/sandbox.md), so batches overlap as on a real fleet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_max_unavailable,
    assert_never_two_pods,
    live_pods,
    replacements,
)
from e2e.polling import wait_until
from e2e.test_rollout import TEMPLATE, WORKLOAD, Deployed, Project, deploy, env_text
from kubernetes import client

if TYPE_CHECKING:
    from conftest import K8sCluster

HOLD = "dsroll.io/hold"
GENERAL = {"classes": ("general",), "pause": "0", "ready_timeout": "30s"}


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[Project]:
    if not k8s_cluster.simulates_behaviours:
        pytest.skip(f"the {k8s_cluster.backend} backend has no kwok to play node behaviours")
    root = make_project(env=env_text(namespace), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = Project(root, namespace, k8s_cluster)
    yield made
    for pods in made.watchers:  # a test that failed half-way has not stopped its watcher
        pods.stop(sync=False)


def node_ready(core: client.CoreV1Api, node: str) -> bool:
    conditions = core.read_node(node).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_not_ready(core: client.CoreV1Api, node: str) -> None:
    """Until the node-lifecycle controller has marked the silent node (about 10-12 s)."""
    wait_until(f"{node} NotReady", lambda: (not node_ready(core, node), node), timeout=40, interval=0.5)


@contextlib.contextmanager
def behaving(cluster: K8sCluster, behaviours: Mapping[str, str]) -> Iterator[None]:
    """Node behaviours for the block; every node healthy again afterwards."""
    try:
        for node, behaviour in behaviours.items():
            cluster.node_behaviour(node, behaviour)
        yield
    finally:
        for node in behaviours:
            cluster.node_behaviour(node, None)
        for node in behaviours:
            cluster.wait_node_healthy(node, 40)


def hold(core: client.CoreV1Api, node: str, held: bool) -> None:
    core.patch_node(node, {"metadata": {"labels": {HOLD: "true" if held else None}}})


def general(deployed: Deployed) -> tuple[list[str], str, list[str]]:
    """The class's nodes, its canary, and the others in name order."""
    nodes = deployed.nodes["general"]
    canary = deployed.canary["general"][0]
    return nodes, canary, [n for n in nodes if n != canary]


def variant(run_report: Mapping[str, Any]) -> dict[str, Any]:
    [found] = [v for v in run_report["variants"] if v["name"] == f"{WORKLOAD}-general"]
    return dict(found)


def test_unready_and_held_nodes_are_skipped_and_a_later_resume_does_them(
    project: Project, k8s_cluster: K8sCluster
) -> None:
    deployed = deploy(project, steps=("1", "100%"), max_unavailable=2, **GENERAL)
    nodes, canary, others = general(deployed)
    down, held, slow = others[0], others[1], others[2:]
    old = deployed.old["general"]
    try:
        with behaving(k8s_cluster, {down: "not-ready", **{n: "slow-start=2s" for n in [canary, *slow]}}):
            wait_not_ready(project.core, down)
            hold(project.core, held, True)
            project.commit("agent 2.0", tag="2.0", steps=("1", "100%"), max_unavailable=2, **GENERAL)
            plan = project.dsroll("plan", "e2e", "-o", "json")
            assert plan.code == 0, plan
            forecast = {s["node"]: s["reason"] for s in variant(plan.report)["skipped"]}
            assert forecast == {down: "not-ready", held: "held"}, plan

            run = project.dsroll("rollout", "e2e", "-o", "json")
            assert run.code == 0, run
            got = variant(run.report)
            assert got["result"] == "complete" and run.report["result"] == "complete", run
            assert {s["node"]: s["reason"] for s in got["skippedNodes"]} == {down: "not-ready", held: "held"}, run
            assert "Kubelet stopped posting node status" in next(
                s["detail"] for s in got["skippedNodes"] if s["node"] == down
            )
            assert "rollout complete, 2 node(s) skipped" in run.stderr, run
            assert got["nodesUpdated"] == len(nodes) - 2 and got["nodesTotal"] == len(nodes), got
            ds = project.daemonset("general")
            assert ds["spec"]["updateStrategy"]["type"] == "OnDelete", "skipped nodes keep the DaemonSet OnDelete"
            state = project.state("general")
            assert state["phase"] == "complete" and state["previousRevision"] == old
            assert {s["node"] for s in state["skipped"]} == {down, held}
            status = project.dsroll("status", "e2e", "-o", "json")
            assert {s["node"] for s in status.report["variants"][0]["rollout"]["skipped"]} == {down, held}, status
            events = project.core.list_namespaced_event(project.namespace, field_selector="reason=RolloutNodeSkipped")
            assert {e.message.split(" ")[0] for e in events.items} == {down, held}

        hold(project.core, held, False)
        again = project.dsroll("resume", "e2e", "-o", "json")
        assert again.code == 0, again
        done = variant(again.report)
        assert done["result"] == "complete" and done["skippedNodes"] == [], again
    finally:
        hold(project.core, held, False)
    timeline = deployed.stop()
    new = project.current_revision("general")
    state = project.state("general")
    assert state["previousRevision"] == old and state["targetRevision"] == new, "the way back is the stable revision"
    assert state["skipped"] == [] and state["phase"] == "complete"
    assert project.daemonset("general")["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert_final_revision(timeline, nodes, new, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_max_unavailable(timeline, [n for n in nodes if n != down], 2, workload=WORKLOAD, cls="general")
    assert replacements(timeline, workload=WORKLOAD, cls="general") == dict.fromkeys(nodes, 1)


def test_an_unready_node_fails_the_rollout_or_is_waited_for(project: Project, k8s_cluster: K8sCluster) -> None:
    settings: dict[str, Any] = {"steps": ("100%",), "max_unavailable": 1, **GENERAL, "ready_timeout": "60s"}
    deployed = deploy(project, unready_nodes="fail", **settings)
    nodes, _, others = general(deployed)
    down = others[-1]
    old = deployed.old["general"]
    healed = False
    k8s_cluster.node_behaviour(down, "not-ready")
    try:
        wait_not_ready(project.core, down)
        project.commit("agent 2.0", tag="2.0", unready_nodes="fail", **settings)
        failed = project.dsroll("rollout", "e2e", "-o", "json")
        assert failed.code == 1, failed
        got = variant(failed.report)
        assert got["result"] == "rolled-back" and got["failure"]["node"] == down, failed
        assert "not Ready" in got["failure"]["reason"] and "unreadyNodes is fail" in got["failure"]["reason"]
        assert {s["node"] for s in got["skippedNodes"]} == {down}, "the rollback leaves the unready node alone"
        back = live_pods(deployed.watcher.timeline(), workload=WORKLOAD, cls="general")
        assert {n: [p.revision for p in back[n]] for n in nodes} == {n: [old] for n in nodes}, back

        project.commit("agent 3.0", tag="3.0", unready_nodes="wait", **settings)
        with project.background("rollout", "e2e", "-o", "json") as waiting:

            def rest_on_3() -> tuple[bool, Any]:
                live = live_pods(deployed.watcher.timeline(), workload=WORKLOAD, cls="general")
                done = {n for n in nodes if n != down and any(p.serving and p.revision != old for p in live.get(n, []))}
                return done == set(nodes) - {down}, sorted(done)

            wait_until("every other node on 3.0", rest_on_3, timeout=60)
            assert waiting.proc.poll() is None, "the rollout waits for the unready node"
            k8s_cluster.node_behaviour(down, None)
            healed = True
            run = waiting.finish(timeout=120)
        assert run.code == 0, run
        assert f"{down}: waiting for the node to be Ready" in run.stderr, run
        assert variant(run.report)["skippedNodes"] == [], run
    finally:
        if not healed:
            k8s_cluster.node_behaviour(down, None)
        k8s_cluster.wait_node_healthy(down, 40)
    timeline = deployed.stop()
    new = project.current_revision("general")
    assert_final_revision(timeline, nodes, new, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_max_unavailable(timeline, [n for n in nodes if n != down], 1, workload=WORKLOAD, cls="general")
    assert replacements(timeline, workload=WORKLOAD, cls="general")[down] == 1, "replaced once, when Ready again"
    assert project.state("general")["previousRevision"] == old


def test_nodes_deleted_or_joining_mid_rollout(project: Project, k8s_cluster: K8sCluster) -> None:
    extra = [spec.name for spec in k8s_cluster.add_nodes(count=2)]
    joined: list[str] = []
    settings: dict[str, Any] = {"steps": ("100%",), "max_unavailable": 1, **GENERAL}
    try:
        deployed = deploy(project, **settings)
        nodes = deployed.nodes["general"]
        assert set(extra) <= set(nodes)
        old = deployed.old["general"]
        project.commit("agent 2.0", tag="2.0", behaviour="slow", **settings)
        gone = extra[0]
        with project.background("rollout", "e2e", "-o", "json") as running:
            project.wait_for_state("general", lambda s: s.get("phase") == "progressing" and bool(s.get("inFlight")),
                                   "a node in flight")  # fmt: skip
            live = live_pods(deployed.watcher.timeline(), workload=WORKLOAD, cls="general")
            assert [p.revision for p in live[gone]] == [old], "the node to delete must not be replaced yet"
            project.core.delete_node(gone)
            joined = [spec.name for spec in k8s_cluster.add_nodes(count=1)]
            project.core.patch_node(extra[1], {"spec": {"unschedulable": True}})  # kubectl cordon
            run = running.finish()
        assert run.code == 0, run
        assert f"{extra[1]} cordoned: its daemon pod stays" in run.stderr, run
        assert f"{gone} deleted from the cluster: dropped" in run.stderr, run
        assert f"{joined[0]} joined the variant" in run.stderr, run
        state = project.state("general")
        assert state["nodeCount"] == len(nodes), state  # one node gone, one joined
        timeline = deployed.stop()
        new = project.current_revision("general")
        kept = [n for n in nodes if n != gone]  # the cordoned node included: replaced as any other
        assert_final_revision(timeline, [*kept, *joined], new, workload=WORKLOAD, cls="general")
        assert_never_two_pods(timeline, workload=WORKLOAD)
        assert_max_unavailable(timeline, kept, 1, workload=WORKLOAD, cls="general")
    finally:
        for name in [*extra, *joined]:
            with contextlib.suppress(client.ApiException):
                project.core.delete_node(name)


def test_a_second_hand_stops_the_rollout_and_a_new_render_supersedes_cleanly(
    project: Project, k8s_cluster: K8sCluster
) -> None:
    settings: dict[str, Any] = {"steps": ("1", "100%"), "max_unavailable": 1, **GENERAL}
    deployed = deploy(project, **settings)
    nodes = deployed.nodes["general"]
    old = deployed.old["general"]
    name = f"{WORKLOAD}-general"

    project.commit("agent 2.0", tag="2.0", behaviour="slow", **settings)
    with project.background("rollout", "e2e", "-o", "json") as running:
        project.wait_for_state("general", lambda s: s.get("step") == 1 and bool(s.get("inFlight")), "step 2")
        k8s_cluster.kubectl("-n", project.namespace, "set", "image", f"ds/{name}", "agent=example.com/agent:9.9")
        run = running.finish()
    assert run.code == 1, run
    assert "spec.template changed by kubectl-set (Update at " in run.stderr, run
    state = project.state("general")
    assert state["phase"] == "paused" and "kubectl-set" in state["failure"]["reason"], state
    other = project.current_revision("general")
    after = live_pods(deployed.watcher.timeline(), workload=WORKLOAD, cls="general")
    on_other = [n for n in nodes if any(p.revision == other for p in after[n])]
    assert len(on_other) <= 1, f"dsroll rolled a revision it did not plan on {on_other}"

    again = project.dsroll("rollout", "e2e", "-o", "json")  # the render is the target again
    assert again.code == 0, again
    second = project.current_revision("general")
    assert second != other and project.state("general")["previousRevision"] == old

    # A rollout awaiting approval, superseded by a new commit that fails: back to the last fully-rolled revision.
    paused = {**settings, "pause": "manual"}
    project.commit("agent 3.0", tag="3.0", **paused)
    waiting = project.dsroll("rollout", "e2e", "-o", "json")
    assert waiting.code == 3 and project.state("general")["previousRevision"] == second, waiting
    third = project.current_revision("general")
    project.commit("agent 4.0", tag="4.0", behaviour="crash", **paused)
    failed = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert failed.code == 1 and variant(failed.report)["result"] == "rolled-back", failed
    state = project.state("general")
    assert state["targetRevision"] == second and state["phase"] == "rolled-back", state
    timeline = deployed.stop()
    assert_final_revision(timeline, nodes, second, workload=WORKLOAD, cls="general")
    assert third not in {p.revision for found in live_pods(timeline, workload=WORKLOAD).values() for p in found}
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
