"""Run-level intervals: how sure is a difference of MAPs when the trainings are few?

A difference of two MAPs varies with the images it is measured on and with the trainings (seeds) behind
it. With R = 2-4 trainings a percentile bootstrap over the runs behaves like a normal interval; an honest
interval takes its width from the few trainings. Every design here is a crossed table of differences
``d[t, i]`` (top units t, the replicated trainings; images i, each in a stratum s, its cell type; the
group's mean is the equal-weight mean over its images, so a stratum weighs ``w_s = n_s / N``), and the
variance of its mean is estimated from the two margins:

    V = s²_top / T  +  sum_s w_s² s²_img,s / n_s

``s²_top``: the variance of the T top units' group means (T - 1 df: the top level, and the run x image
residual once); ``s²_img,s``: the variance of the image means within stratum s (n_s - 1 df: the image
level, and the residual once more). The residual is thus counted twice, which errs wide by
``sum_s w_s² sigma²_resid,s / (T n_s)`` (0.4-17% of V, median 2-4%, on the committed scores).
Subtracting the interaction mean square instead (the unbiased two-way ANOVA combination) makes the image
term a difference of two mean squares whose Satterthwaite df falls below 1 when the image level is
small, and the intervals became absurd there; the coverage was the same otherwise. A stratum of one
image borrows the pooled within-stratum variance of the others.

The interval is ``estimate ± c se`` with c from :mod:`dng_jax.evaluation.critical_values`: a function of
the top level's df and its observed share of V, calibrated so that coverage holds whatever the true
share (Satterthwaite's t undercovers with 1-2 top df: 87-91%); p is the level whose critical value is
``|estimate| / se``. Coverage on simulated experiments with the committed scores' variance: 94-96% for
every design (scripts/studies/coverage_study.py, docs/statistics.md).

Designs and what each interval is about (its ``claim``):

- :func:`conditional` -- R runs on one trained baseline, ``d = y - x``: "this step, on this trained
  network" (top units: runs). One run: "these networks on these images" (images only).
- :func:`nested` -- R_b runs on each of B baselines, ``d = y[b] - x[b]``: "this step, for a U-Net trained
  this way" (top units: baselines, each the mean of its runs; runs may differ in number).
- :func:`against_reference` -- R trainings against a reference without training (the classical pipeline):
  "a U-Net trained this way, against this reference".
- :func:`unpaired` -- A trainings of one recipe against C of another, on the same images (Welch-like:
  two top terms).
- :func:`ensemble` -- one ensemble per baseline: B >= 2 is :func:`nested` with one run per baseline;
  B = 1 takes the run level from its members (the ensemble is assumed to vary across member draws like
  the mean of its members' scores).

A verdict (:func:`verdict`) needs the interval on one side of 0 *and* the Holm-adjusted p (within a named
family, :func:`holm_by_family`) below ``1 - level``; a design that cannot carry the claim asked for gets
the reason instead of a mark. Every function also takes leading axes (many simulated experiments at
once); the results then hold arrays.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from dng_jax.evaluation.critical_values import calibrated_interval
from dng_jax.evaluation.statistics import LEVEL, holm

__all__ = ["THESE_NETWORKS", "CONDITIONAL", "GENERAL", "REFERENCE", "RECIPES", "GENERALITY", "VariancePart",
           "RunLevel", "TwoWayComponents", "Verdict", "conditional", "nested", "against_reference", "unpaired",
           "ensemble", "mean_interval", "negated", "two_way_components", "holm_by_family", "verdict", "judge"]

THESE_NETWORKS = "these networks on these images"
CONDITIONAL = "this step, on this trained network"
GENERAL = "this step, for a U-Net trained this way"
REFERENCE = "a U-Net trained this way, against this reference"
RECIPES = "a U-Net trained one way, against one trained the other way"
GENERALITY = {THESE_NETWORKS: 0, CONDITIONAL: 1, GENERAL: 2, REFERENCE: 2, RECIPES: 2}


class VariancePart(NamedTuple):
    """One term of the variance of the estimate and its degrees of freedom; ``top``: a level of
    replicated trainings, else the image level."""

    name: str
    variance: float | np.ndarray
    df: float | np.ndarray
    top: bool = False


class RunLevel(NamedTuple):
    """A difference with its t-interval; arrays instead of floats for leading (experiment) axes."""

    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    se: float | np.ndarray
    df: float | np.ndarray  # effective: the t df whose quantile is this interval's c (inf: normal)
    p: float | np.ndarray  # two-sided: the level whose critical value is |estimate| / se
    design: str  # "4 runs on 1 baseline; 62 images in 4 types"
    claim: str  # what the interval is about: one of GENERALITY's keys
    parts: tuple[VariancePart, ...]
    level: float = LEVEL

    def __str__(self) -> str:
        return f"{float(self.estimate):+.3f} [{float(self.low):+.3f}, {float(self.high):+.3f}]"


class TwoWayComponents(NamedTuple):
    """Variance components of a table ``d[t, i]`` per stratum (in ``labels`` order); NaN at the top
    level for one top unit. ``image`` is the image variance component (residual removed; with one top
    unit it still holds the residual)."""

    labels: tuple
    sizes: np.ndarray
    means: np.ndarray  # mean difference per stratum
    top: float  # variance of a top unit's true group mean
    top_stratum: np.ndarray  # variance of a top unit's true stratum mean
    image: np.ndarray
    residual: np.ndarray  # top x image interaction


class Verdict(NamedTuple):
    word: str  # better / worse / not established / no claim / no verdict
    mark: str  # ✓ / ✗ / ""
    reason: str


class _Strata(NamedTuple):
    onehot: np.ndarray  # (N, S)
    sizes: np.ndarray  # (S,)
    index: np.ndarray  # (N,): each image's stratum
    labels: tuple


def _strata(strata, n: int) -> _Strata:
    labels, index = np.unique(np.zeros(n, int) if strata is None else np.asarray(strata), return_inverse=True)
    if index.shape != (n,):
        raise ValueError(f"strata must name one stratum per image ({n}), got {len(index)}")
    onehot = np.zeros((n, labels.size))
    onehot[np.arange(n), index] = 1.0
    return _Strata(onehot, onehot.sum(0), index, tuple(labels.tolist()))


def _pooled(ss: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-stratum mean squares ``ss / df``; a stratum without degrees of freedom (one image) borrows
    the pooled mean square of the others (and their degrees of freedom)."""
    total = df.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (ss * (df > 0)).sum(-1, keepdims=True) / total
        ms = np.where(df > 0, ss / np.maximum(df, 1), pooled)
    return ms, np.where(df > 0, df, total)


def _image_ms(m: np.ndarray, st: _Strata) -> tuple[np.ndarray, np.ndarray]:
    """Within-stratum variance of the image values ``m`` (..., N): ``(..., S)`` and its df ``(S,)``."""
    means = (m @ st.onehot) / st.sizes
    return _pooled(((m - means[..., st.index]) ** 2) @ st.onehot, st.sizes - 1.0)


def _interaction_ms(d: np.ndarray, st: _Strata) -> tuple[np.ndarray, np.ndarray]:
    """Top x image interaction mean square of ``d`` (..., T, N) per stratum, after the top x stratum and
    the image means: ``(..., S)`` and its df ``(S,)``."""
    cell = (d @ st.onehot) / st.sizes
    image = d.mean(-2)
    grand = (image @ st.onehot) / st.sizes
    e = d - cell[..., st.index] - image[..., None, :] + grand[..., None, st.index]
    return _pooled(((e ** 2).sum(-2)) @ st.onehot, (d.shape[-2] - 1) * (st.sizes - 1.0))


def _top_part(name: str, d: np.ndarray) -> VariancePart:
    t = d.shape[-2]
    return VariancePart(name, np.var(d.mean(-1), axis=-1, ddof=1) / t, float(t - 1), True)


def _q(variance, df):
    """A term's share of the Satterthwaite denominator, ``variance² / df`` (0 for a zero term)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(variance == 0, 0.0, variance ** 2 / df)


def _df(variance, q):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(q > 0, variance ** 2 / q, np.inf)


def _image_part(name: str, m: np.ndarray, st: _Strata) -> VariancePart:
    """The image term from the image values ``m`` (..., N): ``sum_s w_s² s²_s / n_s``, Satterthwaite's df
    over the strata."""
    img_ms, img_df = _image_ms(m, st)
    return VariancePart(name, *_summed(st.sizes / st.sizes.sum() ** 2 * img_ms, img_df))


def _summed(terms: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = terms.sum(-1)
    return v, _df(v, _q(terms, df).sum(-1))


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


def _result(estimate, parts: Sequence[VariancePart], design: str, claim: str, level: float) -> RunLevel:
    """The interval and two-sided p from the calibrated critical values: the top parts (Welch's df when
    there are two) against the image part."""
    image = next(p for p in parts if not p.top)
    half, p, df = calibrated_interval(estimate, [(q.variance, q.df) for q in parts if q.top],
                                      (image.variance, image.df), level)
    se = np.sqrt(sum((q.variance for q in parts), np.zeros_like(estimate)))
    return RunLevel(*(_scalar(x) for x in (estimate, estimate - half, estimate + half, se, df, p)), design, claim,
                    tuple(q._replace(variance=_scalar(q.variance), df=_scalar(q.df)) for q in parts), level)


def _images(st: _Strata) -> str:
    return f"{int(st.sizes.sum())} images in {len(st.labels)} type{'s' * (len(st.labels) != 1)}"


def _crossed(d: np.ndarray, strata, level: float, claim: str, design: str, unit: str) -> RunLevel:
    """The design of one table ``d`` (..., T, N): top units ``unit`` x images."""
    st = _strata(strata, d.shape[-1])
    t = d.shape[-2]
    parts = ([_top_part(unit, d)] if t > 1 else []) + [_image_part("images", d.mean(-2), st)]
    return _result(d.mean((-2, -1)), parts, f"{design}; {_images(st)}", claim if t > 1 else THESE_NETWORKS, level)


def _runs_axis(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return y[..., None, :] if y.ndim == np.ndim(x) else y


def conditional(y, x, strata=None, *, level: float = LEVEL) -> RunLevel:
    """``y`` (R, N): R runs on top of one trained baseline, ``x`` (N,) that baseline (or one of its
    views) on the same images. Claim: this step, on this trained network; images only for R = 1."""
    x = np.asarray(x, np.float64)
    y = _runs_axis(y, x)
    r = y.shape[-2]
    return _crossed(y - x[..., None, :], strata, level, CONDITIONAL, f"{r} run{'s' * (r != 1)} on 1 baseline", "runs")


def against_reference(y, reference, strata=None, *, level: float = LEVEL) -> RunLevel:
    """``y`` (R, N): R independent trainings of one recipe; ``reference`` (N,): a method without
    training (the classical pipeline). Claim: a U-Net trained this way, against this reference."""
    x = np.asarray(reference, np.float64)
    y = _runs_axis(y, x)
    r = y.shape[-2]
    return _crossed(y - x[..., None, :], strata, level, REFERENCE,
                    f"{r} training{'s' * (r != 1)} against a reference without training", "trainings")


def _per_baseline(y, b: int) -> list[np.ndarray]:
    if isinstance(y, (list, tuple)):
        runs = [np.asarray(v, np.float64) for v in y]
    else:
        y = np.asarray(y, np.float64)
        runs = [y[..., j, :, :] for j in range(y.shape[-3])]
    if len(runs) != b:
        raise ValueError(f"runs for {len(runs)} baselines, scores of {b} baselines")
    return runs


def nested(y, x, strata=None, *, level: float = LEVEL) -> RunLevel:
    """``y``: (B, R, N), or a list of B arrays (R_b, N), the runs on top of each of B baselines; ``x``
    (B, N) the baselines. Top units: the baselines (each the mean of its runs), so the interval holds
    the between-baseline variance; claim: this step, for a U-Net trained this way. B = 1 is
    :func:`conditional`."""
    x = np.asarray(x, np.float64)
    runs = _per_baseline(y, x.shape[-2])
    if len(runs) == 1:
        return conditional(runs[0], x[..., 0, :], strata, level=level)
    counts = sorted({r.shape[-2] for r in runs})
    per = "/".join(str(c) for c in counts)
    d = np.stack([r.mean(-2) for r in runs], axis=-2) - x
    return _crossed(d, strata, level, GENERAL, f"{per} runs on each of {len(runs)} baselines", "baselines")


def ensemble(e, members, x, strata=None, *, level: float = LEVEL) -> RunLevel:
    """``e`` (B, N): one ensemble per baseline; ``members``: (B, R, N) or a list of (R_b, N), its
    members; ``x`` (B, N): the baselines. B >= 2: the baselines are the top units (claim: this
    ensemble recipe for a U-Net trained this way; the members are not needed). B = 1: the run level is
    the members' (variance of their mean, R - 1 df), assuming the ensemble varies across draws of its
    members like the mean of their scores; the image level is the ensemble's own."""
    e, x = np.asarray(e, np.float64), np.asarray(x, np.float64)
    runs = _per_baseline(members, x.shape[-2])
    b, r = len(runs), runs[0].shape[-2]
    if b > 1:
        return _crossed(e - x, strata, level, GENERAL, f"1 ensemble on each of {b} baselines", "baselines")
    st = _strata(strata, x.shape[-1])
    d_members = runs[0] - x[..., 0, None, :]
    m = e[..., 0, :] - x[..., 0, :]
    parts = ([_top_part("members (as runs)", d_members)] if r > 1 else []) + [_image_part("images (ensemble)", m, st)]
    return _result(m.mean(-1), parts, f"1 ensemble of {r} members on 1 baseline; {_images(st)}",
                   CONDITIONAL if r > 1 else THESE_NETWORKS, level)


def unpaired(y, x, strata=None, *, level: float = LEVEL) -> RunLevel:
    """``y`` (A, N) and ``x`` (C, N): independent trainings of two recipes on the same images; the
    estimate is ``mean(y) - mean(x)``. Welch-like: a top term per side (A - 1 and C - 1 df) and the
    image term of the per-image difference of means. One side with one training is taken as a fixed
    reference (claim: trained this way against this network); both single: these networks."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    st = _strata(strata, y.shape[-1])
    a, c = y.shape[-2], x.shape[-2]
    parts = [_top_part(name, side) for name, side in (("trainings (first)", y), ("trainings (second)", x))
             if side.shape[-2] > 1]
    parts.append(_image_part("images", y.mean(-2) - x.mean(-2), st))
    claim = RECIPES if min(a, c) > 1 else REFERENCE if max(a, c) > 1 else THESE_NETWORKS
    return _result(y.mean((-2, -1)) - x.mean((-2, -1)), parts, f"{a} against {c} trainings; {_images(st)}",
                   claim, level)


def mean_interval(y, strata=None, *, level: float = LEVEL) -> RunLevel:
    """A MAP itself, ``y`` (R, N): R runs (or trainings) scored on N images; the runs are the top units,
    so one run gives the interval over the images alone."""
    y = np.asarray(y, np.float64)
    y = y[None] if y.ndim == 1 else y
    r = y.shape[-2]
    return _crossed(y, strata, level, CONDITIONAL, f"{r} run{'s' * (r != 1)}", "runs")


def negated(result: RunLevel) -> RunLevel:
    """``result`` with the sides swapped (b - a instead of a - b)."""
    return result._replace(estimate=-result.estimate, low=-result.high, high=-result.low)


def two_way_components(d, strata=None) -> TwoWayComponents:
    """The variance components of one table ``d`` (T, N) (top units x images), per stratum, unbiased
    and truncated at 0: what the designs' terms estimate, for planning and simulation."""
    d = np.asarray(d, np.float64)
    if d.ndim == 1:
        d = d[None]
    st = _strata(strata, d.shape[-1])
    t = d.shape[0]
    img_ms, _ = _image_ms(d.mean(0), st)
    means = (d.mean(0) @ st.onehot) / st.sizes
    if t == 1:
        nan = np.full(len(st.labels), np.nan)
        return TwoWayComponents(st.labels, st.sizes, means, float("nan"), nan, img_ms, nan)
    resid, _ = _interaction_ms(d, st)
    w2n = st.sizes / st.sizes.sum() ** 2
    top = max(float(np.var(d.mean(1), ddof=1) - (w2n * resid).sum()), 0.0)
    per_stratum = np.var((d @ st.onehot) / st.sizes, axis=0, ddof=1) - resid / st.sizes
    return TwoWayComponents(st.labels, st.sizes, means, top, np.maximum(per_stratum, 0.0),
                            np.maximum(img_ms - resid / t, 0.0), resid)


def holm_by_family(p: Sequence[float], families: Sequence[Hashable]) -> np.ndarray:
    """Holm-adjusted p-values, each family (e.g. one group of images: CT1, unknown types, all) on its
    own."""
    p = np.asarray(p, np.float64)
    keys = list(families)
    if len(keys) != p.size:
        raise ValueError(f"{p.size} p-values, {len(keys)} family names")
    out = np.full(p.shape, np.nan)
    for key in dict.fromkeys(keys):
        members = np.array([k == key for k in keys])
        out[members] = holm(p[members])
    return out


_NO_CLAIM = {
    (CONDITIONAL, THESE_NETWORKS): "no claim beyond these networks on these images: one run cannot show the "
                                   "run-to-run variance (R = 1)",
    (GENERAL, THESE_NETWORKS): "no claim beyond these networks on these images: one run on one baseline "
                               "shows neither the run nor the baseline variance",
    (GENERAL, CONDITIONAL): "no general claim: one baseline training (B = 1) cannot show how the step's "
                            "effect varies between trainings of the baseline; train B >= 2 baselines",
}


def verdict(result: RunLevel, p_holm: float, claim: str | None = None) -> Verdict:
    """better / worse: the whole interval on one side of 0 and the Holm-adjusted p below
    ``1 - level``; else not established (with the reason). A claim more general than the design's
    (``claim``, default the design's own) gets no mark, and the reason."""
    claim = result.claim if claim is None else claim
    if GENERALITY[claim] > GENERALITY[result.claim]:
        why = _NO_CLAIM.get((claim, result.claim), f"no claim of the kind '{claim}' from this design "
                                                   f"({result.claim})")
        return Verdict("no claim", "", why)
    if not (np.isfinite(result.se) and np.isfinite(p_holm)):
        return Verdict("no verdict", "", "the variance cannot be estimated (too few images per cell type)")
    alpha = 1 - result.level
    if p_holm >= alpha:
        inside = result.low <= 0 <= result.high
        return Verdict("not established", "", "the interval includes 0" if inside else
                       f"Holm-adjusted p {p_holm:.2g} >= {alpha:.2g}")
    if result.low > 0:
        return Verdict("better", "✓", f"interval above 0, Holm-adjusted p {p_holm:.2g}")
    if result.high < 0:
        return Verdict("worse", "✗", f"interval below 0, Holm-adjusted p {p_holm:.2g}")
    return Verdict("not established", "", "the interval includes 0")


def judge(results: Sequence[RunLevel], families: Sequence[Hashable], claim: str | None = None
          ) -> list[tuple[float, Verdict]]:
    """Holm within each family, then :func:`verdict` for every result: ``(p_holm, verdict)``."""
    adjusted = holm_by_family([r.p for r in results], families)
    return [(float(h), verdict(r, float(h), claim)) for r, h in zip(results, adjusted)]
