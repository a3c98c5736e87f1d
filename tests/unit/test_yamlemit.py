"""yamlemit writes what libyaml writes, byte for byte, or declines (and libyaml writes it)."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import yamlemit, yamlio


def libyaml(data: Any) -> str:
    """yamlio.dump's libyaml path, always."""
    stream = io.StringIO()
    dumper = yamlio._Dumper(stream, default_flow_style=False, allow_unicode=True, width=1000, sort_keys=True)
    try:
        dumper.open()
        dumper.represent(data)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


# Texts near every rule of libyaml's scalar analysis: indicators first and inside, ": ",
# " #", spaces at the ends, what the resolver reads as bool/int/float/null/timestamp.
TRICKY = [
    "yes", "No", "on", "OFF", "true", "null", "~", "", "0", "-1", "1.5", "1e3", "0x1f", "0o17", "1_000",
    "2001-12-14", "12:30", "1:20:30", ".inf", ".NaN", "<<", "=", "---", "...", "- a", "-a", "a:", "a: b", "a:b",
    "a #b", "a#b", "#a", "?a", "a?", "a ", " a", "a  b", "a\nb", "[a]", "a,b", "{a}", "'a'", '"a"', "@a", "%a",
    "!a", "&a", "*a", "|a", ">a", "`a", "a/b", "/a", "_a", "a=b", "$(A)", "a~", "é", "a\tb", "x" * 130, "y" * 600,
]  # fmt: skip
texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(alphabet="ab: #-./=_$()@%~?,'\"\n", max_size=12),
    st.from_regex(r"[a-z0-9][a-z0-9./:=-]{0,30}", fullmatch=True),
)
scalars = st.one_of(texts, st.integers(-(10**6), 10**6), st.booleans(), st.none())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(texts, documents, max_size=5))
def test_same_bytes_as_libyaml_or_declined(data: dict[str, Any]) -> None:
    fast = yamlemit.emit(data, yamlio._reads_as_str)
    if fast is not None:
        assert fast == libyaml(data)
    assert yamlio.dump(data) == libyaml(data)


def test_every_tricky_text_as_key_and_value() -> None:
    for text in TRICKY:
        for data in ({"k": text}, {text: 1}, {"k": [text, {"n": text}]}):
            fast = yamlemit.emit(data, yamlio._reads_as_str)
            assert fast is None or fast == libyaml(data), text


def test_plain_only_where_libyaml_writes_plain() -> None:
    assert yamlemit.plain("example.com/agent:1.0", yamlio._reads_as_str)
    assert yamlemit.plain("--config=/fluent-bit/etc/fluent-bit.conf", yamlio._reads_as_str)
    assert yamlemit.plain("-a", yamlio._reads_as_str)
    for text in ("yes", "1.5", "-1", "a: b", "", " a", "a:", "- a", "-", "---a", "x" * 600):
        assert not yamlemit.plain(text, yamlio._reads_as_str), text


def test_a_rendered_manifest_takes_the_fast_path() -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent-gpu", "labels": {"dsroll.io/class": "gpu"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [{"name": "agent", "image": "example.com/agent:1.0", "args": ["--v=2"]}],
                    "tolerations": [{"operator": "Exists"}],
                    "affinity": {"nodeAffinity": {"required": {"terms": [{"matchExpressions": []}]}}},
                },
            },
        },
    }
    fast = yamlemit.emit(manifest, yamlio._reads_as_str)
    assert fast is not None and fast == libyaml(manifest)


def test_declines_floats_and_non_maps() -> None:
    assert yamlemit.emit({"a": 0.5}, yamlio._reads_as_str) is None
    assert yamlemit.emit(["a"], yamlio._reads_as_str) is None
    assert yamlemit.emit({}, yamlio._reads_as_str) is None
    assert yamlio.dump({"a": 0.5}) == libyaml({"a": 0.5})
