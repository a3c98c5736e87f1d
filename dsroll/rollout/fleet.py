"""The nodes a rollout runs on, as their Node objects say, and what a node's turn brings.

A rollout must tell a node that cannot take a new pod (its own Ready condition not True,
held by the operator with ``dsroll.io/hold=true``) from one it may update, notice a node
deleted or cordoned under it, and not count a node that is unready on its own against
``maxUnavailable``. ``NodeView`` holds the few facts it needs about one node, and
``NodeIndex`` absorbs a node informer's change log one event at a time. The decision
— replace, skip, wait or fail, by ``unreadyNodes`` (``turn``), and which nodes a run
leaves out of its steps from the start (``skipped_at_start``, which ``plan`` forecasts
with) — is here too, so that the planner and the executor share it. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dsroll.labels import HOLD_LABEL
from dsroll.rollout.state import SkippedNode, SkipReason


@dataclass(frozen=True)
class NodeView:
    """What a rollout needs to know about one node."""

    name: str
    ready: bool
    why: str  # why it is not Ready ("Ready=Unknown: Kubelet stopped posting node status."), else ""
    held: bool
    cordoned: bool

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> NodeView:
        meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
        found = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        ready = found is not None and found.get("status") == "True"
        if ready:
            why = ""
        elif found is None:
            why = "no Ready condition"
        else:
            detail = found.get("message") or found.get("reason") or ""
            why = f"Ready={found.get('status')}" + (f": {detail}" if detail else "")
        return cls(
            name=meta["name"],
            ready=ready,
            why=why,
            held=(meta.get("labels") or {}).get(HOLD_LABEL) == "true",
            cordoned=bool(spec.get("unschedulable")),
        )


def slim_node(node: Mapping[str, Any], *, labels: bool = True) -> dict[str, Any]:
    """What ``NodeView`` and the node order read of a node (name, labels, unschedulable,
    the Ready condition) and the resourceVersion a watch resumes from: an informer of
    thousands of nodes keeps this, not their images, addresses and managedFields.
    ``labels=False``: only the hold label (``NodeView`` reads nothing else; the rollout's
    node watch keeps that, the plan's list keeps every label for the classes and order)."""
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    slim_meta = {key: meta[key] for key in ("name", "uid", "resourceVersion") if key in meta}
    found = meta.get("labels") or {}
    slim_meta["labels"] = dict(found) if labels else {k: v for k, v in found.items() if k == HOLD_LABEL}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return {
        "metadata": slim_meta,
        "spec": {"unschedulable": True} if spec.get("unschedulable") else {},
        "status": {"conditions": ready},
    }


def watched_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """``slim_node`` for the rollout's node watch: what ``NodeView`` reads."""
    return slim_node(node, labels=False)


class NodeIndex:
    """Every node by name, from a node informer's change log (``Informer(log_changes=True)``).

    ``touched``: nodes that changed since the caller last looked (``take_touched``), so
    that it re-examines only those; ``gone``: nodes deleted since it was made.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, NodeView] = {}
        self.gone: set[str] = set()
        self.touched: set[str] = set()
        self.synced = False

    def absorb(self, changes: Iterable[tuple[str, Any]]) -> None:
        for kind, obj in changes:
            if kind == "SYNC":
                fresh = {view.name: view for view in (NodeView.of(n) for n in obj)}
                for name in set(self._nodes) - set(fresh):
                    self.gone.add(name)
                    self.touched.add(name)
                for name, view in fresh.items():
                    if self._nodes.get(name) != view:
                        self.touched.add(name)
                    self.gone.discard(name)
                self._nodes = fresh
                self.synced = True
                continue
            name = obj["metadata"]["name"]
            self.touched.add(name)
            if kind == "DELETED":
                self._nodes.pop(name, None)
                self.gone.add(name)
            else:
                self._nodes[name] = NodeView.of(obj)
                self.gone.discard(name)

    def get(self, name: str) -> NodeView | None:
        return self._nodes.get(name)

    def exists(self, name: str) -> bool:
        """Unknown until the first list: a node is then assumed to exist."""
        return name in self._nodes or not self.synced

    def on_its_own(self, name: str) -> bool:
        """A node without a Ready pod through no doing of the rollout: not Ready, or held."""
        view = self._nodes.get(name)
        return view is not None and (not view.ready or view.held)

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched


# --- a node's turn ----------------------------------------------------------------------------


class Turn(StrEnum):
    GO = "go"  # replace its pod now
    SKIP = "skip"  # leave it on its revision: reported, done by a later rollout or resume
    WAIT = "wait"  # not yet: its node is not Ready (``unreadyNodes: wait``)
    FAIL = "fail"  # a failed node: ``onFailure`` applies


@dataclass(frozen=True)
class NodeTurn:
    action: Turn
    reason: SkipReason | None = None
    detail: str = ""


def turn(node: NodeView | None, unready_nodes: str, *, waited: float, timeout: float) -> NodeTurn:
    """What a node whose turn came gets, by its Node object and ``unreadyNodes``.

    A held node is always skipped. A node whose own Ready condition is not True has no
    kubelet to start a new pod, and its old pod is not serving anyway: ``skip`` leaves it
    (a later rollout does it), ``wait`` waits for it up to ``timeout`` from the first
    time its turn came (``waited`` seconds ago), ``fail`` fails it. A node the index does
    not know (not listed yet) goes ahead: its pod's health gate judges it."""
    if node is None:
        return NodeTurn(Turn.GO)
    if node.held:
        return NodeTurn(Turn.SKIP, SkipReason.held, "dsroll.io/hold=true")
    if node.ready:
        return NodeTurn(Turn.GO)
    if unready_nodes == "skip":
        return NodeTurn(Turn.SKIP, SkipReason.not_ready, node.why)
    if unready_nodes == "fail":
        return NodeTurn(Turn.FAIL, detail=f"node not Ready ({node.why}) and unreadyNodes is fail")
    if waited >= timeout:
        return NodeTurn(Turn.FAIL, detail=f"node not Ready within readyTimeout ({timeout:g}s): {node.why}")
    return NodeTurn(Turn.WAIT, detail=f"waiting for the node to be Ready ({node.why})")


def skipped_at_start(
    order: Sequence[str], node_of: Callable[[str], NodeView | None], unready_nodes: str
) -> tuple[SkippedNode, ...]:
    """The nodes a run leaves out of its steps from the start: held ones, and with
    ``unreadyNodes: skip`` the ones not Ready now (with ``wait`` or ``fail`` their turn decides)."""
    found = []
    for name in order:
        node = node_of(name)
        if node is None:
            continue
        verdict = turn(node, unready_nodes, waited=0.0, timeout=1.0)
        if verdict.action is Turn.SKIP and verdict.reason is not None:
            found.append(SkippedNode(name, verdict.reason, verdict.detail))
    return tuple(found)
