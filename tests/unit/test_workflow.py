"""The commands' core (``dsroll.workflow``): the decisions it makes before and around the cluster."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsroll import workflow
from dsroll.cli import app
from dsroll.errors import InputError
from dsroll.plan import Action, LiveFingerprint, Plan, Policy, VariantPlan
from dsroll.planfile import plan_to_json
from dsroll.rollout import decide
from dsroll.rollout.observe import Scope
from dsroll.rollout.state import RunKind
from tests.conftest import TEMPLATE

runner = CliRunner()


def a_plan() -> Plan:
    policy = Policy(("1", "100%"), 1, "0", "5m", 0, "rollback")
    variant = VariantPlan(
        "ns", "agent-gpu", "agent", "gpu", Action.UPDATE, "pod template changed", (), policy,
        ("n1", "n2"), ("n1", "n2"), (), None, LiveFingerprint("uid", 1, "old", ("n1", "n2")),
        {"kind": "DaemonSet", "metadata": {"name": "agent-gpu"}},
    )  # fmt: skip
    return Plan("dev", "ctx", "https://x", "abc123", (variant,))


# --- saved plans -----------------------------------------------------------------------


def test_a_saved_plan_loads_as_it_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_to_json(a_plan())))
    assert workflow.load_plan(path) == a_plan()


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (None, "cannot read the plan: No such file or directory"),
        (b"{}", "not a valid dsroll plan: not a dsroll plan (apiVersion/kind)"),
        (b"not json", "not a valid dsroll plan"),
        (b"\xff\xfe", "not a dsroll plan (not UTF-8 text)"),
    ],
)
def test_a_plan_that_cannot_be_used_is_bad_input_naming_its_file(
    tmp_path: Path, content: bytes | None, cause: str
) -> None:
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        workflow.load_plan(path)
    assert caught.value.exit_code == 2 and caught.value.file == str(path)
    assert str(caught.value).startswith(f"{path}: {cause}")


def test_a_missing_saved_plan_is_refused_before_the_environment_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "plan.json"
    result = runner.invoke(app, ["rollout", "no-such-environment", "--plan", str(missing)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {missing}: cannot read the plan: No such file or directory\n"


# --- the commit a run records ----------------------------------------------------------


def committed_project(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project rendered and committed, with an unused template beside the one it uses."""
    root = make_project(templates={"agent.yaml.j2": TEMPLATE, "unused.yaml.j2": TEMPLATE})
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", *args], cwd=root, check=True)
    return root


def recorded(root: Path, *, allow_dirty: bool = False, dry_run: bool = False) -> str | None:
    project, result = workflow._render("test", None)
    return workflow.commit_to_record(project, result, allow_dirty=allow_dirty, dry_run=dry_run)


def head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize(
    "unrelated",
    ["rollout.jsonl", "plan.json", "notes/todo.txt", "templates/unused.yaml.j2", "environments/other.txt"],
)
def test_files_that_do_not_determine_the_render_never_block_a_run(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, unrelated: str
) -> None:
    root = committed_project(make_project, monkeypatch)
    (root / unrelated).parent.mkdir(parents=True, exist_ok=True)
    (root / unrelated).write_text("changed or new, and not read by the render\n")
    assert recorded(root) == head(root)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("environments/test.yaml", "environments/test.yaml"),
        ("templates/agent.yaml.j2", "templates/agent.yaml.j2"),
        ("rendered/test/agents/agent-gpu.yaml", "rendered/test/agents/agent-gpu.yaml"),
        ("rendered/test/agents/extra.yaml", "rendered/test/agents/extra.yaml"),
    ],
)
def test_uncommitted_changes_to_what_the_render_reads_are_refused_naming_them(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, change: str, named: str
) -> None:
    root = committed_project(make_project, monkeypatch)
    with (root / change).open("a") as f:
        f.write("# changed\n")
    with pytest.raises(
        InputError, match=rf"uncommitted changes to what environments/test.yaml renders from: {named}.*--allow-dirty"
    ):
        recorded(root)
    assert recorded(root, allow_dirty=True) == head(root)
    assert recorded(root, dry_run=True) == head(root)


def test_an_included_template_counts_as_what_the_render_reads(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(
        templates={
            "agent.yaml.j2": TEMPLATE.replace("spec:\n  selector", "{% include '_x.j2' %}spec:\n  selector", 1),
            "_x.j2": "",
        }
    )
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["render", "test"]).exit_code == 0, "the include renders"
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", *args], cwd=root, check=True)
    (root / "templates/_x.j2").write_text("{# changed #}")
    with pytest.raises(InputError, match=r"templates/_x\.j2"):
        recorded(root)


def test_outside_git_there_is_no_commit_to_record(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    monkeypatch.chdir(root)
    assert recorded(root) is None


# --- dry runs and flags ----------------------------------------------------------------


@pytest.mark.parametrize("operation", list(RunKind))
def test_a_dry_run_reports_a_run_that_did_nothing_and_the_plan_without_manifests(operation: RunKind) -> None:
    data = workflow.dry_run_json(a_plan(), operation, 9)
    assert {k: data[k] for k in ("environment", "operation", "result", "exitCode", "apiRequests", "variants")} == {
        "environment": "dev",
        "operation": operation.value,
        "result": "dry-run",
        "exitCode": 0,
        "apiRequests": 9,
        "variants": [],
    }
    assert [v["name"] for v in data["plan"]["variants"]] == ["agent-gpu"]
    assert "manifest" not in data["plan"]["variants"][0]


def test_steps_and_partition_are_checked_first() -> None:
    assert workflow.check_steps("1,25%,100%", "2") == ("1", "25%", "100%")
    assert workflow.check_steps(None, None) is None
    with pytest.raises(InputError):
        workflow.check_steps(None, "lots")


def test_rollback_to_a_revision_and_a_git_ref_at_once_is_refused_before_anything() -> None:
    def connect(_: str | None) -> None:
        raise AssertionError("nothing may talk to the cluster")

    with pytest.raises(InputError, match="give one of them"):
        workflow.rollback(
            "no-such-environment", None, Scope(), connect, to_revision=1, to_git="HEAD", yes=False, ask=None
        )


# --- a saved plan carries out only what a plan made now would ---------------------------


def _variant(plan: Plan) -> VariantPlan:
    return plan.variants[0]


def test_a_saved_plan_equal_to_a_fresh_one_may_run_with_its_own_steps() -> None:
    saved = a_plan()
    one_step = dataclasses.replace(_variant(saved).policy, steps=("100%",))
    fresh = dataclasses.replace(saved, variants=(dataclasses.replace(_variant(saved), policy=one_step),))
    assert decide.saved_plan_differs(saved, fresh) == []


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"manifest": {"kind": "DaemonSet", "metadata": {"name": "agent-gpu"}, "spec": {"x": 1}}},
         "ns/agent-gpu: its manifest is not what the environment renders"),
        ({"action": Action.PRUNE}, "ns/agent-gpu would be prune, a plan made now says update"),
        ({"name": "kube-proxy"}, "ns/kube-proxy is not a variant of this environment"),
        ({"policy": Policy(("1", "100%"), "100%", "0", "5m", 0, "rollback")},
         "ns/agent-gpu: its rollout policy is not the environment's"),
        ({"policy": Policy(("1", "100%"), 1, "0", "5m", 0, "abort")},
         "ns/agent-gpu: its rollout policy is not the environment's"),
    ],
)  # fmt: skip
def test_an_edited_saved_plan_is_told_apart(edit: dict[str, object], why: str) -> None:
    fresh = a_plan()
    saved = dataclasses.replace(fresh, variants=(dataclasses.replace(_variant(fresh), **edit),))  # type: ignore[arg-type]
    assert decide.saved_plan_differs(saved, fresh) == [why]


def test_a_plan_for_another_environment_is_told_apart() -> None:
    fresh = a_plan()
    assert decide.saved_plan_differs(dataclasses.replace(fresh, environment="prod"), fresh) == [
        "it was made for environment 'prod', not 'dev'"
    ]
