"""YAML loading that remembers where every key and item stood, for file:line errors.

Environment files are written by hand, so every error must point at a line. PyYAML's
nodes know their marks; we keep them in ``PosDict``/``PosList`` (plain dict and list
subclasses, so the rest of the code never notices) and refuse duplicate keys, which
PyYAML would otherwise silently resolve to the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from dsroll.errors import InputError


class PosDict(dict[Any, Any]):
    """A mapping with the 1-based line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class PosList(list[Any]):
    """A sequence with the 1-based line of itself and of each of its items."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose containers carry positions; the file name is for errors."""

    filename = "<string>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> PosDict:
    loader.flatten_mapping(node)
    result = PosDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise InputError(f"duplicate key {key!r}", loader.filename, key_node.start_mark.line + 1)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> PosList:
    result = PosList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load(text: str, filename: str) -> Any:
    """Parse one YAML document; a syntax error becomes an InputError at its line."""
    loader_cls = type("_FileLoader", (_Loader,), {"filename": filename})
    try:
        return yaml.load(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"invalid YAML: {exc.problem or exc.context}", filename, line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", filename) from None


def line_of(root: Any, path: Sequence[str | int]) -> int | None:
    """The line of the deepest element of ``path`` that exists in ``root``."""
    line = getattr(root, "line", None)
    node = root
    for part in path:
        if isinstance(node, PosDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, PosList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
