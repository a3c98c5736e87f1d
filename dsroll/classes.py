"""Hardware-class selector algebra: match, negate, disjoint.

A node belongs to the first class, in file order, whose selector it matches, and to the
default class when it matches none. Kubernetes has no "first match wins", so each variant
gets a required node affinity that spells its class out as a formula the scheduler can
evaluate on its own: the class's own selector AND NOT every earlier class, in disjunctive
normal form (nodeSelectorTerms are ORed, the expressions of one term ANDed).

Negation is exact for every operator but Gt/Lt. NOT (k Gt n) is written as
(k DoesNotExist) OR (k Lt n+1), and NOT (k Lt n) as (k DoesNotExist) OR (k Gt n-1):
Kubernetes cannot say "the value is not an integer", so a node whose value for a Gt/Lt
key does not parse as an integer matches neither a class nor its negation. Such a node is
admitted by no later class, the default included, though `classify` names one; it is never
admitted by two. Under-approximating a negation can only drop nodes, never add them, which
is why disjointness survives. The renderer warns about the keys `integer_keys` returns.

Everything else (merging requirements on one key, dropping contradictions and subsumed
terms) is exact, and the output is sorted so that rendering is byte-for-byte stable.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dsroll.errors import InputError
from dsroll.labels import HOSTNAME_LABEL

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
_OPPOSITE = {"In": "NotIn", "NotIn": "In", "Exists": "DoesNotExist", "DoesNotExist": "Exists"}
_T = TypeVar("_T")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
# Exists OR DoesNotExist on any key: the only way to say "every node" in nodeSelectorTerms,
# where an empty term matches no node at all.
_EVERY_NODE_KEY = HOSTNAME_LABEL


def _parse_int(value: str) -> int | None:
    """Parse like Go's strconv.ParseInt(v, 10, 64), which the scheduler uses for Gt/Lt.

    Python's int() is laxer (spaces, underscores, non-ASCII digits, no 64-bit limit) and
    would let us claim matches the scheduler refuses.
    """
    if not _GO_INT.fullmatch(value):
        return None
    number = int(value)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


@dataclass(frozen=True, order=True)
class Requirement:
    """One matchExpression. Values are kept sorted and unique so that equal requirements
    compare equal and render identically, whatever order the user wrote them in."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key must be a non-empty string")
        if self.operator not in OPERATORS:
            raise ValueError(f"operator {self.operator!r} is not one of {', '.join(OPERATORS)}")
        if not all(isinstance(v, str) for v in self.values):
            raise ValueError(f"{self.key}: values must be strings (quote them in YAML)")
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))
        count = len(self.values)
        if self.operator in ("In", "NotIn") and count == 0:
            raise ValueError(f"{self.key}: operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and count:
            raise ValueError(f"{self.key}: operator {self.operator} takes no values")
        if self.operator in ("Gt", "Lt"):
            number = _parse_int(self.values[0]) if count == 1 else None
            if number is None:
                raise ValueError(f"{self.key}: operator {self.operator} needs exactly one integer value")
            # These match no node, and their negation would need a bound outside int64.
            if (self.operator, number) in (("Gt", _INT64_MAX), ("Lt", _INT64_MIN)):
                raise ValueError(f"{self.key}: {self.operator} {number} can match no node")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.operator not in ("Exists", "DoesNotExist"):
            out["values"] = list(self.values)
        return out

    def matches(self, labels: Mapping[str, str]) -> bool:
        value, op = labels.get(self.key), self.operator
        if op in ("Exists", "DoesNotExist"):
            return (value is not None) == (op == "Exists")
        if value is None:
            return op == "NotIn"
        if op in ("In", "NotIn"):
            return (value in self.values) == (op == "In")
        number, bound = _parse_int(value), int(self.values[0])
        return number is not None and (number > bound if op == "Gt" else number < bound)


def _from_dict(expr: Mapping[str, Any]) -> Requirement:
    unknown = set(expr) - {"key", "operator", "values"}
    if unknown:
        raise ValueError(f"unknown matchExpressions field(s): {', '.join(sorted(unknown))}")
    values = expr.get("values") or ()
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(f"{expr.get('key')}: values must be a list of strings")
    return Requirement(expr.get("key", ""), expr.get("operator", ""), tuple(values))


Term = tuple[Requirement, ...]  # ANDed; a list of Terms is ORed, like nodeSelectorTerms


@dataclass(frozen=True)
class HardwareClass:
    """A named selector. `requirements` hold the nodeSelector entries as In requirements,
    then the matchExpressions; the default class has none and matches by elimination."""

    name: str
    requirements: tuple[Requirement, ...] = ()
    default: bool = False

    def __post_init__(self) -> None:
        if self.default and self.requirements:
            raise ValueError("the default class takes no nodeSelector or matchExpressions")
        if not self.default and not self.requirements:
            raise ValueError("needs a nodeSelector or matchExpressions (only the default class has none)")

    @classmethod
    def from_selector(
        cls,
        name: str,
        node_selector: Mapping[str, str] | None,
        match_expressions: Sequence[Mapping[str, Any]] | None,
        default: bool = False,
    ) -> HardwareClass:
        """Build from the environment file's shape, reporting mistakes as input errors
        that name the class, since users write these by hand."""
        try:
            reqs = [Requirement(key, "In", (value,)) for key, value in (node_selector or {}).items()]
            reqs += [_from_dict(expr) for expr in match_expressions or ()]
            return cls(name, tuple(reqs), default)
        except ValueError as exc:
            raise InputError(f"hardware class {name}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.default and all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True)
class _KeyState:
    """Every requirement on one key of a term, merged: the set of states (absent, or a
    value) the key may be in. Merging per key is what lets us drop contradictions and
    print each key once, without ever changing which nodes a term matches."""

    absent_ok: bool = True
    present_ok: bool = True
    allowed: frozenset[str] | None = None  # None: no In seen, any value not excluded
    excluded: frozenset[str] = frozenset()
    lo: int | None = None  # exclusive bounds; either one set means "an integer"
    hi: int | None = None

    def restrict(self, req: Requirement) -> _KeyState:
        absent_ok, present_ok, allowed, excluded = self.absent_ok, self.present_ok, self.allowed, self.excluded
        lo, hi, op, values = self.lo, self.hi, req.operator, frozenset(req.values)
        if op == "NotIn":
            excluded = excluded | values
        elif op == "DoesNotExist":
            present_ok = False
        else:  # every other operator needs the key
            absent_ok = False
            if op == "In":
                allowed = values if allowed is None else allowed & values
            elif op == "Gt":
                lo = int(req.values[0]) if lo is None else max(lo, int(req.values[0]))
            elif op == "Lt":
                hi = int(req.values[0]) if hi is None else min(hi, int(req.values[0]))
        return _KeyState(absent_ok, present_ok, allowed, excluded, lo, hi)

    @property
    def integral(self) -> bool:
        return self.lo is not None or self.hi is not None

    def int_range(self) -> tuple[int, int]:
        """Inclusive; empty when first > second."""
        low = _INT64_MIN if self.lo is None else self.lo + 1
        return low, _INT64_MAX if self.hi is None else self.hi - 1

    def value_ok(self, value: str) -> bool:
        if not self.present_ok or value in self.excluded:
            return False
        if self.allowed is not None and value not in self.allowed:
            return False
        return not self.integral or self.in_int_range(value)

    def in_int_range(self, value: str) -> bool:
        number = _parse_int(value)
        low, high = self.int_range()
        return number is not None and low <= number <= high

    def requirements(self, key: str) -> tuple[Requirement, ...] | None:
        """The fewest requirements that say the same thing; None when nothing can match.

        A NotIn never empties an integer range: "5", "05" and "+5" are distinct label
        values with one integer meaning, so excluding a few strings leaves others.
        """
        if not self.present_ok:
            return (Requirement(key, "DoesNotExist"),) if self.absent_ok else None
        if self.allowed is not None:
            kept = tuple(v for v in self.allowed if self.value_ok(v))
            return (Requirement(key, "In", kept),) if kept else None
        out: list[Requirement] = []
        if self.integral:
            low, high = self.int_range()
            if low > high:
                return None
            out += [Requirement(key, "Gt", (str(self.lo),))] if self.lo is not None else []
            out += [Requirement(key, "Lt", (str(self.hi),))] if self.hi is not None else []
        elif not self.absent_ok:
            out.append(Requirement(key, "Exists"))
        # Under a Gt/Lt only an excluded integer in range still excludes anything.
        excluded = tuple(v for v in self.excluded if not self.integral or self.in_int_range(v))
        if excluded:
            out.append(Requirement(key, "NotIn", excluded))
        return tuple(out)

    def implies(self, other: _KeyState) -> bool:
        """Whether every state this allows, `other` allows too (exact)."""
        if self.absent_ok and not other.absent_ok:
            return False
        if not self.present_ok:
            return True
        if self.allowed is not None:
            return all(other.value_ok(v) for v in self.allowed if self.value_ok(v))
        # From here on self allows infinitely many values, so other needs no In.
        if other.allowed is not None or not other.present_ok:
            return False
        if other.integral:
            if not self.integral:
                return False
            (s_low, s_high), (o_low, o_high) = self.int_range(), other.int_range()
            if s_low < o_low or s_high > o_high:
                return False
        return not any(self.value_ok(v) for v in other.excluded)


_FREE = _KeyState()


def _states(reqs: Iterable[Requirement]) -> dict[str, _KeyState]:
    states: dict[str, _KeyState] = {}
    for req in reqs:
        states[req.key] = states.get(req.key, _FREE).restrict(req)
    return states


def _simplify(reqs: Iterable[Requirement]) -> Term | None:
    """The canonical, sorted form of a conjunction; None when it is unsatisfiable."""
    out: list[Requirement] = []
    for key, state in _states(reqs).items():
        merged = state.requirements(key)
        if merged is None:
            return None
        out.extend(merged)
    return tuple(sorted(out))


def _implies(narrow: Mapping[str, _KeyState], wide: Mapping[str, _KeyState]) -> bool:
    """Whether every node the narrow term (as key states) matches, the wide one matches."""
    # Every key a term mentions constrains it, so a key narrow leaves free settles it.
    if not narrow.keys() >= wide.keys():
        return False
    return all(narrow[k].implies(s) for k, s in wide.items())


def _drop_covered(items: Iterable[_T], implies: Callable[[_T, _T], bool]) -> list[_T]:
    """Drop items another item already covers; keeps the first of equivalent ones."""
    kept: list[_T] = []
    for item in items:
        if not any(implies(item, other) for other in kept):
            kept = [other for other in kept if not implies(other, item)] + [item]
    return kept


def _minimise(terms: Iterable[Term]) -> list[Term]:
    with_states = [(term, _states(term)) for term in sorted(set(terms))]
    return sorted(t for t, _ in _drop_covered(with_states, lambda a, b: _implies(a[1], b[1])))


def _and(left: Sequence[Term], right: Sequence[Term]) -> list[Term]:
    products = (_simplify(a + b) for a, b in itertools.product(left, right))
    return _minimise(t for t in products if t is not None)


def _negate(term: Term) -> list[Term]:
    """NOT (r1 AND r2 ...) = NOT r1 OR NOT r2 ...; see the module docstring for Gt/Lt."""
    out: list[Term] = []
    for req in term:
        key, op = req.key, req.operator
        if op in _OPPOSITE:
            out.append((Requirement(key, _OPPOSITE[op], req.values),))
        else:
            bound = int(req.values[0]) + (1 if op == "Gt" else -1)
            flipped = Requirement(key, "Lt" if op == "Gt" else "Gt", (str(bound),))
            out += [(Requirement(key, "DoesNotExist"),), (flipped,)]
    return out


def _check(classes: Sequence[HardwareClass]) -> None:
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate hardware class names in {names}")
    if sum(c.default for c in classes) > 1:
        raise ValueError("at most one hardware class may be the default")


def classify(classes: Sequence[HardwareClass], labels: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """(every non-default class whose selector matched, in file order; the winning class name or None).

    This is the intended membership; a node with a non-integer value on a Gt/Lt key may be
    admitted by no variant at all (see the module docstring), which `terms_match` shows.
    """
    _check(classes)
    matched = tuple(c.name for c in classes if c.matches(labels))
    if matched:
        return matched, matched[0]
    return matched, next((c.name for c in classes if c.default), None)


def admission_terms(classes: Sequence[HardwareClass], name: str) -> list[Term]:
    """DNF that admits exactly the nodes whose class is `name`: its own requirements AND
    NOT(each earlier non-default class); for the default class, NOT(every non-default class).

    [] means it can admit no node (the class is shadowed). [()] means every node: only a
    default class with no other class gets it. Nodes with a non-integer value on a Gt/Lt key
    of an earlier class are admitted by no later class (module docstring).
    """
    _check(classes)
    target = next((c for c in classes if c.name == name), None)
    if target is None:
        raise ValueError(f"no hardware class named {name!r}")
    if target.default:
        terms: list[Term] = [()]
        earlier = [c for c in classes if not c.default]
    else:
        own = _simplify(target.requirements)
        terms = [] if own is None else [own]
        earlier = [c for c in classes[: classes.index(target)] if not c.default]
    for other in earlier:
        if not terms:
            break
        other_term = _simplify(other.requirements)
        if other_term is not None:  # a class that matches nothing shadows nothing
            terms = _and(terms, _negate(other_term))
    return terms


def terms_match(terms: Sequence[Term], labels: Mapping[str, str]) -> bool:
    """Logical evaluation: an empty Term is true here, unlike an empty nodeSelectorTerm."""
    return any(all(r.matches(labels) for r in term) for term in terms)


def and_affinity(existing_terms: Sequence[Mapping[str, Any]], class_terms: Sequence[Term]) -> list[dict[str, Any]]:
    """ANDs class_terms into a template's existing nodeSelectorTerms.

    Each existing term x each class term: the template's expressions first, verbatim, so
    its author recognises them, then the class's that they do not already imply; matchFields
    kept. Contradictory and covered combinations are dropped, and so is an existing term
    with neither expressions nor fields: Kubernetes matches no node with it. [] means no
    node is admitted (nodeSelectorTerms may not be empty: do not render the variant). When
    every node is admitted and the template had no terms, the result is "k Exists OR k
    DoesNotExist", since an empty term would admit nothing.
    """
    Combined = tuple[dict[str, _KeyState], list[Any], dict[str, Any]]  # logic, fields, rendered
    candidates: list[Combined] = []
    for raw, class_term in itertools.product(list(existing_terms) or [None], class_terms):
        raw_exprs = list(raw.get("matchExpressions") or []) if raw is not None else []
        fields = list(raw.get("matchFields") or []) if raw is not None else []
        if raw is not None and not raw_exprs and not fields:
            continue
        try:
            own = tuple(_from_dict(expr) for expr in raw_exprs)
        except ValueError as exc:
            raise InputError(f"template nodeSelectorTerms: {exc}") from None
        logic = _simplify(own + class_term)
        if logic is None:
            continue
        own_states = _states(own)
        added = [r.to_dict() for r in class_term if not _implies(own_states, _states((r,)))]
        exprs = copy.deepcopy(raw_exprs) + added
        if not exprs and not fields:
            every = [Requirement(_EVERY_NODE_KEY, op) for op in ("Exists", "DoesNotExist")]
            return [{"matchExpressions": [r.to_dict()]} for r in every]
        rendered: dict[str, Any] = {"matchExpressions": exprs} if exprs else {}
        if fields:
            rendered["matchFields"] = copy.deepcopy(fields)
        candidates.append((_states(logic), fields, rendered))

    def covers(narrow: Combined, wide: Combined) -> bool:
        return all(f in narrow[1] for f in wide[1]) and _implies(narrow[0], wide[0])

    return [rendered for _, _, rendered in _drop_covered(candidates, covers)]


@dataclass(frozen=True)
class Overlap:
    """Two classes one node can match at once; `first` comes earlier in the file and wins."""

    first: str
    second: str


def overlaps(classes: Sequence[HardwareClass]) -> list[Overlap]:
    """Pairs of non-default classes whose selectors some node can match together."""
    plain = [c for c in classes if not c.default]
    return [
        Overlap(a.name, b.name)
        for i, a in enumerate(plain)
        for b in plain[i + 1 :]
        if _simplify(a.requirements + b.requirements) is not None
    ]


def integer_keys(classes: Sequence[HardwareClass]) -> set[str]:
    """Keys used with Gt/Lt: nodes with a non-integer value there fall through every class."""
    return {r.key for c in classes for r in c.requirements if r.operator in ("Gt", "Lt")}
