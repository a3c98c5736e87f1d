"""Every rollout decision, as a pure function of what was observed and what was asked.

The executor (``executor.py``), the per-node pod swap (``podswap.py``) and the orphan
handover (``handover.py``) observe, ask here, perform and record; none of them chooses.
What is decided here:

- where a run starts: create, apply in place, prune, continue a rollback, stay paused,
  resume the recorded rollout, or start afresh (``start``; a new render supersedes a
  paused or unfinished rollout), and the state it starts from (``fresh_state``,
  ``resumed_state``); whether the controller has seen a spec (``observed``); when a
  created variant is done (``created``); when progress is worth a write (``record_due``);
- the steps a state carries out (``step_counts``) and what happens between two steps
  (``between_steps``);
- the next batch inside a step within the ``maxUnavailable`` budget, and how it departs
  from the plan's forecast (``next_batch``); how long events gather between two looks
  (``gather``); whether a node in flight is done (``judge``);
- what a failed health gate leads to (``after_failure``);
- the rollback target and its pending nodes (``rollback_target``, ``pending``);
- whether the cluster moved since a saved plan (``drift``).

Decisions read a ``view.PodIndex`` that the informer keeps up to date, never the whole
pod list, so a batch decision costs O(batch · log n) plus one look at each node without a
Ready pod (at most the budget, plus nodes unready on their own) per watch event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from dsroll.config import parse_duration
from dsroll.plan import Action, LiveFingerprint, Plan, PodView, Policy, resolve_max_unavailable, resolve_steps
from dsroll.rollout import revisions as revs
from dsroll.rollout.fleet import NodeTurn, Turn
from dsroll.rollout.health import NO_CLUES, Clues, Gate, Verdict, assess, is_ready
from dsroll.rollout.state import Phase, RolloutState, RunKind, SkippedNode

# --- where a run starts ------------------------------------------------------------------


class Start(StrEnum):
    CREATE = "create"  # a new DaemonSet: created as rendered, nothing to replace
    IN_PLACE = "in-place"  # applied as it is: no pod restarts
    PRUNE = "prune"  # deleted: no longer rendered
    CONTINUE_ROLLBACK = "continue-rollback"  # a rollback recorded in the cluster goes on
    STAY_PAUSED = "stay-paused"  # paused, and nobody approved going on
    RESUME = "resume"  # the recorded rollout continues where it stopped
    FRESH = "fresh"  # a new staged update


def start(action: Action, recorded: RolloutState | None, *, retargeted: bool, approve: bool) -> Start:
    """What a run does first, from the planned action and the state recorded in the cluster.

    ``retargeted``: the run moves to a new target — a new render, or a rollback's
    revision — which starts afresh from a paused, awaiting or unfinished rollout but keeps
    its way back (the stable revision it recorded); never from a rollback under way."""
    if action is Action.CREATE:
        return Start.CREATE
    if action is Action.IN_PLACE:
        return Start.IN_PLACE
    if action is Action.PRUNE:
        return Start.PRUNE
    if recorded is None or recorded.finished:
        return Start.FRESH
    if recorded.phase is Phase.rolling_back:
        return Start.CONTINUE_ROLLBACK
    if recorded.phase is Phase.paused and not retargeted and not approve:
        return Start.STAY_PAUSED
    return Start.FRESH if retargeted else Start.RESUME


def fresh_state(
    policy: Policy,
    order: Sequence[str],
    *,
    kind: RunKind,
    who: str,
    commit: str | None,
    steps: Sequence[str] | None,
    previous: str | None,
    original_strategy: dict[str, Any] | None,
    partition: int | None,
    on_failure: str | None = None,
    replacement: str | None = None,
    skipped: Sequence[SkippedNode] = (),
) -> RolloutState:
    """The state a rollout starts with; its target revision is filled in once the controller has one.

    Its steps count the nodes it can update: ``skipped`` (``skipped_at_start``) are not."""
    return RolloutState(
        operation=kind,
        phase=Phase.progressing,
        target_revision="",
        previous_revision=previous,
        steps=resolve_steps(steps or policy.steps, len(order) - len({s.node for s in skipped})),
        step=0,
        nodes=tuple(order),
        max_unavailable=resolve_max_unavailable(policy.max_unavailable, len(order)),
        pause=policy.pause,
        ready_timeout=policy.ready_timeout,
        min_ready_seconds=policy.min_ready_seconds,
        on_failure=on_failure or policy.on_failure,
        original_strategy=original_strategy,
        who=who,
        commit=commit,
        partition=partition,
        replacement=replacement,
        unready_nodes=policy.unready_nodes,
        skipped=tuple(skipped),
    )


def resumed_state(
    recorded: RolloutState,
    order: Sequence[str],
    *,
    steps: Sequence[str] | None,
    partition: int | None,
    approve: bool,
    who: str,
    skipped: Sequence[SkippedNode] = (),
) -> RolloutState:
    """A recorded rollout continued on today's nodes: its saved steps fitted to them
    (``--steps`` replaces them), its partition kept when ``resume`` approves, else the new
    one. Nodes it skipped before are looked at again: ``skipped`` are the ones still held
    or not Ready now. ``order`` is the plan's (``plan.resume_order``: the nodes already done
    first), since the annotation records counts, not the order."""
    total = len(order) - len({s.node for s in skipped})
    return recorded.entering(
        Phase.progressing if recorded.phase is not Phase.awaiting_approval else recorded.phase,
        nodes=tuple(order),
        counts=None,  # the whole order again: what the annotation only counted
        in_flight=(),  # recomputed from the pods
        steps=resolve_steps(steps, total) if steps else fit_steps(recorded.steps, total),
        partition=recorded.partition if approve else partition,
        who=who,
        skipped=tuple(skipped),
    )


def fit_steps(steps: Sequence[int], total: int) -> tuple[int, ...]:
    """Saved step counts on a node count that changed since: clamped, reaching the total."""
    return resolve_steps([str(c) for c in steps], total)


def observed(daemonset: Mapping[str, Any], written: int = 0) -> bool:
    """Whether the controller has seen ``daemonset``'s spec, and so recorded its revision:
    a copy older than generation ``written`` (what the run wrote last; a watch may not
    have its event yet) does not count, however observed."""
    generation = int((daemonset.get("metadata") or {}).get("generation") or 0)
    return generation >= written and int((daemonset.get("status") or {}).get("observedGeneration") or 0) >= generation


def created(daemonset: Mapping[str, Any]) -> tuple[bool, int, int]:
    """A DaemonSet just created: (every pod it wants is updated and Ready, Ready, wanted)."""
    status = daemonset.get("status") or {}
    desired = status.get("desiredNumberScheduled", 0)
    ready = status.get("numberReady", 0)
    done = observed(daemonset) and ready >= desired and status.get("updatedNumberScheduled", 0) >= desired
    return done, ready, desired


def record_interval(nodes: int) -> float:
    """Seconds between two writes of progress inside a step: 1 up to 200 nodes, then one
    more per 200 nodes, at most 10. Every write of the annotation is a DaemonSet update
    that the controller syncs the whole DaemonSet for (and sends to every DaemonSet
    watcher), which a big fleet pays for in the rollout's own speed."""
    return min(10.0, max(1.0, nodes / 200))


def record_due(last: RolloutState | None, state: RolloutState, since_written: float) -> bool:
    """Whether to write ``state`` now. Inside a step, refills of the batch are progress, not
    transitions: recorded at most every ``record_interval`` (a second up to 200 nodes; a
    resumed run recomputes progress from the pods anyway)."""
    if last is None or last.phase is not state.phase or last.step != state.step or not last.in_flight:
        return True
    if last.nodes != state.nodes or last.skipped != state.skipped:
        return True  # a node joined, left or was skipped: a rollback must know at once
    return since_written >= record_interval(state.node_count)


# --- steps ---------------------------------------------------------------------------------


def step_counts(state: RolloutState) -> tuple[int, ...]:
    """The cumulative counts of updated nodes the state's steps reach, capped by its
    partition; skipped and held nodes are not counted."""
    return resolve_steps([str(c) for c in state.steps], state.updatable, state.cap)


def first_step(state: RolloutState, counts: Sequence[int]) -> int:
    """Steps already behind us (a resumed run) count as done; a run never goes back."""
    return min(state.step, max(0, len(counts) - 1))


class Pause(StrEnum):
    GO = "go"  # no pause here
    APPROVED = "approved"  # a manual pause approved (--yes, or the `resume` that found it)
    APPROVAL = "approval"  # manual: ask on a TTY, else stop awaiting approval
    WAIT = "wait"  # a timed pause


def between_steps(state: RolloutState, number: int, *, yes: bool, approve: bool) -> tuple[Pause, float]:
    """Before step ``number`` (0-based): go, wait for approval, or wait ``seconds``.

    A step already started (a resumed run inside it) is not paused before again."""
    if number == 0 or (state.step == number and state.phase is Phase.progressing):
        return Pause.GO, 0.0
    if state.pause == "manual":
        approved = yes or (approve and state.phase is Phase.awaiting_approval)
        return (Pause.APPROVED if approved else Pause.APPROVAL), 0.0
    seconds = parse_duration(state.pause) if state.pause not in ("", "0") else 0.0
    return (Pause.WAIT, seconds) if seconds else (Pause.GO, 0.0)


# --- the batch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The nodes to start now, and why the live choice departs from the plan's forecast."""

    nodes: tuple[str, ...]
    free: tuple[str, ...] = ()  # already without a Ready pod: replacing them costs nothing
    ahead: tuple[str, ...] = ()  # of ``free``: taken before nodes the plan puts earlier
    unplanned: tuple[str, ...] = ()  # not among the plan's pending nodes (joined, or regressed, since)
    blocked: bool = False  # work is left but nodes without a Ready pod use the whole budget
    passed: tuple[tuple[str, NodeTurn], ...] = ()  # whose turn came and did not go: skip, wait or fail

    @property
    def off_plan(self) -> bool:
        return bool(self.ahead or self.unplanned)


def next_batch(
    *,
    budget: int,
    unavailable: Collection[str],
    in_flight: Collection[str],
    todo_unavailable: Sequence[str],
    first_todo: Callable[[int, Container[str]], list[str]],
    position: Mapping[str, int],
    planned: Container[str] | None = None,
    turn: Callable[[str], NodeTurn] | None = None,
) -> Batch:
    """The nodes to start now without ever exceeding ``budget`` nodes without a Ready pod.

    Nodes of the step already without a Ready pod go first: replacing them makes nothing
    worse. Then, in plan order, as many as the budget has slots left after every node
    without a Ready pod (``unavailable``: wherever in the variant, except the nodes
    unready or held on their own, which the caller leaves out) and every node in flight
    (whose new pod may be Ready but not yet for long enough). ``first_todo(k, skip)``
    gives the first ``k`` nodes still to do in plan order, ``skip`` left out. Each node
    drawn is asked its ``turn`` (``fleet.turn``): one that does not go costs no slot and
    is ``passed``.
    """
    busy = len(unavailable) + len(set(in_flight).difference(unavailable))
    slots = max(0, budget - busy)
    passed: dict[str, NodeTurn] = {}

    def admit(nodes: Sequence[str]) -> list[str]:
        going = []
        for node in nodes:
            verdict = turn(node) if turn is not None else NodeTurn(Turn.GO)
            if verdict.action is Turn.GO:
                going.append(node)
            else:
                passed[node] = verdict
        return going

    free = admit(sorted(todo_unavailable, key=lambda n: position.get(n, len(position))))
    costing: list[str] = []
    while len(costing) < slots:
        more = first_todo(slots - len(costing), {*free, *costing, *passed})
        if not more:
            break
        costing.extend(admit(more))
    nodes = (*free, *costing)
    waiting = first_todo(1, {*nodes, *passed})
    ahead = tuple(n for n in free if waiting and position.get(n, 0) > position.get(waiting[0], 0))
    unplanned = tuple(n for n in nodes if planned is not None and n not in planned)
    blocked = not nodes and bool(waiting) and not in_flight
    return Batch(nodes, tuple(free), ahead, unplanned, blocked, tuple(passed.items()))


#: A look at the step is at most this often: 1/40 of a replacement's pace, and never more
#: than ``GATHER_MAX`` seconds apart because of it.
GATHER_SHARE = 1 / 40
GATHER_MAX = 0.05


def gather(pace: float) -> float:
    """How long the pod swap lets watch events gather after a look before the next one.

    Each look costs about the same whatever it finds (the nodes touched judged, the batch,
    the progress line), and at 1,000 nodes a pod event comes every ~4 ms: one look per
    event cost CPU that a busy control plane on the same machine needs (dsroll 4.4-4.7
    CPU-s per 1,000-node rollout; 3.6-3.7 gathering, measured). Gathering for 1/40 of
    ``pace`` (the median delete-to-Ready time so far; 0 before the first node is done: no
    wait) and at most 50 ms leaves a freed slot idle at most 2.5 % of a replacement longer;
    the native controller leaves one idle 41-95 ms."""
    return min(GATHER_MAX, max(0.0, pace) * GATHER_SHARE)


# --- a node in flight -----------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    """A node whose old pod was deleted, waiting for its new pod to pass the gate.

    ``free_at``: when the node was first seen without its old pod (the DaemonSet controller
    creates the new one only then; a kubelet may take the pod's whole grace period to stop
    it); ``pod_at``: when the new pod was first seen. ``health.look`` counts from them."""

    started: float
    old_uid: str | None
    ready_since: float | None = None
    lost_ready: bool = False
    free_at: float | None = None
    pod_at: float | None = None


def judge(
    track: InFlight,
    pod: Mapping[str, Any] | None,
    gate: Gate,
    now: float,
    clues: Clues = NO_CLUES,
    *,
    old_gone: bool = True,
) -> tuple[InFlight, Verdict]:
    """The node's new pod (None while there is none) through the health gate; ``clues``
    (its Events, why its node cannot run it) sharpen the message (``evidence.py``).
    ``old_gone``: the node's old pod is no longer there (not even terminating)."""
    if track.free_at is None and (old_gone or pod is not None):
        track = replace(track, free_at=now)
    if pod is not None:
        if track.pod_at is None:
            track = replace(track, pod_at=now)
        ready = is_ready(pod)
        if ready and track.ready_since is None:
            track = replace(track, ready_since=now)
        elif not ready and track.ready_since is not None:
            track = replace(track, lost_ready=True)
    verdict = assess(
        pod,
        gate=gate,
        started=track.started,
        ready_since=track.ready_since,
        lost_ready=track.lost_ready,
        now=now,
        clues=clues,
    )
    return track, verdict


# --- failure ---------------------------------------------------------------------------------


class AfterFailure(StrEnum):
    ROLL_BACK = "roll-back"  # back to the previous revision, node by node
    RESTORE = "restore"  # no revision to go back to: the orphan replacement restores its backup
    PAUSE = "pause"
    ABORT = "abort"


def after_failure(state: RolloutState) -> AfterFailure:
    """What a failed health gate leads to, by ``onFailure`` and what there is to go back to."""
    if state.on_failure == "rollback":
        if state.previous_revision and state.previous_revision != state.target_revision:
            return AfterFailure.ROLL_BACK
        if state.replacement:
            return AfterFailure.RESTORE
    return AfterFailure.PAUSE if state.on_failure == "pause" else AfterFailure.ABORT


# --- rollback ------------------------------------------------------------------------------


def rollback_target(
    history: Sequence[revs.Revision], recorded: RolloutState | None, to_revision: int | None, where: str
) -> revs.Revision:
    """The revision a rollback goes to: the one named; else where an unfinished rollback
    was going; else the revision an unfinished rollout left; else the one before current."""
    if to_revision is not None:
        return revs.by_number(list(history), to_revision, where)
    if recorded is not None and not recorded.finished:
        if recorded.operation is RunKind.rollback:
            found = next((r for r in history if r.hash == recorded.target_revision), None)
            if found is not None:
                return found
        if recorded.previous_revision:
            found = next((r for r in history if r.hash == recorded.previous_revision), None)
            if found is not None:
                return found
    return revs.previous(list(history), where)


def pending(nodes: Sequence[str], pod_on: Callable[[str], PodView | None], target: str | None) -> tuple[str, ...]:
    """The nodes whose pod is not on ``target`` (all of them when the target has no hash yet)."""
    return tuple(n for n in nodes if target is None or getattr(pod_on(n), "revision", None) != target)


# --- drift -----------------------------------------------------------------------------------


def drift(saved: Plan, now: Mapping[tuple[str, str], LiveFingerprint | None], server: str | None) -> list[str]:
    """Everything that moved in the cluster since ``saved`` was made (empty: it runs as planned).

    ``now`` holds a fresh fingerprint per saved variant; a missing one means the variant is
    no longer part of the environment."""
    if saved.server and server and saved.server != server:
        return [f"the plan was made against {saved.server}, this is {server}"]
    found = []
    for variant in saved.variants:
        where = f"{variant.namespace}/{variant.name}"
        current = now.get(variant.key)
        if current is None:
            found.append(f"{where}: no longer part of the environment")
            continue
        found.extend(variant.live.drift(current, where))
    return found


def saved_plan_differs(saved: Plan, fresh: Plan) -> list[str]:
    """Where a saved plan would do something a plan made now would not; empty: carry it out.

    A saved plan is a file, and a file can be edited: its manifests are what gets applied
    and its prunes are what gets deleted. So it may only carry out what the environment
    renders and plans now, for the same variants, with the same actions and manifests
    and the same policy (its steps and partition are its own: ``plan --steps``).
    """
    if saved.environment != fresh.environment:
        return [f"it was made for environment {saved.environment!r}, not {fresh.environment!r}"]
    now = {vp.key: vp for vp in fresh.variants}
    found = []
    for vp in saved.variants:
        label = f"{vp.namespace}/{vp.name}"
        current = now.get(vp.key)
        if current is None:
            found.append(f"{label} is not a variant of this environment")
        elif vp.action is not current.action:
            found.append(f"{label} would be {vp.action.value}, a plan made now says {current.action.value}")
        elif (vp.manifest or None) != (current.manifest or None):
            found.append(f"{label}: its manifest is not what the environment renders")
        elif replace(vp.policy, steps=current.policy.steps) != current.policy:
            found.append(f"{label}: its rollout policy is not the environment's")
    return found
