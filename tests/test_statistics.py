"""Bootstrap intervals and paired comparisons, checked against direct computations and known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from dng_jax.evaluation.statistics import MIN_N, bootstrap_indices, bootstrap_mean, paired_comparison


def test_resamples_stay_inside_their_strata():
    strata = ["b", "a", "b", "c", "a", "b"]
    idx = bootstrap_indices(strata, n_boot=50, seed=1)
    assert idx.shape == (50, 6)
    s = np.asarray(strata)
    for row in idx:  # every resample has as many images of each type as the data
        assert sorted(s[row].tolist()) == sorted(strata)


def test_bootstrap_equals_a_direct_loop_with_the_same_draws():
    values = np.array([0.1, 0.5, 0.3, 0.9, 0.4, 0.2, 0.8])
    strata = np.array([0, 0, 1, 1, 1, 2, 2])
    rng = np.random.default_rng(7)
    means = np.zeros(300)
    draws = {s: rng.integers(0, np.sum(strata == s), (300, np.sum(strata == s))) for s in (0, 1, 2)}
    for b in range(300):  # one resample at a time, as a textbook writes it
        picked = []
        for s in (0, 1, 2):
            members = np.flatnonzero(strata == s)
            picked += [values[members[j]] for j in draws[s][b]]
        means[b] = np.mean(picked)
    lo, hi = np.quantile(means, [0.025, 0.975])
    iv = bootstrap_mean(values, strata, n_boot=300, seed=7)
    assert iv.estimate == pytest.approx(values.mean())
    assert (iv.low, iv.high) == pytest.approx((lo, hi), abs=1e-12)


def test_bootstrap_approaches_the_exact_distribution():
    """n = 3 values: the 27 equally likely resamples give the exact bootstrap distribution of the mean."""
    values = np.array([0.0, 0.3, 1.0])
    exact = np.array([np.mean(values[list(c)]) for c in itertools.product(range(3), repeat=3)])
    iv = bootstrap_mean(values, n_boot=200_000, seed=0, level=0.9)
    # the 5% / 95% quantiles of the exact (discrete) distribution
    lo, hi = np.quantile(exact, [0.05, 0.95], method="inverted_cdf")
    assert iv.low == pytest.approx(lo, abs=1e-9) and iv.high == pytest.approx(hi, abs=1e-9)


def test_paired_comparison_known_answers():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.8, 20)
    types = ["x"] * 10 + ["y"] * 10
    up = paired_comparison(a, a + 0.1, types)
    assert up.diff.estimate == pytest.approx(0.1) and up.diff.low == pytest.approx(0.1)
    assert up.diff.high == pytest.approx(0.1) and up.improved == 1.0 and up.worse == 0.0
    assert up.p_wilcoxon < 1e-4 and up.better and not up.worse_than
    same = paired_comparison(a, a.copy(), types)
    assert same.diff.estimate == 0 and same.p_wilcoxon == 1.0 and not same.better and not same.worse_than
    # differences that cancel: +d and -d in pairs -> no effect, Wilcoxon p = 1, interval around 0
    d = np.repeat(rng.uniform(0.05, 0.2, 10), 2) * np.tile([1, -1], 10)
    sym = paired_comparison(a, a + d, types)
    assert sym.diff.estimate == pytest.approx(0, abs=1e-12) and sym.p_wilcoxon > 0.9
    assert sym.diff.low < 0 < sym.diff.high and sym.improved == sym.worse == 0.5
    # the p-value is scipy's Wilcoxon signed-rank test of the differences
    b = a + rng.normal(0.05, 0.1, 20)
    assert paired_comparison(a, b, types).p_wilcoxon == pytest.approx(stats.wilcoxon(b - a).pvalue)


def test_no_verdict_from_few_images():
    a = np.zeros(MIN_N - 1)
    few = paired_comparison(a, a + 0.5)
    assert few.diff.low == pytest.approx(0.5) and not few.better  # degenerate interval, no verdict
    assert paired_comparison(np.zeros(MIN_N), np.full(MIN_N, 0.5)).better
    # 20 images, but 10 strata of 2 (the paper protocol): resampling 2 images halves a stratum's variance
    pairs = np.repeat(np.arange(10), 2)
    thin = paired_comparison(np.zeros(20), np.full(20, 0.5), pairs)
    assert thin.smallest == 2 and not thin.decisive and not thin.better
    assert paired_comparison(np.zeros(20), np.full(20, 0.5), pairs // 5).better  # 2 strata of 10
    with pytest.raises(ValueError, match="one length"):
        paired_comparison(np.zeros(3), np.zeros(4))


def test_rounding_of_seed_means_is_a_tie():
    """The same scores averaged over seeds in another order differ in the last bit: not an improvement."""
    rng = np.random.default_rng(1)
    seeds = rng.uniform(0, 1, (3, 50))
    base = seeds.mean(axis=0)
    runs = (seeds[2] + seeds[0] + seeds[1]) / 3
    assert np.any(runs != base)  # float rounding: the premise of the test
    pc = paired_comparison(base, runs)
    assert pc.improved == pc.worse == 0.0 and pc.p_wilcoxon == 1.0 and pc.diff.estimate == 0.0
