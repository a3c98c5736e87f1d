"""A second hand on a DaemonSet's spec, named from its managedFields (``rollout/writers.py``)."""

from __future__ import annotations

from typing import Any

from dsroll.rollout.writers import changed_by, second_hand, spec_writers


def a_daemonset(generation: int, image: str = "a:1", managers: list[dict[str, Any]] | None = None) -> dict:
    return {
        "metadata": {"generation": generation, "managedFields": managers or []},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}, "updateStrategy": {"type": "OnDelete"}},
    }


DSROLL = {"manager": "dsroll", "operation": "Apply", "time": "2026-11-29T08:00:00Z", "fieldsV1": {"f:spec": {}}}
KUBECTL = {"manager": "kubectl-set", "operation": "Update", "time": "2026-11-29T08:05:00Z", "fieldsV1": {"f:spec": {}}}
CONTROLLER = {
    "manager": "kube-controller-manager", "operation": "Update", "time": "2026-11-29T08:06:00Z",
    "subresource": "status", "fieldsV1": {"f:status": {}},
}  # fmt: skip
ANNOTATOR = {"manager": "kubectl-annotate", "operation": "Update", "time": "2026-11-29T08:07:00Z",
             "fieldsV1": {"f:metadata": {}}}  # fmt: skip


def test_only_other_writers_of_the_spec_count_newest_first() -> None:
    older = {**KUBECTL, "manager": "kubectl-edit", "time": "2026-11-29T08:01:00Z"}
    ds = a_daemonset(3, managers=[DSROLL, older, CONTROLLER, ANNOTATOR, KUBECTL])
    assert spec_writers(ds, "dsroll") == [
        ("kubectl-set", "Update", "2026-11-29T08:05:00Z"),
        ("kubectl-edit", "Update", "2026-11-29T08:01:00Z"),
    ]
    assert changed_by(ds, "dsroll") == "by kubectl-set (Update at 2026-11-29T08:05:00Z)"
    assert changed_by(a_daemonset(3, managers=[DSROLL]), "dsroll") == "by another writer (no field manager recorded)"


def test_a_second_hand_is_a_newer_generation_named_with_what_and_who() -> None:
    planned = a_daemonset(4)
    assert second_hand(a_daemonset(4, managers=[KUBECTL]), planned, "dsroll") is None
    # a watch that has not seen the rollout's own apply yet is behind, not a second hand
    assert second_hand(a_daemonset(3, image="old:0", managers=[KUBECTL]), planned, "dsroll") is None
    found = second_hand(a_daemonset(5, image="a:2", managers=[DSROLL, KUBECTL]), planned, "dsroll")
    assert found == "spec.template changed by kubectl-set (Update at 2026-11-29T08:05:00Z) (generation 4 → 5)"
    moved = a_daemonset(5, managers=[KUBECTL])
    moved["spec"]["updateStrategy"] = {"type": "RollingUpdate"}
    assert (second_hand(moved, planned, "dsroll") or "").startswith("spec.updateStrategy changed by kubectl-set")
