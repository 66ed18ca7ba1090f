#!/usr/bin/env python
"""Training throughput and peak memory of the segmentation train step, on whatever devices JAX sees.

Times the jitted, data-parallel ``train_step`` (forward + backward + LAMB, on-device augmentation) of the
paper-size model (ResNet-50 U-Net) on synthetic 256x256 uint8 batches; each batch size runs in its own
subprocess so that peak-memory figures do not carry over.

    python scripts/bench/bench_train.py                           # paper model, 256x256, batches 8, 16, 32
    python scripts/bench/bench_train.py --batch-sizes 8 --steps 3 # quick CPU run
    python scripts/bench/bench_train.py --dtype bfloat16 --json bench.json
    python scripts/bench/bench_train.py --config configs/cpu_real.py --batch-sizes 8 --loop   # a config's model, crop,
        # loss and optimizer, and the trainer's whole loop (host crops + targets, prefetched or not)
    python scripts/bench/bench_train.py --config configs/cpu_real.py --set train.dice_weight=0.0 --batch-sizes 8

Reports per batch size: compile time, seconds per step, training images per second, and memory:
``peak`` from the device allocator (``device.memory_stats()['peak_bytes_in_use']``, GPU/TPU) or the
process' peak resident set size (CPU), and XLA's own estimate for the step (arguments + outputs +
temporaries - aliased, from ``compiled.memory_analysis()``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _model_cfg(args) -> dict:
    if args.tiny:
        return dict(stage_sizes=(1, 1, 1, 1), width=8, decoder_features=(64, 32, 16, 16, 8), dtype=args.dtype)
    return dict(stage_sizes=(3, 4, 6, 3), width=64, decoder_features=(256, 128, 64, 32, 16), dtype=args.dtype)


def _synthetic_samples(n: int, seed: int = 0):
    """Fluorescence-like images (256x256 to 520x696) with disk nuclei, as the host pipeline sees them."""
    import numpy as np

    from dng_jax.data.dsb2018 import Sample

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (256, 256) if i % 2 else (520, 696)
        labels = np.zeros((h, w), np.uint16)
        yy, xx = np.mgrid[:h, :w]
        for k in range(1, 40):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 14)
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        image = np.where(labels[..., None] > 0, 180, 10).astype(np.uint8) + rng.integers(0, 20, (h, w, 3), np.uint8)
        out.append(Sample(f"s{i}", image, labels))
    return out


def run_single(args) -> dict:
    import jax
    import numpy as np

    from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides
    from dng_jax.data.pipeline import prefetch, segmentation_batches
    from dng_jax.models import count_params, make_model
    from dng_jax.segmentation.steps import make_augment_fn, make_segmentation_loss, make_train_step
    from dng_jax.segmentation.train_state import create_train_state, make_optimizer
    from dng_jax.sharding import jit_train_step, make_mesh, replicate, shard_batch

    bs, size = args.batch_size, args.size
    mesh = make_mesh()
    n_dev = mesh.devices.size
    if bs % n_dev:
        return {"batch_size": bs, "error": f"batch {bs} does not split over {n_dev} devices"}
    if args.config:
        cfg = experiment_config(apply_overrides(load_config(args.config), parse_overrides(args.set)))
        size, args.dtype = cfg.data.crop_size, cfg.model.dtype
        model = make_model(cfg.model)
        tx = make_optimizer(cfg.train, steps_per_epoch=100)
        loss = make_segmentation_loss(cfg.train.class_weights, cfg.train.dice_weight)
        augment = make_augment_fn(cfg.augment)
        border = cfg.data.border_width
    else:
        model, tx, loss, augment, border = make_model(_model_cfg(args)), None, None, make_augment_fn(), 2
    if args.no_augment:
        augment = None
    state = replicate(create_train_state(jax.random.key(0), model, None, (1, size, size, 3), tx=tx), mesh)
    step = jit_train_step(make_train_step(loss or make_segmentation_loss(), augment_fn=augment), mesh)
    rng = np.random.default_rng(0)
    batch = shard_batch((rng.integers(0, 256, (bs, size, size, 3), dtype=np.uint8),
                         rng.integers(0, 3, (bs, size, size), dtype=np.uint8)), mesh)
    key = jax.random.key(1)

    t0 = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    xla_bytes = None
    try:
        ma = compiled.memory_analysis()
        if ma is not None:
            xla_bytes = int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
                            - ma.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass

    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready((state, metrics) if args.warmup else state)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times))

    loop = {}
    if args.loop:  # the trainer's loop: host crops + 3-class targets, then the step; prefetched or inline
        batches = segmentation_batches(_synthetic_samples(4 * bs), bs, size, border, seed=0)
        for name, wrap in (("serial", iter), ("prefetch", prefetch)):
            n, t = 0, time.perf_counter()
            while n < args.steps:
                for b in wrap(batches.epoch(n)):
                    state, metrics = compiled(state, shard_batch(b, mesh), key)
                    n += 1
                    if n >= args.steps:
                        break
            jax.block_until_ready(metrics)
            loop[f"loop_{name}_images_per_s"] = n * bs / (time.perf_counter() - t)
        t = time.perf_counter()
        for i, _ in enumerate(batches.epoch(0)):
            pass
        loop["host_s_per_batch"] = (time.perf_counter() - t) / (i + 1)

    dev = jax.local_devices()[0]
    peak = None
    try:
        stats = dev.memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001
        stats = {}
    peak_kind = "device allocator peak"
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        peak_kind = "process peak RSS"
    return {
        "batch_size": bs, "size": size, "dtype": args.dtype, "devices": n_dev,
        "device_kind": dev.device_kind, "platform": dev.platform,
        "params": count_params(state.params), "compile_s": compile_s, "step_s": step_s,
        "step_s_all": times, "images_per_s": bs / step_s, "peak_bytes": int(peak), "peak_kind": peak_kind,
        "xla_step_bytes": xla_bytes, "loss": float(metrics["loss"]), **loop,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="8,16,32", help="comma-separated global batch sizes")
    ap.add_argument("--size", type=int, default=256, help="crop size (paper: 256)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--no-augment", action="store_true", help="time the step without on-device augmentation")
    ap.add_argument("--tiny", action="store_true", help="tiny model instead of the ResNet-50 U-Net (smoke test)")
    ap.add_argument("--config", default=None, help="a config file: its model, crop size, loss and optimizer")
    ap.add_argument("--set", default="", help="with --config: overrides FIELD=VALUE,...")
    ap.add_argument("--loop", action="store_true", help="also time the training loop with host batches, "
                    "inline and prefetched in a thread")
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)  # internal: one run
    args = ap.parse_args(argv)

    if args.batch_size is not None:
        print("RESULT " + json.dumps(run_single(args)), flush=True)
        return 0

    results = []
    for bs in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
        cmd = [sys.executable, __file__, "--batch-size", str(bs), "--size", str(args.size), "--steps",
               str(args.steps), "--warmup", str(args.warmup), "--dtype", args.dtype]
        cmd += ["--no-augment"] * args.no_augment + ["--tiny"] * args.tiny + ["--loop"] * args.loop
        cmd += ["--config", args.config, "--set", args.set] if args.config else []
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not line:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            res = {"batch_size": bs, "error": " | ".join(tail) or f"exit {r.returncode}"}
        else:
            res = json.loads(line[-1][len("RESULT "):])
        results.append(res)
        if "error" in res:
            print(f"batch {bs}: FAILED: {res['error']}", flush=True)
        else:
            print(f"batch {bs}: {res['images_per_s']:.2f} img/s ({res['step_s']:.3f} s/step, compile "
                  f"{res['compile_s']:.1f} s), peak {res['peak_bytes'] / 2**30:.2f} GiB ({res['peak_kind']}), "
                  f"XLA step estimate {((res['xla_step_bytes'] or 0) / 2**30):.2f} GiB", flush=True)
            if args.loop:
                print(f"  loop: {res['loop_serial_images_per_s']:.2f} img/s with host batches inline, "
                      f"{res['loop_prefetch_images_per_s']:.2f} prefetched; host {res['host_s_per_batch'] * 1e3:.1f} "
                      f"ms per batch", flush=True)

    ok = [r for r in results if "error" not in r]
    if ok:
        r0 = ok[0]
        print(f"\n{r0['devices']} x {r0['device_kind']} ({r0['platform']}), {r0['params']:,} params, "
              f"{r0['size']}x{r0['size']}, {args.dtype}, augment={'off' if args.no_augment else 'on'}"
              + (f", {args.config} {args.set}" if args.config else ""))
        print("| batch | images/s | s/step | compile s | peak memory | XLA step estimate |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in ok:
            print(f"| {r['batch_size']} | {r['images_per_s']:.2f} | {r['step_s']:.3f} | {r['compile_s']:.1f} | "
                  f"{r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_kind']}) | "
                  f"{(r['xla_step_bytes'] or 0) / 2**30:.2f} GiB |")
    if args.json:
        meta = {"host": platform.node(), "python": platform.python_version(), "argv": sys.argv[1:],
                "xla_flags": os.environ.get("XLA_FLAGS", "")}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
