"""Assignment of points to clusters and clustering quality: quantization error, normalized entropy.

All functions take centroids ``(k, d)`` and an optional ``active`` mask ``(k,)`` (GNG: padded units are
inactive and never win). Batched versions over seeds are plain ``jax.vmap``s of these; the ``*_many``
helpers do that for you.

* ``assign``: index of the nearest (active) centroid, lowest index on ties; computed in chunks of
  points so that ``n x k`` distances never need to be held at once.
* ``quantization_error``: mean over points of the squared Euclidean distance to the nearest centroid.
* ``normalized_entropy``: ``H / log k`` of the cluster-size distribution ``p_j = n_j / n`` with
  ``H = -sum_{p_j > 0} p_j log p_j`` and ``k`` the number of (active) centroids; 1 = all clusters
  equally large, 0 = everything in one cluster. Its std over seeds is the paper's Fig. 8.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "assign",
    "assign_many",
    "cluster_sizes",
    "quantization_error",
    "quantization_error_many",
    "normalized_entropy",
    "normalized_entropy_many",
    "entropy_std",
]


def _exact_sq(X, C) -> jax.Array:
    diff = X[:, None, :] - C[None, :, :]
    return jnp.sum(diff * diff, -1)


def _assign_chunk(X, C, active):
    # exact (x - c)^2 sums, as in the training updates, so near-ties resolve the same way
    d = _exact_sq(X, C)
    if active is not None:
        d = jnp.where(active[None, :], d, jnp.inf)
    dmin = jnp.min(d, -1, keepdims=True)
    iota = jax.lax.broadcasted_iota(jnp.int32, d.shape, 1)
    lab = jnp.min(jnp.where(d == dmin, iota, d.shape[1]), -1)
    return lab, dmin[:, 0]


@jax.jit
def _assign_all(X, C, active):
    n = X.shape[0]
    k = C.shape[0]
    chunk = max(1, min(n, (1 << 22) // max(1, k * X.shape[1])))
    pad = (-n) % chunk
    Xp = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)]) if pad else X
    labs, dmins = jax.lax.map(lambda xc: _assign_chunk(xc, C, active), Xp.reshape(-1, chunk, X.shape[1]))
    return labs.reshape(-1)[:n], dmins.reshape(-1)[:n]


def _active(C, active):
    return jnp.ones((C.shape[0],), bool) if active is None else jnp.asarray(active, bool)


def assign(X, C, active=None) -> jax.Array:
    """Label ``(n,)`` int32: index of the nearest active centroid (squared Euclidean distance)."""
    X = jnp.asarray(X, jnp.float32)
    C = jnp.asarray(C, jnp.float32)
    return _assign_all(X, C, _active(C, active))[0]


def assign_many(X, Cs, active=None) -> jax.Array:
    """``(S, n)`` labels for ``(S, k, d)`` centroids (``active``: ``(S, k)`` or None)."""
    Cs = jnp.asarray(Cs, jnp.float32)
    act = jnp.ones(Cs.shape[:2], bool) if active is None else jnp.asarray(active, bool)
    return jax.vmap(lambda C, a: _assign_all(jnp.asarray(X, jnp.float32), C, a)[0])(Cs, act)


def cluster_sizes(labels, k: int) -> jax.Array:
    """``(k,)`` number of points per cluster."""
    return jnp.bincount(jnp.asarray(labels).reshape(-1), length=k)


def quantization_error(X, C, active=None) -> jax.Array:
    """Mean squared Euclidean distance of each point to its nearest active centroid."""
    X = jnp.asarray(X, jnp.float32)
    C = jnp.asarray(C, jnp.float32)
    return jnp.mean(_assign_all(X, C, _active(C, active))[1])


def quantization_error_many(X, Cs, active=None) -> jax.Array:
    Cs = jnp.asarray(Cs, jnp.float32)
    act = jnp.ones(Cs.shape[:2], bool) if active is None else jnp.asarray(active, bool)
    X = jnp.asarray(X, jnp.float32)
    return jax.vmap(lambda C, a: jnp.mean(_assign_all(X, C, a)[1]))(Cs, act)


def normalized_entropy(labels, k: int, n_clusters=None) -> jax.Array:
    """``H / log K`` of the cluster-size distribution.

    ``k``: number of label values (array length); ``n_clusters``: the ``K`` of ``log K`` (default k;
    for GNG pass the number of active units). Returns 0 when ``K <= 1``.
    """
    sizes = cluster_sizes(labels, k).astype(jnp.float32)
    p = sizes / jnp.maximum(sizes.sum(), 1.0)
    H = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    K = jnp.asarray(k if n_clusters is None else n_clusters, jnp.float32)
    return jnp.where(K > 1, H / jnp.log(jnp.maximum(K, 2.0)), 0.0)


def normalized_entropy_many(labels, k: int, active=None) -> jax.Array:
    """``(S,)`` normalized entropies for ``(S, n)`` labels (``active (S, k)`` gives K per seed)."""
    labels = jnp.asarray(labels)
    K = jnp.full((labels.shape[0],), k) if active is None else jnp.sum(jnp.asarray(active), -1)
    return jax.vmap(lambda lab, kk: normalized_entropy(lab, k, kk))(labels, K)


def entropy_std(entropies) -> float:
    """Standard deviation over seeds of the normalized entropy (paper Fig. 8; population std, ddof=0)."""
    return float(np.std(np.asarray(entropies, np.float64)))
