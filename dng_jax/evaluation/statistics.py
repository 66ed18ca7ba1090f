"""How sure is a MAP, and is one method better than another on the same images?

A dataset's MAP is the mean of per-image scores. One image's score varies a lot (a fluorescence image's
by about 0.22), and a trained network's MAP varies with its seed. So a MAP comes with a bootstrap
interval, and a comparison is *paired*: both methods on the same images, the difference taken per image.

- :func:`bootstrap_mean` -- the mean of one score per image and its percentile-bootstrap interval,
  resampling images with replacement *within strata* (cell types), so every resample keeps the test
  set's mix of types.
- :func:`two_level_intervals` -- the same with several runs (trainings, seeds) per side: every resample
  draws the runs of each side with replacement (independently: the two sides are separate trainings)
  *and* the images within strata (the same images for both sides), so training randomness is inside
  the interval as far as the runs show it. A side with one run adds none: one run cannot show it.
- :func:`sign_flip_test` -- the two-sided permutation p-value of the mean per-image difference.
- :func:`paired_comparison` -- all of the above for ``b`` against ``a``, plus the share of images that
  improved / got worse; :func:`with_holm` adjusts a table's p-values by Holm's method.

Two levels. One resample's statistic is ``sum_r sum_i v[r] w[i] scores[r, i]`` with image weights ``w``
(resample counts / n) and run weights ``v``, computed as two matrix products, for many experiments
(leading axes) at once. A bootstrap of R values spreads their mean by (R - 1)/R of its variance (a
third too little for the baseline's 3 runs), so each run weight's deviation from 1/R is scaled by
sqrt(R / (R - 1)) (Rao & Wu's rescaled bootstrap; weights can go below 0). Images are not rescaled: a
verdict needs >= :data:`MIN_PER_STRATUM` images per type and the groups hold tens, where the factor is
close to 1 -- and so, with one run per side, the two-level interval is exactly :func:`bootstrap_mean`'s
interval of the differences (the same draws). Resampling both levels counts the run x image
interaction (a seed that helps some images and hurts others) more than once (McCullagh 2000), so the
interval errs wide when that is large. Coverage, on synthetic data with known run, image and run x
image variance in four cell types (tests/evaluation/test_statistics.py): 95.4% of 1000 experiments for 8 runs
against 3 (the old interval over the images alone, runs averaged per image first: 85.0%); see
docs/statistics.md.

The permutation test flips the sign of each image's difference of run means,
``mean_r b[r, i] - mean_r a[r, i]``. A sign flip swaps the two sides of one image's pair, so it is a
permutation within every cell type by construction, and the statistic, the mean over all images, is the
size-weighted mean of the types' means (the estimand of the interval). Unlike the Wilcoxon signed-rank
test it replaces, it tests the mean (not a pseudo-median) and does not pool the ranks of differently
scaled types. It holds the runs fixed: it asks whether *these* trained networks differ on these images,
not whether another training would; the two-level interval carries training randomness, and a verdict
needs both (:attr:`PairedComparison.better`). Exact (all 2^m sign sets of the m non-zero differences)
when 2^m <= ``n_perm``; otherwise ``n_perm`` random sign sets and ``p = (1 + hits) / (1 + n_perm)``,
never 0 (Phipson & Smyth 2010).

No verdict is drawn from fewer than :data:`MIN_N` images, nor when a stratum has fewer than
:data:`MIN_PER_STRATUM`: a bootstrap of one or two images is degenerate (a single image's interval is the
point itself), and resampling a stratum of 2 halves its variance, so the interval would be too narrow
(the paper protocol's 2 images per type); ``better`` / ``worse_than`` stay False there. Differences
smaller than :data:`TIE` (float rounding of seed averages) count as ties: not improved, not worse, and
left out of the sign flips.

Everything is reproducible from one seed: images from ``np.random.default_rng(seed)`` (for every stratum
``rng.integers(0, n_s, (n_boot, n_s))`` in sorted stratum order, as :func:`bootstrap_indices`), the runs
of ``a`` from ``default_rng([seed, 1])``, of ``b`` from ``[seed, 2]``, the sign flips from ``[seed, 3]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Interval", "PairedComparison", "bootstrap_indices", "bootstrap_mean", "two_level_intervals",
           "two_level_mean", "sign_flip_test", "holm", "with_holm", "paired_comparison", "verdict", "verdict_text",
           "N_BOOT", "N_PERM", "LEVEL", "MIN_N", "MIN_PER_STRATUM", "TIE", "TOO_FEW"]

N_BOOT = 2000
N_PERM = 10_000  # random sign sets of the permutation test (exact below 2^13 = 8192 sets)
LEVEL = 0.95
MIN_N = 10  # fewest images a "better" / "worse" verdict is drawn from
MIN_PER_STRATUM = 5  # ... and fewest images in any one stratum (cell type)
TIE = 1e-9  # |b - a| below this is a tie (scores are in [0, 1]; seed means round differently)
TOO_FEW = f"too few images for a verdict (n < {MIN_N} or a type < {MIN_PER_STRATUM})"
_CHUNK = 1 << 22  # elements of one (rows x resamples) block of the two-level products


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


class PairedComparison(NamedTuple):
    """``b`` against ``a`` on the same ``n`` images (``diff = mean(b) - mean(a)``, runs averaged)."""

    n: int
    mean_a: float
    mean_b: float
    diff: Interval  # two-level: runs within each side and images within strata
    diff_images: Interval  # images only, runs averaged per image first: these trained networks
    improved: float  # share of images with b > a (run means)
    worse: float  # share of images with b < a
    p: float  # two-sided sign-flip permutation p of the mean difference
    p_exact: bool  # all sign sets (True) or n_perm random ones
    p_holm: float  # p adjusted over a family (:func:`with_holm`); p itself for a family of one
    runs_a: int = 1
    runs_b: int = 1
    smallest: int = 0  # images in the smallest stratum (``n`` without strata)
    level: float = LEVEL

    @property
    def decisive(self) -> bool:
        """Enough images for a verdict: ``n >= MIN_N`` and every stratum ``>= MIN_PER_STRATUM``."""
        return self.n >= MIN_N and self.smallest >= MIN_PER_STRATUM

    @property
    def significant(self) -> bool:
        """The Holm-adjusted p is below ``1 - level``."""
        return self.p_holm < 1 - self.level

    @property
    def better(self) -> bool:
        """``b`` beats ``a``: the whole two-level interval lies above 0, the Holm-adjusted p is below
        ``1 - level``, and :attr:`decisive`."""
        return self.decisive and self.diff.low > 0 and self.significant

    @property
    def worse_than(self) -> bool:
        """``b`` loses to ``a``: the whole interval lies below 0 (and significant, decisive)."""
        return self.decisive and self.diff.high < 0 and self.significant


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


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """``(rows, n)``: how often each of ``n`` items is drawn in each row of ``idx``."""
    rows = idx.shape[0]
    return np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)


def _image_weights(strata, n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)``: resample counts / n of :func:`bootstrap_indices` (the same draws)."""
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata must name one stratum per image ({n}), got shape {strata.shape}")
    return _cached_image_weights(tuple(strata.tolist()), n_boot, seed)


# A table compares every row on the same groups of images with one seed: the draws are made once per
# group (a memo of pure functions, read-only arrays; the results are the same without it).
@functools.lru_cache(maxsize=8)
def _cached_image_weights(strata: tuple, n_boot: int, seed: int) -> np.ndarray:
    w = _counts(bootstrap_indices(strata, n_boot, seed), len(strata)) / len(strata)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=8)
def _run_weights(n_runs: int, n_boot: int, seed: int, side: int) -> np.ndarray:
    """``(n_boot, R)`` from ``default_rng([seed, side])``: resample counts / R, deviations from 1/R
    scaled by sqrt(R / (R - 1)); all ones for one run."""
    if n_runs == 1:
        v = np.ones((n_boot, 1))
    else:
        draws = np.random.default_rng([seed, side]).integers(0, n_runs, (n_boot, n_runs))
        scale = np.sqrt(n_runs / (n_runs - 1))
        v = (scale * _counts(draws, n_runs) + 1 - scale) / n_runs
    v.flags.writeable = False
    return v


def _resampled_means(scores: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(..., n_boot)``: ``sum_r sum_i v[b, r] w[b, i] scores[..., r, i]`` for every resample ``b``."""
    *lead, n_runs, n = scores.shape
    n_boot = w.shape[0]
    flat = scores.reshape(-1, n_runs, n)
    out = np.empty((flat.shape[0], n_boot))
    step = max(1, _CHUNK // (n_runs * n_boot))
    for s in range(0, flat.shape[0], step):
        per_run = (flat[s:s + step].reshape(-1, n) @ w.T).reshape(-1, n_runs, n_boot)  # each run on the images
        out[s:s + step] = np.einsum("mrb,br->mb", per_run, v)
    return out.reshape(*lead, n_boot)


def _as_runs(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[None] if x.ndim == 1 else x


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2], axis=-1)
    return lo, hi


def two_level_intervals(a, b=None, strata=None, *, n_boot: int = N_BOOT, seed: int = 0,
                        level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(estimate, low, high)``: the mean of ``a`` or, with ``b``, of ``b - a``, with the two-level
    percentile-bootstrap interval (runs within each side, images within ``strata``, the same images
    for both sides).

    ``a``: ``(..., R_a, n)`` scores of R_a runs on n images (``(n,)``: one run); ``b``: ``(..., R_b, n)``
    with the same leading axes (one experiment each: the coverage test simulates many at once); the
    results have the leading shape. All experiments share the resamples."""
    a = _as_runs(a)
    n = a.shape[-1]
    w = _image_weights(strata, n, n_boot, seed)
    means = _resampled_means(a, w, _run_weights(a.shape[-2], n_boot, seed, 1))
    estimate = a.mean(axis=(-2, -1))
    if b is not None:
        b = _as_runs(b)
        if b.shape[-1] != n or b.shape[:-2] != a.shape[:-2]:
            raise ValueError(f"paired scores must cover the same images (arrays of one length, or runs x "
                             f"images), got {a.shape} and {b.shape}")
        means = _resampled_means(b, w, _run_weights(b.shape[-2], n_boot, seed, 2)) - means
        estimate = b.mean(axis=(-2, -1)) - estimate
    lo, hi = _percentiles(means, level)
    return estimate, lo, hi


def two_level_mean(scores, strata=None, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """The MAP of ``scores`` (``(R, n)`` runs x images, or ``(n,)``) with its two-level interval (NaN
    for no images)."""
    scores = _as_runs(scores)
    if scores.shape[-1] == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    return Interval(*(float(x) for x in two_level_intervals(scores, None, strata, n_boot=n_boot, seed=seed,
                                                            level=level)))


def bootstrap_mean(values, strata=None, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """The mean of ``values`` and its stratified percentile-bootstrap interval (NaN for no values)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    means = _image_weights(strata, v.size, n_boot, seed) @ v  # the draws of bootstrap_indices
    return Interval(float(v.mean()), *(float(x) for x in _percentiles(means, level)))


def sign_flip_test(d, *, n_perm: int = N_PERM, seed: int = 0) -> tuple[float, bool]:
    """``(p, exact)``: two-sided permutation p-value of ``mean(d) = 0`` by flipping the signs of the
    per-image differences ``d`` (zeros stay zero). Exact over all 2^m sign sets of the m non-zero
    differences when 2^m <= ``n_perm``, else ``n_perm`` random sign sets from ``default_rng([seed, 3])``
    with ``p = (1 + hits) / (1 + n_perm)``."""
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    d = np.asarray(d, np.float64)
    nz = d[d != 0]
    m = nz.size
    if m == 0:
        return 1.0, True
    observed = abs(nz.sum()) - 1e-12 * np.abs(nz).sum()  # a flipped sum equal up to rounding is a hit
    if m < 63 and 2**m <= n_perm:
        signs = 1.0 - 2.0 * ((np.arange(2**m)[:, None] >> np.arange(m)) & 1)
        return float(np.mean(np.abs(signs @ nz) >= observed)), True
    rng = np.random.default_rng([seed, 3])
    total, hits = nz.sum(), 0
    step = max(1, _CHUNK // m)
    for s in range(0, n_perm, step):  # 8 random signs per random byte; a 1 bit flips that difference
        flips = np.unpackbits(rng.integers(0, 256, (min(step, n_perm - s), (m + 7) // 8), dtype=np.uint8), axis=1,
                              count=m)
        hits += int(np.sum(np.abs(total - 2.0 * (flips @ nz)) >= observed))
    return (1 + hits) / (1 + n_perm), False


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family (NaN stays NaN and is not counted): the j-th
    smallest of m becomes ``max_{k <= j} min(1, (m - k + 1) p_(k))``."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    order = np.argsort(q, kind="stable")
    adjusted = np.empty(q.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((q.size - np.arange(q.size)) * q[order]))
    out[ok] = adjusted
    return out


def with_holm(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with ``p_holm`` adjusted across all of them (one family: one table)."""
    adjusted = holm([c.p for c in comparisons])
    return [c._replace(p_holm=float(h)) for c, h in zip(comparisons, adjusted)]


def paired_comparison(a, b, strata=None, *, n_boot: int = N_BOOT, n_perm: int = N_PERM, seed: int = 0,
                      level: float = LEVEL) -> PairedComparison:
    """``b`` against ``a`` on the same images, in the same order: per-image scores ``(n,)`` (one run)
    or ``(runs, n)``; the runs of each side may differ in number."""
    a, b = _as_runs(a), _as_runs(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores must cover the same images (arrays of one length, or runs x images), "
                         f"got {a.shape} and {b.shape}")
    if a.shape[1] == 0:
        nan = float("nan")
        return PairedComparison(0, nan, nan, Interval(nan, nan, nan), Interval(nan, nan, nan), nan, nan, nan, True,
                                nan, a.shape[0], b.shape[0], 0, level)
    d = b.mean(axis=0) - a.mean(axis=0)
    d[np.abs(d) < TIE] = 0.0
    smallest = a.shape[1] if strata is None else int(np.unique(np.asarray(strata), return_counts=True)[1].min())
    _, lo, hi = two_level_intervals(a, b, strata, n_boot=n_boot, seed=seed, level=level)
    p, exact = sign_flip_test(d, n_perm=n_perm, seed=seed)
    return PairedComparison(
        n=int(a.shape[1]), mean_a=float(a.mean()), mean_b=float(b.mean()),
        diff=Interval(float(d.mean()), float(lo), float(hi)),
        diff_images=bootstrap_mean(d, strata, n_boot=n_boot, seed=seed, level=level),
        improved=float(np.mean(d > 0)), worse=float(np.mean(d < 0)), p=p, p_exact=exact, p_holm=p,
        runs_a=int(a.shape[0]), runs_b=int(b.shape[0]), smallest=smallest, level=level)


def verdict(c: PairedComparison) -> str:
    """``better``, ``worse``, ``not established`` or ``too few images`` (the tables' and CSVs' word)."""
    if not c.decisive:
        return "too few images"
    return "better" if c.better else "worse" if c.worse_than else "not established"


def verdict_text(c: PairedComparison, better: str = "better", worse: str = "worse") -> str:
    """The verdict as one rule in words, with the reason when there is none."""
    if not c.decisive:
        return TOO_FEW
    if c.better:
        return better
    if c.worse_than:
        return worse
    if c.diff.low <= 0 <= c.diff.high:
        return "not established (the interval includes 0)"
    return f"not established (Holm-adjusted p {c.p_holm:.2g} >= {1 - c.level:.2g})"
