"""The pod watcher against the real DaemonSet controller: what it records, and what the controller does.

(Named `_live` because pytest needs unique basenames: `tests/unit/test_podwatch.py` tests the checkers.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_never_two_pods,
    assert_replaced,
    live_pods,
    max_unavailable,
    overlaps,
    states,
    terminating_overlaps,
)
from e2e.podwatch import PodEvent, PodWatcher

if TYPE_CHECKING:
    from conftest import K8sCluster

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: watched}}
spec:
  selector: {{matchLabels: {{app: watched}}}}
  updateStrategy: {strategy}
  template:
    metadata: {{labels: {{app: watched, dsroll.io/workload: watched, dsroll.io/class: all}}}}
    spec:
      tolerations: [{{operator: Exists}}]
      {node_selector}
      containers: [{{name: agent, image: "example.com/agent:1"}}]
"""


def deploy(k8s_cluster: K8sCluster, namespace: str, strategy: str, node_selector: str = "") -> None:
    manifest = DAEMONSET.format(strategy=strategy, node_selector=node_selector)
    k8s_cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest)


def current_revision(k8s_cluster: K8sCluster, namespace: str) -> str:
    """The hash of the DaemonSet's newest ControllerRevision: what its pods should end on."""
    revisions = json.loads(k8s_cluster.kubectl("-n", namespace, "get", "controllerrevisions", "-o", "json").stdout)
    newest = max(revisions["items"], key=lambda r: r["revision"])
    return str(newest["metadata"]["labels"]["controller-revision-hash"])


def most_terminating_at_once(timeline: Sequence[PodEvent]) -> int:
    return max(sum(1 for p in live.values() if p.terminating) for _, live in states(timeline))


@pytest.fixture
def watcher(k8s_cluster: K8sCluster, namespace: str) -> Iterator[PodWatcher]:
    pods = PodWatcher(namespace, kubeconfig=k8s_cluster.kubeconfig_path, context=k8s_cluster.context)
    yield pods
    pods.stop(sync=False)  # idempotent; the test has stopped it already unless it failed


def test_native_rolling_update_replaces_every_node_within_max_unavailable(
    k8s_cluster: K8sCluster, namespace: str, watcher: PodWatcher
) -> None:
    deploy(k8s_cluster, namespace, "{type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}")
    k8s_cluster.kubectl("-n", namespace, "rollout", "status", "ds/watched", "--timeout=120s")
    before = current_revision(k8s_cluster, namespace)

    watcher.start()
    nodes = sorted(live_pods(watcher.timeline()))
    assert len(nodes) >= 3, f"the DaemonSet should run on every node, runs on {nodes}"
    k8s_cluster.kubectl("-n", namespace, "set", "image", "ds/watched", "agent=example.com/agent:2")
    k8s_cluster.kubectl("-n", namespace, "rollout", "status", "ds/watched", "--timeout=120s")
    timeline = watcher.stop()

    after = current_revision(k8s_cluster, namespace)
    assert after != before
    assert_replaced(timeline, nodes)
    assert_final_revision(timeline, nodes, after)
    # The native controller keeps maxUnavailable by its own count, which misses a node
    # whose old pod is gone and whose new one is not Ready yet: the strict count (dsroll's
    # contract) briefly reached 3 in some runs (podwatch's docstring), so it is not
    # asserted here. What the controller does keep: at most 2 pods terminating at once.
    assert max_unavailable(timeline, nodes) >= 2, "the watcher must see the nodes being replaced as unavailable"
    assert 1 <= most_terminating_at_once(timeline) <= 2
    assert_never_two_pods(timeline)
    # The finding the podwatch docstring records: no replacement while the old pod terminates.
    assert terminating_overlaps(timeline) == [], [o.describe() for o in terminating_overlaps(timeline)]


def test_surging_rollout_runs_two_pods_per_node_and_the_checker_catches_it(
    k8s_cluster: K8sCluster, namespace: str, watcher: PodWatcher
) -> None:
    deploy(k8s_cluster, namespace, "{type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}")
    k8s_cluster.kubectl("-n", namespace, "rollout", "status", "ds/watched", "--timeout=120s")

    watcher.start()
    nodes = sorted(live_pods(watcher.timeline()))
    k8s_cluster.kubectl("-n", namespace, "set", "image", "ds/watched", "agent=example.com/agent:2")
    k8s_cluster.kubectl("-n", namespace, "rollout", "status", "ds/watched", "--timeout=120s")
    timeline = watcher.stop()

    assert_replaced(timeline, nodes)
    assert max_unavailable(timeline, nodes) == 0, "a surge keeps the old pod until the new one is Ready"
    with pytest.raises(AssertionError, match="two non-terminating pods of one workload on one node"):
        assert_never_two_pods(timeline)
    assert {o.node for o in overlaps(timeline) if o.active >= 2} == set(nodes)


def test_daemonset_controller_waits_until_the_terminating_pod_is_gone(
    k8s_cluster: K8sCluster, namespace: str, watcher: PodWatcher
) -> None:
    """On a node no kubelet (or kwok) serves, a deleted pod stays terminating: no second pod meanwhile."""
    name = f"no-kubelet-{uuid.uuid4().hex[:6]}"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"dsroll.io/e2e-node": name}},
        # Only the DaemonSet below tolerates this taint: no other test's pod can land here and hang.
        "spec": {"taints": [{"key": "dsroll.io/e2e-no-kubelet", "value": name, "effect": "NoSchedule"}]},
        "status": {"capacity": {"pods": "10", "cpu": "1", "memory": "1Gi"}},
    }
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    try:
        deploy(
            k8s_cluster, namespace, "{type: OnDelete}", node_selector=f"nodeSelector: {{dsroll.io/e2e-node: {name}}}"
        )
        watcher.start()
        timeline = watcher.wait_for(lambda t: any(e.bound for e in t), 60, "bound pod")
        first = next(e for e in timeline if e.bound)
        k8s_cluster.kubectl("-n", namespace, "set", "image", "ds/watched", "agent=example.com/agent:2")
        k8s_cluster.kubectl("-n", namespace, "delete", "pod", first.name, "--grace-period=30", "--wait=false")
        watcher.wait_for(lambda t: any(e.terminating for e in t), 30, "terminating pod")
        with pytest.raises(AssertionError, match="no second pod within"):
            watcher.wait_for(lambda t: len({e.uid for e in t}) > 1, 5, "second pod")

        k8s_cluster.kubectl("-n", namespace, "delete", "pod", first.name, "--grace-period=0", "--force")
        timeline = watcher.wait_for(lambda t: len({e.uid for e in t}) > 1, 30, "replacement after the pod is gone")
        gone = next(e.seq for e in timeline if e.type == "DELETED")
        added = next(e.seq for e in timeline if e.uid != first.uid)
        assert gone < added, "the replacement must come only after the old pod is gone"
        assert overlaps(watcher.stop()) == []
    finally:
        # No kubelet will ever finalise these pods: drop the DaemonSet, force the pods out, then the node.
        k8s_cluster.kubectl("-n", namespace, "delete", "ds", "watched", "--cascade=orphan", check=False)
        k8s_cluster.kubectl("-n", namespace, "delete", "pods", "--all", "--grace-period=0", "--force", check=False)
        k8s_cluster.kubectl("delete", "node", name, check=False)
