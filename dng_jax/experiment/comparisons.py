"""Which rows of Table I differ from the baseline: paired comparisons on the same images.

From the per-image scores a sweep keeps (baseline, classical reference, every run), per configuration:
its runs' scores are averaged over the seeds *per image* first, then compared with the baseline's on the
same images (:func:`dng_jax.evaluation.statistics.paired_comparison`): the mean difference with a 95%
bootstrap interval (images resampled within cell types), the share of images that improved, and the
Wilcoxon signed-rank p-value. A configuration *beats* the baseline when its whole interval lies above 0.
Every comparison uses the same resampled images (one bootstrap seed), so the rows are comparable.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import MIN_N, MIN_PER_STRATUM, Interval, PairedComparison, bootstrap_mean, paired_comparison
from dng_jax.io.atomic import atomic_write_text

__all__ = ["SweepScores", "Comparison", "test_groups", "compare_all", "group_intervals", "differences_markdown",
           "per_type_markdown", "write_differences_csv", "BASELINE", "CLASSICAL"]

BASELINE, CLASSICAL = "baseline", "classical (no learning)"


class SweepScores(NamedTuple):
    """Every per-image score table of a sweep and the test set they are read on."""

    baseline: ScoreTable
    classical: ScoreTable | None
    runs: dict[tuple[str, int], ScoreTable]  # (method, k) -> its seeds' scores
    test: dict[str, list[str]]  # the protocol's test set: cell type -> ids
    every_unknown: list[str] | None = None  # paper protocol: every non-CT1 image, scored as well


class Comparison(NamedTuple):
    name: str  # "kMC(5)", CLASSICAL, ...
    key: tuple[str, int] | None  # (method, k); None for the classical reference
    groups: dict[str, PairedComparison]  # group label -> comparison with the baseline


def test_groups(scores: SweepScores) -> dict[str, list[str]]:
    """The columns of the tables: CT1, the unknown types, all (and every unknown image when scored)."""
    known = list(scores.test.get(KNOWN_TYPE, []))
    unknown = [i for t in sorted(scores.test) if t != KNOWN_TYPE for i in scores.test[t]]
    out = {"CT1": known, "without CT1": unknown, "all": known + unknown}
    if scores.every_unknown:
        out["without CT1, every image"] = list(scores.every_unknown)
    return out


def _per_image(table: ScoreTable, ids: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    sub = table.select(ids)
    return sub.per_image_mean(), sub.types


def compare_all(scores: SweepScores, names: Mapping[tuple[str, int], str], *, n_boot: int, level: float,
                seed: int = 0) -> list[Comparison]:
    """The classical reference and every configuration against the baseline, per group."""
    groups = test_groups(scores)
    candidates: list[tuple[str, tuple[str, int] | None, ScoreTable]] = []
    if scores.classical is not None:
        candidates.append((CLASSICAL, None, scores.classical))
    candidates += [(names[key], key, table) for key, table in scores.runs.items()]
    out = []
    for name, key, table in candidates:
        per_group = {}
        for label, ids in groups.items():
            if not ids:
                continue
            base, types = _per_image(scores.baseline, ids)
            other, _ = _per_image(table, ids)
            per_group[label] = paired_comparison(base, other, types, n_boot=n_boot, seed=seed, level=level)
        out.append(Comparison(name, key, per_group))
    return out


def group_intervals(table: ScoreTable, ids: Sequence[str], *, n_boot: int, level: float,
                    seed: int = 0) -> Interval:
    """The MAP of ``ids`` (seeds averaged per image) with its bootstrap interval."""
    values, types = _per_image(table, ids)
    return bootstrap_mean(values, types, n_boot=n_boot, seed=seed, level=level)


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _verdict(c: PairedComparison) -> str:
    return " ✓" if c.better else (" ✗" if c.worse_than else "")


def differences_markdown(comparisons: Sequence[Comparison], groups: Mapping[str, Sequence[str]], *,
                         n_boot: int, level: float) -> str:
    labels = [g for g in groups if groups[g]]
    head = ["name"] + [f"Δ {g} (n={len(groups[g])})" for g in labels] + [f"improved / p, {g}" for g in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in comparisons:
        cells = [c.name]
        for g in labels:
            pc = c.groups[g]
            cells.append(f"{_signed(pc.diff.estimate)} [{_signed(pc.diff.low)}, {_signed(pc.diff.high)}]{_verdict(pc)}")
        for g in labels:
            pc = c.groups[g]
            cells.append(f"{pc.improved:.0%} / {pc.p_wilcoxon:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    beats = [c.name for c in comparisons if any(pc.better for pc in c.groups.values())]
    summary = ("Beat the baseline (interval above 0) on some column: " + ", ".join(
        f"{c.name} ({', '.join(g for g, pc in c.groups.items() if pc.better)})" for c in comparisons
        if c.name in beats) + ".") if beats else "No row beats the baseline with its interval above 0."
    return ("## Difference to the baseline on the same images (paired)\n\n"
            f"Per image, the configuration's score averaged over its seeds minus the baseline's; Δ is the mean "
            f"over the images with its {level:.0%} bootstrap interval ({n_boot} resamples of the images within "
            f"cell types); improved = share of images with a higher score; p = Wilcoxon signed-rank test. "
            f"✓ = the interval lies above 0 (beats the baseline), ✗ = below; no mark with fewer than {MIN_N} "
            f"images or fewer than {MIN_PER_STRATUM} of a cell type.\n\n"
            + "\n".join(lines) + f"\n\n{summary}\n")


def per_type_markdown(scores: SweepScores, names: Mapping[tuple[str, int], str], *, n_boot: int,
                      level: float) -> str:
    types = sorted(scores.test, key=lambda t: (t != KNOWN_TYPE, t))
    tables = [(BASELINE, scores.baseline)] + ([(CLASSICAL, scores.classical)] if scores.classical else [])
    tables += [(names[k], t) for k, t in scores.runs.items()]
    head = ["name"] + [f"{t} (n={len(scores.test[t])})" for t in types]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, table in tables:
        cells = [name]
        for t in types:
            iv = group_intervals(table, scores.test[t], n_boot=n_boot, level=level)
            cells.append(f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return (f"## MAP per cell type ({level:.0%} bootstrap interval over the images; seeds averaged per image)\n\n"
            + "\n".join(lines) + "\n")


def write_differences_csv(path, comparisons: Sequence[Comparison]) -> None:
    """One row per (name, group): n, the two means, the difference and its interval, improved, worse, p."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "method", "k", "group", "n", "map_baseline", "map", "diff", "low", "high", "improved",
                "worse", "p_wilcoxon", "beats_baseline"])
    for c in comparisons:
        method, k = c.key if c.key else ("classical", "")
        for g, pc in c.groups.items():
            w.writerow([c.name, method, k, g, pc.n, f"{pc.mean_a:.6f}", f"{pc.mean_b:.6f}", f"{pc.diff.estimate:.6f}",
                        f"{pc.diff.low:.6f}", f"{pc.diff.high:.6f}", f"{pc.improved:.4f}", f"{pc.worse:.4f}",
                        f"{pc.p_wilcoxon:.4g}", int(pc.better)])
    atomic_write_text(path, buf.getvalue())
