"""A block-style YAML writer for the plain manifests a render produces, byte for byte libyaml's.

``yamlio.dump`` writes every variant a render makes, and handing each document to
libyaml costs a Python node per value and two resolver calls per scalar: most of a
render's time. Nearly every manifest is maps, lists, short strings, integers and
booleans whose strings need no quotes; those are written here as text directly, exactly
as libyaml's emitter writes them with ``yamlio.dump``'s settings (block style, sorted
keys, indent 2, sequences inside maps not indented, width 1000). Anything else — a float,
a string that needs quoting or could be folded, a non-ASCII character, an empty string,
a key of another type — makes ``emit`` answer ``None`` and the caller uses libyaml for
the whole document, so the output never depends on which path wrote it
(``tests/unit/test_yamlemit.py`` compares the two on generated documents).

When does libyaml write a string plain (unquoted) in block context? When the resolver
reads the text back as a string (not a bool, number, null, timestamp, merge key …) and
its scalar analysis finds no indicator: no leading indicator character, no ``: `` or
``:`` at the end, no `` #``, no leading or trailing space, no line break, no special or
(here) non-ASCII character, no ``---``/``...`` start. ``plain`` below accepts a subset of
that set — strings of ``[A-Za-z0-9_/]`` (or ``-`` before one of the next set, not
``---``) then ``[A-Za-z0-9_./:=+@%~$()-]`` and inner
single spaces not after ``:``, up to 500 characters (so that no line reaches the width
at which libyaml folds a plain scalar at a space) — and then asks the same resolver.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_PLAIN = re.compile(r"(?:[A-Za-z0-9_/]|-(?=[A-Za-z0-9_./:=+@%~$()-]))(?:[A-Za-z0-9_./:=+@%~$()-]| (?! )(?<!: ))*")
MAX_PLAIN = 500  # characters: with keys of at most MAX_KEY and the indentation, lines stay far under 1000
MAX_KEY = 120  # libyaml writes keys over 128 characters as complex keys ("? ")
MAX_DEPTH = 60  # deeper documents go to libyaml (2 columns per level)

_known: dict[str, bool] = {}


def plain(text: str, resolves_to_str: Callable[[str], bool]) -> bool:
    """Whether libyaml writes ``text`` as a plain scalar (conservatively: False may be wrong, True is not)."""
    found = _known.get(text)
    if found is None:
        found = (
            len(text) <= MAX_PLAIN
            and _PLAIN.fullmatch(text) is not None
            and not text.endswith((":", " "))
            and not text.startswith("---")
            and resolves_to_str(text)
        )
        if len(_known) > 1 << 16:
            _known.clear()
        _known[text] = found
    return found


class _Unsupported(Exception):
    """The document has something this writer does not do: libyaml writes it."""


def emit(data: Any, resolves_to_str: Callable[[str], bool]) -> str | None:
    """The YAML text of a map as ``yamlio.dump`` writes it, or None where libyaml must."""
    if type(data) is not dict or not data:
        return None
    lines: list[str] = []
    try:
        _mapping(data, "", lines, resolves_to_str, 0)
    except _Unsupported:
        return None
    lines.append("")
    return "\n".join(lines)


def _scalar(value: Any, is_str: Callable[[str], bool]) -> str:
    kind = type(value)
    if kind is str:
        if plain(value, is_str):
            return value
        raise _Unsupported
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    raise _Unsupported


def _key(key: Any, is_str: Callable[[str], bool]) -> str:
    if type(key) is not str or len(key) > MAX_KEY or not plain(key, is_str):
        raise _Unsupported
    return key


def _mapping(data: dict[str, Any], indent: str, lines: list[str], is_str: Callable[[str], bool], depth: int) -> None:
    """Each entry of a non-empty map at ``indent``; the first line may already hold a ``- `` prefix (see _sequence)."""
    if depth > MAX_DEPTH:
        raise _Unsupported
    try:
        items = sorted(data.items())
    except TypeError:
        raise _Unsupported from None
    for key, value in items:
        head = f"{indent}{_key(key, is_str)}:"
        kind = type(value)
        if kind is dict:
            if value:
                lines.append(head)
                _mapping(value, indent + "  ", lines, is_str, depth + 1)
            else:
                lines.append(head + " {}")
        elif kind is list:
            if value:
                lines.append(head)
                _sequence(value, indent, lines, is_str, depth + 1)  # not indented inside a map
            else:
                lines.append(head + " []")
        else:
            lines.append(f"{head} {_scalar(value, is_str)}")


def _sequence(data: list[Any], indent: str, lines: list[str], is_str: Callable[[str], bool], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Unsupported
    inner = indent + "  "
    for item in data:
        kind = type(item)
        if kind is dict:
            if not item:
                lines.append(f"{indent}- {{}}")
                continue
            start = len(lines)
            _mapping(item, inner, lines, is_str, depth + 1)
            lines[start] = f"{indent}- {lines[start][len(inner) :]}"  # the first entry on the dash's line
        elif kind is list:
            if not item:
                lines.append(f"{indent}- []")
                continue
            start = len(lines)
            _sequence(item, inner, lines, is_str, depth + 1)
            lines[start] = f"{indent}- {lines[start][len(inner) :]}"
        else:
            lines.append(f"{indent}- {_scalar(item, is_str)}")
