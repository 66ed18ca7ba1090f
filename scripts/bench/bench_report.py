#!/usr/bin/env python
"""How long the report's statistics take at full scale: 11 configurations x 48 seeds, a baseline of 3
runs, 200 test images in 5 cell types and 50 validation images (synthetic scores), n_boot 2000.

Times ``write_report`` with the scores (tables, both intervals, permutation tests, Holm, the validation
table, figures) and without them (figures and Table I only); the difference is the statistics.

    python scripts/bench/bench_report.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from dng_jax.evaluation.scores import ScoreTable, view_maps
from dng_jax.experiment.comparisons import SweepScores
from dng_jax.experiment.layout import RunResult
from dng_jax.experiment.report import write_report

SIZES = {"fluorescence": 55, "brightfield": 40, "tissue_purple": 45, "tissue_white": 30, "tissue_magenta": 30}


def main() -> None:
    rng = np.random.default_rng(0)
    types = {f"{t}{j}": t for t, n in SIZES.items() for j in range(n)}
    ids = list(types)
    test = {t: [i for i in ids if types[i] == t] for t in SIZES}

    def table(runs: int) -> ScoreTable:
        return ScoreTable.from_per_image([str(s) for s in range(runs)],
                                         [dict(zip(ids, rng.uniform(0, 1, len(ids)))) for _ in range(runs)], types)

    runs = {(m, k): table(48) for m in ("kmc", "ng") for k in (5, 20, 50, 100, 500)} | {("gng", 5): table(48)}
    scores = SweepScores(table(3), table(1), runs, test, None, {t: v[:10] for t, v in test.items()})
    rows = [RunResult(m, k, s, units=k, norm_entropy=0.9, quant_error=1.0,
                      **view_maps(dict(zip(t.ids, t.scores[s])), test)) for (m, k), t in runs.items() for s in range(48)]
    base = view_maps(dict(zip(ids, scores.baseline.scores[0])), test)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_report(d, rows, base, "", scores, n_boot=2000)
        t1 = time.perf_counter()
        write_report(d, rows, base, "", None, n_boot=2000)
        t2 = time.perf_counter()
    print(f"write_report with the scores {t1 - t0:.1f} s, without them {t2 - t1:.1f} s "
          f"(statistics about {t1 - t0 - (t2 - t1):.1f} s)")


if __name__ == "__main__":
    main()
