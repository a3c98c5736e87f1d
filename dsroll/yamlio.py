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

from dsroll import yamlemit
from dsroll.errors import InputError


class PosDict(dict[Any, Any]):
    """A mapping with the 1-based line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class PosList(list[Any]):
    """A sequence with the 1-based line of itself and of each of its items."""

    line: int = 0
    item_lines: list[int]


# Limits of a hand-written file. Every later step (pydantic, deep merge, Jinja) copies
# what an alias shares, so these count the data as if every alias were written out.
MAX_DEPTH = 50  # mappings and lists inside each other; the examples need 5
MAX_NODES = 100_000  # values, keys and containers once aliases are expanded
MAX_TEXT = 10 * 2**20  # characters of scalars once aliases are expanded
MAX_NUMBER = 100  # characters of one number: converting longer ones costs quadratic time
_SURROGATE = re.compile("[\ud800-\udfff]")
_REFUSED_TAGS = {"binary": "bytes", "set": "a set", "omap": "an ordered map", "pairs": "a list of pairs"}


class _Size:
    """An expanded subtree: how many nodes, how many scalar characters, how deep."""

    __slots__ = ("depth", "nodes", "text")

    def __init__(self, nodes: int, text: int, depth: int) -> None:
        self.nodes, self.text, self.depth = nodes, text, depth


class _Loader(yaml.SafeLoader):
    """SafeLoader whose containers carry positions, refusing what a plain data file has no use for.

    Composing is where sizes are cheap to know: PyYAML hands an alias the node its anchor
    composed, so each node's expanded size is computed once, bottom-up, and an alias adds
    its target's size to the running total instead of being walked again.
    """

    filename = "<string>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, _Size] = {}
        self._total = _Size(0, 0, 0)

    def fail(self, message: str, mark: yaml.Mark | None) -> InputError:
        return InputError(message, self.filename, mark.line + 1 if mark else None)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise self.fail(f"alias *{event.anchor} refers to a mapping or list that contains it", event.start_mark)
            if self._depth + size.depth > MAX_DEPTH:
                raise self.fail(
                    f"alias *{event.anchor} nests values more than {MAX_DEPTH} levels deep", event.start_mark
                )
            self._add(size, f"alias *{event.anchor} makes", event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self.fail(f"values nested more than {MAX_DEPTH} levels deep", event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            surrogate = _SURROGATE.search(node.value)
            if surrogate:  # only an escape makes one ("\ud800"); no file can be written with it
                raise self.fail(
                    f"\\u{ord(surrogate[0]):04x} is not a character (a lone UTF-16 surrogate)", node.start_mark
                )
            size = _Size(1, len(node.value), 0)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            sizes = [self._sizes[id(child)] for child in children]
            size = _Size(
                1 + sum(s.nodes for s in sizes),
                sum(s.text for s in sizes),
                1 + max((s.depth for s in sizes), default=0),
            )
        self._sizes[id(node)] = size
        self._add(_Size(1, size.text if isinstance(node, yaml.ScalarNode) else 0, 0), "the file has", node.start_mark)
        return node

    def _add(self, size: _Size, what: str, mark: yaml.Mark) -> None:
        self._total.nodes += size.nodes
        self._total.text += size.text
        if self._total.nodes > MAX_NODES:
            raise self.fail(f"{what} more than {MAX_NODES:,} values with aliases expanded", mark)
        if self._total.text > MAX_TEXT:
            raise self.fail(f"{what} more than {MAX_TEXT // 2**20} MiB of text with aliases expanded", mark)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> PosDict:
    """Keys are strings and unique; keys merged in with ``<<`` are overridden by the mapping's own."""
    written = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merged pairs first, then the written ones
    merged = len(node.value) - written
    result = PosDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    own: set[str] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise loader.fail(f"a {kind} cannot be a key: keys are strings", key_node.start_mark)
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            written = f"key {shorten(key_node.value)}" if key_node.value else "an empty key"
            raise loader.fail(f"{written} is read as {_kind(key)}, but keys are strings: quote it", key_node.start_mark)
        if i >= merged:
            if key in own:
                raise loader.fail(f"duplicate key {shorten(key)!r}", key_node.start_mark)
            own.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a " + type(value).__name__


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> PosList:
    result = PosList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _construct_number(loader: _Loader, node: yaml.ScalarNode) -> Any:
    if len(node.value) > MAX_NUMBER:
        raise loader.fail(f"a number of more than {MAX_NUMBER} characters: quote it if it is text", node.start_mark)
    if node.tag.endswith(":int"):
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> str:
    """A date stays the text it was written as: templates print it, nothing computes with it."""
    return str(node.value)


def _refuse_tag(loader: _Loader, node: yaml.Node) -> Any:
    what = _REFUSED_TAGS[node.tag.rsplit(":", 1)[-1]]
    raise loader.fail(
        f"!!{node.tag.rsplit(':', 1)[-1]} ({what}) is not allowed here: "
        "use strings, numbers, booleans, null, lists and mappings",
        node.start_mark,
    )


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_number)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_number)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
for _tag in _REFUSED_TAGS:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


def load(text: str, filename: str) -> Any:
    """Parse one YAML document; every problem becomes an InputError at its line.

    Empty input gives None. Nothing but InputError leaves this function for any text.
    """
    loader = None
    try:
        loader = _Loader(text)  # checks every character already
        loader.filename = filename
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(f"invalid YAML: character U+{exc.character:04X} is not allowed", filename, line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if exc.problem == "but found another document":
            raise InputError("a second YAML document ('---'): the file must be exactly one", filename, line) from None
        raise InputError(f"invalid YAML: {_one_line(exc.problem or exc.context)}", filename, line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {_one_line(str(exc))}", filename) from None
    finally:
        if loader is not None:
            loader.dispose()


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def shorten(text: str, limit: int = 40) -> str:
    """User text quoted in a message: one line, and short enough to read."""
    flat = _one_line(text) if "\n" in text or "\r" in text else text
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
_CSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVED: dict[tuple[type, str, tuple[bool, bool]], str] = {}  # (resolver class, text, implicit) -> tag
_RESOLVED_MAX = 1 << 16


def _resolve_scalar(resolver: Any, kind: type, value: Any, implicit: Any) -> str:
    """``BaseResolver.resolve``, remembered for scalars: libyaml's parser and emitter ask it
    about every scalar (twice per scalar when dumping), and its answer is a pure function of
    the kind, the text and the implicit flags. Regex matching was most of a render's YAML
    time; a render of many variants asks about the same few hundred texts again and again."""
    if kind is not yaml.ScalarNode or not isinstance(value, str):
        return str(yaml.resolver.BaseResolver.resolve(resolver, kind, value, implicit))
    key = (type(resolver), value, (bool(implicit[0]), bool(implicit[1])) if implicit else (False, False))
    found = _RESOLVED.get(key)
    if found is None:
        found = str(yaml.resolver.BaseResolver.resolve(resolver, kind, value, implicit))
        if len(_RESOLVED) >= _RESOLVED_MAX:
            _RESOLVED.clear()
        _RESOLVED[key] = found
    return found


class _CLoader(_CSafeLoader):  # type: ignore[misc,valid-type]
    """libyaml's parser with the remembered resolver (SafeLoader's resolvers, unchanged)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit is not None:  # the common case, inline: one call per scalar
            found = _RESOLVED.get((_CLoader, value, (bool(implicit[0]), bool(implicit[1]))))
            if found is not None:
                return found
        return _resolve_scalar(self, kind, value, implicit)


class _Dumper(_CDumper):  # type: ignore[misc,valid-type]
    """Sorted keys, block style; plain data goes straight to nodes, anything else to PyYAML."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        return _resolve_scalar(self, kind, value, implicit)

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


_RESOLVER = yaml.resolver.Resolver()  # the implicit resolvers of SafeDumper and SafeLoader


def _reads_as_str(text: str) -> bool:
    return _resolve_scalar(_RESOLVER, yaml.ScalarNode, text, (True, False)) == _STR


def dump(data: Any) -> str:
    """Deterministic YAML: sorted keys, block style, unicode kept, no line folding.

    Plain manifests are written as text by ``yamlemit`` (the same bytes, far faster);
    the rest by libyaml."""
    fast = yamlemit.emit(data, _reads_as_str)
    if fast is not None:
        return fast
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
