"""The pure diff model: normalisation, ignored fields, classification, and node coverage."""

from __future__ import annotations

import copy

import pytest

from dsroll.config import parse_environment
from dsroll.diff import Change, changed_paths, classify, compare, normalise, strip_ignored
from dsroll.errors import InputError
from dsroll.kube import parse_request_timeout
from dsroll.nodes import classify_nodes
from tests.conftest import ENV

BASE = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "a-gpu", "namespace": "ns", "labels": {"dsroll.io/workload": "a", "dsroll.io/class": "gpu"}},
    "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}},
    },
}


def live_copy() -> dict:  # type: ignore[type-arg]
    live = copy.deepcopy(BASE)
    live["metadata"].update(
        uid="u", resourceVersion="7", generation=2, creationTimestamp="t", managedFields=[{"manager": "x"}]
    )
    live["metadata"]["annotations"] = {"deprecated.daemonset.template.generation": "2", "dsroll.io/rollout": "{}"}
    live["spec"]["template"]["metadata"]["creationTimestamp"] = None
    live["status"] = {"numberReady": 3}
    return live


def test_normalise_drops_what_the_server_sets() -> None:
    assert normalise(live_copy()) == BASE


@pytest.mark.parametrize(
    ("path", "value", "change"),
    [
        (("metadata", "labels", "team"), "x", Change.METADATA),
        (("spec", "minReadySeconds"), 5, Change.SPEC),
        (("spec", "template", "metadata", "labels", "extra"), "y", Change.POD_TEMPLATE),
        (("spec", "selector", "matchLabels", "tier"), "z", Change.SELECTOR),
    ],
)
def test_classify_names_the_most_severe_change(path: tuple[str, ...], value: object, change: Change) -> None:
    new = copy.deepcopy(BASE)
    target = new
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert classify(BASE, new) is change
    assert list(changed_paths(BASE, new)) == ["/" + "/".join(path)]


def test_added_removed_unchanged() -> None:
    assert classify(None, BASE) is Change.ADDED
    assert classify(BASE, None) is Change.REMOVED
    assert classify(BASE, copy.deepcopy(BASE)) is Change.UNCHANGED


def test_strip_ignored_counts_only_differences_and_prunes_emptied_maps() -> None:
    old, new = copy.deepcopy(BASE), copy.deepcopy(BASE)
    new["spec"]["template"]["metadata"]["annotations"] = {"sidecar.io/status": "injected"}
    pointers = ["/spec/template/metadata/annotations/sidecar.io~1status", "/spec/template/metadata/labels/app"]
    assert strip_ignored(old, new, pointers) == 1
    assert old == new
    assert "metadata" not in new["spec"]["template"], "maps emptied by the removal go too"


def test_compare_reports_workload_class_and_diff() -> None:
    new = copy.deepcopy(BASE)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "i:2"
    result = compare(BASE, new, labels=("live", "rendered"))
    assert (result.workload, result.cls, result.change) == ("a", "gpu", Change.POD_TEMPLATE)
    assert "-      - image: i:1\n" in result.diff and "+      - image: i:2\n" in result.diff
    assert result.to_json()["restartsPods"] is True and result.to_json()["needsOrphanReplacement"] is False


@pytest.mark.parametrize(("text", "seconds"), [(None, 30.0), ("0", None), ("5", 5.0), ("2s", 2.0), ("1m", 60.0)])
def test_request_timeout(text: str | None, seconds: float | None) -> None:
    assert parse_request_timeout(text) == seconds


def test_bad_request_timeout() -> None:
    with pytest.raises(InputError, match="--request-timeout 'soon'"):
        parse_request_timeout("soon")


def test_node_report_winner_and_uncovered() -> None:
    env = parse_environment(ENV.replace("    classValues", "    classes: [gpu, arm64]\n    classValues"), "e.yaml")
    nodes = [
        {"metadata": {"name": "n1", "labels": {"gpu": "true", "kubernetes.io/arch": "arm64"}}},
        {"metadata": {"name": "n2", "labels": {"kubernetes.io/arch": "arm64", "topology.kubernetes.io/zone": "z"}}},
        {"metadata": {"name": "n3", "labels": {}}},
    ]
    report = classify_nodes(env, nodes)
    assert [(n.name, n.matched, n.winner) for n in report.nodes] == [
        ("n1", ("gpu", "arm64"), "gpu"),
        ("n2", ("arm64",), "arm64"),
        ("n3", (), "general"),
    ]
    assert report.nodes[1].zone == "z"
    assert report.uncovered == {"agent": ("n3",)}


def test_node_with_non_integer_value_on_a_gt_key_is_reported_uncovered() -> None:
    text = ENV.replace(
        "  - name: arm64\n",
        "  - name: big\n    matchExpressions: [{key: cores, operator: Gt, values: ['64']}]\n  - name: arm64\n",
    )
    env = parse_environment(text, "e.yaml")
    nodes = [
        {"metadata": {"name": "odd", "labels": {"cores": "many"}}},
        {"metadata": {"name": "small", "labels": {"cores": "8"}}},
    ]
    report = classify_nodes(env, nodes)
    assert [n.winner for n in report.nodes] == ["general", "general"]
    assert report.uncovered == {"agent": ("odd",)}, "no variant's affinity admits a non-integer 'cores'"
