#!/usr/bin/env python
"""The screening's candidate at full length (scripts/studies/candidate_runs.sh) on the wide protocol's test
images: its trainings against the classical reference and against the recipe's three trainings, per cell type,
with and without TTA, at the run level (python -m dng_jax.evaluate networks).

Reads docs/figures/generalise/candidate/NAME/seed<S>/baseline.json and baseline_tta.json (every committed
seed), writes into that folder test_scores.csv and tta/test_scores.csv (one row per training), against_classical
.md / .csv (the recipe's and the candidate's trainings against the reference: claims about a way of training),
against_recipe[_tta].md / .csv (the candidate's trainings against the recipe's, unpaired) and, for the seeds that
started from the recipe's own training of that seed (seed<S>/started_from.txt: the candidate only adds
self-training rounds), on_recipe.csv: the added rounds on top of each such training (nested, the trainings
as top units). choosing_tta.csv: each seed's MAP with TTA on the choosing pool (the validation images the screening
chose on, seed<S>/choosing_tta.json) beside the recipe's training of that seed on the same images (the validation
scores of docs/figures/replicated/ensemble): did the screening's 20-epoch lead hold at full length?
clustering/on_recipe.csv: each configuration of the clustering studies on the candidate (scripts/studies/
candidate_clustering.sh) against the recipe's training its seed started from, validation images first: did the
rounds and the clustering step, together, beat the recipe? (After the test tables of those studies were seen: a lead.)

    python scripts/studies/candidate_report.py --name agreement
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.networks import (compare_networks, image_groups, networks_csv, networks_markdown,
                                         read_baseline_json, read_per_image)
from dng_jax.evaluation.run_level import judge, nested
from dng_jax.evaluation.scores import ScoreTable, read_scores, write_scores
from dng_jax.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
CANDIDATES = FIGURES / "generalise" / "candidate"
RECIPE = FIGURES / "replicated" / "recipe"
RECIPE_VALIDATION = FIGURES / "replicated" / "ensemble" / "tta" / "validation_scores.csv"
CLASSICAL = FIGURES / "generalise" / "winner" / "classical_test_scores.csv"
RECIPE_SWEEP = FIGURES / "replicated" / "seed{}" / "sweep" / "baseline" / "scores.csv"  # exported weights, no TTA


def trainings(folder: Path, tta: bool) -> ScoreTable:
    """One row per committed seed of ``folder`` (seed<S>/baseline[_tta].json), on the images all of them scored."""
    seeds = sorted(p for p in folder.glob("seed*") if (p / "baseline_tta.json").exists())
    if not seeds:
        raise SystemExit(f"{folder}: no seed<S>/baseline_tta.json yet (scripts/studies/candidate_runs.sh writes them)")
    rows = [read_baseline_json(p / ("baseline_tta.json" if tta else "baseline.json")) for p in seeds]
    ids = sorted(set.intersection(*(set(r) for r in rows)))
    types = {i: rows[0][i][0] for i in ids}
    return ScoreTable.from_per_image([p.name for p in seeds], [{i: r[i][1] for i in ids} for r in rows], types,
                                     ids=ids)


def on_recipe(folder: Path, tta: bool) -> list[str] | None:
    """The candidate's rounds on top of the recipe trainings they started from (seeds with started_from.txt):
    CSV lines of group, n, seeds, recipe, candidate, difference, interval, p, verdict; None without such seeds.
    Without TTA the teacher's own scores (recipe_baseline.json); with TTA the committed recipe row of that seed,
    for the seeds whose teacher scores equal that row's (the same training; a retraining on another machine
    may differ in the last bits)."""
    sub = "tta/" if tta else ""
    started = [p for p in sorted(folder.glob("seed*")) if (p / "started_from.txt").exists()]
    cand, recipe = read_scores(folder / f"{sub}test_scores.csv"), read_scores(RECIPE / f"{sub}test_scores.csv")
    plain = read_scores(RECIPE / "test_scores.csv")
    in_recipe = set(recipe.ids)
    ids = [i for i in cand.ids if i in in_recipe]
    pick = lambda t, run: t.scores[list(t.runs).index(run)][[list(t.ids).index(i) for i in ids]]  # noqa: E731
    teacher = {p.name: np.array([read_baseline_json(p / "recipe_baseline.json")[i][1] for i in ids]) for p in started}
    if tta:
        teacher = {s: pick(recipe, s) for s, v in teacher.items()
                   if s in plain.runs and np.allclose(v, pick(plain, s), rtol=0, atol=1e-9)}
    if not teacher:
        return None
    seeds = sorted(teacher)
    y = np.stack([pick(cand, s) for s in seeds])[:, None, :]  # (B, 1 run, N)
    x = np.stack([teacher[s] for s in seeds])  # (B, N)
    types = np.array([cand.types[list(cand.ids).index(i)] for i in ids])
    groups = image_groups(types)
    results = [nested(y[..., m], x[:, m], types[m]) for m in groups.values()]
    lines = []
    for (g, m), r, (_, v) in zip(groups.items(), results, judge(results, list(groups))):
        lines.append(f"{tta},{g},{int(m.sum())},{'/'.join(seeds)},{x[:, m].mean():.4f},{y[..., m].mean():.4f},"
                     f"{float(r.estimate):+.4f},{float(r.low):+.4f},{float(r.high):+.4f},{float(r.p):.3g},{v.word}")
    return lines


def choosing(folder: Path) -> str | None:
    """CSV: per seed with choosing_tta.json, the candidate's and the recipe's MAP per group on the choosing pool."""
    seeds = [p for p in sorted(folder.glob("seed*")) if (p / "choosing_tta.json").exists()]
    if not seeds:
        return None
    recipe = read_scores(RECIPE_VALIDATION)
    lines = ["seed,group,n,recipe,candidate,difference"]
    for p in seeds:
        cand = read_baseline_json(p / "choosing_tta.json")
        row = dict(zip(recipe.ids, recipe.scores[list(recipe.runs).index(p.name)]))
        ids = sorted(cand)
        types = np.array([cand[i][0] for i in ids])
        y, x = np.array([cand[i][1] for i in ids]), np.array([row[i] for i in ids])
        groups = {g: m for g, m in image_groups(types).items() if g not in ("all", f"type {KNOWN_TYPE}")}
        for g, m in groups.items():
            lines.append(f"{p.name},{g},{int(m.sum())},{x[m].mean():.4f},{y[m].mean():.4f},{y[m].mean() - x[m].mean():+.4f}")
    return "\n".join(lines) + "\n"


def clustering_on_recipe(folder: Path) -> str | None:
    """CSV: every configuration of the clustering studies on the candidate's seeds that started from the recipe's
    training (clustering/seed<S>/<row>/runs/<configuration>/scores.csv, each run paired with the recipe's training
    of its seed, both from exported weights, without TTA), nested with the trainings as top units; Holm over the
    configurations within each split and group. None before a study is committed."""
    root = folder / "clustering"
    seeds = [p.name for p in sorted(root.glob("seed*"))
             if (p / "study.csv").exists() and (folder / p.name / "started_from.txt").exists()]
    if not seeds:
        return None
    rows = sorted({(r.parent.parent.name, r.name) for s in seeds for r in (root / s).glob("*/runs/*")
                   if all((root / t / r.parent.parent.name / "runs" / r.name / "scores.csv").exists() for t in seeds)})
    if not rows:
        return None
    recipe = {s: read_scores(str(RECIPE_SWEEP).format(s.removeprefix("seed"))) for s in seeds}
    clustered = {rc: [read_scores(root / s / rc[0] / "runs" / rc[1] / "scores.csv") for s in seeds] for rc in rows}
    split = json.loads((root / seeds[0] / rows[0][0] / "test_set.json").read_text())
    lines = ["split,row,configuration,group,n,seeds,runs,recipe,clustered,difference,low,high,p_holm,verdict"]
    for name in ("val", "test"):
        ids = sorted(i for ids in split[name].values() for i in ids)
        col = lambda t: [list(t.ids).index(i) for i in ids]  # noqa: E731
        first = recipe[seeds[0]]
        types = np.array([first.types[list(first.ids).index(i)] for i in ids])
        groups = {g: m for g, m in image_groups(types).items() if not g.startswith("type ")}
        x = np.stack([recipe[s].scores[0][col(recipe[s])] for s in seeds])  # (B, N)
        results, keys = [], []
        for row, conf in rows:
            y = [t.scores[:, col(t)] for t in clustered[row, conf]]  # B x (R, N)
            for g, m in groups.items():
                results.append(nested([r[:, m] for r in y], x[:, m], types[m]))
                keys.append((row, conf, g, int(m.sum()), sum(len(r) for r in y), x[:, m].mean(),
                             np.mean([r[:, m].mean() for r in y])))
        for (row, conf, g, n, runs, xm, ym), r, (ph, v) in zip(keys, results, judge(results, [k[2] for k in keys])):
            lines.append(f"{name},{row},{conf},{g},{n},{'/'.join(seeds)},{runs},{xm:.4f},{ym:.4f},{float(r.estimate):+.4f},"
                         f"{float(r.low):+.4f},{float(r.high):+.4f},{ph:.3g},{v.word}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="the candidate (docs/figures/generalise/candidate/NAME)")
    folder = CANDIDATES / ap.parse_args().name
    (folder / "tta").mkdir(parents=True, exist_ok=True)
    write_scores(folder / "test_scores.csv", trainings(folder, tta=False))
    write_scores(folder / "tta" / "test_scores.csv", trainings(folder, tta=True))
    recipe, recipe_tta = read_per_image(RECIPE / "test_scores.csv"), read_per_image(RECIPE / "tta" / "test_scores.csv")
    candidate = read_per_image(folder / "test_scores.csv")
    candidate_tta = read_per_image(folder / "tta" / "test_scores.csv")
    comparisons = {
        "against_classical": {"classical": read_per_image(CLASSICAL), "recipe_tta": recipe_tta,
                              "candidate": candidate, "candidate_tta": candidate_tta},
        "against_recipe": {"recipe": recipe, "candidate": candidate},
        "against_recipe_tta": {"recipe_tta": recipe_tta, "candidate_tta": candidate_tta},
    }
    for name, table in comparisons.items():
        c = compare_networks(table)
        atomic_write_text(folder / f"{name}.md", networks_markdown(c))
        atomic_write_text(folder / f"{name}.csv", networks_csv(c))
        print(f"## {name}\n\n{networks_markdown(c)}")
    paired = [line for tta in (False, True) for line in (on_recipe(folder, tta) or [])]
    if paired:
        csv = "\n".join(["tta,group,n,seeds,recipe,candidate,difference,low,high,p,verdict"] + paired) + "\n"
        atomic_write_text(folder / "on_recipe.csv", csv)
        print(f"## on_recipe (the added rounds on top of the recipe's trainings they started from)\n\n{csv}")
    pool = choosing(folder)
    if pool:
        atomic_write_text(folder / "choosing_tta.csv", pool)
        print(f"## choosing pool with TTA (validation), each seed against the recipe's training of that seed\n\n{pool}")
    on_top = clustering_on_recipe(folder)
    if on_top:
        atomic_write_text(folder / "clustering" / "on_recipe.csv", on_top)
        print(f"## clustering on the candidate against the recipe's trainings its seeds started from\n\n{on_top}")


if __name__ == "__main__":
    main()
