"""The pilot's decision rule (docs/results.md): confirms, refutes or inconclusive, from per-image scores."""

from __future__ import annotations

import numpy as np
import pytest

from dng_jax.evaluation.scores import ScoreTable
from dng_jax.experiment.decision import decide

KNOWN = [f"k{i}" for i in range(20)]
UNKNOWN = [f"u{t}{i}" for t in "abc" for i in range(10)]


def _table(runs: int, known_shift, unknown_shift, seed: int) -> ScoreTable:
    """Scores of ``runs`` networks: a per-image base plus each run's shift (an array: one per run)."""
    rng = np.random.default_rng(0)
    base_known, base_unknown = rng.uniform(0.3, 0.7, 20), rng.uniform(0.05, 0.4, 30)
    noise = np.random.default_rng(seed).normal(0, 0.01, (runs, 50))
    scores = np.concatenate([base_known + np.reshape(known_shift, (-1, 1)) * np.ones((runs, 1)),
                             base_unknown + np.reshape(unknown_shift, (-1, 1)) * np.ones((runs, 1))], axis=1) + noise
    types = ("ct1",) * 20 + tuple(i[1] for i in UNKNOWN)
    return ScoreTable(tuple(str(r) for r in range(runs)), tuple(KNOWN + UNKNOWN), types, scores)


@pytest.mark.parametrize("known, unknown, verdict", [
    (0.0, 0.05, "confirms"),  # every run lifts the unknown types, CT1 kept
    (-0.04, 0.05, "inconclusive"),  # lifted, but CT1 costs more than 0.03 (not yet 0.05)
    (-0.08, 0.05, "refutes"),  # CT1 costs more than 0.05
    (0.0, -0.05, "refutes"),  # the unknown types lose
])
def test_the_rule(known, unknown, verdict):
    baseline = _table(1, 0.0, 0.0, seed=1)
    runs = _table(12, known, unknown, seed=2)
    d = decide(baseline, runs, KNOWN, UNKNOWN, n_boot=500)
    assert d["verdict"] == verdict, d["why"]
    assert d["runs"] == 12 and d["confirm_needs"] == 11 and d["refute_at_most"] == 6
    assert d["delta_unknown_low"] <= d["delta_unknown"] <= d["delta_unknown_high"]


def test_half_the_runs_beating_refutes_and_seven_of_eight_is_needed_to_confirm():
    baseline = _table(1, 0.0, 0.0, seed=1)
    eight = decide(baseline, _table(16, 0.0, np.r_[np.full(8, 0.03), np.full(8, -0.01)], seed=3), KNOWN, UNKNOWN,
                   n_boot=500)
    assert eight["runs_beating"] == 8 and eight["verdict"] == "refutes"
    thirteen = decide(baseline, _table(16, 0.0, np.r_[np.full(13, 0.06), np.full(3, -0.01)], seed=3), KNOWN,
                      UNKNOWN, n_boot=500)
    assert thirteen["runs_beating"] == 13 and thirteen["delta_unknown_low"] > 0
    assert thirteen["verdict"] == "inconclusive"  # 13 of 16: one short of 14
