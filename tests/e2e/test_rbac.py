"""Least privilege, proven: every command as the shipped ServiceAccounts, and each rule's absence caught first.

The manifests are the ones ``dsroll rbac`` prints (what ``dsroll init`` writes), applied with
kubectl; each command runs with ``--as system:serviceaccount:…`` (the admin kubeconfig may
impersonate). The deployer runs the whole life of a variant; the reviewer reads and changes
nothing; then each rule of the deployer is removed in turn, and the command that needs it
must stop at the RBAC preflight — exit 2, naming the verb and the resource — before a single
object of the namespace changed (resourceVersions compared).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e.test_rollout import TEMPLATE, Project, Run
from kubernetes import client

from dsroll import permissions

if TYPE_CHECKING:
    from conftest import K8sCluster

# The workload runs on the gpu class only: a rollout of a few nodes.
SETTINGS: dict[str, Any] = {"classes": ("gpu",), "steps": ("1", "100%"), "pause": "0", "ready_timeout": "30s"}


def account(namespace: str, role: str) -> str:
    return f"system:serviceaccount:{namespace}:{permissions.account_name(namespace, role)}"


class Rbac:
    """A project in its own namespace, with the shipped roles applied."""

    def __init__(self, project: Project, cluster: K8sCluster) -> None:
        self.project, self.cluster, self.ns = project, cluster, project.namespace
        self.manifests = project.root.parent / f"rbac-{self.ns}.yaml"

    def apply(self) -> None:
        argv = [sys.executable, "-m", "dsroll", "rbac", "e2e"]  # reads files only: no kube flags
        printed = subprocess.run(argv, cwd=self.project.root, capture_output=True, text=True, env=self.project.env)
        assert printed.returncode == 0, printed.stderr
        self.manifests.write_text(printed.stdout)
        self.cluster.kubectl("apply", "-f", str(self.manifests))

    def as_(self, role: str, *args: str) -> Run:
        return self.project.dsroll(*args, "--as", account(self.ns, role))

    def snapshot(self) -> dict[str, str]:
        """kind/name → resourceVersion of everything dsroll could change in the namespace."""
        found = {}
        for kind in ("daemonsets", "pods", "controllerrevisions", "configmaps", "leases", "events"):
            listed = json.loads(self.cluster.kubectl("get", kind, "-n", self.ns, "-o", "json").stdout)
            for item in listed["items"]:
                found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return found

    def can(self, verb: str, resource: str, *, cluster_wide: bool) -> bool:
        where = ["--all-namespaces"] if cluster_wide else ["-n", self.ns]
        argv = ("auth", "can-i", verb, resource, *where, "--as", account(self.ns, "deployer"))
        return self.cluster.kubectl(*argv, check=False).stdout.strip() == "yes"


@pytest.fixture(scope="module")
def rbac(k8s_cluster: K8sCluster) -> Iterator[Rbac]:
    """One namespace for the module: a project deployed at 1.0, the roles applied."""
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    api = client.CoreV1Api(k8s_cluster.api_client)
    api.create_namespace({"metadata": {"name": name, "labels": {"dsroll.io/e2e": "true"}}})
    deadline = time.monotonic() + 30
    while not api.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        (root / "environments").mkdir(parents=True)
        (root / "templates").mkdir()
        (root / "templates" / "agent.yaml.j2").write_text(TEMPLATE)
        project = Project(root, name, k8s_cluster)
        project.env = {**project.env, "DSROLL_BACKUP_DIR": str(Path(tmp) / "backups")}
        project.commit("1.0", tag="1.0", **SETTINGS)
        found = Rbac(project, k8s_cluster)
        found.apply()
        try:
            yield found
        finally:
            api.delete_namespace(name, propagation_policy="Background")
            k8s_cluster.kubectl("delete", "-f", str(found.manifests), "--ignore-not-found", check=False)


def ok(run: Run, *codes: int) -> Run:
    assert run.code in (codes or (0,)), str(run)
    return run


def test_the_deployer_runs_every_command_and_the_reviewer_only_reads(rbac: Rbac) -> None:
    project = rbac.project
    ok(project.dsroll("render", "e2e"))
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "rendered")
    first = ok(rbac.as_("deployer", "diff", "e2e", "--against", "live", "-o", "json"), 1)
    assert first.report["normalisedBy"] == "server-dry-run"
    ok(rbac.as_("deployer", "plan", "e2e"))
    ok(rbac.as_("deployer", "rollout", "e2e", "--yes"))  # creates the variant
    ok(rbac.as_("deployer", "diff", "e2e", "--against", "live"))

    # 2.0 with a manual pause: exit 3 after the first step, approved by resume
    project.commit("2.0", tag="2.0", **{**SETTINGS, "pause": "manual"})
    ok(project.dsroll("render", "e2e"))
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "rendered 2.0")
    ok(rbac.as_("deployer", "rollout", "e2e"), 3)
    ok(rbac.as_("deployer", "status", "e2e"))
    ok(rbac.as_("deployer", "history", "e2e"))
    ok(rbac.as_("deployer", "nodes", "e2e"))
    ok(rbac.as_("deployer", "pause", "e2e"))
    ok(rbac.as_("deployer", "resume", "e2e"))
    ok(rbac.as_("deployer", "abort", "e2e"))  # nothing in progress: a no-op, but allowed

    # the reviewer reads, diffs live without a dry-run, and changes nothing
    before = rbac.snapshot()
    for args in (("status", "e2e"), ("history", "e2e"), ("nodes", "e2e"), ("diff", "e2e", "--against", "git")):
        ok(rbac.as_("reviewer", *args))
    live = ok(rbac.as_("reviewer", "diff", "e2e", "--against", "live", "-o", "json"))
    assert live.report["normalisedBy"] == "client"
    assert "comparing without it" in live.stderr and "cannot patch daemonsets.apps" in live.stderr
    for args, command in (
        (("rollout", "e2e", "--yes"), "rollout"),
        (("rollback", "e2e", "--yes"), "rollback"),
        (("resume", "e2e"), "resume"),
        (("pause", "e2e"), "pause"),
        (("abort", "e2e"), "abort"),
        (("plan", "e2e"), "plan"),
    ):
        refused = ok(rbac.as_("reviewer", *args), 2)
        assert "RBAC preflight: cannot " in refused.stderr and f"(needed by {command})" in refused.stderr
    assert rbac.snapshot() == before

    # and back, as the deployer
    ok(rbac.as_("deployer", "rollback", "e2e", "--yes"))
    history = ok(rbac.as_("deployer", "history", "e2e", "-o", "json")).report
    assert history


RULES = [
    (kind, resource, group)
    for kind, cluster_wide in (("Role", False), ("ClusterRole", True))
    for rule in permissions.rules(permissions.GRANTS["deployer"], cluster_wide=cluster_wide)
    for resource, group in [(rule["resources"][0], rule["apiGroups"][0])]
]


@pytest.mark.parametrize(("kind", "resource", "group"), RULES, ids=[f"{k}-{r}" for k, r, _ in RULES])
def test_without_a_rule_the_command_that_needs_it_stops_before_changing_anything(
    rbac: Rbac, kind: str, resource: str, group: str
) -> None:
    project, ns = rbac.project, rbac.ns
    name = permissions.account_name(ns, "deployer")
    where = ["-n", ns] if kind == "Role" else []
    role = json.loads(rbac.cluster.kubectl("get", kind.lower(), name, *where, "-o", "json").stdout)
    kept = [r for r in role["rules"] if r["resources"] != [resource]]
    verbs = next(r["verbs"] for r in role["rules"] if r["resources"] == [resource])
    qualified = f"{resource}.{group}" if group else resource
    if project.git("log", "-1", "--format=%s") != "3.0":
        project.commit("3.0", tag="3.0", **SETTINGS)  # something for a rollout to do
    patch = json.dumps([{"op": "replace", "path": "/rules", "value": kept}])
    rbac.cluster.kubectl("patch", kind.lower(), name, *where, "--type", "json", "-p", patch)
    try:
        deadline = time.monotonic() + 10
        while rbac.can(verbs[0], qualified, cluster_wide=kind == "ClusterRole"):
            assert time.monotonic() < deadline, "the authorizer never saw the change"
            time.sleep(0.1)
        before = rbac.snapshot()
        commands = [c for c in ("rollout", "pause", "rollback", "plan", "diff", "status", "nodes")
                    if any(a.resource == resource and a.cluster_wide == (kind == "ClusterRole")
                           for a in permissions.COMMANDS[c])]  # fmt: skip
        assert commands
        for command in commands[:2]:
            args = {"rollout": ("--yes",), "rollback": ("--yes",), "diff": ("--against", "live")}.get(command, ())
            refused = rbac.as_("deployer", command, "e2e", *args)
            assert refused.code == 2, str(refused)
            line = refused.stderr.strip().splitlines()[-1]
            assert line.startswith("error: RBAC preflight: cannot "), line
            assert any(f"cannot {verb} {qualified} " in line for verb in verbs), line
            assert f"(needed by {command})" in line
        assert rbac.snapshot() == before
    finally:
        restore = json.dumps([{"op": "replace", "path": "/rules", "value": role["rules"]}])
        rbac.cluster.kubectl("patch", kind.lower(), name, *where, "--type", "json", "-p", restore)
        deadline = time.monotonic() + 10
        while not rbac.can(verbs[0], qualified, cluster_wide=kind == "ClusterRole"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
