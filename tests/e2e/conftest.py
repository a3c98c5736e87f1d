"""One fixture that hides which real cluster backs the e2e suite.

``DSROLL_TEST_CLUSTER`` picks the backend:

* ``sandbox`` (default): ``dsroll.sandbox.up(name="pytest-<pid>")`` once per session,
  ``down`` at the end. ``DSROLL_TEST_NODES`` (default 12) sets its node count.
* ``kubeconfig``: the cluster of ``DSROLL_TEST_KUBECONFIG`` (optionally
  ``DSROLL_TEST_CONTEXT``) as it is, e.g. a sandbox you keep running; never torn down.
* ``kind``: a kind cluster with labelled workers, only where ``docker info`` works
  (skipped otherwise, the one case where a missing cluster skips instead of failing).

A cluster that cannot be provided makes every e2e test fail with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
from kubernetes import client, config

from dsroll.errors import DsrollError
from dsroll.sandbox import nodes as fake_nodes

E2E_DIR = Path(__file__).parent

KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  labels: {"nvidia.com/gpu.present": "true", "sandbox.dsroll.io/class": "gpu",
           "topology.kubernetes.io/zone": "zone-a", "dsroll.io/canary": "true", "type": "kind"}
- role: worker
  labels: {"sandbox.dsroll.io/class": "general", "topology.kubernetes.io/zone": "zone-b",
           "dsroll.io/canary": "true", "type": "kind"}
- role: worker
  labels: {"sandbox.dsroll.io/class": "general", "topology.kubernetes.io/zone": "zone-c", "type": "kind"}
"""


# K8sCluster.fault(kind): what each kind does to which sandbox process.
FAULTS: dict[str, tuple[str, str]] = {
    "restart-apiserver": ("restart", "kube-apiserver"),
    "restart-etcd": ("restart", "etcd"),
    "restart-controller-manager": ("restart", "kube-controller-manager"),
    "restart-scheduler": ("restart", "kube-scheduler"),
    "restart-kwok": ("restart", "kwok"),
    "pause-apiserver": ("pause", "kube-apiserver"),
    "pause-node-agent": ("pause", "node-agent"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


class K8sCluster:
    """A live cluster for tests: kubeconfig, API client, kubectl, and node injection."""

    def __init__(
        self,
        backend: str,
        kubeconfig_path: Path,
        kubectl_binary: Path,
        context: str | None = None,
        simulates_behaviours: bool = True,
        sandbox_name: str | None = None,
        node_specs: Sequence[fake_nodes.NodeSpec] | None = None,
    ) -> None:
        self.backend = backend
        self.kubeconfig_path = kubeconfig_path
        self.kubectl_binary = kubectl_binary
        self.context = context
        # kwok's stages play sandbox.dsroll.io/behaviour; a kind cluster runs real containers.
        self.simulates_behaviours = simulates_behaviours
        self.sandbox_name = sandbox_name
        # The nodes the backend promises (sandbox: node_specs(n, classes)); empty if unknown.
        self.node_specs: list[fake_nodes.NodeSpec] = list(node_specs or [])
        self.api_client: client.ApiClient = config.new_client_from_config(
            config_file=str(kubeconfig_path), context=context
        )
        self._extra = 0

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the sandbox against this cluster."""
        argv = [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig_path}"]
        if self.context:
            argv.append(f"--context={self.context}")
        proc = subprocess.run([*argv, *args], input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def add_nodes(
        self,
        specs: Sequence[fake_nodes.NodeSpec] | None = None,
        *,
        count: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> list[fake_nodes.NodeSpec]:
        """Add kwok nodes: the given specs, or ``count`` general nodes carrying ``labels``."""
        if not self.simulates_behaviours:
            pytest.skip(f"the {self.backend} backend has no kwok to play added nodes")
        if specs is None:
            specs = fake_nodes.extra_node_specs(count, labels, prefix=f"kwok-extra-{os.getpid()}", start=self._extra)
            self._extra += count
        fake_nodes.add_nodes(self.kubeconfig_path, specs)
        return list(specs)

    # --- faults (docs/sandbox.md, "Misbehaving on purpose") ------------------------------

    def fault(self, kind: str, seconds: float = 0, wait: bool = True) -> Any:
        """Inject a component fault: a kind of ``FAULTS``; the ``pause-*`` kinds take ``seconds``.

        A pause with ``wait=False`` returns the timer that resumes the component (join it).
        """
        if self.backend != "sandbox" or not self.sandbox_name:
            pytest.skip(f"the {self.backend} backend has no processes of ours to restart or pause")
        from dsroll.sandbox import faults

        action, component = FAULTS[kind]
        if action == "restart":
            return faults.restart(self.sandbox_name, component)
        return faults.pause(self.sandbox_name, seconds, component, wait=wait)

    def node_behaviour(self, node: str, behaviour: str | None, timeout: float = 30) -> None:
        """Set ``sandbox.dsroll.io/node-behaviour`` on ``node`` (None removes it: healthy again).

        Returns once kwok sees it, so that pods created or deleted next meet the new
        behaviour: for a behaviour the node agent plays, once kwok's own log says it found
        the agent holding the node's Lease (the Lease naming the agent is not enough: kwok
        decides from its cached copy, which can lag by seconds); when healing such a node,
        once kwok holds the Lease again and has renewed it from its cache.
        """
        if not self.simulates_behaviours:
            pytest.skip(f"the {self.backend} cluster has no kwok: node behaviours are not simulated")
        if self.backend == "sandbox" and self.sandbox_name:
            from dsroll.sandbox import faults

            faults.set_node_behaviour(self.sandbox_name, node, behaviour, wait=timeout)
            return
        self._node_behaviour_without_kwok_log(node, behaviour, timeout)

    def _node_behaviour_without_kwok_log(self, node: str, behaviour: str | None, timeout: float) -> None:
        """A cluster of some other sandbox (``kubeconfig`` backend): kwok's log is not ours to read.

        Waits until the Lease names the agent (or kwok again), then, when the agent took it,
        two of kwok's renew intervals: kwok's cache usually follows within one.
        """
        from dsroll.sandbox import behaviours

        body = {"metadata": {"annotations": {behaviours.NODE_BEHAVIOUR: behaviour}}}
        core = client.CoreV1Api(self.api_client)
        core.patch_node(node, body, _content_type="application/merge-patch+json")
        parsed = behaviours.parse(behaviour)
        want_agent = parsed is not None and parsed.holds_lease
        coordination = client.CoordinationV1Api(self.api_client)
        deadline = time.monotonic() + timeout
        while True:
            try:
                holder = coordination.read_namespaced_lease(node, behaviours.LEASE_NAMESPACE).spec.holder_identity
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                holder = None
            if (holder == behaviours.AGENT_IDENTITY) == want_agent and (want_agent or holder):
                if want_agent:
                    time.sleep(2 * self.kwok_renew_seconds())
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node}: Lease holder still {holder!r} {timeout}s after {behaviour!r}")
            time.sleep(0.2)

    def kwok_renew_seconds(self) -> float:
        """How often kwok renews a node's Lease in this sandbox (a quarter of its duration)."""
        from dsroll.sandbox.behaviours import lease_timing

        return lease_timing(len(self.node_specs) or 12)[0] / 4

    @contextlib.contextmanager
    def misbehaving(self, node: str, behaviour: str, heal_timeout: float = 30) -> Iterator[str]:
        """``with k8s_cluster.misbehaving(node, "not-ready"):`` and the node is healed afterwards.

        On the way out the annotation is removed and the node awaited Ready and untainted
        by the node-lifecycle controller, so the next test finds a healthy cluster.
        """
        self.node_behaviour(node, behaviour)
        try:
            yield node
        finally:
            self.node_behaviour(node, None)
            self.wait_node_healthy(node, heal_timeout)

    @contextlib.contextmanager
    def patient_nodes(self, grace_seconds: int = 60) -> Iterator[None]:
        """Inside: the node-lifecycle grace period at ``grace_seconds`` (a control-plane
        outage then marks no node Unknown); afterwards the sandbox's own, and every node
        awaited healthy, so the next test finds a healthy cluster. Sandbox backend only."""
        from dsroll.sandbox import faults
        from dsroll.sandbox.behaviours import lease_timing

        assert self.sandbox_name, "the grace period is a sandbox setting"
        faults.set_node_grace_period(self.sandbox_name, grace_seconds)
        try:
            yield
        finally:
            faults.set_node_grace_period(self.sandbox_name, lease_timing(len(self.node_specs))[1])
            for spec in self.node_specs:
                self.wait_node_healthy(spec.name)

    def wait_node_healthy(self, node: str, timeout: float = 30) -> None:
        """Until ``node`` is Ready=True and carries no node-lifecycle taint."""
        core = client.CoreV1Api(self.api_client)
        deadline = time.monotonic() + timeout
        while True:
            obj = core.read_node(node)
            ready = any(c.type == "Ready" and c.status == "True" for c in obj.status.conditions or [])
            taints = [t.key for t in obj.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]
            if ready and not taints:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node} not healthy after {timeout}s: ready={ready} taints={taints}")
            time.sleep(0.5)


def _fail(reason: str) -> NoReturn:
    pytest.fail(f"no cluster for the e2e tests: {reason}", pytrace=False)


def _sandbox_backend() -> Iterator[K8sCluster]:
    from dsroll.sandbox import cluster as sandbox

    name = f"pytest-{os.getpid()}"
    n = int(os.environ.get("DSROLL_TEST_NODES", "12"))
    try:
        info = sandbox.up(name=name, nodes=n, progress=lambda m: print(f"[sandbox {name}] {m}"))
    except DsrollError as exc:
        with_down = ""
        try:
            sandbox.down(name)
        except DsrollError as down_exc:
            with_down = f" (and down failed: {down_exc})"
        _fail(f"sandbox up failed: {exc}{with_down}")
    try:
        yield K8sCluster("sandbox", info.kubeconfig, info.kubectl, sandbox_name=name, node_specs=info.node_specs())
    finally:
        sandbox.down(name)


def _kubeconfig_backend() -> Iterator[K8sCluster]:
    path = os.environ.get("DSROLL_TEST_KUBECONFIG")
    if not path or not Path(path).expanduser().is_file():
        _fail(f"DSROLL_TEST_CLUSTER=kubeconfig needs DSROLL_TEST_KUBECONFIG to name a file (got {path!r})")
    kubectl = shutil.which("kubectl")
    if not kubectl:
        from dsroll.sandbox.build import ensure_binaries

        kubectl = str(ensure_binaries().kubectl)
    found = K8sCluster(
        "kubeconfig", Path(path).expanduser(), Path(kubectl), context=os.environ.get("DSROLL_TEST_CONTEXT") or None
    )
    # Behaviours and added nodes need kwok: assume it runs if some node is kwok's.
    try:
        nodes = client.CoreV1Api(found.api_client).list_node().items
    except Exception as exc:  # any failure to reach it is the reason the suite fails
        _fail(f"cannot list nodes with DSROLL_TEST_KUBECONFIG={path}: {exc}")
    found.simulates_behaviours = any(
        (n.metadata.annotations or {}).get(fake_nodes.KWOK_ANNOTATION) == "fake" for n in nodes
    )
    yield found


def _kind_backend() -> Iterator[K8sCluster]:
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("DSROLL_TEST_CLUSTER=kind needs a working Docker (`docker info` failed)")
    kind = shutil.which("kind")
    if not kind:
        _fail("DSROLL_TEST_CLUSTER=kind: no `kind` binary on PATH")
    name = f"dsroll-pytest-{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="dsroll-kind-"))
    kubeconfig = workdir / "kubeconfig"
    (workdir / "kind.yaml").write_text(KIND_CONFIG)
    proc = subprocess.run(
        [
            str(kind),
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            str(workdir / "kind.yaml"),
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "180s",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        _fail(f"kind create cluster failed:\n{proc.stderr}")
    kubectl = shutil.which("kubectl")
    if not kubectl:
        from dsroll.sandbox.build import ensure_binaries

        kubectl = str(ensure_binaries().kubectl)
    try:
        yield K8sCluster("kind", kubeconfig, Path(kubectl), simulates_behaviours=False)
    finally:
        subprocess.run([str(kind), "delete", "cluster", "--name", name], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


BACKENDS = {"sandbox": _sandbox_backend, "kubeconfig": _kubeconfig_backend, "kind": _kind_backend}


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[K8sCluster]:
    backend = os.environ.get("DSROLL_TEST_CLUSTER", "sandbox")
    if backend not in BACKENDS:
        _fail(f"DSROLL_TEST_CLUSTER={backend!r}; use one of {', '.join(BACKENDS)}")
    yield from BACKENDS[backend]()


def _wait_default_service_account(api: client.CoreV1Api, namespace: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.read_namespaced_service_account("default", namespace)
            return
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(
                f"namespace {namespace}: no 'default' ServiceAccount after {timeout}s "
                "(is the serviceaccount controller running?)"
            )
        time.sleep(0.1)


@pytest.fixture()
def namespace(k8s_cluster: K8sCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (pods need its default ServiceAccount: waited for)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    api = client.CoreV1Api(k8s_cluster.api_client)
    api.create_namespace({"metadata": {"name": name, "labels": {"dsroll.io/e2e": "true"}}})
    try:
        _wait_default_service_account(api, name)
        yield name
    finally:
        try:
            api.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
