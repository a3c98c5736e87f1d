"""The environment file's JSON Schema: generated from the model, shipped unchanged, and as strict as
a schema can be — it accepts every example and refuses every bad file the validator's tests use,
but for the rules that span several entries (listed here), which stay with the validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from dsroll import scaffold
from dsroll.cli import app
from dsroll.schema import environment_schema, schema_text, shipped_text
from tests.conftest import ENV
from tests.unit import test_config

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(environment_schema())

# The bad cases of test_config.py that a schema cannot express: names that must exist
# elsewhere in the file, uniqueness, the default class's uniqueness, growing steps, and
# one operator's rule about another key.
VALIDATOR_ONLY = {
    "duplicate hardware class 'gpu'",
    "two default",
    "unknown class 'tpu'",
    "classValues names class 'tpu'",
    "takes no values",
    "pods cannot move between namespaces",
    "must grow",
    'the last step must be "100%"',
}


def _cases(test: Any) -> list[tuple[str, str]]:
    """(environment text, message) of a parametrised bad-input test of test_config.py."""
    names, values = test.pytestmark[0].args
    if names == ("edit", "needle", "message"):
        return [(ENV.replace(*edit), message) for edit, _needle, message in values]
    return [(ENV + f"rollout:\n  {rollout}\n", message) for rollout, message in values]


BAD = [
    *_cases(test_config.test_bad_input_names_line_and_cause),
    *_cases(test_config.test_bad_rollout_policy),
    (ENV.replace("    template: templates/agent.yaml.j2\n", ""), "required key missing"),
    (ENV + 'ignoreDifferences: ["spec/template"]\n', "is not a JSON pointer"),
    (ENV.replace("- name: gpu\n    nodeSelector", "- name: gpu\n    default: true\n    nodeSelector"), "default+sel"),
    (ENV.replace("    default: true\n", ""), "class without selector"),
]
VALIDATOR_ONLY |= {"default+sel", "class without selector"}


def errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(yaml.safe_load(text))]


def test_the_schema_is_draft_2020_12_and_closed() -> None:
    schema = environment_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for name, definition in [("root", schema), *schema["$defs"].items()]:
        assert definition["additionalProperties"] is False, name
        for prop, node in definition["properties"].items():
            assert node.get("description"), f"{name}.{prop} has no description"


def test_the_shipped_file_is_what_dsroll_schema_prints() -> None:
    printed = CliRunner().invoke(app, ["schema"])
    assert printed.exit_code == 0
    assert printed.stdout == schema_text()
    assert shipped_text() == schema_text(), "regenerate: dsroll schema > dsroll/schema/environment.schema.json"


@pytest.mark.parametrize("path", sorted((ROOT / "environments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_environment_is_valid(path: Path) -> None:
    assert errors(path.read_text()) == []


def test_the_environments_init_writes_are_valid() -> None:
    nodes = {"a": {"nvidia.com/gpu.present": "true"}, "b": {"kubernetes.io/arch": "arm64"}, "c": {}}
    for classes in (scaffold.EXAMPLE_CLASSES, scaffold.propose_classes(nodes)):
        assert errors(scaffold.environment_text("dev", "agents", classes, "ctx")) == []


def test_the_unit_tests_valid_environment_is_valid() -> None:
    assert errors(ENV) == []


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_environments_are_refused_unless_only_the_validator_can_tell(text: str, message: str) -> None:
    found = errors(text)
    if message in VALIDATOR_ONLY:
        assert found == [], f"{message!r} is caught by the schema: drop it from VALIDATOR_ONLY"
    else:
        assert found, f"the schema accepts a file the validator refuses with {message!r}"


def test_defaults_are_the_models() -> None:
    schema = environment_schema()
    rollout = schema["properties"]["rollout"]["default"]
    assert rollout == {
        "steps": ["1", "10%", "50%", "100%"],
        "maxUnavailable": 1,
        "pause": "manual",
        "readyTimeout": "5m",
        "minReadySeconds": 0,
        "onFailure": "rollback",
        "unreadyNodes": "skip",
        "applier": "dsroll",
    }
    assert json.loads(schema_text()) == schema
