#!/usr/bin/env python
"""Several trainings of one recipe (seeds) as one committed table: their MAPs and every per-image score.

Each ``NAME=PATH`` is a ``baseline.json``-style file (the end of ``python -m dng_jax.train``, or
``scripts/score_checkpoint.py``) of one run, all scored on the same images. Written to ``--output``:

  maps.csv         one row per run: the MAP on CT1, on the other types, on all, and per cell type
  test_scores.csv  run, image, cell_type, score: the per-image table that ``scripts/compare_baselines.py``
                   reads as one segmenter with several runs (two-level intervals: runs and images resampled)

    python scripts/collect_seeds.py --output docs/figures/cpu_real_baselines \\
        seed0=runs/baseline_cpu_real/baseline.json seed1=runs/base_seed1/baseline.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

from dng_jax.errors import ConfigError  # noqa: E402
from dng_jax.evaluation.scores import ScoreTable, groups, write_scores  # noqa: E402
from dng_jax.io.atomic import atomic_write_text  # noqa: E402


def read_run(spec: str) -> tuple[str, dict[str, tuple[str, float]]]:
    """``NAME=PATH`` -> (name, {image id: (cell type, score)})."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"{spec!r}: expected NAME=PATH")
    try:
        per_image = json.loads(Path(path).read_text())["per_image"]
        return name, {i: (r["type"], float(r["score"])) for i, r in per_image.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a baseline.json with per-image scores ({type(e).__name__}: {e})") from None


def maps_csv(table: ScoreTable) -> str:
    """The report's views (:func:`dng_jax.evaluation.scores.groups`): CT1, the other types, all, each type."""
    views = groups(table.ids, table.types)
    names = {"known": "map_ct1", "unknown": "map_unknown", "all": "map_all"}
    names.update({v: f"map_{v.removeprefix('type:')}" for v in views if v.startswith("type:")})
    means = {v: table.select(views[v]).scores.mean(axis=1) for v in names}
    lines = [",".join(["run", *names.values()])]
    lines += [",".join([run] + [f"{means[v][r]:.4f}" for v in names]) for r, run in enumerate(table.runs)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=PATH of a baseline.json, one per run")
    ap.add_argument("--output", required=True, help="folder for maps.csv and test_scores.csv")
    a = ap.parse_args()
    try:
        runs = [read_run(s) for s in a.runs]
    except ConfigError as e:
        sys.exit(f"error: {e}")
    ids = list(runs[0][1])
    for name, per_image in runs[1:]:
        if set(per_image) != set(ids):
            sys.exit(f"error: {name} was scored on other images than {runs[0][0]} "
                     f"({len(set(per_image) ^ set(ids))} differ); score every run on the same split")
    types = [runs[0][1][i][0] for i in ids]
    table = ScoreTable.from_per_image([n for n, _ in runs], [{i: p[i][1] for i in ids} for _, p in runs],
                                      dict(zip(ids, types)))
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    write_scores(out / "test_scores.csv", table)
    atomic_write_text(out / "maps.csv", maps_csv(table))
    print((out / "maps.csv").read_text(), end="")


if __name__ == "__main__":
    main()
