#!/usr/bin/env python
"""Paired comparisons between two configurations of a finished sweep, from its saved per-image scores.

Table I compares every configuration with the baseline; this compares any two (``kmc:500`` against
``kmc:5``, ``ng:100`` against ``kmc:100``, ``classical`` or ``baseline`` against either) on the same
test images: per image, each configuration's seeds averaged, then the difference B - A with its
stratified bootstrap interval, the share of images improved and the Wilcoxon p-value
(:func:`dng_jax.evaluation.statistics.paired_comparison`). No prediction is run again.

    python scripts/compare_configurations.py --workdir runs/cpu_real --pair kmc:5 ng:5 --pair kmc:5 kmc:500

Reruns the configuration comparisons of docs/results.md (``--group`` picks the test images: CT1,
"without CT1" (default) or all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

from dng_jax.evaluation.scores import ScoreTable  # noqa: E402
from dng_jax.evaluation.statistics import paired_comparison  # noqa: E402
from dng_jax.experiment.comparisons import SweepScores, test_groups  # noqa: E402
from dng_jax.experiment.report import read_sweep_scores  # noqa: E402


def table(scores: SweepScores, name: str) -> ScoreTable:
    """``baseline``, ``classical`` or ``method:k`` (``kmc:500``)."""
    if name == "baseline":
        return scores.baseline
    if name == "classical":
        if scores.classical is None:
            sys.exit("error: this sweep has no classical reference scores")
        return scores.classical
    method, _, k = name.partition(":")
    key = (method, int(k)) if k.isdigit() else None
    if key not in scores.runs:
        sys.exit(f"error: no configuration {name!r}; the sweep has "
                 f"{', '.join(f'{m}:{k}' for m, k in sorted(scores.runs))}, baseline, classical")
    return scores.runs[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a sweep work dir")
    ap.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"), required=True,
                    help="compare B against A (method:k, baseline or classical); repeatable")
    ap.add_argument("--group", default="without CT1", help='test images: "CT1", "without CT1" or "all"')
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    a = ap.parse_args()
    scores = read_sweep_scores(a.workdir)
    if scores is None:
        sys.exit(f"error: {a.workdir} holds no per-image scores (scores.csv) to compare")
    groups = test_groups(scores)
    if a.group not in groups:
        sys.exit(f"error: --group {a.group!r}: choose one of {', '.join(groups)}")
    ids = groups[a.group]
    print(f"{a.group}: {len(ids)} images; B - A, {a.level:.0%} bootstrap interval over images within cell types")
    for name_a, name_b in a.pair:
        ta, tb = table(scores, name_a).select(ids), table(scores, name_b).select(ids)
        pc = paired_comparison(ta.per_image_mean(), tb.per_image_mean(), ta.types, n_boot=a.n_boot, level=a.level)
        verdict = "B better" if pc.better else "B worse" if pc.worse_than else "no difference shown"
        print(f"  {name_b} - {name_a}: {pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}]  "
              f"improved {pc.improved:.0%}  worse {pc.worse:.0%}  p {pc.p_wilcoxon:.2g}  {verdict}")


if __name__ == "__main__":
    main()
