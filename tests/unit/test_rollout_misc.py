"""The rollout package's small pure pieces: exit codes (outcome.py), resumed steps, selectors, scope, summaries."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsroll.config import Environment, parse_environment
from dsroll.errors import InputError
from dsroll.render import Variant
from dsroll.rollout.decide import fit_steps as _fit
from dsroll.rollout.observe import Scope
from dsroll.rollout.outcome import Result, RunSummary, VariantResult
from dsroll.rollout.revisions import selector_string

ENV_TEXT = """\
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {name: test}
cluster: {namespace: agents}
hardwareClasses:
  - name: gpu
    nodeSelector: {gpu: "true"}
  - name: arm64
    matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]
  - name: general
    default: true
workloads:
  - name: agent
    template: templates/agent.yaml.j2
    values: {image: example.com/agent, tag: "1.0"}
  - name: fluent-bit
    template: templates/agent.yaml.j2
    classes: [general]
    values: {image: cr.fluentbit.io/fluent/fluent-bit, tag: "3.1.9"}
"""


# --- Result.exit_code ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (Result.COMPLETE, 0),
        (Result.PARTITIONED, 0),
        (Result.AWAITING_APPROVAL, 3),
        (Result.PAUSED, 3),
        (Result.ROLLED_BACK, 1),
        (Result.ABORTED, 1),
        (Result.FAILED, 1),
        (Result.INTERRUPTED, 5),
    ],
)
def test_result_exit_codes_are_the_documented_ones(result: Result, code: int) -> None:
    assert result.exit_code == code


def test_every_result_has_an_exit_code() -> None:
    assert {r.exit_code for r in Result} == {0, 1, 3, 5}


# --- _fit: saved steps on a changed node count -----------------------------------------


@pytest.mark.parametrize(
    ("steps", "total", "expected"),
    [
        ((1, 3, 6), 6, (1, 3, 6)),
        ((1, 3, 6), 4, (1, 3, 4)),  # nodes gone: the last steps shrink onto the total
        ((1, 3, 6), 8, (1, 3, 6, 8)),  # nodes joined: one more step reaches them
        ((1, 5, 6), 2, (1, 2)),
        ((), 3, (3,)),
        ((0, 2), 3, (2, 3)),
    ],
)
def test_fit(steps: tuple[int, ...], total: int, expected: tuple[int, ...]) -> None:
    assert _fit(steps, total) == expected


@given(steps=st.lists(st.integers(0, 60), max_size=6).map(sorted), total=st.integers(1, 60))
def test_fit_grows_strictly_to_the_total(steps: list[int], total: int) -> None:
    got = _fit(steps, total)
    assert all(a < b for a, b in itertools.pairwise(got))
    assert got[-1] == total and all(0 < c <= total for c in got)
    assert {min(c, total) for c in steps if c > 0} <= set(got)


# --- selector_string -------------------------------------------------------------------


def test_selector_string_of_match_labels_is_sorted() -> None:
    selector = {"matchLabels": {"dsroll.io/workload": "agent", "app": "agent", "dsroll.io/class": "gpu"}}
    assert selector_string(selector) == "app=agent,dsroll.io/class=gpu,dsroll.io/workload=agent"


def test_selector_string_of_every_expression_operator() -> None:
    selector = {
        "matchLabels": {"app": "agent"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["node", "edge"]},
            {"key": "kubernetes.io/arch", "operator": "NotIn", "values": ["arm64"]},
            {"key": "dsroll.io/class", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(selector) == (
        "app=agent,tier in (node,edge),kubernetes.io/arch notin (arm64),dsroll.io/class,!legacy"
    )


def test_selector_string_of_an_empty_selector_selects_everything() -> None:
    assert selector_string({}) == ""
    assert selector_string({"matchLabels": None, "matchExpressions": None}) == ""


# --- Scope -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env() -> Environment:
    return parse_environment(ENV_TEXT, "environments/test.yaml")


def variant(workload: str, cls: str) -> Variant:
    name = f"{workload}-{cls}"
    return Variant(workload, cls, "agents", name, "templates/agent.yaml.j2", {"metadata": {"name": name}}, "")


ALL = [variant("agent", c) for c in ("gpu", "arm64", "general")] + [variant("fluent-bit", "general")]


def test_scope_empty_admits_everything(env: Environment) -> None:
    scope = Scope()
    scope.check(env)
    assert scope.select(ALL) == ALL
    assert scope.admits(None, None)


@pytest.mark.parametrize(
    ("scope", "names"),
    [
        (Scope(workloads=("agent",)), ["agent-gpu", "agent-arm64", "agent-general"]),
        (Scope(classes=("general",)), ["agent-general", "fluent-bit-general"]),
        (Scope(workloads=("fluent-bit",), classes=("general",)), ["fluent-bit-general"]),
        (Scope(workloads=("fluent-bit",), classes=("gpu",)), []),
        (Scope(classes=("gpu", "arm64")), ["agent-gpu", "agent-arm64"]),
    ],
)
def test_scope_selects_variants_matching_every_flag(env: Environment, scope: Scope, names: list[str]) -> None:
    scope.check(env)
    assert [v.name for v in scope.select(ALL)] == names


def test_scope_admits_a_removed_variant_only_if_its_names_are_in_scope() -> None:
    assert not Scope(workloads=("agent",)).admits(None, "gpu")
    assert not Scope(classes=("gpu",)).admits("agent", None)
    assert Scope(classes=("gpu",)).admits(None, "gpu")


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        (
            Scope(workloads=("agnet",)),
            "--workload 'agnet': not in environments/test.yaml (has: agent, fluent-bit)",
        ),
        (
            Scope(workloads=("agent",), classes=("cpu",)),
            "--class 'cpu': not in environments/test.yaml (has: arm64, general, gpu)",
        ),
    ],
)
def test_scope_check_names_the_unknown_flag_value(env: Environment, scope: Scope, message: str) -> None:
    with pytest.raises(InputError) as info:
        scope.check(env)
    assert str(info.value) == message


# --- RunSummary ------------------------------------------------------------------------


def outcome(name: str, result: Result) -> VariantResult:
    return VariantResult("agents", name, "update", result, phase=None, nodes_updated=2, nodes_total=4)


def summary(*results: Result, dry_run: bool = False) -> RunSummary:
    found = [outcome(f"agent-{i}", r) for i, r in enumerate(results)]
    return RunSummary("prod", "rollout", found, api_requests=42, elapsed=3.14159, dry_run=dry_run)


@pytest.mark.parametrize(
    ("results", "expected", "code"),
    [
        ((), "complete", 0),
        ((Result.COMPLETE, Result.COMPLETE), "complete", 0),
        ((Result.COMPLETE, Result.PARTITIONED, Result.COMPLETE), "partitioned", 0),
        ((Result.COMPLETE, Result.AWAITING_APPROVAL), "awaiting-approval", 3),
        ((Result.PARTITIONED, Result.PAUSED), "paused", 3),
        ((Result.COMPLETE, Result.ROLLED_BACK), "rolled-back", 1),
        ((Result.ABORTED,), "aborted", 1),
        ((Result.FAILED, Result.AWAITING_APPROVAL), "failed", 1),  # the first that stopped decides
        ((Result.PAUSED, Result.FAILED), "paused", 3),
    ],
)
def test_run_summary_result_and_exit_code(results: tuple[Result, ...], expected: str, code: int) -> None:
    got = summary(*results)
    assert (got.result, got.exit_code) == (expected, code)


def test_run_summary_of_a_dry_run() -> None:
    got = summary(Result.COMPLETE, dry_run=True)
    assert (got.result, got.exit_code) == ("dry-run", 0)


def test_run_summary_json_is_the_documented_shape() -> None:
    data = summary(Result.COMPLETE, Result.PAUSED).to_json()
    assert list(data) == [
        "environment",
        "operation",
        "result",
        "exitCode",
        "apiRequests",
        "elapsedSeconds",
        "variants",
        "replacements",
        "interruption",
        "namespacesCreated",
    ]
    assert data["replacements"] == [] and data["interruption"] is None and data["namespacesCreated"] == []
    assert (data["result"], data["exitCode"], data["apiRequests"], data["elapsedSeconds"]) == ("paused", 3, 42, 3.14)
    assert [v["result"] for v in data["variants"]] == ["complete", "paused"]
    assert {"name", "namespace", "action", "phase", "targetRevision", "previousRevision"} <= set(data["variants"][0])
    assert {"nodesUpdated", "nodesTotal", "failure"} <= set(data["variants"][0])
