"""The shape of the command line: kube flags declared once, the sandbox loaded only when used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.cli.flags import KUBE_FLAGS, KubeFlags, with_kube_flags

ROOT = Path(__file__).resolve().parents[2]
KUBE_OPTIONS = ["--kubeconfig", "--context", "--namespace", "--as", "--as-group", "--request-timeout"]
runner = CliRunner()


def test_loading_the_cli_loads_neither_the_sandbox_nor_cryptography() -> None:
    code = "import dsroll.cli, sys; print([m for m in sys.modules if m.startswith(('dsroll.sandbox','cryptography'))])"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "[]"


def test_top_level_help_lists_the_sandbox_without_loading_it() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from dsroll.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); assert 'sandbox' in r.output, r.output;"
        "print([m for m in sys.modules if m.startswith('dsroll.sandbox')])"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "[]"


def test_sandbox_help_lists_its_commands() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "dsroll", "sandbox", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert found.returncode == 0, found.stderr
    assert "A local Kubernetes cluster (real control plane, kwok nodes)." in found.stdout
    for command in ("up", "down", "status", "build"):
        assert f" {command} " in found.stdout, found.stdout


def test_nothing_outside_the_sandbox_imports_it_but_the_lazy_door() -> None:
    found = []
    for path in (ROOT / "dsroll").rglob("*.py"):
        if "sandbox" in path.relative_to(ROOT / "dsroll").parts:
            continue
        tree = ast.parse(path.read_text())
        where = {id(n): f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [
                (path.relative_to(ROOT).as_posix(), where.get(id(node)))
                for n in names
                if n.startswith("dsroll.sandbox")
            ]
    assert found == [("dsroll/cli/app.py", "_sandbox_commands")]


LOCAL_COMMANDS = {"render", "schema", "rbac"}  # they read files only; the cluster is never asked
CONNECTION_OPTIONS = [flag for flag in KUBE_OPTIONS if flag != "--namespace"]  # -n also picks a default namespace


def test_every_cluster_command_offers_the_same_kube_flags() -> None:
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if name in LOCAL_COMMANDS:
            continue
        text = runner.invoke(app, [name, "--help"], terminal_width=200).output
        assert all(flag in text for flag in KUBE_OPTIONS), name


def test_commands_that_never_ask_the_cluster_offer_no_connection_flags() -> None:
    for name in sorted(LOCAL_COMMANDS):
        text = runner.invoke(app, [name, "--help"], terminal_width=200).output
        assert not [flag for flag in CONNECTION_OPTIONS if flag in text], name


def test_kube_flags_reach_the_command_as_one_value() -> None:
    seen: list[tuple[KubeFlags, str]] = []
    probe = typer.Typer()

    @probe.command()
    @with_kube_flags
    def show(name: str, kube: KubeFlags = KUBE_FLAGS, out: str = "text") -> None:
        seen.append((kube, out))

    argv = ["x", "--context", "c", "-n", "ns", "--as", "me", "--as-group", "g", "--request-timeout", "5s"]
    result = runner.invoke(probe, [*argv, "--out", "json"])
    assert result.exit_code == 0, result.output
    assert seen == [(KubeFlags(None, "c", "ns", "me", "g", "5s"), "json")]
    help_text: Any = runner.invoke(probe, ["--help"], terminal_width=200).output
    positions = [help_text.index(flag) for flag in [*KUBE_OPTIONS, "--out"]]
    assert positions == sorted(positions), "the kube flags stand where `kube` stood"
