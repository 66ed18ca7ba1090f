"""Simulated experiments with known variance, to check that an interval covers what it claims.

A difference ``d[b, r, i]`` (run r on top of baseline b, image i of cell type s) is drawn as

    d = gain_s + baseline_b + (baseline x image)_bi + run_br + (run x type)_brs + image_i + residual_bri

with normal effects of per-type standard deviations (:class:`SimulationModel`, usually built from the
components a committed score table shows: :func:`model_from_components`). The true difference of the
general claim is the size-weighted mean of the types' gains; of the conditional claim (one trained
baseline), that plus the drawn baseline's effect. Used by scripts/studies/coverage_study.py and
tests/evaluation/test_run_level.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dng_jax.evaluation.run_level import TwoWayComponents

__all__ = ["SimulationModel", "Simulated", "model_from_components", "simulate_nested", "simulate_ensemble",
           "coverage"]


class SimulationModel(NamedTuple):
    """Standard deviations per cell type (tuples in the order of ``sizes``) and of the top levels."""

    sizes: tuple[int, ...]
    gains: tuple[float, ...]  # true difference per type
    image: tuple[float, ...]
    residual: tuple[float, ...]  # run x image
    run: float = 0.0
    run_stratum: tuple[float, ...] = ()  # run x type (empty: none)
    baseline: float = 0.0  # the step's effect between baseline trainings
    baseline_image: tuple[float, ...] = ()  # baseline x image (empty: none)

    @property
    def truth(self) -> float:
        """The size-weighted mean of the types' gains: the estimand of the general claim."""
        return float(np.dot(self.sizes, self.gains) / np.sum(self.sizes))


class Simulated(NamedTuple):
    d: np.ndarray  # (E, B, R, N)
    strata: np.ndarray  # (N,)
    general: float  # the true difference over baselines, runs and images
    conditional: np.ndarray  # (E,): ... for the first baseline, as drawn


def model_from_components(c: TwoWayComponents, *, baseline: float = 0.0, baseline_image=None) -> SimulationModel:
    """A model with ``c``'s per-type means, image, residual and run levels (sds = sqrt of the
    variances; run x type: what a type's run variance has beyond the group's)."""
    return SimulationModel(tuple(int(n) for n in c.sizes), tuple(float(g) for g in c.means),
                           tuple(np.sqrt(c.image).tolist()), tuple(np.sqrt(c.residual).tolist()),
                           float(np.sqrt(c.top)), tuple(np.sqrt(np.maximum(c.top_stratum - c.top, 0.0)).tolist()),
                           baseline, () if baseline_image is None else tuple(np.asarray(baseline_image).tolist()))


def _per_type(values, strata, default: float = 0.0) -> np.ndarray:
    return np.asarray(values, np.float64)[strata] if len(values) else np.full(strata.size, default)


def simulate_nested(rng: np.random.Generator, model: SimulationModel, experiments: int, baselines: int,
                    runs: int) -> Simulated:
    """``experiments`` experiments of B baselines x R runs on the model's images."""
    sizes = np.asarray(model.sizes)
    strata = np.repeat(np.arange(sizes.size), sizes)
    e, b, r, n = experiments, baselines, runs, strata.size
    base = model.baseline * rng.standard_normal((e, b, 1, 1))
    base_image = _per_type(model.baseline_image, strata) * rng.standard_normal((e, b, 1, n))
    run_type = (np.asarray(model.run_stratum) if model.run_stratum else np.zeros(sizes.size))
    run = (model.run * rng.standard_normal((e, b, r, 1))
           + (run_type * rng.standard_normal((e, b, r, sizes.size)))[..., strata])
    image = _per_type(model.image, strata) * rng.standard_normal((e, 1, 1, n))
    resid = _per_type(model.residual, strata) * rng.standard_normal((e, b, r, n))
    d = _per_type(model.gains, strata) + base + base_image + run + image + resid
    return Simulated(d, strata, model.truth, model.truth + base[:, 0, 0, 0])


def simulate_ensemble(rng: np.random.Generator, model: SimulationModel, experiments: int, baselines: int,
                      members: int, gain: float, extra: tuple[float, ...]) -> tuple[np.ndarray, Simulated]:
    """One ensemble per baseline over ``members`` runs: ``(e (E, B, N), members)``. The ensemble scores
    its members' mean plus a fixed ``gain`` plus its own per-image noise (sd ``extra`` per type); the
    truths include the gain."""
    sim = simulate_nested(rng, model, experiments, baselines, members)
    noise = _per_type(extra, sim.strata) * rng.standard_normal((experiments, baselines, sim.strata.size))
    e = sim.d.mean(-2) + gain + noise
    return e, sim._replace(general=sim.general + gain, conditional=sim.conditional + gain)


def coverage(low, high, truth) -> tuple[float, float]:
    """``(share of intervals that hold the truth, mean width)``."""
    low, high = np.asarray(low), np.asarray(high)
    return float(np.mean((low <= truth) & (truth <= high))), float(np.mean(high - low))
