"""Which rows of Table I differ from the baseline: paired comparisons on the same images.

From the per-image scores a sweep keeps (the baseline's trainings, the classical reference, every
configuration's runs; one row per run), per configuration and group of images
(:func:`dng_jax.evaluation.statistics.paired_comparison`):

- Δ, the mean difference to the baseline, with its two-level interval: the runs resampled within each
  side (the configuration's seeds, the baseline's ``sweep.baseline_runs`` trainings) and the images
  within cell types, the same images for both. Training randomness is inside it as far as the runs
  show it: with one baseline run, the baseline's is not, and the table says so.
- the interval over the images alone for these trained networks (seeds averaged per image first), in
  ``differences.csv``;
- the share of images that improved, and the sign-flip permutation p of the mean per-image difference,
  Holm-adjusted across the table's comparisons (every row and group).

A row *beats* the baseline when its two-level interval lies above 0 and its Holm-adjusted p is below
``1 - level`` (and there are enough images); *worse* likewise below 0; else not established. Every
comparison uses the same resampled images (one bootstrap seed), so the rows are comparable. The tables
report the test images; the validation images (``SweepScores.val``), on which choices are made, get a
table of their own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import (MIN_N, MIN_PER_STRATUM, N_PERM, Interval, PairedComparison,
                                           paired_comparison, two_level_mean, verdict, with_holm)
from dng_jax.io.atomic import atomic_write_text

__all__ = ["SweepScores", "Comparison", "split_groups", "test_groups", "validation_groups", "compare_all",
           "map_interval", "differences_markdown", "per_type_markdown", "write_differences_csv", "BASELINE",
           "CLASSICAL", "DIFFERENCE_FIELDS"]

BASELINE, CLASSICAL = "baseline", "classical (no learning)"


class SweepScores(NamedTuple):
    """Every per-image score table of a sweep and the image sets they are read on."""

    baseline: ScoreTable  # one row per baseline training (sweep.baseline_runs)
    classical: ScoreTable | None
    runs: dict[tuple[str, int], ScoreTable]  # (method, k) -> its seeds' scores
    test: dict[str, list[str]]  # the protocol's test set: cell type -> ids
    every_unknown: list[str] | None = None  # paper protocol: every non-CT1 image, scored as well
    val: dict[str, list[str]] = {}  # validation images (cell type -> ids), scored too: choices are made on them
    known_type: str = KNOWN_TYPE  # the known cell type (CT1)
    references: dict[str, ScoreTable] = {}  # other networks shown beside the classical reference, one row each
    # (eval.baseline_views: "baseline + tta", "baseline + adabn", ...)


class Comparison(NamedTuple):
    name: str  # "kMC(5)", CLASSICAL, ...
    key: tuple[str, int] | None  # (method, k); None for the classical reference
    groups: dict[str, PairedComparison]  # group label -> comparison with the baseline
    runs: int = 1  # the row's runs (seeds)


def split_groups(split: Mapping[str, Sequence[str]], known_type: str = KNOWN_TYPE,
                 every_unknown: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The columns of a table over ``split`` (type -> ids): CT1, the unknown types, all (and every
    unknown image when scored)."""
    known = list(split.get(known_type, []))
    unknown = [i for t in sorted(split) if t != known_type for i in split[t]]
    out = {"CT1": known, "without CT1": unknown, "all": known + unknown}
    if every_unknown:
        out["without CT1, every image"] = list(every_unknown)
    return out


def test_groups(scores: SweepScores) -> dict[str, list[str]]:
    """The columns of the tables on the test images."""
    return split_groups(scores.test, scores.known_type, scores.every_unknown)


def validation_groups(scores: SweepScores) -> dict[str, list[str]]:
    """The columns of the validation table (empty groups when the sweep has no validation images)."""
    return split_groups(scores.val, scores.known_type)


def compare_all(scores: SweepScores, names: Mapping[tuple[str, int], str], groups: Mapping[str, Sequence[str]] | None
                = None, *, n_boot: int, level: float, seed: int = 0, n_perm: int = N_PERM) -> list[Comparison]:
    """The classical reference and every configuration against the baseline on every group (default:
    :func:`test_groups`), p-values Holm-adjusted across all of them (one table, one family)."""
    groups = test_groups(scores) if groups is None else groups
    candidates: list[tuple[str, tuple[str, int] | None, ScoreTable]] = []
    if scores.classical is not None:
        candidates.append((CLASSICAL, None, scores.classical))
    candidates += [(name, None, table) for name, table in scores.references.items()]
    candidates += [(names[key], key, table) for key, table in scores.runs.items()]
    flat: list[PairedComparison] = []
    cells: list[tuple[int, str]] = []
    for row, (_, _, table) in enumerate(candidates):
        for label, ids in groups.items():
            if not ids:
                continue
            base, other = scores.baseline.select(ids), table.select(ids)
            flat.append(paired_comparison(base.scores, other.scores, base.types, n_boot=n_boot, n_perm=n_perm,
                                          seed=seed, level=level))
            cells.append((row, label))
    per_row: list[dict[str, PairedComparison]] = [{} for _ in candidates]
    for (row, label), pc in zip(cells, with_holm(flat)):
        per_row[row][label] = pc
    return [Comparison(name, key, per_row[row], len(table.runs)) for row, (name, key, table) in enumerate(candidates)]


def map_interval(table: ScoreTable, ids: Sequence[str], *, n_boot: int, level: float, seed: int = 0) -> Interval:
    """The MAP of ``ids`` (runs averaged) with its two-level interval (runs, and images within types)."""
    sub = table.select(ids)
    return two_level_mean(sub.scores, sub.types, n_boot=n_boot, seed=seed, level=level)


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _mark(c: PairedComparison) -> str:
    return " ✓" if c.better else (" ✗" if c.worse_than else "")


def _baseline_note(runs: int) -> str:
    if runs == 1:
        return ("Baseline: 1 run, so baseline variance is not included (one training cannot show its own), "
                "nor is a row's own when it has 1 run (the classical reference has no training).")
    return f"Baseline: {runs} runs (trainings), resampled like a row's seeds."


def differences_markdown(comparisons: Sequence[Comparison], groups: Mapping[str, Sequence[str]], *,
                         n_boot: int, level: float, baseline_runs: int = 1, validation: bool = False) -> str:
    """The table of differences to the baseline (test images, or ``validation``: the images choices
    are made on), with its note: how Δ, its interval, p and Holm's adjustment are made."""
    labels = [g for g in groups if groups[g]]
    head = (["name", "runs"] + [f"Δ {g} (n={len(groups[g])})" for g in labels]
            + [f"improved / p / Holm p, {g}" for g in labels])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    family = 0
    for c in comparisons:
        cells = [c.name, str(c.runs)]
        for g in labels:
            pc = c.groups[g]
            cells.append(f"{_signed(pc.diff.estimate)} [{_signed(pc.diff.low)}, {_signed(pc.diff.high)}]{_mark(pc)}")
        for g in labels:
            pc = c.groups[g]
            cells.append(f"{pc.improved:.0%} / {pc.p:.2g} / {pc.p_holm:.2g}")
        family += len(labels)
        lines.append("| " + " | ".join(cells) + " |")
    beats = [(c.name, [g for g, pc in c.groups.items() if pc.better]) for c in comparisons]
    beats = [(n, gs) for n, gs in beats if gs]
    summary = ("Beat the baseline on some column: " + ", ".join(f"{n} ({', '.join(gs)})" for n, gs in beats) + "."
               if beats else "No row beats the baseline.")
    alpha = 1 - level
    title = ("## Validation (for choosing): difference to the baseline on the validation images (paired)\n\n"
             "Choices (variant, k, thresholds, recipe) are made on these numbers; the tables above report the "
             "test images.\n\n" if validation else
             "## Difference to the baseline on the same images (paired)\n\n")
    return (title +
            f"Δ = mean over the images of a row's score (averaged over its runs) minus the baseline's, with its "
            f"{level:.0%} two-level bootstrap interval: {n_boot} resamples of the runs within each side and of the "
            f"images within cell types (the same images for both), so seed-to-seed variation is inside it. "
            f"{_baseline_note(baseline_runs)} improved = share of images with a higher score; p = two-sided "
            f"sign-flip permutation test of the mean per-image difference (exact over all sign sets when at most 13 "
            f"images differ, else "
            f"{N_PERM} random ones; it holds the runs fixed); Holm p = p adjusted by Holm's method over this "
            f"table's {family} comparisons. ✓ = beats the baseline (interval above 0 and Holm p < {alpha:.2g}), "
            f"✗ = worse (interval below 0 and Holm p < {alpha:.2g}), no mark = not established; no verdict from "
            f"fewer than {MIN_N} images or fewer than {MIN_PER_STRATUM} of a cell type. The interval over the "
            f"images alone (these trained networks, runs averaged per image) is in the CSV (images_low, "
            f"images_high).\n\n" + "\n".join(lines) + f"\n\n{summary}\n")


def per_type_markdown(scores: SweepScores, names: Mapping[tuple[str, int], str], *, n_boot: int,
                      level: float) -> str:
    types = sorted(scores.test, key=lambda t: (t != scores.known_type, t))
    tables = [(BASELINE, scores.baseline)] + ([(CLASSICAL, scores.classical)] if scores.classical else [])
    tables += list(scores.references.items()) + [(names[k], t) for k, t in scores.runs.items()]
    head = ["name"] + [f"{t} (n={len(scores.test[t])})" for t in types]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, table in tables:
        cells = [name]
        for t in types:
            iv = map_interval(table, scores.test[t], n_boot=n_boot, level=level)
            cells.append(f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return (f"## MAP per cell type ({level:.0%} two-level interval: runs, and the type's images; runs averaged)\n\n"
            + "\n".join(lines) + "\n")


DIFFERENCE_FIELDS = ("name", "method", "k", "group", "n", "runs", "baseline_runs", "map_baseline", "map", "diff",
                     "low", "high", "images_low", "images_high", "improved", "worse", "p_permutation", "p_exact",
                     "p_holm", "verdict", "beats_baseline")


def write_differences_csv(path, comparisons: Sequence[Comparison]) -> None:
    """One row per (name, group), columns :data:`DIFFERENCE_FIELDS`: ``low`` / ``high`` the two-level
    interval (verdicts use it), ``images_low`` / ``images_high`` the interval over the images alone,
    ``p_holm`` adjusted over the file's rows, ``verdict`` better / worse / not established / too few
    images, ``beats_baseline`` 1 for better."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DIFFERENCE_FIELDS)
    for c in comparisons:
        method, k = c.key if c.key else ("classical", "")
        for g, pc in c.groups.items():
            w.writerow([c.name, method, k, g, pc.n, pc.runs_b, pc.runs_a, f"{pc.mean_a:.6f}", f"{pc.mean_b:.6f}",
                        f"{pc.diff.estimate:.6f}", f"{pc.diff.low:.6f}", f"{pc.diff.high:.6f}",
                        f"{pc.diff_images.low:.6f}", f"{pc.diff_images.high:.6f}", f"{pc.improved:.4f}",
                        f"{pc.worse:.4f}", f"{pc.p:.4g}", int(pc.p_exact), f"{pc.p_holm:.4g}", verdict(pc),
                        int(pc.better)])
    atomic_write_text(path, buf.getvalue())
