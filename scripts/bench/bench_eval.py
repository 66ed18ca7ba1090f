#!/usr/bin/env python
"""Scoring speed: images x runs per second of the sweep's evaluation, the pooled path against the serial one.

The sweep scores every run on every test image: forward pass (XLA), the paper's watershed and the
Kaggle metric. The serial path (before the evaluation issue) did all three in one process, image after
image; the pooled path (``SegmentationEvaluator`` with ``eval.workers`` processes) runs the forward
passes in the main process while a pool of worker processes does the watershed and the metric. Both
are timed side by side in one run, on the same images and the same network (``--runs`` repeats it, as
the sweep scores the runs of a configuration), and their scores are checked to be identical.

A second part times the forward pass alone, per image, three ways side by side: one image at a time
(what both paths do), images of one size batched, and the runs of a configuration vmapped (their
encoders differ; the way the sweep would batch runs). On XLA:CPU neither batching wins (docs/benchmarks.md).

    python scripts/bench/bench_eval.py --checkpoint runs/cpu_real/baseline \\
        --data ../shared/data/dsb2018/stage1_train.zip --images 60 --runs 2 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import jax
import jax.numpy as jnp

from dng_jax.config import DataConfig
from dng_jax.data.dsb2018 import SampleCache
from dng_jax.data.partition import open_data
from dng_jax.evaluation.evaluator import SegmentationEvaluator, score_predictions
from dng_jax.evaluation.scoring_pool import default_workers
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.inference import make_predictor


def _time(fn, *args, reps: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / reps


def time_forward(variables, model, runs: int) -> dict:
    """ms per image (per run-image for the vmapped runs) of the softmax forward pass at 256 and 1024 px."""
    def fwd(v, x):
        return jax.nn.softmax(model.apply(v, x, train=False), -1)

    one = jax.jit(fwd)
    many = jax.jit(jax.vmap(fwd, in_axes=(0, None)))
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (runs,) + a.shape), variables)
    out = {}
    for size in (256, 1024):
        x1 = jnp.zeros((1, size, size, 3))
        out[f"{size}px_one_image"] = round(1000 * _time(one, variables, x1), 1)
        out[f"{size}px_4_images_batched"] = round(1000 * _time(one, variables, jnp.zeros((4, size, size, 3))) / 4, 1)
        out[f"{size}px_{runs}_runs_vmapped"] = round(1000 * _time(many, stacked, x1) / runs, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a trained network (train or sweep baseline work dir)")
    ap.add_argument("--data", required=True, help="the DSB2018 stage1_train.zip")
    ap.add_argument("--images", type=int, default=60, help="test images (every k-th of the wide test set)")
    ap.add_argument("--runs", type=int, default=2, help="networks scored one after the other")
    ap.add_argument("--workers", type=int, default=0, help="pool size (0: one per core)")
    ap.add_argument("--forward-runs", type=int, default=8, help="runs vmapped in the forward-pass timing")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    variables, model, cfg = load_variables(a.checkpoint)
    source, manifest, splits = open_data(DataConfig(path=a.data, protocol="wide"), progress=False)
    every = [(t, i) for t in sorted(splits.test) for i in splits.test[t]]
    picked = every[:: max(1, len(every) // a.images)][: a.images]
    test: dict[str, list[str]] = {}
    for t, i in picked:
        test.setdefault(t, []).append(i)
    ids = [i for _, i in picked]
    cache = SampleCache(source, ids)
    mpx = sum(np.prod(cache.load(i).image.shape[:2]) for i in ids) / 1e6
    workers = a.workers or default_workers()
    pooled = SegmentationEvaluator(cfg.postprocess, cfg.eval.tile_size, workers)
    predict = make_predictor(variables, model, cfg.postprocess, tile_size=cfg.eval.tile_size)

    score_predictions(predict, cache, test)  # compile every image shape once, outside the timings
    t = time.perf_counter()
    serial = [score_predictions(predict, cache, test) for _ in range(a.runs)]
    t_serial = time.perf_counter() - t
    with pooled.pool(cache, ids) as pool:
        pooled(variables, model, cache, {k: v[:1] for k, v in test.items()}, pool=pool)  # start the workers
        t = time.perf_counter()
        new = [pooled(variables, model, cache, test, pool=pool) for _ in range(a.runs)]
        t_pooled = time.perf_counter() - t
    same = all(s.per_image == n.per_image for s, n in zip(serial, new))
    forward = time_forward(variables, model, a.forward_runs)
    n = len(ids) * a.runs
    out = {"images": len(ids), "megapixels": round(float(mpx), 2), "runs": a.runs, "workers": workers,
           "serial_s": round(t_serial, 2), "pooled_s": round(t_pooled, 2),
           "serial_images_x_runs_per_s": round(n / t_serial, 3), "pooled_images_x_runs_per_s": round(n / t_pooled, 3),
           "speedup": round(t_serial / t_pooled, 2), "identical_scores": same, "forward_ms_per_image": forward,
           "backend": jax.default_backend(), "cpu": platform.processor() or platform.machine()}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
