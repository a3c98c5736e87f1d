"""A dsroll rollout of one DaemonSet on N nodes against the native RollingUpdate doing the same.

Run: ``make bench-rollout`` (100 nodes, maxUnavailable 10), ``make bench-scale`` (1,000
nodes at 100), or ``.venv/bin/python bench/rollout_bench.py [--nodes 100]
[--max-unavailable 10] [--runs 3] [--json] [--events] [--watch-pods] [--profile DIR]
[--floor]``.

Why: dsroll replaces pods itself (``OnDelete`` + delete, watch, gate per node) instead of
letting the DaemonSet controller do it. It only deletes pods and lets the controller
create them, so it does less work per node than the native controller and can refill a
freed slot the moment a pod turns Ready. With the same budget (``maxUnavailable: K``,
one step of 100 %, no pause, ``minReadySeconds: 0``) a dsroll rollout should take at
most 1.0x the wall time of the native ``RollingUpdate`` at 1,000 nodes and up, at most
1.3x at 100 nodes (Python start-up included), and make at most 1.5 API requests per
node replaced (docs/performance.md has the figures and the targets' reasons).

What: a sandbox of its own (``bench-rollout``: N kwok nodes, one class ``general``,
torn down at the end, also on failure) and a throwaway git project whose environment has
one workload and one hardware class, so one variant covers all N nodes. Per run, one
after the other, never at once:

* dsroll: the image tag is changed and committed, and ``python -m dsroll rollout bench
  --yes -o json`` is timed around the subprocess (so Python start-up, rendering and
  planning count). Its JSON ``elapsedSeconds`` (from the start of execution, planning
  excluded) and ``apiRequests`` (every HTTP request dsroll made, counted at its HTTP
  layer, planning's diff, dry-run and listing included, watches counted once per
  connection) are reported too (dsroll runs with its bytecode cached, as pip installs it:
  ``PYTHONDONTWRITEBYTECODE`` is not passed on); and, from ``os.wait4``, the CPU seconds
  (user + system) and peak RSS of dsroll's process (with the git processes it ran:
  ``ru_maxrss`` is the largest of them), and dsroll's own peak (``VmHWM`` from /proc,
  read until it exits); and the largest ``dsroll.io/rollout`` annotation written during
  the run (a ``kubectl get --watch`` on the DaemonSet records every version of it).
* native: a second DaemonSet in another namespace, created with kubectl,
  ``updateStrategy: RollingUpdate, maxUnavailable: 10``; the time from ``kubectl set
  image`` until ``kubectl rollout status --timeout=5m`` returns (updated == available ==
  desired, observedGeneration >= generation).

``--floor`` adds a third DaemonSet (``updateStrategy: OnDelete``, in ``bench-floor``)
rolled by ``bench/floor``: the leanest out-of-process OnDelete rollout (Go, client-go's
pod informer over protobuf, uid-preconditioned deletes, the same budget; no gate, state,
lease or events), built with ``go build`` into dsroll's cache at each start (seconds;
a few minutes the first time: client-go).
Per run, after native, its wall time from ``kubectl set image`` to its last node Ready:
what any orchestrator that deletes pods from outside the cluster pays on this control
plane, and so what of dsroll's time is dsroll's own.

``--watch-pods`` runs the independent pod watcher (``tests/e2e/podwatch.py``) on both
namespaces during the first run: per node, the time from the old pod's deletion to the
new pod's Ready for dsroll and native, how long a freed slot stays idle, and dsroll's
invariants (never more than K nodes without a Ready pod, never two pods on a node)
judged from that timeline. The watcher costs CPU on the same 2 cores: its run is for
understanding, not for the timing table. ``--profile DIR`` samples dsroll's process
with py-spy (``PYSPY`` or ``py-spy`` on PATH) on every run.

Tags alternate between two values, so every other run goes back to a template that has
a ControllerRevision already (a realistic revert, for both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dsroll.sandbox import build, cluster

ROOT = Path(__file__).resolve().parents[1]

SANDBOX = "bench-rollout"
NODES = 100
MAX_UNAVAILABLE = 10
ENV_NAME = "bench"
DSROLL_NS = "bench"
NATIVE_NS = "bench-native"
NATIVE_DS = "native-agent"
FLOOR_NS = "bench-floor"
FLOOR_DS = "floor-agent"
FLOOR_SOURCE = ROOT / "bench" / "floor"
IMAGE = "example.com/agent"
TAGS = ("1.0", "1.1")
REQUESTS_TARGET = 1.5
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


def ratio_target(nodes: int) -> float:
    """At 1,000 nodes and up dsroll must be as fast as native; below, start-up weighs: 1.3x."""
    return 1.0 if nodes >= 1000 else 1.3


def environment(tag: str, max_unavailable: int, ready_timeout: str) -> str:
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
          maxUnavailable: {max_unavailable}
          pause: "0"
          readyTimeout: {ready_timeout}
          minReadySeconds: 0
        """
    )


def native_manifest(tag: str, max_unavailable: int) -> dict[str, Any]:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}
    return _manifest(NATIVE_NS, NATIVE_DS, tag, strategy)


def floor_manifest(tag: str) -> dict[str, Any]:
    return _manifest(FLOOR_NS, FLOOR_DS, tag, {"type": "OnDelete"})


def _manifest(namespace: str, name: str, tag: str, strategy: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": f"{IMAGE}:{tag}"}]},
            },
        },
    }


def build_floor() -> Path:
    """``bench/floor``, built at every start of the bench into dsroll's cache (beside the
    sandbox's binaries, not a shared temporary directory): Go's build cache makes a rebuild
    of unchanged sources take seconds, the first build a few minutes (client-go)."""
    out = build.cache_root() / "bench-floor" / "floor"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        ["go", "build", "-trimpath", "-o", str(out), "."], cwd=FLOOR_SOURCE, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"go build in {FLOOR_SOURCE} failed ({done.returncode}):\n{done.stderr}")
    say(f"bench/floor built ({time.monotonic() - started:.1f}s)")
    return out


@dataclass
class Run:
    number: int
    tag: str
    nodes: int
    dsroll_wall: float
    dsroll_elapsed: float
    api_requests: int
    native_wall: float
    cpu_seconds: float
    peak_rss: int  # bytes: wait4's ru_maxrss, the largest of dsroll and the git processes it ran
    state_bytes: int  # the largest dsroll.io/rollout annotation written
    node_seconds: list[float] = field(default_factory=list)
    witness: dict[str, Any] = field(default_factory=dict)
    own_rss: int = 0  # bytes: dsroll's own peak (VmHWM)
    floor_wall: float = 0.0  # bench/floor's wall time (--floor), 0 without

    @property
    def ratio(self) -> float:
        return self.dsroll_wall / self.native_wall

    @property
    def exec_ratio(self) -> float:
        """dsroll's execution alone (its elapsedSeconds: no start-up, render or planning) over native."""
        return self.dsroll_elapsed / self.native_wall

    @property
    def floor_ratio(self) -> float:
        """bench/floor over native: what deleting from outside costs here, whoever does it."""
        return self.floor_wall / self.native_wall

    @property
    def over_floor(self) -> float:
        """dsroll over bench/floor: dsroll's own part."""
        return self.dsroll_wall / self.floor_wall

    @property
    def requests_per_node(self) -> float:
        return self.api_requests / self.nodes


class AnnotationWatch:
    """Every version of the DaemonSet's ``dsroll.io/rollout`` annotation, by ``kubectl get --watch``."""

    def __init__(self, bench: Bench, namespace: str, name: str) -> None:
        path = '{.metadata.annotations.dsroll\\.io/rollout}{"\\n"}'
        argv = [str(bench.info.kubectl), "--context", bench.info.context, "get", "daemonset", name]
        argv += ["-n", namespace, "--watch", "-o", f"jsonpath={path}"]
        self.process = subprocess.Popen(argv, env=bench.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.largest = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.largest = max(self.largest, len(line.rstrip(b"\n")))

    def stop(self) -> int:
        time.sleep(1)  # the last write's watch event
        self.process.terminate()
        self.process.wait()
        self.thread.join(timeout=5)
        return self.largest


class Bench:
    def __init__(self, info: cluster.SandboxInfo, project: Path, args: argparse.Namespace) -> None:
        self.info = info
        self.project = project
        self.nodes: int = args.nodes
        self.max_unavailable: int = args.max_unavailable
        self.events: bool = args.events
        self.watch_pods: bool = args.watch_pods
        self.profile: Path | None = args.profile
        self.floor: Path | None = build_floor() if args.floor else None
        self.timeout = max(300.0, self.nodes * 0.6)
        # dsroll as pip installs it, with its modules' bytecode cached (a PYTHONDONTWRITEBYTECODE in
        # the caller's environment would make every run compile dsroll from source: ~0.15 s here).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["KUBECONFIG"] = str(info.kubeconfig)

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

    def wait_ready(self, namespace: str, name: str) -> None:
        """Until every one of the nodes' pods is updated and Ready (status as the controller reports it)."""
        deadline = time.monotonic() + self.timeout
        while True:
            ds = json.loads(self.kubectl("get", "daemonset", name, "-n", namespace, "-o", "json"))
            st = ds.get("status") or {}
            counts = [st.get(k, 0) for k in ("desiredNumberScheduled", "numberReady", "updatedNumberScheduled")]
            observed = st.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            if observed and counts == [self.nodes] * 3 and st.get("numberAvailable", 0) == self.nodes:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{namespace}/{name} not Ready on {self.nodes} nodes after {self.timeout:.0f}s: {st}")
            time.sleep(1)

    def revision(self, namespace: str, name: str) -> str:
        """The hash of the DaemonSet's newest ControllerRevision (the pods' controller-revision-hash)."""
        listed = json.loads(self.kubectl("get", "controllerrevisions", "-n", namespace, "-o", "json"))["items"]
        mine = [r for r in listed if any(o.get("name") == name for o in r["metadata"].get("ownerReferences") or [])]
        newest = max(mine, key=lambda r: int(r["revision"]))
        return str(newest["metadata"]["labels"]["controller-revision-hash"])

    # --- dsroll ----------------------------------------------------------------------------

    def commit(self, tag: str, message: str) -> None:
        ready_timeout = f"{max(2, self.nodes // 500 + 2)}m"
        text = environment(tag, self.max_unavailable, ready_timeout)
        (self.project / "environments" / f"{ENV_NAME}.yaml").write_text(text)
        self.sh([*GIT, "add", "-A"])
        self.sh([*GIT, "commit", "-qm", message])

    def dsroll_rollout(self, profile: Path | None = None) -> tuple[float, dict[str, Any], list[dict[str, Any]], Any]:
        """Wall seconds, the final JSON object, the --events lines (if asked for), and the rusage."""
        argv = [sys.executable, "-m", "dsroll", "rollout", ENV_NAME, "--yes", "-o", "json"]
        argv += ["--kubeconfig", str(self.info.kubeconfig), "--context", self.info.context]
        if self.events:
            argv.append("--events")
        if profile is not None:
            spy = os.environ.get("PYSPY") or shutil.which("py-spy") or "py-spy"
            sampling = ["--idle", "--format", "raw", "--threads", "--rate", "200", "-o", str(profile)]
            argv = [spy, "record", *sampling, "--", *argv]
        started = time.monotonic()
        process = subprocess.Popen(
            argv, cwd=self.project, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out: list[str] = []
        readers = [
            threading.Thread(target=lambda: out.append(process.stdout.read() if process.stdout else "")),
            threading.Thread(target=lambda: out.append("\0" + (process.stderr.read() if process.stderr else ""))),
        ]
        for reader in readers:
            reader.start()
        memory = threading.Thread(target=self._sample_rss, args=(process.pid, started), daemon=True)
        memory.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        for reader in readers:
            reader.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout = next(o for o in out if not o.startswith("\0"))
        stderr = next(o for o in out if o.startswith("\0"))[1:]
        if process.returncode != 0:
            raise SystemExit(f"dsroll rollout failed ({process.returncode}): {' '.join(argv)}\n{stdout}\n{stderr}")
        if not self.events:  # one indented JSON object (py-spy says a word before and after it)
            lines = stdout.splitlines()
            start = next(i for i, line in enumerate(lines) if line.startswith("{"))
            end = max(i for i, line in enumerate(lines) if line.startswith("}"))
            return wall, json.loads("\n".join(lines[start : end + 1])), [], usage
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]  # JSON lines, summary last
        summary = next(line for line in reversed(lines) if "apiRequests" in line)
        return wall, summary, [line for line in lines if "event" in line], usage

    def _sample_rss(self, pid: int, started: float) -> None:
        """dsroll's resident memory twice a second, to tell when its peak happens."""
        self.rss_samples: list[tuple[float, int]] = []
        self.hwm = 0  # VmHWM: the process's own peak RSS (wait4's ru_maxrss also counts git children)
        while True:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return
            fields = {line.split(":")[0]: line.split()[1] for line in text.splitlines() if line.startswith("Vm")}
            self.rss_samples.append((time.monotonic() - started, int(fields.get("VmRSS", 0)) * 1024))
            self.hwm = max(self.hwm, int(fields.get("VmHWM", 0)) * 1024)
            time.sleep(0.2)

    # --- native ----------------------------------------------------------------------------

    def native_rollout(self, tag: str) -> float:
        started = time.monotonic()
        self.set_image(NATIVE_NS, NATIVE_DS, tag)
        self.kubectl("rollout", "status", f"daemonset/{NATIVE_DS}", "-n", NATIVE_NS, f"--timeout={self.timeout:.0f}s")
        return time.monotonic() - started

    def set_image(self, namespace: str, name: str, tag: str) -> None:
        """A new template for a DaemonSet of ``_manifest``'s: its container's image tag."""
        self.kubectl("set", "image", f"daemonset/{name}", f"agent={IMAGE}:{tag}", "-n", namespace)

    def floor_rollout(self, tag: str) -> float:
        assert self.floor is not None
        started = time.monotonic()
        self.set_image(FLOOR_NS, FLOOR_DS, tag)
        argv = [str(self.floor), "-kubeconfig", str(self.info.kubeconfig), "-context", self.info.context]
        self.sh([*argv, "-namespace", FLOOR_NS, "-daemonset", FLOOR_DS, "-max-unavailable", str(self.max_unavailable)])
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
        _, summary, _, _ = self.dsroll_rollout()
        (variant,) = summary["variants"]
        self.variant = str(variant["name"])
        self.wait_ready(DSROLL_NS, self.variant)
        took = time.monotonic() - started
        say(f"dsroll created {DSROLL_NS}/{self.variant}, Ready on {self.nodes} nodes ({took:.1f}s)")
        started = time.monotonic()
        self.kubectl("apply", "-f", "-", input=json.dumps(native_manifest(TAGS[0], self.max_unavailable)))
        self.wait_ready(NATIVE_NS, NATIVE_DS)
        took = time.monotonic() - started
        say(f"kubectl created {NATIVE_NS}/{NATIVE_DS}, Ready on {self.nodes} nodes ({took:.1f}s)")
        if self.floor is not None:
            started = time.monotonic()
            self.namespace(FLOOR_NS)
            self.kubectl("apply", "-f", "-", input=json.dumps(floor_manifest(TAGS[0])))
            self.wait_ready(FLOOR_NS, FLOOR_DS)
            took = time.monotonic() - started
            say(f"kubectl created {FLOOR_NS}/{FLOOR_DS} (OnDelete), Ready on {self.nodes} nodes ({took:.1f}s)")

    def run(self, number: int) -> Run:
        tag = TAGS[number % 2]
        self.commit(tag, f"tag {tag}")
        watchers = self._witnesses() if self.watch_pods and number == 1 else None
        annotation = AnnotationWatch(self, DSROLL_NS, self.variant)
        profile = self.profile / f"dsroll-{self.nodes}-run{number}.txt" if self.profile else None
        wall, summary, events, usage = self.dsroll_rollout(profile)
        state_bytes = annotation.stop()
        (variant,) = summary["variants"]
        if summary["result"] != "complete" or variant["nodesUpdated"] != self.nodes:
            raise SystemExit(f"dsroll rollout did not complete on {self.nodes} nodes: {json.dumps(summary)}")
        self.wait_ready(DSROLL_NS, self.variant)  # a check, after the clock: it must already hold
        native = self.native_rollout(tag)
        self.wait_ready(NATIVE_NS, NATIVE_DS)
        floor = 0.0
        if self.floor is not None:
            floor = self.floor_rollout(tag)
            self.wait_ready(FLOOR_NS, FLOOR_DS)
        witness = self._judge(watchers, events) if watchers else {}
        node_seconds = [float(e["seconds"]) for e in events if e["event"] == "node-replaced"]
        result = Run(
            number, tag, self.nodes, wall, float(summary["elapsedSeconds"]), int(summary["apiRequests"]), native,
            usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, state_bytes, node_seconds, witness,
        )  # fmt: skip
        say(
            f"run {number}: -> {tag}: dsroll {wall:.1f}s (elapsedSeconds {result.dsroll_elapsed:.1f}, "
            f"{result.api_requests} requests, CPU {result.cpu_seconds:.1f}s, peak RSS {result.peak_rss / MiB:.0f} MiB, "
            f"state annotation <= {state_bytes} bytes), native {native:.1f}s"
        )
        if events:
            say(f"  events: {event_summary(events)}")
        result.own_rss = getattr(self, "hwm", 0)
        result.floor_wall = floor
        if floor:
            say(f"  floor: {floor:.1f}s, {result.floor_ratio:.2f}x native; dsroll {result.over_floor:.2f}x the floor")
        samples = getattr(self, "rss_samples", [])
        if samples:
            at, top = max(samples, key=lambda s: s[1])
            phase = "before execution (start-up, planning)" if at < wall - result.dsroll_elapsed else "executing"
            say(
                f"  memory: RSS highest ({top / MiB:.0f} MiB, sampled) at {at:.1f}s of {wall:.1f}s, {phase}; "
                f"dsroll's own peak (VmHWM, read until it exits) {self.hwm / MiB:.0f} MiB"
            )
        return result

    # --- the independent witness (--watch-pods) -------------------------------------------

    def _witnesses(self) -> dict[str, Any]:
        sys.path.insert(0, str(ROOT / "tests"))
        from e2e.podwatch import PodWatcher

        found = {}
        for ns in (DSROLL_NS, NATIVE_NS, *((FLOOR_NS,) if self.floor is not None else ())):
            found[ns] = PodWatcher(ns, kubeconfig=self.info.kubeconfig, context=self.info.context).start()
        return found

    def _judge(self, watchers: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
        import timeline  # bench/, beside this file
        from e2e import invariants

        mine = watchers[DSROLL_NS].stop(timeout=120)
        theirs = watchers[NATIVE_NS].stop(timeout=120)
        nodes = sorted({e.node for e in mine if e.node})
        violations = []
        try:
            worst = invariants.assert_max_unavailable(mine, nodes, self.max_unavailable)
        except AssertionError as exc:
            violations.append(str(exc).splitlines()[0])
            worst = invariants.max_unavailable(mine, nodes)
        try:
            invariants.assert_never_two_pods(mine)
        except AssertionError as exc:
            violations.append(str(exc).splitlines()[0])
        done = timeline.replacements(mine, self.revision(DSROLL_NS, self.variant))
        ours = timeline.summary(done, "dsroll")
        replaced_at = {
            e["node"]: datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
            for e in events
            if e["event"] == "node-replaced"
        }
        lags = timeline.decision_lags(done, replaced_at)
        if lags:
            ours["decisionLagMedian"] = round(statistics.median(lags), 4)
            ours["decisionLagP90"] = round(lags[int(0.9 * (len(lags) - 1))], 4)
        native_revision = self.revision(NATIVE_NS, NATIVE_DS)
        native = timeline.summary(timeline.replacements(theirs, native_revision), "native")
        ours["stages"] = timeline.stages(mine, self.revision(DSROLL_NS, self.variant))
        native["stages"] = timeline.stages(theirs, native_revision)
        say(f"  witness: stage medians (s), dsroll {ours['stages']}; native {native['stages']}")
        native_worst = invariants.max_unavailable(theirs, sorted({e.node for e in theirs if e.node}))
        say(
            f"  witness: {len(mine)} dsroll pod events, {len(theirs)} native; at most {worst} of {len(nodes)} nodes "
            f"without a Ready pod at once (maxUnavailable {self.max_unavailable}); violations: {violations or 'none'}"
        )
        say(
            f"  witness: native had at most {native_worst} nodes without a Ready pod at once (it does not count a node"
            " whose old pod is gone and whose new one is not there yet: tests/e2e/podwatch.py)"
        )
        say(f"  witness: {timeline.describe(ours)}")
        if lags:
            say(
                f"  witness: Ready event (witness) -> dsroll's node-replaced: median {ours['decisionLagMedian']:.4f}s,"
                f" p90 {ours['decisionLagP90']:.4f}s (--events)"
            )
        say(f"  witness: {timeline.describe(native)}")
        found: dict[str, Any] = {}
        if FLOOR_NS in watchers:
            lowest = watchers[FLOOR_NS].stop(timeout=120)
            floor_revision = self.revision(FLOOR_NS, FLOOR_DS)
            found["floor"] = timeline.summary(timeline.replacements(lowest, floor_revision), "floor")
            floor_nodes = sorted({e.node for e in lowest if e.node})
            found["floorMaxUnavailableSeen"] = invariants.max_unavailable(lowest, floor_nodes)
            say(f"  witness: {timeline.describe(found['floor'])}; at most {found['floorMaxUnavailableSeen']} at once")
        return {
            **found,
            "maxUnavailableSeen": worst,
            "nativeMaxUnavailableSeen": native_worst,
            "violations": violations,
            "dsroll": ours,
            "native": native,
        }


MiB = 1024 * 1024


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


def table(runs: list[Run], max_unavailable: int) -> str:
    nodes = runs[0].nodes
    target = ratio_target(nodes)
    head = f"{'run':>3}  {'dsroll s':>8}  {'(exec s)':>8}  {'native s':>8}  {'ratio':>5}  {'(exec)':>6}  "
    head += f"{'req/node':>8}  {'CPU s':>6}  {'RSS MiB':>7}  {'(own)':>5}  {'state B':>7}"
    rows = [f"{nodes} nodes, maxUnavailable {max_unavailable}, one 100% step", head]
    for r in runs:
        rows.append(
            f"{r.number:>3}  {r.dsroll_wall:>8.1f}  {r.dsroll_elapsed:>8.1f}  {r.native_wall:>8.1f}  "
            f"{r.ratio:>5.2f}  {r.exec_ratio:>6.2f}  {r.requests_per_node:>8.2f}  {r.cpu_seconds:>6.1f}  "
            f"{r.peak_rss / MiB:>7.0f}  {r.own_rss / MiB:>5.0f}  {r.state_bytes:>7}"
        )
    ratio = statistics.median(r.ratio for r in runs)
    worst = max(r.requests_per_node for r in runs)
    rows.append(
        f"median ratio {ratio:.2f}x (target <= {target}x: {'met' if ratio <= target else 'MISSED'}); "
        f"median exec ratio {statistics.median(r.exec_ratio for r in runs):.2f}x; "
        f"max requests/node {worst:.2f} (target <= {REQUESTS_TARGET}: "
        f"{'met' if worst <= REQUESTS_TARGET else 'MISSED'}; planning's requests included)"
    )
    if all(r.floor_wall for r in runs):
        floor = ", ".join(f"{r.floor_wall:.1f}s ({r.floor_ratio:.2f}x)" for r in runs)
        rows.append(
            f"floor (bench/floor, the leanest out-of-process OnDelete rollout): {floor}; "
            f"median {statistics.median(r.floor_ratio for r in runs):.2f}x native; dsroll "
            f"{statistics.median(r.over_floor for r in runs):.2f}x the floor (median)"
        )
    rows.append(
        "(exec = dsroll's elapsedSeconds: execution only, without Python start-up, render and planning; "
        "CPU s and RSS: dsroll's process and the git processes it ran, from wait4; (own): dsroll's own peak RSS, "
        "VmHWM; state B: the largest dsroll.io/rollout annotation written)"
    )
    return "\n".join(rows)


def floor_figures(r: Run) -> dict[str, float]:
    return {
        "floorWallSeconds": round(r.floor_wall, 3),
        "floorRatio": round(r.floor_ratio, 3),
        "dsrollOverFloor": round(r.over_floor, 3),
    }


def figures(runs: list[Run], max_unavailable: int) -> dict[str, Any]:
    nodes = runs[0].nodes
    ratio = statistics.median(r.ratio for r in runs)
    worst = max(r.requests_per_node for r in runs)
    return {
        "nodes": nodes,
        "maxUnavailable": max_unavailable,
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
                "cpuSeconds": round(r.cpu_seconds, 2),
                "peakRssBytes": r.peak_rss,
                "ownPeakRssBytes": r.own_rss,
                "stateAnnotationBytes": r.state_bytes,
            }
            | ({"nodeSecondsMedian": round(statistics.median(r.node_seconds), 3)} if r.node_seconds else {})
            | (floor_figures(r) if r.floor_wall else {})
            | ({"witness": r.witness} if r.witness else {})
            for r in runs
        ],
        "medianRatio": round(ratio, 3),
        "medianExecRatio": round(statistics.median(r.exec_ratio for r in runs), 3),
        "ratioTarget": ratio_target(nodes),
        "ratioMet": ratio <= ratio_target(nodes),
        "maxRequestsPerNode": worst,
        "requestsTarget": REQUESTS_TARGET,
        "requestsMet": worst <= REQUESTS_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=NODES, help="kwok nodes in the sandbox (one variant on all)")
    parser.add_argument("--max-unavailable", type=int, default=MAX_UNAVAILABLE, help="for dsroll and native")
    parser.add_argument("--runs", type=int, default=3, help="timed dsroll/native pairs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--events", action="store_true", help="pass --events to dsroll and summarise per-node times")
    parser.add_argument("--watch-pods", action="store_true", help="the independent pod watcher on the first run")
    parser.add_argument("--profile", type=Path, help="a directory for py-spy profiles of dsroll, one per run")
    parser.add_argument("--floor", action="store_true", help="also time bench/floor (Go; built with go build)")
    args = parser.parse_args()
    if args.runs < 1 or args.nodes < 1 or args.max_unavailable < 1:
        parser.error("--runs, --nodes and --max-unavailable must be at least 1")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cluster.down(SANDBOX)  # a leftover of an interrupted run
    try:
        info = cluster.up(name=SANDBOX, nodes=args.nodes, classes=("general",))
        say(f"sandbox {SANDBOX}: {args.nodes} nodes up ({time.monotonic() - started:.1f}s)")
        with tempfile.TemporaryDirectory(prefix="dsroll-rollout-bench.") as tmp:
            bench = Bench(info, Path(tmp), args)
            bench.setup()
            runs = [bench.run(i + 1) for i in range(args.runs)]
    finally:
        cluster.down(SANDBOX)
        say(f"sandbox {SANDBOX} down")
    print(json.dumps(figures(runs, args.max_unavailable), indent=2) if args.json else table(runs, args.max_unavailable))


if __name__ == "__main__":
    main()
