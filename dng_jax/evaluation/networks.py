"""Trained networks and the classical reference paired on the same test images, per group and cell type.

Each scored segmenter is ``NAME=PATH``: a training's ``baseline.json`` (per-image scores, written at the
end of ``python -m dng_jax.train`` or by ``python -m dng_jax.evaluate checkpoint``), a ``scores.csv`` (a
sweep stage's, e.g. ``WORKDIR/baseline/scores.csv``, or ``python -m dng_jax.evaluate seeds``'
``test_scores.csv``: one row per run), or ``classical`` (the reference without learning, scored on the
images of the first file). The first is A; every other is compared with it: B - A (each side's runs
averaged per image), with its run-level interval (:mod:`dng_jax.evaluation.run_level`: two sides of several
trainings, Welch-like; trainings against one network or the classical reference; two single networks: the
images only), Holm within each group of images (CT1, the other types, all, each type), the share of images
improved and the sign-flip p of the per-image differences (these networks on these images)
(``python -m dng_jax.evaluate networks``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.data.sources import open_source
from dng_jax.errors import InputError
from dng_jax.evaluation.evaluator import score_predictions
from dng_jax.evaluation.scores import ScoreTable, read_scores
from dng_jax.evaluation.run_level import (CONDITIONAL, RunLevel, Verdict, against_reference, conditional,
                                          holm_by_family, negated, unpaired, verdict)
from dng_jax.evaluation.statistics import MIN_N, MIN_PER_STRATUM, TOO_FEW, sign_flip_test
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances

__all__ = ["CLASSICAL", "PerImage", "parse_named", "read_baseline_json", "read_per_image", "classical_scores",
           "classical_table", "NetworkCell", "NetworkComparison", "difference", "image_groups", "compare_networks",
           "networks_markdown", "networks_csv"]

#: The PATH that names the classical reference instead of a file.
CLASSICAL = "classical"

#: image id -> (cell type, its score in every run of one segmenter)
PerImage = dict[str, tuple[str, np.ndarray]]


def parse_named(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``["NAME=PATH", ...]`` -> ``[(NAME, PATH), ...]``; a spec without ``=`` is an :class:`InputError`."""
    named = []
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            raise InputError(f"{spec!r} is not NAME=PATH")
        named.append((name, path))
    return named


def read_baseline_json(path: str | Path) -> dict[str, tuple[str, float]]:
    """``{image id: (cell type, score)}`` of a ``baseline.json``-style file (one run's per-image scores)."""
    try:
        per_image = json.loads(Path(path).read_text())["per_image"]
        return {i: (r["type"], float(r["score"])) for i, r in per_image.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a baseline.json with per-image scores ({type(e).__name__}: {e})") from None


def read_per_image(path: str | Path) -> PerImage:
    """The per-image scores of a ``baseline.json`` (one run) or a ``scores.csv`` (one row per run)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.suffix == ".json":
        return {i: (t, np.array([s])) for i, (t, s) in read_baseline_json(path).items()}
    table = read_scores(path)
    return {i: (t, table.scores[:, j]) for j, (i, t) in enumerate(zip(table.ids, table.types))}


def classical_scores(ids_types: Mapping[str, str], data: str, config: ClassicalConfig,
                     progress: bool = False) -> PerImage:
    """The classical reference (Otsu + distance-transform watershed) scored on these images of ``data``."""
    test: dict[str, list[str]] = defaultdict(list)
    for i, t in ids_types.items():
        test[t].append(i)
    scores = score_predictions(lambda image: classical_instances(image, config), open_source(data), test,
                               progress=progress)
    return {i: (r["type"], np.array([float(r["score"])])) for i, r in scores.per_image.items()}


def classical_table(name: str, scores: PerImage) -> ScoreTable:
    """One segmenter's single run as a score table (``--save-classical``, read back as ``NAME=FILE``)."""
    return ScoreTable.from_per_image([name], [{i: float(v[0]) for i, (_, v) in scores.items()}],
                                     {i: t for i, (t, _) in scores.items()})


class NetworkCell(NamedTuple):
    """B - A on one group of images."""

    result: RunLevel
    p_holm: float  # within the group's family (every B of the table)
    verdict: Verdict
    improved: float  # share of images with a higher score
    p_networks: float  # sign-flip p of the per-image differences: these networks on these images


class NetworkComparison(NamedTuple):
    """Every segmenter against the first (A) on the images all of them scored, per group of images."""

    names: list[str]  # A first
    runs: dict[str, np.ndarray]  # name -> (runs, images)
    groups: dict[str, np.ndarray]  # group label -> mask over the images
    compared: dict[tuple[str, str], NetworkCell]  # (group, B) -> B - A, Holm within the group
    n_images: int
    level: float


def difference(vb: np.ndarray, va: np.ndarray, types, level: float) -> RunLevel:
    """B - A of two segmenters' score tables (runs, images) at the run level."""
    if len(va) == 1:
        return (against_reference if len(vb) > 1 else conditional)(vb, va[0], types, level=level)
    if len(vb) == 1:
        return negated(against_reference(va, vb[0], types, level=level))
    return unpaired(vb, va, types, level=level)


def _cell(result: RunLevel, p_holm: float, d: np.ndarray, types: np.ndarray) -> NetworkCell:
    counts = np.unique(types, return_counts=True)[1]
    few = len(d) < MIN_N or counts.min() < MIN_PER_STRATUM
    v = Verdict("no verdict", "", TOO_FEW) if few else verdict(result, p_holm)
    return NetworkCell(result, p_holm, v, float(np.mean(d > 1e-9)), sign_flip_test(d)[0])


def image_groups(types: np.ndarray) -> dict[str, np.ndarray]:
    """The groups every comparison of trained networks reports: CT1, the other types, all and each cell type,
    as masks over ``types`` (the empty ones left out)."""
    known = types == KNOWN_TYPE
    groups = {"CT1": known, "without CT1": ~known, "all": np.ones_like(known)}
    groups.update({f"type {t}": types == t for t in sorted(set(types))})
    return {g: mask for g, mask in groups.items() if mask.any()}


def compare_networks(scores: Mapping[str, PerImage], level: float = 0.95) -> NetworkComparison:
    """B - A for every segmenter B after the first, on CT1, without CT1, all and each cell type."""
    names = list(scores)
    first = scores[names[0]]
    ids = sorted(set.intersection(*(set(s) for s in scores.values())))
    types = np.array([first[i][0] for i in ids])
    groups = image_groups(types)
    runs = {name: np.stack([scores[name][i][1] for i in ids], axis=1) for name in names}
    va = runs[names[0]]
    cells = [(g, name) for g in groups for name in names[1:]]
    results = [difference(runs[name][:, groups[g]], va[:, groups[g]], types[groups[g]], level) for g, name in cells]
    adjusted = holm_by_family([r.p for r in results], [g for g, _ in cells])
    compared = {(g, name): _cell(r, float(h), runs[name][:, groups[g]].mean(0) - va[:, groups[g]].mean(0),
                                 types[groups[g]])
                for (g, name), r, h in zip(cells, results, adjusted)}
    return NetworkComparison(names, runs, groups, compared, len(ids), level)


def networks_markdown(c: NetworkComparison) -> str:
    """The comparison as a heading line and a Markdown table: each segmenter's MAP and B - A per group."""
    name_a, others = c.names[0], c.names[1:]
    lines = [f"{c.n_images} images in all scored; B - A with {c.level:.0%} run-level intervals (docs/statistics.md; "
             f"the claim each carries in brackets), Holm within each row's family; ✓ / ✗ better / worse, – no "
             f"verdict (fewer than {MIN_N} images or a type of fewer than {MIN_PER_STRATUM}); these networks p = "
             f"sign-flip p of the per-image differences (runs held fixed)", ""]
    heads = [f"{n} ({len(c.runs[n])} run{'s' * (len(c.runs[n]) > 1)})" for n in c.names]
    lines.append(f"| images | n | {' | '.join(heads)} | " + " | ".join(f"{n} - {name_a}" for n in others) + " |")
    lines.append("|---|---|" + "---|" * len(c.names) + "---|" * len(others))
    for g, mask in c.groups.items():
        means = [f"{c.runs[name][:, mask].mean():.3f}" for name in c.names]
        diffs = []
        for name in others:
            x = c.compared[(g, name)]
            mark = x.verdict.mark or ("–" if x.verdict.word == "no verdict" else "")
            diffs.append(f"{x.result}{' ' + mark if mark else ''} ({_claim(x.result)}), {x.improved:.0%} improved, "
                         f"Holm p {x.p_holm:.2g}, these networks p {x.p_networks:.2g}")
        lines.append(f"| {g} | {int(mask.sum())} | " + " | ".join(means) + " | " + " | ".join(diffs) + " |")
    return "\n".join(lines) + "\n"


def _claim(r: RunLevel) -> str:
    return {CONDITIONAL: "this network"}.get(r.claim, r.claim)


def networks_csv(c: NetworkComparison) -> str:
    """The comparison as CSV: one row per group and B."""
    name_a = c.names[0]
    va = c.runs[name_a]
    lines = ["group,n,a,b,runs_a,runs_b,mean_a,mean_b,diff,low,high,se,df,claim,p,p_holm,verdict,improved,p_networks"]
    for (g, name), x in c.compared.items():
        mask, vb, r = c.groups[g], c.runs[name], x.result
        lines.append(",".join([f'"{g}"', str(int(mask.sum())), name_a, name, str(len(va)), str(len(vb)),
                               f"{va[:, mask].mean():.4f}", f"{vb[:, mask].mean():.4f}", f"{r.estimate:.4f}",
                               f"{r.low:.4f}", f"{r.high:.4f}", f"{r.se:.4f}", f"{r.df:.2f}", f'"{r.claim}"',
                               f"{r.p:.3g}", f"{x.p_holm:.3g}", x.verdict.word, f"{x.improved:.3f}",
                               f"{x.p_networks:.3g}"]))
    return "\n".join(lines) + "\n"
