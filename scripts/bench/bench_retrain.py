#!/usr/bin/env python
"""The sweep's retraining step, its variants side by side in one run: which way of computing it is fastest?

Each variant is the retraining step of ``--config`` (default configs/paper.py: ResNet-50, 128 px crops,
batch 32) for one chunk of ``--runs`` runs vmapped together, with the variant's overrides. All are compiled
ahead, then each is called ``--calls`` times (median, after one untimed call) with zero weights (a step's
time does not depend on their values). Per variant: compile time, ms per step, ms per run-step, memory
(``memory_analysis``), grouped convolutions in the compiled HLO (:func:`dng_jax.models.conv.grouped_convolutions`)
and TFLOP/s. FLOPs per run-step come from ``--gflop-per-run-step`` (a CPU plan's count, which includes the
convolutions) or else from XLA's count for the first variant (on a GPU it leaves out cuDNN's convolutions:
give the CPU plan's figure there, 245 GFLOP per run-step at the paper's shapes). Ratios are to the first
variant, measured in the same process.

    python scripts/bench/bench_retrain.py                                  # the paper's shapes (a GPU)
    python scripts/bench/bench_retrain.py --config configs/cpu_real.py --runs 8 --calls 3   # this CPU
    python scripts/bench/bench_retrain.py --variant xla:retrain.conv=xla --variant mine:retrain.conv=im2col,...

A variant is ``NAME:FIELD=VALUE,...``; ``retrain.batch_size`` and ``runs=N`` (runs in the chunk) may differ
per variant, for per-run batch / runs-per-chunk pairs with the same crops per step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides, parse_row
from dng_jax.io.atomic import atomic_write_text
from dng_jax.models.conv import grouped_convolutions, resolve_retrain_conv
from dng_jax.planning.retrain_step import retrain_parts
from dng_jax.planning.xla_cost import analyse_compiled, median_time

# the most informative first: a device's window may end before the last
DEFAULT_VARIANTS = [
    "xla_f32:retrain.conv=xla",
    "gemm_f32:retrain.conv=gemm",
    "xla_bf16:retrain.conv=xla,model.dtype=bfloat16",
    "gemm_bf16:retrain.conv=gemm,model.dtype=bfloat16",
    "gemm_1x1_f32:retrain.conv=gemm_1x1",
    "im2col_f32:retrain.conv=im2col",
    "map_xla_f32:retrain.conv=xla,retrain.runs_layout=map",
    "xla_f32_no_augment:retrain.conv=xla,augment.enabled=False",
    "gemm_f32_batch2x_runs_half:retrain.conv=gemm,retrain.batch_size=*2,runs=/2",
]


def scaled(value, base: int) -> int:
    """``*2`` / ``/2``: ``base`` scaled; a number: itself."""
    text = str(value)
    if text[:1] == "*":
        return base * int(text[1:])
    return base // int(text[1:]) if text[:1] == "/" else int(text)


def parse_variant(spec: str, base_batch: int, base_runs: int) -> tuple[str, dict, int]:
    """``NAME:FIELD=VALUE,...`` (:func:`dng_jax.config.parse_row`) -> (name, overrides, runs); ``*2`` / ``/2``
    scale the batch or the runs."""
    name, overrides = parse_row(spec)
    runs = scaled(overrides.pop("runs", base_runs), base_runs)
    if "retrain.batch_size" in overrides:
        overrides["retrain.batch_size"] = scaled(overrides["retrain.batch_size"], base_batch)
    return name, overrides, max(1, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "paper.py"))
    ap.add_argument("--set", default="", help="overrides of every variant: FIELD=VALUE,...")
    ap.add_argument("--runs", type=int, default=24, help="runs vmapped in one chunk (the H200 plan's chunk: 24)")
    ap.add_argument("--k", type=int, default=500, help="clusters: the head's classes")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--variant", action="append", help=f"NAME:FIELD=VALUE,... (default: {len(DEFAULT_VARIANTS)} variants)")
    ap.add_argument("--only", type=int, default=0, help="the first N variants")
    ap.add_argument("--gflop-per-run-step", type=float, default=None)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    a = ap.parse_args()

    base = apply_overrides(load_config(a.config), parse_overrides(a.set))
    specs = a.variant or DEFAULT_VARIANTS
    specs = specs[: a.only] if a.only else specs
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}, "
          f"{a.config}: {a.runs} runs x batch {base.retrain.batch_size} x {base.retrain.crop_size}px, k={a.k}",
          flush=True)
    built = []
    for spec in specs:
        name, overrides, runs = parse_variant(spec, base.retrain.batch_size, a.runs)
        cfg = experiment_config(apply_overrides(base.copy_and_resolve_references(), overrides))
        step, args, _, _ = retrain_parts(cfg, a.k)
        t = time.perf_counter()
        lowered = step.lower(*args(runs))
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        try:
            grouped = grouped_convolutions(compiled.as_text())
        except Exception:  # noqa: BLE001 - a backend without the text: the lowered module
            grouped = grouped_convolutions(lowered.as_text(dialect="hlo"))
        total, temp, flops = analyse_compiled(compiled)
        conv = resolve_retrain_conv(cfg.retrain.conv, cfg.model.conv)
        built.append(dict(name=name, overrides=overrides, runs=runs, batch=cfg.retrain.batch_size, conv=conv,
                          dtype=cfg.model.dtype, layout=cfg.retrain.runs_layout, compiled=compiled, args=args,
                          compile_s=compile_s, grouped_convs=grouped, bytes=total, temp_bytes=temp,
                          xla_gflop=None if flops is None else flops / 1e9))
        print(f"compiled {name}: {compile_s:.1f} s, {grouped} grouped convolutions", flush=True)
    rows = []
    for b in built:
        concrete = b["args"](b["runs"], concrete=True)
        box = [concrete[0]]

        def call(compiled=b["compiled"], rest=concrete[1:]):
            box[0], loss = compiled(box[0], *rest)
            return loss

        s = median_time(call, a.calls)
        rows.append({k: v for k, v in b.items() if k not in ("compiled", "args")} | {
            "ms_per_step": 1e3 * s, "ms_per_run_step": 1e3 * s / b["runs"],
            "crops_per_s": b["runs"] * b["batch"] / s})
        print(f"timed {b['name']}: {1e3 * s:.1f} ms per step", flush=True)
    # FLOPs per crop are the same for every variant (the same math): from the CPU plan or the first variant
    ref = rows[0]
    gflop_crop = (a.gflop_per_run_step / base.retrain.batch_size if a.gflop_per_run_step
                  else (ref["xla_gflop"] or 0) / (ref["runs"] * ref["batch"]) or None)
    for r in rows:
        r["tflop_per_s"] = None if not gflop_crop else gflop_crop * r["crops_per_s"] / 1e3
        r["speedup"] = r["crops_per_s"] / ref["crops_per_s"]  # per crop: runs x batch may differ
    head = "| variant | conv | dtype | runs x batch | compile s | ms/step | ms/run-step | speed-up | TFLOP/s | memory GiB | grouped convs |"
    lines = [head, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tf = "-" if r["tflop_per_s"] is None else f"{r['tflop_per_s']:.3g}"
        mem = "-" if r["bytes"] is None else f"{r['bytes'] / 2**30:.2f}"
        lines.append(f"| {r['name']} | {r['conv']}{' (map)' if r['layout'] == 'map' else ''} | {r['dtype']} | "
                     f"{r['runs']} x {r['batch']} | {r['compile_s']:.1f} | {r['ms_per_step']:.1f} | "
                     f"{r['ms_per_run_step']:.1f} | {r['speedup']:.2f}x | {tf} | {mem} | {r['grouped_convs']} |")
    print("\n".join(lines))
    if a.out:
        meta = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "jax": jax.__version__,
                "config": a.config, "set": a.set, "k": a.k, "calls": a.calls, "gflop_per_crop": gflop_crop}
        atomic_write_text(a.out, json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
