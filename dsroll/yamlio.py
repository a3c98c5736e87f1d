"""YAML in and out: positions for file:line errors, and fast deterministic dumps.

Environment files are written by hand, so every error must point at a line. PyYAML's
nodes know their marks; we keep them in ``PosDict``/``PosList`` (plain dict and list
subclasses, so the rest of the code never notices) and refuse duplicate keys, which
PyYAML would otherwise silently resolve to the last one.

Rendered manifests are parsed and dumped once per variant, so those two use libyaml when
PyYAML has it (the PyPI wheels do) and build the dump's node tree directly: a render of
500 variants is dominated by YAML, and PyYAML's generic representer is its slowest part.
"""

from __future__ import annotations

import io
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


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_STR, _INT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null"))
_CDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(_CDumper):  # type: ignore[misc,valid-type]
    """Sorted keys, block style; plain data goes straight to nodes, anything else to PyYAML."""

    def represent(self, data: Any) -> None:
        self.serialize(self._node(data))
        self.represented_objects = {}
        self.object_keeper = []
        self.alias_key = None

    def _node(self, data: Any) -> yaml.Node:
        if isinstance(data, str):
            return yaml.ScalarNode(_STR, data)
        if isinstance(data, dict):
            try:
                items = sorted(data.items())
            except TypeError:  # keys of mixed types: PyYAML's own ordering
                return self.represent_data(dict(data))
            return yaml.MappingNode(_MAP, [(self._node(k), self._node(v)) for k, v in items], flow_style=False)
        if isinstance(data, list):
            return yaml.SequenceNode(_SEQ, [self._node(item) for item in data], flow_style=False)
        if data is None:
            return yaml.ScalarNode(_NULL, "null")
        if isinstance(data, bool):
            return yaml.ScalarNode(_BOOL, "true" if data else "false")
        if isinstance(data, int):
            return yaml.ScalarNode(_INT, str(data))
        return self.represent_data(data)


def dump(data: Any) -> str:
    """Deterministic YAML: sorted keys, block style, unicode kept, no line folding."""
    stream = io.StringIO()
    dumper = _Dumper(stream, default_flow_style=False, allow_unicode=True, width=1000, sort_keys=True)
    try:
        dumper.open()
        dumper.represent(data)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def load_plain(text: str) -> Any:
    """Parse one YAML document without positions (rendered output, files from git)."""
    loader = _CLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _construct(loader, node)
    finally:
        loader.dispose()


def _construct(loader: Any, node: yaml.Node) -> Any:
    """SafeConstructor's result for plain maps, lists and common scalars, without its overhead."""
    if (
        isinstance(node, yaml.MappingNode)
        and node.tag == _MAP
        and not any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value)
    ):
        return {_construct(loader, k): _construct(loader, v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        return [_construct(loader, item) for item in node.value]
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        return node.value
    return loader.construct_object(node, deep=True)
