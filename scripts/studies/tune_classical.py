"""Choose the classical reference's parameters on the validation set (never the test images).

Grid search over ``sigma`` x ``min_distance`` x ``min_size`` of :mod:`dng_jax.segmentation.classical`,
scored by the Kaggle MAP on the wide protocol's CT1 validation images (5% of CT1, seed 0). Prints
every setting's validation MAP (best first) and the winner; the defaults of ``ClassicalConfig`` and
``configs/paper.py`` are this script's winner, recorded in docs/history.md:

    python scripts/studies/tune_classical.py --data ../shared/data/dsb2018/stage1_train.zip [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from dng_jax.config import DataConfig
from dng_jax.data.partition import open_data
from dng_jax.evaluation.metrics import image_score
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the DSB2018 stage1_train.zip (or folder)")
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    ap.add_argument("--min-distance", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12])
    ap.add_argument("--min-size", type=int, nargs="+", default=[0, 10, 30, 60])
    ap.add_argument("--json", default=None, help="also write every setting's score here")
    a = ap.parse_args()
    source, _, splits = open_data(DataConfig(path=a.data, protocol="wide"), progress=False)
    samples = [source.load(i) for i in splits.val_known]
    t0 = time.time()
    results = []
    for sigma, md, ms in itertools.product(a.sigma, a.min_distance, a.min_size):
        cfg = ClassicalConfig(sigma=sigma, min_distance=md, min_size=ms)
        scores = [image_score(s.labels, classical_instances(s.image, cfg)) for s in samples]
        results.append({"sigma": sigma, "min_distance": md, "min_size": ms, "val_map": float(np.mean(scores))})
    results.sort(key=lambda r: -r["val_map"])
    print(f"{len(samples)} validation images, {len(results)} settings, {time.time() - t0:.0f} s")
    for r in results[:15]:
        print(f"  sigma {r['sigma']:<4} min_distance {r['min_distance']:<3} min_size {r['min_size']:<3} "
              f"val MAP {r['val_map']:.4f}")
    print("best:", results[0])
    if a.json:
        Path(a.json).write_text(json.dumps({"validation_ids": splits.val_known, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
