#!/usr/bin/env python
"""What test-time augmentation costs: ``predict --tta`` against ``--no-tta``, side by side in one run.

TTA averages the softmax over the 8 flips / rotations of each image (8 forward passes instead of 1);
the watershed, reading and writing are the same, so the time ratio is below 8. Two measurements, the
variants interleaved (no-TTA, TTA, no-TTA, ...) so that a busy machine slows both alike; medians:

- ``cli``: ``python -m dng_jax.predict`` as a user runs it once on a folder (start-up, loading the model,
  compiling each image shape, then every image), wall-clock seconds per command;
- ``warm``: the same images again in one process after a first pass has compiled every shape
  (what a long folder costs per image), seconds per pass.

    python scripts/bench/bench_predict_tta.py [--input DIR] [--checkpoint DIR] [--repeats 3] [--json out.json]

Default input: the bundled mini-set's images (Kaggle layout); default model: the one shipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import jax

from dng_jax.data.dsb2018 import bundled_minidata_path
from dng_jax.io.images import list_inputs, read_image
from dng_jax.segmentation.bundled import load_bundled
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.inference import make_predictor

ROOT = Path(__file__).resolve().parents[2]  # the commands run from the checkout's root
VARIANTS = ("--no-tta", "--tta")


def time_cli(inputs: str, checkpoint: str | None, repeats: int, scratch: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(repeats):
        for v in VARIANTS:
            cmd = [sys.executable, "-m", "dng_jax.predict", "--input", inputs, "--output",
                   str(scratch / f"cli{r}{v}"), "--quiet", "--no-progress", v]
            cmd += ["--checkpoint", checkpoint] if checkpoint else []
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            times[v].append(time.perf_counter() - t)
            print(f"cli {v:9s} repeat {r}: {times[v][-1]:.1f} s", flush=True)
    return times


def time_warm(inputs: str, checkpoint: str | None, repeats: int) -> dict[str, list[float]]:
    variables, model, config = load_bundled() if checkpoint is None else load_variables(checkpoint)
    images = [read_image(p) for p in list_inputs([inputs]).values()]
    predictors = {v: make_predictor(variables, model, config.postprocess, tta=v == "--tta") for v in VARIANTS}
    for predict in predictors.values():  # compile every shape (TTA: the rotated ones too)
        for im in images:
            predict(im)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(repeats):
        for v, predict in predictors.items():
            t = time.perf_counter()
            for im in images:
                predict(im)
            times[v].append(time.perf_counter() - t)
            print(f"warm {v:9s} repeat {r}: {times[v][-1]:.1f} s ({len(images)} images)", flush=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=None, help="images / folders (default: the bundled mini-set)")
    ap.add_argument("--checkpoint", default=None, help="default: the model shipped in the package")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        inputs = a.input
        if inputs is None:
            with zipfile.ZipFile(bundled_minidata_path()) as z:
                z.extractall(scratch / "mini")
            inputs = str(scratch / "mini")
        n = len(list_inputs([inputs]))
        result = {"images": n, "repeats": a.repeats, "backend": jax.default_backend(),
                  "machine": platform.processor() or platform.machine()}
        for name, times in (("cli", time_cli(inputs, a.checkpoint, a.repeats, scratch)),
                            ("warm", time_warm(inputs, a.checkpoint, a.repeats))):
            med = {v: statistics.median(t) for v, t in times.items()}
            result[name] = {"seconds": times, "median_s": med, "ratio_tta": med["--tta"] / med["--no-tta"]}
            print(f"{name}: median no-TTA {med['--no-tta']:.1f} s, TTA {med['--tta']:.1f} s, "
                  f"ratio {result[name]['ratio_tta']:.2f} ({n} images)")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
