"""Several trainings of one recipe (seeds) as one table: their MAPs and every per-image score.

Each ``NAME=PATH`` is a ``baseline.json``-style file of one run (the end of ``python -m dng_jax.train``, or
``python -m dng_jax.evaluate checkpoint``), all scored on the same images. Written to the output folder
(``python -m dng_jax.evaluate seeds``):

  maps.csv         one row per run: the MAP on CT1, on the other types, on all, and per cell type
  test_scores.csv  run, image, cell_type, score: the per-image table that ``python -m dng_jax.evaluate
                   networks`` reads as one segmenter with several runs (two-level intervals: runs and
                   images resampled)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dng_jax.errors import InputError
from dng_jax.evaluation.networks import parse_named, read_baseline_json
from dng_jax.evaluation.scores import ScoreTable, groups, write_scores
from dng_jax.io.atomic import atomic_write_text

__all__ = ["seeds_table", "maps_csv", "collect_seeds"]


def seeds_table(specs: Sequence[str]) -> ScoreTable:
    """``NAME=PATH`` of each run's baseline.json -> one score table, a row per run (the same images each)."""
    runs = [(name, read_baseline_json(path)) for name, path in parse_named(specs)]
    first_name, first = runs[0]
    ids = list(first)
    for name, per_image in runs[1:]:
        if set(per_image) != set(ids):
            raise InputError(f"{name} was scored on other images than {first_name} "
                             f"({len(set(per_image) ^ set(ids))} differ); score every run on the same split")
    return ScoreTable.from_per_image([n for n, _ in runs], [{i: p[i][1] for i in ids} for _, p in runs],
                                     {i: first[i][0] for i in ids})


def maps_csv(table: ScoreTable) -> str:
    """The report's views (:func:`dng_jax.evaluation.scores.groups`): CT1, the other types, all, each type."""
    views = groups(table.ids, table.types)
    names = {"known": "map_ct1", "unknown": "map_unknown", "all": "map_all"}
    names.update({v: f"map_{v.removeprefix('type:')}" for v in views if v.startswith("type:")})
    means = {v: table.select(views[v]).scores.mean(axis=1) for v in names}
    lines = [",".join(["run", *names.values()])]
    lines += [",".join([run] + [f"{means[v][r]:.4f}" for v in names]) for r, run in enumerate(table.runs)]
    return "\n".join(lines) + "\n"


def collect_seeds(specs: Sequence[str], output: str | Path) -> str:
    """Write ``test_scores.csv`` and ``maps.csv`` of the runs to ``output``; returns maps.csv's text."""
    table = seeds_table(specs)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_scores(out / "test_scores.csv", table)
    text = maps_csv(table)
    atomic_write_text(out / "maps.csv", text)
    return text
