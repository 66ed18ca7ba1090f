#!/usr/bin/env python
"""Fit the critical values of dng_jax/evaluation/critical_values.py (prints the table it holds).

The setting: an estimate whose variance is ``V = a + b``, ``a`` (the top level: trainings) estimated
with k df (``v_top ~ a chi²_k / k``), ``b`` (the images) known. The statistic ``|estimate - truth| /
sqrt(v_top + b)`` is compared with a critical value that depends on the observed top share
``r = v_top / (v_top + b)``:

    c(r) = z + (C - z) (1 - exp(-(r / s)^q)),   z the normal quantile,

with (C, s, q) chosen per (k, alpha) by minimax over the true shares ``a / (a + b)`` in 0.02-0.9999
(Nelder-Mead from three starts, one the previous alpha's answer): for alpha >= 0.05 (the interval's
level and above) the largest relative deviation of the error rate from alpha either way, so coverage
centres on the level; below (where only p-values and Holm's small thresholds look) the error rate must
stay at or below alpha (an excess costs 100-fold), so those p-values are valid rather than only close
(with 1 df no function of the share is exact at every share). The error rate at a true share is
integrated exactly over v_top's chi² law (quantile nodes, denser towards 0, where the failures are)
with the normal in closed form. This is Aspin and Welch's approach (critical values as a function of the
observed variance ratio) for the few df that Welch's series cannot reach. About 10 minutes on 2 idle
cores:

    python scripts/studies/calibrate_critical_values.py > table.csv
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import optimize, special, stats

ALPHAS = (0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4, 1e-4)
KS = (1, 2, 3, 4, 5, 6, 8, 12, 24, 48)
SHARES = np.concatenate([np.linspace(0.02, 0.9, 16), [0.94, 0.97, 0.985, 0.995, 0.999, 0.9999]])


def nodes() -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and weights: log-spaced cells below 0.01, even cells above (midpoints)."""
    edges = np.concatenate([[0.0], np.logspace(-16, -2, 250), np.linspace(0.01, 1.0, 1501)[1:]])
    return 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)


def critical(params, share, z):
    c_top, s, q = z + np.exp(params[0]), np.exp(params[1]), np.exp(params[2])
    return z + (c_top - z) * -np.expm1(-(share / s) ** q)


def errors(params, x, w, alpha) -> np.ndarray:
    """The error rate at every true share in SHARES (rows) over the chi² nodes ``x`` (columns)."""
    z = special.ndtri(1 - alpha / 2)
    v = SHARES[:, None] * x + 1 - SHARES[:, None]
    return (w * 2 * special.ndtr(-critical(params, SHARES[:, None] * x / v, z) * np.sqrt(v))).sum(-1)


def _loss(relative: np.ndarray, alpha: float) -> float:
    """The largest relative deviation either way (alpha >= 0.05); below, the largest shortfall plus
    100 times the largest excess."""
    if alpha >= 0.05:
        return float(np.max(np.abs(relative)))
    return float(max(-relative.min(), 0.0) + 100.0 * max(relative.max(), 0.0))


def fit(k: int, alpha: float, u: np.ndarray, w: np.ndarray, warm=None) -> tuple:
    """(C, s, q, least and largest error rate / alpha - 1) for (k, alpha); ``warm``: the previous
    alpha's log-parameters, a start beside two fixed ones."""
    x = stats.chi2.ppf(u, k) / k
    z, t = special.ndtri(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, k)
    gap = max(t - z, 1e-3)
    starts = [[np.log(gap), np.log(0.3), np.log(2)], [np.log(1.5 * gap), np.log(0.15), np.log(8)]]
    best = None
    for start in starts + ([] if warm is None else [warm]):
        r = optimize.minimize(lambda p: _loss(errors(p, x, w, alpha) / alpha - 1, alpha), start,
                              method="Nelder-Mead", options=dict(maxiter=1000, xatol=1e-6, fatol=1e-7))
        if best is None or r.fun < best.fun:
            best = r
    rel = errors(best.x, x, w, alpha) / alpha - 1
    return (z + float(np.exp(best.x[0])), float(np.exp(best.x[1])), float(np.exp(best.x[2])), float(rel.min()),
            float(rel.max()), best.x)


def main() -> None:
    u, w = nodes()
    print("k,alpha,C,s,q,error_low,error_high")
    for k in KS:
        warm = None
        for alpha in ALPHAS:
            c_top, s, q, low, high, warm = fit(k, alpha, u, w, warm)
            print(f"{k},{alpha:g},{c_top:.5g},{s:.5g},{q:.5g},{low:+.3f},{high:+.3f}", flush=True)
            print(f"k={k} alpha={alpha:g}: error rate / alpha - 1 in [{low:+.3f}, {high:+.3f}]", file=sys.stderr)


if __name__ == "__main__":
    main()
