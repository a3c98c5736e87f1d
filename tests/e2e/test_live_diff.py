"""diff --against live and nodes, on a real cluster: server-side dry-run, normalisation, errors."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.sandbox.nodes import CLASS_LABEL

runner = CliRunner()

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
  labels: {team: {{ values.team }}}
spec:
  selector:
    matchLabels: {app: {{ values.app }}}
  template:
    metadata:
      labels: {app: {{ values.app }}}
      annotations: {sidecar.example.com/status: pending}
    spec:
      tolerations: [{operator: Exists}]
      containers:
        - name: agent
          image: "example.com/agent:{{ values.tag }}"
"""


def env_text(
    namespace: str,
    *,
    tag: str = "1.0",
    team: str = "infra",
    app_label: str = "agent",
    classes: str = "[gpu, arm64, general]",
    ignore: str = "[]",
) -> str:
    return textwrap.dedent(f"""\
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
          - name: agent
            template: templates/agent.yaml.j2
            classes: {classes}
            values: {{tag: "{tag}", team: {team}, app: {app_label}}}
            ignoreDifferences: {ignore}
        """)


class Project:
    def __init__(self, root: Path, namespace: str, kubeconfig: Path) -> None:
        self.root, self.namespace, self.kubeconfig = root, namespace, kubeconfig
        (root / "templates").mkdir()
        (root / "environments").mkdir()
        (root / "templates/agent.yaml.j2").write_text(TEMPLATE)
        self.write()

    def write(self, **kwargs: str) -> None:
        (self.root / "environments/e2e.yaml").write_text(env_text(self.namespace, **kwargs))

    def dsroll(self, *args: str) -> tuple[int, str]:
        connection = [] if args[0] == "render" else ["--kubeconfig", str(self.kubeconfig)]  # render never connects
        result = runner.invoke(app, [*args, *connection])
        return result.exit_code, result.stdout

    def diff(self) -> tuple[int, dict]:  # type: ignore[type-arg]
        code, out = self.dsroll("diff", "e2e", "-o", "json")
        assert code in (0, 1), out
        return code, json.loads(out)

    def apply_rendered(self, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
        """Apply the render as dsroll would, and wait until the controller has settled."""
        code, out = self.dsroll("render", "e2e")
        assert code == 0, out
        k8s_cluster.kubectl("apply", "--server-side", "--field-manager=dsroll", "-R", "-f", str(self.root / "rendered"))
        for cls in ("gpu", "arm64", "general"):
            k8s_cluster.kubectl("-n", self.namespace, "rollout", "status", f"ds/agent-{cls}", "--timeout=60s")


@pytest.fixture
def project(tmp_path: Path, namespace: str, k8s_cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    yield Project(tmp_path, namespace, k8s_cluster.kubeconfig_path)


def changes(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {v["name"]: v["change"] for v in report["variants"]}


def resource_versions(k8s_cluster, namespace: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    items = json.loads(k8s_cluster.kubectl("-n", namespace, "get", "ds", "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}


def test_new_variants_show_as_added_then_nothing_after_apply(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    code, report = project.diff()
    assert code == 1
    assert changes(report) == {"agent-arm64": "added", "agent-general": "added", "agent-gpu": "added"}
    added = report["variants"][0]["diff"]
    assert "revisionHistoryLimit: 10" in added, "an added variant is shown as the server would default it"

    project.apply_rendered(k8s_cluster)
    code, report = project.diff()
    assert code == 0, report
    assert set(changes(report).values()) == {"unchanged"}
    assert report["server"].startswith("https://127.0.0.1") or k8s_cluster.backend != "sandbox"


def test_pods_land_exactly_on_their_class_nodes(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    project.apply_rendered(k8s_cluster)
    pods = json.loads(k8s_cluster.kubectl("-n", project.namespace, "get", "pods", "-o", "json").stdout)["items"]
    nodes = json.loads(k8s_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    node_class = {n["metadata"]["name"]: n["metadata"]["labels"].get(CLASS_LABEL) for n in nodes}
    per_node: dict[str, list[str]] = {}
    for pod in pods:
        node = pod["spec"]["nodeName"]
        per_node.setdefault(node, []).append(pod["metadata"]["labels"]["dsroll.io/class"])
    classed = {n for n, c in node_class.items() if c in ("gpu", "arm64", "general")}
    assert classed <= set(per_node), f"nodes without the daemon: {sorted(classed - set(per_node))}"
    for node in classed:
        assert per_node[node] == [node_class[node]], f"{node} ({node_class[node]}) runs {per_node[node]}"


def test_changes_are_classified_and_diff_changes_nothing(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    project.apply_rendered(k8s_cluster)
    before = resource_versions(k8s_cluster, project.namespace)

    project.write(tag="1.1")
    code, report = project.diff()
    assert code == 1
    assert set(changes(report).values()) == {"pod-template"}
    gpu = next(v for v in report["variants"] if v["name"] == "agent-gpu")
    assert gpu["restartsPods"] is True
    assert gpu["changedPaths"] == ["/spec/template/spec/containers/0/image"], "defaults and server fields never show"

    project.write(team="platform")
    code, report = project.diff()
    assert set(changes(report).values()) == {"metadata-only"}

    project.write(app_label="agent2")
    code, report = project.diff()
    assert set(changes(report).values()) == {"selector"}
    assert all(v["needsOrphanReplacement"] for v in report["variants"])

    project.write(classes="[gpu, arm64]")
    code, report = project.diff()
    assert changes(report) == {"agent-arm64": "unchanged", "agent-general": "removed", "agent-gpu": "unchanged"}

    assert resource_versions(k8s_cluster, project.namespace) == before, "diff must not change the cluster"


def test_ignore_differences_for_fields_another_controller_rewrites(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    project.apply_rendered(k8s_cluster)
    patch = {"spec": {"template": {"metadata": {"annotations": {"sidecar.example.com/status": "injected"}}}}}
    for cls in ("gpu", "arm64", "general"):
        k8s_cluster.kubectl(
            "-n",
            project.namespace,
            "patch",
            "ds",
            f"agent-{cls}",
            "--field-manager=sidecar-injector",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
    code, report = project.diff()
    assert code == 1 and set(changes(report).values()) == {"pod-template"}

    project.write(ignore='["/spec/template/metadata/annotations/sidecar.example.com~1status"]')
    code, report = project.diff()
    assert code == 0, report
    assert report["summary"]["ignoredDifferences"] == 3
    code, text = project.dsroll("diff", "e2e")
    assert "3 ignored difference(s)" in text


def test_nodes_reports_each_sandbox_node_in_its_class(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    nodes = json.loads(k8s_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    expected = {n["metadata"]["name"]: n["metadata"]["labels"].get(CLASS_LABEL) for n in nodes}
    if not any(expected.values()):
        pytest.skip(f"no node carries {CLASS_LABEL}: not a dsroll sandbox")
    code, out = project.dsroll("nodes", "e2e", "-o", "json")
    assert code == 0, out
    report = json.loads(out)
    got = {n["name"]: n["class"] for n in report["nodes"]}
    for name, cls in expected.items():
        if cls in ("gpu", "arm64", "general"):
            assert got[name] == cls, name
    project.write(classes="[gpu]")
    report = json.loads(project.dsroll("nodes", "e2e", "-o", "json")[1])
    assert set(report["uncovered"]["agent"]) == {n for n, c in got.items() if c != "gpu"}


def test_rbac_denial_names_verb_and_resource(project: Project, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["diff", "e2e", "--kubeconfig", str(project.kubeconfig), "--as", "someone"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith("error: RBAC preflight: cannot get namespaces (cluster-scoped) (needed by diff)")
    assert "list daemonsets.apps in all namespaces" in errors[0], errors[0]


def test_unreachable_cluster_is_one_line_naming_the_server(project: Project, tmp_path: Path) -> None:
    config = yaml.safe_load(project.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["diff", "e2e", "--kubeconfig", str(dead), "--request-timeout", "2s"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "cannot reach https://127.0.0.1:1" in errors[0]


def test_unknown_context_is_refused(project: Project) -> None:
    result = runner.invoke(app, ["diff", "e2e", "--kubeconfig", str(project.kubeconfig), "--context", "nope"])
    assert result.exit_code == 2
    assert "context 'nope' not found in kubeconfig" in result.output
