"""An API server that stops answering half-way through a rollout: exit 5, a summary, and resume.

The sandbox's kube-apiserver is frozen with SIGSTOP after the first step has been applied,
so every request of the running CLI times out (`--request-timeout 1s`) and its retries
give up. The run must say it was interrupted after changing the cluster (exit 5, not 2,
which means nothing was applied), still print its JSON summary, and `dsroll resume` must
finish the job once the server answers again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e.test_rollout import TEMPLATE, WORKLOAD, Project, env_text

from dsroll.sandbox import state as sandbox_state

if TYPE_CHECKING:
    from conftest import K8sCluster

SETTINGS = {"classes": ["general"], "steps": ["1", "100%"], "pause": "5s"}


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[Project]:
    root = make_project(env=env_text(namespace), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    yield Project(root, namespace, k8s_cluster)


def apiserver_pid(cluster: K8sCluster) -> int:
    if cluster.sandbox_name is None:
        pytest.skip(f"freezing the API server needs the sandbox backend, not {cluster.backend}")
    found = sandbox_state.load(sandbox_state.layout_for(cluster.sandbox_name))
    assert found is not None, f"no state for sandbox {cluster.sandbox_name}"
    return next(c.pid for c in found.components if c.name == "kube-apiserver")


def wait_answering(project: Project, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            project.core.list_node(_request_timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_an_api_server_that_stops_answering_mid_rollout_exits_5_and_resume_finishes(
    project: Project, k8s_cluster: K8sCluster
) -> None:
    pid = apiserver_pid(k8s_cluster)
    project.commit("agent 1.0", **SETTINGS)
    created = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    assert created.code == 0, created
    old = project.current_revision("general")
    project.commit("agent 2.0", tag="2.0", **SETTINGS)

    with project.background("rollout", "e2e", "--yes", "-o", "json", "--request-timeout", "1s") as running:
        project.wait_for_state(
            "general", lambda s: s["phase"] == "pausing" and s["nodesDone"] >= 1, "step 1 applied, pausing"
        )
        os.kill(pid, signal.SIGSTOP)
        try:
            run = running.finish(timeout=180)
        finally:
            os.kill(pid, signal.SIGCONT)

    assert run.code == 5, run
    assert "interrupted after changes were applied: " in run.stderr, run
    assert "state is saved in the cluster: run 'dsroll resume e2e' to continue" in run.stderr, run
    assert "internal error" not in run.stderr, run
    summary = run.report
    assert (summary["result"], summary["exitCode"]) == ("interrupted", 5), run
    assert summary["interruption"], run
    [variant] = summary["variants"]
    assert (variant["name"], variant["result"]) == (f"{WORKLOAD}-general", "interrupted"), variant
    assert variant["nodesUpdated"] >= 1 and variant["targetRevision"] not in (None, old), variant

    wait_answering(project)
    state = project.state("general")
    assert state["phase"] in ("pausing", "progressing") and state["nodesDone"] >= 1, state

    resumed = project.dsroll("resume", "e2e", "-o", "json")
    assert resumed.code == 0, resumed
    assert resumed.report["result"] == "complete", resumed
    new = project.current_revision("general")
    assert new != old and project.state("general")["phase"] == "complete"
    pods = project.core.list_namespaced_pod(project.namespace, label_selector=f"dsroll.io/workload={WORKLOAD}").items
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    assert live and {p.metadata.labels["controller-revision-hash"] for p in live} == {new}, [
        (p.spec.node_name, p.metadata.labels.get("controller-revision-hash")) for p in live
    ]
    assert len({p.spec.node_name for p in live}) == len(live), "one pod per node"
