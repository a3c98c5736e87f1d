"""One duration grammar: the environment file, --request-timeout and every other timeout flag."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsroll import durations
from dsroll.errors import InputError
from dsroll.kube.client import parse_request_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("30s", 30.0), ("5m", 300.0), ("1m30s", 90.0), ("1h2m3.5s", 3723.5), ("250ms", 0.25),
     ("1.5h", 5400.0), ("500us", 0.0005), ("2h0m0s", 7200.0)],
)  # fmt: skip
def test_go_durations_read_as_kubectl_reads_them(text: str, seconds: float) -> None:
    assert durations.seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "1m 30s", "-1s", "s", "1d", "1.s", "30S", "1m30"])
def test_anything_else_is_no_duration(text: str) -> None:
    assert not durations.is_duration(text)
    with pytest.raises(ValueError, match="is not a duration: use a duration like 30s, 5m or 1m30s"):
        durations.seconds(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m30s", 90.0), ("30", 30.0), ("0", None), ("2.5", 2.5), ("1h", 3600.0)]
)
def test_request_timeout_takes_kubectl_grammar(text: str, seconds: float | None) -> None:
    assert parse_request_timeout(text) == seconds


def test_a_bad_request_timeout_is_one_line_bad_input() -> None:
    with pytest.raises(InputError, match=r"--request-timeout '1 minute': use a duration like 30s, 5m or 1m30s"):
        parse_request_timeout("1 minute")


@settings(derandomize=True, max_examples=200, database=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h"])), min_size=1, max_size=4))
def test_a_sum_of_parts_is_the_sum_of_its_seconds(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    assert durations.seconds(text) == pytest.approx(sum(n * unit[u] for n, u in parts))
