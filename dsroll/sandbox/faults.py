"""Faults a test injects into a running sandbox: whole components and single nodes.

Component faults act on the processes recorded in the sandbox's ``state.json``:

* ``restart(name, component)``: stop the process (SIGTERM, SIGKILL after the grace time)
  and start it again with the very same argv, ports, data dir and log (appended), then
  wait until it is healthy again; ``state.json`` gets the new pid. Restarting etcd or the
  apiserver waits for the apiserver's ``/readyz`` too, so the cluster answers again when
  the call returns.
* ``pause(name, seconds)``: SIGSTOP the process group (the apiserver by default), SIGCONT
  after ``seconds``. A stopped apiserver keeps its listening socket, so clients connect
  and then hang until their own timeout: the "API server froze" failure, unlike a
  restart's "connection refused".

Node faults set the node annotation ``sandbox.dsroll.io/node-behaviour`` (see
``behaviours.py`` for the values); kwok's node stages and the node agent play it, and
``set_node_behaviour(..., wait=S)`` returns once kwok itself has let go of the node, or
taken it back (``kwoklog.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dsroll.errors import SandboxError
from dsroll.sandbox import behaviours, health, kwoklog, nodeagent, processes
from dsroll.sandbox.certs import Pki
from dsroll.sandbox.processes import Component
from dsroll.sandbox.state import SandboxState, layout_for, load, locked, save

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "node-agent")


def _state(name: str) -> SandboxState:
    state = load(layout_for(name))
    if state is None:
        raise SandboxError(f"sandbox {name!r} does not exist (dsroll sandbox up --name {name})")
    return state


def _component(state: SandboxState, component: str) -> Component:
    for comp in state.components:
        if comp.name == component:
            return comp
    known = ", ".join(c.name for c in state.components)
    raise SandboxError(f"sandbox {state.name!r} has no component {component!r} (it has: {known})")


def _api(state: SandboxState) -> nodeagent.Api:
    pki = Pki.under(layout_for(state.name).pki_dir)
    return nodeagent.Api(state.server, str(pki.ca_cert), str(pki.admin_cert), str(pki.admin_key))


def admin_api(name: str) -> nodeagent.Api:
    """A bare REST client with the sandbox's admin credentials and no retries of its own.

    For probing the apiserver during a fault: ``admin_api(n).call("GET", path, timeout=1)``
    raises OSError (a timeout, a refused connection) where a full client would retry.
    """
    return _api(_state(name))


def _readiness(state: SandboxState, comp: Component) -> list[tuple[str, Callable[[], bool]]]:
    """What "healthy again" means for each component, in the order to wait for it."""
    tls = health.admin_tls(Pki.under(layout_for(state.name).pki_dir))
    apiserver = ("the apiserver's /readyz", lambda: health.apiserver_ready(state.server, tls))
    if comp.name == "etcd":
        return [("/health", lambda: health.etcd_healthy(state.ports.etcd_client)), apiserver]
    if comp.name == "kube-apiserver":
        return [apiserver]
    if comp.name in ("kube-controller-manager", "kube-scheduler"):
        port = comp.port or 0
        return [("/healthz", lambda: health.serving_healthy(port))]
    if comp.name == "node-agent":
        marks = comp.log.read_text(errors="replace").count(nodeagent.READY_MARK) if comp.log.exists() else 0
        return [("its node watch", lambda: comp.log.read_text(errors="replace").count(nodeagent.READY_MARK) > marks)]
    return []  # kwok serves no health endpoint here: alive is all we can check


def restart(
    name: str, component: str, timeout: float = 90, grace_seconds: float = 3, argv: Sequence[str] | None = None
) -> Component:
    """Stop ``component`` of sandbox ``name`` and start it again as it was; returns the new record.

    SIGKILL follows SIGTERM after ``grace_seconds``: kube-apiserver stops listening within
    milliseconds of SIGTERM but, with its clients still connected, took 10 s to exit in a
    trial, and a node-lifecycle controller with a 10 s grace period then marked every node
    Unknown. Waits until the component (and, for etcd, the apiserver) is healthy again,
    or raises SandboxError naming the component and its log. ``argv`` replaces the
    recorded command line (``set_node_grace_period`` uses it); the default is the same one.
    """
    layout = layout_for(name)
    with locked(name):
        state = _state(name)
        old = _component(state, component)
        checks = _readiness(state, old)
        if processes.stop([old], grace_seconds):
            raise SandboxError(f"{component} of sandbox {name!r} survived SIGKILL")
        new = processes.spawn(old.name, tuple(argv or old.argv), old.log, old.port, layout.root)
        save(layout, state.with_component(new))
    for what, check in checks:
        health.wait_for(check, new, what, timeout)
    return new


def set_node_grace_period(name: str, seconds: int) -> Component:
    """Restart kube-controller-manager with ``--node-monitor-grace-period={seconds}s``.

    The sandbox's short grace period (10 s) lets a ``not-ready`` node turn Unknown within
    seconds, but it also turns every node Unknown for a moment when the control plane is
    away longer than that (a paused or restarting apiserver, as in a real cluster with
    such a setting). A test of an outage raises it first and puts it back afterwards.
    """
    kcm = _component(_state(name), "kube-controller-manager")
    flag = "--node-monitor-grace-period="
    argv = [a for a in kcm.argv if not a.startswith(flag)] + [f"{flag}{seconds}s"]
    return restart(name, "kube-controller-manager", argv=argv)


def _signal(comp: Component, sig: signal.Signals) -> None:
    if not processes.is_alive(comp):
        raise SandboxError(f"{comp.name} (pid {comp.pid}) is not running")
    os.killpg(comp.pid, sig)


def pause(name: str, seconds: float, component: str = "kube-apiserver", wait: bool = True) -> threading.Timer | None:
    """SIGSTOP ``component`` for ``seconds``, then SIGCONT.

    ``wait=True`` blocks for the pause (the CLI); ``wait=False`` returns at once with the
    timer that will resume it, so a test can act during the pause (``timer.join()`` waits
    for the resume). Prefer ``paused()`` in tests: it resumes even when the test fails.
    """
    comp = _component(_state(name), component)
    _signal(comp, signal.SIGSTOP)
    timer = threading.Timer(seconds, _signal, (comp, signal.SIGCONT))
    timer.daemon = False  # the interpreter waits for it: a process never stays stopped
    timer.start()
    if wait:
        timer.join()
        return None
    return timer


@contextlib.contextmanager
def paused(name: str, component: str = "kube-apiserver") -> Iterator[Component]:
    """``with paused(name): ...``: the component is stopped inside the block, resumed after."""
    comp = _component(_state(name), component)
    _signal(comp, signal.SIGSTOP)
    try:
        yield comp
    finally:
        _signal(comp, signal.SIGCONT)


def set_node_behaviour(name: str, node: str, behaviour: str | None, wait: float = 0) -> None:
    """Annotate ``node`` with ``behaviour`` (validated first); None or "healthy" removes it.

    With ``wait`` (seconds), return only once kwok sees it (``kwoklog.py``): for a
    behaviour the node agent plays, once kwok has let go of the node, so that pods created
    or deleted next meet the behaviour; when a node the agent held heals, once kwok holds
    it again and its cache knows it. SandboxError after ``wait`` seconds, saying what kwok
    last made of the node's Lease.
    """
    value = None if behaviour in (None, "", "healthy") else behaviours.parse(behaviour)
    state = _state(name)
    api = _api(state)
    lease_path = behaviours.lease_path(node)
    was_held = bool(wait) and behaviours.held_by_agent(_read(api, lease_path))
    kwok_log = _component(state, "kwok").log
    start = kwok_log.stat().st_size if kwok_log.exists() else 0
    body = {"metadata": {"annotations": {behaviours.NODE_BEHAVIOUR: value.annotation() if value else None}}}
    status, _ = api.call("PATCH", f"/api/v1/nodes/{node}", body, "application/merge-patch+json")
    if status != 200:
        raise SandboxError(f"cannot annotate node {node!r} of sandbox {name!r}: HTTP {status}")
    taking = value is not None and value.holds_lease
    if not wait or not (taking or was_held):  # flapping, or healthy already: kwok's Lease throughout
        return
    verdict = kwoklog.kwok_let_go if taking else kwoklog.kwok_took_back
    tail = _LogTail(kwok_log, start)
    looks: list[kwoklog.Look] = []
    deadline = time.monotonic() + wait
    while True:
        looks += kwoklog.parse_lines(tail.lines())
        if verdict(looks, node, _read(api, lease_path)):
            return
        if time.monotonic() > deadline:
            doing = "let go of it" if taking else "taken it back"
            raise SandboxError(
                f"node {node}: kwok has not {doing} {wait:g}s after {behaviour or 'healthy'}: "
                f"{kwoklog.describe(looks, node)} (its log: {kwok_log})"
            )
        time.sleep(0.1)


def _read(api: nodeagent.Api, path: str) -> dict[str, Any] | None:
    """The object at ``path``; None if there is none or the apiserver did not answer (asked again)."""
    try:
        status, body = api.call("GET", path)
    except OSError:
        return None
    return body if status == 200 else None


class _LogTail:
    """The complete lines a log file gained since ``offset``, a read at a time."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path, self.offset, self.partial = path, offset, b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def wait_apiserver(name: str, timeout: float = 60) -> float:
    """Seconds until the apiserver answers /readyz again (after a pause, say)."""
    state = _state(name)
    tls = health.admin_tls(Pki.under(layout_for(name).pki_dir))
    started = time.monotonic()
    health.wait_for(
        lambda: health.apiserver_ready(state.server, tls), _component(state, "kube-apiserver"), "/readyz", timeout
    )
    return time.monotonic() - started
