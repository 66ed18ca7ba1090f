#!/usr/bin/env python
"""Coverage of the run-level 95% t-intervals (dng_jax/evaluation/run_level.py) on simulated experiments.

The variance is taken from the committed per-image scores, on the unknown cell types of the wide test
set (62 images: 8 brightfield, 7 tissue_magenta, 28 tissue_purple, 19 tissue_white):

- within one baseline (runs, run x type, images, run x image; per type the median over the nine
  clustering configurations with 4 runs on the one baseline: docs/figures/generalise/wide_sweep and
  .../clustering_on_top/paper against .../clustering_on_top/baseline_scores.csv);
- between baselines, three scenarios: 0; as a stand-in the between-seed variance of the three cpu_real
  baselines' MAPs (docs/figures/cpu_real_baselines/test_scores.csv), with their seed x image interaction;
  and the replicated sweeps' (three trainings of configs/cpu_real_unseen.py, each swept: the between-baseline
  and baseline x image variances of dng_jax/planning/variance_components.json, a 2-df estimate);
- the classical reference against trainings: those three baselines against the classical scores;
- unpaired recipes: the two trainings of docs/figures/generalise/winner against the three baselines;
- the ensemble: its gain over its members' mean and its own per-image noise, from the kMC(100) and
  NG(100) ensembles.

Each row: 4000 experiments (``--experiments``) from one seeded generator; the share whose interval
holds the true difference of its claim, and the mean width; beside it, the same variance with
Satterthwaite's t (one estimated df), the suggestion the calibrated critical values replace. Further
rows: the old two-level bootstrap (dng_jax/evaluation/statistics.py) at 4 runs on 1 baseline, and the
conditional interval read as a general claim. Prints the table of docs/statistics.md (a few minutes on
2 cores).

    python scripts/studies/coverage_study.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]

from dng_jax.evaluation import run_level
from dng_jax.evaluation.design_simulation import (SimulationModel, coverage, model_from_components,
                                                  simulate_ensemble, simulate_nested)
from dng_jax.evaluation.run_level import TwoWayComponents, two_way_components
from dng_jax.evaluation.scores import read_scores
from dng_jax.evaluation.statistics import two_level_intervals
from dng_jax.planning.designs import read_components

FIGURES = ROOT / "docs" / "figures"
GENERALISE = FIGURES / "generalise"
CONFIGS = [GENERALISE / "wide_sweep" / f"{n}_scores.csv" for n in
           ("kmc_k5", "ng_k5", "kmc_k50", "ng_k50", "kmc_k500", "ng_k500", "gng_k5")]
CONFIGS += [GENERALISE / "clustering_on_top" / "paper" / f"{n}_scores.csv" for n in ("kmc_k100", "ng_k100")]
KNOWN = "fluorescence"


def _unknown_ids() -> list[str]:
    """The wide protocol's test images (those with test scores) of the unknown cell types."""
    t = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv")
    return [i for i, c in zip(t.ids, t.types) if c != KNOWN]


def _median(components: list[TwoWayComponents]) -> TwoWayComponents:
    first = components[0]
    stack = {f: np.median([getattr(c, f) for c in components], axis=0) for f in
             ("means", "top", "top_stratum", "image", "residual")}
    return first._replace(**{f: (float(v) if f == "top" else v) for f, v in stack.items()})


def models(ids: list[str]) -> dict:
    """Every model of the study, from the committed scores."""
    base = read_scores(GENERALISE / "clustering_on_top" / "baseline_scores.csv").select(ids)
    types = base.types
    within = _median([two_way_components(read_scores(p).select(ids).scores - base.scores, types) for p in CONFIGS])
    trainings = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv").select(ids).scores
    stand_in = two_way_components(trainings, types)
    classical = read_scores(GENERALISE / "clustering_on_top" / "classical_scores.csv").select(ids).scores
    winner = read_scores(GENERALISE / "winner" / "test_scores.csv").select(ids).scores
    w, c = two_way_components(winner, types), stand_in
    diff = two_way_components(winner.mean(0) - trainings.mean(0), types)  # one row: image + residuals
    image = np.sqrt(np.maximum(diff.image - w.residual / 2 - c.residual / 3, 0.0))
    recipe = model_from_components(w)._replace(gains=tuple(diff.means.tolist()), image=tuple(image.tolist()))
    old_recipe = model_from_components(c)._replace(gains=(0.0,) * len(c.sizes), image=(0.0,) * len(c.sizes))
    ens = []
    for name in ("kmc_k100", "ng_k100"):
        folder = GENERALISE / "clustering_on_top" / "paper"
        e = read_scores(folder / f"{name}_ensemble_scores.csv").select(ids).scores[0]
        m = read_scores(folder / f"{name}_scores.csv").select(ids).scores.mean(0)
        ens.append(two_way_components(e - m, types))
    return {"within": model_from_components(within),
            "stand_in": (float(np.sqrt(stand_in.top)), np.sqrt(stand_in.residual)),
            "replicated": read_components()[0],
            "reference": model_from_components(two_way_components(trainings - classical, types)),
            "recipe": recipe, "old_recipe": old_recipe,
            "ensemble": (float(np.median([x.means @ x.sizes / x.sizes.sum() for x in ens])),
                         tuple(np.sqrt(np.median([x.image for x in ens], axis=0)).tolist()))}


def _scenarios(m: dict) -> dict[str, SimulationModel]:
    sd, inter = m["stand_in"]
    rep, n_types = m["replicated"], len(m["within"].sizes)
    return {"0": m["within"], "stand-in": m["within"]._replace(baseline=sd, baseline_image=tuple(inter.tolist())),
            "replicated": m["within"]._replace(baseline=float(np.sqrt(rep.between_baseline)),
                                               baseline_image=(float(np.sqrt(rep.baseline_image)),) * n_types)}


def _satterthwaite(res) -> tuple[np.ndarray, np.ndarray]:
    """The same variance parts with Satterthwaite's single df and the t quantile."""
    v = sum(np.asarray(p.variance) for p in res.parts)
    q = sum(np.where(np.asarray(p.variance) == 0, 0.0, np.asarray(p.variance) ** 2 / np.asarray(p.df))
            for p in res.parts)
    half = stats.t.ppf(0.975, np.where(q > 0, v * v / q, np.inf)) * np.sqrt(np.maximum(v, 0.0))
    return res.estimate - half, res.estimate + half


def _row(design: str, res, truth, scenario: str = "-"):
    """One table row: design, claim, scenario, coverage and width, Satterthwaite's coverage."""
    return (design, res.claim, scenario, *coverage(res.low, res.high, truth),
            coverage(*_satterthwaite(res), truth)[0])


def _old(sim, truth, n_boot: int = 1000, chunk: int = 100) -> tuple[float, float]:
    """The old two-level bootstrap on the first baseline's runs (the baseline is one run: the d's)."""
    d = sim.d[:, 0]
    lows, highs = [], []
    for seed, s in enumerate(range(0, d.shape[0], chunk)):
        part = d[s:s + chunk]
        _, lo, hi = two_level_intervals(np.zeros_like(part[:, :1]), part, sim.strata, n_boot=n_boot, seed=seed)
        lows.append(lo)
        highs.append(hi)
    return coverage(np.concatenate(lows), np.concatenate(highs), truth)


def nested_rows(rng, m: dict, e: int):
    for scenario, model in _scenarios(m).items():
        for b in (1, 2, 3):
            for r in (2, 3, 4, 8):
                sim = simulate_nested(rng, model, e, b, r)
                res = run_level.nested(sim.d, np.zeros(sim.d.shape[:2] + sim.d.shape[-1:]), sim.strata)
                yield _row(f"{r} runs x {b} baseline{'s' * (b > 1)}", res,
                           sim.conditional if b == 1 else sim.general, scenario)
        sim = simulate_nested(rng, model, e, 1, 4)
        res = run_level.conditional(sim.d[:, 0], np.zeros((e, sim.d.shape[-1])), sim.strata)
        yield _row("4 runs x 1 baseline, read as general", res._replace(claim=run_level.GENERAL), sim.general,
                   scenario)
        for claim, truth in ((run_level.GENERAL, sim.general), (run_level.CONDITIONAL, sim.conditional)):
            yield "OLD two-level bootstrap, 4 runs x 1 baseline", claim, scenario, *_old(sim, truth), float("nan")


def other_rows(rng, m: dict, e: int):
    y = simulate_nested(rng, m["recipe"], e, 1, 2)
    x = simulate_nested(rng, m["old_recipe"], e, 1, 3)
    yield _row("unpaired, 2 trainings vs 3", run_level.unpaired(y.d[:, 0], x.d[:, 0], y.strata), y.general)
    for r in (2, 3, 4, 8):
        sim = simulate_nested(rng, m["reference"], e, 1, r)
        res = run_level.against_reference(sim.d[:, 0], np.zeros((e, sim.d.shape[-1])), sim.strata)
        yield _row(f"{r} trainings vs classical (no training)", res, sim.general)
    gain, extra = m["ensemble"]
    for scenario, model in _scenarios(m).items():
        for b in (1, 2, 3):
            ens, sim = simulate_ensemble(rng, model, e, b, 4, gain, extra)
            res = run_level.ensemble(ens, sim.d, np.zeros(ens.shape), sim.strata)
            yield _row(f"ensemble of 4 x {b} baseline{'s' * (b > 1)}", res,
                       sim.conditional if b == 1 else sim.general, scenario)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    m = models(_unknown_ids())
    rep = m["replicated"]
    print(f"within one baseline: {m['within']}\nbetween baselines (stand-in): sd {m['stand_in'][0]:.4f}, "
          f"baseline x image sd {np.round(m['stand_in'][1], 4).tolist()}\nbetween baselines (replicated): sd "
          f"{np.sqrt(rep.between_baseline):.4f}, baseline x image sd {np.sqrt(rep.baseline_image):.4f}\n"
          f"ensemble gain, noise: {m['ensemble']}\n")
    print("| design | claim | between-baseline variance | coverage | mean width | Satterthwaite's t |\n"
          "|---|---|---|---:|---:|---:|")
    rng = np.random.default_rng(args.seed)
    for design, claim, scenario, cov, width, satt in [*nested_rows(rng, m, args.experiments),
                                                       *other_rows(rng, m, args.experiments)]:
        old = "" if np.isnan(satt) else f"{satt:.1%}"
        print(f"| {design} | {claim} | {scenario} | {cov:.1%} | {width:.3f} | {old} |", flush=True)


if __name__ == "__main__":
    main()
