"""YAML in and out: positions for file:line errors, and fast deterministic dumps.

Environment files are written by hand, so every error must point at a line. PyYAML's
nodes know their marks; we keep them in ``PosDict``/``PosList`` (plain dict and list
subclasses, so the rest of the code never notices) and refuse duplicate keys, which
PyYAML would otherwise silently resolve to the last one.

Rendered manifests are parsed and dumped once per variant, so those two use libyaml when
PyYAML has it (the PyPI wheels do) and build the dump's node tree directly: a render of
500 variants is dominated by YAML, and PyYAML's generic representer is its slowest part.
``load_plain`` also refuses what JSON cannot hold (see ``ContentError``), since what it
reads is sent to the API server as JSON.
"""

from __future__ import annotations

import io
import json
import math
import re
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


# What a YAML 1.1 reader refuses raw, or reads as a line break even inside quotes.
_YAML_UNSAFE = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\x85\u2028\u2029\ufeff]")


def to_json(value: Any) -> str:
    """JSON text that YAML reads back as the same value, wherever a template puts it.

    Templates interpolate values into YAML; a raw value with a newline and an indent can
    add keys (``tag: "v1\\n  securityContext: ..."``). JSON quotes and escapes every
    string, and JSON is YAML, except where PyYAML's reader differs: it cannot pair
    ``\\ud83d\\ude00`` surrogate escapes (so non-ASCII stays raw) and it takes NEL and
    the Unicode line separators as line breaks (so those, and what it refuses raw, are
    escaped). NaN and infinity have no JSON form and are refused.
    """
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class ContentError(yaml.MarkedYAMLError):
    """Well-formed YAML that a Kubernetes object cannot hold.

    The API server speaks JSON: one value per key, string keys, and only strings,
    numbers, booleans and null as scalars. YAML can say more (duplicate keys, which
    parsers resolve silently to the last one; timestamps, ``!!binary``, sets, NaN), and
    every such extra either changes the manifest without a word or crashes later in
    ``json.dumps``. A subclass of ``MarkedYAMLError`` so callers that report YAML errors
    by line report these the same way.
    """

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


_MERGE, _FLOAT = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:float"
_QUOTE_ME = {"tag:yaml.org,2002:timestamp": "timestamp", "tag:yaml.org,2002:value": "value indicator"}


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def problem_at(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """A YAML error's 1-based line and its problem in one line; PyYAML's own text spans several."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return (mark.line + 1 if mark else None), str(exc.problem or exc.context or "invalid YAML")
    return None, (str(exc).splitlines() or [type(exc).__name__])[0]


def load_plain(text: str) -> Any:
    """Parse one YAML document as JSON-compatible data, without positions.

    For rendered output and rendered files read back (git, backups), which must be
    exactly what the API server would receive: anything JSON cannot hold raises
    ``ContentError`` at its line (see there). Aliases are expanded, within a budget
    proportional to the text, so a few lines cannot expand into millions of nodes.
    """
    loader = _CLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _Builder(loader, len(text) + 1000).build(node)
    except RecursionError:
        raise ContentError("nested too deeply, or an alias that contains itself") from None
    finally:
        loader.dispose()


class _Builder:
    """SafeConstructor's result for JSON-compatible nodes, without its overhead, refusing the rest.

    Duplicate keys are found cheaply: a mapping whose dict is shorter than its node has
    one, and only then are its keys walked to name it.
    """

    def __init__(self, loader: Any, budget: int) -> None:
        self.loader = loader
        self.budget = budget

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value
            return self._scalar(node)
        if node.tag not in (_MAP, _SEQ):
            raise ContentError(
                f"tag {_short_tag(node.tag)} is not allowed: JSON has only maps and lists", node.start_mark
            )
        self.budget -= len(node.value)
        if self.budget < 0:
            raise ContentError("aliases expand the document far beyond its size", node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item) for item in node.value]
        pairs = node.value
        result: dict[str, Any] = {}
        if any(k.tag == _MERGE for k, _ in pairs):
            result = self._merged([v for k, v in pairs if k.tag == _MERGE])
            pairs = [(k, v) for k, v in pairs if k.tag != _MERGE]
            own: set[str] = set()
            for key_node, value_node in pairs:
                key = self._key(key_node)
                if key in own:
                    raise ContentError(f"duplicate key {key!r}", key_node.start_mark)
                own.add(key)
                result[key] = self.build(value_node)
            return result
        for key_node, value_node in pairs:
            result[self._key(key_node)] = self.build(value_node)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key_node, _ in pairs:
                if key_node.value in seen:
                    raise ContentError(f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return result

    def _key(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            return str(node.value)
        shown = node.value if isinstance(node, yaml.ScalarNode) else _short_tag(node.tag)
        raise ContentError(f"key {shown} is not a string: quote it", node.start_mark)

    def _merged(self, sources: list[yaml.Node]) -> dict[str, Any]:
        """``<<: *a`` or ``<<: [*a, *b]``: earlier maps win over later ones, the node's own keys over all."""
        merged: dict[str, Any] = {}
        for source in sources:
            for sub in source.value if isinstance(source, yaml.SequenceNode) else [source]:
                if not isinstance(sub, yaml.MappingNode):
                    raise ContentError("a merge key (<<) takes a map or a list of maps", sub.start_mark)
                for key, value in self.build(sub).items():
                    merged.setdefault(key, value)
        return merged

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag in (_INT, _BOOL, _NULL):
            return self.loader.construct_object(node, deep=True)
        if tag == _FLOAT:
            value = self.loader.construct_object(node, deep=True)
            if math.isfinite(value):
                return value
            raise ContentError(
                f"{node.value} is not a finite number, which JSON cannot hold: quote it", node.start_mark
            )
        if tag in _QUOTE_ME and not node.style:  # plain: the resolver chose the tag
            raise ContentError(
                f"{node.value} reads as a YAML {_QUOTE_ME[tag]}, which JSON cannot hold: quote it", node.start_mark
            )
        raise ContentError(
            f"tag {_short_tag(tag)} is not allowed: JSON has only strings, numbers, booleans and null", node.start_mark
        )
