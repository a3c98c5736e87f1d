"""The environment file: model, validation, and the one-line errors users see.

Shape and syntax are checked by pydantic (unknown keys, types, step and duration
syntax); the rules that span several entries (duplicate names, one default class,
known classes) are checked afterwards. Either way the error carries file:line, found
through the positions ``yamlio`` kept while parsing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from dsroll import durations, layout, names, yamlio
from dsroll.classes import HardwareClass, Requirement
from dsroll.errors import InputError
from dsroll.masking import DEFAULT_MASK_ENV, compile_mask
from dsroll.messages import shown, validation_error
from dsroll.projectpath import OutsideProject, inside_project

API_VERSION = "dsroll.io/v1alpha1"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_STEP = re.compile(r"^(?:[1-9]\d*|(?:[1-9]\d?|100)%)$")
_PERCENT = re.compile(r"^(?:[1-9]\d?|100)%$")
_POINTER = re.compile(r"^(?:/(?:[^~/]|~[01])*)+$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_duration(text: str) -> float:
    """Seconds in a duration ("30s", "1m30s", "0"); the model has checked its syntax."""
    return durations.seconds(text)


def _check_duration(value: str) -> str:
    if not durations.is_duration(value):
        raise ValueError(f"invalid duration {value!r}: {durations.HINT}")
    return value


def _check_int_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}")
        return value
    if not _PERCENT.match(value):
        raise ValueError(f"invalid value {value!r}: use a whole number or a percentage from 1% to 100%")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, strict=True)


class Metadata(_Model):
    name: str


class Cluster(_Model):
    context: str | None = None
    namespace: str | None = None
    create_namespace: bool = False


class MatchExpression(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)


class HardwareClassSpec(_Model):
    name: str
    node_selector: dict[str, str] | None = None
    match_expressions: list[MatchExpression] | None = None
    default: bool = False
    values: dict[str, Any] = Field(default_factory=dict)


class RolloutOverride(_Model):
    """A workload's rollout: every field optional, the environment's policy fills the rest."""

    steps: list[str | int] | None = None
    max_unavailable: int | str | None = None
    pause: str | int | None = None
    ready_timeout: str | None = None
    min_ready_seconds: int | None = None
    on_failure: Literal["rollback", "pause", "abort"] | None = None
    canary_node_selector: dict[str, str] | None = None
    unready_nodes: Literal["skip", "wait", "fail"] | None = None
    applier: Literal["dsroll", "external"] | None = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, given: list[str | int] | None) -> list[str] | None:
        if given is None:
            return None
        steps = [str(s) for s in given]
        if not steps:
            raise ValueError("needs at least one step")
        for step in steps:
            if not _STEP.match(step):
                raise ValueError(f'invalid step {step!r}: use a node count ("1") or a percentage ("10%")')
        for kind in (False, True):
            sizes = [int(s.rstrip("%")) for s in steps if s.endswith("%") is kind]
            if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
                raise ValueError(f"steps are cumulative and must grow: {steps}")
        if steps[-1] != "100%":
            raise ValueError(f'the last step must be "100%" (use --partition to stop early): {steps}')
        return steps

    @field_validator("max_unavailable")
    @classmethod
    def _max_unavailable(cls, value: int | str | None) -> int | str | None:
        return None if value is None else _check_int_or_percent(value)

    @field_validator("pause")
    @classmethod
    def _pause(cls, value: str | int | None) -> str | None:
        if isinstance(value, int):
            if value != 0:
                raise ValueError(f"invalid pause {value!r}: use manual, a duration like 30s, or 0")
            return "0"
        return value if value in (None, "manual") else _check_duration(value)

    @field_validator("ready_timeout")
    @classmethod
    def _ready_timeout(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if parse_duration(_check_duration(value)) <= 0:
            raise ValueError("readyTimeout must be longer than 0")
        return value

    @field_validator("min_ready_seconds")
    @classmethod
    def _min_ready(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("minReadySeconds cannot be negative")
        return value


class RolloutPolicy(RolloutOverride):
    """The environment's rollout policy, with DESIGN.md's defaults."""

    steps: list[str | int] | None = Field(default_factory=lambda: ["1", "10%", "50%", "100%"])
    max_unavailable: int | str | None = 1
    pause: str | int | None = "manual"
    ready_timeout: str | None = "5m"
    min_ready_seconds: int | None = 0
    on_failure: Literal["rollback", "pause", "abort"] | None = "rollback"
    unready_nodes: Literal["skip", "wait", "fail"] | None = "skip"
    applier: Literal["dsroll", "external"] | None = "dsroll"

    def merged(self, override: RolloutOverride | None) -> RolloutPolicy:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ObjectRef(_Model):
    namespace: str
    name: str


class WorkloadSpec(_Model):
    name: str
    template: str
    namespace: str | None = None
    classes: list[str] | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    class_values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rollout: RolloutOverride | None = None
    ignore_differences: list[str] = Field(default_factory=list)
    replaces: list[ObjectRef] = Field(default_factory=list)


class EnvironmentSpec(_Model):
    api_version: Literal["dsroll.io/v1alpha1"]
    kind: Literal["Environment"]
    metadata: Metadata
    cluster: Cluster = Field(default_factory=Cluster)
    rendered_dir: str | None = None
    hardware_classes: list[HardwareClassSpec]
    workloads: list[WorkloadSpec]
    ignore_differences: list[str] = Field(default_factory=list)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    mask_env: str = DEFAULT_MASK_ENV  # env names whose values diff shows as *** ("" masks none)


@dataclass(frozen=True)
class Workload:
    """A validated workload with everything resolved that the renderer needs."""

    name: str
    template: str
    namespace: str
    classes: tuple[str, ...]
    values: Mapping[str, Any]
    class_values: Mapping[str, Mapping[str, Any]]
    rollout: RolloutPolicy
    ignore_differences: tuple[str, ...]
    replaces: tuple[ObjectRef, ...]


@dataclass(frozen=True)
class Environment:
    """A validated environment file. ``file`` is how errors and output name it."""

    name: str
    file: str
    context: str | None
    namespace: str
    rendered_dir: str  # normalised: relative, inside the project, apart from its own folders
    classes: tuple[HardwareClass, ...]
    class_values: Mapping[str, Mapping[str, Any]]
    class_selectors: Mapping[str, Mapping[str, Any]]  # name -> {nodeSelector, matchExpressions}, for templates
    workloads: tuple[Workload, ...]
    ignore_differences: tuple[str, ...]
    rollout: RolloutPolicy
    rendered_dir_line: int | None = None  # where renderedDir (or, for the default, metadata.name) is
    mask_env: str = DEFAULT_MASK_ENV
    create_namespace: bool = False  # cluster.createNamespace: a rollout creates a missing namespace
    namespace_lines: Mapping[str, int] = field(default_factory=dict)  # where each namespace is named first


def _fail(raw: Any, path: Sequence[str | int], file: str, message: str) -> InputError:
    return InputError(message, file, yamlio.line_of(raw, path))


def _check_name(raw: Any, path: Sequence[str | int], file: str, what: str, value: str) -> None:
    if not DNS_LABEL.match(value) or len(value) > 63:
        raise _fail(raw, path, file, f"{what} {value!r} is not a DNS label (lowercase a-z, 0-9, '-', at most 63)")


def _check_unique_name(raw: Any, path: Sequence[str | int], file: str, what: str, name: str, seen: set[str]) -> None:
    _check_name(raw, path, file, f"{what} name", name)
    if name in seen:
        raise _fail(raw, path, file, f"duplicate {what} {name!r}")
    seen.add(name)


def _check_variant(
    raw: Any,
    path: Sequence[str | int],
    file: str,
    environment: str,
    pair: tuple[str, str, str],
    variants: dict[tuple[str, str], tuple[str, str]],
) -> None:
    """Every name the variant generates fits the API server's limits, and no other
    (workload, class) pair renders the same DaemonSet: one would overwrite the other."""
    namespace, workload, cls = pair
    problem = names.variant_problem(environment, workload, cls)
    if problem:
        raise _fail(raw, path, file, f"workload {workload!r} class {cls!r}: {problem}")
    key = (namespace, names.variant_name(workload, cls))
    if key in variants:
        other_workload, other_cls = variants[key]
        raise _fail(
            raw,
            path,
            file,
            f"workload {workload!r} class {cls!r} and workload {other_workload!r} class {other_cls!r} "
            f"both render DaemonSet {key[0]}/{key[1]}",
        )
    variants[key] = (workload, cls)


def _check_selector_keys(raw: Any, path: list[str | int], file: str, keys: Sequence[str]) -> None:
    for key in keys:
        if not _LABEL_KEY.match(key):
            raise _fail(raw, path, file, f"{key!r} is not a valid label key")


def _check_expressions(raw: Any, path: list[str | int], file: str, exprs: Sequence[MatchExpression]) -> None:
    """Requirement itself knows each operator's rules; here they get the expression's line."""
    for i, expr in enumerate(exprs):
        here = [*path, i]
        try:
            Requirement(expr.key, expr.operator, tuple(expr.values))
        except ValueError as exc:
            raise _fail(raw, here, file, f"matchExpressions: {exc}") from None
        _check_selector_keys(raw, here, file, [expr.key])


def _check_pointers(raw: Any, path: list[str | int], file: str, pointers: Sequence[str]) -> None:
    for i, pointer in enumerate(pointers):
        if not _POINTER.match(pointer):
            raise _fail(
                raw,
                [*path, i],
                file,
                f"ignoreDifferences: {pointer!r} is not a JSON pointer (/a/b, ~1 for /)",
            )


def _classes(spec: EnvironmentSpec, raw: Any, file: str) -> tuple[HardwareClass, ...]:
    seen: set[str] = set()
    default: str | None = None
    result = []
    for i, cls in enumerate(spec.hardware_classes):
        path: list[str | int] = ["hardwareClasses", i]
        _check_unique_name(raw, [*path, "name"], file, "hardware class", cls.name, seen)
        has_selector = bool(cls.node_selector) or bool(cls.match_expressions)
        if cls.default:
            if default is not None:
                raise _fail(raw, [*path, "default"], file, f"two default classes: {default!r} and {cls.name!r}")
            if has_selector:
                raise _fail(
                    raw,
                    path,
                    file,
                    f"default class {cls.name!r} cannot have a selector: it takes the nodes no other class matches",
                )
            default = cls.name
        elif not has_selector:
            raise _fail(
                raw,
                path,
                file,
                f"class {cls.name!r} has no nodeSelector or matchExpressions "
                "(mark it default: true to take every other node)",
            )
        _check_selector_keys(raw, [*path, "nodeSelector"], file, list(cls.node_selector or {}))
        _check_expressions(raw, [*path, "matchExpressions"], file, cls.match_expressions or [])
        result.append(
            HardwareClass.from_selector(
                cls.name,
                cls.node_selector,
                [e.model_dump() for e in cls.match_expressions or []],
                default=cls.default,
            )
        )
    if not result:
        raise _fail(raw, ["hardwareClasses"], file, "hardwareClasses: at least one class is needed")
    return tuple(result)


def _template_path(raw: Any, path: list[str | int], file: str, template: str, source_exists: Any) -> str:
    """The template's project path, normalised; refused at its line if it leaves the project."""
    try:
        found = source_exists(inside_project(template))
    except OutsideProject as exc:
        message = f"template {yamlio.shorten(template, 120)!r} {exc}: templates must be files inside the project"
        raise _fail(raw, path, file, message) from None
    if not found:
        raise _fail(raw, path, file, f"template {yamlio.shorten(template, 120)!r} not found")
    return found if isinstance(found, str) else inside_project(template)


def _workloads(spec: EnvironmentSpec, raw: Any, file: str, namespace: str, source_exists: Any) -> tuple[Workload, ...]:
    class_names = [c.name for c in spec.hardware_classes]
    seen: set[str] = set()
    variants: dict[tuple[str, str], tuple[str, str]] = {}
    result = []
    for i, wl in enumerate(spec.workloads):
        path: list[str | int] = ["workloads", i]
        _check_unique_name(raw, [*path, "name"], file, "workload", wl.name, seen)
        ns = wl.namespace or namespace
        _check_name(raw, [*path, "namespace"], file, "namespace", ns)
        template = _template_path(raw, [*path, "template"], file, wl.template, source_exists)
        classes = wl.classes if wl.classes is not None else class_names
        for j, name in enumerate(classes):
            if name not in class_names:
                raise _fail(
                    raw,
                    [*path, "classes", j],
                    file,
                    f"workload {wl.name!r} names unknown class {name!r} (known: {', '.join(class_names)})",
                )
            where: list[str | int] = [*path, "classes", j] if wl.classes is not None else [*path, "name"]
            _check_variant(raw, where, file, spec.metadata.name, (ns, wl.name, name), variants)
        if len(set(classes)) != len(classes):
            raise _fail(raw, [*path, "classes"], file, f"workload {wl.name!r} lists a class twice")
        for name in wl.class_values:
            if name not in classes:
                raise _fail(
                    raw,
                    [*path, "classValues", name],
                    file,
                    f"classValues names class {name!r}, which workload {wl.name!r} does not run on",
                )
        _check_pointers(raw, [*path, "ignoreDifferences"], file, wl.ignore_differences)
        for j, ref in enumerate(wl.replaces):
            _check_name(raw, [*path, "replaces", j, "name"], file, "replaced DaemonSet name", ref.name)
            if ref.namespace != ns:
                raise _fail(
                    raw,
                    [*path, "replaces", j, "namespace"],
                    file,
                    f"workload {wl.name!r} replaces {ref.namespace}/{ref.name}, but its variants live in {ns}: "
                    "pods cannot move between namespaces",
                )
        result.append(
            Workload(
                name=wl.name,
                template=template,
                namespace=ns,
                classes=tuple(classes),
                values=wl.values,
                class_values=wl.class_values,
                rollout=_applier_policy(spec, raw, file, i),
                ignore_differences=tuple(wl.ignore_differences),
                replaces=tuple(wl.replaces),
            )
        )
    return tuple(result)


def _applier_policy(spec: EnvironmentSpec, raw: Any, file: str, index: int) -> RolloutPolicy:
    """A workload's merged policy, checked against its applier.

    Under ``applier: external`` dsroll never writes the DaemonSet, so ``onFailure: rollback``
    (which restores the old template) and ``replaces`` (orphan replacement deletes and
    creates DaemonSets) are refused where they are written; ``onFailure`` left unset
    means ``pause`` there (docs/gitops.md: roll back in git, ``rollback --git-revert``).
    """
    workload = spec.workloads[index]
    override = workload.rollout
    policy = spec.rollout.merged(override)
    if policy.applier != "external":
        return policy
    here: list[str | int] = ["workloads", index]
    if override is not None and override.on_failure is not None:
        explicit, where = override.on_failure, [*here, "rollout", "onFailure"]
    elif "on_failure" in spec.rollout.model_fields_set:
        explicit, where = spec.rollout.on_failure, ["rollout", "onFailure"]
    else:
        explicit, where = None, []
    if explicit == "rollback":
        raise _fail(
            raw,
            where,
            file,
            f"workload {workload.name!r}: onFailure: rollback cannot go with applier: external (dsroll may not "
            "write the spec, and under OnDelete a deleted pod comes back on the new template): use pause or abort, "
            "and roll back in git (`dsroll rollback ENV --git-revert`)",
        )
    if workload.replaces:
        raise _fail(
            raw,
            [*here, "replaces"],
            file,
            f"workload {workload.name!r}: replaces (orphan replacement) cannot go with applier: external: dsroll "
            "never deletes or creates a DaemonSet the applier owns; move the objects in git instead",
        )
    return policy if explicit is not None else policy.model_copy(update={"on_failure": "pause"})


def _namespace_lines(spec: EnvironmentSpec, raw: Any, namespace_override: str | None) -> dict[str, int]:
    """Where each workload namespace is named first: its workload's ``namespace``, else
    ``cluster.namespace`` (nowhere for ``-n`` or the default), for messages about it."""
    found: dict[str, int] = {}
    home = None if namespace_override else spec.cluster.namespace
    home_line = yamlio.line_of(raw, ["cluster", "namespace"]) if home else None
    for i, wl in enumerate(spec.workloads):
        name, line = (
            (wl.namespace, yamlio.line_of(raw, ["workloads", i, "namespace"])) if wl.namespace else (home, home_line)
        )
        if name and line is not None:
            found.setdefault(name, line)
    return found


def _rendered_dir(spec: EnvironmentSpec, raw: Any, file: str) -> tuple[str, int | None]:
    """renderedDir, normalised, with its line; render writes and removes files there, so it
    must stay inside the project and apart from the folders the project's own files are in.
    """
    given = spec.rendered_dir if spec.rendered_dir is not None else f"rendered/{spec.metadata.name}"
    line = yamlio.line_of(raw, ["renderedDir"] if spec.rendered_dir is not None else ["metadata", "name"])
    protected = layout.protected_folders(file, [w.template for w in spec.workloads])
    try:
        return layout.check_rendered_dir(given, protected), line
    except ValueError as exc:
        raise InputError(f"renderedDir {exc}", file, line) from None


def parse_environment(
    text: str, file: str, exists: Any = lambda _path: True, namespace_override: str | None = None
) -> Environment:
    """Validate an environment file's text.

    ``exists(path)`` tells if a template is there (truthy, ideally its normalised path) and
    raises OutsideProject if a symlink takes it out of the project (``Source.confined``).
    """
    raw = yamlio.load(text, file)
    if raw is None:
        raise InputError("empty: an environment file is a YAML mapping (apiVersion, kind, metadata, …)", file)
    if not isinstance(raw, dict):
        raise InputError(f"an environment file is a YAML mapping, not {shown(raw)}", file, getattr(raw, "line", 1))
    try:
        spec = EnvironmentSpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, EnvironmentSpec, raw, file) from None
    _check_name(raw, ["metadata", "name"], file, "environment name", spec.metadata.name)
    namespace = namespace_override or spec.cluster.namespace or "default"
    if namespace_override and not DNS_LABEL.match(namespace_override):
        raise InputError(f"--namespace {namespace_override!r} is not a DNS label")
    if spec.cluster.namespace:
        _check_name(raw, ["cluster", "namespace"], file, "namespace", spec.cluster.namespace)
    _check_pointers(raw, ["ignoreDifferences"], file, spec.ignore_differences)
    try:
        compile_mask(spec.mask_env)
    except re.error as exc:
        raise _fail(raw, ["maskEnv"], file, f"maskEnv: {spec.mask_env!r} is not a regular expression: {exc}") from None
    if spec.rollout.canary_node_selector:
        _check_selector_keys(raw, ["rollout", "canaryNodeSelector"], file, list(spec.rollout.canary_node_selector))
    classes = _classes(spec, raw, file)
    workloads = _workloads(spec, raw, file, namespace, exists)
    rendered_dir, rendered_dir_line = _rendered_dir(spec, raw, file)
    return Environment(
        name=spec.metadata.name,
        file=file,
        context=spec.cluster.context,
        namespace=namespace,
        rendered_dir=rendered_dir,
        classes=classes,
        class_values={c.name: c.values for c in spec.hardware_classes},
        class_selectors={
            c.name: {
                "nodeSelector": dict(c.node_selector or {}),
                "matchExpressions": [e.model_dump() for e in c.match_expressions or []],
            }
            for c in spec.hardware_classes
        },
        workloads=workloads,
        ignore_differences=tuple(spec.ignore_differences),
        rollout=spec.rollout,
        rendered_dir_line=rendered_dir_line,
        mask_env=spec.mask_env,
        create_namespace=spec.cluster.create_namespace,
        namespace_lines=_namespace_lines(spec, raw, namespace_override),
    )
