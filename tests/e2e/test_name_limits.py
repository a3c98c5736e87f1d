"""The name limits of dsroll.names, against a real API server and DaemonSet controller.

The longest variant name dsroll accepts is taken by the server with everything derived
from it (the Lease, the pods' generated names, the ControllerRevision ``<name>-<hash>``,
a backup ConfigMap); one character more is refused by dsroll, exit 2, before anything
is sent.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsroll import names
from dsroll.cli import app
from dsroll.kube import Kube, KubeOptions
from dsroll.rollout.lease import Lease

runner = CliRunner()
CLASS = "general"

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name | to_json }}
spec:
  selector:
    matchLabels: {app: limits}
  template:
    metadata:
      labels: {app: limits}
    spec:
      tolerations: [{operator: Exists}]
      containers:
        - name: agent
          image: "example.com/agent:1.0"
"""


def write_project(root: Path, namespace: str, workload: str) -> None:
    (root / "templates").mkdir(exist_ok=True)
    (root / "environments").mkdir(exist_ok=True)
    (root / "templates/agent.yaml.j2").write_text(TEMPLATE)
    (root / "environments/limits.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: dsroll.io/v1alpha1
            kind: Environment
            metadata: {{name: limits}}
            cluster: {{namespace: {namespace}}}
            hardwareClasses:
              - {{name: {CLASS}, default: true}}
            workloads:
              - {{name: {workload}, template: templates/agent.yaml.j2}}
            """)
    )


def get_json(k8s_cluster, *args: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return json.loads(k8s_cluster.kubectl(*args, "-o", "json").stdout)


def wait_for(what: str, probe, timeout: float = 60) -> list:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout}s")
        time.sleep(0.5)


def test_longest_accepted_variant_name_is_taken_by_the_server_and_one_more_is_refused(
    k8s_cluster,  # type: ignore[no-untyped-def]
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    kubeconfig = str(k8s_cluster.kubeconfig_path)
    longest = "w" * (names.VARIANT_NAME_MAX - len(f"-{CLASS}"))
    variant = names.variant_name(longest, CLASS)
    assert len(variant) == names.VARIANT_NAME_MAX == 63

    write_project(tmp_path, namespace, longest)
    result = runner.invoke(app, ["render", "limits"])
    assert result.exit_code == 0, result.output
    rendered = tmp_path / "rendered/limits" / namespace / f"{variant}.yaml"
    k8s_cluster.kubectl("apply", "--server-side", "--field-manager=dsroll", "-f", str(rendered))

    kube = Kube(KubeOptions(kubeconfig=kubeconfig, context=k8s_cluster.context))
    lease = Lease(kube.leases, namespace, variant)
    lease.acquire()
    assert get_json(k8s_cluster, "-n", namespace, "get", "lease", names.lease_name(variant))["metadata"]["name"] == (
        f"dsroll-{variant}"
    )
    replacement = Lease(kube.leases, namespace, names.replacement_lease_subject(longest))
    replacement.acquire()
    backup = names.backup_name(longest, ["0b7d8c3e-0000-4000-8000-000000000000"])
    k8s_cluster.kubectl("-n", namespace, "create", "configmap", backup)

    def revisions() -> list[str]:
        items = get_json(k8s_cluster, "-n", namespace, "get", "controllerrevisions")["items"]
        return [i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith(f"{variant}-")]

    (revision,) = wait_for("ControllerRevision", revisions)
    assert len(revision) > names.DNS_LABEL_MAX, "the revision name is longer than a label: a subdomain is enough"

    def pods() -> list[str]:
        items = get_json(k8s_cluster, "-n", namespace, "get", "pods", "-l", "app=limits")["items"]
        return [i["metadata"]["name"] for i in items]

    created = wait_for("daemon pod", pods)
    assert all(len(p) <= names.DNS_LABEL_MAX and p.startswith(variant[:58]) for p in created), created
    lease.release()
    replacement.release()

    one_more = longest + "w"
    write_project(tmp_path, namespace, one_more)
    for command in (["render", "limits"], ["rollout", "limits", "--yes", "--kubeconfig", kubeconfig]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert f"variant name '{one_more}-{CLASS}' (64 characters) is not a DNS label" in lines[0]
        assert "at most 63" in lines[0]
    daemonsets = get_json(k8s_cluster, "-n", namespace, "get", "daemonsets")["items"]
    assert [d["metadata"]["name"] for d in daemonsets] == [variant], "nothing was sent for the refused name"
    leases = get_json(k8s_cluster, "-n", namespace, "get", "leases")["items"]
    assert not any(one_more in lease["metadata"]["name"] for lease in leases)
