"""Validation errors in the environment file's own terms.

Someone editing YAML sees a path into their file (``workloads[0].values``), what belongs
there ("a mapping", "a duration like "5m"") and what they wrote ("not a list"). Only the
location, the kind of error and the input are taken from pydantic: its wording names
Python types, model classes and union members, which mean nothing in a YAML file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from dsroll import yamlio
from dsroll.errors import InputError

# What a field holds, in the file's words, where its type alone would say too little.
_EXPECTED = {
    ("steps", True): 'a string like "1" or "10%"',
    ("maxUnavailable", False): 'a whole number or a percentage like "25%"',
    ("pause", False): 'manual, a duration like "30s", or 0',
    ("readyTimeout", False): 'a duration like "5m"',
}
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _optional(annotation: Any) -> Any:
    """``X | None`` is X: null is accepted wherever a key is optional, so it never explains an error."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return annotation


def _locate(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[list[str | int], Any, str | None, bool]:
    """Pydantic's error location as a path in the file, with the type expected there.

    Pydantic appends the tag of each union member it tried ('str', 'int'); those are not
    in the file, so the walk stops at the union and the message describes all of it.
    Returns the path, the annotation (None for an unknown key), the innermost field's
    key, and whether the path ends at an item of that field's list.
    """
    annotation: Any = model
    path: list[str | int] = []
    field: str | None = None
    item = False
    for part in loc:
        annotation = _optional(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
            path.append(part)
            found = next((f for n, f in annotation.model_fields.items() if (f.alias or n) == part), None)
            if found is None:
                return path, None, part, False
            annotation, field, item = found.annotation, part, False
        elif origin is list and isinstance(part, int):
            path.append(part)
            annotation, item = get_args(annotation)[0], True
        elif origin is dict and isinstance(part, str):
            path.append(part)
            annotation, item = get_args(annotation)[1], True
        else:
            break
    return path, annotation, field, item


def _describe(annotation: Any, field: str | None, item: bool) -> str:
    """The expected type in the words of the file format, never a Python or pydantic name."""
    special = _EXPECTED.get((field or "", item))
    if special:
        return special
    annotation = _optional(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        choices = [str(a) for a in get_args(annotation)]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    if origin in (Union, UnionType):
        return " or ".join(_describe(a, None, False) for a in get_args(annotation))
    if origin is list:
        return "a list"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "a mapping"
    return {str: "a string", int: "a whole number", bool: "true or false"}.get(annotation, "another kind of value")


def shown(value: Any) -> str:
    """The value a user wrote, as a message quotes it."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {yamlio.shorten(str(value))}"
    if isinstance(value, str):
        return repr(yamlio.shorten(value))
    return "another kind of value"


def _where(path: Sequence[str | int]) -> str:
    parts = [
        f"[{p}]" if isinstance(p, int) else f".{p}" if _SIMPLE_KEY.match(p) else f"[{yamlio.shorten(p)!r}]"
        for p in path
    ]
    return "".join(parts).lstrip(".")


def validation_error(exc: ValidationError, model: type[BaseModel], raw: Any, file: str) -> InputError:
    """The first error in the file's own terms: its path, what belongs there, what was found.

    Only the location, error kind and input are taken from pydantic: its wording names
    Python types and model classes, which mean nothing to someone editing YAML.
    """
    errors = exc.errors()
    path, annotation, field, item = _locate(model, errors[0]["loc"])
    others = {tuple(_locate(model, e["loc"])[0]) for e in errors} - {tuple(path)}
    where = _where(path)
    line = yamlio.line_of(raw, path)
    kind = errors[0]["type"]
    given = errors[0]["input"]
    if kind == "extra_forbidden" or annotation is None:
        parent = _where(path[:-1])
        message = f"unknown key {yamlio.shorten(str(path[-1]))!r}" + (f" in {parent}" if parent else "")
    elif kind == "missing":
        message = f"{where}: required key missing"
    elif kind == "value_error":
        message = f"{where}: {errors[0]['ctx']['error']!s}"
    else:
        message = f"{where}: must be {_describe(annotation, field, item)}, not {shown(given)}"
    return InputError(message + (f" (and {len(others)} more)" if others else ""), file, line)
