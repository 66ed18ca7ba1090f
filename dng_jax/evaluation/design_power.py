"""How small a difference can a design detect, and how many trainings does a target need?

From variance components (:class:`VarianceComponents`, estimated from committed per-image scores by
:func:`components_from_scores`), the standard error and degrees of freedom a design of B baselines with
R runs each would have (:func:`expected_se_df`: the expected mean squares of
:mod:`dng_jax.evaluation.run_level`'s terms, Satterthwaite df), and the smallest difference it detects
with the asked power at the level Holm would need (:func:`detectable_difference`; Bonferroni's
``alpha / m`` bounds Holm's first step):

    MDD = (t_{1 - alpha / (2 m), df} + t_{power, df}) se

:func:`plan_designs` lists the (B, R) designs against a target; :func:`plan_markdown` prints the smallest
R per B that reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

from dng_jax.evaluation.run_level import CONDITIONAL, GENERAL, two_way_components
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import LEVEL

__all__ = ["VarianceComponents", "DesignPower", "detectable_difference", "expected_se_df", "plan_designs",
           "plan_markdown", "components_from_scores", "POWER"]

POWER = 0.8


class VarianceComponents(NamedTuple):
    """Variances behind one group's mean difference: for B baselines with R runs each on N images, the
    true ``se² = between_baseline / B + between_run / (B R) + image / N + baseline_image / (B N)
    + residual / (B R N)``. ``image`` and the interactions are size-weighted means over the strata."""

    between_baseline: float  # how the step's effect varies between trainings of the baseline
    between_run: float  # ... between runs on one baseline (with run x cell type)
    image: float  # ... between images of a cell type
    residual: float  # run x image
    n_images: int
    n_strata: int
    baseline_image: float = 0.0  # baseline x image
    source: str = ""  # where between_baseline comes from


class DesignPower(NamedTuple):
    baselines: int
    runs: int  # per baseline
    se: float
    df: float
    detectable: float  # the smallest difference found with the asked power
    reaches: bool  # detectable <= the target


def detectable_difference(se, df, family_size: int = 1, *, alpha: float = 1 - LEVEL, power: float = POWER):
    """``(t_{1 - alpha / (2 m), df} + t_{power, df}) se``: the true difference that a two-sided t-test at
    Bonferroni's level ``alpha / m`` (``m = family_size``) finds with probability ``power``."""
    return (stats.t.ppf(1 - alpha / (2 * family_size), df) + stats.t.ppf(power, df)) * np.asarray(se)


def _satterthwaite(terms: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(se, df)`` of a sum of variance terms ``(variance, df)``."""
    v = sum(t for t, _ in terms)
    q = sum(t * t / df for t, df in terms if t != 0 and df > 0)
    return float(np.sqrt(max(v, 0.0))), float(v * v / q) if q > 0 else float("inf")


def expected_se_df(c: VarianceComponents, baselines: int, runs: int) -> tuple[float, float]:
    """``(se, df)`` the analysis would report for B baselines x R runs: the expected values of its two
    terms (:mod:`dng_jax.evaluation.run_level`: the top units' means, T - 1 df, and the image means,
    N - S df; the residual sits in both, so se errs wide by it), Satterthwaite's df. B = 1 is the
    conditional design: the between-baseline variance is held fixed, the baseline x image interaction
    is part of the image level."""
    n, df_img = c.n_images, c.n_images - c.n_strata
    b, r = baselines, runs
    if b == 1:
        image = (c.image + c.baseline_image + c.residual / r) / n
        return _satterthwaite([((c.between_run + c.residual / n) / r, r - 1)] * (r > 1) + [(image, df_img)])
    per_baseline = c.between_baseline + c.between_run / r + (c.baseline_image + c.residual / r) / n
    image = (c.image + (c.baseline_image + c.residual / r) / b) / n
    return _satterthwaite([(per_baseline / b, b - 1), (image, df_img)])


def plan_designs(c: VarianceComponents, target: float, family_size: int = 1, *, claim: str = GENERAL,
                 baselines: Sequence[int] = (2, 3, 4, 6, 8), runs: Sequence[int] = (1, 2, 3, 4, 8),
                 alpha: float = 1 - LEVEL, power: float = POWER) -> list[DesignPower]:
    """Every (B, R) design with its detectable difference against ``target``; the conditional claim
    (this step on this trained network) plans B = 1 only."""
    if claim == CONDITIONAL:
        baselines = (1,)
    elif claim != GENERAL:
        raise ValueError(f"plans are for {GENERAL!r} or {CONDITIONAL!r}, not {claim!r}")
    rows = []
    for b in baselines:
        for r in runs:
            se, df = expected_se_df(c, b, r)
            mdd = float(detectable_difference(se, df, family_size, alpha=alpha, power=power))
            rows.append(DesignPower(b, r, se, df, mdd, mdd <= target))
    return rows


def plan_markdown(rows: Sequence[DesignPower], target: float) -> str:
    """Per number of baselines, the fewest runs that reach ``target`` (or the most tried, marked)."""
    lines = ["| baselines B | runs per baseline R | trainings (B + B·R) | se | df | detectable difference |",
             "|---:|---:|---:|---:|---:|---:|"]
    for b in sorted({row.baselines for row in rows}):
        mine = [row for row in rows if row.baselines == b]
        row = next((x for x in mine if x.reaches), mine[-1])
        note = "" if row.reaches else f" (> {target:g})"
        lines.append(f"| {b} | {row.runs} | {b + b * row.runs} | {row.se:.4f} | {row.df:.1f} | "
                     f"{row.detectable:.3f}{note} |")
    return "\n".join(lines) + "\n"


def _size_weighted(values: np.ndarray, sizes: np.ndarray) -> float:
    return float(np.sum(sizes * values) / sizes.sum())


def components_from_scores(runs: ScoreTable, baseline: ScoreTable, ids: Sequence[str],
                           trainings: ScoreTable | None = None) -> VarianceComponents:
    """The components of the images ``ids`` from R runs on one baseline (``baseline``: one row) and,
    as a stand-in for the between-baseline ones, several trainings of the baseline (``trainings``: the
    variance of their MAPs, and their training x image interaction); without them those are 0. The
    image level seen on one baseline holds that baseline's x image interaction: it is taken out."""
    x = baseline.select(ids)
    if x.scores.shape[0] != 1:
        raise ValueError(f"one baseline row expected (the runs sit on it), got {x.scores.shape[0]}")
    c = two_way_components(runs.select(ids).scores - x.scores, x.types)
    between, inter, source = 0.0, 0.0, "not known (0)"
    if trainings is not None:
        t = two_way_components(trainings.select(ids).scores, x.types)
        between, inter = t.top, _size_weighted(t.residual, t.sizes)
        source = f"stand-in: {len(trainings.runs)} baseline trainings' MAPs"
    image = max(_size_weighted(c.image, c.sizes) - inter, 0.0)
    return VarianceComponents(between_baseline=between, between_run=c.top, image=image,
                              residual=_size_weighted(c.residual, c.sizes), n_images=int(c.sizes.sum()),
                              n_strata=len(c.labels), baseline_image=inter, source=source)
