"""Cluster latent vectors with NG, kMC or GNG over many seeds.

example:
  python -m dng_jax.cluster --method ng --k 100 --seeds 48 --input X.npy --out runs/ng100

written to --out (each file atomically: temp file + os.replace), S = --seeds,
n = patterns, d = features (after --pca), k = --k:
  centroids.npy  (S, k, d) float32; GNG: (S, max_units, d), padded with zeros
  active.npy     GNG only: (S, max_units) bool, which slots hold a unit
  labels.npy     (S, n) int32, the nearest (active) centroid of every pattern
  summary.json   the settings and, per seed, the quantization error (mean
                 squared distance to the nearest centroid), the normalized
                 entropy H / log k of the cluster sizes (GNG: k = its number of
                 units) and the number of units; plus mean and std of the
                 normalized entropy over seeds (Fig. 8)

fixed settings (the paper's values; no flag changes them):
  NG / kMC: learning rate eps0 = 0.1 decaying to eps_fin = 1e-4, neighbourhood
  range R0 (--r0, default 2k) decaying to R_fin = 1e-3; kMC is NG with
  R0 = R_fin = 1e-3 (only the winner moves).
  GNG: winner rate eps_b = 0.1, neighbour rate eps_n = 0.001, maximal edge age
  50, a new unit every lam = 100 steps, split error decay 0.5, global error decay
  0.995, minimal distance for an update 0.2.

--pca 0 (the default) clusters the input as it is; --pca M first projects it
onto its M leading principal components (centred), and centroids.npy,
labels.npy and the errors in summary.json refer to that M-D space.

Run i uses fold_in(key(--seed), i): the first runs of --seeds 48 equal those of
--seeds 4. Bad input (missing or empty file, not a 2-D numeric array, NaN/inf,
k > n) ends with a one-line error naming the file and exit code 2; bad flags
exit with argparse's usage error (also code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from dng_jax.atomic import atomic_save_npy, atomic_write_text


class InputError(Exception):
    pass


def load_input(path: str, k: int | None, method: str, pca: int) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy file")
    if p.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        X = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not a readable .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    if isinstance(X, np.lib.npyio.NpzFile):
        X.close()
        raise InputError(f"{path}: is an .npz archive, expected a single .npy array")
    if X.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array (n patterns x d features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{path}: empty array of shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise InputError(f"{path}: expected a numeric array, got dtype {X.dtype}")
    X = X.astype(np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{path}: {int(bad.sum())} NaN/inf values (first at row {r}, column {c})")
    n = X.shape[0]
    if k is not None and k > n:
        what = "start units" if method == "gng" else "clusters"
        raise InputError(f"{path}: k={k} {what} but only n={n} patterns")
    if pca and not 1 <= pca <= min(X.shape):
        raise InputError(f"{path}: --pca {pca} needs 1 <= components <= min(n, d) = {min(X.shape)}")
    return X


def parse_args(argv=None) -> argparse.Namespace:
    head, _, rest = (__doc__ or "").partition("\n\n")
    ap = argparse.ArgumentParser(prog="python -m dng_jax.cluster", description=head, epilog=rest.strip() or None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, choices=["ng", "kmc", "gng"],
                    help="ng = Neural Gas, kmc = pattern-by-pattern k-means, gng = Growing Neural Gas")
    ap.add_argument("--k", type=int, default=None,
                    help="number of centroids (ng, kmc; required) or of GNG start units (default 5)")
    ap.add_argument("--seeds", type=int, default=1, help="number of runs (seeds), vmapped (default 1)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs T (default: 200 for ng/kmc, 10 for gng)")
    ap.add_argument("--input", required=True, help="n x d .npy array of patterns")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0, help="base seed; run i uses fold_in(key(seed), i) (default 0)")
    ap.add_argument("--r0", type=float, default=None, help="NG: R0 (default 2k, the paper's '2 . k')")
    ap.add_argument("--h-min", type=float, default=None,
                    help="NG: drop neighbourhood weights below this (default: float32 underflow, exact)")
    ap.add_argument("--full-rank", choices=["bitonic", "sort"], default="bitonic",
                    help="NG: ranking of all centroids (early epochs): sorting network or XLA sort")
    ap.add_argument("--max-units", type=int, default=1024,
                    help="GNG: capacity, the most units it can grow to (default 1024, as configs/paper.py)")
    ap.add_argument("--pca", type=int, default=0,
                    help="reduce the input to this many PCA components first (default 0: no PCA)")
    ap.add_argument("--shard", action="store_true", help="shard the runs over all local devices")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.method in ("ng", "kmc") and a.k is None:
        ap.error(f"--k is required for --method {a.method}")
    for name in ("k", "seeds", "epochs", "max_units"):
        v = getattr(a, name)
        if v is not None and v < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if a.method == "gng":
        a.k = 5 if a.k is None else a.k
        if a.k < 2 or a.k > a.max_units:
            ap.error(f"GNG needs 2 <= --k (start units) <= --max-units, got {a.k} and {a.max_units}")
    return a


def run(a: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    from dng_jax.clustering import gng as G
    from dng_jax.clustering import neural_gas as NG
    from dng_jax.clustering import quality as Q
    from dng_jax.clustering.pca import pca_fit_transform

    X = load_input(a.input, a.k, a.method, a.pca)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{a.out}: exists and is not a directory")
    if a.pca:
        X = np.asarray(pca_fit_transform(X, a.pca)[1])
    base = jax.random.key(a.seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(a.seeds))
    mesh = NG.runs_mesh() if a.shard and jax.device_count() > 1 else None
    progress = not a.no_progress
    if a.method == "gng":
        cfg = G.GNGConfig(max_units=a.max_units, start_units=a.k, **({"epochs": a.epochs} if a.epochs else {}))
        s = G.fit_many(keys, X, cfg, mesh=mesh, progress=progress)
        C, active = np.asarray(s.w), np.asarray(s.active)
    else:
        kw = {"epochs": a.epochs} if a.epochs else {}
        if a.h_min is not None:
            kw["h_min"] = a.h_min
        if a.method == "ng":
            cfg = NG.ng_config(a.k, r0=a.r0, full_rank=a.full_rank, **kw)
        else:
            cfg = NG.kmc_config(a.k, full_rank=a.full_rank, **kw)
        C = np.asarray(NG.fit_many(keys, X, cfg, mesh=mesh, progress=progress).centroids)
        active = np.ones(C.shape[:2], bool)
    labels = np.asarray(Q.assign_many(X, C, active)).astype(np.int32)
    qe = np.asarray(Q.quantization_error_many(X, C, active))
    H = np.asarray(Q.normalized_entropy_many(labels, C.shape[1], active))
    units = active.sum(1)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out / "centroids.npy", C.astype(np.float32))
    if a.method == "gng":
        atomic_save_npy(out / "active.npy", active)
    atomic_save_npy(out / "labels.npy", labels)
    summary = {
        "method": a.method,
        "input": str(a.input),
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "pca": a.pca or None,
        "seeds": a.seeds,
        "base_seed": a.seed,
        "config": {k: (v if not isinstance(v, float) or np.isfinite(v) else str(v)) for k, v in cfg._asdict().items()},
        "runs": [
            {"seed": i, "quantization_error": float(qe[i]), "normalized_entropy": float(H[i]), "n_units": int(units[i])}
            for i in range(a.seeds)
        ],
        "normalized_entropy_mean": float(np.mean(H)),
        "normalized_entropy_std": Q.entropy_std(H),
        "quantization_error_mean": float(np.mean(qe)),
    }
    if a.method != "gng":
        summary["config"]["R0"] = cfg.R0
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        s = run(a)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.method}: {a.seeds} run(s) -> {a.out}  normalized entropy {s['normalized_entropy_mean']:.4f} "
          f"+- {s['normalized_entropy_std']:.4f}, quantization error {s['quantization_error_mean']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
