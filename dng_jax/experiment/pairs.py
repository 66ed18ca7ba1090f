"""Any two configurations of a finished sweep paired on the same images, from its saved per-image scores.

Table I compares every configuration with the baseline; this compares any two (``kmc:500`` against
``kmc:5``, ``ng:100`` against ``kmc:100``, ``classical`` or ``baseline`` against either) on the same
images (:func:`dng_jax.evaluation.statistics.paired_comparison`): the mean difference B - A (each side's
runs averaged) with its two-level bootstrap interval (the runs of each side and the images within cell
types resampled), the interval over the images alone, the share of images improved, and the sign-flip
permutation p of the mean per-image difference, Holm-adjusted over the pairs given. B is better when the
interval lies above 0 and the Holm-adjusted p is below 1 - level; no verdict from fewer than 10 images or
fewer than 5 of a cell type. No prediction is run again (``python -m dng_jax.report --compare``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dng_jax.errors import InputError
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import paired_comparison, verdict_text, with_holm
from dng_jax.experiment.comparisons import SweepScores, test_groups, validation_groups

__all__ = ["SPLITS", "configuration_scores", "pair_images", "compare_pairs"]

#: The image sets a pair is compared on: the test images, or the validation images (on which choices are made).
SPLITS = ("test", "validation")


def configuration_scores(scores: SweepScores, name: str) -> ScoreTable:
    """The score table of ``baseline``, ``classical`` or ``method:k`` (``kmc:500``)."""
    if name == "baseline":
        return scores.baseline
    if name == "classical":
        if scores.classical is None:
            raise InputError("this sweep has no classical reference scores")
        return scores.classical
    method, _, k = name.partition(":")
    key = (method, int(k)) if k.isdigit() else None
    if key not in scores.runs:
        raise InputError(f"no configuration {name!r}; the sweep has "
                         f"{', '.join(f'{m}:{k}' for m, k in sorted(scores.runs))}, baseline, classical")
    return scores.runs[key]


def pair_images(scores: SweepScores, group: str, split: str) -> list[str]:
    """The ids of ``group`` (``CT1``, ``without CT1``, ``all``) among the ``split``'s images."""
    groups = validation_groups(scores) if split == "validation" else test_groups(scores)
    if group not in groups:
        raise InputError(f"--group {group!r}: choose one of {', '.join(groups)}")
    if not groups[group]:
        raise InputError(f"this sweep has no {split} images in {group!r}")
    return groups[group]


def compare_pairs(scores: SweepScores, pairs: Sequence[tuple[str, str]], group: str = "without CT1",
                  split: str = "test", n_boot: int = 2000, level: float = 0.95) -> str:
    """B - A for every pair ``(A, B)``, Holm over the pairs: a heading line, then one line per pair."""
    ids = pair_images(scores, group, split)
    compared = []
    for name_a, name_b in pairs:
        ta, tb = configuration_scores(scores, name_a).select(ids), configuration_scores(scores, name_b).select(ids)
        compared.append(paired_comparison(ta.scores, tb.scores, ta.types, n_boot=n_boot, level=level))
    lines = [f"{group} ({split}): {len(ids)} images; B - A with its {level:.0%} two-level interval (runs of "
             f"each side, images within cell types), p = sign-flip permutation test, Holm over {len(pairs)} pair(s)"]
    for (name_a, name_b), pc in zip(pairs, with_holm(compared)):
        lines.append(f"  {name_b} - {name_a}: {pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}]  "
                     f"runs {pc.runs_b} vs {pc.runs_a}  images only [{pc.diff_images.low:+.3f}, "
                     f"{pc.diff_images.high:+.3f}]  improved {pc.improved:.0%}  worse {pc.worse:.0%}  "
                     f"p {pc.p:.2g} (Holm {pc.p_holm:.2g})  {verdict_text(pc, 'B better', 'B worse')}")
    return "\n".join(lines) + "\n"
