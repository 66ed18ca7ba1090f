#!/usr/bin/env python
"""Paired comparisons between two configurations of a finished sweep, from its saved per-image scores.

Table I compares every configuration with the baseline; this compares any two (``kmc:500`` against
``kmc:5``, ``ng:100`` against ``kmc:100``, ``classical`` or ``baseline`` against either) on the same
images (:func:`dng_jax.evaluation.statistics.paired_comparison`): the mean difference B - A (each side's
runs averaged) with its two-level bootstrap interval (the runs of each side and the images within cell
types resampled), the interval over the images alone, the share of images improved, and the sign-flip
permutation p of the mean per-image difference, Holm-adjusted over the pairs given. B is better when
the interval lies above 0 and the Holm-adjusted p is below 1 - level; no verdict from fewer than 10
images or fewer than 5 of a cell type. No prediction is run again.

    python scripts/compare_configurations.py --workdir runs/cpu_real --pair kmc:5 ng:5 --pair kmc:5 kmc:500

Reruns the configuration comparisons of docs/results.md (``--group`` picks the images: CT1,
"without CT1" (default) or all; ``--split validation`` the validation images, on which choices are
made, instead of the test images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

from dng_jax.evaluation.scores import ScoreTable  # noqa: E402
from dng_jax.evaluation.statistics import paired_comparison, verdict_text, with_holm  # noqa: E402
from dng_jax.experiment.comparisons import SweepScores, test_groups, validation_groups  # noqa: E402
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
    ap.add_argument("--group", default="without CT1", help='images: "CT1", "without CT1" or "all"')
    ap.add_argument("--split", choices=("test", "validation"), default="test",
                    help="the test images (default) or the validation images (for choosing)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    a = ap.parse_args()
    scores = read_sweep_scores(a.workdir)
    if scores is None:
        sys.exit(f"error: {a.workdir} holds no per-image scores (scores.csv) to compare")
    groups = validation_groups(scores) if a.split == "validation" else test_groups(scores)
    if a.group not in groups:
        sys.exit(f"error: --group {a.group!r}: choose one of {', '.join(groups)}")
    ids = groups[a.group]
    if not ids:
        sys.exit(f"error: this sweep has no {a.split} images in {a.group!r}")
    print(f"{a.group} ({a.split}): {len(ids)} images; B - A with its {a.level:.0%} two-level interval (runs of "
          f"each side, images within cell types), p = sign-flip permutation test, Holm over {len(a.pair)} pair(s)")
    compared = []
    for name_a, name_b in a.pair:
        ta, tb = table(scores, name_a).select(ids), table(scores, name_b).select(ids)
        compared.append(paired_comparison(ta.scores, tb.scores, ta.types, n_boot=a.n_boot, level=a.level))
    for (name_a, name_b), pc in zip(a.pair, with_holm(compared)):
        print(f"  {name_b} - {name_a}: {pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}]  "
              f"runs {pc.runs_b} vs {pc.runs_a}  images only [{pc.diff_images.low:+.3f}, {pc.diff_images.high:+.3f}]  "
              f"improved {pc.improved:.0%}  worse {pc.worse:.0%}  p {pc.p:.2g} (Holm {pc.p_holm:.2g})  "
              f"{verdict_text(pc, 'B better', 'B worse')}")


if __name__ == "__main__":
    main()
