"""The Jinja environment templates render in: a sandbox, loading only project files.

Templates arrive in pull requests and render in CI next to cluster credentials, so a
template is treated as untrusted code. It renders in Jinja's immutable sandbox: no
attribute starting with ``_`` (which closes every route to Python internals:
``__globals__``, ``__subclasses__``, ``__init__`` …), no method that mutates a list, dict
or set, ``str.format`` sandboxed too. On top of that, operators and calls that could
build a huge value (``'a' * 10**9``, ``2 ** 10**8``) are refused before they run, and
every ``{% include %}``, ``{% import %}`` and ``{% from %}`` is looked up through the
project's ``Source`` under the one path rule of ``projectpath``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dsroll import yamlio
from dsroll.gitsource import Source
from dsroll.projectpath import OutsideProject, beside

MAX_TEXT = 1 << 20
"""Characters (or items) one value, and one variant's rendered text, may have: 1 MiB.
The largest real DaemonSet manifests are a few KiB; a ConfigMap's limit is 1 MiB."""

MAX_INT_BITS = 1 << 16
"""Bits an integer a template computes may have (about 19,700 digits)."""


class TooLarge(SecurityError):
    """A template asked for a value larger than the sandbox allows."""


def _length(value: Any) -> int | None:
    """Size of a value whose size could blow up: strings, bytes, sequences, maps."""
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else None


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_size(value: Any, what: str) -> Any:
    size = _length(value)
    if size is not None and size > MAX_TEXT:
        raise TooLarge(f"{what} would be {size} long, more than the {MAX_TEXT} the sandbox allows")
    if _bits(value) > MAX_INT_BITS:
        raise TooLarge(f"{what} would be an integer of {_bits(value)} bits, more than {MAX_INT_BITS}")
    return value


def _refuse_huge_binop(op: str, left: Any, right: Any) -> None:
    """Estimate the result before computing it: computing is what exhausts memory."""
    what = f"{type(left).__name__} {op} {type(right).__name__}"
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            size = _length(seq)
            if size is not None and isinstance(times, int) and size * max(times, 0) > MAX_TEXT:
                raise TooLarge(f"{what} would be {size * times} long, more than the {MAX_TEXT} the sandbox allows")
        if _bits(left) + _bits(right) > MAX_INT_BITS:
            raise TooLarge(f"{what} would be an integer of more than {MAX_INT_BITS} bits")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and _bits(left) * right > MAX_INT_BITS:
            raise TooLarge(f"{what} would be an integer of about {_bits(left) * right} bits, more than {MAX_INT_BITS}")
    elif op == "+":
        sizes = (_length(left), _length(right))
        if sizes[0] is not None and sizes[1] is not None and sizes[0] + sizes[1] > MAX_TEXT:
            raise TooLarge(f"{what} would be {sizes[0] + sizes[1]} long, more than the {MAX_TEXT} the sandbox allows")


class _CheckedConcat(CodeGenerator):
    """Compiles ``a ~ b`` to a call the sandbox can size first: Jinja offers no hook for it."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.joined((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, stricter where a template could hide or blow up."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])
    code_generator_class = _CheckedConcat

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        """The rendered text, refused as soon as it passes MAX_TEXT rather than after it is built."""
        kept: list[str] = []
        total = 0
        for piece in pieces:
            total += len(piece)
            if total > MAX_TEXT:
                raise TooLarge(f"the rendered text would be more than the {MAX_TEXT} characters a variant may have")
            kept.append(piece)
        return "".join(kept)

    def joined(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``: templates never autoescape here, so this is Jinja's plain str_join, sized."""
        texts = [str(part) for part in parts]
        total = sum(map(len, texts))
        if total > MAX_TEXT:
            raise TooLarge(f"'~' would be {total} long, more than the {MAX_TEXT} the sandbox allows")
        return "".join(texts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _refuse_huge_binop(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right), f"{operator!r}")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls made from a template: a result too large stops here, before it is used again."""
        name = getattr(__obj, "__name__", "call")
        return _check_size(super().call(__context, __obj, *args, **kwargs), f"the result of {name}()")

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse at once: Jinja's default, an undefined value, would let ``is defined`` probe."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _sized(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is checked like a call's; Jinja calls filters directly."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        return _check_size(function(*args, **kwargs), f"the {name} filter's result")

    checked.__dict__.update(getattr(function, "__dict__", {}))  # keeps Jinja's pass_context / pass_eval_context marks
    checked.__name__ = getattr(function, "__name__", name)
    return checked


def _b64encode(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


class SourceLoader(jinja2.BaseLoader):
    """Finds templates beside the one being rendered, then from the project root.

    Every candidate goes through ``Source.confined``: an absolute name, a ``..`` above
    the root or a symlink out of the project raises OutsideProject, which the renderer
    reports at the line of the include.
    """

    def __init__(self, source: Source, search: tuple[str, ...]) -> None:
        self.source = source
        self.search = search
        self.loaded: set[str] = set()

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        for folder in self.search:
            try:
                path = self.source.confined(beside(folder, template))
            except OutsideProject as exc:
                raise OutsideProject(f"template {template!r} {exc}") from None
            if path is not None:
                self.loaded.add(path)
                return self.source.read_text(path), path, lambda: True
        raise jinja2.TemplateNotFound(template)


class TemplateSet:
    """One sandboxed Jinja environment per template folder, so each template compiles once per render."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._envs: dict[str, jinja2.Environment] = {}

    def environment(self, template: str) -> jinja2.Environment:
        folder = str(PurePosixPath(template).parent)
        if folder not in self._envs:
            env = Sandbox(
                loader=SourceLoader(self.source, (folder, "") if folder != "." else ("",)),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                autoescape=False,
                cache_size=-1,
            )
            env.filters["to_yaml"] = lambda v: yamlio.dump(v).rstrip("\n")
            env.filters["to_json"] = yamlio.to_json
            env.filters["b64encode"] = _b64encode
            for name, function in list(env.filters.items()):
                env.filters[name] = _sized(name, function)
            self._envs[folder] = env
        return self._envs[folder]

    def every_loaded(self) -> set[str]:
        """Every project path read so far, templates and what they included or imported."""
        found: set[str] = set()
        for env in self._envs.values():
            assert isinstance(env.loader, SourceLoader)
            found |= env.loader.loaded
        return found

    def loaded(self, template: str) -> set[str]:
        """The project paths this template's environment has loaded: the frames to look for."""
        loader = self.environment(template).loader
        assert isinstance(loader, SourceLoader)
        return loader.loaded


def template_line(tb: TracebackType | None, names: set[str]) -> tuple[str, int] | None:
    """The innermost template frame: Jinja rewrites tracebacks so frames name template lines."""
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
