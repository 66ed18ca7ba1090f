"""How sure is a MAP, and is one method better than another on the same images?

A dataset's MAP is the mean of per-image scores, and one image's score varies a lot (a fluorescence
image's by about 0.22), so a MAP comes with a bootstrap interval and a comparison is *paired*: both
methods on the same images, the difference taken per image.

- :func:`bootstrap_mean` -- the mean and its percentile-bootstrap interval, resampling images with
  replacement *within strata* (cell types), so every resample keeps the test set's mix of types.
- :func:`paired_comparison` -- the mean difference ``b - a`` with its stratified bootstrap interval
  (the same resampled images for both), the share of images that improved / got worse, and the
  Wilcoxon signed-rank p-value (two-sided; zero differences dropped, scipy's default).

No verdict is drawn from fewer than :data:`MIN_N` images, nor when a stratum has fewer than
:data:`MIN_PER_STRATUM`: a bootstrap of one or two images is degenerate (a single image's interval is the
point itself), and resampling a stratum of 2 halves its variance, so the interval would be too narrow
(the paper protocol's 2 images per type); ``better`` / ``worse_than`` stay False there. Differences
smaller than :data:`TIE` (float rounding of seed averages) count as ties: not improved, not worse, and
dropped by the Wilcoxon test.

Resampling is vectorised: for every stratum ``rng.integers(0, n_s, (n_boot, n_s))`` in sorted stratum
order from one ``np.random.default_rng(seed)``, so a result is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = ["Interval", "PairedComparison", "bootstrap_indices", "bootstrap_mean", "paired_comparison",
           "N_BOOT", "LEVEL", "MIN_N", "MIN_PER_STRATUM", "TIE"]

N_BOOT = 2000
LEVEL = 0.95
MIN_N = 10  # fewest images a "better" / "worse" verdict is drawn from
MIN_PER_STRATUM = 5  # ... and fewest images in any one stratum (cell type)
TIE = 1e-9  # |b - a| below this is a tie (scores are in [0, 1]; seed means round differently)


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


class PairedComparison(NamedTuple):
    """``b`` against ``a`` on the same ``n`` images (``diff = mean(b) - mean(a)``)."""

    n: int
    mean_a: float
    mean_b: float
    diff: Interval
    improved: float  # share of images with b > a
    worse: float  # share of images with b < a
    p_wilcoxon: float
    smallest: int = 0  # images in the smallest stratum (``n`` without strata)

    @property
    def decisive(self) -> bool:
        """Enough images for a verdict: ``n >= MIN_N`` and every stratum ``>= MIN_PER_STRATUM``."""
        return self.n >= MIN_N and self.smallest >= MIN_PER_STRATUM

    @property
    def better(self) -> bool:
        """``b`` beats ``a``: the whole interval of the difference lies above 0 (and :attr:`decisive`)."""
        return self.decisive and self.diff.low > 0

    @property
    def worse_than(self) -> bool:
        """``b`` loses to ``a``: the whole interval lies below 0 (and :attr:`decisive`)."""
        return self.decisive and self.diff.high < 0


def bootstrap_indices(strata: Sequence, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` indices into the ``n`` items: each row a resample with replacement inside every
    stratum (same size per stratum as the data). ``strata=None``-like input: pass one label for all."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    cols = []
    for s in sorted(set(strata.tolist())):
        members = np.flatnonzero(strata == s)
        cols.append(members[rng.integers(0, len(members), (n_boot, len(members)))])
    if not cols:
        return np.zeros((n_boot, 0), np.int64)
    return np.concatenate(cols, axis=1)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_mean(values, strata=None, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """The mean of ``values`` and its stratified percentile-bootstrap interval (NaN for no values)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    strata = np.zeros(v.size, int) if strata is None else strata
    means = v[bootstrap_indices(strata, n_boot, seed)].mean(axis=1)
    return Interval(float(v.mean()), *_percentiles(means, level))


def _wilcoxon(d: np.ndarray) -> float:
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def paired_comparison(a, b, strata=None, *, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> PairedComparison:
    """``b`` against ``a`` (per-image scores of the same images, in the same order)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if a.size == 0:
        nan = float("nan")
        return PairedComparison(0, nan, nan, Interval(nan, nan, nan), nan, nan, nan)
    d = b - a
    d[np.abs(d) < TIE] = 0.0
    smallest = int(a.size) if strata is None else int(np.unique(np.asarray(strata), return_counts=True)[1].min())
    return PairedComparison(n=int(a.size), mean_a=float(a.mean()), mean_b=float(b.mean()),
                            diff=bootstrap_mean(d, strata, n_boot=n_boot, seed=seed, level=level),
                            improved=float(np.mean(d > 0)), worse=float(np.mean(d < 0)), p_wilcoxon=_wilcoxon(d),
                            smallest=smallest)
