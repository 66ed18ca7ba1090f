"""Bootstrap intervals, the two-level interval, the sign-flip test and Holm's adjustment, checked against
direct computations, known answers and a coverage simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dng_jax.evaluation import statistics as st
from dng_jax.evaluation.coverage import coverage, simulate
from dng_jax.evaluation.statistics import (MIN_N, N_PERM, TOO_FEW, bootstrap_indices, bootstrap_mean, holm,
                                           paired_comparison, sign_flip_test, two_level_intervals, two_level_mean,
                                           verdict, verdict_text, with_holm)


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
    assert iv.low == pytest.approx(lo, abs=1e-12) and iv.high == pytest.approx(hi, abs=1e-12)


def test_two_level_equals_a_direct_loop_with_the_same_draws():
    """Runs of each side and images within strata drawn as the module says, one resample at a time."""
    rng = np.random.default_rng(3)
    strata = np.array([0, 0, 0, 1, 1, 1, 1])
    a, b = rng.uniform(0, 1, (3, 7)), rng.uniform(0, 1, (4, 7))
    n_boot, seed = 200, 5
    images = bootstrap_indices(strata, n_boot, seed)
    runs_a = np.random.default_rng([seed, 1]).integers(0, 3, (n_boot, 3))
    runs_b = np.random.default_rng([seed, 2]).integers(0, 4, (n_boot, 4))
    stats = np.zeros(n_boot)
    for k in range(n_boot):
        side = []
        for x, runs in ((a, runs_a[k]), (b, runs_b[k])):
            r = len(x)
            # Rao & Wu: the resampled runs' mean, its deviation from the runs' mean scaled by sqrt(R/(R-1))
            per_image = x.mean(0) + np.sqrt(r / (r - 1)) * (x[runs].mean(0) - x.mean(0))
            side.append(per_image[images[k]].mean())
        stats[k] = side[1] - side[0]
    est, lo, hi = two_level_intervals(a, b, strata, n_boot=n_boot, seed=seed)
    assert est == pytest.approx(b.mean() - a.mean())
    assert (lo, hi) == pytest.approx(tuple(np.quantile(stats, [0.025, 0.975])), abs=1e-12)
    one = two_level_mean(b, strata, n_boot=n_boot, seed=seed)  # one side: the same as b alone
    assert one.estimate == pytest.approx(b.mean()) and one.low < b.mean() < one.high


def test_two_level_with_one_run_is_the_image_bootstrap():
    """One run per side: no training variance to add, the interval is the old one over the images."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)
    types = np.repeat(["x", "y", "z"], 10)
    pc = paired_comparison(a, b, types, n_boot=500, seed=4)
    old = bootstrap_mean(b - a, types, n_boot=500, seed=4)
    assert tuple(pc.diff) == pytest.approx(tuple(old), abs=1e-12) and tuple(pc.diff_images) == pytest.approx(tuple(old))
    assert pc.runs_a == pc.runs_b == 1


def test_run_level_variance_is_unbiased():
    """Scores equal on every image, so only the runs vary: the resampled means' variance is s^2 / R with
    s^2 the runs' sample variance (ddof=1), not the plain bootstrap's (R - 1)/R of it."""
    run_maps = np.array([0.2, 0.5, 0.35])
    scores = np.repeat(run_maps[:, None], 12, axis=1)
    n_boot = 100_000
    w = st._image_weights(None, 12, n_boot, 0)
    reps = st._resampled_means(scores, w, st._run_weights(3, n_boot, 0, 2))  # the replicates themselves
    assert reps.var() == pytest.approx(run_maps.var(ddof=1) / 3, rel=0.02)
    assert reps.mean() == pytest.approx(run_maps.mean(), abs=1e-3)


def test_two_level_interval_covers_the_true_difference():
    """Coverage of the 95% interval in simulated experiments (at least 500 per claim), 100 per call
    (vectorised), 1000 resamples each: enough for a 95% percentile interval, whose end points' Monte Carlo
    error moves coverage by less than the binomial error of 1000 experiments (0.7%).

    8 runs against 3 (run sd 0.02 / 0.015, run x image sd 0.05), 1000 experiments: the two-level interval
    covers in 95.4%; the old interval over the images alone (runs averaged per image first) in 85.0% --
    it leaves training randomness out and under-covers.
    8 runs against 1 without baseline run variance, 500 experiments: 93.6%.
    8 runs against 1 *with* baseline run variance (sd 0.015), 300 experiments: 86.3% -- one run cannot
    show its training variance, which is why the tables say so when the baseline has one run.
    (With 1000 experiments and 6 simulation seeds the first ranged 93.9-96.0%, the second 93.6-94.7%;
    more scenarios in docs/statistics.md.)"""
    rng = np.random.default_rng(0)
    two, old = coverage(*simulate(rng, 1000, 3, 8, 0.015, 0.02, 0.05), n_boot=1000)
    assert 0.93 <= two <= 0.97 and old < 0.88
    two, _ = coverage(*simulate(rng, 500, 1, 8, 0.0, 0.02, 0.05), n_boot=1000)
    assert 0.92 <= two <= 0.97
    missing, _ = coverage(*simulate(rng, 300, 1, 8, 0.015, 0.02, 0.05), n_boot=1000)
    assert missing < 0.9


def test_sign_flip_test_exact_and_monte_carlo():
    rng = np.random.default_rng(2)
    d = rng.normal(0.03, 0.1, 12)

    def brute(d):  # every sign set, written out
        t = abs(d.sum())
        return np.mean([abs(np.dot(s, d)) >= t - 1e-12 for s in itertools.product((1, -1), repeat=len(d))])

    p, exact = sign_flip_test(d)
    assert exact and p == pytest.approx(brute(d), abs=1e-12)
    assert sign_flip_test(np.r_[d, 0.0, 0.0]) == (p, True)  # ties (zeros) do not count
    assert sign_flip_test(np.full(10, 0.1)) == (2 / 2**10, True)  # all up: only all-up and all-down are as far
    assert sign_flip_test(np.zeros(5)) == (1.0, True)
    d16 = rng.normal(0.04, 0.1, 16)  # 2^16 sign sets > N_PERM: Monte Carlo, close to the exact value
    p_mc, exact = sign_flip_test(d16, seed=1)
    assert not exact and p_mc == pytest.approx(brute(d16), abs=0.015)
    assert sign_flip_test(d16, seed=1) == (p_mc, False)  # seeded
    assert sign_flip_test(np.full(40, 0.1)) == (1 / (N_PERM + 1), False)  # never 0


def test_holm_against_a_textbook_loop():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.2, 9)
    order = np.argsort(p)
    expected = np.empty(9)
    running = 0.0
    for j, i in enumerate(order):  # step down: multiply by the hypotheses left, never below the previous
        running = max(running, min(1.0, (9 - j) * p[i]))
        expected[i] = running
    assert holm(p) == pytest.approx(expected)
    out = holm([0.02, np.nan, 0.01])  # NaN (a group without images) is not counted in m
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])


def test_paired_comparison_known_answers():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.8, 20)
    types = ["x"] * 10 + ["y"] * 10
    up = paired_comparison(a, a + 0.1, types)
    assert up.diff.estimate == pytest.approx(0.1) and up.diff.low == pytest.approx(0.1)
    assert up.diff.high == pytest.approx(0.1) and up.improved == 1.0 and up.worse == 0.0
    assert up.p <= 2 / (N_PERM + 1) and not up.p_exact and up.better and not up.worse_than
    same = paired_comparison(a, a.copy(), types)
    assert same.diff.estimate == 0 and same.p == 1.0 and not same.better and not same.worse_than
    # differences that cancel: +d and -d in pairs -> no effect, p = 1, interval around 0
    d = np.repeat(rng.uniform(0.05, 0.2, 10), 2) * np.tile([1, -1], 10)
    sym = paired_comparison(a, a + d, types)
    assert sym.diff.estimate == pytest.approx(0, abs=1e-12) and sym.p > 0.9
    assert sym.diff.low < 0 < sym.diff.high and sym.improved == sym.worse == 0.5
    # several runs: the per-image difference of the run means is what the test flips
    runs_b = a + 0.02 + rng.normal(0, 0.05, (4, 20))
    pc = paired_comparison(a, runs_b, types, seed=3)
    assert pc.runs_a == 1 and pc.runs_b == 4 and pc.diff.estimate == pytest.approx(runs_b.mean() - a.mean())
    assert pc.p == sign_flip_test(runs_b.mean(0) - a, seed=3)[0]
    assert pc.diff.high - pc.diff.low > pc.diff_images.high - pc.diff_images.low  # the runs add width


def test_verdicts_need_the_interval_and_the_holm_adjusted_p():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 0.8, 20)
    types = ["x"] * 10 + ["y"] * 10
    up = paired_comparison(a, a + 0.05 + rng.normal(0, 0.05, 20), types)
    assert up.better and verdict(up) == "better" and verdict_text(up, "B better") == "B better"
    # the same comparison in a family of 40 others with p = 0.5: Holm lifts its p, still better
    crowd = with_holm([up] + [up._replace(p=0.5, p_holm=0.5)] * 40)
    assert crowd[0].p_holm == pytest.approx(min(1, 41 * up.p)) and crowd[1].p_holm == 1.0  # 40 x 0.5, capped
    weak = up._replace(p=0.004, p_holm=0.004)
    weak_in_crowd = with_holm([weak] + [weak._replace(p=0.5)] * 40)[0]  # 41 x 0.004 > 0.05
    assert not weak_in_crowd.better and verdict(weak_in_crowd) == "not established"
    assert verdict_text(weak_in_crowd) == "not established (Holm-adjusted p 0.16 >= 0.05)"
    flat = paired_comparison(a, a + rng.normal(0, 0.05, 20), types)
    assert verdict_text(flat) == "not established (the interval includes 0)"


def test_no_verdict_from_few_images():
    a = np.zeros(MIN_N - 1)
    few = paired_comparison(a, a + 0.5)
    assert few.diff.low == pytest.approx(0.5) and not few.better  # degenerate interval, no verdict
    # the rule reads as one: an interval that excludes 0 is never called "no difference"
    assert verdict(few) == "too few images" and verdict_text(few, "B better") == TOO_FEW
    assert TOO_FEW == "too few images for a verdict (n < 10 or a type < 5)"
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
    assert pc.improved == pc.worse == 0.0 and pc.p == 1.0 and pc.diff.estimate == 0.0 and not pc.better


def test_results_are_reproducible_from_the_seed():
    rng = np.random.default_rng(9)
    a, b = rng.uniform(0, 1, (3, 40)), rng.uniform(0, 1, (5, 40))
    types = np.repeat(["x", "y"], 20)
    first = paired_comparison(a, b, types, seed=11)
    assert paired_comparison(a, b, types, seed=11) == first
    assert paired_comparison(a, b, types, seed=12).diff != first.diff

