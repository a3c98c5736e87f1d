"""``dsroll init``: the files of a new GitOps repo, and hardware classes proposed from live nodes' labels.

Pure: ``propose_classes`` reads a name → labels map (what ``kube.nodes.labels()`` returns)
and counts each proposal's nodes with the class algebra ``dsroll nodes`` uses
(``classes.classify``), so the numbers init prints are the ones ``nodes`` will show.
``scaffold`` returns the files as path → text; the caller checks and writes them.

The proposal order is the class order of the file, and first match wins: accelerators
first (a GPU node that is also arm64 is a GPU node), then CPU architectures other than
the fleet's most common one, then instance-type families other than the most common
one, then ``general``, the default class, for every other node.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from dsroll import permissions, yamlio
from dsroll.classes import HardwareClass, classify

ARCH_LABEL = "kubernetes.io/arch"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
SCHEMA_COPY = ".dsroll/environment.schema.json"
DEFAULT_NAMESPACE = "node-agents"

# (class name, vendor, label keys in order of preference; a key ending in "/" or "." is a prefix)
ACCELERATORS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "nvidia",
        "NVIDIA GPU",
        (
            "nvidia.com/gpu.present",
            "nvidia.com/gpu.product",
            "feature.node.kubernetes.io/pci-10de.present",
            "cloud.google.com/gke-accelerator",
            "k8s.amazonaws.com/accelerator",
        ),
    ),
    ("amd", "AMD GPU", ("amd.com/gpu", "amd.com/gpu.", "feature.node.kubernetes.io/pci-1002.present")),
    ("intel", "Intel GPU", ("gpu.intel.com/", "intel.feature.node.kubernetes.io/gpu")),
    ("tpu", "Google TPU", ("cloud.google.com/gke-tpu-accelerator",)),
    ("neuron", "AWS Inferentia/Trainium", ("aws.amazon.com/neuron", "aws.amazon.com/neuron.")),
)


@dataclass(frozen=True)
class ProposedClass:
    """A hardware class for the new environment, why it is proposed, and how many nodes it takes."""

    name: str
    reason: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    match_expressions: Sequence[Mapping[str, Any]] = ()
    default: bool = False
    nodes: int = 0

    def to_spec(self) -> dict[str, Any]:
        """The class as the environment file spells it."""
        spec: dict[str, Any] = {"name": self.name}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.match_expressions:
            spec["matchExpressions"] = [dict(e) for e in self.match_expressions]
        if self.default:
            spec["default"] = True
        return spec

    def algebra(self) -> HardwareClass:
        return HardwareClass.from_selector(self.name, self.node_selector, self.match_expressions, self.default)

    def to_json(self) -> dict[str, Any]:
        return {**self.to_spec(), "reason": self.reason, "nodes": self.nodes}


EXAMPLE_CLASSES = (
    ProposedClass("gpu", "NVIDIA GPU nodes (example)", {"nvidia.com/gpu.present": "true"}),
    ProposedClass(
        "arm64",
        "arm64 nodes (example)",
        match_expressions=({"key": ARCH_LABEL, "operator": "In", "values": ["arm64"]},),
    ),
    ProposedClass("general", "every other node", default=True),
)
"""The classes of an environment made without looking at a cluster: the examples' own."""


def _key_on(labels: Mapping[str, str], wanted: str) -> str | None:
    if wanted.endswith(("/", ".")):
        return next((k for k in sorted(labels) if k.startswith(wanted)), None)
    return wanted if wanted in labels else None


def _accelerator(
    nodes: Mapping[str, Mapping[str, str]], name: str, vendor: str, keys: Sequence[str]
) -> ProposedClass | None:
    """A class for the nodes carrying the first of ``keys`` any node has (``true`` where it is a flag)."""
    for wanted in keys:
        found = Counter(k for labels in nodes.values() if (k := _key_on(labels, wanted)))
        if not found:
            continue
        key = found.most_common(1)[0][0]
        values = {labels[key] for labels in nodes.values() if key in labels}
        if values == {"true"}:
            return ProposedClass(name, f"{vendor}: label {key}=true", {key: "true"})
        expression = {"key": key, "operator": "Exists", "values": []}
        return ProposedClass(name, f"{vendor}: label {key}", match_expressions=(expression,))
    return None


def instance_family(instance_type: str) -> str:
    """``r7i.8xlarge`` → ``r7i``; ``n2-highmem-8`` → ``n2-highmem``; ``Standard_D4s_v3`` → ``standard-d``."""
    if "." in instance_type:
        return instance_type.split(".", 1)[0]
    if "_" in instance_type:  # Azure: Standard_<family letters><size>…
        tier, _, size = instance_type.partition("_")
        return f"{tier}-{re.match(r'[A-Za-z]*', size).group(0)}".lower()  # type: ignore[union-attr]
    return re.sub(r"-\d+$", "", instance_type)


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-")
    return label or "class"


def _by_value(nodes: Mapping[str, Mapping[str, str]], key: str, of: Any = lambda v: v) -> dict[str, set[str]]:
    """Label value's group (``of(value)``) → the values seen in it, over the nodes that have ``key``."""
    groups: dict[str, set[str]] = {}
    for labels in nodes.values():
        if key in labels:
            groups.setdefault(of(labels[key]), set()).add(labels[key])
    return groups


def _minorities(
    nodes: Mapping[str, Mapping[str, str]], key: str, what: str, of: Any = lambda v: v
) -> list[ProposedClass]:
    """A class per group of ``key``'s values but the most common one (which ``general`` takes)."""
    groups = _by_value(nodes, key, of)
    if len(groups) < 2:
        return []
    counts = Counter(of(labels[key]) for labels in nodes.values() if key in labels)
    common = counts.most_common(1)[0][0]
    proposed = []
    for group, _count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if group == common:
            continue
        expression = {"key": key, "operator": "In", "values": sorted(groups[group])}
        proposed.append(ProposedClass(_dns_label(group), f"{what} {group}", match_expressions=(expression,)))
    return proposed


def _unique(proposed: Sequence[ProposedClass]) -> list[ProposedClass]:
    seen: set[str] = set()
    out = []
    for cls in proposed:
        name, n = cls.name, 2
        while name in seen:
            name, n = f"{cls.name}-{n}", n + 1
        seen.add(name)
        out.append(ProposedClass(name, cls.reason, cls.node_selector, cls.match_expressions, cls.default))
    return out


def count(proposed: Sequence[ProposedClass], nodes: Mapping[str, Mapping[str, str]]) -> list[ProposedClass]:
    """Each class with the number of nodes it wins, as ``dsroll nodes`` would say."""
    algebra = [c.algebra() for c in proposed]
    wins = Counter(classify(algebra, labels)[1] for labels in nodes.values())
    return [
        ProposedClass(c.name, c.reason, c.node_selector, c.match_expressions, c.default, wins.get(c.name, 0))
        for c in proposed
    ]


def propose_classes(nodes: Mapping[str, Mapping[str, str]]) -> list[ProposedClass]:
    """Hardware classes that match this cluster: accelerators, then other architectures, then
    other instance families, then ``general``; a class that would take no node is left out."""
    found: list[ProposedClass] = []
    accelerators = [c for c in (_accelerator(nodes, *a) for a in ACCELERATORS) if c is not None]
    gpus = [c for c in accelerators if c.name in ("nvidia", "amd", "intel")]
    if len(gpus) == 1:  # one GPU vendor: the class is simply "gpu"
        accelerators = [
            ProposedClass("gpu", c.reason, c.node_selector, c.match_expressions) if c in gpus else c
            for c in accelerators
        ]
    found += accelerators
    found += _minorities(nodes, ARCH_LABEL, "architecture")
    found += _minorities(nodes, INSTANCE_TYPE_LABEL, "instance family", instance_family)
    found.append(ProposedClass("general", "every node no other class matches", default=True))
    counted = count(_unique(found), nodes)
    return [c for c in counted if c.nodes or c.default]


# --- the files -------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """A value as one line of YAML (JSON is YAML; keys kept in order)."""
    return json.dumps(value, separators=(", ", ": "))


def environment_text(name: str, namespace: str, classes: Sequence[ProposedClass], context: str | None) -> str:
    """The environment file: a modeline for editors, classes with their node counts, two example workloads."""
    cluster = {"context": context, "namespace": namespace} if context else {"namespace": namespace}
    lines = [
        f"# yaml-language-server: $schema=../{SCHEMA_COPY}",
        f"# The {name} environment, written by `dsroll init`. Every key: docs/environment.md of dsroll;",
        "# `dsroll schema` prints the JSON Schema your editor checks this file with (the line above).",
        "apiVersion: dsroll.io/v1alpha1",
        "kind: Environment",
        f"metadata: {{name: {name}}}",
        f"cluster: {yamlio.to_json(cluster)}  # add createNamespace: true to have rollout create a missing namespace",
        "hardwareClasses:  # first match wins, in this order; the default class takes every other node",
    ]
    for cls in classes:
        spec = cls.to_spec()
        counted = f"  # {cls.reason}" + (f": {cls.nodes} node(s) now" if cls.nodes else "")
        lines.append(f"  - name: {spec.pop('name')}{counted}")
        lines += [f"    {key}: {_flow(value)}" for key, value in spec.items()]
    gpu = next((c.name for c in classes if c.node_selector.get("nvidia.com/gpu.present") == "true"), None)
    lines += [
        "workloads:",
        "  - name: node-exporter",
        "    template: templates/node-exporter.yaml.j2",
        "    values:",
        "      image: quay.io/prometheus/node-exporter",
        "      tag: v1.8.2",
        "      port: 9100",
        "      collectors: [systemd, processes]",
        "      resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}",
        "  - name: fluent-bit",
        "    template: templates/fluent-bit.yaml.j2",
        "    values:",
        "      image: cr.fluentbit.io/fluent/fluent-bit",
        '      tag: "3.1.9"',
        "      parser: cri",
        "      priorityClass: system-node-critical",
        "      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 128Mi}}",
    ]
    if gpu:
        lines += [
            "  - name: nvidia-device-plugin",
            "    template: templates/nvidia-device-plugin.yaml.j2",
            f"    classes: [{gpu}]",
            "    values: {image: nvcr.io/nvidia/k8s-device-plugin, tag: v0.16.2, deviceListStrategy: envvar}",
        ]
    lines += [
        "rollout:",
        '  steps: ["1", "10%", "50%", "100%"]  # cumulative per variant: a node count or a percentage',
        "  maxUnavailable: 1  # nodes replaced at once inside a step",
        "  pause: manual      # between steps: approve with `dsroll resume` (in CI: exit code 3)",
        "  readyTimeout: 5m   # a new pod must be Ready within this",
        "  onFailure: rollback",
        "  unreadyNodes: skip  # a node not Ready on its turn: skip (a later rollout does it) | wait | fail",
        "  applier: dsroll     # who applies the spec: dsroll | external (Argo CD, Flux: docs/gitops.md)",
    ]
    return "\n".join(lines) + "\n"


GITIGNORE = ("# dsroll: plans and run outputs are not desired state", "*.plan.json", "__pycache__/", ".venv/")


def gitignore_text(existing: str | None) -> str:
    """The .gitignore with dsroll's lines added to what is there (never anything removed)."""
    have = (existing or "").splitlines()
    missing = [line for line in GITIGNORE if line not in have]
    if not missing:
        return existing or ""
    base = (existing or "").rstrip("\n")
    return (base + "\n\n" if base else "") + "\n".join(missing) + "\n"


def rbac_text(environment: str, home: str, namespaces: Sequence[str], *, create_namespace: bool = False) -> str:
    """Both roles' manifests as one file for ``kubectl apply -f`` (``create_namespace``: the
    environment's ``cluster.createNamespace``, which lets the deployer create namespaces)."""
    head = (
        f"# RBAC for dsroll environment {environment}: a CI deployer and a read-only reviewer.\n"
        f"# Generated by `dsroll rbac {environment}` from dsroll's permission table; apply with kubectl apply -f.\n"
    )
    docs = [
        doc
        for role in permissions.ROLES
        for doc in permissions.manifests(environment, home, namespaces, role, create_namespace=create_namespace)
    ]
    return head + "".join("---\n" + yamlio.dump(doc) for doc in docs)


def _package_text(*parts: str) -> str:
    return files(__package__).joinpath(*parts).read_text()


def example_templates() -> dict[str, str]:
    """The example templates shipped in the package (kept equal to the repository's ``templates/``)."""
    folder = files(__package__).joinpath("templates")
    return {f"templates/{p.name}": p.read_text() for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".j2")}  # fmt: skip


def scaffold(
    name: str, namespace: str, classes: Sequence[ProposedClass], context: str | None, schema: str
) -> dict[str, str]:
    """Every file of a new repo but ``.gitignore`` (merged with what is there): path → text."""
    found = {
        f"environments/{name}.yaml": environment_text(name, namespace, classes, context),
        SCHEMA_COPY: schema,
        **example_templates(),
        ".github/workflows/dsroll.yaml": _package_text("ci", "github.yaml").replace("__ENV__", name),
        ".gitlab-ci.yml": _package_text("ci", "gitlab.yaml").replace("__ENV__", name),
        f"deploy/rbac/{name}.yaml": rbac_text(name, namespace, [namespace]),
    }
    return found


def conflicts(planned: Mapping[str, str], existing: Mapping[str, str | None]) -> list[str]:
    """The planned files that exist with other content (``existing``: path → its text, None if absent)."""
    return sorted(path for path, text in planned.items() if existing.get(path) not in (None, text))
