"""A missing namespace is caught before anything is created: the decision (``dsroll.namespaces``),
the environment key ``cluster.createNamespace``, the permission it asks for, and the run that
creates the namespace first."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from dsroll import permissions, workflow
from dsroll.config import parse_environment
from dsroll.diff import Change, against_live
from dsroll.errors import ClusterError, DsrollError, InputError
from dsroll.gitsource import locate
from dsroll.namespaces import (
    NamespaceAction,
    NamespaceStatus,
    Presence,
    assess,
    namespace_manifest,
    presence,
    refusal,
    to_create,
    wanted,
)
from dsroll.plan import Plan
from dsroll.planfile import plan_from_json, plan_to_json
from dsroll.render import load_environment, render_environment
from dsroll.rollout.outcome import RunOptions
from dsroll.rollout.reporter import Reporter
from dsroll.rollout.run import execute
from tests.conftest import ENV

MISSING, ACTIVE, TERMINATING = Presence.MISSING, Presence.ACTIVE, Presence.TERMINATING

# --- presence and the decision -----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, MISSING),
        ({"metadata": {"name": "a"}, "status": {"phase": "Active"}}, ACTIVE),
        ({"metadata": {"name": "a"}}, ACTIVE),
        ({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}, TERMINATING),
        ({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {}}, TERMINATING),
    ],
)
def test_presence_reads_a_namespace_get(answer: dict[str, Any] | None, expected: Presence) -> None:
    assert presence(answer) is expected


def test_wanted_groups_workloads_by_namespace_in_name_order() -> None:
    pairs = [("b", "x"), ("a", "y"), ("b", "w"), ("b", "x")]
    assert wanted(pairs) == {"a": ("y",), "b": ("w", "x")}


@pytest.mark.parametrize(
    ("seen", "create", "action"),
    [
        (ACTIVE, False, NamespaceAction.NONE),
        (ACTIVE, True, NamespaceAction.NONE),
        (MISSING, False, NamespaceAction.REFUSE),
        (MISSING, True, NamespaceAction.CREATE),
        (TERMINATING, False, NamespaceAction.REFUSE),
        (TERMINATING, True, NamespaceAction.REFUSE),  # cannot be created again until it is gone
    ],
)
def test_a_rollout_creates_only_a_missing_namespace_and_only_when_asked(
    seen: Presence, create: bool, action: NamespaceAction
) -> None:
    (status,) = assess({"ceo": seen}, {"ceo": ("agent",)}, create=create)
    assert (status.name, status.presence, status.action, status.workloads) == ("ceo", seen, action, ("agent",))


def test_every_wanted_namespace_is_assessed_on_its_own() -> None:
    found = assess({"b": MISSING, "a": ACTIVE, "c": MISSING}, {"c": ("z",), "a": ("x",), "b": ("y",)}, create=True)
    assert [(s.name, s.action) for s in found] == [
        ("a", NamespaceAction.NONE),
        ("b", NamespaceAction.CREATE),
        ("c", NamespaceAction.CREATE),
    ]
    assert to_create(found) == ("b", "c")


def test_nothing_refused_means_no_refusal() -> None:
    assert refusal(assess({"a": ACTIVE, "b": MISSING}, {"a": (), "b": ()}, create=True), "e.yaml") is None


def test_a_missing_namespace_is_refused_with_the_command_that_creates_it() -> None:
    found = assess({"ceo": MISSING, "ok": ACTIVE}, {"ceo": ("agent",), "ok": ("other",)}, create=False)
    assert refusal(found, "environments/prod.yaml") == (
        "namespace ceo does not exist: create it with 'kubectl create namespace ceo', or set "
        "cluster.createNamespace: true in environments/prod.yaml to have rollout create it"
    )


def test_several_missing_namespaces_are_one_line() -> None:
    found = assess({"a": MISSING, "b": MISSING}, {"a": (), "b": ()}, create=False)
    message = refusal(found, "e.yaml")
    assert message is not None and "\n" not in message
    assert message.startswith("namespaces a, b do not exist: create them with ")
    assert "'kubectl create namespace a && kubectl create namespace b'" in message


def test_a_namespace_being_deleted_is_refused_first_with_how_to_wait() -> None:
    found = assess({"a": MISSING, "b": TERMINATING}, {"a": (), "b": ()}, create=True)
    assert refusal(found, "e.yaml") == (
        "namespace b is being deleted (Terminating) and cannot take new objects: wait until it is gone "
        "(kubectl wait --for=delete namespace/b), then run again"
    )


def test_plan_lines_say_what_a_rollout_would_do() -> None:
    create = NamespaceStatus("a", MISSING, NamespaceAction.CREATE)
    refuse = NamespaceStatus("b", MISSING, NamespaceAction.REFUSE)
    going = NamespaceStatus("c", TERMINATING, NamespaceAction.REFUSE)
    assert create.describe() == "namespace a: does not exist: rollout creates it (cluster.createNamespace: true)"
    assert refuse.describe() == (
        "namespace b: does not exist: rollout refuses until it does "
        "(kubectl create namespace b, or cluster.createNamespace: true)"
    )
    assert going.describe().startswith("namespace c: being deleted (Terminating): rollout refuses")


def test_a_created_namespace_is_labelled_as_dsrolls() -> None:
    assert namespace_manifest("ceo", "prod") == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "ceo",
            "labels": {"app.kubernetes.io/managed-by": "dsroll", "dsroll.io/environment": "prod"},
        },
    }


@pytest.mark.parametrize(
    "status",
    [
        NamespaceStatus("a", ACTIVE, NamespaceAction.NONE, ("w",)),
        NamespaceStatus("b", MISSING, NamespaceAction.CREATE, ("w", "x")),
        NamespaceStatus("c", MISSING, NamespaceAction.REFUSE),
        NamespaceStatus("d", TERMINATING, NamespaceAction.REFUSE),
    ],
)
def test_a_status_survives_its_json(status: NamespaceStatus) -> None:
    data = json.loads(json.dumps(status.to_json()))
    assert data["exists"] is (status.presence is not MISSING)
    assert NamespaceStatus.from_json(data) == status


def test_a_saved_plan_keeps_its_namespaces() -> None:
    plan = Plan("dev", "ctx", "https://x", None, (), (), (NamespaceStatus("ceo", MISSING, NamespaceAction.CREATE),))
    assert plan.has_changes  # creating the namespace is a change, even with no variant to roll
    assert plan_from_json(json.dumps(plan_to_json(plan)), "p.json") == plan
    older = plan_to_json(plan)
    del older["namespaces"]  # a plan saved before namespaces were recorded still loads
    assert plan_from_json(json.dumps(older), "p.json").namespaces == ()


# --- the environment key -------------------------------------------------------------------


def test_create_namespace_defaults_to_false_and_reads_a_boolean() -> None:
    assert parse_environment(ENV, "e.yaml").create_namespace is False
    text = ENV.replace("cluster: {namespace: agents}", "cluster: {namespace: agents, createNamespace: true}")
    assert parse_environment(text, "e.yaml").create_namespace is True


def test_create_namespace_must_be_a_boolean_at_its_line() -> None:
    text = ENV.replace("cluster: {namespace: agents}", 'cluster:\n  namespace: agents\n  createNamespace: "yes"')
    with pytest.raises(InputError) as caught:
        parse_environment(text, "e.yaml")
    assert str(caught.value).startswith("e.yaml:6: ") and "createNamespace" in str(caught.value)


def test_each_namespace_is_found_at_the_line_that_names_it() -> None:
    other = "  - name: other\n    template: templates/agent.yaml.j2\n    namespace: logging\n"
    text = ENV + other + "    values: {image: x, tag: '1'}\n"
    env = parse_environment(text, "e.yaml")
    assert dict(env.namespace_lines) == {"agents": 4, "logging": 19}
    assert dict(parse_environment(text, "e.yaml", namespace_override="ns").namespace_lines) == {"logging": 19}


# --- RBAC ----------------------------------------------------------------------------------


def test_only_the_deployer_of_an_environment_that_asks_may_create_namespaces() -> None:
    create = permissions.Access("create", "", "namespaces", cluster_wide=True)
    assert create not in permissions.grants("deployer")
    assert create in permissions.grants("deployer", create_namespace=True)
    assert create not in permissions.grants("reviewer", create_namespace=True)
    for command in permissions.COMMANDS.values():  # asked for only when a namespace is about to be created
        assert create not in command


def test_no_role_may_ever_delete_a_namespace() -> None:
    for role in permissions.ROLES:
        for create_namespace in (False, True):
            for access in permissions.grants(role, create_namespace=create_namespace):
                assert (access.resource, access.verb) != ("namespaces", "delete")


def test_the_rbac_file_grants_create_namespaces_with_create_namespace(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def namespace_verbs(text: str) -> dict[str, list[str]]:
        found = {}
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "ClusterRole":
                rule = next(r for r in doc["rules"] if r["resources"] == ["namespaces"])
                found[doc["metadata"]["labels"]["dsroll.io/role"]] = rule["verbs"]
        return found

    monkeypatch.chdir(make_project())
    assert namespace_verbs(workflow.rbac("test", None)) == {"deployer": ["get"], "reviewer": ["get"]}
    monkeypatch.chdir(make_project(ENV.replace("{namespace: agents}", "{namespace: agents, createNamespace: true}")))
    assert namespace_verbs(workflow.rbac("test", None)) == {"deployer": ["get", "create"], "reviewer": ["get"]}


# --- before a rollout writes anything ------------------------------------------------------


def fake_kube(
    namespaces: dict[str, dict[str, Any] | Exception | None], denied: set[tuple[str, str]] = frozenset()
) -> Any:
    """An API server holding ``namespaces`` (None: 404; an exception: what GET raises) that
    grants every access but ``denied`` ((verb, resource), cluster-wide)."""
    created: list[dict[str, Any]] = []
    asked: list[tuple[str, str]] = []

    def get(name: str) -> dict[str, Any] | None:
        answer = namespaces[name]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create(manifest: dict[str, Any]) -> bool:
        created.append(manifest)
        kube.writes += 1
        return True

    def allowed(verb: str, group: str, resource: str, namespace: str | None = None) -> bool:
        asked.append((verb, resource))
        return (verb, resource) not in denied

    kube = SimpleNamespace(
        namespaces=SimpleNamespace(get=get, create=create),
        access=SimpleNamespace(allowed=allowed),
        access_rules=SimpleNamespace(rules=lambda namespace: ([], True)),
        created=created,
        asked=asked,
        writes=0,
        requests=0,
    )
    return kube


def rendered(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, env: str = ENV) -> Any:
    monkeypatch.chdir(make_project(env))
    project = locate("test")
    return render_environment(load_environment(project.source, project.env_path, None), project.source)


CREATING = ENV.replace("{namespace: agents}", "{namespace: agents, createNamespace: true}")
ACTIVE_NS = {"metadata": {"name": "agents"}, "status": {"phase": "Active"}}


def test_a_missing_namespace_refuses_the_rollout_at_its_line(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = rendered(make_project, monkeypatch)
    kube = fake_kube({"agents": None})
    with pytest.raises(InputError) as caught:
        workflow.check_namespaces(kube, result.env, result.variants, "rollout", dry_run=False)
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        "environments/test.yaml:4: namespace agents does not exist: create it with 'kubectl create namespace "
        "agents', or set cluster.createNamespace: true in environments/test.yaml to have rollout create it; "
        "nothing was applied"
    )
    assert kube.created == [] and kube.writes == 0


def test_a_forbidden_namespace_is_an_rbac_error_not_a_missing_namespace(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = rendered(
        make_project, monkeypatch, ENV.replace("{namespace: agents}", "{namespace: agents, createNamespace: true}")
    )
    forbidden = ClusterError(
        'RBAC denied: namespaces "agents" is forbidden: User "ci" cannot get resource "namespaces"'
    )
    kube = fake_kube({"agents": forbidden})
    with pytest.raises(ClusterError, match='RBAC denied: namespaces "agents" is forbidden') as caught:
        workflow.check_namespaces(kube, result.env, result.variants, "rollout", dry_run=False)
    assert caught.value.exit_code == 2
    assert kube.created == []


def test_with_create_namespace_the_caller_must_be_allowed_to_create_it(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = rendered(make_project, monkeypatch, CREATING)
    kube = fake_kube({"agents": None})
    found = workflow.check_namespaces(kube, result.env, result.variants, "rollout", dry_run=False)
    assert [(s.name, s.action) for s in found] == [("agents", NamespaceAction.CREATE)]
    assert kube.asked == [("create", "namespaces")]
    denied = fake_kube({"agents": None}, denied={("create", "namespaces")})
    with pytest.raises(DsrollError) as caught:
        workflow.check_namespaces(denied, result.env, result.variants, "rollout", dry_run=False)
    assert str(caught.value) == "RBAC preflight: cannot create namespaces (cluster-scoped) (needed by rollout)"
    dry = fake_kube({"agents": None}, denied={("create", "namespaces")})
    workflow.check_namespaces(dry, result.env, result.variants, "rollout", dry_run=True)  # a dry run creates nothing
    assert dry.asked == []
    there = fake_kube({"agents": ACTIVE_NS}, denied={("create", "namespaces")})
    workflow.check_namespaces(there, result.env, result.variants, "rollout", dry_run=False)
    assert there.asked == []  # nothing to create: the permission is not needed


def test_a_run_creates_the_planned_namespaces_first_labelled() -> None:
    statuses = (
        NamespaceStatus("a", ACTIVE, NamespaceAction.NONE),
        NamespaceStatus("ceo", MISSING, NamespaceAction.CREATE),
    )
    kube = fake_kube({})
    summary = execute(
        kube, Plan("prod", "ctx", "https://x", None, (), (), statuses), RunOptions(who="me"),
        Reporter(None, json_lines=False, tty=False, quiet=True),
    )  # fmt: skip
    assert kube.created == [namespace_manifest("ceo", "prod")]
    assert summary.namespaces_created == ["ceo"] and summary.to_json()["namespacesCreated"] == ["ceo"]
    assert summary.exit_code == 0


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (None, "does not exist yet"),
        ({"metadata": {"name": "agents"}, "status": {"phase": "Terminating"}}, "is being deleted"),
    ],
)
def test_a_live_diff_into_a_namespace_that_takes_no_new_object_shows_the_render(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any] | None, state: str
) -> None:
    """The server refuses even a dry-run of a new object there (403 while Terminating): no dry-run is sent."""
    result = rendered(make_project, monkeypatch)

    def apply(manifest: Any, *, dry_run: bool) -> Any:
        raise AssertionError("a dry-run into a namespace that takes no new object")

    kube = SimpleNamespace(
        namespaces=SimpleNamespace(get=lambda name: answer),
        daemonsets=SimpleNamespace(apply=apply, list=lambda selector: []),
        context="ctx",
        server="https://x",
    )
    report = against_live(result.env, result.variants, kube, {v.key: None for v in result.variants})
    assert {(v.change, v.note) for v in report.variants} == {
        (Change.ADDED, f"namespace agents {state}: shown as rendered, not server-normalised")
    }
