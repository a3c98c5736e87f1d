"""Whether a node can run a variant's pod template, as the DaemonSet controller decides it.

Templates are the repository's own rendered variants; nodes are shaped as the sandbox's
API server returns them (``kubectl get node -o json``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsroll.rollout.placement import MisfitKind, misfit, taint_text, tolerates, untolerated_taints

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / "rendered" / "dev" / "dsroll-demo"


def template(name: str) -> dict[str, Any]:
    """A rendered variant's pod template (``spec.template``)."""
    return dict(yaml.safe_load((RENDERED / f"{name}.yaml").read_text())["spec"]["template"])


def node(
    name: str = "kwok-node-003",
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A sandbox node, as the API returns it."""
    spec: dict[str, Any] = {"podCIDR": "10.128.3.0/24", "podCIDRs": ["10.128.3.0/24"]}
    if taints is not None:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": "16fca60e-4045-48e5-bc88-65e5aa52c601",
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels
            if labels is not None
            else {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "sandbox.dsroll.io/class": "general",
                "topology.kubernetes.io/zone": "zone-b",
                "type": "kwok",
            },
        },
        "spec": spec,
        "status": {
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod_template(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "agent", "image": "example.com/agent:2.0"}], **spec},
    }


# --- what fits ---------------------------------------------------------------------------


def test_a_general_node_runs_the_general_variants() -> None:
    for name in ("node-exporter-general", "fluent-bit-general"):
        assert misfit(template(name), node()) is None, name


def test_a_gpu_variant_does_not_admit_a_general_node_naming_the_requirement() -> None:
    found = misfit(template("node-exporter-gpu"), node())
    assert found is not None and found.permanent and found.kind is MisfitKind.NODE_AFFINITY
    assert found.reason == (
        "required node affinity does not match the node: nvidia.com/gpu.present In [true] "
        "(has no label nvidia.com/gpu.present)"
    )


def test_the_general_variant_does_not_admit_an_arm64_node() -> None:
    labels = {**node()["metadata"]["labels"], "kubernetes.io/arch": "arm64"}
    found = misfit(template("node-exporter-general"), node(labels=labels))
    assert found is not None and found.kind is MisfitKind.NODE_AFFINITY
    assert "kubernetes.io/arch NotIn [arm64] (has kubernetes.io/arch=arm64)" in found.reason


# --- taints ------------------------------------------------------------------------------


def test_a_no_schedule_taint_not_tolerated_is_a_permanent_misfit() -> None:
    tainted = node(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    found = misfit(pod_template(tolerations=[{"key": "dedicated", "value": "web", "effect": "NoSchedule"}]), tainted)
    assert found is not None and found.permanent and found.kind is MisfitKind.TAINT
    assert found.reason == "the node has taint dedicated=db:NoSchedule, not tolerated by the pod template"


def test_no_execute_counts_prefer_no_schedule_does_not() -> None:
    taints = [{"key": "a", "effect": "NoExecute"}, {"key": "b", "value": "x", "effect": "PreferNoSchedule"}]
    found = misfit(pod_template(), node(taints=taints))
    assert found is not None and found.reason == "the node has taint a:NoExecute, not tolerated by the pod template"


def test_a_template_that_tolerates_everything_fits_a_tainted_node() -> None:
    tainted = node(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    for name in ("fluent-bit-general", "node-exporter-general"):  # tolerations: [{operator: Exists}]
        assert misfit(template(name), tainted) is None, name


@pytest.mark.parametrize(
    "key",
    [
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
    ],
)
def test_the_daemonset_controllers_own_tolerations_count(key: str) -> None:
    """A cordoned node, or one under pressure, still gets its daemon pod."""
    assert misfit(pod_template(), node(taints=[{"key": key, "effect": "NoSchedule"}])) is None


def test_not_ready_no_execute_is_tolerated_and_no_schedule_is_named_but_not_permanent() -> None:
    unreachable = [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": "2026-11-29T08:40:00Z"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-11-29T08:40:00Z"},
    ]
    found = misfit(pod_template(), node(taints=unreachable))
    assert found is not None and not found.permanent
    assert found.reason == "the node has taint node.kubernetes.io/unreachable:NoSchedule (it is not Ready)"


def test_a_permanent_taint_wins_over_a_self_clearing_one() -> None:
    taints = [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        {"key": "gpu", "value": "only", "effect": "NoSchedule"},
    ]
    found = misfit(pod_template(), node(taints=taints))
    assert found is not None and found.permanent and found.reason.startswith("the node has taint gpu=only:NoSchedule")


def test_network_unavailable_is_tolerated_by_host_network_pods_only() -> None:
    taint = {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}
    assert misfit(pod_template(hostNetwork=True), node(taints=[taint])) is None
    found = misfit(pod_template(), node(taints=[taint]))
    assert found is not None and not found.permanent


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, {"key": "k", "value": "v"}, True),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "w"}, False),  # Equal is the default
        ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "w"}, True),
        ({"operator": "Exists"}, {"key": "anything", "value": "w"}, True),  # empty key + Exists: all
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k"}, False),  # effect differs
        ({"key": "k", "operator": "Equal"}, {"key": "k"}, True),  # both values empty
        ({"key": "k", "operator": "Gt", "value": "5"}, {"key": "k", "value": "7"}, True),
        ({"key": "k", "operator": "Lt", "value": "5"}, {"key": "k", "value": "7"}, False),
        ({"key": "k", "operator": "Lt", "value": "5"}, {"key": "k", "value": "x"}, False),
        ({"key": "k", "operator": "Sometimes"}, {"key": "k"}, True),  # unknown: claim nothing
    ],
)
def test_tolerates_as_the_api_reads_a_toleration(
    toleration: dict[str, str], taint: dict[str, str], expected: bool
) -> None:
    assert tolerates(toleration, {"effect": "NoSchedule", **taint}) is expected


def test_untolerated_taints_and_their_kubectl_spelling() -> None:
    taints = [{"key": "a", "value": "1", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]
    found = untolerated_taints(taints, [{"key": "a", "operator": "Exists"}])
    assert [taint_text(t) for t in found] == ["b:NoExecute"]


# --- nodeName, nodeSelector, affinity -----------------------------------------------------


def test_a_node_selector_that_does_not_match() -> None:
    found = misfit(pod_template(nodeSelector={"disktype": "ssd"}), node())
    assert found is not None and found.kind is MisfitKind.NODE_SELECTOR
    assert found.reason == "nodeSelector disktype=ssd does not match the node (has no label disktype)"
    labels = {**node()["metadata"]["labels"], "disktype": "hdd"}
    found = misfit(pod_template(nodeSelector={"disktype": "ssd"}), node(labels=labels))
    assert found is not None and found.reason.endswith("(has disktype=hdd)")
    assert misfit(pod_template(nodeSelector={"kubernetes.io/os": "linux"}), node()) is None


def test_a_template_pinned_to_another_node() -> None:
    found = misfit(pod_template(nodeName="kwok-node-000"), node())
    assert found is not None and found.kind is MisfitKind.NODE_NAME
    assert misfit(pod_template(nodeName="kwok-node-003"), node()) is None


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize(
    ("expression", "fits"),
    [
        ({"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a", "zone-b"]}, True),
        ({"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["zone-b"]}, False),
        ({"key": "missing", "operator": "NotIn", "values": ["x"]}, True),
        ({"key": "type", "operator": "Exists"}, True),
        ({"key": "type", "operator": "DoesNotExist"}, False),
        ({"key": "missing", "operator": "Exists"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
        ({"key": "type", "operator": "Gt", "values": ["8"]}, False),  # kwok is no integer
    ],
)
def test_match_expressions_as_kubernetes_reads_them(expression: dict[str, Any], fits: bool) -> None:
    labels = {**node()["metadata"]["labels"], "cores": "16"}
    found = misfit(pod_template(affinity=affinity({"matchExpressions": [expression]})), node(labels=labels))
    assert (found is None) is fits, found


def test_match_fields_on_the_node_name() -> None:
    pinned = affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["kwok-node-000"]}]})
    found = misfit(pod_template(affinity=pinned), node())
    assert found is not None
    assert found.reason.endswith("metadata.name In [kwok-node-000] (the node is kwok-node-003)")
    mine = affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["kwok-node-003"]}]})
    assert misfit(pod_template(affinity=mine), node()) is None


def test_terms_are_ored_and_the_first_failure_is_named() -> None:
    no = {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    yes = {"matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]}
    assert misfit(pod_template(affinity=affinity(no, yes)), node()) is None
    found = misfit(pod_template(affinity=affinity(no, no)), node())
    assert found is not None
    assert (
        found.reason
        == "none of the 2 required nodeSelectorTerms matches the node (the first: gpu Exists (has no label gpu))"
    )


def test_empty_terms_admit_no_node() -> None:
    assert misfit(pod_template(affinity=affinity()), node()) is not None
    assert misfit(pod_template(affinity=affinity({})), node()) is not None


def test_what_it_cannot_read_it_does_not_claim() -> None:
    strange = affinity({"matchExpressions": [{"key": "type", "operator": "Near", "values": ["kwok"]}]})
    assert misfit(pod_template(affinity=strange), node()) is None
    odd_field = affinity({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]})
    assert misfit(pod_template(affinity=odd_field), node()) is None


def test_the_pure_function_does_not_touch_its_inputs() -> None:
    tpl, obj = template("node-exporter-gpu"), node(taints=[{"key": "a", "effect": "NoSchedule"}])
    before = copy.deepcopy((tpl, obj))
    misfit(tpl, obj)
    assert (tpl, obj) == before
