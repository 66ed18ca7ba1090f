"""The seeded visiting orders of NG, kMC and GNG: which pattern comes when in every epoch.

A run's key is split once, ``key -> (init_key, order_key)`` (:func:`split_run_key`): the first half draws
the start, the second the orders. Epoch ``t`` visits ``np.random.default_rng(seed).permutation(n)``,
``seed`` being the key data of ``fold_in(order_key, t)``, so a run's orders depend on its key and the
epoch only, never on how many runs are vmapped together or how the epochs are chunked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["split_run_key", "single_key_batch", "epoch_order", "epoch_orders", "epoch_orders_many"]


def split_run_key(key) -> tuple[jax.Array, jax.Array]:
    """``(init_key, order_key)`` of a run's key."""
    k_init, k_order = jax.random.split(key)
    return k_init, k_order


def single_key_batch(key) -> jax.Array:
    """One run's key as a batch of one (``(1,)``), for the batched functions."""
    return key[None] if isinstance(key, jax.Array) else jnp.asarray(key)[None]


def _key_data(keys) -> jax.Array:
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    return jax.random.key_data(keys) if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys


@jax.jit
def _order_seeds(keys, epochs):
    """``(S, E, words)`` uint32 seed material for epoch orders: ``fold_in(order_key, t)`` per run/epoch."""
    def one(key):
        _, k_order = split_run_key(key)
        return jax.vmap(lambda t: _key_data(jax.random.fold_in(k_order, t)))(epochs)

    return jax.vmap(one)(keys)


def epoch_orders_many(keys, n: int, start: int, stop: int) -> np.ndarray:
    """``(S, stop-start, n)`` int32 visiting orders of epochs ``start..stop-1`` for the runs ``keys (S,)``.

    The permutations are drawn on the host with NumPy: a permutation inside XLA is a sort, and XLA's CPU
    sort of a few thousand numbers costs as much as a kMC epoch (docs/benchmarks.md); drawing the next
    chunk's orders on the host overlaps with the device computing the current one.
    """
    seeds = np.asarray(_order_seeds(keys, jnp.arange(start, stop, dtype=jnp.uint32)))
    S, E = seeds.shape[:2]
    out = np.empty((S, E, n), np.int32)
    for s in range(S):
        for e in range(E):
            out[s, e] = np.random.default_rng(seeds[s, e].tolist()).permutation(n)
    return out


def epoch_order(key, epoch: int, n: int) -> np.ndarray:
    """The visiting order (int32 permutation of n) of epoch ``epoch`` for the run with seed ``key``."""
    return epoch_orders_many(single_key_batch(key), n, int(epoch), int(epoch) + 1)[0, 0]


def epoch_orders(key, n: int, epochs: int, start: int = 0) -> np.ndarray:
    """``(epochs, n)`` visiting orders of epochs ``start .. start+epochs-1`` (what ``fit`` uses)."""
    return epoch_orders_many(single_key_batch(key), n, start, start + epochs)[0]
