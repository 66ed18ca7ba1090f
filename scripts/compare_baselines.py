#!/usr/bin/env python
"""Paired comparison of segmenters on the same test images, per group and per cell type.

Each scored segmenter is ``NAME=PATH``: a training's ``baseline.json`` (per-image scores, written at the
end of ``python -m dng_jax.train``), a ``scores.csv`` of a sweep stage (e.g. ``WORKDIR/classical/scores.csv``,
seeds averaged per image), or ``classical`` (the reference without learning, scored here on the
images of the first one with the ``classical`` settings of ``--config``). The first is A; every other
is compared with it: B - A per image, the mean with its bootstrap interval (images resampled within
cell types), the share of images improved, on CT1, on the other types, on all and on each type.

    python scripts/compare_baselines.py --data ../shared/data/dsb2018/stage1_train.zip \\
        classical=classical new=runs/baseline_cpu_real/baseline.json old=runs/cpu_real/baseline/baseline.json
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
from dng_jax.evaluation.scores import read_scores  # noqa: E402
from dng_jax.evaluation.statistics import paired_comparison  # noqa: E402
from dng_jax.segmentation.classical import classical_instances  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_per_image(path: Path) -> dict[str, tuple[str, float]]:
    """``{image id: (cell type, score)}`` from a baseline.json or a scores.csv (runs averaged per image)."""
    if path.suffix == ".json":
        per_image = json.loads(path.read_text())["per_image"]
        return {i: (r["type"], float(r["score"])) for i, r in per_image.items()}
    table = read_scores(path)
    return {i: (t, float(v)) for i, t, v in zip(table.ids, table.types, table.per_image_mean())}


def classical_scores(ids_types: dict[str, str], data: str, config) -> dict[str, tuple[str, float]]:
    test: dict[str, list[str]] = defaultdict(list)
    for i, t in ids_types.items():
        test[t].append(i)
    scores = score_predictions(lambda image: classical_instances(image, config.classical), open_source(data), test)
    return {i: (r["type"], float(r["score"])) for i, r in scores.per_image.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scored", nargs="+", help="NAME=PATH (baseline.json, scores.csv or 'classical'); the first is A")
    ap.add_argument("--data", default=None, help="the DSB2018 zip, for 'classical' (default: the config's)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "cpu_real.py"), help="for the classical settings")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--level", type=float, default=0.95)
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
    name_a = named[0][0]
    va = np.array([scores[name_a][i][1] for i in ids])
    print(f"{len(ids)} images in all scored; B - A with {a.level:.0%} bootstrap intervals (within cell types)")
    print(f"\n| images | n | {' | '.join(n for n, _ in named)} | " + " | ".join(f"{n} - {name_a}" for n, _ in named[1:])
          + " |")
    print("|---|---|" + "---|" * len(named) + "---|" * (len(named) - 1))
    for g, mask in groups.items():
        if not mask.any():
            continue
        cells = [f"{va[mask].mean():.3f}"]
        diffs = []
        for name, _ in named[1:]:
            vb = np.array([scores[name][i][1] for i in ids])
            pc = paired_comparison(va[mask], vb[mask], types[mask], n_boot=a.n_boot, level=a.level)
            cells.append(f"{vb[mask].mean():.3f}")
            diffs.append(f"{pc.diff.estimate:+.3f} [{pc.diff.low:+.3f}, {pc.diff.high:+.3f}], "
                         f"{pc.improved:.0%} improved")
        print(f"| {g} | {int(mask.sum())} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")


if __name__ == "__main__":
    main()
