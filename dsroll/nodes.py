"""Live nodes seen through the hardware classes: who matched, who won, who is left out. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsroll.classes import admission_terms, classify, terms_match
from dsroll.config import Environment
from dsroll.labels import ZONE_LABEL


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
    workload_classes: Mapping[str, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [
                {"name": n.name, "zone": n.zone, "matched": list(n.matched), "class": n.winner} for n in self.nodes
            ],
            "uncovered": {w: list(names) for w, names in self.uncovered.items()},
            "workloadClasses": {w: list(c) for w, c in self.workload_classes.items()},
        }


def classify_nodes(env: Environment, nodes: Sequence[Mapping[str, Any]]) -> NodeReport:
    terms = {c.name: admission_terms(env.classes, c.name) for c in env.classes}
    result = []
    admitted: dict[str, str | None] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        labels = node["metadata"].get("labels") or {}
        matched, winner = classify(env.classes, labels)
        name = node["metadata"]["name"]
        result.append(NodeClass(name, labels.get(ZONE_LABEL), tuple(matched), winner))
        # What the rendered affinity really admits: differs from the winner only for a
        # non-integer value on a Gt/Lt key, which no variant admits (see classes.py).
        admitted[name] = winner if winner is not None and terms_match(terms[winner], labels) else None
    uncovered = {w.name: tuple(n.name for n in result if admitted[n.name] not in w.classes) for w in env.workloads}
    return NodeReport(tuple(result), uncovered, {w.name: w.classes for w in env.workloads})
