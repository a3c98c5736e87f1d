"""Command lines of the five sandbox processes (pure: paths and ports in, argv out).

Everything listens on 127.0.0.1 only, on ports chosen per sandbox, so several sandboxes
run side by side. Only the controllers a DaemonSet rollout exercises are started: fewer
goroutines, less memory. The node-lifecycle controller is one of them, with short grace
periods, so a node that stops heartbeating turns Unknown and tainted within seconds.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from dsroll.sandbox.build import Binaries
from dsroll.sandbox.certs import Pki

SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR).network_address + 1)

# The daemonset controller itself; the garbage collector (orphan deletes, adoption
# cleanup); namespace (test namespaces really go away); serviceaccount(-token) and the
# root CA publisher (pods can be created: the ServiceAccount admission plugin wants the
# namespace's "default" account); pod GC (pods of deleted nodes go away); node lifecycle
# (Ready=Unknown, not-ready/unreachable taints and pods marked not Ready when a node's
# Lease goes stale) and taint eviction (NoExecute taints evict what does not tolerate
# them; DaemonSet pods tolerate not-ready and unreachable, as upstream).
CONTROLLERS = (
    "daemonset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
)

KWOK_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"
_CLIENT_LIMITS = ("--kube-api-qps=1000", "--kube-api-burst=2000")


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    def as_dict(self) -> dict[str, int]:
        return {
            "etcd-client": self.etcd_client,
            "etcd-peer": self.etcd_peer,
            "kube-apiserver": self.apiserver,
            "kube-controller-manager": self.controller_manager,
            "kube-scheduler": self.scheduler,
        }


@dataclass(frozen=True)
class Layout:
    """Where one sandbox keeps its files; everything lives under ``root``."""

    root: Path

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok-stages.yaml"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def cert_dir(self, component: str) -> Path:
        return self.root / "certs" / component


def etcd_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bins.etcd),
        "--name=sandbox",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sandbox={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]


def apiserver_argv(bins: Binaries, layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    return [
        str(bins.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        # The "kubernetes" Service's endpoints would point at 127.0.0.1, which Endpoints
        # validation rejects (loopback): nothing in the sandbox needs them.
        "--endpoint-reconciler-type=none",
        # TaintNodesByCondition taints every new node node.kubernetes.io/not-ready:NoSchedule
        # until the node-lifecycle controller sees it Ready; the sandbox's nodes are Ready
        # within a second, but a DaemonSet created in that second would skip them (its pods
        # do not tolerate the NoSchedule taint). The controller still taints nodes that
        # turn NotReady or Unknown later.
        "--disable-admission-plugins=TaintNodesByCondition",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(
    bins: Binaries, layout: Layout, ports: Ports, pki: Pki, node_grace_seconds: int = 50
) -> list[str]:
    return [
        str(bins.kube_controller_manager),
        f"--kubeconfig={layout.kubeconfig}",
        "--leader-elect=false",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--use-service-account-credentials=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.cert_dir('kube-controller-manager')}",
        # The default client limit (20 QPS) makes a DaemonSet on 1,000 nodes take ~50s
        # just to create its pods; a loopback apiserver takes far more.
        *_CLIENT_LIMITS,
        "--concurrent-daemonset-syncs=4",
        # A node whose Lease has not been renewed for this long is Unknown; checked every 2s.
        f"--node-monitor-grace-period={node_grace_seconds}s",
        "--node-monitor-period=2s",
        "--node-startup-grace-period=60s",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bins.kube_scheduler),
        f"--kubeconfig={layout.kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.cert_dir('kube-scheduler')}",
        *_CLIENT_LIMITS,  # deprecated flags, still honoured without --config
        "--profiling=false",
        "--v=1",
    ]


def kwok_argv(bins: Binaries, layout: Layout, lease_seconds: int = 40) -> list[str]:
    """kwok renews each node's Lease every quarter of ``lease_seconds``, as a kubelet does.

    At debug level, because kwok says when it finds a node's Lease held by someone else
    (the node agent) only there: ``kwoklog.py`` reads that line to know that kwok has let
    go of a node. It adds a line or two per pod event to what kwok logs at info anyway.
    """
    return [
        str(bins.kwok),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={layout.kwok_config}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
        f"--node-lease-duration-seconds={lease_seconds}",
        "-v=debug",
    ]


def node_agent_argv(server: str, pki: Pki, lease_seconds: int) -> list[str]:
    """The node agent runs in this Python (``sys.executable``), with the admin client cert."""
    return [
        sys.executable,
        "-m",
        "dsroll.sandbox.nodeagent",
        f"--server={server}",
        f"--ca={pki.ca_cert}",
        f"--cert={pki.admin_cert}",
        f"--key={pki.admin_key}",
        f"--lease-seconds={lease_seconds}",
    ]
