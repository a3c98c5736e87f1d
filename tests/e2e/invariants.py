"""Rollout invariants as pure functions of a pod timeline recorded by `podwatch.PodWatcher`.

Each checker replays the timeline (`states`) and raises `AssertionError` naming the node,
the time and the pods when an invariant breaks; the plain functions return what they
measured, for tests that assert something else about it. What the real DaemonSet
controller does, which these checkers were validated against, is in podwatch's docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from e2e.podwatch import DELETED, MODIFIED, TERMINAL_PHASES, PodEvent, clock

Timeline = Sequence[PodEvent]


def _selected(event: PodEvent, workload: str | None, cls: str | None) -> bool:
    return (workload is None or event.workload == workload) and (cls is None or event.cls == cls)


def _what(workload: str | None, cls: str | None) -> str:
    if workload and cls:
        return f"variant {workload}-{cls}"
    if workload or cls:
        return f"{'workload' if workload else 'class'} {workload or cls}"
    return "pods"


def states(timeline: Timeline) -> Iterator[tuple[PodEvent, Mapping[str, PodEvent]]]:
    """Each event with the live pods (uid → latest event) just after it. The mapping is reused."""
    live: dict[str, PodEvent] = {}
    for event in timeline:
        if event.type == DELETED:
            live.pop(event.uid, None)
        else:
            live[event.uid] = event
        yield event, live


def live_pods(timeline: Timeline, *, workload: str | None = None, cls: str | None = None) -> dict[str, list[PodEvent]]:
    """Node → the selected pods that exist at the end of the timeline."""
    live: Mapping[str, PodEvent] = {}
    for _, after in states(timeline):
        live = after
    found: dict[str, list[PodEvent]] = {}
    for pod in live.values():
        if _selected(pod, workload, cls) and pod.node:
            found.setdefault(pod.node, []).append(pod)
    return found


@dataclass(frozen=True)
class Moment:
    """The nodes without a serving pod from one event on, until the set changed (`until`)."""

    time: float
    seq: int
    nodes: tuple[str, ...]
    detail: str
    until: float | None = None

    def describe(self) -> str:
        lasted = f" for {1000 * (self.until - self.time):.0f} ms" if self.until is not None else " until the end"
        return f"{clock(self.time)} (event {self.seq}){lasted}: {len(self.nodes)} down: {self.detail}"


def _unavailable(nodes: Sequence[str], live: Mapping[str, PodEvent], workload: str | None, cls: str | None) -> set[str]:
    serving = {p.node for p in live.values() if p.serving and _selected(p, workload, cls)}
    return {n for n in nodes if n not in serving}


def _node_detail(node: str, live: Mapping[str, PodEvent], workload: str | None, cls: str | None) -> str:
    pods = [p.describe() for p in live.values() if p.node == node and _selected(p, workload, cls)]
    return f"{node}: {', '.join(pods) if pods else 'no pod'}"


def unavailable_moments(
    timeline: Timeline,
    nodes: Iterable[str],
    *,
    workload: str | None = None,
    cls: str | None = None,
) -> list[Moment]:
    """Every change of the set of unavailable nodes, once all nodes first had a serving pod.

    A node is unavailable while it has no Ready, non-terminating pod of the selection:
    from the moment its pod is deleted, terminating or not Ready until a pod on it is Ready.
    """
    wanted = sorted(set(nodes))
    moments: list[Moment] = []
    started = False
    last: set[str] | None = None
    for event, live in states(timeline):
        down = _unavailable(wanted, live, workload, cls)
        started = started or not down
        if started and down != last:
            if moments:
                moments[-1] = replace(moments[-1], until=event.time)
            detail = "; ".join(_node_detail(n, live, workload, cls) for n in sorted(down))
            moments.append(Moment(event.time, event.seq, tuple(sorted(down)), detail))
            last = down
    if not started:
        raise AssertionError(f"{_what(workload, cls)}: the nodes {wanted} never all had a Ready pod at once")
    return moments


def max_unavailable(
    timeline: Timeline,
    nodes: Iterable[str],
    *,
    workload: str | None = None,
    cls: str | None = None,
) -> int:
    """The most nodes that were without a serving pod at once (after the first all-Ready moment)."""
    moments = unavailable_moments(timeline, nodes, workload=workload, cls=cls)
    return max((len(m.nodes) for m in moments), default=0)


def assert_max_unavailable(
    timeline: Timeline,
    nodes: Iterable[str],
    limit: int,
    *,
    workload: str | None = None,
    cls: str | None = None,
) -> int:
    """Never more than `limit` of `nodes` without a serving pod at once; returns the maximum seen."""
    moments = unavailable_moments(timeline, nodes, workload=workload, cls=cls)
    worst = [m for m in moments if len(m.nodes) > limit]
    if worst:
        raise AssertionError(
            f"{_what(workload, cls)}: more than maxUnavailable={limit} nodes without a Ready pod at once:\n"
            + "\n".join(f"  {m.describe()}" for m in worst[:5])
        )
    return max((len(m.nodes) for m in moments), default=0)


@dataclass(frozen=True)
class Overlap:
    """Two or more pods of one workload on one node at once."""

    time: float
    seq: int
    node: str
    workload: str
    pods: tuple[PodEvent, ...]

    @property
    def active(self) -> int:
        """How many of them were not terminating."""
        return sum(1 for p in self.pods if not p.terminating)

    def describe(self) -> str:
        pods = "; ".join(p.describe() for p in self.pods)
        return f"{clock(self.time)} (event {self.seq}) on {self.node}, {self.workload}: {pods}"


def _workload_key(pod: PodEvent) -> str:
    if pod.workload:
        return pod.workload
    controller = next((o for o in pod.owners if o.controller), None)
    return f"{controller.kind}/{controller.name}" if controller else f"Pod/{pod.name}"


def overlaps(
    timeline: Timeline, *, workload: str | None = None, key: Callable[[PodEvent], str] | None = None
) -> list[Overlap]:
    """Every distinct set of pods of one workload that shared a node at once (each set once).

    `key` says which workload a pod belongs to (default: its `dsroll.io/workload` label, else
    its controller, else the pod itself); e.g. `lambda p: "all"` treats every pod of the
    timeline as one workload, for pods whose labels and owners change under them.
    """
    of = key or _workload_key
    found: list[Overlap] = []
    seen: set[frozenset[str]] = set()
    for event, live in states(timeline):
        if event.type == DELETED or not event.node or (workload and event.workload != workload):
            continue
        name = of(event)
        together = tuple(
            p for p in live.values() if p.node == event.node and of(p) == name and p.phase not in TERMINAL_PHASES
        )
        uids = frozenset(p.uid for p in together)
        if len(together) >= 2 and uids not in seen:
            seen.add(uids)
            found.append(Overlap(event.time, event.seq, event.node, name, together))
    return found


def terminating_overlaps(
    timeline: Timeline, *, workload: str | None = None, key: Callable[[PodEvent], str] | None = None
) -> list[Overlap]:
    """Information, not a violation: a new pod beside an old one that was already terminating."""
    return [o for o in overlaps(timeline, workload=workload, key=key) if o.active < 2]


def assert_never_two_pods(
    timeline: Timeline, *, workload: str | None = None, key: Callable[[PodEvent], str] | None = None
) -> None:
    """Never two non-terminating pods of one workload on one node (`key`: see `overlaps`)."""
    bad = [o for o in overlaps(timeline, workload=workload, key=key) if o.active >= 2]
    if bad:
        raise AssertionError(
            "two non-terminating pods of one workload on one node:\n" + "\n".join(f"  {o.describe()}" for o in bad[:5])
        )


def pods_by_node(
    timeline: Timeline, *, workload: str | None = None, cls: str | None = None
) -> dict[str, list[PodEvent]]:
    """Node → the last event of every selected pod ever seen on it, in order of first appearance."""
    last: dict[str, PodEvent] = {}
    for event in timeline:
        if event.node and _selected(event, workload, cls):
            last[event.uid] = event  # keeps the order of first appearance
    found: dict[str, list[PodEvent]] = {}
    for pod in last.values():
        found.setdefault(pod.node or "", []).append(pod)
    return found


def _history(timeline: Timeline, node: str, workload: str | None, cls: str | None) -> str:
    return ", ".join(
        f"{clock(e.time)} {e.type} {e.describe()}"
        for e in timeline
        if e.node == node and _selected(e, workload, cls) and (e.type != MODIFIED or e.terminating)
    )


def assert_untouched(
    timeline: Timeline, nodes: Iterable[str], *, workload: str | None = None, cls: str | None = None
) -> None:
    """The nodes kept one and the same pod throughout: never deleted, never terminating, no second one."""
    seen = pods_by_node(timeline, workload=workload, cls=cls)
    problems = []
    for node in sorted(set(nodes)):
        pods = seen.get(node, [])
        touched = len(pods) != 1 or any(e.terminating or e.type == DELETED for e in timeline if e.uid == pods[0].uid)
        if touched:
            what = "no pod seen" if not pods else _history(timeline, node, workload, cls)
            problems.append(f"  {node}: {what}")
    if problems:
        raise AssertionError(
            f"{_what(workload, cls)}: nodes that must be untouched had their pod replaced:\n" + "\n".join(problems)
        )


def disruptions(timeline: Timeline, *, workload: str | None = None, cls: str | None = None) -> list[tuple[str, float]]:
    """(node, time) each time a selected pod started terminating or was deleted, in order."""
    found: list[tuple[str, float]] = []
    gone: set[str] = set()
    for event in timeline:
        ended = event.terminating or event.type == DELETED
        if ended and event.node and _selected(event, workload, cls) and event.uid not in gone:
            gone.add(event.uid)
            found.append((event.node, event.time))
    return found


def replacement_order(timeline: Timeline, *, workload: str | None = None, cls: str | None = None) -> list[str]:
    """Nodes in the order their pod was first deleted."""
    order: list[str] = []
    for node, _ in disruptions(timeline, workload=workload, cls=cls):
        if node not in order:
            order.append(node)
    return order


def replacements(timeline: Timeline, *, workload: str | None = None, cls: str | None = None) -> dict[str, int]:
    """Node → how many of its pods were deleted."""
    counts: dict[str, int] = {}
    for node, _ in disruptions(timeline, workload=workload, cls=cls):
        counts[node] = counts.get(node, 0) + 1
    return counts


def assert_replaced_first(
    timeline: Timeline, first: Iterable[str], *, workload: str | None = None, cls: str | None = None
) -> None:
    """The first nodes whose pod was deleted are exactly `first` (in any order among themselves)."""
    wanted = sorted(set(first))
    order = replacement_order(timeline, workload=workload, cls=cls)
    if sorted(order[: len(wanted)]) != wanted:
        times = dict(reversed(disruptions(timeline, workload=workload, cls=cls)))
        shown = ", ".join(f"{n} at {clock(times[n])}" for n in order)
        raise AssertionError(
            f"{_what(workload, cls)}: expected {wanted} to be replaced first; order was: {shown or 'none'}"
        )


def assert_replaced(
    timeline: Timeline, nodes: Iterable[str], *, workload: str | None = None, cls: str | None = None
) -> None:
    """Each node had a pod deleted and ends with another, serving pod."""
    final = live_pods(timeline, workload=workload, cls=cls)
    counts = replacements(timeline, workload=workload, cls=cls)
    problems = []
    for node in sorted(set(nodes)):
        pods = final.get(node, [])
        if not counts.get(node):
            problems.append(
                f"  {node}: its pod was never deleted ({', '.join(p.describe() for p in pods) or 'no pod'})"
            )
        elif not any(p.serving for p in pods):
            problems.append(f"  {node}: no Ready pod at the end ({', '.join(p.describe() for p in pods) or 'no pod'})")
    if problems:
        raise AssertionError(f"{_what(workload, cls)}: nodes not replaced:\n" + "\n".join(problems))


def final_revisions(
    timeline: Timeline, *, workload: str | None = None, cls: str | None = None
) -> dict[str, str | None]:
    """Node → the revision hash of its non-terminating pod at the end (joined by "+" if several)."""
    return {
        node: "+".join(sorted(str(p.revision) for p in pods if not p.terminating)) or None
        for node, pods in live_pods(timeline, workload=workload, cls=cls).items()
    }


def assert_final_revision(
    timeline: Timeline, nodes: Iterable[str], expected: str, *, workload: str | None = None, cls: str | None = None
) -> None:
    """Each node ends with exactly one pod, Ready, not terminating, of revision `expected`."""
    final = live_pods(timeline, workload=workload, cls=cls)
    problems = []
    for node in sorted(set(nodes)):
        pods = final.get(node, [])
        if len(pods) != 1 or not pods[0].serving or pods[0].revision != expected:
            problems.append(f"  {node}: {', '.join(p.describe() for p in pods) or 'no pod'}")
    if problems:
        raise AssertionError(
            f"{_what(workload, cls)}: nodes not ending on revision {expected} with one Ready pod:\n"
            + "\n".join(problems)
        )
