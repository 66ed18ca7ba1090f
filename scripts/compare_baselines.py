#!/usr/bin/env python
"""Paired comparison of segmenters on the same test images, per group and per cell type.

Each scored segmenter is ``NAME=PATH``: a training's ``baseline.json`` (per-image scores, written at the
end of ``python -m dng_jax.train``), a ``scores.csv`` of a sweep stage (e.g. ``WORKDIR/baseline/scores.csv``,
one row per run), or ``classical`` (the reference without learning, scored here on the images of the
first one with the ``classical`` settings of ``--config``). The first is A; every other is compared with
it: B - A per image (each side's runs averaged), the mean with its two-level bootstrap interval (the
runs of each side and the images within cell types resampled), the share of images improved and the
sign-flip permutation p, Holm-adjusted over the table, on CT1, on the other types, on all and on each type.

    python scripts/compare_baselines.py --data ../shared/data/dsb2018/stage1_train.zip \\
        classical=classical new=runs/baseline_cpu_real/baseline.json old=runs/cpu_real/baseline/baseline.json

``--csv FILE`` writes the table as CSV too; ``--save-classical FILE`` keeps the classical reference's
per-image scores, which a later call reads back as ``classical=FILE`` instead of segmenting again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

from dng_jax.config import experiment_config, load_config  # noqa: E402
from dng_jax.data.sources import open_source  # noqa: E402
from dng_jax.data.partition import KNOWN_TYPE  # noqa: E402
from dng_jax.evaluation.evaluator import score_predictions  # noqa: E402
from dng_jax.evaluation.scores import ScoreTable, read_scores, write_scores  # noqa: E402
from dng_jax.evaluation.statistics import paired_comparison, with_holm  # noqa: E402
from dng_jax.io.atomic import atomic_write_text  # noqa: E402
from dng_jax.segmentation.classical import classical_instances  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_per_image(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """``{image id: (cell type, its score in every run)}`` from a baseline.json (one run) or a scores.csv."""
    if path.suffix == ".json":
        per_image = json.loads(path.read_text())["per_image"]
        return {i: (r["type"], np.array([float(r["score"])])) for i, r in per_image.items()}
    table = read_scores(path)
    return {i: (t, table.scores[:, j]) for j, (i, t) in enumerate(zip(table.ids, table.types))}


def classical_scores(ids_types: dict[str, str], data: str, config) -> dict[str, tuple[str, np.ndarray]]:
    test: dict[str, list[str]] = defaultdict(list)
    for i, t in ids_types.items():
        test[t].append(i)
    scores = score_predictions(lambda image: classical_instances(image, config.classical), open_source(data), test)
    return {i: (r["type"], np.array([float(r["score"])])) for i, r in scores.per_image.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scored", nargs="+", help="NAME=PATH (baseline.json, scores.csv or 'classical'); the first is A")
    ap.add_argument("--data", default=None, help="the DSB2018 zip, for 'classical' (default: the config's)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "cpu_real.py"), help="for the classical settings")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--csv", default=None, help="also write the table as CSV (one row per group and B)")
    ap.add_argument("--save-classical", default=None,
                    help="write the classical reference's per-image scores here (run,image,cell_type,score)")
    a = ap.parse_args()
    named = []
    for spec in a.scored:
        name, eq, path = spec.partition("=")
        if not eq:
            sys.exit(f"error: {spec!r} is not NAME=PATH")
        named.append((name, path))
    config = experiment_config(load_config(a.config))
    scores: dict[str, dict] = {}
    first_file = next((p for _, p in named if p != "classical"), None)
    if first_file is None:
        sys.exit("error: give at least one baseline.json or scores.csv")
    ref = read_per_image(Path(first_file))
    for name, path in named:
        if path == "classical":
            scores[name] = classical_scores({i: t for i, (t, _) in ref.items()}, a.data or config.data.path, config)
            if a.save_classical:
                write_scores(a.save_classical, ScoreTable.from_per_image(
                    [name], [{i: float(v[0]) for i, (_, v) in scores[name].items()}],
                    {i: t for i, (t, _) in scores[name].items()}))
        else:
            p = Path(path)
            if not p.exists():
                sys.exit(f"error: {p} does not exist")
            scores[name] = read_per_image(p)
    ids = sorted(set.intersection(*(set(s) for s in scores.values())))
    types = np.array([ref[i][0] for i in ids])
    known = types == KNOWN_TYPE
    groups = {"CT1": known, "without CT1": ~known, "all": np.ones_like(known)}
    groups.update({f"type {t}": types == t for t in sorted(set(types))})
    runs = {name: np.stack([scores[name][i][1] for i in ids], axis=1) for name, _ in named}  # (runs, images)
    name_a = named[0][0]
    va = runs[name_a]
    groups = {g: mask for g, mask in groups.items() if mask.any()}
    cells = [(g, name) for g in groups for name, _ in named[1:]]
    compared = with_holm([paired_comparison(va[:, groups[g]], runs[name][:, groups[g]], types[groups[g]],
                                            n_boot=a.n_boot, level=a.level) for g, name in cells])
    found = dict(zip(cells, compared))
    print(f"{len(ids)} images in all scored; B - A with {a.level:.0%} two-level intervals (runs of each side, "
          f"images within cell types); p = sign-flip permutation test, Holm-adjusted over the table's "
          f"{len(cells)} comparisons")
    heads = [f"{n} ({len(runs[n])} run{'s' * (len(runs[n]) > 1)})" for n, _ in named]
    print(f"\n| images | n | {' | '.join(heads)} | "
          + " | ".join(f"{n} - {name_a}" for n, _ in named[1:]) + " |")
    print("|---|---|" + "---|" * len(named) + "---|" * (len(named) - 1))
    for g, mask in groups.items():
        means = [f"{runs[name][:, mask].mean():.3f}" for name, _ in named]
        diffs = []
        for name, _ in named[1:]:
            pc = found[(g, name)]
            diffs.append(f"{pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}], "
                         f"{pc.improved:.0%} improved, p {pc.p:.2g} (Holm {pc.p_holm:.2g})")
        print(f"| {g} | {int(mask.sum())} | " + " | ".join(means) + " | " + " | ".join(diffs) + " |")
    if a.csv:
        lines = ["group,n,a,b,runs_a,runs_b,mean_a,mean_b,diff,low,high,improved,p,p_holm"]
        for (g, name), pc in found.items():
            mask = groups[g]
            lines.append(",".join([f'"{g}"', str(int(mask.sum())), name_a, name, str(len(va)), str(len(runs[name])),
                                   f"{va[:, mask].mean():.4f}", f"{runs[name][:, mask].mean():.4f}",
                                   f"{pc.diff.estimate:.4f}", f"{pc.diff.low:.4f}", f"{pc.diff.high:.4f}",
                                   f"{pc.improved:.3f}", f"{pc.p:.3g}", f"{pc.p_holm:.3g}"]))
        atomic_write_text(a.csv, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
