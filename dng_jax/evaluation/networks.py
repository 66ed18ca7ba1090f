"""Trained networks and the classical reference paired on the same test images, per group and cell type.

Each scored segmenter is ``NAME=PATH``: a training's ``baseline.json`` (per-image scores, written at the
end of ``python -m dng_jax.train`` or by ``python -m dng_jax.evaluate checkpoint``), a ``scores.csv`` (a
sweep stage's, e.g. ``WORKDIR/baseline/scores.csv``, or ``python -m dng_jax.evaluate seeds``'
``test_scores.csv``: one row per run), or ``classical`` (the reference without learning, scored on the
images of the first file). The first is A; every other is compared with it: B - A per image (each side's
runs averaged), the mean with its two-level bootstrap interval (the runs of each side and the images
within cell types resampled), the share of images improved and the sign-flip permutation p,
Holm-adjusted over the table, on CT1, on the other types, on all and on each type
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
from dng_jax.evaluation.statistics import PairedComparison, paired_comparison, with_holm
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances

__all__ = ["CLASSICAL", "PerImage", "parse_named", "read_baseline_json", "read_per_image", "classical_scores",
           "classical_table", "NetworkComparison", "compare_networks", "networks_markdown", "networks_csv"]

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


def classical_scores(ids_types: Mapping[str, str], data: str, config: ClassicalConfig) -> PerImage:
    """The classical reference (Otsu + distance-transform watershed) scored on these images of ``data``."""
    test: dict[str, list[str]] = defaultdict(list)
    for i, t in ids_types.items():
        test[t].append(i)
    scores = score_predictions(lambda image: classical_instances(image, config), open_source(data), test)
    return {i: (r["type"], np.array([float(r["score"])])) for i, r in scores.per_image.items()}


def classical_table(name: str, scores: PerImage) -> ScoreTable:
    """One segmenter's single run as a score table (``--save-classical``, read back as ``NAME=FILE``)."""
    return ScoreTable.from_per_image([name], [{i: float(v[0]) for i, (_, v) in scores.items()}],
                                     {i: t for i, (t, _) in scores.items()})


class NetworkComparison(NamedTuple):
    """Every segmenter against the first (A) on the images all of them scored, per group of images."""

    names: list[str]  # A first
    runs: dict[str, np.ndarray]  # name -> (runs, images)
    groups: dict[str, np.ndarray]  # group label -> mask over the images
    compared: dict[tuple[str, str], PairedComparison]  # (group, B) -> B - A, Holm over the table
    n_images: int
    level: float


def compare_networks(scores: Mapping[str, PerImage], n_boot: int = 2000, level: float = 0.95) -> NetworkComparison:
    """B - A for every segmenter B after the first, on CT1, without CT1, all and each cell type."""
    names = list(scores)
    first = scores[names[0]]
    ids = sorted(set.intersection(*(set(s) for s in scores.values())))
    types = np.array([first[i][0] for i in ids])
    known = types == KNOWN_TYPE
    groups = {"CT1": known, "without CT1": ~known, "all": np.ones_like(known)}
    groups.update({f"type {t}": types == t for t in sorted(set(types))})
    groups = {g: mask for g, mask in groups.items() if mask.any()}
    runs = {name: np.stack([scores[name][i][1] for i in ids], axis=1) for name in names}
    va = runs[names[0]]
    cells = [(g, name) for g in groups for name in names[1:]]
    compared = with_holm([paired_comparison(va[:, groups[g]], runs[name][:, groups[g]], types[groups[g]],
                                            n_boot=n_boot, level=level) for g, name in cells])
    return NetworkComparison(names, runs, groups, dict(zip(cells, compared)), len(ids), level)


def networks_markdown(c: NetworkComparison) -> str:
    """The comparison as a heading line and a Markdown table: each segmenter's MAP and B - A per group."""
    name_a, others = c.names[0], c.names[1:]
    lines = [f"{c.n_images} images in all scored; B - A with {c.level:.0%} two-level intervals (runs of each side, "
             f"images within cell types); p = sign-flip permutation test, Holm-adjusted over the table's "
             f"{len(c.compared)} comparisons", ""]
    heads = [f"{n} ({len(c.runs[n])} run{'s' * (len(c.runs[n]) > 1)})" for n in c.names]
    lines.append(f"| images | n | {' | '.join(heads)} | " + " | ".join(f"{n} - {name_a}" for n in others) + " |")
    lines.append("|---|---|" + "---|" * len(c.names) + "---|" * len(others))
    for g, mask in c.groups.items():
        means = [f"{c.runs[name][:, mask].mean():.3f}" for name in c.names]
        diffs = []
        for name in others:
            pc = c.compared[(g, name)]
            diffs.append(f"{pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}], "
                         f"{pc.improved:.0%} improved, p {pc.p:.2g} (Holm {pc.p_holm:.2g})")
        lines.append(f"| {g} | {int(mask.sum())} | " + " | ".join(means) + " | " + " | ".join(diffs) + " |")
    return "\n".join(lines) + "\n"


def networks_csv(c: NetworkComparison) -> str:
    """The comparison as CSV: one row per group and B."""
    name_a = c.names[0]
    va = c.runs[name_a]
    lines = ["group,n,a,b,runs_a,runs_b,mean_a,mean_b,diff,low,high,improved,p,p_holm"]
    for (g, name), pc in c.compared.items():
        mask, vb = c.groups[g], c.runs[name]
        lines.append(",".join([f'"{g}"', str(int(mask.sum())), name_a, name, str(len(va)), str(len(vb)),
                               f"{va[:, mask].mean():.4f}", f"{vb[:, mask].mean():.4f}",
                               f"{pc.diff.estimate:.4f}", f"{pc.diff.low:.4f}", f"{pc.diff.high:.4f}",
                               f"{pc.improved:.3f}", f"{pc.p:.3g}", f"{pc.p_holm:.3g}"]))
    return "\n".join(lines) + "\n"
