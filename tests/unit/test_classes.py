"""Hardware-class algebra: Kubernetes match semantics, negation, and the promise that a
node is admitted by exactly the variant of the class it belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll.classes import (
    OPERATORS,
    HardwareClass,
    Overlap,
    Requirement,
    Term,
    admission_terms,
    and_affinity,
    classify,
    integer_keys,
    overlaps,
    terms_match,
)
from dsroll.errors import InputError


def req(key: str, op: str, *values: str) -> Requirement:
    return Requirement(key, op, values)


def hc(name: str, *reqs: Requirement) -> HardwareClass:
    return HardwareClass(name, reqs)


DEFAULT = HardwareClass("general", default=True)


# --- match semantics of each operator ------------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        (req("k", "In", "a", "b"), {"k": "b"}, True),
        (req("k", "In", "a", "b"), {"k": "c"}, False),
        (req("k", "In", "a"), {}, False),
        (req("k", "NotIn", "a"), {"k": "b"}, True),
        (req("k", "NotIn", "a"), {"k": "a"}, False),
        (req("k", "NotIn", "a"), {}, True),
        (req("k", "Exists"), {"k": ""}, True),
        (req("k", "Exists"), {}, False),
        (req("k", "DoesNotExist"), {}, True),
        (req("k", "DoesNotExist"), {"k": "a"}, False),
        (req("k", "Gt", "5"), {"k": "6"}, True),
        (req("k", "Gt", "5"), {"k": "5"}, False),
        (req("k", "Gt", "5"), {"k": "06"}, True),
        (req("k", "Gt", "5"), {"k": "+6"}, True),
        (req("k", "Gt", "-3"), {"k": "-2"}, True),
        (req("k", "Gt", "5"), {}, False),
        (req("k", "Gt", "5"), {"k": "many"}, False),
        (req("k", "Gt", "5"), {"k": " 6"}, False),
        (req("k", "Gt", "5"), {"k": "6_0"}, False),
        (req("k", "Gt", "5"), {"k": "٦"}, False),  # non-ASCII digit: Go's ParseInt refuses it
        (req("k", "Gt", "5"), {"k": str(2**63)}, False),  # outside int64: no match either
        (req("k", "Lt", "5"), {"k": "4"}, True),
        (req("k", "Lt", "5"), {"k": "5"}, False),
        (req("k", "Lt", "5"), {"k": "4.5"}, False),
        (req("k", "Lt", "5"), {}, False),
    ],
)
def test_requirement_matches_like_kubernetes(requirement: Requirement, labels: dict[str, str], expected: bool) -> None:
    assert requirement.matches(labels) is expected


def test_to_dict_sorts_values_and_omits_them_where_kubernetes_does() -> None:
    assert req("k", "In", "b", "a", "b").to_dict() == {"key": "k", "operator": "In", "values": ["a", "b"]}
    assert req("k", "Exists").to_dict() == {"key": "k", "operator": "Exists"}
    assert req("k", "DoesNotExist").to_dict() == {"key": "k", "operator": "DoesNotExist"}
    assert req("k", "Gt", "3").to_dict() == {"key": "k", "operator": "Gt", "values": ["3"]}


@pytest.mark.parametrize(
    ("op", "values"),
    [
        ("In", ()),
        ("NotIn", ()),
        ("Exists", ("a",)),
        ("Gt", ()),
        ("Gt", ("1", "2")),
        ("Lt", ("x",)),
        ("Gt", (str(2**63 - 1),)),
        ("Lt", (str(-(2**63)),)),
        ("Matches", ("a",)),
    ],
)
def test_invalid_requirements_are_refused(op: str, values: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Requirement("k", op, values)


# --- building classes from the environment file ---------------------------------------


def test_from_selector_puts_node_selector_first_as_in_requirements() -> None:
    gpu = HardwareClass.from_selector(
        "gpu", {"nvidia.com/gpu.present": "true"}, [{"key": "arch", "operator": "NotIn", "values": ["arm64"]}]
    )
    assert gpu.requirements == (req("nvidia.com/gpu.present", "In", "true"), req("arch", "NotIn", "arm64"))
    assert gpu.matches({"nvidia.com/gpu.present": "true", "arch": "amd64"})
    assert not gpu.matches({"nvidia.com/gpu.present": "true", "arch": "arm64"})
    assert HardwareClass.from_selector("general", None, None, default=True) == DEFAULT
    assert not DEFAULT.matches({})  # the default matches by elimination only


@pytest.mark.parametrize(
    ("node_selector", "expressions", "default", "message"),
    [
        (None, None, False, "needs a nodeSelector"),
        ({}, [], False, "needs a nodeSelector"),
        ({"a": "b"}, None, True, "default class takes no"),
        ({"gpu": True}, None, False, "strings"),
        (None, [{"key": "mem", "operator": "Gt", "values": ["1", "2"]}], False, "exactly one integer"),
        (None, [{"key": "mem", "operator": "Gt", "values": ["lots"]}], False, "exactly one integer"),
        (None, [{"key": "mem", "operator": "Near", "values": ["1"]}], False, "not one of"),
        (None, [{"key": "mem", "operator": "In", "values": "a"}], False, "list of strings"),
        (None, [{"key": "mem", "operator": "Exists", "value": ["a"]}], False, "unknown matchExpressions"),
    ],
)
def test_from_selector_reports_mistakes_naming_the_class(
    node_selector: Any, expressions: Any, default: bool, message: str
) -> None:
    with pytest.raises(InputError, match=rf"hardware class gpu: .*{re.escape(message)}"):
        HardwareClass.from_selector("gpu", node_selector, expressions, default=default)


def test_class_invariants_are_asserted() -> None:
    with pytest.raises(ValueError):
        HardwareClass("all")
    with pytest.raises(ValueError):
        HardwareClass("general", (req("a", "Exists"),), default=True)
    with pytest.raises(ValueError):
        classify([DEFAULT, HardwareClass("other", default=True)], {})
    with pytest.raises(ValueError):
        admission_terms([hc("a", req("a", "Exists")), hc("a", req("b", "Exists"))], "a")
    with pytest.raises(ValueError):
        admission_terms([DEFAULT], "missing")


# --- classify ---------------------------------------------------------------------------


def test_classify_lists_every_match_and_the_first_wins() -> None:
    classes = [hc("gpu", req("gpu", "In", "true")), DEFAULT, hc("zone-a", req("zone", "In", "a"))]
    assert classify(classes, {"gpu": "true", "zone": "a"}) == (("gpu", "zone-a"), "gpu")
    assert classify(classes, {"zone": "a"}) == (("zone-a",), "zone-a")
    assert classify(classes, {"zone": "b"}) == ((), "general")
    assert classify(classes[:1], {"zone": "b"}) == ((), None)


# --- negation and simplification ------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        (req("x", "In", "a", "b"), [(req("x", "NotIn", "a", "b"),)]),
        (req("x", "NotIn", "a"), [(req("x", "In", "a"),)]),
        (req("x", "Exists"), [(req("x", "DoesNotExist"),)]),
        (req("x", "DoesNotExist"), [(req("x", "Exists"),)]),
        (req("x", "Gt", "5"), [(req("x", "DoesNotExist"),), (req("x", "Lt", "6"),)]),
        (req("x", "Lt", "5"), [(req("x", "DoesNotExist"),), (req("x", "Gt", "4"),)]),
    ],
)
def test_a_later_class_is_negated_by_each_earlier_operator(earlier: Requirement, expected: list[Term]) -> None:
    classes = [hc("first", earlier), hc("second", req("y", "Exists"))]
    assert admission_terms(classes, "second") == [(*t, req("y", "Exists")) for t in expected]
    integral = earlier.operator in ("Gt", "Lt")  # non-integers: see the caveat test below
    for value in (None, "4", "5", "6", "05") if integral else (None, "a", "b", "c"):
        labels = {"y": "1"} | ({} if value is None else {"x": value})
        assert terms_match(admission_terms(classes, "second"), labels) is (not earlier.matches(labels))


@pytest.mark.parametrize(
    ("reqs", "expected"),
    [
        ([req("k", "In", "a", "b"), req("k", "In", "b", "c")], [(req("k", "In", "b"),)]),
        ([req("k", "In", "a", "b"), req("k", "NotIn", "a")], [(req("k", "In", "b"),)]),
        ([req("k", "NotIn", "a"), req("k", "NotIn", "b")], [(req("k", "NotIn", "a", "b"),)]),
        ([req("k", "Exists"), req("k", "In", "a")], [(req("k", "In", "a"),)]),
        ([req("k", "Exists"), req("k", "NotIn", "a")], [(req("k", "Exists"), req("k", "NotIn", "a"))]),
        ([req("k", "DoesNotExist"), req("k", "NotIn", "a")], [(req("k", "DoesNotExist"),)]),
        (
            [req("k", "Gt", "1"), req("k", "Lt", "9"), req("k", "Gt", "3"), req("k", "Lt", "7")],
            [(req("k", "Gt", "3"), req("k", "Lt", "7"))],
        ),
        ([req("k", "Gt", "3"), req("k", "In", "1", "5", "05", "x")], [(req("k", "In", "05", "5"),)]),
        ([req("k", "Gt", "3"), req("k", "NotIn", "1", "5", "x")], [(req("k", "Gt", "3"), req("k", "NotIn", "5"))]),
        # "05" and "+5" still match, so excluding "5" does not empty the range.
        (
            [req("k", "Gt", "4"), req("k", "Lt", "6"), req("k", "NotIn", "5")],
            [(req("k", "Gt", "4"), req("k", "Lt", "6"), req("k", "NotIn", "5"))],
        ),
        ([req("b", "Exists"), req("a", "Exists")], [(req("a", "Exists"), req("b", "Exists"))]),
        # contradictions
        ([req("k", "In", "a"), req("k", "DoesNotExist")], []),
        ([req("k", "Exists"), req("k", "DoesNotExist")], []),
        ([req("k", "In", "a"), req("k", "In", "b")], []),
        ([req("k", "In", "a"), req("k", "NotIn", "a")], []),
        ([req("k", "Gt", "4"), req("k", "Lt", "5")], []),
        ([req("k", "Gt", "4"), req("k", "DoesNotExist")], []),
        ([req("k", "Gt", "3"), req("k", "In", "x", "3")], []),
    ],
)
def test_requirements_on_one_key_are_merged(reqs: list[Requirement], expected: list[Term]) -> None:
    assert admission_terms([hc("c", *reqs)], "c") == expected


def test_default_class_admits_what_no_other_class_matches() -> None:
    classes = [
        hc("gpu", req("nvidia.com/gpu.present", "In", "true")),
        DEFAULT,
        hc("arm64", req("kubernetes.io/arch", "In", "arm64")),
    ]
    assert admission_terms(classes, "arm64") == [
        (req("kubernetes.io/arch", "In", "arm64"), req("nvidia.com/gpu.present", "NotIn", "true"))
    ]
    assert admission_terms(classes, "general") == [
        (req("kubernetes.io/arch", "NotIn", "arm64"), req("nvidia.com/gpu.present", "NotIn", "true"))
    ]
    assert admission_terms([DEFAULT], "general") == [()]


def test_subsumed_terms_are_dropped() -> None:
    # NOT big AND NOT small = NOT small, since every big node is small too.
    big = hc("big", req("mem", "Gt", "64"), req("zone", "In", "a", "b"))
    small = hc("small", req("zone", "In", "a", "b", "c"))
    assert admission_terms([big, small, DEFAULT], "general") == [(req("zone", "NotIn", "a", "b", "c"),)]
    assert admission_terms([big, small, DEFAULT], "small") == [
        (req("mem", "DoesNotExist"), req("zone", "In", "a", "b", "c")),
        (req("mem", "Lt", "65"), req("zone", "In", "a", "b", "c")),
        (req("zone", "In", "c"),),
    ]


def test_a_fully_shadowed_class_admits_no_node() -> None:
    classes = [hc("wide", req("zone", "Exists")), hc("narrow", req("zone", "In", "a")), DEFAULT]
    assert admission_terms(classes, "narrow") == []
    assert overlaps(classes) == [Overlap(first="wide", second="narrow")]


def test_a_class_that_matches_nothing_shadows_nothing() -> None:
    classes = [hc("never", req("a", "In", "x"), req("a", "In", "y")), hc("b", req("b", "Exists"))]
    assert admission_terms(classes, "never") == []
    assert admission_terms(classes, "b") == [(req("b", "Exists"),)]


# --- overlaps and integer keys ----------------------------------------------------------


def test_overlaps_name_the_winner_first() -> None:
    classes = [
        hc("gpu", req("gpu", "In", "true")),
        DEFAULT,
        hc("zone-a", req("zone", "In", "a")),
        hc("arm", req("arch", "In", "arm64"), req("gpu", "NotIn", "true")),
        hc("big", req("mem", "Gt", "8"), req("mem", "Lt", "10")),
        hc("small", req("mem", "Lt", "9")),
    ]
    assert overlaps(classes) == [
        Overlap("gpu", "zone-a"),
        Overlap("gpu", "big"),
        Overlap("gpu", "small"),
        Overlap("zone-a", "arm"),
        Overlap("zone-a", "big"),
        Overlap("zone-a", "small"),
        Overlap("arm", "big"),
        Overlap("arm", "small"),
    ]
    assert classify(classes, {"gpu": "true", "zone": "a"})[1] == "gpu"


def test_integer_keys_are_those_used_with_gt_or_lt() -> None:
    classes = [hc("a", req("mem", "Gt", "1"), req("zone", "In", "a")), hc("b", req("cpu", "Lt", "4"))]
    assert integer_keys(classes) == {"mem", "cpu"}


def test_a_non_integer_value_on_a_gt_key_is_admitted_by_at_most_one_class() -> None:
    classes = [hc("big", req("mem", "Gt", "64")), hc("zone-a", req("zone", "In", "a")), DEFAULT]
    for labels in ({"mem": "lots", "zone": "a"}, {"mem": "lots"}, {"mem": "lots", "zone": "b"}):
        admitted = [c.name for c in classes if terms_match(admission_terms(classes, c.name), labels)]
        assert admitted == []  # the documented caveat: it falls through every later class
    assert classify(classes, {"mem": "lots", "zone": "a"}) == (("zone-a",), "zone-a")


# --- and_affinity -----------------------------------------------------------------------

FIELD = {"key": "metadata.name", "operator": "In", "values": ["node-1"]}
OTHER_FIELD = {"key": "metadata.name", "operator": "NotIn", "values": ["node-2"]}
ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}


def test_and_affinity_without_existing_terms_is_the_class_terms() -> None:
    terms = [(req("a", "In", "x"),), (req("b", "Exists"), req("c", "DoesNotExist"))]
    assert and_affinity([], terms) == [
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
        {"matchExpressions": [{"key": "b", "operator": "Exists"}, {"key": "c", "operator": "DoesNotExist"}]},
    ]
    assert and_affinity([], []) == []


def test_and_affinity_multiplies_existing_terms_keeping_their_expressions_first_and_match_fields() -> None:
    existing = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "a"]}], "matchFields": [FIELD]},
        {"matchFields": [OTHER_FIELD]},
        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["true"]}]},  # contradicts the class
        {},  # matches no node in Kubernetes, so neither may the combination
    ]
    class_terms = [(req("gpu", "NotIn", "true"), req("zone", "In", "a", "b", "c"))]
    assert and_affinity(existing, class_terms) == [
        {
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b", "a"]},
                {"key": "gpu", "operator": "NotIn", "values": ["true"]},
            ],
            "matchFields": [FIELD],
        },
        {
            "matchExpressions": [
                {"key": "gpu", "operator": "NotIn", "values": ["true"]},
                {"key": "zone", "operator": "In", "values": ["a", "b", "c"]},
            ],
            "matchFields": [OTHER_FIELD],
        },
    ]


def test_and_affinity_drops_a_combination_another_one_covers() -> None:
    existing = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
    ]
    assert and_affinity(existing, [(req("gpu", "Exists"),)]) == [
        {
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a", "b"]},
                {"key": "gpu", "operator": "Exists"},
            ]
        }
    ]


def test_and_affinity_for_a_lone_default_class() -> None:
    everything = admission_terms([DEFAULT], "general")
    existing = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
    assert and_affinity(existing, everything) == existing
    # An empty nodeSelectorTerm would admit no node, so "every node" is a tautology.
    result = and_affinity([], everything)
    assert all(k8s_terms_match(result, labels) for labels in ({}, {"kubernetes.io/hostname": "n"}))


def test_and_affinity_does_not_share_structure_with_its_input() -> None:
    existing = [{"matchExpressions": [ZONE_A], "matchFields": [FIELD]}]
    result = and_affinity(existing, [(req("gpu", "Exists"),)])
    result[0]["matchExpressions"][0]["values"].append("z")
    result[0]["matchFields"][0]["values"].append("z")
    assert existing[0]["matchExpressions"][0]["values"] == ["a"]
    assert FIELD["values"] == ["node-1"]


def test_and_affinity_refuses_invalid_template_expressions() -> None:
    with pytest.raises(InputError, match="nodeSelectorTerms"):
        and_affinity([{"matchExpressions": [{"key": "m", "operator": "Gt", "values": ["x"]}]}], [()])


# --- properties ------------------------------------------------------------------------

KEYS = ("a", "b", "c", "d")
WORDS = ("x", "y", "z")
INTEGERS = ("-1", "0", "1", "2", "3", "02", "+1")
BOUNDS = ("-2", "-1", "0", "1", "2", "3", "4", "03")


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key, op = draw(st.sampled_from(KEYS)), draw(st.sampled_from(OPERATORS))
    if op in ("In", "NotIn"):
        values = draw(st.lists(st.sampled_from(WORDS + INTEGERS), min_size=1, max_size=3))
        return Requirement(key, op, tuple(values))
    if op in ("Gt", "Lt"):
        return Requirement(key, op, (draw(st.sampled_from(BOUNDS)),))
    return Requirement(key, op)


@st.composite
def class_lists(draw: st.DrawFn) -> list[HardwareClass]:
    count = draw(st.integers(0, 5))
    classes = [
        HardwareClass(f"c{i}", tuple(draw(st.lists(requirements(), min_size=1, max_size=3)))) for i in range(count)
    ]
    if count == 0 or draw(st.booleans()):
        classes.insert(draw(st.integers(0, count)), HardwareClass("default", default=True))
    return classes


# Per key: absent, or (any value, an integer value); `labels` picks the integer on keys used
# with Gt/Lt when the property needs it. Built once: building strategies per example is slow.
RawNode = dict[str, tuple[str, str] | None]
raw_nodes = st.lists(
    st.fixed_dictionaries(
        {k: st.none() | st.tuples(st.sampled_from(WORDS + INTEGERS), st.sampled_from(INTEGERS)) for k in KEYS}
    ),
    max_size=8,
)


def labels(raw: RawNode, int_keys: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    return {k: v[1] if k in int_keys else v[0] for k, v in raw.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(classes=class_lists(), nodes=raw_nodes)
def test_a_node_is_admitted_exactly_by_the_class_it_belongs_to(
    classes: list[HardwareClass], nodes: list[RawNode]
) -> None:
    all_terms = {c.name: admission_terms(classes, c.name) for c in classes}
    for terms in all_terms.values():  # deterministic, canonical output
        assert terms == sorted(terms) and all(list(t) == sorted(t) for t in terms)
    found = set(overlaps(classes))
    for node in (labels(raw, integer_keys(classes)) for raw in nodes):
        matched, winner = classify(classes, node)
        admitted = [name for name, terms in all_terms.items() if terms_match(terms, node)]
        assert admitted == ([] if winner is None else [winner])
        assert all(Overlap(a, b) in found for i, a in enumerate(matched) for b in matched[i + 1 :])


@settings(max_examples=300, deadline=None)
@given(classes=class_lists(), nodes=raw_nodes)
def test_with_non_integer_values_a_node_is_admitted_at_most_by_its_class(
    classes: list[HardwareClass], nodes: list[RawNode]
) -> None:
    all_terms = {c.name: admission_terms(classes, c.name) for c in classes}
    for node in map(labels, nodes):
        admitted = [name for name, terms in all_terms.items() if terms_match(terms, node)]
        assert admitted in ([], [classify(classes, node)[1]])


def k8s_expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """An oracle written apart from dsroll.classes, straight from the Kubernetes docs."""
    key, op, values = expr["key"], expr["operator"], expr.get("values", [])
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    value = labels.get(key)
    if value is None or not re.fullmatch(r"[+-]?[0-9]+", value) or not -(2**63) <= int(value) < 2**63:
        return False
    return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])


def k8s_terms_match(terms: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> bool:
    """nodeSelectorTerms are ORed; an empty term matches no node; matchFields are not generated."""
    return any(
        t.get("matchExpressions") and all(k8s_expression_matches(e, labels) for e in t["matchExpressions"])
        for t in terms
    )


k8s_terms = st.lists(
    st.lists(requirements(), max_size=3).map(lambda rs: {"matchExpressions": [r.to_dict() for r in rs]}),
    max_size=3,
)
random_class_terms = st.lists(st.lists(requirements(), max_size=3).map(tuple), max_size=3)


@settings(max_examples=300, deadline=None)
@given(existing=k8s_terms, classes=class_lists(), pick=st.integers(0, 5), raw_terms=random_class_terms, nodes=raw_nodes)
def test_and_affinity_is_the_conjunction(
    existing: list[dict[str, Any]],
    classes: list[HardwareClass],
    pick: int,
    raw_terms: list[Term],
    nodes: list[RawNode],
) -> None:
    name = classes[pick % len(classes)].name
    for class_terms in (admission_terms(classes, name), raw_terms):
        result = and_affinity(existing, class_terms)
        assert all(t.get("matchExpressions") for t in result)  # never an empty term
        for node in map(labels, nodes):
            template_ok = not existing or k8s_terms_match(existing, node)
            assert k8s_terms_match(result, node) is (template_ok and terms_match(class_terms, node))
