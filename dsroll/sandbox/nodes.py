"""Fake nodes: which ones a sandbox has (pure) and how they get into the cluster.

Tests select nodes by class, zone and canary label and compare against what the
DaemonSet controller did, so the node set must be a pure function of ``(n, classes)``:
``node_specs`` is that function, and ``up`` creates exactly its output.

Class split: every class other than ``general`` gets ``n // 4`` nodes (at least one when
there are enough nodes for one of each), ``general`` takes the rest; without a
``general`` class the nodes are split evenly. Nodes of one class are contiguous in name
order; zones go round-robin *within* each class, so every class spans every zone; the
first node of each class is a canary.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsroll.errors import SandboxError

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
CLASS_LABEL = "sandbox.dsroll.io/class"
CANARY_LABEL = "dsroll.io/canary"
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_LABEL = "nvidia.com/gpu.present"
ARCH_LABEL = "kubernetes.io/arch"
ZONES = ("zone-a", "zone-b", "zone-c")
DEFAULT_CLASSES = ("gpu", "arm64", "general")
KNOWN_CLASSES = frozenset(DEFAULT_CLASSES)

# Pod IPs come from each node's podCIDR (kwok's default pool is one /24 for all nodes,
# too small for a DaemonSet on 1,000 nodes); node IPs are distinct so hostIP means something.
_POD_NETWORK = ipaddress.ip_network("10.128.0.0/9")
_NODE_NETWORK = ipaddress.ip_network("172.16.0.0/12")

_CAPACITY = {
    "gpu": {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "4"},
    "arm64": {"cpu": "64", "memory": "128Gi", "pods": "110"},
    "general": {"cpu": "16", "memory": "64Gi", "pods": "110"},
}


@dataclass(frozen=True)
class NodeSpec:
    """Everything that distinguishes one fake node from another."""

    name: str
    hw_class: str
    zone: str
    canary: bool
    labels: Mapping[str, str] = field(hash=False)
    capacity: Mapping[str, str] = field(hash=False)
    pod_cidr: str = ""
    internal_ip: str = ""


def class_counts(n: int, classes: Sequence[str]) -> list[tuple[str, int]]:
    """How many of ``n`` nodes each class gets (see the module docstring for the rule)."""
    if n < 0:
        raise SandboxError(f"node count must be >= 0, got {n}")
    names = list(dict.fromkeys(c.strip() for c in classes if c.strip()))
    if not names:
        raise SandboxError("at least one hardware class is needed")
    for name in names:
        if not name.replace("-", "").isalnum() or name != name.lower():
            raise SandboxError(f"hardware class {name!r}: use lower-case letters, digits and '-'")
    if n < len(names):
        return [(name, 1 if i < n else 0) for i, name in enumerate(names)]
    special = [c for c in names if c != "general"]
    if "general" in names and len(special) * max(1, n // 4) <= n - 1:
        each = max(1, n // 4)
        counts = {c: each for c in special}
        counts["general"] = n - each * len(special)
        return [(c, counts[c]) for c in names]
    base, extra = divmod(n, len(names))
    return [(c, base + (1 if i < extra else 0)) for i, c in enumerate(names)]


def _labels(name: str, hw_class: str, zone: str, canary: bool) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        ARCH_LABEL: "arm64" if hw_class == "arm64" else "amd64",
        "type": "kwok",
        ZONE_LABEL: zone,
        CLASS_LABEL: hw_class,
    }
    if hw_class == "gpu":
        labels[GPU_LABEL] = "true"
    if canary:
        labels[CANARY_LABEL] = "true"
    return labels


def node_specs(n: int, classes: Sequence[str] = DEFAULT_CLASSES, prefix: str = "kwok-node") -> list[NodeSpec]:
    """The sandbox's nodes, a pure function of its arguments."""
    specs: list[NodeSpec] = []
    width = max(3, len(str(max(n - 1, 0))))
    for hw_class, count in class_counts(n, classes):
        for j in range(count):
            i = len(specs)
            name = f"{prefix}-{i:0{width}d}"
            zone = ZONES[j % len(ZONES)]
            specs.append(
                NodeSpec(
                    name=name,
                    hw_class=hw_class,
                    zone=zone,
                    canary=j == 0,
                    labels=_labels(name, hw_class, zone, j == 0),
                    capacity=dict(_CAPACITY.get(hw_class, _CAPACITY["general"])),
                    pod_cidr=str(ipaddress.ip_network((int(_POD_NETWORK.network_address) + 256 * i, 24))),
                    internal_ip=str(_NODE_NETWORK.network_address + i + 1),
                )
            )
    return specs


def extra_node_specs(
    count: int, labels: Mapping[str, str] | None = None, prefix: str = "kwok-extra", start: int = 0
) -> list[NodeSpec]:
    """Nodes a test adds on top of the sandbox's own: general class plus ``labels``."""
    out = []
    for k in range(count):
        i = start + k
        name = f"{prefix}-{i:03d}"
        zone = ZONES[i % len(ZONES)]
        node_labels = {**_labels(name, "general", zone, False), **(labels or {})}
        out.append(
            NodeSpec(
                name=name,
                hw_class=node_labels.get(CLASS_LABEL, "general"),
                zone=node_labels[ZONE_LABEL],
                canary=node_labels.get(CANARY_LABEL) == "true",
                labels=node_labels,
                capacity=dict(_CAPACITY["general"]),
                pod_cidr=str(ipaddress.ip_address("10.127.0.0") - 256 * (i + 1)) + "/24",
                internal_ip=str(ipaddress.ip_address("172.31.255.254") - i),
            )
        )
    return out


def node_manifest(spec: NodeSpec) -> dict[str, Any]:
    """The v1.Node kwok takes over: annotated, untainted, with capacity set at creation."""
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": dict(spec.labels),
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "capacity": dict(spec.capacity),
            "allocatable": dict(spec.capacity),
            "nodeInfo": {
                "architecture": spec.labels.get(ARCH_LABEL, "amd64"),
                "operatingSystem": "linux",
                "kubeletVersion": "kwok",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "kubeProxyVersion": "kwok",
                "osImage": "kwok",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }
    if spec.pod_cidr:
        node["spec"] = {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr]}
    if spec.internal_ip:
        node["status"]["addresses"] = [
            {"type": "InternalIP", "address": spec.internal_ip},
            {"type": "Hostname", "address": spec.name},
        ]
    return node


def _api(kubeconfig: Path, pool: int) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.CoreV1Api(client.ApiClient(cfg))


def add_nodes(kubeconfig: Path, specs: Sequence[NodeSpec], workers: int = 16) -> int:
    """Create the nodes concurrently; nodes that already exist are left as they are.

    Returns how many were created. Responses are not deserialised: at 1,000 nodes that
    alone would cost more than the requests.
    """
    from kubernetes.client.exceptions import ApiException

    if not specs:
        return 0
    api = _api(kubeconfig, workers)

    def create(spec: NodeSpec) -> int:
        try:
            resp = api.create_node(node_manifest(spec), _preload_content=False)
            resp.read()  # drain it: a pooled connection with an unread body corrupts the next reply
            resp.release_conn()
            return 1
        except ApiException as exc:
            if exc.status == 409:
                return 0
            raise SandboxError(f"cannot create node {spec.name}: {exc.status} {exc.reason} {exc.body}") from exc

    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(specs))) as pool:
            return sum(pool.map(create, specs))
    finally:
        api.api_client.close()


def ready_node_names(kubeconfig: Path) -> set[str]:
    """Names of kwok-managed nodes whose Ready condition is True."""
    api = _api(kubeconfig, 2)
    try:
        resp = api.list_node(_preload_content=False)
        items = json.loads(resp.data)["items"]
    finally:
        api.api_client.close()
    ready = set()
    for item in items:
        if (item["metadata"].get("annotations") or {}).get(KWOK_ANNOTATION) != "fake":
            continue
        for cond in (item.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready.add(item["metadata"]["name"])
    return ready
