"""Clustering a data matrix with any method of the table, over many seeds, and its outputs on disk
(what ``python -m dng_jax.cluster`` does).

Run ``i`` uses ``fold_in(key(seed), i)``, so the first runs of 48 seeds equal those of 4. Written to the
output folder (each file atomically): ``centroids.npy (S, K, d)``, ``active.npy (S, K)``, ``labels.npy
(S, n)`` (the cluster slot of every pattern) and ``summary.json`` (the settings, and per seed the
quantization error, the normalized entropy and the number of units).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from dng_jax.clustering.methods import ClusteringConfig, ClusteringResult, build_method, run_method
from dng_jax.clustering.pca import pca_fit_transform
from dng_jax.clustering.quality import entropy_std
from dng_jax.io.atomic import atomic_save_npy, atomic_write_text

__all__ = ["cluster_matrix", "write_clustering"]


def cluster_matrix(X: np.ndarray, method: str, k: int, cfg: ClusteringConfig, *, seeds: int, seed: int = 0,
                   pca: int = 0, mesh: Mesh | None = None, progress: bool = False) -> tuple[ClusteringResult, dict]:
    """Fit ``seeds`` runs of ``method`` (a table name or ``file.py:factory``) at ``k`` on ``X (n, d)``
    (first reduced to ``pca`` principal components when > 0); returns the result and its summary."""
    method_id, m = build_method(method, k, cfg)
    if pca:
        X = np.asarray(pca_fit_transform(X, pca)[1])
    base = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(seeds))
    res = run_method(m, keys, X, mesh=mesh, progress=progress)
    summary: dict[str, Any] = {
        "method": method_id, "n": int(X.shape[0]), "d": int(X.shape[1]), "pca": pca or None, "seeds": seeds,
        "base_seed": seed,
        "config": {name: (v if not isinstance(v, float) or np.isfinite(v) else str(v))
                   for name, v in m.hyperparameters.items()},
        "runs": [{"seed": i, "quantization_error": float(res.quant_error[i]),
                  "normalized_entropy": float(res.norm_entropy[i]), "n_units": int(res.units[i])}
                 for i in range(seeds)],
        "normalized_entropy_mean": float(np.mean(res.norm_entropy)),
        "normalized_entropy_std": entropy_std(res.norm_entropy),
        "quantization_error_mean": float(np.mean(res.quant_error)),
    }
    return res, summary


def write_clustering(output: str | os.PathLike, res: ClusteringResult, summary: dict) -> None:
    out = Path(output)
    atomic_save_npy(out / "centroids.npy", res.centroids)
    atomic_save_npy(out / "active.npy", res.active)
    atomic_save_npy(out / "labels.npy", res.slots)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
