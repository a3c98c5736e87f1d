"""Template output is input: refused with one line naming template, workload, class and
where, before anything is written; values can never add keys to the shipped templates."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.errors import InputError
from dsroll.gitsource import FsSource
from dsroll.render import load_environment, render_environment
from tests.conftest import ENV, TEMPLATE

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
WHERE = "templates/agent.yaml.j2 (workload agent, class gpu)"
POD = "spec.template.spec"


def render_cli(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["render", "test"])
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def edited(*edits: tuple[str, str]) -> str:
    template = TEMPLATE
    for old, new in edits:
        assert old in template, old
        template = template.replace(old, new)
    return template


CONTAINER = '          image: "{{ values.image }}:{{ values.tag }}"\n'
POD_SPEC = "    spec:\n      containers:\n"


def in_container(text: str) -> tuple[str, str]:
    return (CONTAINER, CONTAINER + textwrap.indent(text, " " * 10))


def in_pod(text: str) -> tuple[str, str]:
    return (POD_SPEC, "    spec:\n" + textwrap.indent(text, " " * 6) + "      containers:\n")


CASES = [
    # one value per key: the last one no longer wins silently
    (
        in_container("securityContext: {privileged: false}\nsecurityContext: {privileged: true}\n"),
        "rendered line 16: duplicate key 'securityContext'",
    ),
    # only what JSON can hold
    (
        ("labels: {app: ", "labels: {date: 2024-01-01, app: "),
        "rendered line 10: 2024-01-01 reads as a YAML timestamp, which JSON cannot hold: quote it",
    ),
    (in_container("env: [{name: B, value: !!binary aGk=}]\n"), "rendered line 15: tag !!binary is not allowed"),
    (in_container("args: !!set {a: null}\n"), "rendered line 15: tag !!set is not allowed"),
    (in_container("resources: {limits: {cpu: .nan}}\n"), "rendered line 15: .nan is not a finite number"),
    (in_container("resources: {limits: {1: a}}\n"), "rendered line 15: key 1 is not a string: quote it"),
    # strings where the API wants strings
    (
        ("  name: {{ workload.name }}\n", "  name: {{ workload.name }}\n  labels: {version: 1.0}\n"),
        "rendered DaemonSet: metadata.labels.version must be a string, not 1.0: quote it",
    ),
    (
        ("labels: {app: ", "annotations: {a.io/n: 5}\n      labels: {app: "),
        'spec.template.metadata.annotations["a.io/n"] must be a string, not 5: quote it',
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', 'matchLabels: {app: "{{ workload.name }}", v: 2}'),
        "spec.selector.matchLabels.v must be a string, not 2: quote it",
    ),
    (in_pod("nodeSelector: {ssd: true}\n"), f"{POD}.nodeSelector.ssd must be a string, not true: quote it"),
    (in_container("args: [--port, 9100]\n"), f"{POD}.containers[0].args[1] must be a string, not 9100: quote it"),
    (in_container("command: /bin/agent\n"), f"{POD}.containers[0].command must be a list, not '/bin/agent'"),
    (in_container("env: [{name: A, value: 1}]\n"), f"{POD}.containers[0].env[0].value must be a string, not 1"),
    (in_container("env: [{value: a}]\n"), f"{POD}.containers[0].env[0].name must be a string, not null"),
    ((CONTAINER, "          image: 5\n"), f"{POD}.containers[0].image must be a string, not 5: quote it"),
    (
        in_pod("initContainers: [{name: init, image: [a]}]\n"),
        f"{POD}.initContainers[0].image must be a string, not a list",
    ),
    (("        - name: agent\n", "        - name: 7\n"), f"{POD}.containers[0].name must be a string, not 7"),
    (
        ("labels: {app: ", "labels: {bad: 'a b', app: "),
        "spec.template.metadata.labels.bad: 'a b' is not a label value",
    ),
    # mappings and lists where the API wants them
    (("metadata:\n  name: {{ workload.name }}\n", "metadata: [a]\n"), "metadata must be a mapping, not a list"),
    (
        ("    metadata:\n      labels", "    metadata: x\n    m:\n      labels"),
        "spec.template.metadata must be a mapping, not 'x'",
    ),
    (("  selector:\n", "  updateStrategy: [a]\n  selector:\n"), "spec.updateStrategy must be a mapping, not a list"),
    (("  selector:\n", "  updateStrategy: {type: Fast}\n  selector:\n"), "spec.updateStrategy.type must be"),
    (
        ("      containers:\n        - name", "      containers:\n        -  [a]\n        - name"),
        "containers[0] must be",
    ),
    (in_pod("tolerations: {operator: Exists}\n"), f"{POD}.tolerations must be a list, not a mapping"),
    (in_pod("tolerations: [Exists]\n"), f"{POD}.tolerations[0] must be a mapping, not 'Exists'"),
    (in_pod("affinity: [a]\n"), f"{POD}.affinity must be a mapping, not a list"),
    (in_pod("affinity: {nodeAffinity: []}\n"), f"{POD}.affinity.nodeAffinity must be a mapping, not a list"),
    # selectors
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: a, operator: Foo}]"),
        "spec.selector.matchExpressions[0].operator: 'Foo' is not one of In, NotIn, Exists, DoesNotExist",
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: app, operator: In}]"),
        "spec.selector.matchExpressions[0]: app: operator In needs at least one value",
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: app, operator: Exists, values: [a]}]"),
        "spec.selector.matchExpressions[0]: app: operator Exists takes no values",
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: n, operator: Gt, values: ['1']}]"),
        "'Gt' is not one of In, NotIn, Exists, DoesNotExist",
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: app, operator: In, values: [1]}]"),
        "spec.selector.matchExpressions[0].values[0] must be a string, not 1: quote it",
    ),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', 'matchLabels: {"a b": "{{ workload.name }}"}'),
        "spec.selector.matchLabels: 'a b' is not a valid label key",
    ),
    (("  selector:\n", "  selector: [a]\n  s:\n"), "spec.selector must be a mapping, not a list"),
    (
        ('matchLabels: {app: "{{ workload.name }}"}', "matchLabels: {app: other}"),
        "spec.selector does not match spec.template.metadata.labels",
    ),
    # node affinity: Requirement's rules, Gt/Lt included
    (
        in_pod(
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n"
            "      nodeSelectorTerms: [{matchExpressions: [{key: cores, operator: Gt, values: [many]}]}]\n"
        ),
        "nodeSelectorTerms[0].matchExpressions[0]: cores: operator Gt needs exactly one integer value",
    ),
    (
        in_pod(
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n"
            "      nodeSelectorTerms: [{matchExpressions: [{key: a, operator: Near, values: [x]}]}]\n"
        ),
        "matchExpressions[0].operator: 'Near' is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt",
    ),
    (
        in_pod(
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n"
            "      nodeSelectorTerms: [{matchFields: [{key: metadata.uid, operator: In, values: [x]}]}]\n"
        ),
        "matchFields supports only metadata.name",
    ),
    (
        in_pod(
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n"
            "      nodeSelectorTerms: {matchExpressions: []}\n"
        ),
        "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms must be a list, not a mapping",
    ),
    (
        in_pod(
            "affinity:\n  nodeAffinity:\n    preferredDuringSchedulingIgnoredDuringExecution:\n"
            "      - {weight: 0, preference: {matchExpressions: [{key: a, operator: Exists}]}}\n"
        ),
        "preferredDuringSchedulingIgnoredDuringExecution[0].weight must be an integer from 1 to 100, not 0",
    ),
    # tolerations
    (in_pod("tolerations: [{key: a, operator: Maybe}]\n"), "tolerations[0].operator: 'Maybe' is not one of Exists"),
    (in_pod("tolerations: [{key: a, operator: Exists, value: b}]\n"), "tolerations[0]: operator Exists takes no value"),
    (in_pod("tolerations: [{value: b}]\n"), "tolerations[0]: a toleration without a key must have operator Exists"),
    (in_pod("tolerations: [{operator: Exists, effect: Never}]\n"), "tolerations[0].effect: 'Never' is not one of"),
    (
        in_pod("tolerations: [{operator: Exists, effect: NoExecute, tolerationSeconds: '60'}]\n"),
        "tolerations[0].tolerationSeconds must be an integer, not '60'",
    ),
    (
        in_pod("tolerations: [{operator: Exists, effect: NoSchedule, tolerationSeconds: 60}]\n"),
        "tolerations[0]: tolerationSeconds needs effect NoExecute",
    ),
    (in_pod("tolerations: [{key: 5, operator: Exists}]\n"), "tolerations[0].key must be a string, not 5: quote it"),
]


@pytest.mark.parametrize(("edit", "message"), CASES, ids=[c[1][:60] for c in CASES])
def test_bad_template_output_exits_2_with_one_line_and_writes_nothing(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], message: str
) -> None:
    root = make_project(templates={"agent.yaml.j2": edited(edit)})
    code, lines = render_cli(root, monkeypatch)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {WHERE}: "), lines[0]
    assert message in lines[0]
    assert not (root / "rendered").exists()


def test_valid_tolerations_selectors_and_affinities_render(make_project: Callable[..., Path]) -> None:
    template = edited(
        ('matchLabels: {app: "{{ workload.name }}"}', "matchExpressions: [{key: app, operator: In, values: [agent]}]"),
        in_pod(
            "tolerations:\n"
            "  - operator: Exists\n"
            "  - {key: a, operator: Equal, value: b, effect: NoSchedule}\n"
            "  - {key: c, effect: NoExecute, tolerationSeconds: 30}\n"
            "nodeSelector: {ssd: 'true'}\n"
            "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n"
            "      nodeSelectorTerms:\n"
            "        - matchExpressions: [{key: cores, operator: Gt, values: ['4']}]\n"
            "          matchFields: [{key: metadata.name, operator: NotIn, values: [n1]}]\n"
            "    preferredDuringSchedulingIgnoredDuringExecution:\n"
            "      - {weight: 10, preference: {matchExpressions: [{key: z, operator: Exists}]}}\n"
        ),
        in_container(
            "args: ['9100']\nenv: [{name: A, value: '1'}, {name: B, valueFrom: {fieldRef: {fieldPath: x}}}]\n"
        ),
    )
    source = FsSource(make_project(templates={"agent.yaml.j2": template}))
    variant = render_environment(load_environment(source, "environments/test.yaml"), source).variants[0]
    terms = variant.manifest["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchFields"] == [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]


def test_a_value_that_overrides_a_key_of_an_unquoting_template_is_refused(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old pattern (a raw value in a plain scalar) lets a value write keys; when it writes
    one the template has, the duplicate key gives it away instead of the last one winning."""
    template = edited(
        (
            CONTAINER,
            "          image: {{ values.image }}:{{ values.tag }}\n          securityContext: {privileged: false}\n",
        )
    )
    env = ENV.replace('tag: "1.0"', 'tag: "v1\\n          securityContext: {privileged: true}"')
    root = make_project(env=env, templates={"agent.yaml.j2": template})
    code, lines = render_cli(root, monkeypatch)
    assert code == 2
    assert lines == [f"error: {WHERE}: rendered line 16: duplicate key 'securityContext'"]


# --- the shipped templates: no value can add a key ---------------------------------------

SHIPPED_ENV = """\
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {name: test}
cluster: {namespace: agents}
hardwareClasses:
  - {name: gpu, nodeSelector: {gpu: "true"}}
  - {name: general, default: true}
workloads:
  - name: fluent-bit
    template: templates/fluent-bit.yaml.j2
    values:
      image: cr.fluentbit.io/fluent/fluent-bit
      tag: "3.1.9"
      parser: cri
      serviceAccount: fluent-bit
      priorityClass: system-node-critical
      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 128Mi}}
  - name: node-exporter
    template: templates/node-exporter.yaml.j2
    values:
      image: quay.io/prometheus/node-exporter
      tag: v1.8.2
      port: 9100
      collectors: [systemd, processes]
      podAnnotations: {prometheus.io/scrape: "true"}
      resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}
  - name: nvidia-device-plugin
    template: templates/nvidia-device-plugin.yaml.j2
    values: {image: nvcr.io/nvidia/k8s-device-plugin, tag: v0.16.2, deviceListStrategy: envvar}
  - name: fluentd
    template: templates/fluentd-elasticsearch.yaml.j2
    values: {image: quay.io/fluentd_elasticsearch/fluentd, tag: v2.5.2}
"""
MARKER = "INJECTED"
PAYLOADS = [
    "v1\n  securityContext: {privileged: true}",
    'x"\n  y: z',
    "x'\n          securityContext: {privileged: true}",
    "x}, securityContext: {privileged: true}, z: {",
    "x\u2028  y: z\u0085  w: v",
]
# Every string a shipped template takes from values, as a path into the workload's values.
INJECTABLE = [
    ("fluent-bit", ("image",)),
    ("fluent-bit", ("tag",)),
    ("fluent-bit", ("parser",)),
    ("fluent-bit", ("serviceAccount",)),
    ("fluent-bit", ("priorityClass",)),
    ("fluent-bit", ("resources", "limits", "memory")),
    ("node-exporter", ("tag",)),
    ("node-exporter", ("collectors", 0)),
    ("node-exporter", ("podAnnotations", "prometheus.io/scrape")),
    ("node-exporter", ("resources", "requests", "cpu")),
    ("nvidia-device-plugin", ("tag",)),
    ("nvidia-device-plugin", ("deviceListStrategy",)),
    ("fluentd", ("image",)),
    ("fluentd", ("tag",)),
]


def shipped_project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "test.yaml").write_text(SHIPPED_ENV)
    return tmp_path


def render_with(root: Path, workload: str, path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    """Each variant's manifest, by name, with ``value`` put at ``path`` of the workload's values."""
    import yaml

    env = yaml.safe_load(SHIPPED_ENV)
    target: Any = next(w for w in env["workloads"] if w["name"] == workload)["values"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    (root / "environments" / "test.yaml").write_text(yaml.safe_dump(env))
    source = FsSource(root)
    result = render_environment(load_environment(source, "environments/test.yaml"), source)
    return {v.name: v.manifest for v in result.variants if v.workload == workload}


def replaced(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, dict):
        return {replaced(k, old, new): replaced(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replaced(v, old, new) for v in obj]
    return obj.replace(old, new) if isinstance(obj, str) else obj


@pytest.mark.parametrize(("workload", "path"), INJECTABLE, ids=["-".join(map(str, (w, *p))) for w, p in INJECTABLE])
def test_no_value_adds_a_key_to_a_shipped_template(tmp_path: Path, workload: str, path: tuple[str | int, ...]) -> None:
    root = shipped_project(tmp_path)
    clean = render_with(root, workload, path, MARKER)
    for payload in PAYLOADS:
        try:
            injected = render_with(root, workload, path, payload)
        except InputError:
            continue  # refused outright is as good as harmless
        assert replaced(injected, payload, MARKER) == clean, payload


def test_shipped_renders_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for env in ("dev", "prod"):
        result = runner.invoke(app, ["render", env, "--check"])
        assert result.exit_code == 0, result.output


# --- generated names ------------------------------------------------------------------------


TWO_CLASSES = "  - name: b-c\n    nodeSelector: {x: y}\n  - name: c\n    default: true\n"


def test_two_pairs_rendering_one_daemonset_are_refused_with_the_file_line(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = ENV.replace("  - name: general\n    default: true\n", TWO_CLASSES)
    env = env.replace("workloads:\n", "workloads:\n  - {name: a, template: templates/agent.yaml.j2, classes: [b-c]}\n")
    env += "  - name: a-b\n    template: templates/agent.yaml.j2\n    classes: [gpu, c]\n"
    root = make_project(env=env)
    code, lines = render_cli(root, monkeypatch)
    line = env.splitlines().index("    classes: [gpu, c]") + 1
    assert code == 2
    assert lines == [
        f"error: environments/test.yaml:{line}: workload 'a-b' class 'c' and workload 'a' class 'b-c' "
        "both render DaemonSet agents/a-b-c"
    ]
    assert not (root / "rendered").exists()


def test_the_same_variant_name_in_two_namespaces_is_fine(make_project: Callable[..., Path]) -> None:
    env = ENV.replace("  - name: general\n    default: true\n", TWO_CLASSES)
    values = "values: {image: i, tag: t}"
    env += f"  - {{name: a, namespace: one, template: templates/agent.yaml.j2, classes: [b-c], {values}}}\n"
    env += f"  - {{name: a-b, namespace: two, template: templates/agent.yaml.j2, classes: [c], {values}}}\n"
    source = FsSource(make_project(env=env))
    names = [v.key for v in render_environment(load_environment(source, "environments/test.yaml"), source).variants]
    assert ("one", "a-b-c") in names and ("two", "a-b-c") in names


@pytest.mark.parametrize(("length", "ok"), [(63, True), (64, False)])
def test_variant_name_limit(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, length: int, ok: bool
) -> None:
    workload = "w" * (length - len("-gpu"))
    env = ENV.replace("  - name: agent\n", f"  - name: {workload}\n    classes: [gpu]\n").replace(
        '    classValues: {arm64: {tag: "1.0-arm64"}}\n', ""
    )
    code, lines = render_cli(make_project(env=env), monkeypatch)
    if ok:
        assert code == 0, lines
        return
    assert code == 2
    assert len(lines) == 1
    assert f"variant name '{workload}-gpu' (64 characters) is not a DNS label" in lines[0]
    assert "at most 63" in lines[0]
