"""``status --watch``: is the rollout being watched over, and with which exit code?

Pure, like kubectl's StatusViewer: from what was last seen of each variant (its recorded
state, its Lease, whether this watch saw it running) to a verdict. The exit codes are the
ones the rollout itself ends with (``outcome.Result``), so a CI job that waits for a
rollout run elsewhere branches exactly as the job that ran it would:

- ``complete``, ``partitioned``: 0; ``awaiting-approval`` and a ``paused`` asked for with
  ``dsroll pause``: 3; ``rolled-back``, ``aborted``, ``failed``, and ``paused`` by
  ``onFailure: pause`` (a failure is recorded): 1.
- A running phase (``progressing``, ``pausing``, ``rolling-back``) whose Lease is missing
  or expired: the runner is gone and nobody will finish it: 5, resumable.
- A finished phase never seen running during this watch is a rollout that ended before
  it began: nothing is in progress, so 0 (``status`` without ``--watch`` shows it).
- The deadline passing first: 6.

A variant whose Lease is fresh is still being worked on, whatever its phase says: a
runner holds it from before it writes the first state until after the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dsroll.rollout.state import Phase, RolloutState, RunKind

TIMED_OUT = 6
RUNNER_GONE = 5
RUNNING = frozenset({Phase.progressing, Phase.pausing, Phase.rolling_back})


@dataclass(frozen=True)
class LeaseSeen:
    """A variant's Lease as far as waiting cares: who holds it and until when."""

    holder: str
    expires_at: float  # epoch seconds: the last renewal plus the lease's duration


def lease_seen(lease: Mapping[str, Any] | None) -> LeaseSeen | None:
    """The Lease object (``coordination.k8s.io/v1``) read as a ``LeaseSeen``; None when missing."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    at = datetime.strptime(renewed.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() if renewed else 0.0
    return LeaseSeen(spec.get("holderIdentity") or "", at + float(spec.get("leaseDurationSeconds") or 0))


@dataclass(frozen=True)
class Watched:
    """One variant as the watch last saw it."""

    namespace: str
    name: str
    state: RolloutState | None
    lease: LeaseSeen | None
    seen_running: bool = False  # this watch saw it in a running phase (or with a fresh Lease)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    def lease_fresh(self, now: float) -> bool:
        return self.lease is not None and now < self.lease.expires_at


@dataclass(frozen=True)
class Verdict:
    """Whether the wait is over; if so, the exit code and the line that explains it."""

    done: bool
    exit_code: int = 0
    message: str = ""


def running(watched: Watched, now: float) -> bool:
    """Somebody is working on this variant right now (as far as its Lease says)."""
    return watched.lease_fresh(now)


def _settled(w: Watched, env: str, now: float) -> tuple[int, str]:
    """The exit code of a variant nobody is working on, and why."""
    state = w.state
    if state is None:
        return 0, f"{w.label}: no rollout recorded"
    phase = state.phase
    if phase in RUNNING:
        if w.lease is None:
            gone = "its runner is gone: no lease"
        else:
            gone = f"its runner is gone: lease expired {max(0.0, now - w.lease.expires_at):.0f}s ago"
        rollback = state.operation is RunKind.rollback
        again = f"run 'dsroll rollback {env}' again" if rollback else f"run 'dsroll resume {env}'"
        return RUNNER_GONE, f"rollout of {w.label} stopped without finishing ({gone}): {again}"
    if phase is Phase.awaiting_approval:
        return 3, f"{w.label}: paused, awaiting approval: run 'dsroll resume {env}'"
    if phase is Phase.paused:
        if state.failure is not None:
            return 1, f"{w.label}: stopped on failure ({state.failure.node}: {state.failure.reason})"
        return 3, f"{w.label}: paused by 'dsroll pause': run 'dsroll resume {env}'"
    if phase in (Phase.complete, Phase.partitioned):
        return 0, f"{w.label}: {phase.value}"
    if not w.seen_running:
        return 0, f"{w.label}: nothing in progress (last rollout {phase.value})"
    failure = f" ({state.failure.node}: {state.failure.reason})" if state.failure else ""
    return 1, f"{w.label}: {phase.value}{failure}"


def watch_verdict(watched: Sequence[Watched], env: str, now: float, *, timed_out: bool, waited: str = "") -> Verdict:
    """Over once nobody works on any variant: the first non-zero code in render order
    (a runner gone, 5, before any other), else 0; 6 when the deadline passed first."""
    busy = [w for w in watched if running(w, now)]
    if busy:
        if timed_out:
            names = ", ".join(w.label for w in busy)
            after = waited or "the timeout"
            return Verdict(True, TIMED_OUT, f"timed out after {after} waiting for the rollout of {names}")
        return Verdict(False)
    found = [_settled(w, env, now) for w in watched]
    gone = [f for f in found if f[0] == RUNNER_GONE]
    stopped = gone or [f for f in found if f[0] != 0]
    if stopped:
        return Verdict(True, *stopped[0])
    return Verdict(True, 0, "; ".join(message for _, message in found) or "no variant in scope")
