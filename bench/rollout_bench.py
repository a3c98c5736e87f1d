"""A dsroll rollout of one DaemonSet on 100 nodes against the native RollingUpdate doing the same.

Run: ``make bench-rollout`` or ``.venv/bin/python bench/rollout_bench.py [--runs 3] [--json] [--events]``.

Why: dsroll replaces pods itself (``OnDelete`` + delete, watch, gate per node) instead of
letting the DaemonSet controller do it, and the claim worth checking is that this costs
little: with the same budget (``maxUnavailable: 10``, one step of 100 %, no pause,
``minReadySeconds: 0``) a dsroll rollout should take at most 1.5x the wall time of the
native ``RollingUpdate``, and make at most 5 API requests per node replaced.

What: a sandbox of its own (``bench-rollout``: 100 kwok nodes, one class ``general``,
torn down at the end, also on failure) and a throwaway git project whose environment has
one workload and one hardware class, so one variant covers all 100 nodes. Per run, one
after the other, never at once:

* dsroll: the image tag is changed and committed, and ``python -m dsroll rollout bench
  --yes -o json`` is timed around the subprocess (so Python start-up, rendering and
  planning count). Its JSON ``elapsedSeconds`` (from the start of execution, planning
  excluded) and ``apiRequests`` (every HTTP request dsroll made, counted at its HTTP
  layer, planning's diff, dry-run and listing included, watches counted once per
  connection) are reported too.
* native: a second DaemonSet in another namespace, created with kubectl,
  ``updateStrategy: RollingUpdate, maxUnavailable: 10``; the time from ``kubectl set
  image`` until ``kubectl rollout status --timeout=5m`` returns (updated == available ==
  desired, observedGeneration >= generation).

Tags alternate between two values, so every other run goes back to a template that has
a ControllerRevision already (a realistic revert, for both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsroll.sandbox import cluster

SANDBOX = "bench-rollout"
NODES = 100
ENV_NAME = "bench"
DSROLL_NS = "bench"
NATIVE_NS = "bench-native"
NATIVE_DS = "native-agent"
IMAGE = "example.com/agent"
TAGS = ("1.0", "1.1")
RATIO_TARGET = 1.5
REQUESTS_TARGET = 5.0
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@dsroll.invalid"]

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
spec:
  selector:
    matchLabels: {app: "{{ workload.name }}"}
  template:
    metadata:
      labels: {app: "{{ workload.name }}"}
    spec:
      containers:
        - name: agent
          image: "{{ values.image }}:{{ values.tag }}"
"""


def environment(tag: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dsroll.io/v1alpha1
        kind: Environment
        metadata: {{name: {ENV_NAME}}}
        cluster: {{namespace: {DSROLL_NS}}}
        hardwareClasses:
          - name: general
            default: true
        workloads:
          - name: agent
            template: templates/agent.yaml.j2
            values: {{image: {IMAGE}, tag: "{tag}"}}
        rollout:
          steps: ["100%"]
          maxUnavailable: 10
          pause: "0"
          readyTimeout: 2m
          minReadySeconds: 0
        """
    )


def native_manifest(tag: str) -> dict[str, Any]:
    labels = {"app": NATIVE_DS}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NATIVE_DS, "namespace": NATIVE_NS},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 10}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": f"{IMAGE}:{tag}"}]},
            },
        },
    }


@dataclass
class Run:
    number: int
    tag: str
    dsroll_wall: float
    dsroll_elapsed: float
    api_requests: int
    native_wall: float
    node_seconds: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.dsroll_wall / self.native_wall

    @property
    def exec_ratio(self) -> float:
        """dsroll's execution alone (its elapsedSeconds: no start-up, render or planning) over native."""
        return self.dsroll_elapsed / self.native_wall

    @property
    def requests_per_node(self) -> float:
        return self.api_requests / NODES


class Bench:
    def __init__(self, info: cluster.SandboxInfo, project: Path, events: bool) -> None:
        self.info = info
        self.project = project
        self.events = events
        self.env = {**os.environ, "KUBECONFIG": str(info.kubeconfig)}

    # --- helpers ---------------------------------------------------------------------

    def sh(self, argv: Sequence[str], *, input: str | None = None, cwd: Path | None = None) -> str:
        done = subprocess.run(
            list(argv), cwd=cwd or self.project, env=self.env, input=input, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.sh([str(self.info.kubectl), "--context", self.info.context, *args], input=input)

    def namespace(self, name: str) -> None:
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + 60
        while not self.kubectl("get", "serviceaccount", "default", "-n", name, "--ignore-not-found", "-o", "name"):
            if time.monotonic() > deadline:
                raise SystemExit(f"namespace {name}: no default ServiceAccount after 60s")
            time.sleep(0.5)

    def wait_ready(self, namespace: str, name: str, timeout: float = 300) -> None:
        """Until every one of the NODES pods is updated and Ready (status as the controller reports it)."""
        deadline = time.monotonic() + timeout
        while True:
            ds = json.loads(self.kubectl("get", "daemonset", name, "-n", namespace, "-o", "json"))
            st = ds.get("status") or {}
            counts = [st.get(k, 0) for k in ("desiredNumberScheduled", "numberReady", "updatedNumberScheduled")]
            observed = st.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            if observed and counts == [NODES] * 3 and st.get("numberAvailable", 0) == NODES:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{namespace}/{name} not Ready on {NODES} nodes after {timeout:.0f}s: {st}")
            time.sleep(1)

    # --- dsroll ----------------------------------------------------------------------------

    def commit(self, tag: str, message: str) -> None:
        (self.project / "environments" / f"{ENV_NAME}.yaml").write_text(environment(tag))
        self.sh([*GIT, "add", "-A"])
        self.sh([*GIT, "commit", "-qm", message])

    def dsroll_rollout(self) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
        """Wall seconds, the final JSON object, and the --events lines (if asked for)."""
        argv = [sys.executable, "-m", "dsroll", "rollout", ENV_NAME, "--yes", "-o", "json"]
        argv += ["--kubeconfig", str(self.info.kubeconfig), "--context", self.info.context]
        if self.events:
            argv.append("--events")
        started = time.monotonic()
        done = subprocess.run(argv, cwd=self.project, env=self.env, capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(
                f"dsroll rollout failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
            )
        if not self.events:  # one indented JSON object
            return wall, json.loads(done.stdout), []
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]  # JSON lines, summary last
        summary = next(line for line in reversed(lines) if "apiRequests" in line)
        return wall, summary, [line for line in lines if "event" in line]

    # --- native ----------------------------------------------------------------------------

    def native_rollout(self, tag: str) -> float:
        started = time.monotonic()
        self.kubectl("set", "image", f"daemonset/{NATIVE_DS}", f"agent={IMAGE}:{tag}", "-n", NATIVE_NS)
        self.kubectl("rollout", "status", f"daemonset/{NATIVE_DS}", "-n", NATIVE_NS, "--timeout=5m")
        return time.monotonic() - started

    # --- the whole thing ---------------------------------------------------------------

    def setup(self) -> None:
        (self.project / "environments").mkdir()
        (self.project / "templates").mkdir()
        (self.project / "templates" / "agent.yaml.j2").write_text(TEMPLATE)
        self.sh(["git", "init", "-q", "-b", "main"])
        self.commit(TAGS[0], "bench project")
        self.namespace(DSROLL_NS)
        self.namespace(NATIVE_NS)
        started = time.monotonic()
        _, summary, _ = self.dsroll_rollout()
        (variant,) = summary["variants"]
        self.variant = str(variant["name"])
        self.wait_ready(DSROLL_NS, self.variant)
        say(f"dsroll created {DSROLL_NS}/{self.variant}, Ready on {NODES} nodes ({time.monotonic() - started:.1f}s)")
        started = time.monotonic()
        self.kubectl("apply", "-f", "-", input=json.dumps(native_manifest(TAGS[0])))
        self.wait_ready(NATIVE_NS, NATIVE_DS)
        say(f"kubectl created {NATIVE_NS}/{NATIVE_DS}, Ready on {NODES} nodes ({time.monotonic() - started:.1f}s)")

    def run(self, number: int) -> Run:
        tag = TAGS[number % 2]
        self.commit(tag, f"tag {tag}")
        wall, summary, events = self.dsroll_rollout()
        (variant,) = summary["variants"]
        if summary["result"] != "complete" or variant["nodesUpdated"] != NODES:
            raise SystemExit(f"dsroll rollout did not complete on {NODES} nodes: {json.dumps(summary)}")
        self.wait_ready(DSROLL_NS, self.variant)  # a check, after the clock: it must already hold
        native = self.native_rollout(tag)
        self.wait_ready(NATIVE_NS, NATIVE_DS)
        node_seconds = [float(e["seconds"]) for e in events if e["event"] == "node-replaced"]
        result = Run(
            number, tag, wall, float(summary["elapsedSeconds"]), int(summary["apiRequests"]), native, node_seconds
        )
        say(
            f"run {number}: -> {tag}: dsroll {wall:.1f}s (elapsedSeconds {result.dsroll_elapsed:.1f}, "
            f"{result.api_requests} requests), native {native:.1f}s"
        )
        if events:
            say(f"  events: {event_summary(events)}")
        return result


def event_summary(events: list[dict[str, Any]]) -> str:
    """Per-node replacement times and where the first/last replacement happened."""
    times = [float(e["seconds"]) for e in events if e["event"] == "node-replaced"]
    if not times:
        return "no node-replaced events"
    stamps = [e["time"] for e in events]
    return (
        f"{len(times)} node-replaced, per node median {statistics.median(times):.2f}s, "
        f"max {max(times):.2f}s; first event {stamps[0]}, last {stamps[-1]}"
    )


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(runs: list[Run]) -> str:
    head = f"{'run':>3}  {'tag':>4}  {'dsroll s':>8}  {'(exec s)':>8}  {'native s':>8}  {'ratio':>5}  "
    head += f"{'(exec)':>6}  {'requests':>8}  {'req/node':>8}"
    rows = [head]
    for r in runs:
        rows.append(
            f"{r.number:>3}  {r.tag:>4}  {r.dsroll_wall:>8.1f}  {r.dsroll_elapsed:>8.1f}  {r.native_wall:>8.1f}  "
            f"{r.ratio:>5.2f}  {r.exec_ratio:>6.2f}  {r.api_requests:>8}  {r.requests_per_node:>8.2f}"
        )
    ratio = statistics.median(r.ratio for r in runs)
    worst = max(r.requests_per_node for r in runs)
    rows.append(
        f"median ratio {ratio:.2f}x (target <= {RATIO_TARGET}x: {'met' if ratio <= RATIO_TARGET else 'MISSED'}); "
        f"max requests/node {worst:.2f} (target <= {REQUESTS_TARGET:.0f}: "
        f"{'met' if worst <= REQUESTS_TARGET else 'MISSED'}; planning's requests included)"
    )
    rows.append(
        f"(exec s / (exec) = dsroll's elapsedSeconds: execution only, without Python start-up, render and "
        f"planning; median exec ratio {statistics.median(r.exec_ratio for r in runs):.2f}x)"
    )
    return "\n".join(rows)


def figures(runs: list[Run]) -> dict[str, Any]:
    ratio = statistics.median(r.ratio for r in runs)
    worst = max(r.requests_per_node for r in runs)
    return {
        "nodes": NODES,
        "runs": [
            {
                "run": r.number,
                "tag": r.tag,
                "dsrollWallSeconds": round(r.dsroll_wall, 3),
                "dsrollElapsedSeconds": r.dsroll_elapsed,
                "nativeWallSeconds": round(r.native_wall, 3),
                "ratio": round(r.ratio, 3),
                "execRatio": round(r.exec_ratio, 3),
                "apiRequests": r.api_requests,
                "requestsPerNode": r.requests_per_node,
            }
            | ({"nodeSecondsMedian": round(statistics.median(r.node_seconds), 3)} if r.node_seconds else {})
            for r in runs
        ],
        "medianRatio": round(ratio, 3),
        "medianExecRatio": round(statistics.median(r.exec_ratio for r in runs), 3),
        "ratioTarget": RATIO_TARGET,
        "ratioMet": ratio <= RATIO_TARGET,
        "maxRequestsPerNode": worst,
        "requestsTarget": REQUESTS_TARGET,
        "requestsMet": worst <= REQUESTS_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed dsroll/native pairs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--events", action="store_true", help="pass --events to dsroll and summarise per-node times")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = time.monotonic()
    cluster.down(SANDBOX)  # a leftover of an interrupted run
    try:
        info = cluster.up(name=SANDBOX, nodes=NODES, classes=("general",))
        say(f"sandbox {SANDBOX}: {NODES} nodes up ({time.monotonic() - started:.1f}s)")
        with tempfile.TemporaryDirectory(prefix="dsroll-rollout-bench.") as tmp:
            bench = Bench(info, Path(tmp), args.events)
            bench.setup()
            runs = [bench.run(i + 1) for i in range(args.runs)]
    finally:
        cluster.down(SANDBOX)
        say(f"sandbox {SANDBOX} down")
    print(json.dumps(figures(runs), indent=2) if args.json else table(runs))


if __name__ == "__main__":
    main()
