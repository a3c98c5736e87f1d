"""The per-node health gate: a pure verdict from the new pod's JSON and the executor's clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsroll.rollout.health import FATAL_WAITING, Gate, Outcome, Verdict, assess, is_ready

GATE = Gate(ready_timeout=300.0, min_ready_seconds=10.0)
T0 = 1_000.0  # when the old pod was deleted (the executor's monotonic clock)
NAME = "agent-general-7xk2p"
POD = f"pod {NAME} on kwok-node-001"  # how every message names the new pod


def container(
    name: str = "agent", *, ready: bool = True, restarts: int = 0, waiting: str | None = None, message: str = ""
) -> dict[str, Any]:
    if waiting is not None:
        state: dict[str, Any] = {"waiting": {"reason": waiting, **({"message": message} if message else {})}}
    else:
        state = {"running": {"startedAt": "2026-11-23T10:00:02Z"}}
    return {
        "name": name,
        "image": "example.com/agent:1.1",
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": state,
    }


def new_pod(
    *,
    ready: bool = True,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    reason: str | None = None,
) -> dict[str, Any]:
    """The controller's new pod on node kwok-node-001, as the API server returns it."""
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
        "containerStatuses": containers if containers is not None else [container(ready=ready)],
    }
    if init is not None:
        status["initContainerStatuses"] = init
    if reason is not None:
        status["reason"] = reason
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": NAME,
            "namespace": "agents",
            "uid": "uid-new",
            "labels": {"controller-revision-hash": "6d9f7c5b8d"},
            "ownerReferences": [{"kind": "DaemonSet", "name": "agent-general", "uid": "ds-uid", "controller": True}],
        },
        "spec": {"nodeName": "kwok-node-001", "containers": [{"name": "agent", "image": "example.com/agent:1.1"}]},
        "status": status,
    }


def judge(
    pod: dict[str, Any] | None,
    now: float,
    *,
    ready_since: float | None = None,
    lost_ready: bool = False,
    gate: Gate = GATE,
) -> Verdict:
    return assess(pod, gate=gate, started=T0, ready_since=ready_since, lost_ready=lost_ready, now=now)


# --- is_ready --------------------------------------------------------------------------


def test_is_ready_reads_the_ready_condition() -> None:
    assert is_ready(new_pod(ready=True))
    assert not is_ready(new_pod(ready=False))
    assert not is_ready({"metadata": {"name": NAME}})
    assert not is_ready(
        {"metadata": {"name": NAME}, "status": {"conditions": [{"type": "ContainersReady", "status": "True"}]}}
    )


# --- waiting for the pod ---------------------------------------------------------------


def test_waits_for_the_controller_to_create_the_new_pod() -> None:
    got = judge(None, T0 + 5)
    assert got == Verdict(Outcome.WAITING, "waiting for the DaemonSet controller to create the new pod", T0 + 300)


@pytest.mark.parametrize("late", [0.0, 0.5, 3600.0])
def test_no_new_pod_within_ready_timeout_fails(late: float) -> None:
    got = judge(None, T0 + 300 + late)
    assert got == Verdict(Outcome.FAILED, "no new pod within readyTimeout (300s)")


def test_waits_for_a_new_pod_to_be_ready_until_the_timeout() -> None:
    creating = new_pod(ready=False, containers=[container(ready=False, waiting="ContainerCreating")], phase="Pending")
    got = judge(creating, T0 + 20)
    assert got == Verdict(Outcome.WAITING, f"waiting for {POD} to be Ready: still creating containers", T0 + 300)


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_ordinary_waiting_reasons_are_not_failures(reason: str) -> None:
    got = judge(new_pod(ready=False, containers=[container(ready=False, waiting=reason)]), T0 + 1)
    assert got.outcome is Outcome.WAITING


def test_not_ready_within_ready_timeout_fails() -> None:
    got = judge(new_pod(ready=False, containers=[container(ready=False)]), T0 + 300)
    assert got == Verdict(
        Outcome.FAILED, f"{POD} not Ready within readyTimeout (300s): running, not Ready (Ready is False)"
    )


def test_ready_seen_by_the_executor_is_needed_not_just_the_condition() -> None:
    # ``ready_since`` is the executor's own observation; without it the pod is still awaited
    got = judge(new_pod(ready=True), T0 + 30, ready_since=None)
    assert got.outcome is Outcome.WAITING


# --- minReadySeconds and HEALTHY -------------------------------------------------------


def test_ready_then_waits_out_min_ready_seconds() -> None:
    got = judge(new_pod(), T0 + 42, ready_since=T0 + 40)
    assert got.outcome is Outcome.WAITING
    assert got.wake_at == T0 + 50
    assert got.message == f"{POD} Ready, waiting 8s of minReadySeconds"


@pytest.mark.parametrize("after", [0.0, 0.1, 100.0])
def test_healthy_once_ready_for_min_ready_seconds(after: float) -> None:
    got = judge(new_pod(), T0 + 50 + after, ready_since=T0 + 40)
    assert got == Verdict(Outcome.HEALTHY, f"{POD} Ready")


def test_with_zero_min_ready_seconds_healthy_as_soon_as_ready() -> None:
    got = judge(new_pod(), T0 + 3, ready_since=T0 + 3, gate=Gate(ready_timeout=60, min_ready_seconds=0))
    assert got.outcome is Outcome.HEALTHY


def test_ready_in_time_is_not_failed_by_the_timeout_while_settling() -> None:
    # Ready at 295 s, readyTimeout 300 s, minReadySeconds 10 s: still settling at 302 s
    got = judge(new_pod(), T0 + 302, ready_since=T0 + 295)
    assert (got.outcome, got.wake_at) == (Outcome.WAITING, T0 + 305)
    assert judge(new_pod(), T0 + 305, ready_since=T0 + 295).outcome is Outcome.HEALTHY


def test_ready_lost_inside_min_ready_seconds_fails() -> None:
    got = judge(new_pod(ready=False), T0 + 45, ready_since=T0 + 40, lost_ready=True)
    assert got == Verdict(Outcome.FAILED, f"{POD} lost Ready within minReadySeconds (10s): Ready is False")


def test_a_pod_that_is_not_ready_now_is_never_healthy() -> None:
    # seen Ready before, not Ready in this snapshot, not (yet) flagged as lost: still awaited
    got = judge(new_pod(ready=False), T0 + 100, ready_since=T0 + 20)
    assert got == Verdict(
        Outcome.WAITING, f"waiting for {POD} to be Ready: running, not Ready (Ready is False)", T0 + 300
    )


def test_ready_lost_fails_even_if_ready_again() -> None:
    got = judge(new_pod(ready=True), T0 + 60, ready_since=T0 + 40, lost_ready=True)
    assert got.outcome is Outcome.FAILED


# --- failures from the container statuses ----------------------------------------------


@pytest.mark.parametrize(
    "reason", ["CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"]
)
def test_documented_waiting_reasons_fail_at_once(reason: str) -> None:
    assert reason in FATAL_WAITING
    pod = new_pod(ready=False, containers=[container(ready=False, waiting=reason)])
    got = judge(pod, T0 + 1)
    assert got.outcome is Outcome.FAILED
    assert got.message == f"{POD}: container agent: {reason}"
    assert got.wake_at is None


def test_failure_message_carries_the_kubelet_message() -> None:
    message = 'Back-off pulling image "example.com/agent:1.1-typo"'
    pod = new_pod(ready=False, containers=[container(ready=False, waiting="ImagePullBackOff", message=message)])
    assert judge(pod, T0 + 1).message == f"{POD}: container agent: ImagePullBackOff: {message}"


def test_a_crashing_sidecar_fails_the_node_even_if_the_main_container_runs() -> None:
    pod = new_pod(
        ready=False,
        containers=[container("agent"), container("metrics", ready=False, waiting="CrashLoopBackOff")],
    )
    got = judge(pod, T0 + 30)
    assert got.outcome is Outcome.FAILED and "container metrics: CrashLoopBackOff" in got.message


def test_an_init_container_that_cannot_pull_fails_the_node() -> None:
    pod = new_pod(
        ready=False,
        init=[container("setup", ready=False, waiting="ErrImagePull")],
        containers=[container(ready=False, waiting="PodInitializing")],
        phase="Pending",
    )
    got = judge(pod, T0 + 10)
    assert got.outcome is Outcome.FAILED and "container setup: ErrImagePull" in got.message


@pytest.mark.parametrize("restarts", [1, 4])
def test_a_restart_fails_the_node_even_when_ready_and_settled(restarts: int) -> None:
    pod = new_pod(containers=[container(restarts=restarts)])
    got = judge(pod, T0 + 100, ready_since=T0 + 20)
    assert got == Verdict(Outcome.FAILED, f"{POD}: container agent restarted {restarts} time(s)")


def test_an_init_container_restart_fails_the_node() -> None:
    pod = new_pod(ready=False, init=[container("setup", ready=False, restarts=2)])
    assert judge(pod, T0 + 10).message == f"{POD}: container setup restarted 2 time(s)"


def test_no_restarts_and_no_fatal_reason_is_not_a_failure() -> None:
    pod = new_pod(containers=[container("agent"), container("metrics")])
    assert judge(pod, T0 + 100, ready_since=T0 + 20).outcome is Outcome.HEALTHY


def test_a_failed_pod_phase_fails_the_node() -> None:
    got = judge(new_pod(ready=False, phase="Failed", reason="NodeAffinity"), T0 + 2)
    assert got == Verdict(Outcome.FAILED, f"{POD} failed: NodeAffinity")
    assert judge(new_pod(ready=False, phase="Failed"), T0 + 2).message == f"{POD} failed: phase Failed"


def test_a_pod_without_status_yet_is_awaited() -> None:
    pod = new_pod()
    pod.pop("status")
    assert judge(pod, T0 + 1) == Verdict(
        Outcome.WAITING, f"waiting for {POD} to be Ready: scheduled, no container started yet", T0 + 300
    )


# --- wake_at as a property -------------------------------------------------------------

pods = st.one_of(
    st.none(),
    st.builds(lambda r: new_pod(ready=r, containers=[container(ready=r)]), st.booleans()),
    st.builds(
        lambda reason: new_pod(ready=False, containers=[container(ready=False, waiting=reason)]),
        st.sampled_from(["ContainerCreating", "PodInitializing", *sorted(FATAL_WAITING)]),
    ),
)


@given(
    pod=pods,
    timeout=st.floats(1, 600),
    min_ready=st.floats(0, 120),
    elapsed=st.floats(0, 1000),
    ready_after=st.one_of(st.none(), st.floats(0, 1000)),
    lost=st.booleans(),
)
def test_waiting_names_a_future_wake_time_at_which_the_verdict_moves_on(
    pod: dict[str, Any] | None,
    timeout: float,
    min_ready: float,
    elapsed: float,
    ready_after: float | None,
    lost: bool,
) -> None:
    gate = Gate(timeout, min_ready)
    ready_since = None if ready_after is None or ready_after > elapsed else T0 + ready_after
    lost_ready = lost and ready_since is not None
    got = assess(pod, gate=gate, started=T0, ready_since=ready_since, lost_ready=lost_ready, now=T0 + elapsed)
    if got.outcome is Outcome.HEALTHY:
        assert pod is not None and is_ready(pod) and ready_since is not None and not lost_ready
        assert T0 + elapsed >= ready_since + min_ready, "healthy only after minReadySeconds of Ready"
    if got.outcome is not Outcome.WAITING:
        assert got.wake_at is None
        return
    assert got.wake_at is not None and got.wake_at > T0 + elapsed
    later = assess(pod, gate=gate, started=T0, ready_since=ready_since, lost_ready=lost_ready, now=got.wake_at)
    assert later.outcome is not Outcome.WAITING, "with no new event the verdict changes at wake_at"
