"""Ablation of the segmentation baseline on the CT1 *validation* images (never the test images).

Each ``--row NAME:FIELD=VALUE,...`` is a training: the base config (``--config``, default
``configs/cpu_real.py``) with the ``--set`` overrides of every row, then the row's own. Each trains in
``WORKDIR/NAME`` (resumable: rerun the same command), then its softmax on the validation images (with
and without test-time augmentation) goes through a grid of watershed readings. Written:

  WORKDIR/NAME/val.json   every reading's validation MAP, the training minutes
  WORKDIR/ablation.csv    one row per training: the paper's reading, the best reading, with TTA
  stdout                  the same as a Markdown table (docs/history.md quotes it)

    python scripts/studies/ablate_baseline.py --workdir runs/ablation --set train.epochs=20 \\
        --row paper: --row cosine:train.schedule=cosine,train.warmup_epochs=1

A value is read as a Python literal where it parses as one (``1``, ``0.5``, ``(1.0, 2.0, 4.0)``),
else as a string (``cosine``).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import time
from pathlib import Path

import numpy as np

from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides, parse_row
from dng_jax.data.partition import open_data
from dng_jax.evaluation.metrics import image_score
from dng_jax.io.atomic import atomic_write_text
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.classical import classical_instances
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.postprocess import WatershedConfig, probs_to_instances
from dng_jax.segmentation.trainer import train_and_evaluate

#: The watershed readings scored for every training (the paper's is the first).
READINGS = [dict(background_source=b, expand_distance=e, marker_threshold=m)
            for b, e, m in itertools.product(("cell", "foreground"), (0, 1, 2), (0.8, 0.7, 0.5))]


def score_readings(samples, probs_by_tta: dict[bool, list[np.ndarray]]) -> list[dict]:
    rows = []
    for tta, probs in probs_by_tta.items():
        for reading in READINGS:
            cfg = WatershedConfig(**reading)
            scores = [image_score(s.labels, probs_to_instances(p, cfg)) for s, p in zip(samples, probs)]
            rows.append({**reading, "tta": tta, "val_map": float(np.mean(scores))})
    return rows


def run_row(name: str, config, workdir: Path, samples) -> dict:
    rdir = workdir / name
    out = rdir / "val.json"
    if out.exists():
        return json.loads(out.read_text())
    timing = rdir / "train_seconds.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    t0 = time.time()
    train_and_evaluate(config, rdir, evaluate=False)
    spent += time.time() - t0
    rdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(timing, json.dumps({"seconds": spent}) + "\n")
    variables, model, _ = load_variables(rdir)
    probs = {tta: [predict_probs(variables, model, s.image, tta=tta) for s in samples] for tta in (False, True)}
    result = {"name": name, "train_minutes": spent / 60, "readings": score_readings(samples, probs)}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "cpu_real.py"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--set", default="", help="overrides of every row: FIELD=VALUE,...")
    ap.add_argument("--row", action="append", required=True, help="NAME:FIELD=VALUE,... (NAME: alone = the base)")
    a = ap.parse_args()
    workdir = Path(a.workdir)
    common = parse_overrides(a.set)
    rows = [parse_row(spec) for spec in a.row]

    base = experiment_config(apply_overrides(load_config(a.config), common))
    source, _, splits = open_data(base.data, progress=False)
    samples = [source.load(i) for i in splits.val_known]
    classical = float(np.mean([image_score(s.labels, classical_instances(s.image, base.classical)) for s in samples]))
    print(f"{len(samples)} validation images; classical reference {classical:.4f}", flush=True)

    table = []
    paper_reading = {**READINGS[0], "tta": False}
    for name, overrides in rows:
        config = experiment_config(apply_overrides(load_config(a.config), {**common, **overrides}))
        result = run_row(name, config, workdir, samples)
        readings = result["readings"]
        paper = next(r for r in readings if all(r[k] == v for k, v in paper_reading.items()))
        plain = max((r for r in readings if not r["tta"]), key=lambda r: r["val_map"])
        tta = max((r for r in readings if r["tta"]), key=lambda r: r["val_map"])
        table.append({"name": name, "changes": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "-",
                      "train_minutes": round(result["train_minutes"], 1), "val_paper_reading": round(paper["val_map"], 4),
                      "val_best_reading": round(plain["val_map"], 4),
                      "best_reading": f"{plain['background_source']}/expand {plain['expand_distance']}/marker {plain['marker_threshold']}",
                      "val_best_tta": round(tta["val_map"], 4),
                      "best_tta_reading": f"{tta['background_source']}/expand {tta['expand_distance']}/marker {tta['marker_threshold']}"})
        print(f"{name}: {table[-1]}", flush=True)

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
    atomic_write_text(workdir / "ablation.csv", buf.getvalue())
    print(f"\nclassical reference on the same {len(samples)} validation images: {classical:.3f}\n")
    print("| row | change | train min | val MAP, paper reading | best reading | val MAP | + TTA (best reading) |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['name']} | {r['changes']} | {r['train_minutes']} | {r['val_paper_reading']:.3f} | {r['best_reading']} | "
              f"{r['val_best_reading']:.3f} | {r['val_best_tta']:.3f} ({r['best_tta_reading']}) |")


if __name__ == "__main__":
    main()
