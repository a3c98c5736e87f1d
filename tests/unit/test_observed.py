"""When the DaemonSet controller has seen the spec a run wrote (``decide.observed``): the
rollout's DaemonSet watch can still hold the copy from before the write."""

from __future__ import annotations

from typing import Any

import pytest

from dsroll.rollout.decide import observed


def ds(generation: int, observed_generation: int | None) -> dict[str, Any]:
    status = {} if observed_generation is None else {"observedGeneration": observed_generation}
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("copy", "written", "expected"),
    [
        (ds(4, 4), 5, False),  # the watch's copy from before the write: observed, but not the run's spec
        (ds(5, 4), 5, False),  # the write, not yet observed
        (ds(5, 5), 5, True),
        (ds(6, 6), 5, True),  # a later spec observed covers the run's
        (ds(5, None), 5, False),  # no status yet
        (ds(1, 1), 0, True),  # nothing written by the run: any observed copy
    ],
)
def test_only_a_copy_at_least_as_new_as_the_write_and_observed_counts(
    copy: dict[str, Any], written: int, expected: bool
) -> None:
    assert observed(copy, written) is expected
