"""A missing namespace is caught before anything is created (``cluster.createNamespace``).

On the real control plane: a rollout into a namespace that does not exist is refused with
exit 2 and the kubectl command that creates it, and leaves nothing behind — no namespace, no
DaemonSet, no Lease, anywhere; ``plan`` and ``diff --against live`` say so. With
``cluster.createNamespace: true`` the rollout creates the namespace, labelled as dsroll's,
and completes, judged by the independent pod watcher. A namespace being deleted is refused
even then. Each test uses a fresh namespace name that nothing created, and deletes the
namespace at the end if it exists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e.invariants import assert_final_revision, assert_never_two_pods
from e2e.test_rollout import TEMPLATE, WORKLOAD, Project, env_text
from kubernetes import client

if TYPE_CHECKING:
    from conftest import K8sCluster

# One class, one step after the canary, no pause: a rollout of three nodes.
SETTINGS = {"classes": ("gpu",), "steps": ("1", "100%"), "pause": "0", "ready_timeout": "30s"}


class MissingNamespaceProject(Project):
    """A project whose environment targets a namespace nobody created; ``create`` sets
    ``cluster.createNamespace``."""

    create = False

    def write(self, **settings: object) -> None:
        text = env_text(self.namespace, **{**SETTINGS, **settings})  # type: ignore[arg-type]
        home = f"cluster: {{namespace: {self.namespace}}}"
        assert home in text
        if self.create:
            text = text.replace(home, f"cluster: {{namespace: {self.namespace}, createNamespace: true}}")
        (self.root / "environments" / "e2e.yaml").write_text(text)


@pytest.fixture
def fresh(make_project: Callable[..., Path], k8s_cluster: K8sCluster) -> Iterator[MissingNamespaceProject]:
    name = f"missing-{uuid.uuid4().hex[:8]}"
    root = make_project(env=env_text(name, **SETTINGS), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    project = MissingNamespaceProject(root, name, k8s_cluster)
    assert not exists(project), f"namespace {name} exists before the test"
    try:
        yield project
    finally:
        for pods in project.watchers:
            pods.stop(sync=False)
        try:
            project.core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def exists(project: Project) -> bool:
    try:
        project.core.read_namespace(project.namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def left_behind(project: Project) -> list[str]:
    """Every DaemonSet, Lease and ConfigMap in the namespace, and every DaemonSet of the environment, anywhere."""
    in_namespace = f"metadata.namespace={project.namespace}"
    coordination = client.CoordinationV1Api(project.cluster.api_client)
    found = [f"daemonset {d.metadata.namespace}/{d.metadata.name}"
             for d in project.apps.list_daemon_set_for_all_namespaces(field_selector=in_namespace).items]  # fmt: skip
    found += [
        f"daemonset {d.metadata.namespace}/{d.metadata.name}"
        for d in project.apps.list_daemon_set_for_all_namespaces(
            label_selector=f"dsroll.io/environment={project.namespace}"
        ).items
    ]
    found += [f"lease {x.metadata.namespace}/{x.metadata.name}"
              for x in coordination.list_lease_for_all_namespaces(field_selector=in_namespace).items]  # fmt: skip
    found += [f"configmap {c.metadata.namespace}/{c.metadata.name}"
              for c in project.core.list_config_map_for_all_namespaces(field_selector=in_namespace).items]  # fmt: skip
    return found


def test_a_rollout_into_a_missing_namespace_is_refused_and_creates_nothing(fresh: MissingNamespaceProject) -> None:
    ns = fresh.namespace
    fresh.commit("agent 1.0")

    plan = fresh.dsroll("plan", "e2e")
    assert plan.code == 0, plan
    assert (
        f"namespace {ns}: does not exist: rollout refuses until it does "
        f"(kubectl create namespace {ns}, or cluster.createNamespace: true)"
    ) in plan.stdout, plan
    assert f"warning: a rollout would be refused: namespace {ns} does not exist" in plan.stderr, plan
    planned = fresh.dsroll("plan", "e2e", "-o", "json")
    assert planned.code == 0, planned
    assert planned.report["namespaces"] == [
        {"name": ns, "exists": False, "phase": None, "action": "refuse", "workloads": [WORKLOAD]}
    ]
    assert {v["action"] for v in planned.report["variants"]} == {"create"}

    diff = fresh.dsroll("diff", "e2e", "--against", "live", "-o", "json")
    assert diff.code == 1, diff  # differences: the variants would be added
    assert [n["action"] for n in diff.report["namespaces"]] == ["refuse"], diff

    expected = (
        f"error: environments/e2e.yaml:4: namespace {ns} does not exist: create it with "
        f"'kubectl create namespace {ns}', or set cluster.createNamespace: true in environments/e2e.yaml "
        "to have rollout create it; nothing was applied"
    )
    for args in (("rollout", "e2e", "--yes"), ("rollout", "e2e", "--dry-run"), ("resume", "e2e")):
        refused = fresh.dsroll(*args)
        assert refused.code == 2, refused
        assert refused.stderr.strip().splitlines()[-1] == expected, refused
    assert not exists(fresh)
    assert left_behind(fresh) == []


def test_create_namespace_creates_it_labelled_and_the_rollout_completes(fresh: MissingNamespaceProject) -> None:
    ns = fresh.namespace
    fresh.create = True
    fresh.commit("agent 1.0")

    plan = fresh.dsroll("plan", "e2e")
    assert plan.code == 0, plan
    assert f"namespace {ns}: does not exist: rollout creates it (cluster.createNamespace: true)" in plan.stdout, plan
    assert "would be refused" not in plan.stderr, plan
    assert not exists(fresh)  # a plan creates nothing

    pods = fresh.watcher()  # a namespace that does not exist yet can be watched
    run = fresh.dsroll("rollout", "e2e", "--yes", "-o", "json", "--events")
    assert run.code == 0, run
    events = [json.loads(line) for line in run.stdout.strip().splitlines()[:-1]]
    assert events[0]["event"] == "namespace-created" and events[0]["variant"] == ns, events[:2]
    assert run.report["namespacesCreated"] == [ns]
    assert [(v["name"], v["action"], v["result"]) for v in run.report["variants"]] == [
        (f"{WORKLOAD}-gpu", "create", "complete")
    ]

    labels = fresh.core.read_namespace(ns).metadata.labels or {}
    assert labels.get("app.kubernetes.io/managed-by") == "dsroll" and labels.get("dsroll.io/environment") == ns
    timeline = pods.stop()
    assert_never_two_pods(timeline, workload=WORKLOAD)
    nodes = [n for n, lb in fresh.node_labels().items() if lb.get("nvidia.com/gpu.present") == "true"]
    assert nodes
    assert_final_revision(timeline, nodes, fresh.current_revision("gpu"), workload=WORKLOAD, cls="gpu")

    again = fresh.dsroll("plan", "e2e", "-o", "json")  # there now: nothing to create, nothing to say
    assert again.code == 0, again
    assert [(n["exists"], n["action"]) for n in again.report["namespaces"]] == [(True, "none")]


def test_a_namespace_being_deleted_is_refused_even_with_create_namespace(fresh: MissingNamespaceProject) -> None:
    """A finalizer on a ConfigMap holds the namespace in Terminating, where the API server takes no new object."""
    ns = fresh.namespace
    fresh.core.create_namespace({"metadata": {"name": ns, "labels": {"dsroll.io/e2e": "true"}}})
    held = {"metadata": {"name": "held", "finalizers": ["e2e.dsroll.io/hold"]}}
    fresh.core.create_namespaced_config_map(ns, held)
    fresh.core.delete_namespace(ns)
    try:
        assert fresh.core.read_namespace(ns).status.phase == "Terminating"
        fresh.create = True
        fresh.commit("agent 1.0")

        plan = fresh.dsroll("plan", "e2e", "-o", "json")  # its dry-run would meet a 403: shown as rendered
        assert plan.code == 0, plan
        assert plan.report["namespaces"] == [
            {"name": ns, "exists": True, "phase": "Terminating", "action": "refuse", "workloads": [WORKLOAD]}
        ]
        refused = fresh.dsroll("rollout", "e2e", "--yes")
        assert refused.code == 2, refused
        assert refused.stderr.strip().splitlines()[-1] == (
            f"error: environments/e2e.yaml:4: namespace {ns} is being deleted (Terminating) and cannot take new "
            f"objects: wait until it is gone (kubectl wait --for=delete namespace/{ns}), then run again; "
            "nothing was applied"
        )
        found = left_behind(fresh)  # the held ConfigMap, and kube-root-ca.crt while the controller has not removed it
        assert not [x for x in found if not x.startswith("configmap ") or "/dsroll-" in x], found
    finally:
        fresh.core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
