"""``dsroll restart`` end to end: every pod replaced once, in steps, and no revision made.

The CLI runs as a subprocess against the real control plane while the independent pod
watcher (``podwatch.py``) records every pod; the invariants are judged on that timeline
and on the cluster's objects: never more than maxUnavailable nodes without a Ready pod,
never two pods on a node, each node's pod replaced exactly once, the revision and the
DaemonSet's spec untouched (no ControllerRevision made, so neither ``diff`` nor the next
``rollout`` sees anything). A restart killed half-way resumes with ``dsroll resume`` and
restarts only the nodes not restarted yet. docs/rollout.md ("Restart") is the contract.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from datetime import datetime
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
    replacements,
)
from e2e.test_rollout import STATE, TEMPLATE, WORKLOAD, Project, deploy, env_text

if TYPE_CHECKING:
    from conftest import K8sCluster

CLS = "general"


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[Project]:
    root = make_project(env=env_text(namespace), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = Project(root, namespace, k8s_cluster)
    yield made
    for pods in made.watchers:  # a test that failed half-way has not stopped its watcher
        pods.stop(sync=False)


def spec_of(project: Project) -> dict[str, Any]:
    """What a restart must leave alone: the revisions, the generation, the template, the strategy."""
    ds = project.daemonset(CLS)
    return {
        "revisions": project.revisions(CLS),
        "generation": ds["metadata"]["generation"],
        "template": ds["spec"]["template"],
        "updateStrategy": ds["spec"]["updateStrategy"],
    }


def created_after_restart(project: Project, restarted_at: str) -> dict[str, bool]:
    """Node → whether its live pod was created after ``restartedAt`` (both API server times)."""
    since = datetime.fromisoformat(restarted_at)
    pods = project.core.list_namespaced_pod(project.namespace, label_selector=f"dsroll.io/class={CLS}").items
    return {p.spec.node_name: p.metadata.creation_timestamp > since for p in pods if not p.metadata.deletion_timestamp}


def test_restart_replaces_every_pod_once_in_steps_and_makes_no_revision(project: Project) -> None:
    settings = {"classes": [CLS], "max_unavailable": 2, "pause": "1s"}
    fleet = deploy(project, **settings)
    nodes, old = fleet.nodes[CLS], fleet.old[CLS]
    before = spec_of(project)

    run = project.dsroll("restart", "e2e", "--yes", "-o", "json")
    diff = project.dsroll("diff", "e2e", "--against", "live")
    again = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()

    assert run.code == 0, run
    assert (run.report["operation"], run.report["result"]) == ("restart", "complete"), run
    [variant] = run.report["variants"]
    assert (variant["action"], variant["phase"], variant["targetRevision"]) == ("restart", "complete", old), variant
    assert variant["previousRevision"] is None and variant["nodesUpdated"] == variant["nodesTotal"] == len(nodes)
    # The watcher's account: in steps, canary first, within the budget, each node once, same revision.
    assert_replaced_first(timeline, fleet.canary[CLS], workload=WORKLOAD, cls=CLS)
    assert_max_unavailable(timeline, nodes, 2, workload=WORKLOAD, cls=CLS)
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert replacements(timeline, workload=WORKLOAD, cls=CLS) == dict.fromkeys(nodes, 1), "each pod replaced once"
    assert_final_revision(timeline, nodes, old, workload=WORKLOAD, cls=CLS)
    cut = disruptions(timeline, workload=WORKLOAD, cls=CLS)
    ready = next(e.time for e in timeline if e.node == cut[0][0] and e.time > cut[0][1] and e.serving)
    later = [t for _, t in cut if t > ready]
    assert later and later[0] - ready >= 0.5, "the timed pause between step 1 and step 2 (0.5s: watch latency)"
    # Nothing applied: no ControllerRevision, no new generation, the template and strategy as they were.
    assert spec_of(project) == before
    state = project.state(CLS)
    assert (state["operation"], state["phase"], state["targetRevision"]) == ("restart", "complete", old), state
    assert created_after_restart(project, state["restartedAt"]) == dict.fromkeys(nodes, True), state
    # So neither the live diff nor the next rollout sees a change (the rollout replaced nothing: see above).
    assert diff.code == 0, diff
    assert again.code == 0 and again.report["variants"] == [], again


def test_a_restart_killed_in_flight_resumes_and_restarts_only_the_nodes_not_restarted_yet(project: Project) -> None:
    settings = {"classes": [CLS], "pause": "2s", "min_ready_seconds": 1}
    fleet = deploy(project, **settings)
    nodes, old = fleet.nodes[CLS], fleet.old[CLS]
    before = spec_of(project)

    with project.background("restart", "e2e", "--yes", "-o", "json") as cli:
        seen = project.wait_for_state(
            CLS,
            lambda s: s["operation"] == "restart" and s["phase"] == "progressing" and s["nodesDone"] >= 1
            and bool(s["inFlight"]),
            "a restart with a node in flight after the first step",
        )  # fmt: skip
        killed = cli.kill()
    assert killed.code == -signal.SIGKILL, killed
    after_kill = project.state(CLS)

    run = project.dsroll("resume", "e2e", "--yes", "-o", "json")
    timeline = fleet.stop()
    assert run.code == 0, run
    assert run.report["result"] == "complete", run
    state = project.state(CLS)
    assert (state["operation"], state["phase"]) == ("restart", "complete"), state
    assert (state["startedAt"], state["restartedAt"]) == (after_kill["startedAt"], after_kill["restartedAt"]), (
        "the same restart continued, not a new one"
    )
    assert replacements(timeline, workload=WORKLOAD, cls=CLS) == dict.fromkeys(nodes, 1), (
        f"none restarted twice, none missed; killed at {seen}\n{killed}\n{run}"
    )
    assert_final_revision(timeline, nodes, old, workload=WORKLOAD, cls=CLS)
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls=CLS)
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert spec_of(project) == before


def test_a_restart_is_refused_unchanged_when_the_render_differs_or_a_rollout_is_unfinished(project: Project) -> None:
    settings = {"classes": [CLS], "steps": ["1", "100%"], "pause": "manual"}
    fleet = deploy(project, **settings)

    project.commit("agent 2.0", tag="2.0", **settings)
    changed = project.dsroll("restart", "e2e", "--yes")
    assert changed.code == 2, changed
    [line] = [x for x in changed.stderr.splitlines() if x.startswith("error:")]
    assert line == (
        f"error: restart refused, nothing changed: {project.namespace}/{WORKLOAD}-{CLS}: the render differs from "
        "the live pod template: a restart is not a rollout (`dsroll rollout e2e`)"
    ), changed
    assert STATE not in (project.daemonset(CLS)["metadata"].get("annotations") or {}), "nothing written"

    paused = project.dsroll("rollout", "e2e")  # no TTY: stops after the canary, awaiting approval
    assert paused.code == 3, paused
    recorded = project.daemonset(CLS)["metadata"]["annotations"][STATE]
    fleet.watcher.sync()
    touched = len(disruptions(fleet.watcher.timeline(), workload=WORKLOAD, cls=CLS))
    refused = project.dsroll("restart", "e2e", "--yes")
    timeline = fleet.stop()
    assert refused.code == 2, refused
    assert "a rollout is unfinished (phase awaiting-approval): `dsroll resume e2e` finishes it" in refused.stderr
    assert project.daemonset(CLS)["metadata"]["annotations"][STATE] == recorded, "the rollout's state untouched"
    assert len(disruptions(timeline, workload=WORKLOAD, cls=CLS)) == touched, "no pod deleted by the refused restart"


def test_a_failure_pauses_a_restart_with_on_failure_rollback_as_there_is_nothing_to_roll_back_to(
    project: Project, k8s_cluster: K8sCluster
) -> None:
    settings = {"classes": [CLS], "ready_timeout": "3s", "on_failure": "rollback"}
    fleet = deploy(project, **settings)
    canary, nodes = fleet.canary[CLS], fleet.nodes[CLS]
    before = spec_of(project)

    with k8s_cluster.misbehaving(canary[0], "slow-start=60s"):  # its new pod is not Ready within readyTimeout
        run = project.dsroll("restart", "e2e", "--yes", "-o", "json")
        fleet.watcher.sync()
        timeline = fleet.watcher.timeline()
    fleet.stop()

    assert run.code == 1, run
    [variant] = run.report["variants"]
    assert (variant["result"], variant["phase"]) == ("failed", "paused"), variant
    assert variant["failure"]["node"] == canary[0], variant
    state = project.state(CLS)
    assert (state["operation"], state["phase"], state["onFailure"]) == ("restart", "paused", "pause"), state
    assert json.dumps(state["failure"]) and state["failure"]["node"] == canary[0], state
    assert_untouched(timeline, set(nodes) - set(canary), workload=WORKLOAD, cls=CLS)
    assert spec_of(project) == before, "no rollback: the template and revisions are as they were"
