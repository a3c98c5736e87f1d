"""Structural checks of a rendered DaemonSet, before anything is written or sent. Pure.

Templates arrive in pull requests, so what they render is input like any other: here
it is checked where dsroll reads it (metadata, selector, pod template, node affinity,
tolerations) and where the API server wants strings, so that a bad template ends in
one line naming the path, never a traceback, and never an object the server refuses
halfway through a rollout. This is not the server's full validation (``diff --against
live`` runs that, by dry-run); it is what dsroll relies on and what a template most
easily gets wrong. JSON-compatibility of the scalars (no timestamps, no NaN, no
duplicate keys) is settled earlier, when ``yamlio.load_plain`` parses the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dsroll import names
from dsroll.classes import Requirement

_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_NODE_OPERATORS = (*_SELECTOR_OPERATORS, "Gt", "Lt")
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
_STRATEGIES = ("RollingUpdate", "OnDelete")
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


class ManifestError(ValueError):
    """A rendered DaemonSet is not what dsroll or the API server can take; the message names the path."""


def _at(path: str, key: str | int) -> str:
    """``spec.selector.matchLabels["app.kubernetes.io/name"]``, ``containers[0]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _mapping(value: Any, path: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{path} must be a mapping, not {_show(value)}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{path} must be a list, not {_show(value)}")
    return value


def _mappings(value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """A list of mappings, each with its path."""
    return [(_at(path, i), _mapping(item, _at(path, i), required=True)) for i, item in enumerate(_list(value, path))]


def _string(value: Any, path: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        quote = "" if isinstance(value, dict | list) else ": quote it"
        raise ManifestError(f"{path} must be a string, not {_show(value)}{quote}")
    return value


def _strings(value: Any, path: str) -> list[str]:
    return [_string(item, _at(path, i), required=True) for i, item in enumerate(_list(value, path))]


def _label_key(key: str, path: str) -> None:
    prefix, _, name = key.rpartition("/")
    if len(name) > names.DNS_LABEL_MAX or len(prefix) > names.DNS_SUBDOMAIN_MAX or not _QUALIFIED.match(key):
        raise ManifestError(f"{path}: {key!r} is not a valid label key")


def _labels(value: Any, path: str) -> dict[str, str]:
    labels = _mapping(value, path)
    for key, label in labels.items():
        _label_key(key, path)
        text = _string(label, _at(path, key), required=True)
        if not names.is_label_value(text):
            limit = names.LABEL_VALUE_MAX
            raise ManifestError(
                f"{_at(path, key)}: {text!r} is not a label value (at most {limit}: A-Z, a-z, 0-9, '-_.')"
            )
    return labels


def _object_meta(value: Any, path: str) -> dict[str, Any]:
    meta = _mapping(value, path)
    _labels(meta.get("labels"), _at(path, "labels"))
    annotations = _mapping(meta.get("annotations"), _at(path, "annotations"))
    for key, text in annotations.items():
        _label_key(key, _at(path, "annotations"))
        _string(text, _at(_at(path, "annotations"), key), required=True)
    return meta


def _requirement(expr: Mapping[str, Any], path: str, operators: tuple[str, ...]) -> Requirement:
    unknown = set(expr) - {"key", "operator", "values"}
    if unknown:
        raise ManifestError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    key = _string(expr.get("key"), _at(path, "key"), required=True)
    operator = _string(expr.get("operator"), _at(path, "operator"), required=True)
    if operator not in operators:
        raise ManifestError(f"{_at(path, 'operator')}: {operator!r} is not one of {', '.join(operators)}")
    values = _strings(expr.get("values"), _at(path, "values"))
    try:
        return Requirement(key, operator, tuple(values))
    except ValueError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def label_selector(value: Any, path: str) -> list[Requirement]:
    """A metav1.LabelSelector, as requirements: matchLabels are In requirements."""
    selector = _mapping(value, path)
    reqs = []
    for key, label in _labels(selector.get("matchLabels"), _at(path, "matchLabels")).items():
        reqs.append(Requirement(key, "In", (label,)))
    for where, expr in _mappings(selector.get("matchExpressions"), _at(path, "matchExpressions")):
        req = _requirement(expr, where, _SELECTOR_OPERATORS)
        _label_key(req.key, where)
        reqs.append(req)
    return reqs


def _node_selector_term(term: Mapping[str, Any], path: str) -> None:
    for where, expr in _mappings(term.get("matchExpressions"), _at(path, "matchExpressions")):
        _label_key(_requirement(expr, where, _NODE_OPERATORS).key, where)
    for where, expr in _mappings(term.get("matchFields"), _at(path, "matchFields")):
        req = _requirement(expr, where, ("In", "NotIn"))
        if req.key != "metadata.name" or len(req.values) != 1:
            raise ManifestError(f"{where}: matchFields supports only metadata.name In/NotIn one value")


def _affinity(value: Any, path: str) -> None:
    affinity = _mapping(value, path)
    for kind in ("podAffinity", "podAntiAffinity"):
        _mapping(affinity.get(kind), _at(path, kind))
    node = _mapping(affinity.get("nodeAffinity"), _at(path, "nodeAffinity"))
    here = _at(_at(path, "nodeAffinity"), _REQUIRED)
    required = _mapping(node.get(_REQUIRED), here)
    for where, term in _mappings(required.get("nodeSelectorTerms"), _at(here, "nodeSelectorTerms")):
        _node_selector_term(term, where)
    for where, preferred in _mappings(node.get(_PREFERRED), _at(_at(path, "nodeAffinity"), _PREFERRED)):
        weight = preferred.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            raise ManifestError(f"{_at(where, 'weight')} must be an integer from 1 to 100, not {_show(weight)}")
        _node_selector_term(_mapping(preferred.get("preference"), _at(where, "preference"), True), where)


def _tolerations(value: Any, path: str) -> None:
    for where, toleration in _mappings(value, path):
        key = _string(toleration.get("key"), _at(where, "key"))
        if key:
            _label_key(key, _at(where, "key"))
        operator = _string(toleration.get("operator"), _at(where, "operator")) or "Equal"
        if operator not in _TOLERATION_OPERATORS:
            raise ManifestError(f"{_at(where, 'operator')}: {operator!r} is not one of Exists, Equal")
        toleration_value = _string(toleration.get("value"), _at(where, "value"))
        if operator == "Exists" and toleration_value:
            raise ManifestError(f"{where}: operator Exists takes no value")
        if not key and operator != "Exists":
            raise ManifestError(f"{where}: a toleration without a key must have operator Exists")
        effect = _string(toleration.get("effect"), _at(where, "effect"))
        if effect not in _TAINT_EFFECTS:
            raise ManifestError(
                f"{_at(where, 'effect')}: {effect!r} is not one of NoSchedule, PreferNoSchedule, NoExecute"
            )
        seconds = toleration.get("tolerationSeconds")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int):
                raise ManifestError(f"{_at(where, 'tolerationSeconds')} must be an integer, not {_show(seconds)}")
            if effect != "NoExecute":
                raise ManifestError(f"{where}: tolerationSeconds needs effect NoExecute")


def _containers(value: Any, path: str, required: bool) -> None:
    containers = _mappings(value, path)
    if required and not containers:
        raise ManifestError(f"{path} needs at least one container")
    for where, container in containers:
        _string(container.get("name"), _at(where, "name"), required=True)
        _string(container.get("image"), _at(where, "image"), required=required)
        for field in ("command", "args"):
            _strings(container.get(field), _at(where, field))
        for env_at, env in _mappings(container.get("env"), _at(where, "env")):
            _string(env.get("name"), _at(env_at, "name"), required=True)
            _string(env.get("value"), _at(env_at, "value"))


def _pod_spec(value: Any, path: str) -> None:
    pod = _mapping(value, path, required=True)
    _containers(pod.get("containers"), _at(path, "containers"), required=True)
    _containers(pod.get("initContainers"), _at(path, "initContainers"), required=False)
    if pod.get("restartPolicy") not in (None, "Always"):
        raise ManifestError(
            f"{_at(path, 'restartPolicy')} must be Always (or unset), not {_show(pod['restartPolicy'])}"
        )
    node_selector = _mapping(pod.get("nodeSelector"), _at(path, "nodeSelector"))
    for key, label in node_selector.items():
        _label_key(key, _at(path, "nodeSelector"))
        _string(label, _at(_at(path, "nodeSelector"), key), required=True)
    _affinity(pod.get("affinity"), _at(path, "affinity"))
    _tolerations(pod.get("tolerations"), _at(path, "tolerations"))


def check_daemonset(manifest: Any) -> dict[str, Any]:
    """The manifest itself when it has the shape dsroll and the API server need; else ManifestError."""
    if not isinstance(manifest, dict):
        raise ManifestError("the template must render one YAML mapping")
    if manifest.get("apiVersion") != "apps/v1" or manifest.get("kind") != "DaemonSet":
        raise ManifestError(
            f"must be apiVersion apps/v1, kind DaemonSet, not {manifest.get('apiVersion')} {manifest.get('kind')}"
        )
    _object_meta(manifest.get("metadata"), "metadata")
    spec = _mapping(manifest.get("spec"), "spec", required=True)
    strategy = _mapping(spec.get("updateStrategy"), "spec.updateStrategy")
    if strategy.get("type", "RollingUpdate") not in _STRATEGIES:
        raise ManifestError(
            f"spec.updateStrategy.type must be RollingUpdate or OnDelete, not {_show(strategy['type'])}"
        )
    if "template" not in spec:
        raise ManifestError("spec.template is missing")
    template = _mapping(spec["template"], "spec.template", required=True)
    pod_meta = _object_meta(template.get("metadata"), "spec.template.metadata")
    _pod_spec(template.get("spec"), "spec.template.spec")
    selector = label_selector(spec.get("selector"), "spec.selector")
    pod_labels = pod_meta.get("labels") or {}
    if not all(req.matches(pod_labels) for req in selector):
        raise ManifestError("spec.selector does not match spec.template.metadata.labels")
    return manifest
