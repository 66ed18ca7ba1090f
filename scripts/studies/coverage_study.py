#!/usr/bin/env python
"""Coverage of the 95% intervals on synthetic data with known run, image and run x image variance.

The simulation of the coverage test in tests/test_statistics.py (:mod:`dng_jax.evaluation.coverage`: four
cell types of 20, 16, 12 and 8 images with their own means, spreads and true gains; a run effect per
training; run x image noise), over more scenarios: the
share of 1000 experiments whose interval covers the true difference, for the two-level interval (runs
and images resampled) and the old interval over the images alone (runs averaged per image first).
Prints the table of docs/statistics.md (about 20 s on 2 cores).

    python scripts/studies/coverage_study.py
"""

from __future__ import annotations

import numpy as np

from dng_jax.evaluation.coverage import coverage, simulate

SCENARIOS = (  # runs of the baseline, runs of the configuration, their run sds, run x image sd
    (3, 8, 0.015, 0.02, 0.05),
    (1, 8, 0.0, 0.02, 0.05),
    (1, 8, 0.015, 0.02, 0.05),
    (3, 8, 0.03, 0.04, 0.05),
    (3, 8, 0.015, 0.02, 0.1),
    (3, 8, 0.0, 0.0, 0.05),
)


def main() -> None:
    print("| runs (configuration vs baseline) | run sd (configuration / baseline) | run x image sd | two-level | "
          "images only |")
    print("|---|---|---|---:|---:|")
    for runs_a, runs_b, sd_a, sd_b, inter in SCENARIOS:
        two, old = coverage(*simulate(np.random.default_rng(0), 1000, runs_a, runs_b, sd_a, sd_b, inter),
                             n_boot=1000)
        print(f"| {runs_b} vs {runs_a} | {sd_b} / {sd_a} | {inter} | {two:.1%} | {old:.1%} |")


if __name__ == "__main__":
    main()
