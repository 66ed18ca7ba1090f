"""Ranks of distances with ties to the lowest index (as ``np.argsort(kind="stable")``), for NG and GNG.

Ranking all ``k`` centroids is what NG's early epochs spend their time on (paper eqs. 2-3). XLA's CPU sort
calls a compiled comparator per comparison, so :func:`bitonic_ranks` ranks with a bitonic sorting network
in plain elementwise code instead, and under ``vmap`` the seeds become the vector lanes of one network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["first_argmin", "first_argmax", "bitonic_ranks", "full_ranks"]


def first_argmin(dist: jax.Array) -> jax.Array:
    """Index of the smallest entry along the last axis, lowest index on ties (a min and an int min: cheap
    on CPU)."""
    k = dist.shape[-1]
    dmin = jnp.min(dist, axis=-1, keepdims=True)
    iota = lax.broadcasted_iota(jnp.int32, dist.shape, dist.ndim - 1)
    return jnp.min(jnp.where(dist == dmin, iota, k), axis=-1)


def first_argmax(v: jax.Array) -> jax.Array:
    """Index of the largest entry, lowest index on ties."""
    return first_argmin(-v)


def _compare_exchange(v, idx, size: int, stride: int):
    """One layer of the bitonic network on ``(N, B)`` lanes: values ``v`` with their slots ``idx``;
    returns them and the swap mask (pairs compared lexicographically as ``(value, index)``)."""
    N, B = v.shape
    shape = (N // (2 * stride), 2, stride, B)
    vv, ii = v.reshape(shape), idx.reshape(shape)
    lo, hi, ilo, ihi = vv[:, 0], vv[:, 1], ii[:, 0], ii[:, 1]
    pos = np.arange(N // (2 * stride))[:, None] * 2 * stride + np.arange(stride)[None, :]
    asc = jnp.asarray(((pos & size) == 0)[:, :, None])
    gt = (lo > hi) | ((lo == hi) & (ilo > ihi))
    sw = gt == asc
    v = jnp.stack([jnp.where(sw, hi, lo), jnp.where(sw, lo, hi)], axis=1).reshape(N, B)
    idx = jnp.stack([jnp.where(sw, ihi, ilo), jnp.where(sw, ilo, ihi)], axis=1).reshape(N, B)
    return v, idx, sw


def _bitonic_ranks_lanes(d: jax.Array) -> jax.Array:
    """Stable ranks along axis 0 of ``d (k, B)`` with a bitonic network, vectorised over the B lanes.

    Ties go to the lowest index, so the result equals the inverse of ``argsort(kind="stable")``. The
    forward network records its swaps; the positions ``0..N-1`` are then routed back through them, which
    gives every slot its rank without a second sort and without a scatter.
    """
    k, B = d.shape
    N = 1 << max(0, (k - 1).bit_length())
    v = d if N == k else jnp.concatenate([d, jnp.full((N - k, B), jnp.inf, d.dtype)], axis=0)
    idx = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32)[:, None], (N, B))
    swaps = []
    size = 2
    while size <= N:
        stride = size // 2
        while stride >= 1:
            v, idx, sw = _compare_exchange(v, idx, size, stride)
            swaps.append((stride, sw))
            stride //= 2
        size *= 2
    r = jnp.broadcast_to(jnp.arange(N, dtype=jnp.float32)[:, None], (N, B))
    for stride, sw in reversed(swaps):
        rr = r.reshape((N // (2 * stride), 2, stride, B))
        lo, hi = rr[:, 0], rr[:, 1]
        r = jnp.stack([jnp.where(sw, hi, lo), jnp.where(sw, lo, hi)], axis=1).reshape(N, B)
    return r[:k]


@custom_vmap
def bitonic_ranks(dist: jax.Array) -> jax.Array:
    """float32 stable ranks of ``dist (k,)`` (0 = smallest). Under ``vmap`` the seeds become the
    vector lanes of one network (custom batching rule), instead of k-long rows sorted one by one."""
    return _bitonic_ranks_lanes(dist[:, None])[:, 0]


@bitonic_ranks.def_vmap
def _bitonic_ranks_vmap(axis_size, in_batched, dist):
    (batched,) = in_batched
    if not batched:
        return bitonic_ranks(dist), False
    lanes = jnp.moveaxis(dist, -1, 0)  # (k, S, ...)
    r = _bitonic_ranks_lanes(lanes.reshape(lanes.shape[0], -1)).reshape(lanes.shape)
    return jnp.moveaxis(r, 0, -1), True


def full_ranks(dist: jax.Array, how: str) -> jax.Array:
    """float32 stable ranks of all of ``dist (k,)``: ``how`` is ``"bitonic"`` (:func:`bitonic_ranks`) or
    ``"sort"`` (XLA's sort, then the ranks scattered back)."""
    k = dist.shape[-1]
    if how == "bitonic":
        return bitonic_ranks(dist)
    if how != "sort":
        raise ValueError(f"full_rank={how!r}: expected 'bitonic' or 'sort'")
    order = jnp.argsort(dist, stable=True)
    return jnp.zeros((k,), jnp.float32).at[order].set(jnp.arange(k, dtype=jnp.float32), unique_indices=True)
