"""Live nodes seen through the hardware classes: who matched, who won, who is left out. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsroll.classes import classify
from dsroll.config import Environment

ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class NodeClass:
    name: str
    zone: str | None
    matched: tuple[str, ...]
    winner: str | None


@dataclass(frozen=True)
class NodeReport:
    nodes: tuple[NodeClass, ...]
    uncovered: Mapping[str, tuple[str, ...]]  # workload -> nodes no variant of it admits

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [
                {"name": n.name, "zone": n.zone, "matched": list(n.matched), "class": n.winner} for n in self.nodes
            ],
            "uncovered": {w: list(names) for w, names in self.uncovered.items()},
        }


def classify_nodes(env: Environment, nodes: Sequence[Mapping[str, Any]]) -> NodeReport:
    result = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        labels = node["metadata"].get("labels") or {}
        matched, winner = classify(env.classes, labels)
        result.append(NodeClass(node["metadata"]["name"], labels.get(ZONE_LABEL), tuple(matched), winner))
    uncovered = {w.name: tuple(n.name for n in result if n.winner not in w.classes) for w in env.workloads}
    return NodeReport(tuple(result), uncovered)
