"""Do the intervals cover? Simulated experiments with a known difference and known run, image and
run x image variance, for the coverage test (tests/test_statistics.py) and the coverage study
(scripts/studies/coverage_study.py, the table of docs/statistics.md).

Two configurations are scored on four cell types (20, 16, 12 and 8 images) with their own means, spreads
and true gains; every training adds a run effect and run x image noise. The two-level interval (runs and
images resampled, :func:`dng_jax.evaluation.statistics.two_level_intervals`) should cover the true
difference in about 95% of the experiments; the interval over the images alone (runs averaged per image
first) leaves training randomness out and covers less.
"""

from __future__ import annotations

import numpy as np

from dng_jax.evaluation.statistics import two_level_intervals

__all__ = ["simulate", "coverage"]


def simulate(rng: np.random.Generator, experiments: int, runs_a: int, runs_b: int, run_sd_a: float, run_sd_b: float,
             interaction_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Scores of two configurations in four cell types (20, 16, 12, 8 images; type-dependent means,
    spreads and true gains): image effect + a run effect (training) + run x image noise. Returns the
    scores ``(experiments, runs, images)`` of each, the strata and the true difference (the size-weighted
    mean of the types' gains)."""
    sizes = np.array([20, 16, 12, 8])
    strata = np.repeat(np.arange(4), sizes)
    mean_t, sd_t = np.array([0.55, 0.15, 0.30, 0.10]), np.array([0.20, 0.08, 0.15, 0.05])
    gain_t = np.array([-0.02, 0.03, 0.06, 0.0])
    n = strata.size
    image = mean_t[strata] + sd_t[strata] * rng.standard_normal((experiments, n))
    gain = gain_t[strata] + 0.6 * sd_t[strata] * rng.standard_normal((experiments, n))

    def runs(base, r, run_sd):
        return (base[:, None] + run_sd * rng.standard_normal((experiments, r, 1))
                + interaction_sd * rng.standard_normal((experiments, r, n)))

    true = float(np.sum(sizes * gain_t) / n)
    return runs(image, runs_a, run_sd_a), runs(image + gain, runs_b, run_sd_b), strata, true


def coverage(a: np.ndarray, b: np.ndarray, strata: np.ndarray, true: float, n_boot: int,
             chunk: int = 100) -> tuple[float, float]:
    """Shares of experiments whose 95% interval covers ``true``: the two-level one and the old one over
    the images alone (runs averaged per image first). All experiments of a call share its resamples, so
    every ``chunk`` of them gets its own seed: the shares then average over many sets of resamples."""
    covered, covered_old = [], []
    for seed, s in enumerate(range(0, a.shape[0], chunk)):
        x, y = a[s:s + chunk], b[s:s + chunk]
        _, lo, hi = two_level_intervals(x, y, strata, n_boot=n_boot, seed=seed)
        _, lo_old, hi_old = two_level_intervals(x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True), strata,
                                                n_boot=n_boot, seed=seed)
        covered.append((lo <= true) & (true <= hi))
        covered_old.append((lo_old <= true) & (true <= hi_old))
    return float(np.mean(np.concatenate(covered))), float(np.mean(np.concatenate(covered_old)))
