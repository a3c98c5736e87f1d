"""Secret-looking env values are masked in what diff and plan show, never in what is applied."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.masking import CHANGED, DEFAULT_MASK_ENV, MASK, compile_mask, mask_object, mask_pair
from dsroll.plan import Action, LiveFingerprint, Plan, Policy, VariantPlan
from dsroll.planfile import plan_to_json
from tests.conftest import ENV

runner = CliRunner()
DEFAULT = compile_mask(DEFAULT_MASK_ENV)

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
spec:
  selector:
    matchLabels: {app: "{{ workload.name }}"}
  template:
    metadata:
      labels: {app: "{{ workload.name }}"}
    spec:
      initContainers:
        - name: init
          image: example.com/init:1
          env:
            - {name: API_TOKEN, value: "{{ values.token }}"}
      containers:
        - name: agent
          image: "{{ values.image }}:{{ values.tag }}"
          env:
            - {name: DB_PASSWORD, value: "{{ values.password }}"}
            - {name: LOG_LEVEL, value: "{{ values.level }}"}
            - name: FROM_SECRET
              valueFrom: {secretKeyRef: {name: agent, key: secret}}
"""


def daemonset(**env: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "agents"},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "init", "env": [{"name": "API_TOKEN", "value": "tok-1"}]}],
                    "containers": [{"name": "agent", "env": [{"name": k, "value": v} for k, v in env.items()]}],
                }
            }
        },
    }


def values(obj: Any) -> dict[str, Any]:
    pod = obj["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for c in pod["initContainers"] + pod["containers"] for e in c.get("env") or []}


# --- the pure masking ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["DB_PASSWORD", "password", "CLIENT_SECRET", "GITHUB_TOKEN", "AWS_CREDENTIALS", "API_KEY", "apikey", "PRIVATE_KEY"],
)
def test_the_default_pattern_masks_usual_credential_names(name: str) -> None:
    masked, count = mask_object(daemonset(**{name: "s3cr3t"}), DEFAULT)
    assert values(masked)[name] == MASK and count == 2  # and API_TOKEN of the init container


@pytest.mark.parametrize("name", ["LOG_LEVEL", "HOSTNAME", "NODE_NAME", "KEYBOARD"])
def test_the_default_pattern_leaves_ordinary_names_alone(name: str) -> None:
    masked, _ = mask_object(daemonset(**{name: "info"}), DEFAULT)
    assert values(masked)[name] == "info"


def test_masking_copies_and_leaves_the_original_untouched() -> None:
    original = daemonset(DB_PASSWORD="s3cr3t")
    masked, _ = mask_object(original, DEFAULT)
    assert values(original)["DB_PASSWORD"] == "s3cr3t" and values(masked)["DB_PASSWORD"] == MASK


def test_a_changed_value_is_marked_on_the_new_side_only() -> None:
    old, new, count = mask_pair(daemonset(DB_PASSWORD="a", X="1"), daemonset(DB_PASSWORD="b", X="2"), DEFAULT)
    assert (values(old)["DB_PASSWORD"], values(new)["DB_PASSWORD"]) == (MASK, CHANGED)
    assert (values(old)["API_TOKEN"], values(new)["API_TOKEN"]) == (MASK, MASK)
    assert (values(old)["X"], values(new)["X"]) == ("1", "2") and count == 2


def test_no_pattern_masks_nothing() -> None:
    assert compile_mask("") is None
    old, new = daemonset(DB_PASSWORD="a"), daemonset(DB_PASSWORD="b")
    assert mask_pair(old, new, None) == (old, new, 0)


def test_objects_without_a_pod_template_pass() -> None:
    assert mask_pair(None, {"kind": "DaemonSet"}, DEFAULT) == (None, {"kind": "DaemonSet"}, 0)


# --- diff --against git ----------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(argv, cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def env_text(password: str, *, level: str = "info", extra: str = "") -> str:
    values = f'{{image: example.com/agent, tag: "1.0", password: "{password}", token: "tok-1", level: {level}}}'
    return ENV.replace('values: {image: example.com/agent, tag: "1.0"}', f"values: {values}") + extra


@pytest.fixture
def repo(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(env=env_text("old-pass-1"), templates={"agent.yaml.j2": TEMPLATE})
    git(root, "init", "-q", "-b", "main")
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first render")
    return root


def set_env(root: Path, text: str) -> None:
    (root / "environments" / "test.yaml").write_text(text)


def test_a_changed_secret_is_detected_but_not_shown(repo: Path) -> None:
    set_env(repo, env_text("new-pass-2"))
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 1, result.output
    assert "old-pass-1" not in result.stdout and "new-pass-2" not in result.stdout and "tok-1" not in result.stdout
    assert "-          value: '***'" in result.stdout and "+          value: '*** (changed)'" in result.stdout
    assert "3 changed" in result.stdout and "env value(s) masked (--show-secrets shows them)" in result.stdout


def test_json_masks_the_diff_text_and_counts(repo: Path) -> None:
    set_env(repo, env_text("new-pass-2"))
    result = runner.invoke(app, ["diff", "test", "--against", "git", "-o", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert "pass-" not in result.stdout and "tok-1" not in result.stdout
    assert all(v["change"] == "pod-template" and v["maskedValues"] == 2 for v in report["variants"])
    assert report["summary"]["maskedValues"] == 6


def test_show_secrets_shows_them(repo: Path) -> None:
    set_env(repo, env_text("new-pass-2"))
    result = runner.invoke(app, ["diff", "test", "--against", "git", "--show-secrets", "-o", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert "old-pass-1" in report["variants"][0]["diff"] and "new-pass-2" in report["variants"][0]["diff"]
    assert report["summary"]["maskedValues"] == 0


def test_unmasked_values_keep_showing_around_masked_ones(repo: Path) -> None:
    set_env(repo, env_text("old-pass-1", level="debug"))
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 1
    assert "-          value: info" in result.stdout and "+          value: debug" in result.stdout
    assert "(changed)" not in result.stdout and "old-pass-1" not in result.stdout


def test_mask_env_picks_the_names(repo: Path) -> None:
    set_env(repo, env_text("new-pass-2", level="debug", extra='maskEnv: "^LOG_"\n'))
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 1
    assert "new-pass-2" in result.stdout and "debug" not in result.stdout and "*** (changed)" in result.stdout


def test_an_empty_mask_env_masks_nothing(repo: Path) -> None:
    set_env(repo, env_text("new-pass-2", extra='maskEnv: ""\n'))
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 1 and "new-pass-2" in result.stdout and "***" not in result.stdout


def test_an_invalid_mask_env_is_bad_input_with_its_line(repo: Path) -> None:
    text = env_text("old-pass-1", extra='maskEnv: "(pass"\n')
    set_env(repo, text)
    line = text.splitlines().index('maskEnv: "(pass"') + 1
    result = runner.invoke(app, ["diff", "test", "--against", "git"])
    assert result.exit_code == 2
    assert re.match(
        rf"error: environments/test\.yaml:{line}: maskEnv: '\(pass' is not a regular expression", result.stderr
    )


# --- plan: what is displayed, what is saved ----------------------------------------------


def a_plan() -> Plan:
    manifest = daemonset(DB_PASSWORD="s3cr3t")
    policy = Policy(("1", "100%"), 1, "0", "5m", 0, "rollback")
    variant = VariantPlan(
        "agents", "agent", "agent", "general", Action.UPDATE, "pod template changed: pods are replaced in steps",
        ("/spec/template/spec/containers/0/env/0/value",), policy, ("n1",), ("n1",), (), None,
        LiveFingerprint("uid", 1, "old", ("n1",)), manifest, applies=True,
    )  # fmt: skip
    return Plan("test", "ctx", "https://x", None, (variant,))


def test_the_displayed_plan_holds_no_env_value() -> None:
    shown = json.dumps(plan_to_json(a_plan(), manifests=False))
    assert "s3cr3t" not in shown and "tok-1" not in shown


def test_a_saved_plan_keeps_the_real_values_it_will_apply() -> None:
    saved = plan_to_json(a_plan())
    assert values(saved["variants"][0]["manifest"])["DB_PASSWORD"] == "s3cr3t"
