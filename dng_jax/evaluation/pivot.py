"""An interval for a mean whose variance is a sum of independently estimated terms with few df.

The variance of a difference of MAPs is a sum ``V = sum_j v_j`` of terms, each estimated with its own
degrees of freedom ``k_j`` (a top level with 1-3 df from 2-4 trainings, an image level with tens).
Satterthwaite's single estimated df undercovers there: when the top term happens to come out small, the
estimated df is large as well, so the interval is short twice (87-91% for a 95% interval with a top term
of 1 df in the simulations of docs/statistics.md). The generalized pivotal quantity (Weerahandi 1993;
Krishnamoorthy & Mathew's intervals for variance-component models) replaces every term by its fiducial
distribution:

    W = Z sqrt(sum_j v_j / X_j),   Z ~ N(0, 1),   X_j ~ chi²_{k_j} / k_j,

and the interval is ``estimate ± h`` with ``P(|W| <= h) = level``; p is ``P(|W| >= |estimate|)``. With one
term it is the t-interval exactly; with a dominant term of k df it tends to t_k; with several it errs
a little wide (96-97% for a top term of 1 df).

Computed deterministically: Z is integrated exactly (``P(|W| <= h) = E[2 Phi(h / S) - 1]``), the X_j over
a scrambled Sobol set of :data:`NODES` points with a fixed seed (exact chi² quantiles for a df shared by
all experiments, Wilson-Hilferty's for per-experiment df), h by safeguarded Newton steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats
from scipy.stats import qmc

__all__ = ["pivot_interval", "effective_df", "NODES"]

NODES = 2048  # Sobol points of the chi² integral (a power of 2)


def _chi2_over_df(u: np.ndarray, df) -> np.ndarray:
    """``chi²_df / df`` at the probabilities ``u`` (M,): exact for one df (``(M,)``), Wilson-Hilferty's
    cube for per-experiment df (``(..., M)``); 1 for infinite df."""
    df = np.asarray(df, np.float64)
    if df.size == 1 or np.all(df == df.flat[0]):
        d = float(df.flat[0])
        return np.ones_like(u) if not np.isfinite(d) else stats.chi2.ppf(u, d) / d
    a = 2.0 / (9.0 * df[..., None])
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (1.0 - a + special.ndtri(u) * np.sqrt(a)) ** 3
    return np.where(np.isfinite(df[..., None]), np.maximum(x, 1e-12), 1.0)


def _scales(shape: tuple, terms: Sequence[tuple], nodes: int) -> np.ndarray:
    """``(..., M)``: S = sqrt(sum_j v_j / X_j) at every Sobol point."""
    u = qmc.Sobol(len(terms), scramble=True, seed=0).random(nodes)
    inv = np.zeros(shape + (nodes,))
    for j, (v, df) in enumerate(terms):
        inv = inv + np.asarray(v, np.float64)[..., None] / _chi2_over_df(u[:, j], np.broadcast_to(df, shape))
    return np.sqrt(inv)


def _half_width(s: np.ndarray, level: float, start: np.ndarray, high: np.ndarray) -> np.ndarray:
    """h with ``mean(2 Phi(h / s) - 1) = level`` over the last axis: Newton steps inside a bracket that
    shrinks to a bisection where Newton leaves it."""
    inv = 1.0 / s
    low, h = np.zeros_like(start), np.clip(start, 0.0, high)
    for _ in range(60):
        g = h[..., None] * inv
        f = np.mean(2.0 * special.ndtr(g) - 1.0, axis=-1) - level
        if np.all(np.abs(f) < 1e-12):
            break
        slope = np.mean(2.0 * np.exp(-0.5 * g * g) / np.sqrt(2 * np.pi) * inv, axis=-1)
        low, high = np.where(f < 0, h, low), np.where(f > 0, h, high)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = h - f / slope
        h = np.where((step > low) & (step < high), step, 0.5 * (low + high))
    return h


def effective_df(ratio, level: float):
    """The df of the t-distribution whose ``(1 + level) / 2`` quantile is ``ratio`` (half-width / se):
    inf at or below the normal quantile."""
    ratio = np.asarray(ratio, np.float64)
    q = 0.5 + level / 2
    lo, hi = np.full(ratio.shape, np.log(0.05)), np.full(ratio.shape, np.log(1e7))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        wide = stats.t.ppf(q, np.exp(mid)) > ratio
        lo, hi = np.where(wide, mid, lo), np.where(wide, hi, mid)
    return np.where(ratio <= special.ndtri(q), np.inf, np.exp(0.5 * (lo + hi)))


def pivot_interval(estimate, terms: Sequence[tuple], level: float, *, nodes: int = NODES):
    """``(half-width, p, effective df)`` of ``estimate`` with variance terms ``(v_j, k_j)`` (arrays of
    the estimate's shape, ``v_j >= 0``). One term: the t-interval. NaN variance: NaN."""
    estimate = np.asarray(estimate, np.float64)
    shape = estimate.shape
    v = sum((np.asarray(t[0], np.float64) for t in terms), np.zeros(shape))
    se = np.sqrt(v)
    live = [t for t in terms if np.any(np.asarray(t[0]) > 0)]
    if len(live) <= 1:
        df = np.broadcast_to(np.asarray(live[0][1] if live else np.inf, np.float64), shape)
        half = stats.t.ppf(0.5 + level / 2, df) * se
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(se > 0, 2 * stats.t.sf(np.abs(estimate) / se, df), np.where(estimate == 0, 1.0, 0.0))
        return half, np.where(np.isnan(v), np.nan, p), np.where(np.isnan(v), np.nan, df)
    s = _scales(shape, live, nodes)
    q = sum(np.where(np.asarray(t[0]) > 0, np.asarray(t[0], np.float64) ** 2 / np.asarray(t[1], np.float64), 0.0)
            for t in live)
    with np.errstate(invalid="ignore", divide="ignore"):
        start = stats.t.ppf(0.5 + level / 2, np.where(q > 0, v * v / q, np.inf)) * se
        smallest = np.min(np.stack([np.broadcast_to(t[1], shape) for t in live]), axis=0)
        high = np.sqrt(len(live)) * stats.t.ppf(1 - (1 - level) / (2 * len(live)), smallest) * se
        half = _half_width(np.where(s > 0, s, np.inf), level, start, high)
        p = np.where(se > 0, np.mean(2.0 * special.ndtr(-np.abs(estimate)[..., None] / s), axis=-1),
                     np.where(estimate == 0, 1.0, 0.0))
        df = effective_df(np.where(se > 0, half / se, np.inf), level)
    return half, np.where(np.isnan(v), np.nan, p), df
