#!/usr/bin/env python
"""The recipe for unseen types (configs/cpu_real_unseen.py) over three trainings, against configs/cpu_real.py's
three and the classical reference, on the wide protocol's test images, with and without TTA.

Seed 0 is the shipped model's training (its per-image scores: docs/figures/generalise/winner/, row seed0);
seeds 1 and 2 were trained again (docs/figures/replicated/seed<s>/training/baseline.json and
baseline_tta.json, from `python -m dng_jax.train --config configs/cpu_real_unseen.py --config.train.seed=S`
and `python -m dng_jax.evaluate checkpoint --tta`). Written to --output: test_scores.csv and
tta/test_scores.csv (one row per training), and the run-level comparisons of `python -m dng_jax.evaluate
networks`: against_classical.md / .csv (the trainings against the reference: a claim about the recipe) and
against_cpu_real.md / .csv (3 against 3 trainings, unpaired).

    python scripts/studies/replicated_recipe.py --output docs/figures/replicated/recipe
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dng_jax.evaluation.networks import (compare_networks, networks_csv, networks_markdown, read_baseline_json,
                                         read_per_image)
from dng_jax.evaluation.scores import ScoreTable, read_scores, write_scores
from dng_jax.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
WINNER = FIGURES / "generalise" / "winner"


def trainings(tta: bool) -> ScoreTable:
    """Seed 0's committed row and seeds 1 and 2's baseline(.tta).json, on seed 0's images."""
    seed0 = read_scores(WINNER / ("tta" if tta else "") / "test_scores.csv")
    seed0 = ScoreTable(("seed0",), seed0.ids, seed0.types, seed0.scores[list(seed0.runs).index("seed0")][None])
    rows, names = [dict(zip(seed0.ids, seed0.scores[0]))], ["seed0"]
    for s in (1, 2):
        path = FIGURES / "replicated" / f"seed{s}" / "training" / ("baseline_tta.json" if tta else "baseline.json")
        rows.append({i: score for i, (_, score) in read_baseline_json(path).items()})
        names.append(f"seed{s}")
    return ScoreTable.from_per_image(names, rows, dict(zip(seed0.ids, seed0.types)), ids=list(seed0.ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=str(FIGURES / "replicated" / "recipe"))
    out = Path(ap.parse_args().output)
    (out / "tta").mkdir(parents=True, exist_ok=True)
    write_scores(out / "test_scores.csv", trainings(tta=False))
    write_scores(out / "tta" / "test_scores.csv", trainings(tta=True))
    scored = {"classical": read_per_image(WINNER / "classical_test_scores.csv"),
              "unseen": read_per_image(out / "test_scores.csv"),
              "unseen_tta": read_per_image(out / "tta" / "test_scores.csv")}
    comparisons = {"against_classical": scored,
                   "against_cpu_real": {"cpu_real": read_per_image(FIGURES / "cpu_real_baselines" / "test_scores.csv"),
                                        "unseen": scored["unseen"]}}
    for name, table in comparisons.items():
        c = compare_networks(table)
        atomic_write_text(out / f"{name}.md", networks_markdown(c))
        atomic_write_text(out / f"{name}.csv", networks_csv(c))
        print(networks_markdown(c))


if __name__ == "__main__":
    main()
