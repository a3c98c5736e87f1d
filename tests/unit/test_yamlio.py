"""The fast YAML paths give exactly what PyYAML's own safe dumper and loader give.

The reference is the same emitter (libyaml's when PyYAML has it): only the node building
and construction are ours. libyaml and PyYAML's pure-Python emitter differ on exotic
keys (an empty-string key), which Kubernetes manifests never have.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import yamlio

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["true", "no", "1.0", "0x1F", "~", "null", "- a", "a: b", "#x", "'q'", 'd"q', "x\ny", " lead"]),
)
data = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def reference_dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=SAFE_DUMPER, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1000)


documents = st.dictionaries(st.text(max_size=8), data, max_size=5) | st.lists(data, max_size=5)


@settings(max_examples=500, deadline=None)
@given(documents)
def test_dump_is_byte_identical_to_safe_dump(obj: Any) -> None:
    assert yamlio.dump(obj) == reference_dump(obj)


@settings(max_examples=300, deadline=None)
@given(data)
def test_load_plain_equals_safe_load(obj: Any) -> None:
    text = reference_dump(obj)
    assert yamlio.load_plain(text) == yaml.safe_load(text)


def test_position_containers_dump_like_plain_ones() -> None:
    loaded = yamlio.load("b: [1, {c: d}]\na: x\n", "f.yaml")
    assert isinstance(loaded, yamlio.PosDict)
    assert yamlio.dump(loaded) == reference_dump({"a": "x", "b": [1, {"c": "d"}]})


def test_example_manifests_dump_the_same_with_or_without_libyaml() -> None:
    """Rendered files must not depend on whether this machine's PyYAML has libyaml."""
    from pathlib import Path

    from dsroll.gitsource import FsSource
    from dsroll.render import load_environment, render_environment

    source = FsSource(Path(__file__).resolve().parents[2])
    for name in ("dev", "prod"):
        for variant in render_environment(load_environment(source, f"environments/{name}.yaml"), source).variants:
            pure = yaml.dump(
                dict(variant.manifest),
                Dumper=yaml.SafeDumper,
                sort_keys=True,
                default_flow_style=False,
                allow_unicode=True,
                width=1000,
            )
            assert yamlio.dump(variant.manifest) == pure, variant.name


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("a: 1\nb:\n  c: 2\n  c: 3\n", 4, "duplicate key 'c'"),
        ("base: &b {a: 1}\nm:\n  <<: *b\n  x: 1\n  x: 2\n", 5, "duplicate key 'x'"),
        ("d: 2024-01-01\n", 1, "2024-01-01 reads as a YAML timestamp, which JSON cannot hold: quote it"),
        ("x:\n  b: !!binary aGk=\n", 2, "tag !!binary is not allowed"),
        ("s: !!set {a: null}\n", 1, "tag !!set is not allowed"),
        ("o: !!omap [a: 1]\n", 1, "tag !!omap is not allowed"),
        ("x: !custom 1\n", 1, "tag !custom is not allowed"),
        ("f: .nan\n", 1, ".nan is not a finite number"),
        ("f: -.inf\n", 1, "-.inf is not a finite number"),
        ("k: {1: a}\n", 1, "key 1 is not a string: quote it"),
        ("on: true\n", 1, "key on is not a string: quote it"),
    ],
)
def test_load_plain_refuses_what_json_cannot_hold(text: str, line: int, problem: str) -> None:
    with pytest.raises(yamlio.ContentError) as info:
        yamlio.load_plain(text)
    assert yamlio.problem_at(info.value)[0] == line
    assert problem in yamlio.problem_at(info.value)[1]


def test_load_plain_keeps_merge_keys_and_refuses_runaway_aliases() -> None:
    assert yamlio.load_plain("b: &b {a: 1, b: 2}\nm: {<<: *b, b: 3}\n") == {
        "b": {"a": 1, "b": 2},
        "m": {"a": 1, "b": 3},
    }
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    with pytest.raises(yamlio.ContentError, match="aliases expand"):
        yamlio.load_plain(laughs)
    with pytest.raises(yamlio.ContentError, match="alias that contains itself"):
        yamlio.load_plain("x: &a [*a]\n")


@settings(max_examples=300, deadline=None)
@given(st.text() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_to_json_reads_back_as_the_same_value_on_any_line(value: Any) -> None:
    for line in ("k: {}\n", "- {}\n", "k: [{}]\n", "a: {{b: {}}}\n"):
        text = line.format(yamlio.to_json(value))
        parsed = yamlio.load_plain(text)
        assert parsed == _expected(line, value)


def _expected(line: str, value: Any) -> Any:
    return {
        "k: {}\n": {"k": value},
        "- {}\n": [value],
        "k: [{}]\n": {"k": [value]},
        "a: {{b: {}}}\n": {"a": {"b": value}},
    }[line]
