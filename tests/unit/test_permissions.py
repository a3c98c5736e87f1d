"""One permission table: the shipped RBAC is made from it, and the preflight asks for it."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsroll import permissions, workflow
from dsroll.diff import within
from dsroll.errors import ClusterError, DsrollError
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
    assert plurals - granted == {"selfsubjectaccessreviews"}


def test_rules_group_verbs_per_resource_in_kubectls_order() -> None:
    found = permissions.rules(COMMANDS["pause"], cluster_wide=False)
    assert found == [
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]},
    ]
    assert permissions.rules(COMMANDS["nodes"], cluster_wide=True) == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}
    ]


def fake_kube(denied: set[tuple[str, str, str | None]], fail: bool = False) -> Any:
    asked: list[tuple[str, str, str, str | None]] = []

    def allowed(verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        if fail:
            raise ClusterError("RBAC denied: cannot create selfsubjectaccessreviews")
        asked.append((verb, group, resource, namespace))
        return (verb, resource, namespace) not in denied

    return SimpleNamespace(access=SimpleNamespace(allowed=allowed), asked=asked)


def test_the_preflight_asks_once_per_access_and_namespace() -> None:
    kube = fake_kube(set())
    permissions.preflight(kube, "status", ["b", "a"], warn=pytest.fail)
    assert sorted(kube.asked) == sorted(
        (a.verb, a.group, a.resource, ns) for a in COMMANDS["status"] for ns in ("a", "b")
    )
    kube = fake_kube(set())
    permissions.preflight(kube, "nodes", ["a"], warn=pytest.fail)
    assert kube.asked == [("list", "", "nodes", None)]


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
