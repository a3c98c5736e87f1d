"""``rollout.applier: external`` without a cluster: validation, the render, the stable
revision, the store's ConfigMap, the plan's decisions, ``--wait-applied``'s verdict and
``rollback --git-revert`` on a real git repository (docs/gitops.md)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dsroll import workflow
from dsroll.config import parse_environment
from dsroll.diff import Change, VariantDiff
from dsroll.errors import InputError
from dsroll.gitrevert import newest, restored_files, revert
from dsroll.gitsource import locate
from dsroll.plan import Action, Plan, plan_variant
from dsroll.planfile import plan_from_json, plan_to_json
from dsroll.render import load_environment, render_environment
from dsroll.rendered import sync
from dsroll.rollout.applied import describe, pending
from dsroll.rollout.external import Applied, RevisionRef, last_writer, stable_revision
from dsroll.rollout.observe import Scope
from dsroll.rollout.state import Phase
from dsroll.rollout.store import Record, Stable, configmap_name, configmap_patch, record_of
from tests.conftest import ENV, TEMPLATE
from tests.unit.test_plan import FLEET, FLEET_ORDER, MANIFEST, NEW, OLD, daemonset, diff, policy, state, views

FILE = "environments/test.yaml"
NODES = list(FLEET_ORDER)
EXTERNAL = ENV + "rollout: {applier: external}\n"


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_environment(text, FILE)
    assert "\n" not in str(info.value)
    return info.value


# --- the environment file -------------------------------------------------------------------


def test_external_without_on_failure_pauses_and_the_default_stays_dsroll() -> None:
    assert parse_environment(ENV, FILE).workloads[0].rollout.applier == "dsroll"
    workload = parse_environment(EXTERNAL, FILE).workloads[0]
    assert workload.rollout.applier == "external" and workload.rollout.on_failure == "pause"


def test_on_failure_rollback_with_external_is_refused_where_it_is_written() -> None:
    text = ENV + "rollout:\n  applier: external\n  onFailure: rollback\n"
    error = error_of(text)
    assert error.line == text.splitlines().index("  onFailure: rollback") + 1
    assert "onFailure: rollback cannot go with applier: external" in str(error) and "--git-revert" in str(error)
    per_workload = ENV.replace(
        'classValues: {arm64: {tag: "1.0-arm64"}}',
        'classValues: {arm64: {tag: "1.0-arm64"}}\n    rollout: {applier: external, onFailure: rollback}',
    )
    assert error_of(per_workload).line == 17


def test_replaces_with_external_is_refused() -> None:
    text = EXTERNAL.replace(
        'classValues: {arm64: {tag: "1.0-arm64"}}',
        'classValues: {arm64: {tag: "1.0-arm64"}}\n    replaces: [{namespace: agents, name: old-agent}]',
    )
    error = error_of(text)
    assert error.line == 17 and "orphan replacement" in str(error)


def test_a_workload_can_choose_its_own_applier() -> None:
    text = ENV.replace(
        'classValues: {arm64: {tag: "1.0-arm64"}}',
        'classValues: {arm64: {tag: "1.0-arm64"}}\n    rollout: {applier: external, onFailure: abort}',
    )
    workload = parse_environment(text, FILE).workloads[0]
    assert (workload.rollout.applier, workload.rollout.on_failure) == ("external", "abort")
    assert "applier" in str(error_of(ENV + "rollout: {applier: argo}\n"))


def test_the_render_for_an_external_applier_carries_on_delete(make_project: Any) -> None:
    root = make_project(env=EXTERNAL)
    project = locate("test", root)
    result = render_environment(load_environment(project.source, project.env_path), project.source)
    assert {v.applier for v in result.variants} == {"external"}
    assert {v.manifest["spec"]["updateStrategy"]["type"] for v in result.variants} == {"OnDelete"}
    assert all("updateStrategy:\n    type: OnDelete" in v.text for v in result.variants)


# --- the stable revision --------------------------------------------------------------------


def test_the_stable_revision_is_never_the_target() -> None:
    history = ["r1", "r2", "r3"]
    assert stable_revision("r3", history, ["r3", "r3"], ["r3"]) == "r2"  # issue 14: never previous = current
    assert stable_revision("r3", history, [], []) == "r2"
    assert stable_revision("r1", ["r1"], ["r1"], ["r1"]) is None


def test_the_stable_revision_prefers_the_record_then_the_pods() -> None:
    history = ["r1", "r2", "r3", "r4"]
    assert stable_revision("r4", history, ["r2", "r2", "r3"], ["r1"]) == "r1"  # recorded, still there
    assert stable_revision("r4", history, ["r2", "r2", "r3"], ["gone", None]) == "r2"  # most pods
    assert stable_revision("r4", history, ["r2", "r3", "r4"], []) == "r3"  # a tie: the newer
    assert stable_revision("r4", history, ["x", None], []) == "r3"  # pods on unknown revisions do not count


def test_the_last_writer_is_named_from_managed_fields() -> None:
    ds = {
        "metadata": {
            "managedFields": [
                {"manager": "argocd-controller", "operation": "Apply", "time": "2025-01-01T10:00:00Z",
                 "fieldsV1": {"f:spec": {}}},
                {"manager": "dsroll", "operation": "Update", "time": "2025-01-01T11:00:00Z",
                 "fieldsV1": {"f:spec": {}}},
                {"manager": "kube-controller-manager", "operation": "Update", "time": "2025-01-01T12:00:00Z",
                 "subresource": "status", "fieldsV1": {"f:status": {}}},
            ]
        }
    }  # fmt: skip
    assert last_writer(ds, "dsroll") == ("argocd-controller", "Apply", "2025-01-01T10:00:00Z")
    assert last_writer({"metadata": {}}, "dsroll") == (None, None, None)


# --- the store's ConfigMap ----------------------------------------------------------------


def test_the_store_configmap_is_owned_by_the_daemonset_and_round_trips() -> None:
    ds = daemonset()
    ds["metadata"]["labels"] = {"dsroll.io/environment": "test", "app": "x"}
    saved = state(Phase.progressing, NODES)
    patch = configmap_patch(ds, {"rollout": saved.to_json(), "stable": Stable(OLD, "abc").to_json()})
    meta = patch["metadata"]
    assert meta["name"] == configmap_name(ds["metadata"]["name"]) == f"dsroll-rollout-{ds['metadata']['name']}"
    assert meta["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds["metadata"]["name"], "uid": ds["metadata"]["uid"]}
    ]
    assert meta["labels"]["dsroll.io/environment"] == "test" and "app" not in meta["labels"]
    found = record_of(patch, ds)
    assert found.state is not None and found.state.to_json() == saved.to_json()  # bounded: counts and samples
    assert found.stable == Stable(OLD, "abc") and found.request is None


def test_a_record_of_an_earlier_daemonset_of_the_same_name_is_none() -> None:
    ds = daemonset()
    cm = configmap_patch(ds, {"rollout": state(Phase.paused, NODES).to_json()})
    assert record_of(cm, daemonset(uid="another")) == Record(None)
    assert record_of(None, ds) == Record(None)
    reset = configmap_patch(ds, {}, stale=True)["data"]
    assert reset == {"rollout": None, "request": None, "stable": None}


def test_a_request_in_the_store_is_read() -> None:
    ds = daemonset()
    cm = configmap_patch(ds, {"request": '{"action": "pause", "by": "bob"}'})
    assert record_of(cm, ds).request == "pause"


# --- the plan -------------------------------------------------------------------------------


def external(**extra: Any) -> Any:
    return replace(policy(), applier="external", on_failure="pause", **extra)


APPLIED = Applied(RevisionRef(3, NEW, "c0ffee"), RevisionRef(2, OLD), "argocd-controller", "Apply", "T", True)


def test_an_external_plan_conducts_the_nodes_not_on_the_current_revision_and_applies_nothing() -> None:
    revisions = dict.fromkeys(NODES, OLD) | {NODES[0]: NEW}
    found = plan_variant_external(Change.UNCHANGED, revisions)
    assert found.action is Action.UPDATE and not found.applies
    assert set(found.pending) == set(NODES) - {NODES[0]}
    assert "not on revision 3" in found.reason and found.applied == APPLIED
    # a pod-template change not applied yet: nothing to do until the applier syncs
    synced = plan_variant_external(Change.POD_TEMPLATE, dict.fromkeys(NODES, NEW), state_of=Phase.complete)
    assert synced.action is Action.UNCHANGED and "--wait-applied" in synced.reason


def test_an_external_plan_leaves_creating_and_pruning_to_the_applier() -> None:
    assert plan_variant_external(Change.ADDED, None).action is Action.CREATE
    removed = plan_variant_external(Change.REMOVED, dict.fromkeys(NODES, NEW), state_of=Phase.complete)
    assert removed.action is Action.PRUNE and "never deletes" in removed.reason
    selector = plan_variant_external(Change.SELECTOR, dict.fromkeys(NODES, NEW), state_of=Phase.complete)
    assert selector.action is Action.ORPHAN_REPLACE and selector.pending == ()


def test_an_unfinished_rollout_whose_target_the_applier_moved_says_so() -> None:
    moved = replace(state(Phase.paused, NODES), target_revision="older")
    found = plan_variant_external(Change.UNCHANGED, dict.fromkeys(NODES, OLD), saved=moved)
    assert found.action is Action.UPDATE and "`resume` stops" in found.reason


def test_the_applied_revision_survives_a_saved_plan() -> None:
    found = plan_variant_external(Change.UNCHANGED, dict.fromkeys(NODES, OLD))
    plan = Plan("test", "ctx", "https://x", "abc", (found,))
    again = plan_from_json(json.dumps(plan_to_json(plan)), "plan.json")
    assert again.variants[0].applied == APPLIED and again.variants[0].policy.applier == "external"
    assert "applied by argocd-controller (Apply at T) from revision 2" in APPLIED.describe()


def plan_variant_external(
    change: Change, revisions: dict[str, str] | None, *, state_of: Phase | None = None, saved: Any = None
) -> Any:
    live = None if revisions is None else daemonset()
    if live is not None:
        live["status"] = {"desiredNumberScheduled": len(revisions or {}), "numberReady": len(revisions or {})}
    recorded = saved or (state(state_of, NODES) if state_of else state(Phase.complete, NODES))
    return plan_variant(
        diff(change), manifest=MANIFEST, live=live, pods=views(revisions or {}), current_revision=NEW,
        node_labels=FLEET, class_nodes=NODES, policy=external(), state=recorded, partition=None,
        applied=APPLIED if live is not None else None,
    )  # fmt: skip


# --- --wait-applied ---------------------------------------------------------------------------


def test_wait_applied_waits_for_every_scoped_variant_that_differs_and_names_its_fields() -> None:
    def d(name: str, change: Change, paths: tuple[str, ...] = ()) -> VariantDiff:
        return VariantDiff("ns", name, "w", "c", change, paths, 0, "")

    diffs = [d("a", Change.UNCHANGED), d("b", Change.POD_TEMPLATE, ("/spec/template/spec/containers/0/image",)),
             d("c", Change.REMOVED), d("d", Change.ADDED), d("e", Change.SPEC, ("/spec/x",))]  # fmt: skip
    left = pending(diffs, {("ns", n) for n in "abcd"})
    assert [x.name for x in left] == ["b", "d"]
    assert describe(left[0]) == "ns/b: /spec/template/spec/containers/0/image differ"
    assert describe(left[1]) == "ns/d: not created yet"


# --- rollback --git-revert ------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(argv, cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def committed_project(root: Path, env: str, message: str) -> str:
    (root / "environments" / "test.yaml").write_text(env)
    project = locate("test", root)
    sync(root, render_environment(load_environment(project.source, project.env_path), project.source), check=False)
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(make_project: Any) -> Path:
    root = Path(make_project(env=EXTERNAL))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "t")
    git(root, "config", "user.email", "t@example.com")
    return root


def test_git_revert_restores_the_environment_and_its_render_in_one_commit(repo: Path) -> None:
    one = committed_project(repo, EXTERNAL, "1.0")
    rendered_one = git(repo, "show", f"{one}:rendered/test/agents/agent-general.yaml")
    committed_project(repo, EXTERNAL.replace('tag: "1.0"', 'tag: "2.0"'), "2.0")
    project = locate("test", repo)
    current = render_environment(load_environment(project.source, project.env_path), project.source)
    done = revert(project, current, one, None)
    assert done.commit == git(repo, "rev-parse", "HEAD") and done.restored == ("environments/test.yaml",)
    assert git(repo, "show", "HEAD:environments/test.yaml") == git(repo, "show", f"{one}:environments/test.yaml")
    assert git(repo, "show", "HEAD:rendered/test/agents/agent-general.yaml") == rendered_one
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "-1", "--format=%s").startswith("Revert test to")
    again = revert(locate("test", repo), current, one, None)
    assert again.commit is None, "nothing left to revert"


def test_git_revert_refuses_uncommitted_changes_and_a_shared_template(repo: Path) -> None:
    one = committed_project(repo, EXTERNAL, "1.0")
    (repo / "templates" / "agent.yaml.j2").write_text(TEMPLATE.replace("{{ values.tag }}", "{{ values.tag }}-v2"))
    committed_project(repo, EXTERNAL, "template v2")
    (repo / "environments" / "test.yaml").write_text(EXTERNAL + "# edited\n")
    project = locate("test", repo)
    current = render_environment(load_environment(project.source, project.env_path), project.source)
    with pytest.raises(InputError, match=r"uncommitted changes to what .* renders from: environments/test.yaml"):
        revert(project, current, one, None)
    git(repo, "checkout", "--", "environments/test.yaml")
    (repo / "environments" / "other.yaml").write_text(EXTERNAL.replace("name: test", "name: other"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "another environment on the same template")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(InputError, match="would change the render of another environment too: environments/other"):
        revert(locate("test", repo), current, one, None)
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""


def test_the_stable_commit_of_several_variants_is_the_newest_on_one_line() -> None:
    line = ["a", "b", "c"]

    def is_ancestor(x: str, y: str) -> bool:
        return x in line and y in line and line.index(x) <= line.index(y)

    assert newest(["a", "c", "b", "c"], is_ancestor) == "c"
    with pytest.raises(InputError, match="different lines of history"):
        newest(["a", "z"], is_ancestor)
    assert restored_files(["t.j2", "e.yaml", "e.yaml"], lambda p: p == "e.yaml") == ("e.yaml",)


# --- refusals before anything talks to the cluster ---------------------------------------------


class NoCluster:
    """A client that refuses every use: the refusals below come before any request."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"nothing may talk to the cluster (asked for {name})")


def no_cluster(_context: str | None) -> Any:
    return NoCluster()


@pytest.mark.parametrize(
    ("to_revision", "to_git", "flag"),
    [(None, None, "a rollback"), (1, None, "--to-revision"), (None, "HEAD", "--to-git")],
)
def test_a_rollback_of_an_external_workload_is_refused_pointing_at_git_revert(
    make_project: Any, monkeypatch: pytest.MonkeyPatch, to_revision: int | None, to_git: str | None, flag: str
) -> None:
    monkeypatch.chdir(make_project(env=EXTERNAL))
    with pytest.raises(InputError, match=f"{flag} would write the DaemonSets of agent.*--git-revert"):
        workflow.rollback("test", None, Scope(), no_cluster, to_revision=to_revision, to_git=to_git, yes=False,
                          ask=None)  # fmt: skip


def test_wait_applied_and_git_revert_are_for_external_workloads_only(
    make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(make_project(env=ENV))
    with pytest.raises(InputError, match=r"--wait-applied is for rollout\.applier: external.*agent has applier dsroll"):
        workflow.rollout("test", None, Scope(), no_cluster, steps=None, partition=None, saved=None,
                         allow_dirty=True, dry_run=False, yes=True, ask=None, wait="text")  # fmt: skip
    with pytest.raises(InputError, match=r"--git-revert is for rollout\.applier: external"):
        workflow.git_revert("test", None, Scope(), no_cluster, push=False, wait=None, timeout=None, yes=True,
                            ask=None)  # fmt: skip
    with pytest.raises(InputError, match="--timeout goes with --wait-applied"):
        workflow.rollout("test", None, Scope(), no_cluster, steps=None, partition=None, saved=None,
                         allow_dirty=True, dry_run=False, yes=True, ask=None, timeout="5m")  # fmt: skip
    with pytest.raises(InputError, match="--wait-applied and --plan"):
        workflow.rollout("test", None, Scope(), no_cluster, steps=None, partition=None, saved=Path("p.json"),
                         allow_dirty=True, dry_run=False, yes=True, ask=None, wait="text")  # fmt: skip


def test_an_orphan_replacement_of_an_external_workload_is_refused() -> None:
    found = plan_variant_external(Change.SELECTOR, dict.fromkeys(NODES, NEW), state_of=Phase.complete)
    with pytest.raises(InputError, match="orphan replacement would delete and create DaemonSets the applier owns"):
        workflow._refuse_external_replacements(Plan("test", "c", "s", None, (found,)), "test")
