"""The commands' core (``dsroll.workflow``): the decisions it makes before and around the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from dsroll import workflow
from dsroll.cli import app
from dsroll.errors import InputError
from dsroll.plan import Action, LiveFingerprint, Plan, Policy, VariantPlan
from dsroll.planfile import plan_to_json
from dsroll.rollout.observe import Scope
from dsroll.rollout.state import RunKind

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


def project(*, dirty: bool, head: str | None = "abc123") -> SimpleNamespace:
    return SimpleNamespace(root=Path("/repo"), is_dirty=lambda: dirty, head_commit=lambda: head)


@pytest.mark.parametrize(
    ("dirty", "allow_dirty", "dry_run"),
    [(False, False, False), (True, True, False), (True, False, True), (True, True, True)],
)
def test_a_clean_tree_or_an_allowed_dirty_one_records_head(dirty: bool, allow_dirty: bool, dry_run: bool) -> None:
    found = workflow.commit_to_record(project(dirty=dirty), allow_dirty=allow_dirty, dry_run=dry_run)  # type: ignore[arg-type]
    assert found == "abc123"


def test_a_dirty_tree_is_refused_and_says_how_to_go_on() -> None:
    with pytest.raises(InputError, match=r"work tree at /repo has uncommitted changes.*--allow-dirty"):
        workflow.commit_to_record(project(dirty=True), allow_dirty=False, dry_run=False)  # type: ignore[arg-type]


def test_outside_git_there_is_no_commit_to_record() -> None:
    assert workflow.commit_to_record(project(dirty=False, head=None), allow_dirty=False, dry_run=False) is None  # type: ignore[arg-type]


# --- dry runs and flags ----------------------------------------------------------------


@pytest.mark.parametrize("operation", [RunKind.rollout, RunKind.rollback])
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
