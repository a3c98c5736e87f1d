"""Pure parts of the sandbox: the node set tests rely on, the generated Go main module,
the stage files kwok is given, certificates, kubeconfigs and state records."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll.errors import SandboxError
from dsroll.sandbox import kubeconfig, processes
from dsroll.sandbox.build import KUBE_COMMANDS, kubernetes_main_module, kwok_patched
from dsroll.sandbox.certs import make_pki
from dsroll.sandbox.components import CONTROLLERS, Layout, Ports, controller_manager_argv
from dsroll.sandbox.nodes import (
    CANARY_LABEL,
    GPU_LABEL,
    ZONE_LABEL,
    class_counts,
    extra_node_specs,
    node_manifest,
    node_specs,
)
from dsroll.sandbox.state import SandboxState, check_name

# --- node_specs -------------------------------------------------------------------------


def test_twelve_nodes_default_classes() -> None:
    specs = node_specs(12, ("gpu", "arm64", "general"))
    assert [s.name for s in specs] == [f"kwok-node-{i:03d}" for i in range(12)]
    assert Counter(s.hw_class for s in specs) == {"gpu": 3, "arm64": 3, "general": 6}
    gpu = [s for s in specs if s.labels.get(GPU_LABEL) == "true"]
    arm = [s for s in specs if s.labels["kubernetes.io/arch"] == "arm64"]
    assert [s.name for s in gpu] == ["kwok-node-000", "kwok-node-001", "kwok-node-002"]
    assert [s.name for s in arm] == ["kwok-node-003", "kwok-node-004", "kwok-node-005"]
    assert all(s.labels["kubernetes.io/arch"] == "amd64" for s in gpu)
    general = [s for s in specs if s.hw_class == "general"]
    assert all(GPU_LABEL not in s.labels and s.labels["kubernetes.io/arch"] == "amd64" for s in general)
    assert [s.name for s in specs if s.labels.get(CANARY_LABEL) == "true"] == [
        "kwok-node-000",
        "kwok-node-003",
        "kwok-node-006",
    ]
    for s in specs:
        assert s.labels["kubernetes.io/hostname"] == s.name
        assert s.labels["kubernetes.io/os"] == "linux"
        assert s.labels["type"] == "kwok"


def test_zones_round_robin_within_each_class() -> None:
    specs = node_specs(12)
    for cls in ("gpu", "arm64", "general"):
        zones = [s.labels[ZONE_LABEL] for s in specs if s.hw_class == cls]
        assert zones == [("zone-a", "zone-b", "zone-c")[i % 3] for i in range(len(zones))]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=0, max_value=1200))
def test_node_specs_is_a_pure_function_with_sane_split(n: int) -> None:
    specs = node_specs(n)
    assert specs == node_specs(n)
    assert len(specs) == n
    assert len({s.name for s in specs}) == n
    assert [s.name for s in specs] == sorted(s.name for s in specs)
    counts = Counter(s.hw_class for s in specs)
    if n >= 3:
        assert all(counts[c] >= 1 for c in ("gpu", "arm64", "general"))
        assert counts["gpu"] == counts["arm64"] == max(1, n // 4)
        assert 1 <= len([s for s in specs if s.canary]) <= 3
    assert len({s.pod_cidr for s in specs}) == n
    assert len({s.internal_ip for s in specs}) == n
    for s in specs:
        assert ipaddress.ip_network(s.pod_cidr).prefixlen == 24


def test_thousand_nodes() -> None:
    specs = node_specs(1000)
    assert Counter(s.hw_class for s in specs) == {"gpu": 250, "arm64": 250, "general": 500}
    assert specs[-1].name == "kwok-node-999"
    assert Counter(s.zone for s in specs if s.hw_class == "general") == {
        "zone-a": 167,
        "zone-b": 167,
        "zone-c": 166,
    }


def test_class_counts_edge_cases() -> None:
    assert class_counts(2, ["gpu", "arm64", "general"]) == [("gpu", 1), ("arm64", 1), ("general", 0)]
    assert class_counts(3, ["gpu", "arm64", "general"]) == [("gpu", 1), ("arm64", 1), ("general", 1)]
    assert class_counts(7, ["gpu", "general"]) == [("gpu", 1), ("general", 6)]
    assert class_counts(7, ["gpu", "arm64"]) == [("gpu", 4), ("arm64", 3)]
    assert class_counts(4, ["a", "b", "c", "d", "general"]) == [
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("d", 1),
        ("general", 0),
    ]
    with pytest.raises(SandboxError):
        class_counts(3, [])
    with pytest.raises(SandboxError):
        class_counts(3, ["GPU"])


def test_node_manifest_is_kwok_managed_and_untainted() -> None:
    spec = node_specs(12)[3]
    node = node_manifest(spec)
    assert node["metadata"]["annotations"] == {
        "kwok.x-k8s.io/node": "fake",
        "node.alpha.kubernetes.io/ttl": "0",
    }
    assert "taints" not in node["spec"]
    assert node["status"]["capacity"]["pods"] == "110"
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert node["status"]["nodeInfo"]["architecture"] == "arm64"
    assert node["spec"]["podCIDR"] == spec.pod_cidr


def test_extra_nodes_do_not_collide_with_sandbox_nodes() -> None:
    base = node_specs(1000)
    extra = extra_node_specs(5, {"pool": "x"})
    assert not {s.name for s in base} & {s.name for s in extra}
    assert not {s.pod_cidr for s in base} & {s.pod_cidr for s in extra}
    assert all(s.labels["pool"] == "x" for s in extra)


# --- the generated Go main module -----------------------------------------------------

UPSTREAM_GOMOD = """\
// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
\tgithub.com/spf13/cobra v1.10.0
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apiextensions-apiserver => ./staging/src/k8s.io/apiextensions-apiserver
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-scheduler => ./staging/src/k8s.io/kube-scheduler
)
"""


def test_kubernetes_main_module_replaces_every_staging_module() -> None:
    gomod, tools = kubernetes_main_module("v1.35.4", UPSTREAM_GOMOD)
    assert "require k8s.io/kubernetes v1.35.4" in gomod
    assert "go 1.25.0" in gomod
    assert "godebug default=go1.25" in gomod
    for mod in ("api", "apiextensions-apiserver", "client-go", "kube-scheduler"):
        assert f"\tk8s.io/{mod} => k8s.io/{mod} v0.35.4" in gomod
    assert "./staging" not in gomod
    for cmd in KUBE_COMMANDS:
        assert f'_ "k8s.io/kubernetes/cmd/{cmd}"' in tools
    assert tools.startswith("//go:build tools")


def test_kubernetes_main_module_without_staging_is_an_error() -> None:
    with pytest.raises(SandboxError, match="no staging replaces"):
        kubernetes_main_module("v1.35.4", "module k8s.io/kubernetes\n\ngo 1.25.0\n")


# kwok v0.7.0's Controller.Start, as in pkg/kwok/controllers/controller.go
KWOK_START = """var nodeRef = internalversion.StageResourceRef{APIGroup: "v1", Kind: "Node"}

func (c *Controller) Start(ctx context.Context) error {
\tif len(c.conf.LocalStages) != 0 {
\t\tfor ref, stage := range c.conf.LocalStages {
\t\t\tlifecycle, err := lifecycle.NewLifecycle(stage)
\t\t\terr = c.startStageController(ctx, ref, resources.NewStaticGetter(lifecycle))
\t\t}
\t}
\treturn nil
}
"""


def test_kwok_is_patched_to_start_its_node_stage_controller_first() -> None:
    patched = kwok_patched(KWOK_START)
    assert "range c.conf.LocalStages {" not in patched, "no map-ordered start any more"
    assert "\t\tfor _, ref := range nodeStagesFirst(c.conf.LocalStages) {" in patched
    assert "\t\t\tstage := c.conf.LocalStages[ref]\n\t\t\tlifecycle, err" in patched
    assert "func nodeStagesFirst(" in patched and patched.index("refs = append(refs, nodeRef)") < patched.index(
        "for ref := range stages {"
    )


def test_kwok_patch_refuses_other_sources() -> None:
    with pytest.raises(SandboxError, match="not the one the sandbox patch was written for"):
        kwok_patched(KWOK_START.replace("for ref, stage := range", "for ref := range"))


# --- kwok stages -------------------------------------------------------------------------


def _stages() -> dict[str, dict]:
    base = resources.files("dsroll.sandbox").joinpath("stages")
    docs = []
    for name in ("pod-default.yaml", "pod-behaviours.yaml"):
        docs += [d for d in yaml.safe_load_all(base.joinpath(name).read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs}


def test_stage_files_cover_defaults_and_behaviours() -> None:
    stages = _stages()
    assert set(stages) == {
        "pod-ready",
        "pod-complete",
        "pod-delete",
        "sandbox-crash-start",
        "sandbox-crash-loop",
        "sandbox-not-ready-start",
        "sandbox-slow-ready",
        "sandbox-ready-again",
    }
    for stage in stages.values():
        assert stage["kind"] == "Stage"
        assert stage["spec"]["resourceRef"] == {"apiGroup": "v1", "kind": "Pod"}
    assert stages["pod-delete"]["spec"]["next"] == {"finalizers": {"empty": True}, "delete": True}
    # every non-delete stage must leave terminating pods to pod-delete
    for name, stage in stages.items():
        if name != "pod-delete":
            keys = {e["key"]: e["operator"] for e in stage["spec"]["selector"]["matchExpressions"]}
            assert keys[".metadata.deletionTimestamp"] == "DoesNotExist", name
    ready = stages["pod-ready"]["spec"]["selector"]["matchExpressions"][-1]
    assert ready["operator"] == "NotIn"
    assert set(ready["values"]) == {"crash", "error", "oom-killed", "never-ready", "slow"}
    assert stages["sandbox-slow-ready"]["spec"]["delay"]["durationMilliseconds"] == 5000


# --- certificates, kubeconfig, argv, state ---------------------------------------------


def test_pki_sans_and_admin_group(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "10.96.0.1")
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.96.0.1"}
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    org = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ["system:masters"]
    assert b"RSA PRIVATE KEY" in pki.service_account_key.read_bytes()
    assert oct(pki.admin_key.stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_merge_keeps_other_contexts(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "10.96.0.1")
    target = tmp_path / "config"
    other = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}}],
        "users": [{"name": "prod", "user": {}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
    }
    target.write_text(yaml.safe_dump(other))
    kubeconfig.write(target, kubeconfig.admin_kubeconfig("a", "https://127.0.0.1:1", pki), merge_existing=True)
    kubeconfig.write(target, kubeconfig.admin_kubeconfig("a", "https://127.0.0.1:2", pki), merge_existing=True)
    merged = yaml.safe_load(target.read_text())
    assert merged["current-context"] == "dsroll-sandbox-a"
    assert [c["name"] for c in merged["contexts"]] == ["prod", "dsroll-sandbox-a"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:2"
    assert kubeconfig.remove_from(target, "a")
    cleaned = yaml.safe_load(target.read_text())
    assert [c["name"] for c in cleaned["contexts"]] == ["prod"]


def test_controller_manager_runs_the_controllers_a_rollout_needs(tmp_path: Path) -> None:
    from dsroll.sandbox.build import Binaries

    bins = Binaries(*(tmp_path / n for n in ("a", "c", "s", "k", "e", "w")))
    pki = make_pki(tmp_path / "pki", "10.96.0.1")
    argv = controller_manager_argv(bins, Layout(tmp_path), Ports(1, 2, 3, 4, 5), pki)
    assert "--leader-elect=false" in argv
    controllers = next(a for a in argv if a.startswith("--controllers=")).split("=", 1)[1].split(",")
    for needed in (
        "daemonset-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
    ):
        assert needed in controllers
    assert tuple(controllers) == CONTROLLERS
    assert f"--root-ca-file={pki.ca_cert}" in argv


def test_state_round_trip(tmp_path: Path) -> None:
    comp = processes.Component("etcd", 42, 7, tmp_path / "etcd.log", 2379, ("etcd", "--x"))
    state = SandboxState(
        name="a",
        phase="running",
        created=1.5,
        server="https://127.0.0.1:1",
        context="dsroll-sandbox-a",
        kubeconfig=tmp_path / "kubeconfig",
        kubectl=tmp_path / "kubectl",
        node_count=12,
        classes=("gpu", "general"),
        ports=Ports(1, 2, 3, 4, 5),
        components=(comp,),
        extra_kubeconfigs=(tmp_path / "x",),
    )
    assert SandboxState.from_json(json.loads(json.dumps(state.to_json()))) == state


@pytest.mark.parametrize("bad", ["", "UPPER", "-x", "x-", "a/b", "x" * 50])
def test_bad_sandbox_names(bad: str) -> None:
    with pytest.raises(SandboxError):
        check_name(bad)


def test_free_ports_are_distinct() -> None:
    ports = processes.free_ports(20)
    assert len(set(ports)) == 20


def test_spawn_and_stop_a_detached_process_group(tmp_path: Path) -> None:
    # A parent that starts a child in its own group: stop() must take both down.
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    comp = processes.spawn("sleeper", [sys.executable, "-c", script], tmp_path / "s.log", None, tmp_path)
    assert processes.is_alive(comp)
    assert os.getpgid(comp.pid) == comp.pid
    deadline = time.monotonic() + 5
    while len(processes._group_members(comp.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = processes._group_members(comp.pid)
    assert len(members) == 2
    assert processes.stop([comp], grace_seconds=5) == []
    assert not processes.is_alive(comp)
    assert processes._group_members(comp.pid) == []
    # a recycled pid (different start time) is never signalled
    fake = processes.Component("x", os.getpid(), 0, tmp_path / "x.log", None, ())
    assert not processes.is_alive(fake)
    processes.stop([fake], grace_seconds=0.1)  # must not kill the test process


def test_spawn_reports_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="cannot start ghost"):
        processes.spawn("ghost", [str(tmp_path / "nope")], tmp_path / "g.log", None, tmp_path)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    comp = processes.spawn("stubborn", [sys.executable, "-c", script], tmp_path / "t.log", None, tmp_path)
    time.sleep(0.3)  # let it install the handler
    started = time.monotonic()
    assert processes.stop([comp], grace_seconds=0.5) == []
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(comp.pid, 0)


def test_cli_status_of_absent_sandbox(tmp_path: Path) -> None:
    env = {**os.environ, "DSROLL_SANDBOX_HOME": str(tmp_path)}
    code = "from dsroll.sandbox.cli import app; app()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "status", "--name", "nope", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["exists"] is False
