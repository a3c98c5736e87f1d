"""Bring a sandbox up, report on it, take it down.

A sandbox is etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and the
node agent, started as detached processes on free loopback ports, plus ``nodes`` fake
nodes. It is real where dsroll can tell the difference (API server, admission, DaemonSet
controller, garbage collector, node lifecycle, scheduler) and fake where it cannot
(kubelets: kwok plays them, including the failure behaviours of ``stages/``; the node
agent plays the node behaviours kwok cannot, see ``behaviours.py``).
"""

from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from dsroll.errors import SandboxError
from dsroll.sandbox import health, nodeagent, processes
from dsroll.sandbox import kubeconfig as kcfg
from dsroll.sandbox import nodes as fake_nodes
from dsroll.sandbox.behaviours import lease_timing
from dsroll.sandbox.build import ensure_binaries
from dsroll.sandbox.certs import Pki, make_pki
from dsroll.sandbox.components import (
    FIRST_SERVICE_IP,
    Layout,
    Ports,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    kwok_argv,
    node_agent_argv,
    scheduler_argv,
)
from dsroll.sandbox.processes import Component
from dsroll.sandbox.state import SandboxState, check_name, layout_for, load, locked, names, save

Progress = Callable[[str], None]
COMPONENT_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "node-agent")
STAGE_FILES = ("node-default.yaml", "node-behaviours.yaml", "pod-default.yaml", "pod-behaviours.yaml")


@dataclass(frozen=True)
class SandboxInfo:
    """A running sandbox: how to reach it and what it is made of."""

    name: str
    state_dir: Path
    kubeconfig: Path
    context: str
    server: str
    kubectl: Path
    node_count: int
    classes: tuple[str, ...]
    ports: Mapping[str, int] = field(hash=False)
    components: tuple[Component, ...] = ()

    def node_specs(self) -> list[fake_nodes.NodeSpec]:
        """The nodes ``up`` created (a pure function of node_count and classes)."""
        return fake_nodes.node_specs(self.node_count, self.classes)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    alive: bool
    port: int | None
    log: Path


@dataclass(frozen=True)
class SandboxStatus:
    """What ``status`` observed; ``running`` means every process alive and /readyz ok."""

    name: str
    state_dir: Path
    exists: bool
    phase: str
    running: bool
    server: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    node_count: int | None = None
    ports: Mapping[str, int] = field(default_factory=dict, hash=False)
    components: tuple[ComponentStatus, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``dsroll sandbox status -o json``."""
        return {
            "name": self.name,
            "stateDir": str(self.state_dir),
            "exists": self.exists,
            "phase": self.phase,
            "running": self.running,
            "server": self.server,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "context": self.context,
            "nodes": self.node_count,
            "ports": dict(self.ports),
            "components": [
                {"name": c.name, "pid": c.pid, "alive": c.alive, "port": c.port, "log": str(c.log)}
                for c in self.components
            ],
        }


def _quiet(_: str) -> None:
    return None


def _info(state: SandboxState, layout: Layout) -> SandboxInfo:
    return SandboxInfo(
        name=state.name,
        state_dir=layout.root,
        kubeconfig=state.kubeconfig,
        context=state.context,
        server=state.server,
        kubectl=state.kubectl,
        node_count=state.node_count,
        classes=state.classes,
        ports=state.ports.as_dict(),
        components=state.components,
    )


def _healthy(state: SandboxState, layout: Layout) -> bool:
    if state.phase != "running" or len(state.components) != len(COMPONENT_ORDER):
        return False
    if not all(processes.is_alive(c) for c in state.components):
        return False
    try:
        return health.apiserver_ready(state.server, health.admin_tls(Pki.under(layout.pki_dir)))
    except (OSError, ValueError):
        return False


def _write_kwok_config(layout: Layout) -> None:
    stages = resources.files("dsroll.sandbox").joinpath("stages")
    docs = [stages.joinpath(f).read_text() for f in STAGE_FILES]
    layout.kwok_config.write_text("\n---\n".join(d.strip() for d in docs) + "\n")


def _api_get(state: SandboxState, tls: Any, path: str, accept: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(state.server + path, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, context=tls, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def _count_nodes(state: SandboxState, tls: Any) -> int | None:
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    status, body = _api_get(state, tls, "/api/v1/nodes", accept)
    return len(body.get("items") or []) if status == 200 and body else None


def _start(state: SandboxState, layout: Layout, specs: Sequence[fake_nodes.NodeSpec], say: Progress) -> SandboxState:
    """Start every component in dependency order, saving the state after each start."""
    # The kubernetes client takes ~1s to import; do it while etcd and the apiserver boot.
    threading.Thread(target=importlib.import_module, args=("kubernetes.config",), daemon=True).start()
    bins = ensure_binaries()
    pki = make_pki(layout.pki_dir, FIRST_SERVICE_IP)
    kcfg.write(layout.kubeconfig, kcfg.admin_kubeconfig(state.name, state.server, pki))
    _write_kwok_config(layout)
    layout.etcd_data.mkdir(parents=True, exist_ok=True)
    ports = state.ports
    t0 = time.monotonic()

    def start(name: str, argv: list[str], port: int | None) -> Component:
        nonlocal state
        comp = processes.spawn(name, argv, layout.log(name), port, layout.root)
        state = state.with_component(comp)
        save(layout, state)
        return comp

    etcd = start("etcd", etcd_argv(bins, layout, ports), ports.etcd_client)
    health.wait_for(lambda: health.etcd_healthy(ports.etcd_client), etcd, "/health", 30)
    say(f"etcd healthy on 127.0.0.1:{ports.etcd_client} ({time.monotonic() - t0:.1f}s)")

    apiserver = start("kube-apiserver", apiserver_argv(bins, layout, ports, pki), ports.apiserver)
    tls = health.admin_tls(pki)
    health.wait_for(lambda: health.apiserver_ready(state.server, tls), apiserver, "/readyz", 120)
    say(f"kube-apiserver ready at {state.server} ({time.monotonic() - t0:.1f}s)")

    # Nodes first: on two cores, three Go binaries booting at once slow every request down.
    created = fake_nodes.add_nodes(layout.kubeconfig, specs)
    say(f"created {created} kwok nodes ({time.monotonic() - t0:.1f}s)")
    lease_seconds, grace_seconds = lease_timing(len(specs))
    kcm = start(
        "kube-controller-manager",
        controller_manager_argv(bins, layout, ports, pki, grace_seconds),
        ports.controller_manager,
    )
    sched = start("kube-scheduler", scheduler_argv(bins, layout, ports), ports.scheduler)
    kwok = start("kwok", kwok_argv(bins, layout, lease_seconds), None)
    agent = start("node-agent", node_agent_argv(state.server, pki, lease_seconds), None)

    health.wait_for(lambda: health.serving_healthy(ports.controller_manager), kcm, "/healthz", 60)
    health.wait_for(lambda: health.serving_healthy(ports.scheduler), sched, "/healthz", 60)
    # The serviceaccount controller's first effect; pods cannot be created before it.
    health.wait_for(
        lambda: _api_get(state, tls, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        kcm,
        "the default ServiceAccount (serviceaccount controller)",
        60,
    )
    say(f"kube-controller-manager and kube-scheduler healthy ({time.monotonic() - t0:.1f}s)")

    wanted = {s.name for s in specs}
    health.wait_for(
        lambda: wanted <= fake_nodes.ready_node_names(layout.kubeconfig),
        kwok,
        f"all {len(wanted)} nodes Ready (kwok manages nodes annotated kwok.x-k8s.io/node=fake)",
        60 + 0.1 * len(wanted),
        interval=0.5,
    )
    health.wait_for(lambda: nodeagent.READY_MARK in agent.log.read_text(errors="replace"), agent, "its node watch", 30)
    say(f"kwok: {len(wanted)} nodes Ready, node agent watching ({time.monotonic() - t0:.1f}s)")
    return state


def up(
    name: str = "default",
    nodes: int = 12,
    classes: Sequence[str] = ("gpu", "arm64", "general"),
    kubeconfig: Path | None = None,
    progress: Progress | None = None,
) -> SandboxInfo:
    """Start sandbox ``name`` (or return it if it already runs and is healthy).

    A leftover of a crashed or half-started sandbox of the same name is stopped and
    replaced. On failure everything started is stopped, the logs are kept in the state
    dir, and SandboxError names the component that failed and its log.
    """
    say = progress or _quiet
    classes = tuple(c.strip() for c in classes if c.strip())
    specs = fake_nodes.node_specs(nodes, classes)
    layout = layout_for(name)
    with locked(name):
        existing = load(layout)
        if existing and _healthy(existing, layout):
            say(f"sandbox {name!r} is already running at {existing.server}")
            existing = _export_kubeconfig(existing, layout, kubeconfig)
            return _info(existing, layout)
        if existing:
            say(f"sandbox {name!r} exists but is not healthy: stopping what is left of it")
            _teardown(existing, layout)
        for attempt in (1, 2):
            try:
                state = _fresh_start(name, nodes, classes, layout, specs, say)
                break
            except SandboxError as exc:
                # A port we chose was taken between choosing and binding: choose again once.
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
                say(f"port conflict, retrying with other ports: {str(exc).splitlines()[0]}")
        return _info(_export_kubeconfig(state, layout, kubeconfig), layout)


def _fresh_start(
    name: str,
    nodes: int,
    classes: tuple[str, ...],
    layout: Layout,
    specs: Sequence[fake_nodes.NodeSpec],
    say: Progress,
) -> SandboxState:
    """One attempt: new state dir, new ports, every process; on failure all stopped again."""
    if layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True)
    ports = Ports(*processes.free_ports(5))
    state = SandboxState(
        name=name,
        phase="starting",
        created=time.time(),
        server=f"https://127.0.0.1:{ports.apiserver}",
        context=kcfg.context_name(name),
        kubeconfig=layout.kubeconfig,
        kubectl=ensure_binaries().kubectl,
        node_count=nodes,
        classes=classes,
        ports=ports,
    )
    save(layout, state)
    try:
        state = _start(state, layout, specs, say)
    except BaseException:
        started = load(layout) or state
        _stop_in_order(started.components)
        save(layout, _replace_phase(started, "failed"))
        raise
    state = _replace_phase(state, "running")
    save(layout, state)
    return state


def _stop_in_order(components: Sequence[Component]) -> list[str]:
    """Clients first, then the apiserver, then etcd.

    Stopped together, kube-apiserver outlives etcd and then keeps retrying it instead of
    exiting (it needed SIGKILL after 30s in a trial); in this order each exits at once.
    """
    rank = {"etcd": 2, "kube-apiserver": 1}
    survivors: list[str] = []
    for level in (0, 1, 2):
        survivors += processes.stop([c for c in components if rank.get(c.name, 0) == level])
    return survivors


def _replace_phase(state: SandboxState, phase: str) -> SandboxState:
    return replace(state, phase=phase)


def _export_kubeconfig(state: SandboxState, layout: Layout, target: Path | None) -> SandboxState:
    """Merge the admin kubeconfig into ``target`` and remember it, so ``down`` can clean it."""
    if target is None:
        return state
    target = target.expanduser().absolute()
    if target == layout.kubeconfig:
        return state
    pki = Pki.under(layout.pki_dir)
    kcfg.write(target, kcfg.admin_kubeconfig(state.name, state.server, pki), merge_existing=True)
    if target not in state.extra_kubeconfigs:
        state = replace(state, extra_kubeconfigs=(*state.extra_kubeconfigs, target))
        save(layout, state)
    return state


def _teardown(state: SandboxState, layout: Layout) -> None:
    survivors = _stop_in_order(state.components)
    if survivors:
        raise SandboxError(
            f"sandbox {state.name!r}: {', '.join(survivors)} survived SIGKILL; state kept in {layout.root}"
        )
    for path in state.extra_kubeconfigs:
        kcfg.remove_from(path, state.name)
    shutil.rmtree(layout.root, ignore_errors=True)


def down(name: str = "default") -> bool:
    """Stop every process of sandbox ``name`` and delete its state dir; False if there was none."""
    layout = layout_for(name)
    with locked(name, remove=True):
        state = load(layout)
        if state is None:
            if layout.root.exists():
                shutil.rmtree(layout.root, ignore_errors=True)
                return True
            return False
        _teardown(state, layout)
        return True


def status(name: str = "default") -> SandboxStatus:
    """Observe sandbox ``name`` without changing it."""
    layout = layout_for(check_name(name))
    state = load(layout)
    if state is None:
        return SandboxStatus(name=name, state_dir=layout.root, exists=False, phase="absent", running=False)
    comps = {c.name: c for c in state.components}
    statuses = tuple(
        ComponentStatus(name=c.name, pid=c.pid, alive=processes.is_alive(c), port=c.port, log=c.log)
        for c in (comps[n] for n in COMPONENT_ORDER if n in comps)
    )
    node_count = None
    ready = False
    if statuses and all(c.alive for c in statuses):
        try:
            tls = health.admin_tls(Pki.under(layout.pki_dir))
            ready = health.apiserver_ready(state.server, tls)
            node_count = _count_nodes(state, tls) if ready else None
        except (OSError, ValueError):
            ready = False
    running = ready and state.phase == "running" and len(statuses) == len(COMPONENT_ORDER)
    return SandboxStatus(
        name=name,
        state_dir=layout.root,
        exists=True,
        phase=state.phase,
        running=running,
        server=state.server,
        kubeconfig=state.kubeconfig,
        context=state.context,
        node_count=node_count,
        ports=state.ports.as_dict(),
        components=statuses,
    )


def list_sandboxes() -> list[SandboxStatus]:
    """Status of every sandbox that has a state dir."""
    return [status(n) for n in names()]


def component_rss(info: SandboxInfo | SandboxState) -> dict[str, int]:
    """Resident memory of each component in bytes (0 for a component that is gone)."""
    return {c.name: processes.rss_bytes(c.pid) if processes.is_alive(c) else 0 for c in info.components}
