"""Cluster the rows of a data matrix with NG, kMC, GNG or your own method, over many seeds.

example:
  python -m dng_jax.cluster --method ng --k 100 --seeds 48 --input X.npy --output runs/ng100
  python -m dng_jax.cluster --method examples/minibatch_kmeans.py:minibatch_kmeans --k 20 --seeds 4 \\
      --input X.npy --output runs/mbk20

methods:
  ng = Neural Gas, kmc = pattern-by-pattern k-means, gng = Growing Neural Gas
  (--k = its start units, default 5), or path/to/file.py:factory: a factory
  (k, ClusteringConfig) -> ClusteringMethod in that file (see
  docs/clustering_variants.md); it gets the settings below as a ClusteringConfig.

written to --output (each file atomically), S = --seeds, n = patterns,
d = features (after --pca), K = clusters (GNG: its capacity --max-units):
  centroids.npy  (S, K, d) float32; GNG: padded with zeros
  active.npy     (S, K) bool, which slots hold a cluster (all true but for GNG)
  labels.npy     (S, n) int32, the cluster slot of every pattern
  summary.json   the settings and, per seed, the quantization error (mean
                 squared distance to the nearest centroid), the normalized
                 entropy H / log K of the cluster sizes and the number of
                 units; plus mean and std of the normalized entropy over seeds
                 (Fig. 8)

settings (the paper's values; the flags below change some):
  NG / kMC: learning rate eps0 = 0.1 decaying to eps_fin = 1e-4 over --epochs,
  neighbourhood range R0 (--r0, default 2k) decaying to R_fin = 1e-3; kMC is
  NG with R0 = R_fin = 1e-3 (only the winner moves).
  GNG: winner rate 0.1, neighbour rate 0.001, maximal edge age 50, a new unit
  every 100 steps, split error decay 0.5, global error decay 0.995, minimal
  distance for an update 0.2.

--pca 0 (the default) clusters the input as it is; --pca M first projects it
onto its M leading principal components (centred), and centroids.npy,
labels.npy and the errors in summary.json refer to that M-D space.

Run i uses fold_in(key(--seed), i): the first runs of --seeds 48 equal those of
--seeds 4. Bad input (missing or empty file, not a 2-D numeric array, NaN/inf,
values too large for float32, k > n, a bad flag) ends with a one-line error
naming it and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

from dng_jax import cli
from dng_jax.clustering.matrix import cluster_matrix, write_clustering
from dng_jax.clustering.methods import METHODS, ClusteringConfig, build_method, resolve_method
from dng_jax.errors import InputError
from dng_jax.io.arrays import load_data_matrix
from dng_jax.io.workdir import check_output_dir, prepare_dir
from dng_jax.sharding import runs_mesh


def _parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.cluster", __doc__)
    ap.add_argument("--method", required=True,
                    help=f"{', '.join(METHODS)} or path/to/file.py:factory (your own method)")
    ap.add_argument("--k", type=int, default=None,
                    help="number of clusters (required), or of GNG start units (default 5)")
    ap.add_argument("--seeds", type=int, default=1, help="number of runs (seeds), vmapped")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: 200, GNG 10)")
    ap.add_argument("--input", required=True, help="n x d .npy array of patterns")
    cli.add_output_flag(ap, "output folder")
    ap.add_argument("--seed", type=int, default=0, help="base seed; run i uses fold_in(key(seed), i)")
    ap.add_argument("--r0", type=float, default=None, help="NG: R0 (default 2k, the paper's '2 . k')")
    ap.add_argument("--h-min", type=float, default=None,
                    help="NG: drop neighbourhood weights below this (default: float32 underflow, exact)")
    ap.add_argument("--full-rank", choices=["bitonic", "sort"], default="bitonic",
                    help="NG: ranking of all centroids (early epochs): sorting network or XLA sort")
    ap.add_argument("--max-units", type=int, default=1024, help="GNG: capacity, the most units it can grow to")
    ap.add_argument("--pca", type=int, default=0, help="reduce the input to this many PCA components first (0: no PCA)")
    ap.add_argument("--shard", action="store_true", help="shard the runs over all local devices")
    cli.add_verbosity_flags(ap, "no summary line (the files are written as always)")
    return ap


def _settings(a) -> ClusteringConfig:
    """The flags as a ClusteringConfig (its checks name the flag's field on a bad value)."""
    cfg = ClusteringConfig()
    # GNG's start_units is the --k of a GNG run (its factory sets it); 2 keeps the section valid meanwhile
    gng = cfg.gng.replace(start_units=2, max_units=a.max_units, **({"epochs": a.epochs} if a.epochs else {}))
    changes = {"gng": gng, "full_rank": a.full_rank, "r0": a.r0}
    if a.epochs:
        changes["epochs"] = a.epochs
    if a.h_min is not None:
        changes["h_min"] = a.h_min
    return cfg.replace(**changes)


def run(a) -> dict:
    for flag, v in (("--k", a.k), ("--seeds", a.seeds), ("--epochs", a.epochs)):
        if v is not None and v < 1:
            raise InputError(f"{flag} must be >= 1, got {v}")
    if a.max_units < 2:
        raise InputError(f"--max-units must be >= 2, got {a.max_units}")
    if a.pca < 0:
        raise InputError(f"--pca must be >= 0, got {a.pca}")
    if a.r0 is not None and not a.r0 > 0:
        raise InputError(f"--r0 must be > 0, got {a.r0}")
    if a.h_min is not None and not 0 < a.h_min < 1:
        raise InputError(f"--h-min must lie in (0, 1), got {a.h_min}")
    method_id, _ = resolve_method(a.method)
    k = a.k
    if k is None and method_id == "gng":
        k = ClusteringConfig().gng.start_units
    if k is None:
        raise InputError(f"--k is required for --method {a.method}")
    if method_id == "gng" and not 2 <= k <= a.max_units:
        raise InputError(f"GNG needs 2 <= --k (start units) <= --max-units, got {k} and {a.max_units}")
    cfg = _settings(a)
    X = load_data_matrix(a.input)
    if k > X.shape[0]:
        raise InputError(f"{a.input}: k={k} but only n={X.shape[0]} patterns")
    if a.pca and not 1 <= a.pca <= min(X.shape):
        raise InputError(f"{a.input}: --pca {a.pca} needs 1 <= components <= min(n, d) = {min(X.shape)}")
    build_method(a.method, k, cfg)  # a user's factory that fails, fails before the output folder exists
    check_output_dir(a.output, "--output")
    mesh = runs_mesh() if a.shard and jax.device_count() > 1 else None
    try:
        res, summary = cluster_matrix(X, a.method, k, cfg, seeds=a.seeds, seed=a.seed, pca=a.pca, mesh=mesh,
                                      progress=a.progress)
    except FloatingPointError as e:
        raise InputError(f"{a.input}: {e}") from None
    summary["input"] = str(a.input)
    write_clustering(prepare_dir(a.output, "--output"), res, summary)
    return summary


def main(argv=None) -> int:
    a = _parser().parse_args(argv)

    def go() -> int:
        s = run(a)
        if not a.quiet:
            print(f"{s['method']}: {a.seeds} run(s) -> {Path(a.output)}  normalized entropy "
                  f"{s['normalized_entropy_mean']:.4f} +- {s['normalized_entropy_std']:.4f}, quantization error "
                  f"{s['quantization_error_mean']:.4g}")
        return cli.EXIT_OK

    return cli.run_command(go)


if __name__ == "__main__":
    sys.exit(main())
