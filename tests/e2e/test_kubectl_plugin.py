"""`kubectl dsroll`: kubectl finds the plugin, its help reads right, completion works."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kubectl(k8s_cluster, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PATH": f"{ROOT}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(k8s_cluster.kubectl_binary), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def test_plugin_list_accepts_it(k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = kubectl(k8s_cluster, "plugin", "list", "--name-only")
    assert "kubectl-dsroll" in result.stdout.split(), result.stdout + result.stderr
    assert "kubectl-dsroll" not in result.stderr, f"kubectl warns about the plugin: {result.stderr}"


def test_help_reads_as_kubectl_dsroll(k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = kubectl(k8s_cluster, "dsroll", "diff", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: kubectl dsroll diff" in result.stdout


def test_completion_through_kubectl(k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    commands = kubectl(k8s_cluster, "__complete", "dsroll", "").stdout.splitlines()
    assert {"render", "diff", "nodes", "sandbox"} <= set(commands)
    environments = kubectl(k8s_cluster, "__complete", "dsroll", "diff", "").stdout.splitlines()
    assert {"dev", "prod"} <= set(environments)
    assert environments[-1] == ":4", "Cobra's NoFileComp directive ends the answer"


def test_a_command_runs_against_the_cluster(k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = kubectl(
        k8s_cluster, "dsroll", "nodes", "dev", "-o", "json", "--kubeconfig", str(k8s_cluster.kubeconfig_path)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["nodes"], "the cluster's nodes are listed"
    assert "Using context" in result.stderr
