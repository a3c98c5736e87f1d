"""Figures for docs/sandbox.md: warm ``sandbox up`` time and resident memory.

Run: ``.venv/bin/python bench/sandbox_figures.py [--runs 3] [--big 1000]``.

Measured, per sandbox size: the wall time of ``dsroll.sandbox.cluster.up`` with the
binaries already cached (every process started, every node Ready); the summed RSS
(VmRSS from /proc) of etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, once idle right after ``up`` and once after a DaemonSet has a Ready pod on every
node (the load the dsroll e2e tests and rollouts put on it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from kubernetes import client, config

from dsroll.sandbox import cluster
from dsroll.sandbox.build import ensure_binaries

MiB = 1024 * 1024


def _rss_line(label: str, info: cluster.SandboxInfo) -> int:
    per = cluster.component_rss(info)
    total = sum(per.values())
    parts = ", ".join(f"{name} {rss / MiB:.0f}" for name, rss in per.items())
    print(f"  RSS {label}: {total / MiB:.0f} MiB ({parts})")
    return total


def _daemonset_everywhere(info: cluster.SandboxInfo, timeout: float) -> float:
    """Create a DaemonSet matching every node and return seconds until all pods are Ready."""
    api = config.new_client_from_config(config_file=str(info.kubeconfig))
    apps = client.AppsV1Api(api)
    body: dict[str, Any] = {
        "metadata": {"name": "bench-agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench-agent"}},
            "template": {
                "metadata": {"labels": {"app": "bench-agent"}},
                "spec": {"containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    started = time.monotonic()
    apps.create_namespaced_daemon_set("default", body)
    while True:
        st = apps.read_namespaced_daemon_set("bench-agent", "default").status
        if st.desired_number_scheduled == info.node_count and st.number_ready == info.node_count:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"DaemonSet not Ready on {info.node_count} nodes after {timeout}s: {st}")
        time.sleep(1)


def measure(nodes: int, runs: int, settle: float) -> None:
    name = f"bench-{nodes}"
    print(f"\n== {nodes} nodes ==")
    times = []
    for i in range(runs):
        cluster.down(name)
        started = time.monotonic()
        info = cluster.up(name=name, nodes=nodes)
        times.append(time.monotonic() - started)
        print(f"  warm up #{i + 1}: {times[-1]:.1f}s")
        if i < runs - 1:
            cluster.down(name)
    print(f"  warm up median: {statistics.median(times):.1f}s (min {min(times):.1f}s, max {max(times):.1f}s)")
    try:
        time.sleep(settle)
        _rss_line(f"idle ({settle:.0f}s after up)", info)
        ready = _daemonset_everywhere(info, timeout=120 + nodes * 0.5)
        print(f"  DaemonSet Ready on all {nodes} nodes after {ready:.1f}s")
        time.sleep(settle)
        _rss_line(f"with a Ready DaemonSet pod on each of {nodes} nodes", info)
    finally:
        started = time.monotonic()
        cluster.down(name)
        print(f"  down: {time.monotonic() - started:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm up runs for the small sandbox")
    parser.add_argument("--small", type=int, default=12)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before reading RSS")
    args = parser.parse_args()
    started = time.monotonic()
    ensure_binaries()
    print(f"binaries cached (ensure_binaries took {time.monotonic() - started:.2f}s)")
    measure(args.small, args.runs, args.settle)
    measure(args.big, 1, args.settle)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
