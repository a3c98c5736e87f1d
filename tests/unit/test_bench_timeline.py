"""The benchmark's witness figures (``bench/timeline.py``): pure functions of a pod timeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import timeline  # bench/, not a package
from timeline import Replacement


def test_the_mean_in_replacement_is_every_nodes_time_over_the_span() -> None:
    # two nodes replaced together for 2 s, then one alone for 1 s: 5 node-seconds over 3 s
    done = [Replacement("a", 0.0, 2.0), Replacement("b", 0.0, 2.0), Replacement("c", 2.0, 3.0)]
    assert timeline.mean_down(done) == pytest.approx(5 / 3)
    assert timeline.summary(done, "x")["meanDown"] == 1.7


def test_a_rollout_that_kept_k_nodes_busy_throughout_averages_k() -> None:
    # waves of 3 back to back, 4 waves of 0.5 s
    done = [Replacement(f"n{w}{i}", w * 0.5, (w + 1) * 0.5) for w in range(4) for i in range(3)]
    assert timeline.mean_down(done) == pytest.approx(3.0)


def test_no_replacement_has_no_mean() -> None:
    assert timeline.mean_down([]) == 0.0
    assert timeline.mean_down([Replacement("a", 1.0, 1.0)]) == 0.0
