"""Rendering: injected identity and affinity, determinism, template errors with file:line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dsroll.classes import terms_match
from dsroll.cli import app
from dsroll.errors import InputError
from dsroll.gitsource import FsSource
from dsroll.render import load_environment, render_environment
from tests.conftest import TEMPLATE

runner = CliRunner()


def render(root: Path, name: str = "test"):  # type: ignore[no-untyped-def]
    source = FsSource(root)
    env = load_environment(source, f"environments/{name}.yaml")
    return render_environment(env, source)


def test_one_variant_per_workload_and_class_with_identity(make_project: Callable[..., Path]) -> None:
    result = render(make_project())
    assert [v.name for v in result.variants] == ["agent-gpu", "agent-arm64", "agent-general"]
    arm = result.variants[1].manifest
    ours = {
        "app.kubernetes.io/managed-by": "dsroll",
        "dsroll.io/environment": "test",
        "dsroll.io/workload": "agent",
        "dsroll.io/class": "arm64",
    }
    assert arm["metadata"]["namespace"] == "agents"
    assert ours.items() <= arm["metadata"]["labels"].items()
    assert ours.items() <= arm["spec"]["template"]["metadata"]["labels"].items()
    assert arm["spec"]["selector"]["matchLabels"] == {
        "app": "agent",
        "dsroll.io/workload": "agent",
        "dsroll.io/class": "arm64",
    }
    assert arm["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/agent:1.0-arm64"


def _admits(manifest: dict, labels: dict[str, str]) -> bool:  # type: ignore[type-arg]
    from dsroll.classes import Requirement

    terms = manifest["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    parsed = [
        tuple(Requirement(e["key"], e["operator"], tuple(e.get("values", ()))) for e in t["matchExpressions"])
        for t in terms
    ]
    return terms_match(parsed, labels)


@pytest.mark.parametrize(
    ("labels", "winner"),
    [
        ({"gpu": "true", "kubernetes.io/arch": "arm64"}, "agent-gpu"),
        ({"kubernetes.io/arch": "arm64"}, "agent-arm64"),
        ({"kubernetes.io/arch": "amd64"}, "agent-general"),
        ({}, "agent-general"),
    ],
)
def test_each_node_is_admitted_by_exactly_one_variant(
    make_project: Callable[..., Path], labels: dict[str, str], winner: str
) -> None:
    result = render(make_project())
    admitted = [v.name for v in result.variants if _admits(dict(v.manifest), labels)]
    assert admitted == [winner]


def test_template_affinity_is_anded_into_every_term(make_project: Callable[..., Path]) -> None:
    template = TEMPLATE.replace(
        "      containers:",
        "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n"
        "            nodeSelectorTerms:\n              - matchExpressions: [{key: pool, operator: In, values: [a]}]\n"
        "              - matchExpressions: [{key: pool, operator: In, values: [b]}]\n      containers:",
    )
    result = render(make_project(templates={"agent.yaml.j2": template}))
    gpu = dict(result.variants[0].manifest)
    terms = gpu["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert len(terms) == 2
    assert all({"key": "gpu", "operator": "In", "values": ["true"]} in t["matchExpressions"] for t in terms)
    assert _admits(gpu, {"gpu": "true", "pool": "b"})
    assert not _admits(gpu, {"gpu": "true", "pool": "c"})


def test_render_is_byte_for_byte_deterministic_across_hash_seeds(make_project: Callable[..., Path]) -> None:
    root = make_project()
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from tests.unit.test_render import dump; dump(sys.argv[1])", str(root)],
            env=env,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            check=True,
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1
    assert "agent-general" in outputs.pop()


def dump(root: str) -> None:
    print("".join(v.text for v in render(Path(root)).variants))


def test_undefined_variable_names_template_line(make_project: Callable[..., Path]) -> None:
    template = TEMPLATE.replace('"{{ values.image }}', '"{{ values.imagee }}')
    with pytest.raises(InputError) as info:
        render(make_project(templates={"agent.yaml.j2": template}))
    assert info.value.file == "templates/agent.yaml.j2"
    assert info.value.line == 14
    assert "imagee" in str(info.value)


def test_syntax_error_names_template_line(make_project: Callable[..., Path]) -> None:
    template = TEMPLATE.replace("{{ workload.name }}\nspec", "{{ workload.name }\nspec")
    with pytest.raises(InputError) as info:
        render(make_project(templates={"agent.yaml.j2": template}))
    assert info.value.file == "templates/agent.yaml.j2"
    assert info.value.line == 4
    assert "template syntax" in str(info.value)


def test_error_inside_an_included_macro_names_that_file(make_project: Callable[..., Path]) -> None:
    helpers = "{% macro img(v) %}{{ v.nope }}{% endmacro %}\n"
    template = '{% import "_h.j2" as h %}\n' + TEMPLATE.replace(
        '"{{ values.image }}:{{ values.tag }}"', '"{{ h.img(values) }}"'
    )
    with pytest.raises(InputError) as info:
        render(make_project(templates={"agent.yaml.j2": template, "_h.j2": helpers}))
    assert (info.value.file, info.value.line) == ("templates/_h.j2", 1)


def test_includes_macros_and_filters_work(make_project: Callable[..., Path]) -> None:
    helpers = "{% macro img(v) %}{{ v.image }}:{{ v.tag }}{% endmacro %}\n"
    template = '{% import "_h.j2" as h %}\n' + TEMPLATE.replace(
        '"{{ values.image }}:{{ values.tag }}"',
        '"{{ h.img(values) }}"\n          env:\n'
        '            - {name: CFG, value: "{{ values | to_json | b64encode }}"}\n'
        "            - {name: Y, value: {{ {'a': 1} | to_yaml | to_json }}}",
    )
    variant = render(make_project(templates={"agent.yaml.j2": template, "_h.j2": helpers})).variants[0]
    container = variant.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/agent:1.0"
    import base64
    import json

    assert json.loads(base64.b64decode(container["env"][0]["value"])) == {"image": "example.com/agent", "tag": "1.0"}
    assert container["env"][1]["value"] == "a: 1"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("kind: DaemonSet", "kind: Deployment"), "must be apiVersion apps/v1, kind DaemonSet"),
        (('matchLabels: {app: "{{ workload.name }}"}', "matchLabels: {app: other}"), "selector does not match"),
        (("      containers:\n", "      restartPolicy: Never\n      containers:\n"), "restartPolicy must be Always"),
        (
            ('        - name: agent\n          image: "{{ values.image }}:{{ values.tag }}"\n', "        []\n"),
            "at least one container",
        ),
        (("  name: {{ workload.name }}\n", "  name: {{ workload.name }}\n  x: [\n"), "not valid YAML"),
    ],
)
def test_invalid_rendered_daemonset(make_project: Callable[..., Path], edit: tuple[str, str], message: str) -> None:
    template = TEMPLATE.replace(*edit)
    assert template != TEMPLATE
    with pytest.raises(InputError) as info:
        render(make_project(templates={"agent.yaml.j2": template}))
    assert message in str(info.value)
    assert "templates/agent.yaml.j2" in str(info.value)


def test_variant_name_longer_than_63_is_refused(make_project: Callable[..., Path]) -> None:
    from tests.conftest import ENV

    long_env = ENV.replace("- name: agent", "- name: " + "a" * 58)
    with pytest.raises(InputError) as info:
        render(make_project(env=long_env))
    assert "is not a DNS label" in str(info.value)


def test_shadowed_class_is_refused(make_project: Callable[..., Path]) -> None:
    from tests.conftest import ENV

    env = ENV.replace(
        "  - name: general",
        '  - name: biggpu\n    nodeSelector: {gpu: "true"}\n  - name: general',
    )
    with pytest.raises(InputError) as info:
        render(make_project(env=env))
    assert "class 'biggpu' can admit no node" in str(info.value)


def test_render_command_writes_removes_and_checks(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    monkeypatch.chdir(root)
    stale = root / "rendered/test/agents/agent-tpu.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("# Rendered by dsroll from templates/agent.yaml.j2 for environment test, class tpu.\nold\n")
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert "removed   rendered/test/agents/agent-tpu.yaml" in result.output
    assert not stale.exists()
    files = sorted(p.name for p in (root / "rendered/test/agents").iterdir())
    assert files == ["agent-arm64.yaml", "agent-general.yaml", "agent-gpu.yaml"]
    assert yaml.safe_load((root / "rendered/test/agents/agent-gpu.yaml").read_text())["metadata"]["name"] == "agent-gpu"

    assert runner.invoke(app, ["render", "test", "--check"]).exit_code == 0
    gpu = root / "rendered/test/agents/agent-gpu.yaml"
    gpu.write_text(gpu.read_text().replace("agent:1.0", "agent:9.9"))  # edited by hand, header kept
    before = (root / "rendered/test/agents/agent-gpu.yaml").read_text()
    check = runner.invoke(app, ["render", "test", "--check"])
    assert check.exit_code == 1
    assert "would-write  rendered/test/agents/agent-gpu.yaml" in check.output
    assert (root / "rendered/test/agents/agent-gpu.yaml").read_text() == before, "--check writes nothing"


def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(templates={"agent.yaml.j2": TEMPLATE.replace("values.tag", "values.missing")})
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: templates/agent.yaml.j2:14: undefined template variable")
    assert not (root / "rendered").exists()


def test_unknown_environment_exits_2(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(make_project())
    result = runner.invoke(app, ["render", "nope"])
    assert result.exit_code == 2
    assert "environment 'nope' not found" in result.output and "known: test" in result.output


def test_a_lone_default_class_adds_no_affinity(make_project: Callable[..., Path]) -> None:
    from tests.conftest import ENV

    start = ENV.index("  - name: gpu")
    env = ENV[:start] + ENV[ENV.index("  - name: general") :].replace(
        '    classValues: {arm64: {tag: "1.0-arm64"}}\n', ""
    )
    variant = render(make_project(env=env)).variants[0]
    assert variant.name == "agent-general"
    assert "affinity" not in variant.manifest["spec"]["template"]["spec"]


def test_a_text_rendered_again_is_parsed_once_and_each_caller_gets_its_own_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dsroll import render as render_module
    from dsroll import yamlio

    parses: list[str] = []
    load_plain = yamlio.load_plain

    def counting(text: str) -> object:
        parses.append(text)
        return load_plain(text)

    monkeypatch.setattr(render_module.yamlio, "load_plain", counting)
    cache = render_module.ParseCache()
    text = "spec:\n  template:\n    spec:\n      containers: [{name: a, image: 'x:1'}]\n"
    first, second = cache.load(text), cache.load(text)
    assert first == second == load_plain(text) and len(parses) == 1
    first["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "x:1"
    assert cache.load(text)["spec"]["template"]["spec"]["containers"][0]["image"] == "x:1"
    for _ in range(2):
        with pytest.raises(yaml.YAMLError):
            cache.load("a: [unclosed\n")
    assert len(parses) == 3, "a text that does not parse is not remembered: it raises each time"


def test_classes_that_render_the_same_text_get_manifests_of_their_own(make_project: Callable[..., Path]) -> None:
    variants = render(make_project()).variants
    assert len({id(v.manifest) for v in variants}) == len(variants)
    containers = [id(v.manifest["spec"]["template"]["spec"]["containers"]) for v in variants]
    assert len(set(containers)) == len(variants)
