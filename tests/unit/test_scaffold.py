"""``dsroll init``: the files of a new repo, classes proposed from node labels, never an overwrite unasked."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dsroll import scaffold, workflow
from dsroll.config import parse_environment
from dsroll.errors import InputError
from dsroll.nodes import classify_nodes

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

NODES: dict[str, dict[str, str]] = {
    **{f"gpu-{i}": {"nvidia.com/gpu.present": "true", "kubernetes.io/arch": "amd64"} for i in range(3)},
    "gpu-arm": {"nvidia.com/gpu.present": "true", "kubernetes.io/arch": "arm64"},
    **{f"arm-{i}": {"kubernetes.io/arch": "arm64", "node.kubernetes.io/instance-type": "m7g.large"} for i in range(2)},
    "mem-0": {"kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "r7i.8xlarge"},
    "mem-1": {"kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "r7i.9xlarge"},
    **{f"gen-{i}": {"kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m7i.large"} for i in range(5)},
    "tpu-0": {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice", "kubernetes.io/arch": "amd64"},
}


def test_the_shipped_templates_are_the_repositorys() -> None:
    shipped = scaffold.example_templates()
    repo = {f"templates/{p.name}": p.read_text() for p in (ROOT / "templates").glob("*.j2")}
    assert shipped == repo, "copy templates/*.j2 to dsroll/scaffold/templates/"


def test_classes_come_accelerators_first_then_arch_then_families_then_general() -> None:
    proposed = scaffold.propose_classes(NODES)
    assert [(c.name, c.nodes) for c in proposed] == [
        ("gpu", 4),  # the arm64 GPU node is a GPU node: first match wins
        ("tpu", 1),
        ("arm64", 2),
        ("r7i", 2),
        ("general", 5),
    ]
    assert proposed[0].node_selector == {"nvidia.com/gpu.present": "true"}
    assert proposed[1].match_expressions[0]["operator"] == "Exists"
    assert proposed[3].match_expressions[0]["values"] == ["r7i.8xlarge", "r7i.9xlarge"]


def test_the_counts_are_what_dsroll_nodes_will_say() -> None:
    proposed = scaffold.propose_classes(NODES)
    env = parse_environment(scaffold.environment_text("dev", "agents", proposed, None), "environments/dev.yaml")
    report = classify_nodes(env, [{"metadata": {"name": n, "labels": lb}} for n, lb in NODES.items()])
    winners: dict[str, int] = {}
    for node in report.nodes:
        winners[str(node.winner)] = winners.get(str(node.winner), 0) + 1
    assert winners == {c.name: c.nodes for c in proposed}


def test_two_gpu_vendors_get_a_class_each_and_a_uniform_fleet_only_general() -> None:
    mixed = {"a": {"nvidia.com/gpu.product": "A100"}, "b": {"amd.com/gpu.family": "AI"}, "c": {}}
    assert [c.name for c in scaffold.propose_classes(mixed)] == ["nvidia", "amd", "general"]
    assert [c.name for c in scaffold.propose_classes({"a": {"kubernetes.io/arch": "amd64"}})] == ["general"]


@pytest.mark.parametrize(
    ("instance_type", "family"),
    [("r7i.8xlarge", "r7i"), ("n2-highmem-8", "n2-highmem"), ("Standard_D4s_v3", "standard-d"), ("e2", "e2")],
)
def test_instance_families(instance_type: str, family: str) -> None:
    assert scaffold.instance_family(instance_type) == family


def no_cluster(_: str | None) -> Any:
    raise AssertionError("nothing may talk to the cluster")


def init(root: Path, **kwargs: Any) -> workflow.Scaffolded:
    args: dict[str, Any] = {"from_cluster": False, "force": False, "connect": no_cluster, "context": None}
    return workflow.init(root, kwargs.pop("name", "dev"), kwargs.pop("namespace", None), **{**args, **kwargs})


def test_init_writes_a_repo_that_renders(tmp_path: Path) -> None:
    done = init(tmp_path / "repo")
    paths = {p for p, result in done.files if result == "created"}
    expected = {"environments/dev.yaml", ".gitignore", ".github/workflows/dsroll.yaml", ".gitlab-ci.yml"}
    expected |= {"deploy/rbac/dev.yaml", ".dsroll/environment.schema.json", "templates/fluent-bit.yaml.j2"}
    assert expected <= paths
    env_text = (tmp_path / "repo/environments/dev.yaml").read_text()
    assert env_text.startswith("# yaml-language-server: $schema=../.dsroll/environment.schema.json\n")
    cwd = Path.cwd()
    os.chdir(tmp_path / "repo")
    try:
        from dsroll.cli import app

        result = runner.invoke(app, ["render", "dev", "--check"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1, result.output  # nothing rendered yet: drift, not an error
    for name in ("dsroll.yaml",):
        assert yaml.safe_load((tmp_path / "repo/.github/workflows" / name).read_text())["jobs"]
    assert yaml.safe_load((tmp_path / "repo/.gitlab-ci.yml").read_text())["rollout"]["allow_failure"] == {
        "exit_codes": [3, 5]
    }


def test_the_ci_files_gate_drift_diff_pull_requests_and_handle_every_exit_code(tmp_path: Path) -> None:
    init(tmp_path)
    for path in (".github/workflows/dsroll.yaml", ".gitlab-ci.yml"):
        text = (tmp_path / path).read_text()
        for needle in ('render "$DSROLL_ENV" --check', 'diff "$DSROLL_ENV" --against "git:origin/',
                       'rollout "$DSROLL_ENV" -o json', 'resume "$DSROLL_ENV" -o json', "DSROLL_ENV: dev"):  # fmt: skip
            assert needle in text, (path, needle)
        for code in ("0)", "1)", "2)", "3)", "4)", "5)", "*)"):
            assert f"    {code}" in text, (path, code)


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/_helpers.j2").write_text("mine\n")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments/dev.yaml").write_text("mine too\n")
    with pytest.raises(InputError) as caught:
        init(tmp_path)
    assert caught.value.exit_code == 2
    assert "environments/dev.yaml, templates/_helpers.j2" in str(caught.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "environments/dev.yaml",
        "templates/_helpers.j2",
    ]
    done = init(tmp_path, force=True)
    assert ("templates/_helpers.j2", "overwritten") in done.files
    assert ("templates/fluent-bit.yaml.j2", "created") in done.files


def test_init_again_changes_nothing_and_keeps_the_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("build/\n")
    init(tmp_path)
    assert (tmp_path / ".gitignore").read_text().startswith("build/\n\n# dsroll")
    again = init(tmp_path)
    assert {result for _, result in again.files} == {"unchanged"}


@pytest.mark.parametrize(("kwargs", "message"), [({"name": "Dev"}, "--name 'Dev'"), ({"namespace": "a_b"}, "a_b")])
def test_a_bad_name_is_refused(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        init(tmp_path / "repo", **kwargs)
    assert not (tmp_path / "repo").exists()


def test_from_cluster_reads_the_nodes_and_records_the_context(tmp_path: Path) -> None:
    asked: list[tuple[str, ...]] = []

    def allowed(verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        asked.append((verb, resource))
        return True

    kube = SimpleNamespace(access=SimpleNamespace(allowed=allowed), nodes=SimpleNamespace(labels=lambda: NODES))
    done = init(tmp_path, from_cluster=True, connect=lambda _ctx: kube, context="prod-admin", namespace="agents")
    assert asked == [("list", "nodes")]
    assert (done.classes[0].name, done.classes[0].nodes) == ("gpu", 4)
    text = (tmp_path / "environments/dev.yaml").read_text()
    assert 'cluster: {"context": "prod-admin", "namespace": "agents"}' in text
    assert "classes: [gpu]" in text  # the device plugin where the NVIDIA GPUs are
    assert "namespace: agents" in (tmp_path / "deploy/rbac/dev.yaml").read_text()


def test_cli_json_lists_files_and_classes(tmp_path: Path) -> None:
    from dsroll.cli import app

    result = runner.invoke(app, ["init", str(tmp_path), "--name", "stage", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["environment"] == "stage"
    assert {"path": "environments/stage.yaml", "result": "created"} in data["files"]
    assert [c["name"] for c in data["classes"]] == ["gpu", "arm64", "general"]
    again = runner.invoke(app, ["init", str(tmp_path), "--name", "stage"])
    assert again.exit_code == 0
    (tmp_path / "environments/stage.yaml").write_text("changed\n")
    refused = runner.invoke(app, ["init", str(tmp_path), "--name", "stage"])
    assert refused.exit_code == 2 and "environments/stage.yaml" in refused.stderr
