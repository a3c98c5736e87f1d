"""`pip install` of the built wheel, as a user would, then the real kubectl finds it all.

The wheel is built from this checkout and installed into a fresh venv (its dependencies
from the index, pip's cache making that quick), without the ``sandbox`` extra. Commands
then run with only that venv's ``bin`` and kubectl's folder on PATH, from a folder that
is not the checkout, so nothing of the repository (its ``kubectl-dsroll`` script, its
``.venv``, its sources) can stand in for what the install put there. git, which dsroll
needs, is on PATH alone in a folder of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
COMMANDS = ("dsroll", "kubectl-dsroll", "kubectl_complete-dsroll")
SOURCE_JUNK = (".git", ".venv*", ".sandbox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    workdir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, k8s_cluster) -> Iterator[Installed]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("install")
    # A PYTHONPATH pointing at a checkout would make pip see dsroll as installed already.
    clean = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    # Built from a copy: an in-tree build leaves build/ and dsroll.egg-info in the checkout.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SOURCE_JUNK))
    wheelhouse = base / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheelhouse), str(source)],
        check=True,
        capture_output=True,
        env=clean,
        timeout=300,
    )
    (wheel,) = wheelhouse.glob("dsroll-*.whl")
    target = base / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    subprocess.run(
        [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
        env=clean,
        timeout=600,
    )
    workdir = base / "project"
    workdir.mkdir()
    for folder in ("environments", "templates"):
        shutil.copytree(ROOT / folder, workdir / folder)
    tools = base / "tools"
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git") or "git")
    kubectl_dir = Path(k8s_cluster.kubectl_binary).parent
    env = {
        "PATH": os.pathsep.join([str(target / "bin"), str(kubectl_dir), str(tools)]),
        "HOME": os.environ.get("HOME", str(base)),
        "KUBECONFIG": str(k8s_cluster.kubeconfig_path),
        "LANG": "C.UTF-8",
    }
    yield Installed(wheel=wheel, bin=target / "bin", workdir=workdir, env=env)


def run(installed: Installed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, env=installed.env, cwd=installed.workdir, timeout=120
    )


def kubectl(installed: Installed, k8s_cluster, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return run(installed, str(k8s_cluster.kubectl_binary), *args)


def test_the_wheel_declares_the_three_commands_and_carries_the_licence(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    for command in COMMANDS:
        assert f"{command} = " in entry_points, entry_points
        assert (installed.bin / command).is_file(), f"{command} is not on PATH after pip install"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names


def test_kubectl_lists_the_plugin_without_warnings(installed: Installed, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = kubectl(installed, k8s_cluster, "plugin", "list")
    assert result.returncode == 0, result.stderr
    assert str(installed.bin / "kubectl-dsroll") in result.stdout.split(), result.stdout
    assert result.stderr == "", f"kubectl warns: {result.stderr}"


def test_help_and_version_through_kubectl(installed: Installed, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    help_ = kubectl(installed, k8s_cluster, "dsroll", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "Usage: kubectl dsroll" in help_.stdout
    version = kubectl(installed, k8s_cluster, "dsroll", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"dsroll {VERSION}"), version.stderr
    direct = run(installed, "dsroll", "--version")
    assert (direct.returncode, direct.stdout.strip()) == (0, f"dsroll {VERSION}"), direct.stderr


def test_completion_through_kubectl(installed: Installed, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    commands = kubectl(installed, k8s_cluster, "__complete", "dsroll", "").stdout.splitlines()
    assert {"render", "diff", "rollout", "sandbox"} <= set(commands), commands
    environments = kubectl(installed, k8s_cluster, "__complete", "dsroll", "diff", "").stdout.splitlines()
    assert {"dev", "prod"} <= set(environments), environments
    assert environments[-1] == ":4", "Cobra's NoFileComp directive ends the answer"


def test_a_command_reaches_the_cluster(installed: Installed, k8s_cluster) -> None:  # type: ignore[no-untyped-def]
    result = kubectl(installed, k8s_cluster, "dsroll", "nodes", "dev", "-o", "json")
    assert result.returncode == 0, result.stderr


def test_the_sandbox_without_its_extra_says_what_to_install(installed: Installed) -> None:
    result = run(installed, "dsroll", "sandbox", "status")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'dsroll[sandbox]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_repo_from_the_wheel_rolls_out_and_back_as_its_least_privileged_deployer(
    installed: Installed,
    k8s_cluster,
    namespace: str,  # type: ignore[no-untyped-def]
) -> None:
    """The whole way in, as a new user takes it: `kubectl dsroll init --from-cluster` in an
    empty folder, the RBAC it wrote applied, then render, diff, rollout, a change rolled out
    and rolled back, every cluster command as the deployer ServiceAccount."""
    repo = installed.workdir.parent / f"gitops-{namespace}"
    deployer = ["--as", f"system:serviceaccount:{namespace}:dsroll-wheel-deployer"]

    def dsroll(*args: str) -> subprocess.CompletedProcess[str]:
        kubectl_binary = str(k8s_cluster.kubectl_binary)
        return subprocess.run(
            [kubectl_binary, "dsroll", *args],
            capture_output=True,
            text=True,
            env=installed.env,
            cwd=repo if repo.is_dir() else repo.parent,
            timeout=300,
        )

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@x", *args], cwd=repo, check=True, env=installed.env
        )

    made = dsroll("init", str(repo), "--name", "wheel", "--from-cluster", "-n", namespace)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "general" in made.stdout and "node" in made.stdout, "the proposed classes come with node counts"
    env_file = repo / "environments/wheel.yaml"
    fast = env_file.read_text()
    for slow, quick in (('["1", "10%", "50%", "100%"]', '["1", "100%"]'), ("maxUnavailable: 1", "maxUnavailable: 3"),
                        ("pause: manual", 'pause: "0"'), ("readyTimeout: 5m", "readyTimeout: 30s")):  # fmt: skip
        assert slow in fast, f"init's environment changed: {slow!r} not in it"
        fast = fast.replace(slow, quick)
    env_file.write_text(fast)
    rbac = repo / "deploy/rbac/wheel.yaml"
    applied = kubectl(installed, k8s_cluster, "apply", "-f", str(rbac))
    assert applied.returncode == 0, applied.stderr
    try:
        assert dsroll("render", "wheel").returncode == 0
        git("init", "-q", "-b", "main")
        git("add", "-A")
        git("commit", "-q", "-m", "dsroll: environment wheel")
        diff = dsroll("diff", "wheel", "--against", "live", *deployer)
        assert diff.returncode == 1, diff.stdout + diff.stderr  # every variant is new
        first = dsroll("rollout", "wheel", "--yes", *deployer)
        assert first.returncode == 0, first.stdout + first.stderr
        env_file.write_text(env_file.read_text().replace("tag: v1.8.2", "tag: v1.9.0"))
        assert dsroll("render", "wheel").returncode == 0
        git("commit", "-q", "-am", "node-exporter v1.9.0")
        second = dsroll("rollout", "wheel", "--workload", "node-exporter", "--yes", *deployer)
        assert second.returncode == 0, second.stdout + second.stderr
        back = dsroll("rollback", "wheel", "--workload", "node-exporter", "--yes", *deployer)
        assert back.returncode == 0, back.stdout + back.stderr
        pods = kubectl(installed, k8s_cluster, "-n", namespace, "get", "pods", "-l", "dsroll.io/workload=node-exporter",
                       "-o", "jsonpath={.items[*].spec.containers[0].image}")  # fmt: skip
        images = set(pods.stdout.split())
        assert images == {"quay.io/prometheus/node-exporter:v1.8.2"}, images
        as_reviewer = f"system:serviceaccount:{namespace}:dsroll-wheel-reviewer"
        reviewer = dsroll("rollout", "wheel", "--yes", "--as", as_reviewer)
        assert reviewer.returncode == 2 and "RBAC preflight" in reviewer.stderr, reviewer.stderr
    finally:
        kubectl(installed, k8s_cluster, "delete", "--ignore-not-found", "-f", str(rbac))
