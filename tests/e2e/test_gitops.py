"""``rollout.applier: external`` end to end: a simulated GitOps controller applies, dsroll conducts.

The applier is simulated faithfully with the sandbox's kubectl, as each controller applies:
Argo CD's default client-side ``kubectl apply``, its ``ServerSideApply=true`` option
(``kubectl apply --server-side --field-manager=argocd-controller``) and Flux's
kustomize-controller (``--server-side --field-manager=kustomize-controller
--force-conflicts``). Like a controller it reads what is *committed* (the rendered file at
git HEAD), syncs when that changes, and self-heals: once a second it asks ``kubectl diff``
(the same apply, dry-run) whether the live object drifted from the committed file, and
re-applies it when it did. It runs during the whole rollout; every test asserts that it
never found drift, i.e. that nothing dsroll did showed as a change to the applier's
object. Pods are judged by the independent pod watcher, as in test_rollout.py.

docs/gitops.md is the contract.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e.invariants import (
    assert_final_revision,
    assert_max_unavailable,
    assert_never_two_pods,
    live_pods,
    replacements,
)
from e2e.polling import wait_until
from e2e.test_rollout import CANARY, TEMPLATE, WORKLOAD, Project, Run, behaviours, env_text

if TYPE_CHECKING:
    from conftest import K8sCluster

VARIANT = f"{WORKLOAD}-general"
GENERAL = {"classes": ("general",), "pause": "0", "ready_timeout": "20s", "on_failure": "pause"}
MODES = {
    "argocd": ["apply"],  # Argo CD's default: client-side apply
    "argocd-ssa": ["apply", "--server-side", "--field-manager=argocd-controller"],  # ServerSideApply=true
    "flux": ["apply", "--server-side", "--field-manager=kustomize-controller", "--force-conflicts"],
}


#: The controller's own diff, as ``KUBECTL_EXTERNAL_DIFF``: Argo CD and Flux compare desired and
#: live without what only the server writes (status, resourceVersion, generation, managedFields);
#: ``kubectl diff`` reads live and dry-runs at two moments, so a status update in between is no drift.
DIFFER = """\
import difflib, os, sys, yaml
def load(folder):
    found = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            obj = yaml.safe_load(f) or {}
        obj.pop("status", None)
        for key in ("resourceVersion", "generation", "managedFields"):
            (obj.get("metadata") or {}).pop(key, None)
        found[name] = yaml.safe_dump(obj, sort_keys=True).splitlines(keepends=True)
    return found
live, merged = load(sys.argv[1]), load(sys.argv[2])
lines = [l for n in sorted({*live, *merged}) for l in difflib.unified_diff(live.get(n, []), merged.get(n, []), n, n)]
sys.stdout.write("".join(lines))
sys.exit(1 if lines else 0)
"""


def external_env(namespace: str, **settings: Any) -> str:
    return env_text(namespace, **settings) + "  applier: external\n"


class Applier:
    """A GitOps controller in a thread: syncs the committed file, self-heals drift."""

    def __init__(self, project: GitOpsProject, mode: str, interval: float = 1.0) -> None:
        self.project, self.mode, self.interval = project, mode, interval
        self.applied: str | None = None
        self.syncs: list[str] = []  # the commits applied
        self.drifts: list[str] = []  # what `kubectl diff` showed when the live object drifted
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"applier-{mode}", daemon=True)
        self._dir = tempfile.TemporaryDirectory(prefix="applier-")
        differ = Path(self._dir.name) / "differ"  # kubectl drops arguments with a "/" or "." from the variable
        differ.write_text(f"#!{sys.executable}\n{DIFFER}")
        differ.chmod(0o755)
        self._env = {**os.environ, "KUBECTL_EXTERNAL_DIFF": str(differ)}

    def __enter__(self) -> Applier:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._dir.cleanup()

    def _kubectl(self, verb: str, text: str) -> subprocess.CompletedProcess[str]:
        cluster = self.project.cluster
        argv = [str(cluster.kubectl_binary), f"--kubeconfig={cluster.kubeconfig_path}"]
        argv += [f"--context={cluster.context}"] if cluster.context else []
        argv += [verb, *MODES[self.mode][1:], "-f", "-"]
        return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, env=self._env)

    def _apply(self, text: str) -> bool:
        done = self._kubectl("apply", text)
        if done.returncode != 0:
            self.errors.append(done.stderr.strip())
            return False
        self.applied = text
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            text, commit = self.project.committed()
            if text is not None and text != self.applied:
                if self._apply(text):
                    self.syncs.append(commit)
            elif text is not None:
                diff = self._kubectl("diff", text)
                if diff.returncode == 1:  # the live object is not the committed file
                    self.drifts.append(diff.stdout + diff.stderr)
                    self._apply(text)
                elif diff.returncode > 1:
                    self.errors.append(diff.stderr.strip())
            self._stop.wait(self.interval)

    def wait_synced(self, commit: str, timeout: float = 30) -> None:
        wait_until(f"the applier synced {commit[:12]}", lambda: (commit in self.syncs, self.syncs), timeout=timeout)


class GitOpsProject(Project):
    """A project whose rendered files are committed, for an applier to apply."""

    def publish(self, message: str, **settings: Any) -> str:
        """Write the environment, render it, commit both: what a merged pull request does."""
        (self.root / "environments" / "e2e.yaml").write_text(external_env(self.namespace, **settings))
        rendered = self.dsroll("render", "e2e")
        assert rendered.code == 0, rendered
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def rendered_path(self) -> str:
        return f"rendered/{self.namespace}/{self.namespace}/{VARIANT}.yaml"

    def committed(self) -> tuple[str | None, str]:
        head = self.git("rev-parse", "HEAD")
        shown = subprocess.run(
            ["git", "show", f"{head}:{self.rendered_path}"], cwd=self.root, capture_output=True, text=True
        )
        return (shown.stdout if shown.returncode == 0 else None), head

    def store(self) -> dict[str, Any]:
        """The variant's rollout record: its ConfigMap's data, parsed."""
        cm = self.core.read_namespaced_config_map(f"dsroll-rollout-{VARIANT}", self.namespace)
        return {k: json.loads(v) for k, v in (cm.data or {}).items()}

    def wait_for_store(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        def look() -> tuple[bool, Any]:
            try:
                state = self.store().get("rollout") or {}
            except Exception as exc:  # not created yet
                return False, str(exc)
            return bool(state) and predicate(state), state

        return dict(wait_until(what, look, timeout=timeout, interval=0.2))

    def pod_revisions(self) -> dict[str, str]:
        """Node → revision of the variant's live pod."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="dsroll.io/class=general").items
        return {
            p.spec.node_name: p.metadata.labels["controller-revision-hash"]
            for p in pods
            if p.metadata.deletion_timestamp is None and p.spec.node_name
        }


@pytest.fixture
def project(make_project: Callable[..., Path], namespace: str, k8s_cluster: K8sCluster) -> Iterator[GitOpsProject]:
    root = make_project(env=external_env(namespace, **GENERAL), templates={"agent.yaml.j2": TEMPLATE}, name="e2e")
    made = GitOpsProject(root, namespace, k8s_cluster)
    yield made
    for pods in made.watchers:
        pods.stop(sync=False)


def assert_untouched_by_dsroll(project: GitOpsProject, applier: Applier) -> None:
    """What the applier sees: no drift ever, no dsroll field manager, no dsroll annotation."""
    assert applier.drifts == [], f"the self-heal loop found drift:\n{applier.drifts[0]}"
    assert applier.errors == [], applier.errors
    ds = project.daemonset("general")
    managers = {m["manager"] for m in ds["metadata"].get("managedFields") or [] if not m.get("subresource")}
    assert "dsroll" not in managers, managers
    assert not [k for k in ds["metadata"].get("annotations") or {} if k.startswith("dsroll.io/")], ds["metadata"]
    assert ds["spec"]["updateStrategy"] == {"type": "OnDelete"}


def settle(project: GitOpsProject, applier: Applier, commit: str) -> list[str]:
    """1.0 applied by the applier; dsroll waits for it and records it as stable; the class's nodes."""
    applier.wait_synced(commit)
    run = project.dsroll("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--yes", "-o", "json")
    assert run.code == 0, run
    assert [v["action"] for v in run.report["variants"]] == ["create"], run
    stable = project.store()["stable"]
    assert stable["commit"] == commit and stable["revision"] == project.current_revision("general"), stable
    return sorted(project.pod_revisions())


def conducted(run: Run) -> dict[str, Any]:
    [found] = [v for v in run.report["variants"] if v["name"] == VARIANT]
    return dict(found)


def test_argocd_applies_dsroll_conducts_in_steps_with_a_partition(project: GitOpsProject) -> None:
    one = project.publish("agent 1.0", **GENERAL)
    with Applier(project, "argocd") as applier:
        nodes = settle(project, applier, one)
        old = project.current_revision("general")
        # The self-heal loop sees drift when there is some (so "it never found any" means something).
        project.cluster.kubectl("-n", project.namespace, "set", "image", f"ds/{VARIANT}", "agent=example.com/agent:x")
        healed = wait_until("the loop heals a drift", lambda: (bool(applier.drifts), applier.drifts), timeout=15)
        assert "example.com/agent:x" in healed[0]
        wait_until("the template healed", lambda: (project.current_revision("general") == old, None), timeout=15)
        applier.drifts.clear()
        watcher = project.watcher()
        two = project.publish("agent 2.0", tag="2.0", **GENERAL)

        run = project.dsroll("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--partition", "2",
                             "--steps", "1,50%,100%", "--yes", "-o", "json")  # fmt: skip
        assert run.code == 0, run
        assert '"event": "wait-applied"' in run.stderr and applier.syncs[-1] == two, run
        got = conducted(run)
        assert got["result"] == "partitioned" and got["nodesUpdated"] == len(nodes) - 2, run
        new = project.current_revision("general")
        assert new != old and got["previousRevision"] == old and got["targetRevision"] == new, got
        on = project.pod_revisions()
        assert sorted(on.values()).count(new) == len(nodes) - 2 and sorted(on.values()).count(old) == 2, on

        again = project.dsroll("plan", "e2e", "-o", "json")
        [variant] = again.report["variants"]
        applied = variant["applied"]
        assert applied["target"]["hash"] == new and applied["stable"]["hash"] == old, applied
        assert applied["manager"] == "kubectl-client-side-apply" and applied["target"]["commit"] == two, applied

        finish = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
        assert finish.code == 0 and conducted(finish)["result"] == "complete", finish
        timeline = watcher.stop()
        time.sleep(2 * applier.interval)  # one more look of the self-heal loop
    assert_untouched_by_dsroll(project, applier)
    store = project.store()
    assert store["rollout"]["phase"] == "complete" and store["rollout"]["previousRevision"] == old, store
    assert store["stable"] == {**store["stable"], "revision": new, "commit": two}, store
    assert_final_revision(timeline, nodes, new, workload=WORKLOAD, cls="general")
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert replacements(timeline, workload=WORKLOAD, cls="general") == dict.fromkeys(nodes, 1)


@pytest.mark.usefixtures(behaviours.__name__)
def test_a_crashing_revision_is_caught_on_the_canary_reverted_in_git_and_conducted_back(
    project: GitOpsProject,
) -> None:
    one = project.publish("agent 1.0", **GENERAL)
    with Applier(project, "argocd-ssa") as applier:
        nodes = settle(project, applier, one)
        old = project.current_revision("general")
        env_at_one = project.git("show", f"{one}:environments/e2e.yaml")
        canary = next(n for n, labels in project.node_labels().items() if n in nodes and labels.get(CANARY) == "true")
        watcher = project.watcher()
        project.publish("agent 2.0 (crashes)", tag="2.0", behaviour="crash", **GENERAL)
        run = project.dsroll("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--yes", "-o", "json")
        assert run.code == 1, run
        got = conducted(run)
        assert got["result"] == "failed" and got["phase"] == "paused" and got["failure"]["node"] == canary, run
        assert "--git-revert" in run.stderr, run
        bad = project.current_revision("general")
        assert {n: r for n, r in project.pod_revisions().items() if r == bad} == {canary: bad}

        back = project.dsroll("rollback", "e2e", "--git-revert", "--wait-applied", "--timeout", "60s", "--yes",
                              "-o", "json")  # fmt: skip
        assert back.code == 0, back
        revert = back.report["revert"]
        assert revert["stableCommit"] == one and revert["restored"] == ["environments/e2e.yaml"], revert
        assert project.git("rev-parse", "HEAD") == revert["commit"]
        assert project.git("show", "HEAD:environments/e2e.yaml") == env_at_one
        assert "Revert" in project.git("log", "-1", "--format=%s")
        assert project.git("status", "--porcelain") == ""
        assert conducted(back)["result"] == "complete" and conducted(back)["nodesUpdated"] == len(nodes), back
        timeline = watcher.stop()
        time.sleep(2 * applier.interval)
    assert_untouched_by_dsroll(project, applier)
    assert project.current_revision("general") == old, "the revert brings the old template (and its revision) back"
    assert_final_revision(timeline, nodes, old, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
    assert replacements(timeline, workload=WORKLOAD, cls="general") == {canary: 2}, "only the canary moved, twice"
    assert project.store()["stable"]["revision"] == old


def test_flux_killed_mid_step_resumes_and_a_sync_landing_mid_rollout_stops_it(project: GitOpsProject) -> None:
    slow = {**GENERAL, "steps": ("1", "100%"), "min_ready_seconds": 1}
    one = project.publish("agent 1.0", **slow)
    with Applier(project, "flux") as applier:
        nodes = settle(project, applier, one)
        watcher = project.watcher()
        project.publish("agent 2.0", tag="2.0", **slow)
        with project.background("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--yes", "-o", "json") as cli:
            seen = project.wait_for_store(
                lambda s: s["phase"] == "progressing" and s["nodesDone"] >= 1 and bool(s["inFlight"]),
                "a node in flight after the first step",
            )
            killed = cli.kill()
        assert killed.code == -signal.SIGKILL, killed
        resumed = project.dsroll("resume", "e2e", "--yes", "-o", "json")
        assert resumed.code == 0 and conducted(resumed)["result"] == "complete", resumed
        two = project.current_revision("general")
        state = project.store()["rollout"]
        assert state["startedAt"] == seen["startedAt"], "the same rollout continued"
        assert set(project.pod_revisions().values()) == {two}

        # A third revision lands while dsroll pauses between its steps: it must stop, not mix.
        paused = {**slow, "pause": "8s"}
        project.publish("agent 3.0", tag="3.0", **paused)
        with project.background("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--yes") as cli:
            project.wait_for_store(lambda s: s["phase"] == "pausing", "the pause after step 1")
            three = project.current_revision("general")
            four = project.publish("agent 4.0", tag="4.0", **paused)
            applier.wait_synced(four)
            stopped = cli.finish(timeout=60)
        assert stopped.code == 1, stopped
        assert "kustomize-controller" in stopped.stderr and "never rolls a revision it did not plan" in stopped.stderr
        on = project.pod_revisions()
        assert set(on.values()) == {two, three} and list(on.values()).count(three) == 1, on

        final = project.dsroll("rollout", "e2e", "--yes", "-o", "json")
        assert final.code == 0 and conducted(final)["result"] == "complete", final
        assert conducted(final)["previousRevision"] == two, "conducted from the stable revision, never the target"
        timeline = watcher.stop()
        time.sleep(2 * applier.interval)
    assert_untouched_by_dsroll(project, applier)
    latest = project.current_revision("general")
    assert latest not in (two, three)
    assert_final_revision(timeline, nodes, latest, workload=WORKLOAD, cls="general")
    assert_never_two_pods(timeline, workload=WORKLOAD)
    assert_max_unavailable(timeline, nodes, 1, workload=WORKLOAD, cls="general")
    assert len(live_pods(timeline, workload=WORKLOAD, cls="general")) == len(nodes)


def test_under_applier_dsroll_a_revision_another_manager_applied_goes_back_to_the_old_one(
    project: GitOpsProject,
) -> None:
    """Issue 14's measurement: an OnDelete variant applied by another field manager was staged by
    a dsroll-applied rollout that recorded previousRevision equal to targetRevision."""
    ssa = ["--server-side", "--field-manager=argocd-controller", "--force-conflicts"]
    project.publish("agent 1.0", **GENERAL)
    project.cluster.kubectl("apply", *ssa, "-f", "-", input=project.committed()[0])
    settle_run = project.dsroll("rollout", "e2e", "--wait-applied", "--timeout", "60s", "--yes", "-o", "json")
    assert settle_run.code == 0, settle_run
    old = project.current_revision("general")
    project.publish("agent 2.0", tag="2.0", **GENERAL)
    project.cluster.kubectl("apply", *ssa, "-f", "-", input=project.committed()[0])
    wait_until("the new revision", lambda: (project.current_revision("general") != old, None), timeout=15)
    new = project.current_revision("general")
    (project.root / "environments" / "e2e.yaml").write_text(env_text(project.namespace, tag="2.0", **GENERAL))
    run = project.dsroll("rollout", "e2e", "--allow-dirty", "--yes", "-o", "json")  # applier: dsroll
    assert run.code == 0, run
    got = conducted(run)
    assert got["result"] == "complete" and got["targetRevision"] == new, run
    assert got["previousRevision"] == old != new, "the way back is the revision the pods ran, never the target"
    assert project.state("general")["previousRevision"] == old
