"""Any two configurations of a finished sweep paired on the same images, from its saved per-image scores.

Table I compares every configuration with the baseline; this compares any two (``kmc:500`` against
``kmc:5``, ``ng:100`` against ``kmc:100``, ``classical`` or ``baseline`` against either) on the same
images, with the run-level interval of :mod:`dng_jax.evaluation.run_level`: runs on one baseline give the
claim about that trained network (two sides of runs: Welch-like, one term per side), runs on several
baselines the general one (per baseline the difference of the two sides' means: the baselines are the
top level), one network per side these networks only. Holm over the pairs given; B is better when the
interval lies above 0 and the Holm-adjusted p is below 1 - level; no verdict from fewer than 10 images or
fewer than 5 of a cell type. The sign-flip p of the per-image differences (these networks on these images,
runs held fixed) is printed beside it. No prediction is run again (``python -m dng_jax.report --compare``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dng_jax.errors import InputError
from dng_jax.evaluation.run_level import (CONDITIONAL, RunLevel, against_reference, conditional, holm_by_family,
                                          negated, nested, unpaired, verdict)
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import MIN_N, MIN_PER_STRATUM, TOO_FEW, sign_flip_test
from dng_jax.experiment.comparisons import CLAIM_SHORT, SweepScores, test_groups, validation_groups

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


def _owners(scores: SweepScores, name: str) -> np.ndarray | None:
    """The baseline of each row of ``name``'s table (None: the classical reference, no baseline)."""
    if name == "baseline":
        return np.arange(len(scores.baseline.runs))
    if name == "classical":
        return None
    method, _, k = name.partition(":")
    return scores.owners((method, int(k)))


def _one_side(rows: np.ndarray, name: str, reference: np.ndarray, types, level: float) -> RunLevel:
    """``rows`` - ``reference`` (one network): a U-Net's trainings against it, or runs on one baseline."""
    fn = against_reference if name == "baseline" else conditional
    return fn(rows, reference, types, level=level)


def pair_result(scores: SweepScores, name_a: str, name_b: str, ids: Sequence[str], level: float) -> RunLevel:
    """B - A on ``ids`` at the run level: runs on several shared baselines -> per baseline the difference of
    the sides' means, the baselines the top level (general claim); a side of one network -> the other side's
    runs against it; two sides of runs on one baseline -> Welch-like over both sides' runs (on this trained
    network)."""
    ta, tb = configuration_scores(scores, name_a).select(ids), configuration_scores(scores, name_b).select(ids)
    a, b, types = ta.scores, tb.scores, ta.types
    oa, ob = _owners(scores, name_a), _owners(scores, name_b)
    shared = sorted(set(oa.tolist()) & set(ob.tolist())) if oa is not None and ob is not None else []
    if len(shared) > 1:
        return nested([b[ob == s] for s in shared], np.stack([a[oa == s].mean(0) for s in shared]), types,
                      level=level)
    if len(a) == 1:
        return _one_side(b, name_b, a[0], types, level)
    if len(b) == 1:
        return negated(_one_side(a, name_a, b[0], types, level))
    result = unpaired(b, a, types, level=level)
    on_one = oa is not None and ob is not None and set(oa.tolist()) == set(ob.tolist()) == {0}
    return result._replace(claim=CONDITIONAL) if on_one and "baseline" not in (name_a, name_b) else result


def compare_pairs(scores: SweepScores, pairs: Sequence[tuple[str, str]], group: str = "without CT1",
                  split: str = "test", level: float = 0.95) -> str:
    """B - A for every pair ``(A, B)``, Holm over the pairs: a heading line, then one line per pair."""
    ids = pair_images(scores, group, split)
    results = [pair_result(scores, a, b, ids, level) for a, b in pairs]
    adjusted = holm_by_family([r.p for r in results], [0] * len(results))
    types = list(scores.baseline.select(ids).types)
    counts = np.unique(types, return_counts=True)[1]
    too_few = len(ids) < MIN_N or counts.min() < MIN_PER_STRATUM
    lines = [f"{group} ({split}): {len(ids)} images; B - A with its {level:.0%} run-level interval "
             f"(docs/statistics.md), Holm over {len(pairs)} pair(s); these networks: sign-flip p of the per-image "
             f"differences (runs held fixed)"]
    for (name_a, name_b), r, h in zip(pairs, results, adjusted):
        d = (configuration_scores(scores, name_b).select(ids).scores.mean(0)
             - configuration_scores(scores, name_a).select(ids).scores.mean(0))
        p_net, _ = sign_flip_test(d)
        v = verdict(r, float(h))
        word = (TOO_FEW if too_few else
                {"better": "B better", "worse": "B worse"}.get(v.word, f"{v.word} ({v.reason})"))
        lines.append(f"  {name_b} - {name_a}: {r}  {CLAIM_SHORT[r.claim]} ({r.design.split(';')[0]})  p {r.p:.2g} "
                     f"(Holm {h:.2g})  improved {np.mean(d > 1e-9):.0%}  these networks p {p_net:.2g}  {word}")
    return "\n".join(lines) + "\n"
