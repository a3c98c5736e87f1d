"""README's CI recipe and the workflows `dsroll init` writes, run as written against the sandbox.

A project made by `dsroll init` is committed to a fresh git repository (``main``, with an
``origin``); each shell snippet is run with bash the way its CI system would (errexit,
its variables set), ``pip install`` lines aside (``dsroll`` is this checkout, first on
PATH). Snippets are read from README.md and from the generated files at test time, so a
recipe that drifts from what dsroll does fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = "prod"  # README's recipe names this environment


def readme_ci_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## From CI\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def without_install(script: str) -> str:
    return "\n".join(line for line in script.splitlines() if not re.match(r"\s*-?\s*pip install", line))


class Repo:
    """A GitOps repo made by `dsroll init`, its origin, and a shell to run CI snippets in."""

    def __init__(self, root: Path, namespace: str, kubeconfig: Path) -> None:
        self.root = root / "work"
        shim = root / "bin"
        shim.mkdir()
        (shim / "dsroll").write_text(f'#!/bin/sh\nexec {sys.executable} -m dsroll "$@"\n')
        (shim / "dsroll").chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{shim}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "KUBECONFIG": str(kubeconfig),
            "DSROLL_STATE_DIR": str(root / "state"),
            "GIT_AUTHOR_NAME": "ci",
            "GIT_AUTHOR_EMAIL": "ci@example.com",
            "GIT_COMMITTER_NAME": "ci",
            "GIT_COMMITTER_EMAIL": "ci@example.com",
        }
        self.env.pop("DSROLL_DEBUG", None)
        self.origin = root / "origin.git"
        self.root.mkdir()
        self.sh(f"dsroll init --name {ENV} -n {namespace} && git init -q -b main", check=True)
        env_file = self.root / "environments" / f"{ENV}.yaml"
        text = env_file.read_text()
        workloads = text.index("  - name: fluent-bit")
        text = text[:workloads] + text[text.index("rollout:") :]  # one workload, one variant: one pause
        text = text.replace(
            "template: templates/node-exporter.yaml.j2",
            "template: templates/node-exporter.yaml.j2\n    classes: [general]",
        )
        text = re.sub(r"steps: \[.*?\]", 'steps: ["1", "100%"]', text)
        text = text.replace("maxUnavailable: 1", "maxUnavailable: 5").replace("readyTimeout: 5m", "readyTimeout: 1m")
        env_file.write_text(text)
        self.sh("dsroll render prod && git add -A && git commit -qm init", check=True)
        self.sh(
            f"git init -q --bare {self.origin} && git remote add origin {self.origin} && git push -q origin main",
            check=True,
        )

    def sh(
        self, script: str, *, env: Mapping[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert proc.returncode == 0, f"$ {script}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def change(self, tag: str, branch: str = "main") -> None:
        """A commit that changes the image tag, rendered, on ``branch``."""
        if branch != "main":
            self.sh(f"git checkout -q -b {branch}", check=True)
        env_file = self.root / "environments" / f"{ENV}.yaml"
        env_file.write_text(re.sub(r"tag: v[\d.]+", f"tag: {tag}", env_file.read_text(), count=1))
        self.sh(f"dsroll render {ENV} && git commit -qam 'tag {tag}'", check=True)
        if branch == "main":
            self.sh("git push -q origin main", check=True)

    def clean(self) -> bool:
        """Nothing the render reads is uncommitted (run outputs may lie around)."""
        out = self.sh("git status --porcelain -- environments templates rendered", check=True).stdout
        return out.strip() == ""


@pytest.fixture()
def repo(tmp_path: Path, namespace: str, k8s_cluster: Any) -> Repo:
    return Repo(tmp_path, namespace, Path(k8s_cluster.kubeconfig_path))


def last_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text.strip().splitlines()[-1]))


def test_readme_recipe(repo: Repo) -> None:
    check, deploy, wait = readme_ci_blocks()
    first = repo.sh(without_install(check))
    assert first.returncode == 0, first  # render --check 0, both diffs 0 or 1 (the variant is not deployed yet)
    created = repo.sh(deploy)
    assert created.returncode == 0, created
    assert last_json((repo.root / "rollout.jsonl").read_text())["exitCode"] == 0
    assert (repo.root / "diff.json").exists()  # run outputs in the work tree: the next rollout is not refused

    repo.change("v1.8.3")
    plan = repo.sh(f"dsroll plan {ENV} --out plan.json", check=True)
    assert plan.returncode == 0
    paused = repo.sh(deploy)
    assert paused.returncode == 0 and "paused for approval" in paused.stdout, paused
    assert last_json((repo.root / "rollout.jsonl").read_text())["exitCode"] == 3
    watching = repo.sh(f"dsroll status {ENV} --watch --timeout 20s")
    assert watching.returncode == 3, watching  # the watch reports the pause as the rollout did
    resumed = repo.sh(f"dsroll resume {ENV} -o json")
    assert resumed.returncode == 0, resumed
    done = repo.sh(wait)
    assert done.returncode == 0, done
    assert repo.clean()


def github_steps(repo: Repo, job: str) -> list[dict[str, Any]]:
    workflow = yaml.safe_load((repo.root / ".github/workflows/dsroll.yaml").read_text())
    return [s for s in workflow["jobs"][job]["steps"] if "run" in s]


def run_github_job(repo: Repo, job: str, event: str, runner_temp: Path) -> tuple[int, dict[str, str]]:
    """Each `run:` step in order, as Actions would: expressions filled in, GITHUB_ENV/OUTPUT honoured."""
    kubeconfig = Path(repo.env["KUBECONFIG"]).read_text()
    workflow = yaml.safe_load((repo.root / ".github/workflows/dsroll.yaml").read_text())
    env = {k: str(v) for k, v in workflow["env"].items()}
    env.update(RUNNER_TEMP=str(runner_temp), GITHUB_BASE_REF="main", GITHUB_EVENT_NAME=event)
    env.pop("KUBECONFIG", None)
    outputs: dict[str, str] = {}
    for step in github_steps(repo, job):
        condition = step.get("if")
        if condition and "pull_request" in condition and event != "pull_request":
            continue
        files = {name: runner_temp / name for name in ("env", "output")}
        for f in files.values():
            f.write_text("")
        values = {"github.event_name": event, "github.base_ref": "main", "secrets.DSROLL_KUBECONFIG": kubeconfig}
        step_env = {
            k: re.sub(r"\$\{\{\s*(\S+)\s*\}\}", lambda m, values=values: values[m[1]], str(v))
            for k, v in (step.get("env") or {}).items()
        }
        script = without_install(re.sub(r"\$\{\{\s*(\S+)\s*\}\}", lambda m, values=values: values[m[1]], step["run"]))
        proc = repo.sh(
            script, env={**env, **step_env, "GITHUB_ENV": str(files["env"]), "GITHUB_OUTPUT": str(files["output"])}
        )
        if proc.returncode != 0:
            return proc.returncode, outputs
        env.update(line.split("=", 1) for line in files["env"].read_text().splitlines() if "=" in line)
        outputs.update(line.split("=", 1) for line in files["output"].read_text().splitlines() if "=" in line)
    return 0, outputs


def test_github_workflow(repo: Repo, tmp_path: Path) -> None:
    temp = tmp_path / "runner"
    temp.mkdir()
    assert run_github_job(repo, "rollout", "push", temp) == (0, {"code": "0"})  # creates the variant
    repo.change("v1.8.3", branch="feature")
    assert run_github_job(repo, "check", "pull_request", temp)[0] == 0  # render --check 0; diff 1 → job 0
    repo.sh("git checkout -q main && git merge -q feature && git push -q origin main", check=True)
    assert run_github_job(repo, "check", "push", temp)[0] == 0
    assert run_github_job(repo, "rollout", "push", temp) == (0, {"code": "3"})  # paused: the approve job runs
    assert run_github_job(repo, "approve", "push", temp)[0] == 0
    assert repo.sh(f"dsroll status {ENV} --watch --timeout 30s").returncode == 0
    assert repo.clean()


def run_gitlab_job(repo: Repo, job: str, variables: Mapping[str, str]) -> int:
    pipeline = yaml.safe_load((repo.root / ".gitlab-ci.yml").read_text())
    spec = pipeline[job]
    env = {k: str(v) for k, v in pipeline["variables"].items()}
    for parent in [spec.get("extends")] if spec.get("extends") else []:
        env.update({k: str(v) for k, v in (pipeline[parent].get("variables") or {}).items()})
    env.update({k: str(v) for k, v in (spec.get("variables") or {}).items()})
    env.update(variables)
    env = {
        k: os.path.expandvars(v.replace("$DSROLL_KUBECONFIG", variables.get("DSROLL_KUBECONFIG", "")))
        for k, v in env.items()
    }
    return repo.sh(without_install("\n".join(spec["script"])), env=env).returncode


def test_gitlab_pipeline(repo: Repo) -> None:
    kubeconfig = repo.env["KUBECONFIG"]
    main = {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main", "DSROLL_KUBECONFIG": kubeconfig}
    assert run_gitlab_job(repo, "rollout", main) == 0  # creates the variant
    repo.change("v1.8.3", branch="feature")
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    assert run_gitlab_job(repo, "render-check", mr) == 0
    assert run_gitlab_job(repo, "diff", mr) == 0  # differences (1) are the point of the job
    repo.sh("git checkout -q main && git merge -q feature && git push -q origin main", check=True)
    assert run_gitlab_job(repo, "rollout", main) == 3  # allowed to fail with 3: the manual resume job
    assert run_gitlab_job(repo, "resume", main) == 0
    assert repo.sh(f"dsroll status {ENV} --watch --timeout 30s").returncode == 0
    assert repo.clean()
