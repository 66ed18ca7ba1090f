#!/usr/bin/env python
"""Where one retraining step spends its time: the most expensive ops of a ``jax.profiler`` trace.

The sweep's retraining step (``--config``, default configs/cpu_real.py; ``--runs`` runs vmapped, k clusters)
with ``retrain.conv`` = each of ``--convs``, compiled, called once untimed, then ``--calls`` times inside
``jax.profiler.trace``. The trace's Perfetto JSON is read back and the device-side op events (XLA:CPU
thunks, GPU kernels) are summed by name: the ``--top`` ops with their share of the step, per path.

    python scripts/bench/profile_retrain.py --convs xla,gemm                      # this CPU, cpu_real shapes
    python scripts/bench/profile_retrain.py --config configs/paper.py --runs 24   # a GPU, the paper's shapes
    XLA_FLAGS=--xla_gpu_autotune_level=4 python scripts/bench/profile_retrain.py ...   # an XLA flag's effect

Writes ``--out`` (JSON: per path, the ops and their milliseconds per step) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import jax

from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides
from dng_jax.io.atomic import atomic_write_text
from dng_jax.planning.retrain_step import retrain_parts

# host-side bookkeeping in a trace, not the step's work
_SKIP = ("PjitFunction", "ExecuteHelper", "PjRt", "Execute", "ThreadpoolListener", "TraceMe", "$", "python",
         "ThunkExecutor", "SlinkyThreadPool", "Thunk")


def op_times(trace_dir: Path) -> Counter:
    """Microseconds per op name, summed over the complete ('X') events of the trace's Perfetto JSON."""
    files = sorted(trace_dir.rglob("*.trace.json.gz"))
    if not files:
        raise SystemExit(f"error: no Perfetto trace under {trace_dir} (jax.profiler wrote none)")
    with gzip.open(files[-1], "rt") as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    out: Counter = Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or not name or any(name.startswith(s) for s in _SKIP):
            continue
        out[name] += float(e.get("dur", 0.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "cpu_real.py"))
    ap.add_argument("--set", default="")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--convs", default="xla,gemm")
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = apply_overrides(load_config(a.config), parse_overrides(a.set))
    result = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "config": a.config,
              "runs": a.runs, "k": a.k, "paths": {}}
    for conv in a.convs.split(","):
        cfg = experiment_config(apply_overrides(base.copy_and_resolve_references(), {"retrain.conv": conv}))
        step, args, _, _ = retrain_parts(cfg, a.k)
        concrete = args(a.runs, concrete=True)
        compiled = step.lower(*args(a.runs)).compile()
        state = compiled(*concrete)[0]
        jax.block_until_ready(state)
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp, create_perfetto_trace=True):
                for _ in range(a.calls):
                    state, loss = compiled(state, *concrete[1:])
                jax.block_until_ready(loss)
            times = op_times(Path(tmp))
        total = sum(times.values())
        kinds: Counter = Counter()
        for name, us in times.items():  # "transpose_copy_fusion.32" -> "transpose_copy_fusion"
            kinds[re.sub(r"\.\d+$", "", name)] += us
        top = [(name, us / a.calls / 1e3, us / total if total else 0.0) for name, us in times.most_common(a.top)]
        top_kinds = [(name, us / a.calls / 1e3, us / total if total else 0.0) for name, us in kinds.most_common(a.top)]
        result["paths"][conv] = {"ms_per_step_summed": total / a.calls / 1e3,
                                 "top": [{"op": n, "ms_per_step": ms, "share": sh} for n, ms, sh in top],
                                 "top_kinds": [{"kind": n, "ms_per_step": ms, "share": sh} for n, ms, sh in top_kinds]}
        print(f"\n### retrain.conv = {conv}: ops summed {total / a.calls / 1e3:.1f} ms per step "
              f"(threads add up: more than the wall time on several cores)\n")
        print("| op | ms per step | share | | op kind (instances summed) | ms per step | share |\n"
              "|---|---:|---:|---|---|---:|---:|")
        for (n, ms, sh), (kn, kms, ksh) in zip(top, top_kinds):
            print(f"| `{n[:48]}` | {ms:.1f} | {100 * sh:.1f}% | | `{kn[:40]}` | {kms:.1f} | {100 * ksh:.1f}% |")
    if a.out:
        atomic_write_text(a.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
