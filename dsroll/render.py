"""Templates → variants: one DaemonSet per (workload, hardware class). Pure.

Everything here is a function of the environment and the template texts, read through
a ``Source``; the result is byte-for-byte deterministic (sorted keys, no sets, no
clock), which is what lets ``render --check`` and ``diff --against git`` be exact.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any

import jinja2
import yaml

from dsroll import classes as algebra
from dsroll import yamlio
from dsroll.config import DNS_LABEL, Environment, Workload, parse_environment
from dsroll.errors import InputError
from dsroll.gitsource import Source

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ENV = "dsroll.io/environment"
LABEL_WORKLOAD = "dsroll.io/workload"
LABEL_CLASS = "dsroll.io/class"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def load_environment(source: Source, path: str, namespace: str | None = None) -> Environment:
    """Parse and validate; ``namespace`` (the -n flag) replaces the file's default namespace."""
    return parse_environment(source.read_text(path), path, source.exists, namespace)


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


def _b64encode(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


class _SourceLoader(jinja2.BaseLoader):
    """Finds templates beside the one being rendered, then from the project root."""

    def __init__(self, source: Source, search: tuple[str, ...]) -> None:
        self.source = source
        self.search = search
        self.loaded: set[str] = set()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        for folder in self.search:
            path = str(PurePosixPath(folder, template)) if folder else template
            if self.source.exists(path):
                self.loaded.add(path)
                return self.source.read_text(path), path, lambda: True
        raise jinja2.TemplateNotFound(template)


class TemplateSet:
    """One Jinja environment per template folder, so each template compiles once per render."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._envs: dict[str, jinja2.Environment] = {}

    def environment(self, template: str) -> jinja2.Environment:
        folder = str(PurePosixPath(template).parent)
        if folder not in self._envs:
            env = jinja2.Environment(
                loader=_SourceLoader(self.source, (folder, "") if folder != "." else ("",)),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                autoescape=False,
                cache_size=-1,
            )
            env.filters["to_yaml"] = lambda v: dump_yaml(v).rstrip("\n")
            env.filters["to_json"] = lambda v: json.dumps(v, sort_keys=True)
            env.filters["b64encode"] = _b64encode
            self._envs[folder] = env
        return self._envs[folder]


def _template_line(tb: TracebackType | None, names: set[str]) -> tuple[str, int] | None:
    """The innermost template frame: Jinja rewrites tracebacks so frames name template lines."""
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _render_text(templates: TemplateSet, workload: Workload, context: dict[str, Any]) -> str:
    env = templates.environment(workload.template)
    try:
        return env.get_template(PurePosixPath(workload.template).name).render(context)
    except InputError:  # a template file that cannot be read: already one line with its file
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"template syntax: {exc.message}", exc.filename or workload.template, exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template {exc.name!r} not found (included from here)", workload.template) from None
    except jinja2.UndefinedError as exc:
        where = _template_line(exc.__traceback__, _loaded(env))
        file, line = where if where else (workload.template, None)
        raise InputError(f"undefined template variable: {exc.message}", file, line) from None
    except Exception as exc:  # a filter or expression failed inside the template
        where = _template_line(exc.__traceback__, _loaded(env))
        file, line = where if where else (workload.template, None)
        raise InputError(f"template error: {type(exc).__name__}: {exc}", file, line) from None


def _loaded(env: jinja2.Environment) -> set[str]:
    loader = env.loader
    assert isinstance(loader, _SourceLoader)
    return loader.loaded


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    reqs = [algebra.Requirement(k, "In", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        reqs.append(algebra.Requirement(expr["key"], expr["operator"], tuple(expr.get("values") or ())))
    return all(r.matches(labels) for r in reqs)


def _validate(manifest: Any, where: str) -> dict[str, Any]:
    def bad(message: str) -> InputError:
        return InputError(f"rendered DaemonSet: {message}", where)

    if not isinstance(manifest, dict):
        raise bad("the template must render one YAML mapping")
    if manifest.get("apiVersion") != "apps/v1" or manifest.get("kind") != "DaemonSet":
        raise bad(
            f"must be apiVersion apps/v1, kind DaemonSet, not {manifest.get('apiVersion')} {manifest.get('kind')}"
        )
    spec = manifest.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("template"), dict):
        raise bad("spec.template is missing")
    pod = spec["template"].get("spec")
    if not isinstance(pod, dict) or not isinstance(pod.get("containers"), list) or not pod["containers"]:
        raise bad("spec.template.spec.containers needs at least one container")
    if pod.get("restartPolicy", "Always") != "Always":
        raise bad(f"spec.template.spec.restartPolicy must be Always (or unset), not {pod['restartPolicy']}")
    if "selector" in spec and not isinstance(spec["selector"], dict):
        raise bad("spec.selector must be a mapping")
    return manifest


def render_variant(
    env: Environment, workload: Workload, cls: str, templates: TemplateSet, class_terms: list[algebra.Term]
) -> Variant:
    values = deep_merge(deep_merge(workload.values, env.class_values.get(cls, {})), workload.class_values.get(cls, {}))
    context = {
        "workload": {"name": workload.name, "namespace": workload.namespace},
        "cls": {"name": cls, **env.class_selectors[cls]},
        "env": {"name": env.name},
        "values": values,
    }
    text = _render_text(templates, workload, context)
    where = f"{workload.template} (class {cls})"
    try:
        manifest = _validate(yamlio.load_plain(text), where)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at rendered line {mark.line + 1}" if mark else ""
        raise InputError(f"template output is not valid YAML{at}: {getattr(exc, 'problem', exc)}", where) from None
    name = f"{workload.name}-{cls}"
    if not DNS_LABEL.match(name) or len(name) > 63:
        raise InputError(f"variant name {name!r} is not a DNS label of at most 63 characters", env.file)
    if not _LABEL_VALUE.match(env.name) or len(env.name) > 63:
        raise InputError(f"environment name {env.name!r} is not a valid label value", env.file)
    ours = {MANAGED_BY: "dsroll", LABEL_ENV: env.name, LABEL_WORKLOAD: workload.name, LABEL_CLASS: cls}
    spec = manifest["spec"]
    pod_meta = spec["template"].setdefault("metadata", {}) or {}
    spec["template"]["metadata"] = pod_meta
    own_selector = spec.get("selector") or {}
    if own_selector and not _selector_matches(own_selector, pod_meta.get("labels") or {}):
        raise InputError("rendered DaemonSet: spec.selector does not match spec.template.metadata.labels", where)
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
    pod = spec["template"]["spec"]
    node_affinity = (pod.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    if class_terms != [()]:  # [()] is the only class, admitting every node: nothing to add
        terms = algebra.and_affinity(required.get("nodeSelectorTerms") or [], class_terms)
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
    variants = tuple(
        render_variant(env, workload, cls, templates, terms[cls])
        for workload in env.workloads
        for cls in workload.classes
    )
    return RenderResult(env, variants, tuple(class_warnings(env)))
