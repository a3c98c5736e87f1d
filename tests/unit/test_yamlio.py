"""The fast YAML paths give exactly what PyYAML's own safe dumper and loader give.

The reference is the same emitter (libyaml's when PyYAML has it): only the node building
and construction are ours. libyaml and PyYAML's pure-Python emitter differ on exotic
keys (an empty-string key), which Kubernetes manifests never have.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import yamlio

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
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
