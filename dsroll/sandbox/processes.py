"""Detached control-plane processes: start, identify, stop, measure.

Each component runs in a session of its own (``start_new_session``) so it outlives the
``dsroll sandbox up`` process and can be stopped as a whole process group later, from a
different process that only has the state file. A pid alone is not an identity once the
starter is gone (pids get recycled), so every record also carries the kernel's start
time of the process, and nothing is signalled unless both still match.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dsroll.errors import SandboxError


@dataclass(frozen=True)
class Component:
    """One started process, as recorded in the sandbox's state file."""

    name: str
    pid: int
    start_ticks: int
    log: Path
    port: int | None
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "log": str(self.log),
            "port": self.port,
            "argv": list(self.argv),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Component:
        port = data.get("port")
        argv = data.get("argv") or []
        return cls(
            name=str(data["name"]),
            pid=int(str(data["pid"])),
            start_ticks=int(str(data["start_ticks"])),
            log=Path(str(data["log"])),
            port=int(str(port)) if port is not None else None,
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
        )


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now, chosen outside the kernel's ephemeral range.

    Inside that range (where ``bind(0)`` would pick) the outgoing connections of the
    components we start next take source ports, and one of them can grab a port we
    chose before its server binds it. All sockets are held open until every port is
    chosen, so one call never returns the same port twice.
    """
    low, high = _ephemeral_range()
    pool = list(range(10000, low)) if low - 10000 >= 1000 else list(range(high + 1, 65536))
    random.SystemRandom().shuffle(pool)
    sockets: list[socket.socket] = []
    try:
        for port in pool:
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        if len(sockets) < count:
            raise SandboxError(f"could not find {count} free ports on 127.0.0.1")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(component: Component) -> bool:
    """True if the recorded process still runs (not a zombie, not a recycled pid)."""
    fields = _stat_fields(component.pid)
    if fields is None:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == component.start_ticks


def spawn(name: str, argv: Sequence[str], log: Path, port: int | None, cwd: Path) -> Component:
    """Start ``argv`` detached, with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    ticks = start_ticks(proc.pid)
    if ticks is None:  # exited before we could look: still record it so the log is named
        ticks = -1
    # The Popen object is dropped on purpose: the process belongs to no Python object,
    # only to the state file; stop() reaps it if it happens to be our child.
    proc.returncode = 0  # keeps Popen.__del__ from warning about a "still running" child
    return Component(name=name, pid=proc.pid, start_ticks=ticks, log=log, port=port, argv=tuple(argv))


def _reap(component: Component) -> bool:
    """Collect an exited child; True once nothing is left to collect (or it is not ours).

    The start time is checked first so a recycled pid, now another child of this
    process (a kubectl subprocess, say), is never waited for in its owner's place.
    """
    if start_ticks(component.pid) != component.start_ticks:
        return True
    try:
        done, _ = os.waitpid(component.pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == component.pid


def _signal_group(component: Component, sig: signal.Signals) -> None:
    if not is_alive(component):
        return
    try:
        os.killpg(component.pid, sig)  # the component leads its own session and group
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(component.pid, sig)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_gone(components: list[Component], seconds: float, interval: float) -> list[Component]:
    """Reap and re-check until every component is gone or ``seconds`` pass; the ones left."""
    deadline = time.monotonic() + seconds
    pending = components
    while pending and time.monotonic() < deadline:
        for comp in pending:
            _reap(comp)
        pending = [c for c in pending if is_alive(c)]
        if pending:
            time.sleep(interval)
    return pending


def stop(components: Iterable[Component], grace_seconds: float = 10.0) -> list[str]:
    """SIGTERM every component's process group, SIGKILL what is left after the grace time.

    Returns the names of components that were still alive after SIGKILL (normally none).
    """
    items = list(components)
    for comp in items:
        _signal_group(comp, signal.SIGTERM)
    pending = _wait_gone(items, grace_seconds, 0.1)
    for comp in pending:
        _signal_group(comp, signal.SIGKILL)
    # Children a component may have started share its group: kill any survivor, and wait
    # until the group is empty (a killed child takes a moment to die after its leader).
    groups = [c.pid for c in items if c.start_ticks >= 0 and start_ticks(c.pid) in (None, c.start_ticks)]
    for pgid in groups:
        for pid in _group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    survivors = _wait_gone(items, 5, 0.05)
    deadline = time.monotonic() + 5
    while any(_group_members(pgid) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.02)
    # Our own children (when up and down run in one process, as in pytest) must be
    # reaped. A Go process shows state Z as soon as its main thread exits but can only
    # be waited for once all its threads have: poll briefly instead of one try.
    unreaped = [c for c in items if c.name not in {s.name for s in survivors}]
    deadline = time.monotonic() + 5
    while unreaped and time.monotonic() < deadline:
        unreaped = [c for c in unreaped if not _reap(c)]
        if unreaped:
            time.sleep(0.02)
    return [c.name for c in survivors]


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
