"""Pattern updates per second: JAX (S seeds vmapped) against the plain NumPy reference, side by side.

    python scripts/bench/bench_cluster.py                      # the full table (a few minutes on 2 cores)
    python scripts/bench/bench_cluster.py --ks 5,100 --methods kmc --quick

Data: ``n`` x ``d`` float32 Gaussian mixture (default 5000 x 32, the paper's clustering set size).

How the full schedule is timed (said again in the output):

* NG / kMC, JAX: the paper's schedule (T=200 by default) falls into phases of constant neighbourhood
  size ``m`` (see ``neighbourhood_sizes``). For every distinct ``m`` we time one compiled epoch of
  ``--steps`` patterns for all S seeds (after a warm-up call that compiles it), and add up
  ``epochs(m) * n * time_per_step(m)`` plus the per-epoch drawing of the S visiting orders (counted
  in full although ``fit_many`` overlaps it with the computation).
  ``--e2e`` additionally runs ``fit_many`` end to end (T=``--e2e-epochs``) to check the prediction.
* NG / kMC, NumPy reference: the cost of one of its pattern updates does not depend on the epoch (NG:
  one distance pass, one argsort, one dense update of all k centroids; kMC: argmin, one row), so its
  rate is measured on ``--ref-steps`` patterns of one seed and holds for the whole schedule.
* GNG: JAX ``fit_many`` epochs 1..``--gng-epochs`` (after epoch 0, which compiles) against the
  vectorised NumPy reference over the same epochs of one seed (also after its epoch 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

if "--devices" in sys.argv:  # must be set before jax is imported
    _nd = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_nd}").strip()

import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.clustering import gng as G
from dng_jax.clustering import neural_gas as NG
from dng_jax.clustering.orders import epoch_orders_many
from dng_jax.clustering.ranking import bitonic_ranks
from dng_jax.clustering import reference as ref
from dng_jax.sharding import runs_mesh


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, d)) * 3
    return (centers[rng.integers(0, 20, n)] + rng.normal(size=(n, d))).astype(np.float32)


def ref_rate(X, cfg, steps, rng):
    w0 = X[rng.choice(len(X), cfg.k, replace=False)]
    order = rng.permutation(len(X))[:steps][None]
    eps, R = ref.ng_schedule(cfg.epochs, cfg.eps0, cfg.eps_fin, cfg.R0, cfg.r_fin)
    t = time.perf_counter()
    if cfg.r0 == cfg.r_fin:  # kMC
        ref.kmc_reference(X, w0, order, eps[:1])
    else:
        ref.ng_reference(X, w0, order, eps[:1], R[:1])
    return steps / (time.perf_counter() - t)


MESH = None


def _runs(a):
    return a if MESH is None else jax.device_put(a, jax.sharding.NamedSharding(MESH, jax.sharding.PartitionSpec("runs")))


def jax_step_time(X, cfg, m, S, steps, keys):
    """Seconds per scan step (all S seeds) of the compiled phase with neighbourhood size m."""
    f = NG._compiled("orders", int(m), cfg.full_rank, True, MESH, cfg.seed_chunk)
    w0 = _runs(jax.vmap(lambda kk: NG.init(kk, X, cfg).centroids)(keys))
    orders = _runs(jnp.asarray(epoch_orders_many(keys, X.shape[0], 0, 1)[:, :, :steps]))
    eps, R = NG.schedule(cfg)
    t_idx = int(np.flatnonzero(NG.neighbourhood_sizes(cfg) == m)[0])
    e, r = jnp.asarray(eps[t_idx:t_idx + 1]), jnp.asarray(R[t_idx:t_idx + 1])
    w = f(jnp.array(w0), X, orders, e, r).block_until_ready()  # compile + warm
    best = np.inf
    for _ in range(2):  # best of two: the machine is shared
        t = time.perf_counter()
        w = f(w, X, orders, e, r).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best / steps


def perm_time(X, keys, reps=3):
    """Seconds per epoch to draw the S visiting orders (host NumPy; fit_many overlaps it with compute)."""
    epoch_orders_many(keys, X.shape[0], 1, 1 + reps)  # compile the seed derivation for this shape
    t = time.perf_counter()
    epoch_orders_many(keys, X.shape[0], 1, 1 + reps)
    return (time.perf_counter() - t) / reps


def bench_ng(X, method, k, a, keys, rng, out):
    cfg = (NG.ng_config(k, epochs=a.epochs) if method == "ng" else NG.kmc_config(k, epochs=a.epochs))
    n, S = X.shape[0], keys.shape[0]
    ms = NG.neighbourhood_sizes(cfg)
    uniq, counts = np.unique(ms, return_counts=True)
    r_rate0 = ref_rate(np.asarray(X), cfg, a.ref_steps if k < 500 else max(200, a.ref_steps // 4), rng)
    total = perm_time(X, keys) * cfg.epochs
    per_m = []
    for m, c in sorted(zip(uniq.tolist(), counts.tolist()), reverse=True):
        st = jax_step_time(X, cfg, m, S, min(a.steps, n), keys)
        total += c * n * st
        per_m.append((m, c, S / st))
    jax_rate = S * n * cfg.epochs / total
    ref_steps = a.ref_steps if k < 500 else max(200, a.ref_steps // 4)
    r_rate = max(r_rate0, ref_rate(np.asarray(X), cfg, ref_steps, rng))  # best of before/after
    phases = " ".join(f"m={m}:{c}ep@{r / 1e3:.0f}k" for m, c, r in per_m)
    out.append((method, k, jax_rate, r_rate, phases))
    print(f"{method:4s} k={k:5d}  jax {jax_rate / 1e3:9.1f}k upd/s   numpy {r_rate / 1e3:7.1f}k upd/s   "
          f"x{jax_rate / r_rate:6.1f}   [{phases}]", flush=True)
    if a.e2e and k <= a.e2e_max_k:
        ecfg = cfg.replace(epochs=a.e2e_epochs)
        NG.fit_many(keys, X, ecfg, mesh=MESH).centroids.block_until_ready()
        t = time.perf_counter()
        NG.fit_many(keys, X, ecfg, mesh=MESH).centroids.block_until_ready()
        dt = time.perf_counter() - t
        ems = NG.neighbourhood_sizes(ecfg)
        pred = perm_time(X, keys) * ecfg.epochs + sum(
            n * S / dict((m, r) for m, _, r in per_m).get(int(m), np.nan) for m in ems)
        print(f"     end-to-end fit_many T={ecfg.epochs}: {S * n * ecfg.epochs / dt / 1e3:.1f}k upd/s "
              f"(predicted from the phases: {S * n * ecfg.epochs / pred / 1e3:.1f}k)", flush=True)


def bench_gng(X, a, keys, rng, out):
    cfg = G.GNGConfig(max_units=a.gng_units, epochs=1)
    n, S = X.shape[0], keys.shape[0]
    f = G._compiled("orders", cfg, True, MESH)
    s = _runs(jax.vmap(lambda kk: G.init(kk, X, cfg))(keys))
    s = f(s, X, _runs(jnp.asarray(epoch_orders_many(keys, n, 0, 1))))  # compile + epoch 0
    jax.block_until_ready(s)
    t = time.perf_counter()
    for e in range(1, 1 + a.gng_epochs):
        s = f(s, X, _runs(jnp.asarray(epoch_orders_many(keys, n, e, e + 1))))
    jax.block_until_ready(s)
    jax_rate = S * n * a.gng_epochs / (time.perf_counter() - t)
    units = np.asarray(G.n_units(s))
    # the reference runs the same epochs on the first seed's start and orders; only the timed
    # epochs (1..gng_epochs, after epoch 0) count, as for JAX: the graph has grown by then
    Xn = np.asarray(X)
    s0 = G.init(keys[0], X, cfg)
    orders = epoch_orders_many(keys[:1], n, 0, 1 + a.gng_epochs)[0]
    kw = dict(max_units=a.gng_units)
    r = ref.gng_reference(Xn, np.asarray(s0.w[: cfg.start_units]), orders[:1], **kw)
    t = time.perf_counter()
    ref.gng_reference(Xn, None, orders[1:], state=r, **kw)
    r_rate = n * a.gng_epochs / (time.perf_counter() - t)
    out.append(("gng", a.gng_units, jax_rate, r_rate, f"units after {1 + a.gng_epochs} epochs: "
                f"{units.min()}-{units.max()}"))
    print(f"gng  N={a.gng_units:5d}  jax {jax_rate / 1e3:9.1f}k upd/s   numpy {r_rate / 1e3:7.1f}k upd/s   "
          f"x{jax_rate / r_rate:6.1f}   [units {units.min()}-{units.max()}]", flush=True)


def bench_sort(ks, S, reps=20):
    """Ranking S rows of k distances: XLA argsort / top_k vs the bitonic lanes network vs NumPy."""
    from jax import lax

    print(f"\n# ranking {S} rows of k float32 (one NG step's worth), microseconds per {S} rows:")
    print("| k | XLA argsort | XLA top_k(k) | bitonic network (ours) | NumPy argsort, row by row |")
    print("|---|---|---|---|---|")
    rows = []
    for k in ks:
        d = jnp.asarray(np.random.default_rng(0).random((reps, S, k), dtype=np.float32))
        fns = {
            "argsort": lambda x: jnp.argsort(x, axis=-1, stable=True).astype(jnp.float32),
            "top_k": lambda x: lax.top_k(-x, x.shape[-1])[1].astype(jnp.float32),
            "bitonic": jax.vmap(bitonic_ranks),
        }
        res = {}
        for name, fn in fns.items():
            f = jax.jit(lambda a, fn=fn: lax.scan(lambda c, x: (c + fn(x).sum(), None), 0.0, a)[0])
            f(d).block_until_ready()
            t = time.perf_counter()
            f(d).block_until_ready()
            res[name] = (time.perf_counter() - t) / reps * 1e6
        dn = np.asarray(d)
        t = time.perf_counter()
        for r in range(reps):
            for i in range(S):
                np.argsort(dn[r, i], kind="stable")
        res["numpy"] = (time.perf_counter() - t) / reps * 1e6
        print(f"| {k} | {res['argsort']:.0f} | {res['top_k']:.0f} | {res['bitonic']:.0f} | {res['numpy']:.0f} |",
              flush=True)
        rows.append((k, res))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=48)
    ap.add_argument("--ks", default="5,50,100,500,1000")
    ap.add_argument("--methods", default="kmc,ng,gng")
    ap.add_argument("--epochs", type=int, default=200, help="T of the NG/kMC schedule (paper: 200)")
    ap.add_argument("--steps", type=int, default=1000, help="JAX: scan steps timed per phase")
    ap.add_argument("--ref-steps", type=int, default=2000, help="NumPy: pattern updates timed per config")
    ap.add_argument("--gng-units", type=int, default=1000)
    ap.add_argument("--gng-epochs", type=int, default=1)
    ap.add_argument("--e2e", action="store_true", help="also time fit_many end to end (small k)")
    ap.add_argument("--e2e-epochs", type=int, default=20)
    ap.add_argument("--e2e-max-k", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
    ap.add_argument("--sort-bench", action="store_true", help="also time the ranking primitives")
    ap.add_argument("--devices", type=int, default=1,
                    help="shard the seeds over this many (forced host) CPU devices, one thread each")
    a = ap.parse_args(argv)
    global MESH
    if a.devices > 1:
        assert jax.device_count() == a.devices, jax.devices()
        MESH = runs_mesh()
    if a.quick:
        a.steps, a.ref_steps, a.n = 200, 300, min(a.n, 1000)
    X = jnp.asarray(data(a.n, a.d))
    keys = jax.random.split(jax.random.key(0), a.seeds)
    rng = np.random.default_rng(0)
    print(f"# bench_cluster: n={a.n} d={a.d} seeds={a.seeds} T={a.epochs}; jax {jax.__version__} on "
          f"{jax.devices()[0].platform} ({jax.device_count()} device(s)), numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load avg "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("# rates are pattern updates per second (one pattern applied to one run's centroids)")
    out = []
    for method in a.methods.split(","):
        if method == "gng":
            bench_gng(X, a, keys, rng, out)
            continue
        for k in [int(x) for x in a.ks.split(",")]:
            if k <= a.n:
                bench_ng(X, method, k, a, keys, rng, out)
    print("\n| method | k | JAX, %d seeds vmapped%s (upd/s) | NumPy reference (upd/s) | ratio | notes |"
          % (a.seeds, f", sharded over {a.devices} CPU devices" if a.devices > 1 else ""))
    print("|---|---|---|---|---|---|")
    for method, k, jr, rr, note in out:
        print(f"| {method} | {k} | {jr:,.0f} | {rr:,.0f} | {jr / rr:.1f}x | {note} |")
    if a.sort_bench:
        bench_sort([int(x) for x in a.ks.split(",") if int(x) > 1], a.seeds)
    print(f"\n# load avg at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
