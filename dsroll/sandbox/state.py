"""Where sandboxes live on disk and the state file that outlives ``sandbox up``.

The state file is the only link between a running sandbox and later ``down``/``status``
calls (from other processes), so it is rewritten after every process start: if ``up``
dies half-way, ``down`` still finds and stops what was started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dsroll.errors import SandboxError
from dsroll.sandbox.components import Layout, Ports
from dsroll.sandbox.processes import Component

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")


def sandboxes_root() -> Path:
    """``$DSROLL_SANDBOX_HOME``, else ``$XDG_STATE_HOME/dsroll/sandboxes`` (~/.local/state)."""
    override = os.environ.get("DSROLL_SANDBOX_HOME")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "dsroll" / "sandboxes"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SandboxError(
            f"sandbox name {name!r}: use 1-42 lower-case letters, digits and '-' (it names a directory and a context)"
        )
    return name


def layout_for(name: str) -> Layout:
    return Layout(sandboxes_root() / check_name(name))


@dataclass(frozen=True)
class SandboxState:
    """What ``up`` started, persisted as JSON in the sandbox's state dir."""

    name: str
    phase: str  # "starting", "running" or "failed"
    created: float
    server: str
    context: str
    kubeconfig: Path
    kubectl: Path
    node_count: int
    classes: tuple[str, ...]
    ports: Ports
    components: tuple[Component, ...] = ()
    extra_kubeconfigs: tuple[Path, ...] = field(default=())

    def with_component(self, component: Component) -> SandboxState:
        others = tuple(c for c in self.components if c.name != component.name)
        return replace(self, components=(*others, component))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "created": self.created,
            "server": self.server,
            "context": self.context,
            "kubeconfig": str(self.kubeconfig),
            "kubectl": str(self.kubectl),
            "node_count": self.node_count,
            "classes": list(self.classes),
            "ports": self.ports.as_dict(),
            "components": [c.to_json() for c in self.components],
            "extra_kubeconfigs": [str(p) for p in self.extra_kubeconfigs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxState:
        ports = data["ports"]
        return cls(
            name=data["name"],
            phase=data["phase"],
            created=float(data["created"]),
            server=data["server"],
            context=data["context"],
            kubeconfig=Path(data["kubeconfig"]),
            kubectl=Path(data["kubectl"]),
            node_count=int(data["node_count"]),
            classes=tuple(data["classes"]),
            ports=Ports(
                etcd_client=ports["etcd-client"],
                etcd_peer=ports["etcd-peer"],
                apiserver=ports["kube-apiserver"],
                controller_manager=ports["kube-controller-manager"],
                scheduler=ports["kube-scheduler"],
            ),
            components=tuple(Component.from_json(c) for c in data.get("components", [])),
            extra_kubeconfigs=tuple(Path(p) for p in data.get("extra_kubeconfigs", [])),
        )


def save(layout: Layout, state: SandboxState) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(layout.state_file)


def load(layout: Layout) -> SandboxState | None:
    try:
        return SandboxState.from_json(json.loads(layout.state_file.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SandboxError(f"{layout.state_file} is unreadable ({exc}); remove {layout.root} by hand") from exc


def names() -> list[str]:
    root = sandboxes_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())


@contextlib.contextmanager
def locked(name: str, remove: bool = False) -> Iterator[None]:
    """Serialise up/down of one sandbox across processes (the lock file sits beside its dir).

    ``remove`` (for ``down``) deletes the lock file before releasing it, so one-off names
    such as ``pytest-<pid>`` leave nothing behind; a process already waiting on the old
    file then runs unserialised against a newcomer, a race ``down`` accepts.
    """
    root = sandboxes_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{check_name(name)}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
            if remove:
                path.unlink(missing_ok=True)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
