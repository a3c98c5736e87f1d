"""Templates → variants: one DaemonSet per (workload, hardware class). Pure.

Everything here is a function of the environment and the template texts, read through
a ``Source``; the result is byte-for-byte deterministic (sorted keys, no sets, no
clock), which is what lets ``render --check`` and ``diff --against git`` be exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError

from dsroll import classes as algebra
from dsroll import names, yamlio
from dsroll.config import Environment, Workload, parse_environment
from dsroll.errors import InputError
from dsroll.gitsource import Source
from dsroll.labels import LABEL_CLASS, LABEL_ENV, LABEL_WORKLOAD, MANAGED_BY, MANAGER
from dsroll.manifest import ManifestError, check_daemonset
from dsroll.projectpath import OutsideProject
from dsroll.templating import TemplateSet, template_line


def load_environment(source: Source, path: str, namespace: str | None = None) -> Environment:
    """Parse and validate; ``namespace`` (the -n flag) replaces the file's default namespace."""
    return parse_environment(source.read_text(path), path, source.confined, namespace)


@dataclass(frozen=True)
class Variant:
    """The DaemonSet rendered for one (workload, class) pair."""

    workload: str
    cls: str
    namespace: str
    name: str
    template: str
    manifest: Mapping[str, Any]
    text: str
    applier: str = "dsroll"  # the workload's rollout.applier: where its rollout record lives (rollout/store.py)

    @property
    def path(self) -> str:
        """Where it is written, relative to the environment's renderedDir."""
        return f"{self.namespace}/{self.name}.yaml"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class RenderResult:
    env: Environment
    variants: tuple[Variant, ...]
    warnings: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # project files the render read: the environment file and every template


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Maps merge key by key, recursively; anything else in ``override`` replaces."""
    merged = {key: _copy(value) for key, value in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _copy(value)
    return merged


def _copy(value: Any) -> Any:
    """A deep copy of YAML data (maps, lists, scalars): far cheaper than copy.deepcopy."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def dump_yaml(obj: Any) -> str:
    return yamlio.dump(obj)


def _render_text(templates: TemplateSet, workload: Workload, cls: str, context: dict[str, Any]) -> str:
    """Every template failure becomes one InputError at the template's file:line, naming
    the variant: the same template renders fine for one class and fails for another."""
    env = templates.environment(workload.template)
    variant = f"(workload {workload.name}, class {cls})"

    def fail(message: str, exc: BaseException) -> InputError:
        where = template_line(exc.__traceback__, templates.loaded(workload.template))
        file, line = where if where else (workload.template, None)
        return InputError(f"{message} {variant}", file, line)

    try:
        text = env.get_template(PurePosixPath(workload.template).name).render(context)
    except InputError:  # a template file that cannot be read: already one line with its file
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"template syntax: {exc.message}", exc.filename or workload.template, exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        raise fail(f"template {exc.name!r} not found beside the template or from the project root", exc) from None
    except OutsideProject as exc:
        raise fail(f"{exc}: templates load only from files inside the project", exc) from None
    except SecurityError as exc:
        raise fail(f"template sandbox: {str(exc).rstrip('.')}", exc) from None
    except jinja2.UndefinedError as exc:
        raise fail(f"undefined template variable: {exc.message}", exc) from None
    except Exception as exc:  # a filter or expression failed inside the template
        raise fail(f"template error: {type(exc).__name__}: {exc}", exc) from None
    return text


class AffinityCache:
    """``classes.and_affinity`` per (class, the template's own terms): a render of many
    workloads asks it the same question for every workload of a class."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def terms(self, cls: str, own: list[Any], class_terms: list[algebra.Term]) -> list[dict[str, Any]]:
        key = (cls, json.dumps(own, sort_keys=True))
        if key not in self._found:
            self._found[key] = algebra.and_affinity(own, class_terms)
        return _copy(self._found[key])


class ParseCache:
    """``yamlio.load_plain`` per rendered text: a template that a class does not change
    renders the same text for each class, and parsing is a third of a render (500 variants
    of ``make bench``: 275 different texts, 132 ms of parsing in ~330). Each caller gets a
    copy of its own (``render_variant`` changes the manifest it is given); a text that
    does not parse raises every time."""

    def __init__(self) -> None:
        self._found: dict[str, Any] = {}

    def load(self, text: str) -> Any:
        found = self._found.get(text)
        if found is None:
            found = self._found[text] = yamlio.load_plain(text)
        return _copy(found)


def render_variant(
    env: Environment,
    workload: Workload,
    cls: str,
    templates: TemplateSet,
    class_terms: list[algebra.Term],
    affinity: AffinityCache | None = None,
    parsed: ParseCache | None = None,
) -> Variant:
    values = deep_merge(deep_merge(workload.values, env.class_values.get(cls, {})), workload.class_values.get(cls, {}))
    context = {
        "workload": {"name": workload.name, "namespace": workload.namespace},
        "cls": {"name": cls, **env.class_selectors[cls]},
        "env": {"name": env.name},
        "values": values,
    }
    text = _render_text(templates, workload, cls, context)
    where = f"{workload.template} (workload {workload.name}, class {cls})"
    try:
        manifest = check_daemonset((parsed or ParseCache()).load(text))
    except yaml.YAMLError as exc:
        line, problem = yamlio.problem_at(exc)
        at = f"rendered line {line}: " if line else ""
        kind = "" if isinstance(exc, yamlio.ContentError) else "not valid YAML: "
        raise InputError(f"{at}{kind}{problem}", where) from None
    except ManifestError as exc:
        raise InputError(f"rendered DaemonSet: {exc}", where) from None
    name = names.variant_name(workload.name, cls)
    ours = {MANAGED_BY: MANAGER, LABEL_ENV: env.name, LABEL_WORKLOAD: workload.name, LABEL_CLASS: cls}
    spec = manifest["spec"]
    pod_meta = spec["template"].setdefault("metadata", {}) or {}
    spec["template"]["metadata"] = pod_meta
    own_selector = spec.get("selector") or {}
    meta = manifest.setdefault("metadata", {}) or {}
    manifest["metadata"] = meta
    meta["name"] = name
    meta["namespace"] = workload.namespace
    meta["labels"] = {**(meta.get("labels") or {}), **ours}
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **ours}
    match_labels = {
        **(own_selector.get("matchLabels") or {}),
        LABEL_WORKLOAD: workload.name,
        LABEL_CLASS: cls,
    }
    spec["selector"] = {**own_selector, "matchLabels": match_labels}
    if workload.rollout.applier == "external":
        # Applied by another hand (Argo CD, Flux, CI): a new template then records a revision
        # and restarts no pod; dsroll replaces the pods in steps (docs/gitops.md).
        spec["updateStrategy"] = {"type": "OnDelete"}
    pod = spec["template"]["spec"]
    node_affinity = (pod.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    if class_terms != [()]:  # [()] is the only class, admitting every node: nothing to add
        own = required.get("nodeSelectorTerms") or []
        terms = (affinity or AffinityCache()).terms(cls, own, class_terms)
        if not terms:
            raise InputError(f"class {cls!r} together with the template's own node affinity admits no node", where)
        required = {"nodeSelectorTerms": terms}
        node_affinity = {**node_affinity, "requiredDuringSchedulingIgnoredDuringExecution": required}
        pod["affinity"] = {**(pod.get("affinity") or {}), "nodeAffinity": node_affinity}
    header = (
        f"# Rendered by dsroll from {workload.template} for environment {env.name}, class {cls}.\n"
        f"# Do not edit: change the template or {env.file} and run `dsroll render {env.name}`.\n"
    )
    return Variant(
        workload.name,
        cls,
        workload.namespace,
        name,
        workload.template,
        manifest,
        header + dump_yaml(manifest),
        workload.rollout.applier or "dsroll",
    )


def class_warnings(env: Environment) -> list[str]:
    warnings = [
        f"classes {o.first!r} and {o.second!r} can both match one node: {o.first!r} wins (first in file order)"
        for o in algebra.overlaps(env.classes)
    ]
    for key in sorted(algebra.integer_keys(env.classes)):
        warnings.append(
            f"label {key!r} is compared with Gt/Lt: a node whose {key} is not an integer is admitted by no later class"
        )
    return warnings


def render_environment(env: Environment, source: Source) -> RenderResult:
    terms: dict[str, list[algebra.Term]] = {}
    for hw in env.classes:
        terms[hw.name] = algebra.admission_terms(env.classes, hw.name)
    for workload in env.workloads:
        for cls in workload.classes:
            if not terms[cls]:
                raise InputError(
                    f"class {cls!r} can admit no node: every node it selects belongs to an earlier class",
                    env.file,
                )
    templates = TemplateSet(source)
    affinity, parsed = AffinityCache(), ParseCache()
    variants = tuple(
        render_variant(env, workload, cls, templates, terms[cls], affinity, parsed)
        for workload in env.workloads
        for cls in workload.classes
    )
    inputs = (env.file, *sorted(templates.every_loaded()))
    return RenderResult(env, variants, tuple(class_warnings(env)), inputs)
