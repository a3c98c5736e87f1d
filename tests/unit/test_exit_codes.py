"""Exit codes CI can trust: 70 for a bug, 5 for a run cut off after it changed the cluster.

The CLI is driven in-process with typer's runner; the rollout core is replaced by fakes
that fail the way a crashed or unreachable cluster does.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from dsroll import cli, crash, workflow
from dsroll.cli import rollout as rollout_commands
from dsroll.cli.flags import OutputFormat
from dsroll.errors import ApiUnavailable, ClusterError, InputError, Interrupted, Terminated
from dsroll.plan import Action, LiveFingerprint, Plan, Policy, VariantPlan
from dsroll.rollout import decide
from dsroll.rollout import run as core
from dsroll.rollout.lease import LockHeld
from dsroll.rollout.outcome import Result, RunOptions, VariantResult
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.revisions import Revision
from dsroll.rollout.state import Phase, RolloutState, RunKind

runner = CliRunner()


@pytest.fixture(autouse=True)
def crash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DSROLL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DSROLL_DEBUG", raising=False)
    return tmp_path / "state" / "crash"


def boom(*_: object, **__: object) -> None:
    raise KeyError("workloads")


# --- 70: internal errors ---------------------------------------------------------------


def test_a_bug_exits_70_with_one_line_and_the_traceback_in_a_file(
    monkeypatch: pytest.MonkeyPatch, crash_home: Path
) -> None:
    monkeypatch.setattr(workflow, "locate", boom)
    result = runner.invoke(cli.app, ["render", "dev"])
    assert result.exit_code == 70, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("internal error: KeyError: 'workloads' (a bug in dsroll; traceback written to ")
    saved = Path(lines[0].rsplit("traceback written to ", 1)[1].rstrip(")"))
    assert saved.parent == crash_home and saved.name.startswith("crash-")
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'workloads'" in text and "boom" in text


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_also_prints_the_traceback(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(workflow, "locate", boom)
    if how == "env":
        monkeypatch.setenv("DSROLL_DEBUG", "1")
    argv = ["--debug", "render", "dev"] if how == "flag" else ["render", "dev"]
    result = runner.invoke(cli.app, argv)
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("internal error: KeyError:")


def test_an_unwritable_crash_dir_falls_back_to_a_temporary_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DSROLL_STATE_DIR", str(blocker))  # crash/ cannot be made under a file
    monkeypatch.setattr(workflow, "locate", boom)
    result = runner.invoke(cli.app, ["render", "dev"])
    assert result.exit_code == 70
    saved = Path(result.stderr.strip().rsplit("traceback written to ", 1)[1].rstrip(")"))
    assert saved.name.startswith("dsroll-crash-") and "KeyError" in saved.read_text()
    saved.unlink()


def test_the_one_line_of_an_internal_error_stays_short_and_the_file_keeps_it_all(
    monkeypatch: pytest.MonkeyPatch, crash_home: Path
) -> None:
    def long_boom(*_args: object, **_kwargs: object) -> None:
        raise OSError(36, "File name too long", "/p/" + "x" * 5000)

    monkeypatch.setattr(workflow, "locate", long_boom)
    result = runner.invoke(cli.app, ["render", "dev"])
    assert result.exit_code == 70
    line = result.stderr.strip()
    assert "\n" not in line and len(line) < 500 and "…" in line, line
    saved = Path(line.rsplit("traceback written to ", 1)[1].rstrip(")"))
    assert "x" * 5000 in saved.read_text()


def test_nowhere_to_write_still_exits_70(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash, "save_traceback", lambda exc: None)
    monkeypatch.setattr(workflow, "locate", boom)
    result = runner.invoke(cli.app, ["render", "dev"])
    assert result.exit_code == 70
    assert "the traceback could not be saved: run with --debug" in result.stderr


def test_sandbox_commands_get_the_same_treatment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsroll.sandbox import cluster

    monkeypatch.setattr(cluster, "status", boom)
    result = runner.invoke(cli.app, ["sandbox", "status"])
    assert result.exit_code == 70 and result.stderr.startswith("internal error: KeyError:"), result.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("bad", "environments/dev.yaml", 3), 2),
        (ClusterError("cannot reach https://x"), 2),
        (LockHeld("held"), 4),
        (Interrupted("interrupted after changes were applied: x"), 5),
    ],
)
def test_dsroll_errors_keep_their_own_exit_code(monkeypatch: pytest.MonkeyPatch, error: Exception, code: int) -> None:
    def fail(*_: object) -> None:
        raise error

    monkeypatch.setattr(workflow, "locate", fail)
    result = runner.invoke(cli.app, ["render", "dev"])
    assert result.exit_code == code
    assert result.stderr == f"error: {error}\n"


def test_usage_errors_are_not_internal_errors() -> None:
    result = runner.invoke(cli.app, ["render", "dev", "--no-such-flag"])
    assert result.exit_code == 2 and "internal error" not in result.stderr


def test_every_command_help_ends_with_its_exit_codes() -> None:
    commands = [*cli.app.registered_commands]
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in commands]
    assert {"render", "diff", "plan", "rollout", "resume", "rollback", "status"} <= set(names)
    for name in names:
        text = " ".join(runner.invoke(cli.app, [name, "--help"]).output.split())
        assert "Exit codes: 0" in text and "70 internal error" in text, name
    for name in ("up", "down", "status", "build"):
        text = " ".join(runner.invoke(cli.app, ["sandbox", name, "--help"]).output.split())
        assert "Exit codes: 0" in text, name


# --- 5: interrupted after something was applied ----------------------------------------


class FakeKube:
    def __init__(self) -> None:
        self.requests = 0
        self.writes = 0


def variant(name: str) -> VariantPlan:
    policy = Policy(("1", "100%"), 1, "0", "5m", 0, "rollback")
    return VariantPlan(
        "ns", name, "agent", name, Action.UPDATE, "pod template changed", (), policy,
        ("n1", "n2"), ("n1", "n2"), (), None, LiveFingerprint("uid", 1, "old", ("n1", "n2")), None,
    )  # fmt: skip


def a_plan(*names: str) -> Plan:
    return Plan("dev", "ctx", "https://x", None, tuple(variant(n) for n in names))


class FakeRollout:
    """Applies (one write), then meets the error of ``failing`` (a name → exception)."""

    failing: ClassVar[dict[str, BaseException]] = {}
    writes_before_failing = 1

    def __init__(self, kube: FakeKube, vp: VariantPlan, *_: Any) -> None:
        self.kube, self.vp = kube, vp

    def run(self) -> VariantResult:
        if self.vp.name in self.failing:
            self.kube.writes += self.writes_before_failing
            raise self.failing[self.vp.name]
        self.kube.writes += 3
        return VariantResult("ns", self.vp.name, "update", Result.COMPLETE, nodes_updated=2, nodes_total=2)

    def interrupted(self, cause: str) -> VariantResult:
        return VariantResult("ns", self.vp.name, "update", Result.INTERRUPTED, nodes_updated=1, nodes_total=2,
                             message=cause)  # fmt: skip


def execute(monkeypatch: pytest.MonkeyPatch, plan: Plan, failing: dict[str, BaseException], writes: int = 1) -> Any:
    monkeypatch.setattr(core, "VariantRollout", FakeRollout)
    monkeypatch.setattr(FakeRollout, "failing", failing)
    monkeypatch.setattr(FakeRollout, "writes_before_failing", writes)
    reporter = Reporter(None, json_lines=False, tty=False, quiet=True)
    return core.execute(FakeKube(), plan, RunOptions(who="me"), reporter)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ClusterError("cannot reach https://x: read timed out"),
        ApiUnavailable("cannot reach https://x: refused (failing for 2m, the retry budget)"),
        InputError("PATCH refused"),
        KeyboardInterrupt(),
        Terminated(),
    ],
)
def test_an_error_after_a_change_interrupts_the_run_with_what_it_did(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    summary = execute(monkeypatch, a_plan("a", "b", "c"), {"b": error})
    assert (summary.result, summary.exit_code) == ("interrupted", 5)
    data = summary.to_json()
    assert [(v["name"], v["result"]) for v in data["variants"]] == [("a", "complete"), ("b", "interrupted")]
    cause = "stopped by Ctrl-C" if isinstance(error, KeyboardInterrupt) else str(error)
    cause = "stopped by SIGTERM" if isinstance(error, Terminated) else cause
    assert data["interruption"] == cause and data["variants"][1]["message"] == cause


def test_an_error_before_any_change_stays_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterError):
        execute(monkeypatch, a_plan("a"), {"a": ClusterError("cannot reach https://x")}, writes=0)


def test_an_error_with_its_own_exit_code_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LockHeld):
        execute(monkeypatch, a_plan("a", "b"), {"b": LockHeld("another rollout holds b")})


def test_a_bug_after_a_change_is_still_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError):
        execute(monkeypatch, a_plan("a", "b"), {"b": KeyError("x")})


@pytest.mark.parametrize("events", [False, True])
def test_an_interrupted_run_prints_its_summary_then_exits_5(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], events: bool
) -> None:
    monkeypatch.setattr(core, "VariantRollout", FakeRollout)
    monkeypatch.setattr(FakeRollout, "failing", {"b": ClusterError("cannot reach https://x: timed out")})
    kube = SimpleNamespace(requests=7, writes=0)
    options = RunOptions(who="me")
    with pytest.raises(Interrupted) as caught:
        run = workflow.Run(kube, a_plan("a", "b"), options)  # type: ignore[arg-type]
        rollout_commands._carry_out(
            run, out=OutputFormat.json, events=events, yes=True, dry_run=False, again="resume dev"
        )
    assert caught.value.exit_code == 5
    assert str(caught.value) == (
        "interrupted after changes were applied: cannot reach https://x: timed out; "
        "state is saved in the cluster: run 'dsroll resume dev' to continue"
    )
    last = capsys.readouterr().out.strip().splitlines()[-1] if events else capsys.readouterr().out
    data = json.loads(last)
    assert (data["result"], data["exitCode"]) == ("interrupted", 5)
    assert [v["result"] for v in data["variants"]] == ["complete", "interrupted"]


# --- running an interrupted rollback again ------------------------------------------------


def a_state(operation: RunKind, phase: Phase) -> RolloutState:
    return RolloutState(
        operation, phase, "aaa", "bbb", (1, 2), 0, ("n1", "n2"), 1, "0", "5m", 0, "rollback", None, "me"
    )


HISTORY = [Revision(1, "aaa", "ds-aaa", "", None, {}), Revision(2, "bbb", "ds-bbb", "", None, {})]


def test_a_rollback_cut_off_goes_on_to_where_it_was_going() -> None:
    found = decide.rollback_target(HISTORY, a_state(RunKind.rollback, Phase.progressing), None, "ns/ds")
    assert found.hash == "aaa"


@pytest.mark.parametrize(
    ("operation", "phase", "expected"),
    [
        (RunKind.rollout, Phase.progressing, "bbb"),  # the revision the unfinished rollout left
        (RunKind.rollback, Phase.rolled_back, "aaa"),  # finished: the one before current
        (RunKind.rollback, Phase.complete, "aaa"),
    ],
)
def test_only_an_unfinished_rollback_is_continued(operation: RunKind, phase: Phase, expected: str) -> None:
    assert decide.rollback_target(HISTORY, a_state(operation, phase), None, "ns/ds").hash == expected
