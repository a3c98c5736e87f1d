"""diff --against git[:REF]: read rendered files from git objects, classify each change."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsroll.cli import app
from tests.conftest import ENV, TEMPLATE

runner = CliRunner()


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project()
    git(root, "init", "-q", "-b", "main")
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    commit_all(root, "first render")
    return root


def diff_json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = runner.invoke(app, ["diff", "test", "-o", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def by_name(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {v["name"]: v for v in report["variants"]}


def test_no_difference_exits_0(repo: Path) -> None:
    code, report = diff_json("--against", "git")
    assert code == 0
    assert report["summary"] == {
        "added": 0,
        "removed": 0,
        "changed": 0,
        "unchanged": 3,
        "ignoredDifferences": 0,
        "maskedValues": 0,
    }
    assert report["commit"] == git(repo, "rev-parse", "HEAD")


def test_pod_template_change_against_older_ref(repo: Path) -> None:
    env = repo / "environments/test.yaml"
    env.write_text(env.read_text().replace('tag: "1.0"', 'tag: "1.1"'))
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    commit_all(repo, "bump to 1.1")

    code, report = diff_json("--against", "git:HEAD")
    assert code == 0
    code, report = diff_json("--against", "git:HEAD~1")
    assert code == 1
    variants = by_name(report)
    assert variants["agent-gpu"]["change"] == "pod-template"
    assert variants["agent-gpu"]["restartsPods"] is True
    assert "/spec/template/spec/containers/0/image" in variants["agent-gpu"]["changedPaths"]
    assert variants["agent-arm64"]["change"] == "unchanged", "arm64 has its own tag via classValues"
    diff_lines = variants["agent-gpu"]["diff"].splitlines()
    assert any(line.startswith("-") and line.endswith("image: example.com/agent:1.0") for line in diff_lines)


def test_selector_metadata_added_and_removed_are_classified(repo: Path) -> None:
    env = repo / "environments/test.yaml"
    text = env.read_text().replace("  - name: general\n    default: true\n", "  - name: standard\n    default: true\n")
    env.write_text(text)
    tpl = repo / "templates/agent.yaml.j2"
    tpl.write_text(
        TEMPLATE.replace(
            'matchLabels: {app: "{{ workload.name }}"}', 'matchLabels: {app: "{{ workload.name }}", tier: node}'
        )
        .replace('labels: {app: "{{ workload.name }}"}', 'labels: {app: "{{ workload.name }}", tier: node}')
        .replace("  name: {{ workload.name }}\n", "  name: {{ workload.name }}\n  annotations: {team: infra}\n", 1)
    )
    code, report = diff_json("--against", "git")
    assert code == 1
    variants = by_name(report)
    assert variants["agent-gpu"]["change"] == "selector"
    assert variants["agent-gpu"]["needsOrphanReplacement"] is True
    assert variants["agent-standard"]["change"] == "added"
    assert variants["agent-general"]["change"] == "removed"

    tpl.write_text(
        TEMPLATE.replace(
            "  name: {{ workload.name }}\n", "  name: {{ workload.name }}\n  annotations: {team: infra}\n", 1
        )
    )
    env.write_text(ENV)
    code, report = diff_json("--against", "git")
    assert by_name(report)["agent-gpu"]["change"] == "metadata-only"
    assert by_name(report)["agent-gpu"]["restartsPods"] is False


def test_ignore_differences_hides_a_field_and_counts_it(repo: Path) -> None:
    tpl = repo / "templates/agent.yaml.j2"
    tpl.write_text(
        TEMPLATE.replace(
            "  name: {{ workload.name }}\n", "  name: {{ workload.name }}\n  annotations: {injected: x}\n", 1
        )
    )
    env = repo / "environments/test.yaml"
    env.write_text(env.read_text() + 'ignoreDifferences: ["/metadata/annotations/injected"]\n')
    code, report = diff_json("--against", "git")
    assert code == 0
    assert report["summary"]["ignoredDifferences"] == 3


def test_works_on_detached_head_and_in_a_bare_clone(
    repo: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    env = repo / "environments/test.yaml"
    env.write_text(env.read_text().replace('tag: "1.0"', 'tag: "2.0"'))
    runner.invoke(app, ["render", "test"])
    commit_all(repo, "2.0")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    code, report = diff_json("--against", f"git:{first}")
    assert code == 1 and by_name(report)["agent-gpu"]["change"] == "pod-template"

    bare = tmp_path_factory.mktemp("bare") / "project.git"
    git(repo, "clone", "-q", "--bare", str(repo), str(bare))
    monkeypatch.chdir(bare)
    code, report = diff_json("--against", f"git:{first}")
    assert code == 1, report
    assert by_name(report)["agent-gpu"]["change"] == "pod-template"
    code, _ = diff_json("--against", "git:HEAD")
    assert code == 0
    refused = runner.invoke(app, ["render", "test"])
    assert refused.exit_code == 2 and "bare repository" in refused.output
    assert not (bare / "rendered").exists()


def test_unknown_ref_is_a_one_line_error(repo: Path) -> None:
    result = runner.invoke(app, ["diff", "test", "--against", "git:no-such-ref"])
    assert result.exit_code == 2
    assert "git ref 'no-such-ref' not found" in result.output


def test_text_output_names_variants_and_summary(repo: Path) -> None:
    env = repo / "environments/test.yaml"
    env.write_text(env.read_text().replace('tag: "1.0"', 'tag: "1.1"'))
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 1
    assert "agents/agent-gpu: changed: pod template, pods will restart" in result.output
    assert any(
        line.startswith("+") and line.endswith("image: example.com/agent:1.1") for line in result.output.splitlines()
    )
    assert "3 variants against git:HEAD: 0 added, 0 removed, 2 changed, 1 unchanged" in result.output
