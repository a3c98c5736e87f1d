"""One permission table: the shipped RBAC is made from it, and the preflight asks for it."""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsroll import permissions, workflow
from dsroll.diff import within
from dsroll.errors import ClusterError, DsrollError, InputError
from dsroll.permissions import COMMANDS, GRANTS, Access

ROOT = Path(__file__).resolve().parents[2]
WRITES = {"create", "update", "patch", "delete"}


@pytest.mark.parametrize("env", sorted(p.stem for p in (ROOT / "environments").glob("*.yaml")))
def test_the_shipped_rbac_is_what_the_table_makes(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    shipped = (ROOT / "deploy" / "rbac" / f"{env}.yaml").read_text()
    assert shipped == workflow.rbac(env, None), f"regenerate: dsroll rbac {env} > deploy/rbac/{env}.yaml"


def test_the_deployer_may_run_every_command_and_the_reviewer_only_reads() -> None:
    for command, needed in COMMANDS.items():
        assert needed <= GRANTS["deployer"], command
    for command in ("status", "history", "nodes", "diff"):
        assert COMMANDS[command] <= GRANTS["reviewer"], command
    assert not {a.verb for a in GRANTS["reviewer"]} & WRITES
    assert COMMANDS["render"] == frozenset()


def test_a_restart_needs_what_a_rollout_needs_minus_applying() -> None:
    """It writes its state (an annotation, or under applier: external its ConfigMap) and deletes
    pods; it creates, deletes, relabels and backs up nothing (``create daemonsets`` is the live
    diff's dry-run of a variant not deployed yet)."""
    restart, rollout = COMMANDS["restart"], COMMANDS["rollout"]
    assert restart < rollout
    writes = {(a.verb, a.resource) for a in restart if a.verb in WRITES}
    assert writes == {
        ("patch", "daemonsets"), ("create", "daemonsets"), ("delete", "pods"), ("create", "events"),
        ("create", "leases"), ("update", "leases"), ("delete", "leases"), ("create", "configmaps"),
        ("patch", "configmaps"),
    }  # fmt: skip
    assert {(a.verb, a.resource) for a in rollout - restart if a.verb in WRITES} == {
        ("delete", "daemonsets"), ("patch", "controllerrevisions"), ("delete", "controllerrevisions"),
        ("patch", "pods"),
    }  # fmt: skip


def test_the_gates_reads_are_granted_but_never_refused_by_the_preflight() -> None:
    """Events and a node without a new pod only sharpen a failure message: a deployer has
    them, and a caller without them still runs (the gate then names causes from the pod)."""
    reads = {Access("list", "", "events"), Access("get", "", "nodes", cluster_wide=True)}
    for command in ("rollout", "resume", "rollback", "restart"):
        assert permissions.OPTIONAL[command] == reads
        assert not reads & COMMANDS[command], command
    assert reads <= GRANTS["deployer"]
    kube = fake_kube({("list", "events", "a"), ("get", "nodes", None)})
    permissions.preflight(kube, "rollout", ["a"], warn=pytest.fail)  # not refused
    assert ("get", "", "nodes", None) not in kube.asked


def test_every_kind_the_client_speaks_is_in_the_table() -> None:
    """A new resource in kube/resources.py needs a line in permissions.py (the review kind asks, it needs none)."""
    tree = ast.parse((ROOT / "dsroll/kube/resources.py").read_text())
    plurals = {
        node.value.elts[1].value  # prefix, plural = "…", "daemonsets"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2
        and isinstance(node.value.elts[1], ast.Constant)
    }  # fmt: skip
    granted = {a.resource for a in GRANTS["deployer"]}
    assert plurals - granted == {"selfsubjectaccessreviews", "selfsubjectrulesreviews"}


def test_rules_group_verbs_per_resource_in_kubectls_order() -> None:
    found = permissions.rules(COMMANDS["pause"], cluster_wide=False)
    assert found == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]},
    ]
    assert permissions.rules(COMMANDS["nodes"], cluster_wide=True) == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}
    ]


EVERY_ACCESS = {access for needed in COMMANDS.values() for access in needed}


def fake_kube(denied: set[tuple[str, str, str | None]], fail: bool = False, incomplete: bool = False) -> Any:
    """An API server whose rules grant every access but ``denied`` ((verb, resource, namespace));
    an ``incomplete`` rules review lists nothing, as with an authorizer that cannot list rules."""
    asked: list[tuple[str, str, str, str | None]] = []
    reviewed: list[str] = []

    def allowed(verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        if fail:
            raise ClusterError("RBAC denied: cannot create selfsubjectaccessreviews")
        asked.append((verb, group, resource, namespace))
        return (verb, resource, namespace) not in denied

    def rules(namespace: str) -> tuple[list[dict[str, Any]], bool]:
        if fail:
            raise ClusterError("RBAC denied: cannot create selfsubjectrulesreviews")
        reviewed.append(namespace)
        listed = [
            {"verbs": [a.verb], "apiGroups": [a.group], "resources": [a.resource]}
            for a in EVERY_ACCESS
            if (a.verb, a.resource, namespace) not in denied
        ]
        return ([] if incomplete else listed), incomplete

    return SimpleNamespace(
        access=SimpleNamespace(allowed=allowed),
        access_rules=SimpleNamespace(rules=rules),
        asked=asked,
        reviewed=reviewed,
    )


def test_the_preflight_reviews_each_namespace_once_and_asks_only_cluster_wide_access() -> None:
    kube = fake_kube(set())
    permissions.preflight(kube, "status", ["b", "a", "b"], warn=pytest.fail)
    assert sorted(kube.reviewed) == ["a", "b"]
    assert sorted(kube.asked) == sorted(
        (a.verb, a.group, a.resource, None) for a in COMMANDS["status"] if a.cluster_wide
    )
    kube = fake_kube(set())
    permissions.preflight(kube, "nodes", ["a"], warn=pytest.fail)
    assert (kube.reviewed, kube.asked) == ([], [("list", "", "nodes", None)])


def test_an_incomplete_rules_review_is_completed_access_by_access() -> None:
    kube = fake_kube({("patch", "daemonsets", "a")}, incomplete=True)
    with pytest.raises(DsrollError, match=r"cannot patch daemonsets\.apps in namespace a"):
        permissions.preflight(kube, "rollout", ["a"], warn=pytest.fail)
    assert {(verb, resource) for verb, _, resource, ns in kube.asked if ns == "a"} == {
        (a.verb, a.resource) for a in COMMANDS["rollout"] if not a.cluster_wide
    }


@pytest.mark.parametrize(
    ("rule", "allowed"),
    [
        ({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["daemonsets"]}, True),
        ({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, True),
        ({"verbs": ["get", "patch"], "apiGroups": ["apps"], "resources": ["*"]}, True),
        ({"verbs": ["patch"], "apiGroups": [""], "resources": ["daemonsets"]}, False),
        ({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["daemonsets"]}, False),
        ({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["daemonsets/status"]}, False),
        ({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": ["one"]}, False),
    ],
)
def test_a_rule_grants_an_access_as_rbac_reads_it(rule: dict[str, Any], allowed: bool) -> None:
    assert permissions.granted([rule], Access("patch", "apps", "daemonsets")) is allowed


def test_a_denial_names_the_verb_the_resource_and_the_command() -> None:
    kube = fake_kube({("patch", "daemonsets", "logging")})
    with pytest.raises(DsrollError) as caught:
        permissions.preflight(kube, "rollout", ["logging", "monitoring"], warn=pytest.fail)
    assert caught.value.exit_code == 2
    assert str(caught.value) == "RBAC preflight: cannot patch daemonsets.apps in namespace logging (needed by rollout)"


def test_several_denials_are_one_line() -> None:
    kube = fake_kube({("list", "nodes", None), ("create", "events", "a"), ("list", "daemonsets", None)})
    with pytest.raises(DsrollError) as caught:
        permissions.preflight(kube, "rollback", ["a"], warn=pytest.fail)
    assert str(caught.value) == (
        "RBAC preflight: cannot list nodes (cluster-scoped) (needed by rollback); also denied: "
        "list daemonsets.apps in all namespaces; create events in namespace a"
    )


def test_a_server_that_cannot_be_asked_is_warned_about_not_refused() -> None:
    warnings: list[str] = []
    permissions.preflight(fake_kube(set(), fail=True), "rollout", ["a"], warn=warnings.append)
    assert warnings and warnings[0].startswith("RBAC preflight skipped: cannot ask the API server")


def test_cluster_wide_access_is_asked_while_the_rules_are_reviewed() -> None:
    """One round trip fewer: the rules review cannot finish here until a cluster-wide
    question has been asked, which a preflight asking them one after the other never does."""
    kube = fake_kube(set())
    asked_one = threading.Event()
    ask, review = kube.access.allowed, kube.access_rules.rules

    def allowed(verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        asked_one.set()
        return ask(verb, group, resource, namespace)

    def rules(namespace: str) -> tuple[list[dict[str, Any]], bool]:
        assert asked_one.wait(5), "the rules review came first, alone"
        return review(namespace)

    kube.access.allowed, kube.access_rules.rules = allowed, rules
    permissions.preflight(kube, "rollout", ["a"], warn=pytest.fail)
    assert kube.reviewed == ["a"] and kube.asked


def test_the_preflight_beside_reads_is_asked_while_they_run() -> None:
    kube = fake_kube(set())
    reading = threading.Event()
    review = kube.access_rules.rules

    def rules(namespace: str) -> tuple[list[dict[str, Any]], bool]:
        assert reading.wait(5), "the preflight waited for the reads"
        return review(namespace)

    kube.access_rules.rules = rules
    with permissions.preflight_beside(kube, "rollout", ["a"], warn=pytest.fail) as allowed:
        reading.set()
        allowed()
    assert kube.reviewed == ["a"]


def test_the_preflights_refusal_comes_first_whatever_the_reads_raised() -> None:
    denied = fake_kube({("delete", "pods", "a")})
    refused = pytest.raises(DsrollError, match=r"^RBAC preflight: cannot delete pods in namespace a")
    with refused as caught, permissions.preflight_beside(denied, "rollout", ["a"], warn=pytest.fail):
        raise InputError("uncommitted changes to what dev.yaml renders from")
    assert caught.value.exit_code == 2 and caught.value.__cause__ is None
    allowed_all = fake_kube(set())
    own = pytest.raises(InputError, match="uncommitted")  # allowed: the reads' own error
    with own, permissions.preflight_beside(allowed_all, "rollout", ["a"], warn=pytest.fail):
        raise InputError("uncommitted changes to what dev.yaml renders from")


def test_a_block_beside_the_preflight_cannot_leave_past_a_refusal() -> None:
    denied = fake_kube({("delete", "pods", "a")})
    with (
        pytest.raises(DsrollError, match="cannot delete pods"),
        permissions.preflight_beside(denied, "rollout", ["a"], warn=pytest.fail),
    ):
        pass  # read everything, asked nothing: leaving waits for the verdict
    written: list[str] = []
    with (
        pytest.raises(DsrollError, match="cannot delete pods"),
        permissions.preflight_beside(
            fake_kube({("delete", "pods", "a")}), "rollout", ["a"], warn=pytest.fail
        ) as allowed,
    ):
        allowed()
        written.append("applied")
    assert written == []


def test_a_live_diff_without_patch_falls_back() -> None:
    assert permissions.dry_run_denied(fake_kube(set()), ["a"], warn=pytest.fail) == []
    found = permissions.dry_run_denied(fake_kube({("patch", "daemonsets", "a")}), ["a"], warn=pytest.fail)
    assert [str(c) for c in found] == ["patch daemonsets.apps in namespace a"]


def test_the_client_side_comparison_keeps_only_what_the_render_sets() -> None:
    live = {
        "spec": {
            "revisionHistoryLimit": 10,
            "template": {"spec": {"containers": [{"name": "a", "image": "x:1", "terminationMessagePath": "/dev"}]}},
        }
    }
    rendered = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:2"}]}}}}
    assert within(live, rendered) == {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}}


def test_access_describes_itself_like_kubectl() -> None:
    assert Access("list", "apps", "daemonsets", cluster_wide=True).qualified == "daemonsets.apps"
    assert str(permissions.Check(Access("get", "", "pods"), "ns")) == "get pods in namespace ns"
