"""The pilot's decision rule (docs/results.md, written before any run): does the paper's step confirm,
refute, or leave open the claim that retraining on cluster pseudo-labels lifts the unknown cell types?

On the **test** images of one configuration's N runs against the baseline:

- *Δ unknown*: the mean over the runs of (the run's MAP on the unknown types − the baseline's), with its
  two-level interval (:func:`~dng_jax.evaluation.statistics.two_level_intervals`: runs, then images
  within cell types);
- *beats*: the runs whose unknown-type MAP is above the baseline's (the mean of its runs);
- *Δ CT1*: the mean over the runs of (the run's CT1 MAP − the baseline's).

**refutes**: the Δ unknown interval lies below 0, or at most ⌊N/2⌋ runs beat the baseline, or Δ CT1 < −0.05;
**confirms**: not refuted, the interval lies above 0, at least ⌈7N/8⌉ runs beat it, and Δ CT1 ≥ −0.03;
**inconclusive** otherwise. (N = 16: 14 and 8.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import LEVEL, N_BOOT, two_level_intervals

__all__ = ["CONFIRM_SHARE", "REFUTE_SHARE", "CT1_CONFIRM", "CT1_REFUTE", "decide"]

CONFIRM_SHARE, REFUTE_SHARE = 7 / 8, 1 / 2  # of the runs that beat the baseline on the unknown types
CT1_CONFIRM, CT1_REFUTE = -0.03, -0.05  # the CT1 cost allowed to confirm / that refutes


def _scores(table: ScoreTable, ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    sub = table.select(ids)
    return np.asarray(sub.scores, np.float64), list(sub.types)


def decide(baseline: ScoreTable, runs: ScoreTable, known: Sequence[str], unknown: Sequence[str], *,
           n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """The verdict and the numbers behind it; ``known`` / ``unknown``: the CT1 and the other types' test ids."""
    base_u, types_u = _scores(baseline, unknown)
    runs_u, _ = _scores(runs, unknown)
    base_k, _ = _scores(baseline, known)
    runs_k, _ = _scores(runs, known)
    est, lo, hi = (float(x) for x in two_level_intervals(base_u, runs_u, types_u, n_boot=n_boot, seed=seed,
                                                         level=level))
    n = runs_u.shape[0]
    run_maps = runs_u.mean(axis=1)
    beats = int((run_maps > base_u.mean()).sum())
    d_ct1 = float(runs_k.mean() - base_k.mean())
    confirm_runs, refute_runs = math.ceil(CONFIRM_SHARE * n), math.floor(REFUTE_SHARE * n)
    refuted = [why for why, hit in (
        (f"the Δ unknown interval [{lo:+.3f}, {hi:+.3f}] lies below 0", hi < 0),
        (f"only {beats} of {n} runs beat the baseline (at most {refute_runs} refutes)", beats <= refute_runs),
        (f"Δ CT1 = {d_ct1:+.3f} < {CT1_REFUTE}", d_ct1 < CT1_REFUTE)) if hit]
    confirmed = lo > 0 and beats >= confirm_runs and d_ct1 >= CT1_CONFIRM
    verdict = "refutes" if refuted else ("confirms" if confirmed else "inconclusive")
    return {"verdict": verdict, "why": refuted if refuted else (
                [f"the Δ unknown interval [{lo:+.3f}, {hi:+.3f}] lies above 0, {beats} of {n} runs beat the baseline "
                 f"(at least {confirm_runs} needed), Δ CT1 = {d_ct1:+.3f} >= {CT1_CONFIRM}"] if confirmed else
                [f"neither rule holds: Δ unknown {est:+.3f} [{lo:+.3f}, {hi:+.3f}], {beats} of {n} runs beat the "
                 f"baseline, Δ CT1 = {d_ct1:+.3f}"]),
            "runs": n, "baseline_runs": int(base_u.shape[0]), "delta_unknown": est, "delta_unknown_low": lo,
            "delta_unknown_high": hi, "level": level, "runs_beating": beats, "confirm_needs": confirm_runs,
            "refute_at_most": refute_runs, "delta_ct1": d_ct1, "baseline_map_unknown": float(base_u.mean()),
            "baseline_map_ct1": float(base_k.mean()), "run_maps_unknown": run_maps.tolist(),
            "unknown_test_images": len(unknown), "ct1_test_images": len(known)}
