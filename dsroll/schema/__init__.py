"""The environment file's JSON Schema, made from the model that validates it (``config.EnvironmentSpec``).

Editors (yaml-language-server, through a ``# yaml-language-server: $schema=…`` modeline)
and CI linters check a file with it before dsroll runs. pydantic gives the shape (types,
required and unknown keys, enums); this module adds what the model's validators check one
field at a time and a schema can say: the step, duration and percentage syntax, DNS labels,
label keys, JSON pointers, bounds. It reuses the validators' own regular expressions, so
the two agree. What spans several entries (one default class, known class names, growing
steps, the last step 100%) stays with the validator: docs/environment.md lists it.

``environment.schema.json`` beside this file is ``dsroll schema``'s output, shipped in the
package; a unit test keeps it equal. Regenerate: ``dsroll schema > dsroll/schema/environment.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib.resources import files
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from dsroll import config, durations
from dsroll.config import (
    _LABEL_KEY,
    _PERCENT,
    _POINTER,
    _STEP,
    DNS_LABEL,
    EnvironmentSpec,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILE = "environment.schema.json"

_DNS = {"pattern": DNS_LABEL.pattern, "maxLength": 63}
_DURATION_TEXT = durations.PATTERN[1:-1]  # without its anchors, to combine with other spellings
_PAUSE = rf"^(?:manual|0|{_DURATION_TEXT})$"

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "EnvironmentSpec": {
        "apiVersion": "Always dsroll.io/v1alpha1.",
        "kind": "Always Environment.",
        "metadata": "The environment's name.",
        "cluster": "Which cluster (kube context), the default namespace, whether a rollout creates missing namespaces.",
        "renderedDir": "Where render writes the variants, relative to the project root (default rendered/<name>).",
        "hardwareClasses": "Named node selectors; a node belongs to the first class it matches, in this order.",
        "workloads": "The DaemonSets: one variant per (workload, hardware class).",
        "ignoreDifferences": "JSON pointers the live diff ignores, for every workload.",
        "rollout": "The rollout policy; a workload's rollout overrides it key by key.",
        "maskEnv": 'Regular expression: env values whose name matches show as *** in diffs ("" masks none).',
    },
    "Metadata": {"name": "The environment's name: a DNS label, used in labels and the default renderedDir."},
    "Cluster": {
        "context": "kubeconfig context (default: the current one; --context overrides).",
        "namespace": "Namespace of workloads that name none (default: default; -n overrides).",
        "createNamespace": (
            "A rollout creates a workload namespace that does not exist, labelled as dsroll's "
            "(default false: a missing namespace is refused before anything is created)."
        ),
    },
    "HardwareClassSpec": {
        "name": "The class's name: a DNS label, the suffix of its variants' names.",
        "nodeSelector": "Node labels that must all match (Kubernetes nodeSelector).",
        "matchExpressions": "Node selector requirements, ANDed with nodeSelector.",
        "default": "The class of every node no other class matches (at most one; no selector).",
        "values": "Template values for this class, merged over the workload's values.",
    },
    "MatchExpression": {
        "key": "The node label key.",
        "operator": "In, NotIn, Exists, DoesNotExist, Gt or Lt (Kubernetes semantics).",
        "values": "Values for In/NotIn (at least one), one integer for Gt/Lt, none for Exists/DoesNotExist.",
    },
    "RolloutPolicy": {
        "steps": 'Cumulative per variant: a node count ("1") or a percentage ("10%"); the last is "100%".',
        "maxUnavailable": "Nodes replaced at once inside a step: a count (at least 1) or a percentage.",
        "pause": "Between steps: manual (approve with resume), a duration (30s, 5m) or 0.",
        "readyTimeout": "Per node: the new pod must be Ready within this duration (more than 0).",
        "minReadySeconds": "The new pod must stay Ready this many seconds.",
        "onFailure": "What a failed health gate does: rollback, pause or abort (rollback pauses a restart).",
        "canaryNodeSelector": "Nodes with these labels go first.",
        "unreadyNodes": "A node not Ready when its turn comes: skip it (reported; a later rollout or resume"
        " does it), wait for it up to readyTimeout, or fail (onFailure applies).",
        "applier": "Who applies the spec: dsroll (default), or external (Argo CD, Flux, kubectl apply in CI"
        " apply the rendered files, which carry OnDelete; dsroll only replaces pods: docs/gitops.md).",
    },
    "WorkloadSpec": {
        "name": "The workload's name: a DNS label, the prefix of its variants' names.",
        "template": "The Jinja2 template, relative to the project root.",
        "namespace": "Where its variants live (default: cluster.namespace).",
        "classes": "The hardware classes it runs on (default: all), by name.",
        "values": "Template values.",
        "classValues": "Per class name: template values merged over values and the class's values.",
        "rollout": "Overrides of the environment's rollout policy for this workload.",
        "ignoreDifferences": "JSON pointers the live diff ignores for this workload.",
        "replaces": "Existing DaemonSets this workload takes over by orphan replacement.",
    },
    "ObjectRef": {
        "namespace": "The DaemonSet's namespace (the workload's own).",
        "name": "The DaemonSet's name.",
    },
}
DESCRIPTIONS["RolloutOverride"] = DESCRIPTIONS["RolloutPolicy"]

_ROLLOUT: dict[str, dict[str, Any]] = {
    "steps": {"array": {"minItems": 1}, "string": {"pattern": _STEP.pattern}, "integer": {"minimum": 1}},
    "maxUnavailable": {"integer": {"minimum": 1}, "string": {"pattern": _PERCENT.pattern}},
    "pause": {"string": {"pattern": _PAUSE}, "integer": {"enum": [0]}},
    "readyTimeout": {"string": {"pattern": durations.PATTERN}},
    "minReadySeconds": {"integer": {"minimum": 0}},
    "canaryNodeSelector": {"object": {"propertyNames": {"pattern": _LABEL_KEY.pattern}}},
}
CONSTRAINTS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "EnvironmentSpec": {
        "hardwareClasses": {"array": {"minItems": 1}},
        "ignoreDifferences": {"string": {"pattern": _POINTER.pattern}},
    },
    "Metadata": {"name": {"string": _DNS}},
    "Cluster": {"namespace": {"string": _DNS}},
    "HardwareClassSpec": {
        "name": {"string": _DNS},
        "nodeSelector": {"object": {"propertyNames": {"pattern": _LABEL_KEY.pattern}}},
    },
    "MatchExpression": {"key": {"string": {"pattern": _LABEL_KEY.pattern}}},
    "RolloutPolicy": _ROLLOUT,
    "RolloutOverride": _ROLLOUT,
    "WorkloadSpec": {
        "name": {"string": _DNS},
        "namespace": {"string": _DNS},
        "classes": {"string": _DNS},
        "classValues": {"object": {"propertyNames": _DNS}},
        "ignoreDifferences": {"string": {"pattern": _POINTER.pattern}},
    },
    "ObjectRef": {"namespace": {"string": _DNS}, "name": {"string": _DNS}},
}
"""Per model and field, what to add to each JSON type the field can take (strings inside
an array included): the single-field rules of the validators in ``config.py``."""


def _models() -> dict[str, type[BaseModel]]:
    return {
        name: obj
        for name, obj in vars(config).items()
        if isinstance(obj, type) and issubclass(obj, config._Model) and obj is not config._Model
    }


def _branches(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every typed sub-schema of a field: itself, its anyOf branches, array items, recursively."""
    for branch in node.get("anyOf", [node]):
        yield branch
        if isinstance(branch.get("items"), dict):
            yield from _branches(branch["items"])


def _walk(node: Any, visit: Callable[[dict[str, Any]], None]) -> None:
    """Visit every sub-schema (not the property-name maps that hold them)."""
    if isinstance(node, list):
        for item in node:
            _walk(item, visit)
    elif isinstance(node, dict):
        visit(node)
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _walk(sub, visit)
            elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "propertyNames"):
                _walk(value, visit)


def _tidy(node: dict[str, Any]) -> None:
    """pydantic's titles ("Nodeselector") say nothing; its defaults are replaced by the model's own;
    a lone ``allOf: [$ref]`` (older pydantic) is the ``$ref`` itself."""
    node.pop("title", None)
    node.pop("default", None)
    if len(node.get("allOf", [])) == 1 and "$ref" in node["allOf"][0]:
        node["$ref"] = node.pop("allOf")[0]["$ref"]


def _finish(name: str, definition: dict[str, Any], model: type[BaseModel]) -> None:
    """Descriptions, constraints and defaults of one model's fields."""
    by_alias = {field.alias or key: field for key, field in model.model_fields.items()}
    for prop, node in definition.get("properties", {}).items():
        if prop in DESCRIPTIONS.get(name, {}):
            node["description"] = DESCRIPTIONS[name][prop]
        for kind, extra in CONSTRAINTS.get(name, {}).get(prop, {}).items():
            for branch in _branches(node):
                if branch.get("type") == kind:
                    branch.update(extra)
        field = by_alias[prop]
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(by_alias=True, exclude_none=True)
            if default is not None:
                node["default"] = to_jsonable_python(default)


def environment_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an environment file."""
    schema = EnvironmentSpec.model_json_schema(by_alias=True)
    _walk(schema, _tidy)
    models = _models()
    for name, definition in schema.get("$defs", {}).items():
        _finish(name, definition, models[name])
    _finish("EnvironmentSpec", schema, EnvironmentSpec)
    return {
        "$schema": DRAFT,
        "title": f"dsroll Environment ({config.API_VERSION})",
        "description": "An environment file of dsroll (environments/<name>.yaml). Reference: docs/environment.md.",
        **schema,
    }


def schema_text() -> str:
    """What ``dsroll schema`` prints and ``environment.schema.json`` holds: stable, keys sorted."""
    return json.dumps(environment_schema(), indent=2, sort_keys=True) + "\n"


def shipped_text() -> str:
    """The schema file shipped in the package."""
    return files(__package__).joinpath(FILE).read_text()
