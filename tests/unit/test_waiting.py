"""``status --watch``'s verdict: each phase, a Lease fresh, expired or missing, and the deadline."""

from __future__ import annotations

import pytest

from dsroll.rollout.state import Failure, Phase, RolloutState, RunKind
from dsroll.rollout.waiting import LeaseSeen, Watched, lease_seen, watch_verdict
from dsroll.rollout.watch_status import progress_line

NOW = 1_000_000.0
FRESH = LeaseSeen("ci@runner/42", NOW + 20)
EXPIRED = LeaseSeen("ci@runner/42", NOW - 40)


def state(phase: Phase, *, failure: bool = False, operation: RunKind = RunKind.rollout) -> RolloutState:
    return RolloutState(
        operation=operation,
        phase=phase,
        target_revision="abc",
        previous_revision="def",
        steps=(1, 2, 3),
        step=1,
        nodes=("n1", "n2", "n3"),
        max_unavailable=1,
        pause="manual",
        ready_timeout="2m",
        min_ready_seconds=0,
        on_failure="rollback",
        original_strategy=None,
        who="ci",
        failure=Failure("n2", "CrashLoopBackOff") if failure else None,
    )


def one(
    phase: Phase | None, lease: LeaseSeen | None, *, seen: bool = True, failure: bool = False, timed_out: bool = False
) -> tuple[bool, int, str]:
    w = Watched("ns", "agent-gpu", state(phase, failure=failure) if phase else None, lease, seen)
    v = watch_verdict([w], "prod", NOW, timed_out=timed_out, waited="5m")
    return v.done, v.exit_code, v.message


@pytest.mark.parametrize(
    ("phase", "lease", "seen", "failure", "expected"),
    [
        (None, None, False, False, (True, 0)),
        (Phase.complete, None, True, False, (True, 0)),
        (Phase.partitioned, None, True, False, (True, 0)),
        (Phase.awaiting_approval, None, True, False, (True, 3)),
        (Phase.awaiting_approval, None, False, False, (True, 3)),
        (Phase.paused, None, True, False, (True, 3)),
        (Phase.paused, None, True, True, (True, 1)),
        (Phase.rolled_back, None, True, True, (True, 1)),
        (Phase.aborted, None, True, False, (True, 1)),
        (Phase.failed, None, True, True, (True, 1)),
        (Phase.rolled_back, None, False, True, (True, 0)),  # over before the watch began: nothing in progress
        (Phase.complete, FRESH, True, False, (False, 0)),  # the runner still holds it (between variants, or ending)
        (Phase.progressing, FRESH, True, False, (False, 0)),
        (Phase.pausing, FRESH, True, False, (False, 0)),
        (Phase.rolling_back, FRESH, True, False, (False, 0)),
        (Phase.progressing, EXPIRED, True, False, (True, 5)),
        (Phase.pausing, None, True, False, (True, 5)),
        (Phase.rolling_back, EXPIRED, False, False, (True, 5)),
        (Phase.complete, EXPIRED, True, False, (True, 0)),
    ],
)
def test_each_phase_and_lease(
    phase: Phase | None, lease: LeaseSeen | None, seen: bool, failure: bool, expected: tuple[bool, int]
) -> None:
    assert one(phase, lease, seen=seen, failure=failure)[:2] == expected


def test_a_gone_runner_is_named_with_the_lease_age_and_the_command_that_continues() -> None:
    assert one(Phase.progressing, EXPIRED)[2] == (
        "rollout of ns/agent-gpu stopped without finishing (its runner is gone: lease expired 40s ago): "
        "run 'dsroll resume prod'"
    )
    assert "no lease" in one(Phase.progressing, None)[2]
    w = Watched("ns", "a", state(Phase.rolling_back, operation=RunKind.rollback), None, True)
    assert "run 'dsroll rollback prod' again" in watch_verdict([w], "prod", NOW, timed_out=False).message


def test_the_deadline_passing_first_exits_6_and_only_then() -> None:
    assert one(Phase.progressing, FRESH, timed_out=True) == (
        True,
        6,
        "timed out after 5m waiting for the rollout of ns/agent-gpu",
    )
    assert one(Phase.complete, None, timed_out=True)[:2] == (True, 0)  # done at the deadline is done


def test_over_variants_a_gone_runner_first_then_the_first_stop_in_render_order() -> None:
    def w(name: str, phase: Phase, lease: LeaseSeen | None = None, failure: bool = False) -> Watched:
        return Watched("ns", name, state(phase, failure=failure), lease, True)

    done = [w("a", Phase.complete), w("b", Phase.awaiting_approval), w("c", Phase.rolled_back, failure=True)]
    assert watch_verdict(done, "prod", NOW, timed_out=False).exit_code == 3
    assert watch_verdict([*done, w("d", Phase.progressing)], "prod", NOW, timed_out=False).exit_code == 5
    assert not watch_verdict([*done, w("d", Phase.progressing, FRESH)], "prod", NOW, timed_out=False).done
    assert watch_verdict([], "prod", NOW, timed_out=False) == watch_verdict([], "prod", NOW, timed_out=False)


def test_a_lease_object_read_as_its_holder_and_expiry() -> None:
    lease = {
        "spec": {"holderIdentity": "me@h/1", "leaseDurationSeconds": 30, "renewTime": "2026-01-01T00:00:00.000000Z"}
    }
    seen = lease_seen(lease)
    assert seen is not None and seen.holder == "me@h/1"
    assert seen.expires_at == 1767225600.0 + 30
    assert lease_seen(None) is None


def test_progress_line() -> None:
    row = {
        "name": "fluent-bit-gpu",
        "deployed": True,
        "phase": "progressing",
        "step": 2,
        "steps": 3,
        "nodesUpdated": 5,
        "nodesReady": 5,
        "nodesTotal": 10,
    }
    assert progress_line(row) == "fluent-bit-gpu: step 2/3, 5/10 nodes updated, 5 ready (progressing)"
    assert progress_line({**row, "deployed": False}) == "fluent-bit-gpu: not deployed"
    assert progress_line({**row, "steps": None, "phase": None}) == (
        "fluent-bit-gpu: 5/10 nodes updated, 5 ready (no rollout recorded)"
    )
