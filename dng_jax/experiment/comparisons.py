"""Which rows of Table I differ from the baseline: paired comparisons on the same images, at the run level.

From the per-image scores a sweep keeps (the baseline's trainings, the classical reference, every
configuration's runs, each run on the baseline it was made from), per row and group of images:

- Δ, the mean difference to the baseline, with its run-level interval
  (:mod:`dng_jax.evaluation.run_level`): the trainings are the unit of replication, the images a crossed
  second factor. Which claim the interval carries follows from the design: runs on one baseline
  ("on this baseline": this step, on this trained network), runs on each of B >= 2 baselines ("general":
  this step, for a U-Net trained this way), one network ("these networks": these networks on these
  images). The table names each row's design (B x R) and claim.
- its p-value, Holm-adjusted within a family: each group of images (CT1, without CT1, all) is one
  family over the table's rows;
- the smallest difference the design could detect (80% power, at Bonferroni's alpha / m, the level Holm
  needs of a family of m; :func:`dng_jax.evaluation.design_power.detectable_difference`);
- for these networks on these images: the interval over the images alone (runs averaged per image), the
  share of images that improved and the sign-flip permutation p (it holds the runs fixed).

A row *beats* the baseline (✓) when its run-level interval lies above 0 and its Holm-adjusted p is below
``1 - level``, *worse* (✗) likewise below 0; no verdict is drawn from fewer than ten images or a cell
type of fewer than five. The tables report the test images; the validation images (``SweepScores.val``),
on which choices are made, get a table of their own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.design_power import POWER, detectable_difference
from dng_jax.evaluation.run_level import (CONDITIONAL, GENERAL, RECIPES, REFERENCE, THESE_NETWORKS, RunLevel,
                                          Verdict, conditional, against_reference, ensemble, holm_by_family,
                                          mean_interval, negated, nested, verdict)
from dng_jax.evaluation.scores import ScoreTable
from dng_jax.evaluation.statistics import MIN_N, MIN_PER_STRATUM, N_PERM, sign_flip_test
from dng_jax.io.atomic import atomic_write_text

__all__ = ["SweepScores", "Comparison", "GroupComparison", "split_groups", "test_groups", "validation_groups",
           "compare_all", "map_interval", "differences_markdown", "per_type_markdown", "write_differences_csv",
           "BASELINE", "CLASSICAL", "ENSEMBLE", "DIFFERENCE_FIELDS", "CLAIM_SHORT"]

BASELINE, CLASSICAL = "baseline", "classical (no learning)"
#: The suffix of an ensemble's method id in the score tables (``kmc+ens``: the kMC runs' mean softmax).
ENSEMBLE = "+ens"
#: The claim a row's interval carries, as the tables write it.
CLAIM_SHORT = {THESE_NETWORKS: "these networks", CONDITIONAL: "on this baseline", GENERAL: "general",
               REFERENCE: "general", RECIPES: "general"}


class SweepScores(NamedTuple):
    """Every per-image score table of a sweep and the image sets they are read on."""

    baseline: ScoreTable  # one row per baseline training b (sweep.baseline_runs, or the work dirs combined)
    classical: ScoreTable | None
    runs: dict[tuple[str, int], ScoreTable]  # (method, k) -> its runs' scores (an ensemble: one row per baseline)
    test: dict[str, list[str]]  # the protocol's test set: cell type -> ids
    every_unknown: list[str] | None = None  # paper protocol: every non-CT1 image, scored as well
    val: dict[str, list[str]] = {}  # validation images (cell type -> ids), scored too: choices are made on them
    known_type: str = KNOWN_TYPE  # the known cell type (CT1)
    references: dict[str, ScoreTable] = {}  # other networks shown beside the classical reference, one row each
    # (eval.baseline_views: "baseline + tta", "baseline + adabn", ...), views of baseline 0
    run_baselines: dict[tuple[str, int], tuple[int, ...]] = {}  # each run's baseline (its row of `baseline`);
    # a configuration not named here has every run on baseline 0

    def owners(self, key: tuple[str, int]) -> np.ndarray:
        """The baseline of each row of ``runs[key]``."""
        return np.asarray(self.run_baselines.get(key, (0,) * len(self.runs[key].runs)), int)


class GroupComparison(NamedTuple):
    """One row against the baseline on one group of images."""

    n: int
    mean_baseline: float  # the baseline's MAP (mean over the baselines the row was made on)
    mean: float  # the row's MAP
    result: RunLevel  # Δ with its run-level interval: what the verdict uses
    p_holm: float  # result.p adjusted within the group's family
    family_size: int
    detectable: float  # the smallest true Δ found with 80% power at alpha / family_size
    verdict: Verdict
    networks: RunLevel  # these networks on these images: the interval over the images alone
    p_networks: float  # sign-flip permutation p of the per-image differences (runs held fixed)
    p_exact: bool
    improved: float  # share of images with a higher score
    worse: float


class Comparison(NamedTuple):
    name: str  # "kMC(5)", CLASSICAL, ...
    key: tuple[str, int] | None  # (method, k); None for the classical reference and the views
    groups: dict[str, GroupComparison]  # group label -> comparison with the baseline
    runs: int = 1  # the row's runs (all baselines together)
    baselines: int = 1  # the baselines its runs were made on
    design: str = "1 × 1"  # baselines × runs per baseline


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


class _Cell(NamedTuple):
    """A row on one group before Holm: the run-level result and what the networks show."""

    result: RunLevel
    mean_baseline: float
    mean: float
    per_image: np.ndarray  # the row's per-image difference (runs and baselines averaged)


def _design(owners: np.ndarray) -> str:
    counts = sorted({int((owners == b).sum()) for b in np.unique(owners)})
    return f"{len(np.unique(owners))} × {'/'.join(map(str, counts))}"


def _configuration_cell(scores: SweepScores, key, ids, level: float) -> _Cell:
    """A configuration (or its ensemble) against the baselines its runs were made on."""
    x_all, table = scores.baseline.select(ids), scores.runs[key].select(ids)
    owners, types = scores.owners(key), x_all.types
    used = sorted(set(owners.tolist()))
    x = x_all.scores[used]
    per_baseline = [table.scores[owners == b] for b in used]
    if key[0].endswith(ENSEMBLE) and (key[0].removesuffix(ENSEMBLE), key[1]) in scores.runs:
        member_key = (key[0].removesuffix(ENSEMBLE), key[1])
        members, m_owners = scores.runs[member_key].select(ids).scores, scores.owners(member_key)
        e = np.stack([rows.mean(0) for rows in per_baseline])
        result = ensemble(e, [members[m_owners == b] for b in used], x, types, level=level)
    elif len(used) == 1:
        result = conditional(per_baseline[0], x[0], types, level=level)
    else:
        result = nested(per_baseline, x, types, level=level)
    per_image = np.mean([rows.mean(0) - xb for rows, xb in zip(per_baseline, x)], axis=0)
    return _Cell(result, float(x.mean()), float(np.mean([rows.mean() for rows in per_baseline])), per_image)


def _reference_cell(scores: SweepScores, table: ScoreTable, ids, level: float, *, trained: bool) -> _Cell:
    """The classical reference (no training) against the baseline's trainings, or a view of baseline 0."""
    x_all, y = scores.baseline.select(ids), table.select(ids).scores
    if trained:  # a view: one network on baseline 0
        result = conditional(y, x_all.scores[0], x_all.types, level=level)
        return _Cell(result, float(x_all.scores[0].mean()), float(y.mean()), y.mean(0) - x_all.scores[0])
    result = negated(against_reference(x_all.scores, y[0], x_all.types, level=level))
    return _Cell(result, float(x_all.scores.mean()), float(y.mean()), y[0] - x_all.scores.mean(0))


def _too_few(n: int, sizes: Sequence[int]) -> str:
    if n < MIN_N or (sizes and min(sizes) < MIN_PER_STRATUM):
        return (f"too few images for a verdict (n = {n}, smallest cell type {min(sizes) if sizes else 0}; a verdict "
                f"needs {MIN_N} images and {MIN_PER_STRATUM} of every type)")
    return ""


def _finish(cell: _Cell, types: Sequence[str], p_holm: float, m: int, level: float, seed: int,
            n_perm: int) -> GroupComparison:
    res, d = cell.result, cell.per_image
    sizes = [int(c) for c in np.unique(np.asarray(types), return_counts=True)[1]]
    too_few = _too_few(len(d), sizes)
    v = Verdict("no verdict", "", too_few) if too_few else verdict(res, p_holm)
    networks = conditional(d[None], np.zeros_like(d), types, level=level)
    p_net, exact = sign_flip_test(d, n_perm=n_perm, seed=seed)
    detectable = float(detectable_difference(res.se, res.df, m, alpha=1 - level, power=POWER))
    return GroupComparison(len(d), cell.mean_baseline, cell.mean, res, p_holm, m, detectable, v, networks, p_net,
                           exact, float(np.mean(d > 1e-9)), float(np.mean(d < -1e-9)))


def _candidates(scores: SweepScores, names: Mapping[tuple[str, int], str]):
    """``(name, key, table, kind)`` of every row: the classical reference, the views, the configurations."""
    out = []
    if scores.classical is not None:
        out.append((CLASSICAL, None, scores.classical, "reference"))
    out += [(name, None, table, "view") for name, table in scores.references.items()]
    out += [(names[key], key, table, "configuration") for key, table in scores.runs.items()]
    return out


def compare_all(scores: SweepScores, names: Mapping[tuple[str, int], str], groups: Mapping[str, Sequence[str]] | None
                = None, *, level: float, seed: int = 0, n_perm: int = N_PERM) -> list[Comparison]:
    """The classical reference, the baseline's views and every configuration against the baseline on every
    group (default: :func:`test_groups`); the run-level p-values Holm-adjusted within each group (a family
    of the table's rows)."""
    groups = test_groups(scores) if groups is None else groups
    candidates = _candidates(scores, names)
    cells: list[tuple[int, str, _Cell, list[str]]] = []
    for row, (_, key, table, kind) in enumerate(candidates):
        for label, ids in groups.items():
            if not ids:
                continue
            cell = (_configuration_cell(scores, key, ids, level) if kind == "configuration" else
                    _reference_cell(scores, table, ids, level, trained=kind == "view"))
            cells.append((row, label, cell, list(scores.baseline.select(ids).types)))
    p = [float(c.result.p) for _, _, c, _ in cells]
    adjusted = holm_by_family(p, [label for _, label, _, _ in cells]) if cells else []
    sizes = {label: sum(1 for _, g, _, _ in cells if g == label) for label in groups}
    per_row: list[dict[str, GroupComparison]] = [{} for _ in candidates]
    for (row, label, cell, types), h in zip(cells, adjusted):
        per_row[row][label] = _finish(cell, types, float(h), sizes[label], level, seed, n_perm)
    out = []
    for row, (name, key, table, kind) in enumerate(candidates):
        if kind == "configuration":
            owners = scores.owners(key)
            design = _design(owners)
            members = (key[0].removesuffix(ENSEMBLE), key[1])
            if key[0].endswith(ENSEMBLE) and members in scores.runs:
                design = f"{design} (ensemble of {_design(scores.owners(members)).split(' × ')[1]})"
            out.append(Comparison(name, key, per_row[row], len(owners), len(set(owners.tolist())), design))
        else:
            b = len(scores.baseline.runs) if kind == "reference" else 1
            out.append(Comparison(name, None, per_row[row], 1, b, f"{b} × –" if kind == "reference" else "1 × 1"))
    return out


def map_interval(table: ScoreTable, ids: Sequence[str], *, level: float) -> RunLevel:
    """The MAP of ``ids`` (runs averaged) with its run-level interval (runs, and images within types)."""
    sub = table.select(ids)
    return mean_interval(sub.scores, sub.types, level=level)


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _cell_text(g: GroupComparison) -> str:
    r = g.result
    mark = g.verdict.mark or ("–" if g.verdict.word in ("no verdict", "no claim") else "")
    interval = (f"[{_signed(r.low)}, {_signed(r.high)}]" if np.isfinite(r.low) and np.isfinite(r.high)
                else "(no interval)")
    return f"{_signed(r.estimate)} {interval}" + (f" {mark}" if mark else "")


def _number(x: float, fmt: str) -> str:
    return format(x, fmt) if np.isfinite(x) else "–"


def _note(level: float, families: Mapping[str, int], validation: bool) -> str:
    alpha = 1 - level
    fam = ", ".join(f"{g}: {m}" for g, m in families.items())
    return (
        f"Δ = a row's MAP minus the baseline's on the same images, with its {level:.0%} run-level interval "
        f"(docs/statistics.md): the trainings are the unit of replication and the images a crossed factor, and "
        f"the interval's width comes from the number of trainings. design = baselines × runs per baseline "
        f"(each run paired with the baseline it was made from). claim = what the interval is about: *on this "
        f"baseline* (runs on one trained baseline: this step, on this trained network), *general* (runs on "
        f"each of 2 or more baselines, or the baseline's trainings against a reference without training: for "
        f"a U-Net trained this way), *these networks* (one network: these networks on these images). "
        f"✓ / ✗ = interval above / below 0 and Holm-adjusted p < {alpha:.2g}, Holm within each column "
        f"(family sizes {fam}); – = no verdict (fewer than {MIN_N} images or a cell type of fewer than "
        f"{MIN_PER_STRATUM}); no mark = not established. detectable = the smallest true Δ this design finds "
        f"with {POWER:.0%} power at {alpha:.2g} / m (m: the family's size). these networks p = sign-flip "
        f"permutation p of the per-image differences: it holds the runs fixed, so it speaks of these trained "
        f"networks only; their interval over the images alone is in the CSV (networks_low, networks_high).")


def differences_markdown(comparisons: Sequence[Comparison], groups: Mapping[str, Sequence[str]], *,
                         level: float, validation: bool = False) -> str:
    """The table of differences to the baseline (test images, or ``validation``: the images choices
    are made on), with its note: the design and claim of each row, its run-level interval, Holm p within
    each group's family and the smallest detectable difference."""
    labels = [g for g in groups if groups[g]]
    head = (["name", "design", "claim"] + [f"Δ {g} (n={len(groups[g])})" for g in labels]
            + ["detectable " + " / ".join(labels), "Holm p " + " / ".join(labels),
               "these networks p " + " / ".join(labels)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    families: dict[str, int] = {}
    for c in comparisons:
        gs = [c.groups[g] for g in labels]
        claims = sorted({CLAIM_SHORT[g.result.claim] for g in gs})
        cells = [c.name, c.design, ", ".join(claims)] + [_cell_text(g) for g in gs]
        cells += [" / ".join(_number(g.detectable, ".3f") for g in gs), " / ".join(_number(g.p_holm, ".2g") for g in gs),
                  " / ".join(_number(g.p_networks, ".2g") if g.n > 1 else "–" for g in gs)]  # 1 image: no p
        families.update({g: c.groups[g].family_size for g in labels})
        lines.append("| " + " | ".join(cells) + " |")
    title = ("## Validation (for choosing): difference to the baseline on the validation images (paired)\n\n"
             "Choices (variant, k, thresholds, recipe) are made on these numbers; the tables above report the "
             "test images.\n\n" if validation else
             "## Difference to the baseline on the same images (paired)\n\n")
    return title + _note(level, families, validation) + "\n\n" + "\n".join(lines) + f"\n\n{_summary(comparisons)}\n"


def _summary(comparisons: Sequence[Comparison]) -> str:
    better = [(c.name, [g for g, x in c.groups.items() if x.verdict.word == "better"]) for c in comparisons]
    worse = [(c.name, [g for g, x in c.groups.items() if x.verdict.word == "worse"]) for c in comparisons]
    cells = [x for c in comparisons for x in c.groups.values()]
    open_ = sum(1 for x in cells if x.verdict.word in ("not established", "no verdict", "no claim"))

    def listed(pairs):
        return ", ".join(f"{n} ({', '.join(gs)})" for n, gs in pairs if gs) or "none"
    return (f"Better than the baseline: {listed(better)}. Worse: {listed(worse)}. No verdict at this design: "
            f"{open_} of {len(cells)} cells.")


def per_type_markdown(scores: SweepScores, names: Mapping[tuple[str, int], str], *, level: float) -> str:
    types = sorted(scores.test, key=lambda t: (t != scores.known_type, t))
    tables = [(BASELINE, scores.baseline)] + ([(CLASSICAL, scores.classical)] if scores.classical else [])
    tables += list(scores.references.items()) + [(names[k], t) for k, t in scores.runs.items()]
    head = ["name"] + [f"{t} (n={len(scores.test[t])})" for t in types]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, table in tables:
        cells = [name]
        for t in types:
            iv = map_interval(table, scores.test[t], level=level)
            cells.append(f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]" if np.isfinite(iv.low)
                         else f"{iv.estimate:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return (f"## MAP per cell type ({level:.0%} run-level interval: the runs, and the type's images; no verdicts: "
            f"a type's group is small)\n\n" + "\n".join(lines) + "\n")


DIFFERENCE_FIELDS = ("name", "method", "k", "group", "n", "baselines", "runs", "design", "claim", "map_baseline",
                     "map", "diff", "low", "high", "se", "df", "p", "family_size", "p_holm", "detectable", "verdict",
                     "reason", "beats_baseline", "networks_low", "networks_high", "p_networks", "p_exact", "improved",
                     "worse")


def write_differences_csv(path, comparisons: Sequence[Comparison]) -> None:
    """One row per (name, group), columns :data:`DIFFERENCE_FIELDS`: ``low`` / ``high`` the run-level
    interval (verdicts use it), ``claim`` what it is about, ``p_holm`` adjusted within the group's family
    of ``family_size`` rows, ``detectable`` the smallest Δ found with 80% power, ``verdict`` better /
    worse / not established / no verdict with its ``reason``; ``networks_low`` / ``networks_high`` /
    ``p_networks``: these networks on these images (images only; sign flip)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DIFFERENCE_FIELDS)
    for c in comparisons:
        method, k = c.key if c.key else ("classical" if c.name == CLASSICAL else "view", "")
        for g, x in c.groups.items():
            r = x.result
            w.writerow([c.name, method, k, g, x.n, c.baselines, c.runs, c.design, r.claim, f"{x.mean_baseline:.6f}",
                        f"{x.mean:.6f}", f"{r.estimate:.6f}", f"{r.low:.6f}", f"{r.high:.6f}", f"{r.se:.6f}",
                        f"{r.df:.2f}", f"{r.p:.4g}", x.family_size, f"{x.p_holm:.4g}", f"{x.detectable:.4f}",
                        x.verdict.word, x.verdict.reason, int(x.verdict.word == "better"),
                        f"{x.networks.low:.6f}", f"{x.networks.high:.6f}", f"{x.p_networks:.4g}", int(x.p_exact),
                        f"{x.improved:.4f}", f"{x.worse:.4f}"])
    atomic_write_text(path, buf.getvalue())
