"""Every kind of bad environment file gives one line naming file:line and the cause."""

from __future__ import annotations

import pytest

from dsroll.config import parse_duration, parse_environment
from dsroll.errors import InputError
from tests.conftest import ENV

FILE = "environments/test.yaml"


def parse(text: str, exists: bool = True) -> object:
    return parse_environment(text, FILE, lambda _p: exists)


def error_of(text: str, exists: bool = True) -> InputError:
    with pytest.raises(InputError) as info:
        parse(text, exists)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return info.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_valid_environment_resolves_defaults_and_namespaces() -> None:
    env = parse_environment(ENV, FILE)
    assert env.name == "test"
    assert env.namespace == "agents"
    assert env.rendered_dir == "rendered/test"
    assert [c.name for c in env.classes] == ["gpu", "arm64", "general"]
    workload = env.workloads[0]
    assert workload.classes == ("gpu", "arm64", "general")
    assert workload.namespace == "agents"
    assert workload.rollout.steps == ["1", "10%", "50%", "100%"]
    assert workload.rollout.on_failure == "rollback"


def test_workload_rollout_overrides_only_what_it_names() -> None:
    text = (
        ENV.replace(
            'classValues: {arm64: {tag: "1.0-arm64"}}',
            'classValues: {arm64: {tag: "1.0-arm64"}}\n    rollout: {steps: [1, "100%"]}',
        )
        + "rollout: {maxUnavailable: 3, pause: 0}\n"
    )
    workload = parse_environment(text, FILE).workloads[0]
    assert workload.rollout.steps == ["1", "100%"]
    assert workload.rollout.max_unavailable == 3
    assert workload.rollout.pause == "0"


@pytest.mark.parametrize(
    ("edit", "needle", "message"),
    [
        (("cluster: {namespace: agents}", "cluster: {namespace: agents, zone: x}"), "cluster:", "unknown key 'zone'"),
        (("    values: {image", "    colour: blue\n    values: {image"), "colour: blue", "unknown key 'colour'"),
        (("kind: Environment", "kind: Enviroment"), "kind:", "kind: must be Environment, not 'Enviroment'"),
        (("- name: gpu", "- name: 7"), "name: 7", "hardwareClasses[0].name: must be a string, not the number 7"),
        (("- name: arm64", "- name: gpu"), "- name: gpu\n    match", "duplicate hardware class 'gpu'"),
        (("    default: true", "    default: true\n  - {name: other, default: true}"), "name: other", "two default"),
        (("values: {image", "classes: [gpu, tpu]\n    values: {image"), "classes: [gpu, tpu]", "unknown class 'tpu'"),
        (("classValues: {arm64", "classValues: {tpu"), "classValues", "classValues names class 'tpu'"),
        (("- name: agent", "- name: Agent_1"), "name: Agent_1", "not a DNS label"),
        (
            ("operator: In", "operator: Like"),
            "operator: Like",
            "must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt, not 'Like'",
        ),
        (("operator: In, values: [arm64]", "operator: Exists, values: [arm64]"), "operator: Exists", "takes no values"),
        (
            (
                'classValues: {arm64: {tag: "1.0-arm64"}}',
                'classValues: {arm64: {tag: "1.0-arm64"}}\n    replaces:\n      - {namespace: logging, name: fluentd}',
            ),
            "namespace: logging",
            "pods cannot move between namespaces",
        ),
    ],
)
def test_bad_input_names_line_and_cause(edit: tuple[str, str], needle: str, message: str) -> None:
    text = ENV.replace(*edit)
    assert text != ENV
    err = error_of(text)
    assert err.file == FILE
    if needle == "- name: gpu\n    match":  # the second 'gpu' is the duplicate
        assert err.line == line_of(text, "matchExpressions") - 1
    else:
        assert err.line == line_of(text, needle), str(err)
    assert message in str(err)
    assert str(err).startswith(f"{FILE}:{err.line}: ")


def test_default_class_with_selector_is_refused() -> None:
    text = ENV.replace("  - name: gpu\n    nodeSelector", "  - name: gpu\n    default: true\n    nodeSelector")
    err = error_of(text)
    assert "default class 'gpu' cannot have a selector" in str(err)
    assert err.line == line_of(text, "- name: gpu")


def test_class_without_selector_must_be_default() -> None:
    text = ENV.replace("    default: true\n", "")
    err = error_of(text)
    assert "class 'general' has no nodeSelector" in str(err)
    assert err.line == line_of(text, "- name: general")


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ('steps: ["1", "five%", "100%"]', "invalid step 'five%'"),
        ('steps: ["1", "150%"]', "invalid step '150%'"),
        ('steps: ["50%", "10%", "100%"]', "must grow"),
        ('steps: ["1", "50%"]', 'the last step must be "100%"'),
        ("pause: 5 minutes", "invalid duration '5 minutes'"),
        ("pause: 7", "invalid pause 7"),
        ("readyTimeout: 0", "readyTimeout"),
        ("maxUnavailable: 0", "must be at least 1"),
        ('maxUnavailable: "120%"', "percentage from 1% to 100%"),
        ("onFailure: retry", "must be one of rollback, pause, abort, not 'retry'"),
        ("minReadySeconds: -3", "cannot be negative"),
    ],
)
def test_bad_rollout_policy(rollout: str, message: str) -> None:
    text = ENV + f"rollout:\n  {rollout}\n"
    err = error_of(text)
    assert message in str(err), str(err)
    assert err.line == line_of(text, rollout.split(":")[0] + ":")


def test_missing_template_file() -> None:
    err = error_of(ENV, exists=False)
    assert "template 'templates/agent.yaml.j2' not found" in str(err)
    assert err.line == line_of(ENV, "template:")


def test_invalid_yaml_names_line() -> None:
    text = ENV.replace("cluster: {namespace: agents}", "cluster: {namespace: agents")
    err = error_of(text)
    assert "invalid YAML" in str(err)
    assert err.line is not None and err.line >= line_of(text, "cluster:")


def test_duplicate_yaml_key_is_an_error() -> None:
    text = ENV.replace("metadata: {name: test}", "metadata: {name: test}\nmetadata: {name: other}")
    err = error_of(text)
    assert "duplicate key 'metadata'" in str(err)
    assert err.line == line_of(text, "{name: other}")


def test_required_key_missing() -> None:
    text = ENV.replace("    template: templates/agent.yaml.j2\n", "")
    err = error_of(text)
    assert "workloads[0].template: required key missing" in str(err)
    assert err.line == line_of(text, "- name: agent")


def test_bad_ignore_differences_pointer() -> None:
    err = error_of(ENV + 'ignoreDifferences: ["spec/template"]\n')
    assert "is not a JSON pointer" in str(err)


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
