"""Whether a node can run a DaemonSet's pod template, decided as the DaemonSet controller does.

Where the template does not tolerate a node's NoSchedule or NoExecute taint, or its
``nodeName``, ``nodeSelector`` or required node affinity does not admit the node, the
DaemonSet controller creates no pod there at all (``NodeShouldRunDaemonPod`` in
kubernetes pkg/controller/daemon). A rollout that deleted the old pod would then wait its
whole ``readyTimeout`` for a new pod that never comes; ``misfit`` says why at once.

The controller adds tolerations of its own to every daemon pod (``DAEMON_TOLERATIONS``:
a node that is not ready, unreachable, under pressure or cordoned keeps its daemon), so
those taints never count. Two condition taints it does not tolerate for scheduling,
``not-ready`` and ``unreachable`` with effect NoSchedule, go away by themselves when the
node recovers: they are named but not permanent, and the gate waits ``readyTimeout`` for
them. Where this module is unsure (an operator it does not know, a malformed expression)
it claims nothing, so a doubt costs a timeout, never a false failure.

Pure: a pod template and a Node, both as the API returns them. The Node comes from a GET
today; a node informer can feed the same function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

#: What ``AddOrUpdateDaemonPodTolerations`` adds to every daemon pod (kubernetes
#: pkg/controller/daemon/util); network-unavailable only for ``hostNetwork`` pods.
DAEMON_TOLERATIONS: tuple[Mapping[str, str], ...] = (
    {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
    {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"}

#: Taints the node lifecycle (or cloud node) controller lifts by itself once the node is well.
SELF_CLEARING_TAINTS = frozenset(
    {NOT_READY, UNREACHABLE, NETWORK_UNAVAILABLE, "node.cloudprovider.kubernetes.io/uninitialized"}
)

_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)")  # a toleration's Gt/Lt value (content.IsDecimalInteger)
_GO_INT = re.compile(r"[+-]?[0-9]+")  # a label's Gt/Lt value (strconv.ParseInt)


class MisfitKind(StrEnum):
    TAINT = "taint"  # a NoSchedule/NoExecute taint the template does not tolerate
    NODE_NAME = "node-name"  # the template pins another node
    NODE_SELECTOR = "node-selector"  # spec.nodeSelector does not match the node's labels
    NODE_AFFINITY = "node-affinity"  # no required nodeSelectorTerm admits the node
    GONE = "gone"  # the Node object no longer exists (``evidence.py`` finds that out)


@dataclass(frozen=True)
class Misfit:
    """Why the DaemonSet controller will not create the template's pod on a node.

    ``permanent``: nothing will change it without someone acting (a taint not tolerated,
    a selector the node does not match); False for taints that clear themselves."""

    kind: MisfitKind
    reason: str
    permanent: bool = True


def misfit(template: Mapping[str, Any], node: Mapping[str, Any]) -> Misfit | None:
    """Why ``node`` cannot run a pod of ``template`` (a DaemonSet's ``spec.template``), or
    None when it can, or when this cannot be told for sure."""
    spec = template.get("spec") or {}
    meta = node.get("metadata") or {}
    name = str(meta.get("name", ""))
    labels = meta.get("labels") or {}
    pinned = spec.get("nodeName")
    if pinned and pinned != name:
        return Misfit(MisfitKind.NODE_NAME, f"the pod template pins nodeName {pinned}")
    selector = spec.get("nodeSelector") or {}
    for key, value in sorted(selector.items()):
        if labels.get(key) != value:
            has = f"has {key}={labels[key]}" if key in labels else f"has no label {key}"
            return Misfit(MisfitKind.NODE_SELECTOR, f"nodeSelector {key}={value} does not match the node ({has})")
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms"))  # fmt: skip
    if terms is not None:
        found = _affinity_misfit(terms, name, labels)
        if found is not None:
            return found
    tolerations = [*(spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
    if spec.get("hostNetwork"):
        tolerations.append(HOST_NETWORK_TOLERATION)
    untolerated = untolerated_taints((node.get("spec") or {}).get("taints") or [], tolerations)
    if not untolerated:
        return None
    permanent = [t for t in untolerated if t.get("key") not in SELF_CLEARING_TAINTS]
    shown = permanent or untolerated
    words = ", ".join(taint_text(t) for t in shown)
    what = "taint" if len(shown) == 1 else "taints"
    if permanent:
        return Misfit(MisfitKind.TAINT, f"the node has {what} {words}, not tolerated by the pod template")
    return Misfit(MisfitKind.TAINT, f"the node has {what} {words} (it is not Ready)", permanent=False)


def taint_text(taint: Mapping[str, Any]) -> str:
    """kubectl's spelling: ``key=value:Effect`` (``key:Effect`` without a value)."""
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key', '')}{value}:{taint.get('effect', '')}"


def untolerated_taints(
    taints: Iterable[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The NoSchedule and NoExecute taints no toleration tolerates (PreferNoSchedule never stops a pod)."""
    return [
        taint
        for taint in taints
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(tolerates(t, taint) for t in tolerations)
    ]


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint`` (k8s.io/api core/v1): an empty effect or key matches any;
    operator Equal (the default) needs the same value, Exists any. Gt and Lt (alpha) compare
    integers, as they do where their feature gate is on: where it is off the controller
    tolerates less, and this then claims nothing it would not."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    if operator in ("Gt", "Lt"):
        mine, theirs = str(toleration.get("value") or ""), str(taint.get("value") or "")
        if not (_DECIMAL.fullmatch(mine) and _DECIMAL.fullmatch(theirs)):
            return False
        return int(theirs) > int(mine) if operator == "Gt" else int(theirs) < int(mine)
    return True  # an operator this module does not know: claim nothing


def _affinity_misfit(terms: Sequence[Mapping[str, Any]], name: str, labels: Mapping[str, str]) -> Misfit | None:
    """Required node affinity: the terms are ORed; an empty list, or an empty term, admits no node."""
    failures: list[str] = []
    for term in terms:
        why = _term_fails(term, name, labels)
        if not why:  # it admits the node (None), or this cannot tell ("")
            return None
        failures.append(why)
    if not failures:
        return Misfit(MisfitKind.NODE_AFFINITY, "the pod template's required node affinity has no nodeSelectorTerm")
    if len(failures) == 1:
        return Misfit(MisfitKind.NODE_AFFINITY, f"required node affinity does not match the node: {failures[0]}")
    return Misfit(
        MisfitKind.NODE_AFFINITY,
        f"none of the {len(failures)} required nodeSelectorTerms matches the node (the first: {failures[0]})",
    )


def _term_fails(term: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> str | None:
    """Why one nodeSelectorTerm does not admit the node; None when it does, "" when unsure."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return "an empty nodeSelectorTerm matches no node"
    for expr in expressions:
        key, found = str(expr.get("key", "")), labels.get(str(expr.get("key", "")))
        verdict = _requirement(expr, found)
        if verdict is None:
            return ""
        if not verdict:
            has = f"has {key}={found}" if found is not None else f"has no label {key}"
            return f"{_expression_text(expr)} ({has})"
    for expr in fields:
        if expr.get("key") != "metadata.name" or expr.get("operator") not in ("In", "NotIn"):
            return ""
        verdict = _requirement(expr, name)
        if not verdict:
            return f"{_expression_text(expr)} (the node is {name})"
    return None


def _requirement(expr: Mapping[str, Any], value: str | None) -> bool | None:
    """One matchExpression on a label value (None: no such label); None when unsure."""
    operator, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if len(values) != 1 or not _GO_INT.fullmatch(values[0]):
            return None
        if value is None or not _GO_INT.fullmatch(value):
            return False
        return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
    return None


def _expression_text(expr: Mapping[str, Any]) -> str:
    values = expr.get("values") or []
    shown = f" [{', '.join(str(v) for v in values)}]" if values else ""
    return f"{expr.get('key')} {expr.get('operator')}{shown}"
