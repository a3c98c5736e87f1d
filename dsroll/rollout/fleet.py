"""The nodes a rollout runs on, as their Node objects say, kept up to date from a watch.

A rollout must tell a node that cannot take a new pod (its own Ready condition not True,
held by the operator with ``dsroll.io/hold=true``) from one it may update, notice a node
deleted or cordoned under it, and not count a node that is unready on its own against
``maxUnavailable``. ``NodeView`` holds the few facts it needs about one node, and
``NodeIndex`` absorbs a node informer's change log one event at a time. Pure: the
executor feeds it; what to do with a node is ``decide.turn``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dsroll.labels import HOLD_LABEL


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
