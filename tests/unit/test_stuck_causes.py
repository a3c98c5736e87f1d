"""Stuck pods fail fast and say why: every cause the gate names, from pods, nodes and Events
shaped as the sandbox's API server returned them (Kubernetes 1.35, kwok nodes, the real
scheduler and DaemonSet controller).

Permanent causes fail at once; causes that may resolve are waited for up to readyTimeout
and then named. ``health.look`` decides when a cause is worth a request."""

from __future__ import annotations

from typing import Any

import pytest

from dsroll.rollout import causes
from dsroll.rollout.health import Clues, Gate, Look, Outcome, Verdict, assess, look
from dsroll.rollout.placement import Misfit, MisfitKind

GATE = Gate(ready_timeout=8.0, min_ready_seconds=10.0)
T0 = 500.0
NODE = "kwok-node-003"
NAME = "agent-general-zp5fh"
POD = f"pod {NAME} on {NODE}"
UID = "1b5dceed-534d-405f-83ec-9bd1113568ce"


def daemon_pod(
    *,
    scheduled: dict[str, Any] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    bound: bool = True,
    phase: str = "Pending",
    ready: dict[str, Any] | None = None,
    container: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The DaemonSet controller's pod for NODE: pinned by a matchFields affinity, with the
    tolerations the controller adds; ``bound`` once the scheduler set nodeName."""
    conditions = [scheduled or {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-29T08:35:14Z"}]
    if ready is not None:
        conditions.append(ready)
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable", "conditions": conditions}
    if statuses is not None:
        status["containerStatuses"] = statuses
    spec: dict[str, Any] = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}
                    ]
                }
            }
        },
        "containers": [container or {"name": "agent", "image": "example.com/agent:2.0"}],
        "tolerations": [
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists"},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists"},
        ],
    }
    if bound:
        spec["nodeName"] = NODE
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": NAME, "generateName": "agent-general-", "namespace": "e2e", "uid": UID},
        "spec": spec,
        "status": status,
    }


def unschedulable(message: str) -> dict[str, Any]:
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "observedGeneration": 1,
        "lastProbeTime": None,
        "lastTransitionTime": "2026-11-29T08:35:14Z",
    }


def event(reason: str, message: str, *, warning: bool = False, at: str = "2026-11-29T08:36:45Z") -> dict[str, Any]:
    """A core/v1 Event on the pod, as ``kubectl get events -o json`` shows it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{NAME}.18ec7731742cbb98", "namespace": "e2e", "creationTimestamp": at},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": NAME, "namespace": "e2e", "uid": UID},
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "source": {"component": "kubelet", "host": NODE},
    }


def verdict(pod: dict[str, Any] | None, after: float, *, lost: bool = False, **clues: Any) -> Verdict:
    return assess(
        pod,
        gate=GATE,
        started=T0,
        ready_since=T0 + 1 if lost else None,
        lost_ready=lost,
        now=T0 + after,
        clues=Clues(node=NODE, **clues),
    )


# --- the scheduler: permanent causes fail at once ------------------------------------------

HOST_PORT = (
    "0/4 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 3 node(s) didn't "
    "satisfy plugin(s) [NodeAffinity]. no new claims to deallocate, preemption: 0/4 nodes are available: 1 No "
    "preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling."
)
INSUFFICIENT_CPU = (
    "0/4 nodes are available: 1 Insufficient cpu, 3 node(s) didn't satisfy plugin(s) [NodeAffinity]. no new "
    "claims to deallocate, preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
)
TAINTED = (
    "0/4 nodes are available: 1 node(s) had untolerated taint(s), 3 node(s) didn't match Pod's node "
    "affinity/selector. no new claims to deallocate, preemption: 0/4 nodes are available: 4 Preemption is not "
    "helpful for scheduling."
)


def test_a_taken_host_port_fails_at_once_naming_the_port() -> None:
    container = {
        "name": "agent",
        "image": "example.com/agent:2.0",
        "ports": [{"containerPort": 9100, "hostPort": 9100}],
    }
    pod = daemon_pod(scheduled=unschedulable(HOST_PORT), bound=False, container=container)
    got = verdict(pod, 0.2)
    assert got == Verdict(
        Outcome.FAILED,
        f"{POD} cannot be scheduled: node(s) didn't have free ports for the requested pod ports (hostPort 9100/TCP)",
    )


def test_an_untolerated_taint_met_by_the_scheduler_fails_at_once() -> None:
    got = verdict(daemon_pod(scheduled=unschedulable(TAINTED), bound=False), 0.2)
    assert got == Verdict(Outcome.FAILED, f"{POD} cannot be scheduled: node(s) had untolerated taint(s)")


@pytest.mark.parametrize(
    "message",
    [
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: …",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
        "0/3 nodes are available: 1 node(s) had taint {dedicated: db}, that the pod didn't tolerate, "
        "2 node(s) didn't match node selector.",
    ],
)
def test_selectors_and_taints_in_every_wording_are_permanent(message: str) -> None:
    got = verdict(daemon_pod(scheduled=unschedulable(message), bound=False), 0.2)
    assert got.outcome is Outcome.FAILED and "cannot be scheduled" in got.message


# --- the scheduler: insufficient resources may resolve -------------------------------------


def big_pod(message: str = INSUFFICIENT_CPU) -> dict[str, Any]:
    container = {"name": "agent", "image": "example.com/agent:2.0", "resources": {"requests": {"cpu": "1k"}}}
    return daemon_pod(scheduled=unschedulable(message), bound=False, container=container)


def test_insufficient_cpu_waits_naming_the_cause() -> None:
    got = verdict(big_pod(), 3)
    assert got == Verdict(
        Outcome.WAITING,
        f"waiting for {POD} to be Ready: unschedulable: Insufficient cpu (agent requests cpu 1k)",
        T0 + 8,
    )


def test_insufficient_cpu_fails_after_ready_timeout_naming_the_cause() -> None:
    got = verdict(big_pod(), 8)
    assert got == Verdict(
        Outcome.FAILED,
        f"{POD} not Ready within readyTimeout (8s): unschedulable: Insufficient cpu (agent requests cpu 1k)",
    )


def test_a_permanent_reason_beside_a_transient_one_fails_at_once() -> None:
    both = (
        "0/1 nodes are available: 1 Insufficient memory, 1 node(s) didn't have free ports for the requested pod ports."
    )
    got = verdict(big_pod(both), 0.5)
    assert got.outcome is Outcome.FAILED
    assert "Insufficient memory; node(s) didn't have free ports" in got.message


def test_the_scheduler_message_may_come_from_an_event_only() -> None:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    failed = event("FailedScheduling", HOST_PORT, warning=True)
    got = verdict(daemon_pod(scheduled=condition, bound=False), 0.5, events=[failed])
    assert got.outcome is Outcome.FAILED and "didn't have free ports" in got.message
    # without the Event the cause is unknown, and may resolve: waited for
    assert verdict(daemon_pod(scheduled=condition, bound=False), 0.5).outcome is Outcome.WAITING


@pytest.mark.parametrize(
    ("message", "reasons"),
    [
        (INSUFFICIENT_CPU, ["Insufficient cpu"]),
        (HOST_PORT, ["node(s) didn't have free ports for the requested pod ports"]),
        (
            "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 Too many pods. preemption: 0/2 …",
            ["Insufficient nvidia.com/gpu", "Too many pods"],
        ),
        (
            "0/4 nodes are available: 4 node(s) didn't satisfy plugin(s) [NodeAffinity].",
            ["node(s) didn't satisfy plugin(s) [NodeAffinity]"],
        ),
        ("pod has unbound immediate PersistentVolumeClaims", ["pod has unbound immediate PersistentVolumeClaims"]),
        ("", []),
    ],
)
def test_scheduler_reasons_are_about_the_pods_own_node(message: str, reasons: list[str]) -> None:
    assert causes.scheduler_reasons(message) == reasons


# --- containers -----------------------------------------------------------------------------


def oom_killed(restarts: int = 5) -> dict[str, Any]:
    """kwok's oom-killed loop, as the API returned it."""
    return {
        "image": "example.com/agent:2.0",
        "imageID": "",
        "lastState": {
            "terminated": {
                "exitCode": 137,
                "finishedAt": "2026-11-29T08:35:24Z",
                "reason": "OOMKilled",
                "startedAt": "2026-11-29T08:35:24Z",
            }
        },
        "name": "agent",
        "ready": False,
        "restartCount": restarts,
        "started": False,
        "state": {
            "waiting": {
                "message": f"back-off restarting failed container agent in pod {NAME}",
                "reason": "CrashLoopBackOff",
            }
        },
    }


def not_ready() -> dict[str, Any]:
    return {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}


def test_oom_killed_names_the_reason_the_exit_code_and_the_restarts() -> None:
    got = verdict(daemon_pod(statuses=[oom_killed()], phase="Running", ready=not_ready()), 1)
    assert got == Verdict(
        Outcome.FAILED, f"{POD}: container agent OOMKilled (exit code 137), restarted 5 time(s), CrashLoopBackOff"
    )


def test_a_first_error_exit_fails_before_any_restart() -> None:
    terminated = {
        "name": "agent",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-29T08:35:16Z"}},
    }
    got = verdict(daemon_pod(statuses=[terminated], phase="Running", ready=not_ready()), 0.5)
    assert got == Verdict(Outcome.FAILED, f"{POD}: container agent exited with code 1 (Error)")


def test_an_init_container_that_completed_is_no_failure() -> None:
    pod = daemon_pod(statuses=[], phase="Pending", ready=not_ready())
    pod["status"]["initContainerStatuses"] = [
        {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    ]
    pod["status"]["containerStatuses"] = [
        {"name": "agent", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
    ]
    assert verdict(pod, 1).outcome is Outcome.WAITING
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"] = {"exitCode": 2, "reason": "Error"}
    assert verdict(pod, 1).message == f"{POD}: container setup exited with code 2 (Error)"


def test_termination_wording() -> None:
    assert causes.termination({"reason": "OOMKilled", "exitCode": 137}) == "OOMKilled (exit code 137)"
    assert causes.termination({"reason": "Error", "exitCode": 1}) == "exited with code 1 (Error)"
    assert causes.termination({"exitCode": 143}) == "exited with code 143"
    assert causes.termination({"reason": "ContainerStatusUnknown"}) == "terminated (ContainerStatusUnknown)"


# --- creating containers: a slow image pull, a volume not mounted --------------------------


def creating() -> dict[str, Any]:
    """The sandbox node agent's slow-pull pod: bound, containers waiting ContainerCreating."""
    status = {"name": "agent", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
    return daemon_pod(statuses=[status], ready=not_ready())


PULLING = event("Pulling", 'Pulling image "example.com/agent:2.0"')


def test_a_slow_pull_waits_naming_the_image_and_fails_after_ready_timeout() -> None:
    got = verdict(creating(), 6, events=[PULLING])
    assert got == Verdict(
        Outcome.WAITING,
        f'waiting for {POD} to be Ready: still creating containers (Pulling image "example.com/agent:2.0")',
        T0 + 8,
    )
    assert verdict(creating(), 9, events=[PULLING]) == Verdict(
        Outcome.FAILED,
        f'{POD} not Ready within readyTimeout (8s): still creating containers (Pulling image "example.com/agent:2.0")',
    )


def test_without_events_the_state_alone_names_it() -> None:
    assert verdict(creating(), 9).message == f"{POD} not Ready within readyTimeout (8s): still creating containers"


def test_a_warning_event_beats_the_pull_and_the_newest_wins() -> None:
    mount = event(
        "FailedMount",
        'MountVolume.SetUp failed for volume "config" : configmap "agent-config" not found',
        warning=True,
        at="2026-11-29T08:36:50Z",
    )
    older = event("FailedMount", "an older one", warning=True, at="2026-11-29T08:36:40Z")
    got = verdict(creating(), 9, events=[older, PULLING, mount])
    assert got.message.endswith(
        'still creating containers (FailedMount: MountVolume.SetUp failed for volume "config" : configmap '
        '"agent-config" not found)'
    )


def test_a_long_event_message_stays_one_short_line() -> None:
    noisy = event("FailedCreatePodSandBox", "line one\nline two " + "x" * 500, warning=True)
    message = verdict(creating(), 9, events=[noisy]).message
    assert "\n" not in message and len(message) < 350 and message.endswith("…)")


def test_no_container_started_by_the_kubelet() -> None:
    got = verdict(daemon_pod(phase="Pending"), 9)
    assert got.message == f"{POD} not Ready within readyTimeout (8s): scheduled, no container started yet"


# --- readiness ------------------------------------------------------------------------------


def running(ready: bool = False) -> dict[str, Any]:
    status = {"name": "agent", "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": "…"}}}
    condition = {"type": "Ready", "status": "True"} if ready else {
        "type": "Ready", "status": "False", "reason": "ContainersNotReady",
        "message": "containers with unready status: [agent]",
    }  # fmt: skip
    return daemon_pod(statuses=[status], phase="Running", ready=condition)


def test_never_ready_names_the_failed_probe_or_the_condition() -> None:
    assert verdict(running(), 8).message == (
        f"{POD} not Ready within readyTimeout (8s): running, not Ready "
        "(ContainersNotReady: containers with unready status: [agent])"
    )
    probe = event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", warning=True)
    assert verdict(running(), 8, events=[probe]).message.endswith(
        "running, not Ready (Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503)"
    )


def test_readiness_that_flaps_names_why_it_was_lost() -> None:
    """A flapping node: the node controller marks the pod not Ready (MarkPodsNotReady) and says so."""
    marked = event("NodeNotReady", "Node is not ready", warning=True)
    got = verdict(running(), 4, lost=True, events=[marked])
    assert got == Verdict(
        Outcome.FAILED, f"{POD} lost Ready within minReadySeconds (10s): NodeNotReady: Node is not ready"
    )
    again = verdict(running(ready=True), 4, lost=True)
    assert again.message == f"{POD} lost Ready within minReadySeconds (10s): Ready again"


# --- no pod at all ---------------------------------------------------------------------------


def test_no_pod_on_a_node_the_controller_will_not_use_fails_at_once() -> None:
    taint = Misfit(MisfitKind.TAINT, "the node has taint dedicated=db:NoSchedule, not tolerated by the pod template")
    got = verdict(None, 2.5, misfit=taint)
    assert got == Verdict(
        Outcome.FAILED,
        f"no new pod on {NODE}, the DaemonSet controller will not create one: the node has taint "
        "dedicated=db:NoSchedule, not tolerated by the pod template",
    )


def test_no_pod_on_a_node_that_is_not_ready_waits_and_names_it() -> None:
    down = Misfit(
        MisfitKind.TAINT, "the node has taint node.kubernetes.io/not-ready:NoSchedule (it is not Ready)", False
    )
    waiting = verdict(None, 3, misfit=down)
    assert waiting.outcome is Outcome.WAITING and waiting.wake_at == T0 + 8
    assert verdict(None, 8, misfit=down).message == (
        f"no new pod on {NODE} within readyTimeout (8s): the node has taint node.kubernetes.io/not-ready:NoSchedule "
        "(it is not Ready)"
    )


def test_no_pod_and_nothing_known_times_out_as_before() -> None:
    assert verdict(None, 8) == Verdict(Outcome.FAILED, f"no new pod on {NODE} within readyTimeout (8s)")


# --- when a look is worth a request -------------------------------------------------------------


def waiting(wake: float = T0 + 8) -> Verdict:
    return Verdict(Outcome.WAITING, "…", wake)


@pytest.mark.parametrize(
    ("pod", "after", "last", "expected"),
    [
        (None, 1.0, None, (Look.NONE, T0 + 2)),  # the controller's chance first
        (None, 2.0, None, (Look.NODE, T0 + 12)),
        (None, 5.0, T0 + 2, (Look.NONE, T0 + 12)),  # at most every 10 s
        (None, 12.0, T0 + 2, (Look.NODE, T0 + 22)),
        (creating(), 1.0, None, (Look.NONE, T0 + 5)),  # a pod gets a few seconds
        (creating(), 5.0, None, (Look.EVENTS, T0 + 15)),
        (running(ready=True), 30.0, None, (Look.NONE, None)),  # Ready, settling: nothing to find
    ],
)
def test_looks_are_rate_limited(pod: Any, after: float, last: float | None, expected: tuple[Look, float]) -> None:
    assert look(waiting(), pod, started=T0, now=T0 + after, last=last, free_at=T0, pod_at=T0) == expected


@pytest.mark.parametrize(
    ("pod", "pace", "after", "expected"),
    [
        (None, 1.0, 2.0, (Look.NODE, T0 + 12)),  # peers faster than the controller's chance: as before
        (None, 6.0, 2.0, (Look.NONE, T0 + 6)),  # peers take 6 s: no pod after 2 s is normal here
        (None, 6.0, 6.0, (Look.NODE, T0 + 16)),
        (creating(), 2.0, 5.0, (Look.EVENTS, T0 + 15)),
        (creating(), 6.0, 5.0, (Look.NONE, T0 + 12)),  # not Ready after twice the pace is in question
        (creating(), 6.0, 12.0, (Look.EVENTS, T0 + 22)),
    ],
)
def test_a_node_is_looked_at_once_slower_than_its_peers(
    pod: Any, pace: float, after: float, expected: tuple[Look, float]
) -> None:
    assert look(waiting(), pod, started=T0, now=T0 + after, last=None, pace=pace, free_at=T0, pod_at=T0) == expected


@pytest.mark.parametrize(
    ("pod", "free_at", "pod_at", "after", "pace", "expected"),
    [
        (None, None, None, 30.0, 0.0, (Look.NONE, None)),  # the old pod is still stopping: no chance yet
        (None, T0 + 25, None, 26.0, 0.0, (Look.NONE, T0 + 27)),  # the chance counts from its going
        (None, T0 + 25, None, 27.0, 0.0, (Look.NODE, T0 + 37)),
        (None, T0 + 1, None, 3.0, 6.0, (Look.NONE, T0 + 6)),  # and still waits for the peers' pace
        (creating(), T0 + 30, T0 + 30, 31.0, 0.0, (Look.NONE, T0 + 35)),  # a pod gets a few seconds of its own
        (creating(), T0 + 30, T0 + 30, 35.0, 0.0, (Look.EVENTS, T0 + 45)),
        (creating(), T0 + 30, T0 + 30, 35.0, 20.0, (Look.NONE, T0 + 40)),  # twice the pace from the deletion
    ],
)
def test_a_look_counts_from_when_the_controller_and_the_pod_had_their_chance(
    pod: Any, free_at: float | None, pod_at: float | None, after: float, pace: float, expected: tuple[Look, float]
) -> None:
    """A kubelet may take a pod's whole grace period to stop it, and only then does the
    DaemonSet controller create the new pod: the node is not read before, nor the new
    pod's Events before it is a few seconds old."""
    got = look(waiting(), pod, started=T0, now=T0 + after, last=None, pace=pace, free_at=free_at, pod_at=pod_at)
    assert got == expected


def test_a_failure_is_named_even_while_the_old_pod_is_still_there() -> None:
    failed = Verdict(Outcome.FAILED, "…")
    assert look(failed, None, started=T0, now=T0 + 8, last=None, free_at=None, pod_at=None) == (Look.NODE, None)


def test_a_failure_gets_one_fresh_look_to_name_it() -> None:
    failed = Verdict(Outcome.FAILED, "…")
    assert look(failed, creating(), started=T0, now=T0 + 8, last=None, free_at=T0, pod_at=T0) == (Look.EVENTS, None)
    assert look(failed, creating(), started=T0, now=T0 + 8, last=T0 + 5, free_at=T0, pod_at=T0) == (Look.EVENTS, None)
    assert look(failed, creating(), started=T0, now=T0 + 8, last=T0 + 7.5, free_at=T0, pod_at=T0) == (Look.NONE, None)
    assert look(
        Verdict(Outcome.HEALTHY, "…"), running(ready=True), started=T0, now=T0 + 8, last=None, free_at=T0, pod_at=T0
    ) == (
        Look.NONE,
        None,
    )


def test_a_pod_the_scheduler_has_not_bound_is_its_nodes_new_pod() -> None:
    """The gate can only judge what the pod view hands it: a pod pinned to NODE but
    Pending unscheduled (no nodeName) is NODE's new pod, not "no new pod"."""
    from dsroll.plan import PodView
    from dsroll.rollout.view import PodIndex

    pod = big_pod()
    pod["metadata"]["labels"] = {"controller-revision-hash": "new"}
    pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "uid": "ds", "controller": True}]
    assert PodView.of(pod).node == NODE
    index = PodIndex("ds", [NODE], "new")
    index.absorb([("SYNC", [pod])])
    assert index.new_pod(NODE, "old") is pod and NODE in index.unavailable


# --- what an informer keeps of a pod is enough for the gate ---------------------------------

RUNNING_READY_FALSE = {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                       "message": "containers with unready status: [agent]"}  # fmt: skip
SLIM_CASES = {
    "taken host port": daemon_pod(
        scheduled=unschedulable(HOST_PORT), bound=False,
        container={"name": "agent", "ports": [{"containerPort": 9123, "hostPort": 9123}]},
    ),
    "insufficient cpu": daemon_pod(
        scheduled=unschedulable(INSUFFICIENT_CPU), bound=False,
        container={"name": "agent", "image": "example.com/agent:2.0", "resources": {"requests": {"cpu": "1000"}}},
    ),
    "oom killed": daemon_pod(phase="Running", statuses=[{
        "name": "agent", "restartCount": 1, "image": "example.com/agent:2.0",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "startedAt": "2026-11-29T08:35:15Z"}},
    }]),
    "first error exit": daemon_pod(phase="Running", statuses=[{
        "name": "agent", "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 1}},
    }]),
    "slow pull": daemon_pod(
        statuses=[{"name": "agent", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]
    ),
    "never ready": daemon_pod(phase="Running", ready=RUNNING_READY_FALSE, statuses=[{
        "name": "agent", "restartCount": 0, "state": {"running": {"startedAt": "2026-11-29T08:35:15Z"}},
    }]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SLIM_CASES))
def test_the_slim_pod_an_informer_keeps_gets_the_same_verdict_as_the_whole_pod(case: str) -> None:
    from dsroll.plan import PodView
    from dsroll.rollout.view import slim_pod

    pod = SLIM_CASES[case]
    slim = slim_pod(pod)
    assert PodView.of(slim) == PodView.of(pod)
    for after in (1.0, 9.0):  # before and after readyTimeout
        assert verdict(slim, after) == verdict(pod, after), case
