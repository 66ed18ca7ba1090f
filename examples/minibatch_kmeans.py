"""A clustering variant written against dng-jax's method contract: mini-batch k-means (Sculley 2010).

Nothing in the package knows this file; both commands load the factory from it by its path::

    python -m dng_jax.cluster --method examples/minibatch_kmeans.py:minibatch_kmeans --k 20 --seeds 4 \
        --input X.npy --output runs/mbk20
    python -m dng_jax.sweep --workdir runs/mbk_sweep \
        --config.sweep.methods='("kmc", "examples/minibatch_kmeans.py:minibatch_kmeans")'

The contract (``dng_jax.clustering.methods``): a factory ``(k, ClusteringConfig) -> ClusteringMethod``,
whose pure functions close over the hyperparameters -- ``init(key, X)``, ``fit_many(keys, X, *, mesh,
progress)``, ``assign(states, X)``, ``prototypes(states)`` -- plus a dict of ``hyperparameters``.
docs/clustering_variants.md walks through this file.

Mini-batch k-means: each step draws ``batch_size`` patterns, assigns each to its nearest centre, and
moves every centre to the running mean of all patterns it has ever been assigned (per-centre learning
rate 1 / count, Sculley's update done for a whole batch at once). An epoch is one pass over a fresh
permutation of the patterns; it runs ``cfg.epochs`` epochs (the sweep's ``clustering.epochs``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from dng_jax.clustering.methods import ClusteringConfig, ClusteringMethod
from dng_jax.clustering.quality import assign_many
from dng_jax.sharding import put


class MiniBatchState(NamedTuple):
    centroids: jax.Array  # (k, d) float32; (S, k, d) after fit_many
    counts: jax.Array  # (k,) patterns each centre has absorbed so far


def minibatch_kmeans(k: int, cfg: ClusteringConfig = ClusteringConfig(), batch_size: int = 64) -> ClusteringMethod:
    """Mini-batch k-means with ``k`` centres, ``cfg.epochs`` passes over the data, ``batch_size`` patterns a step."""
    epochs = cfg.epochs

    def init(key, X):
        """``k`` distinct data points, as NG and kMC start (``split(key)[0]`` picks them)."""
        k_init, _ = jax.random.split(key)
        idx = jax.random.choice(k_init, X.shape[0], (k,), replace=False)
        return MiniBatchState(X[idx], jnp.zeros((k,), jnp.float32))

    def step(state, xb):
        d = jnp.sum(xb * xb, 1)[:, None] - 2.0 * xb @ state.centroids.T + jnp.sum(state.centroids ** 2, 1)[None]
        onehot = jax.nn.one_hot(jnp.argmin(d, axis=1), k, dtype=jnp.float32)  # (B, k)
        m = onehot.sum(0)  # new patterns per centre
        counts = state.counts + m
        sums = onehot.T @ xb  # (k, d) sum of the new patterns per centre
        # the running mean over everything a centre has absorbed: (n_old c + sum x) / (n_old + m)
        c = jnp.where(m[:, None] > 0, (state.counts[:, None] * state.centroids + sums) / jnp.maximum(counts, 1)[:, None],
                      state.centroids)
        return MiniBatchState(c, counts), None

    def fit_one(key, X):
        n = X.shape[0]
        b = min(batch_size, n)
        _, k_order = jax.random.split(key)

        def epoch(state, t):
            perm = jax.random.permutation(jax.random.fold_in(k_order, t), n)[: n // b * b]
            return jax.lax.scan(step, state, X[perm.reshape(-1, b)])[0], None

        return jax.lax.scan(epoch, init(key, X), jnp.arange(epochs))[0]

    fit_vmapped = jax.jit(jax.vmap(fit_one, in_axes=(0, None)))

    def fit_many(keys, X, *, mesh=None, progress=False):
        """Every seed at once (vmapped); with a ``runs`` mesh the seeds are split over its devices."""
        X = jnp.asarray(X, jnp.float32)
        S = keys.shape[0]
        if mesh is not None:
            pad = (-S) % mesh.devices.size
            keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)]) if pad else keys
            keys = put(keys, NamedSharding(mesh, P("runs")))  # (device_put that reaches other processes too)
        states = fit_vmapped(keys, X)
        return jax.tree.map(lambda a: a[:S], states)

    def prototypes(states):
        return states.centroids, jnp.ones(states.centroids.shape[:2], bool)

    return ClusteringMethod(
        init=init,
        fit_many=fit_many,
        assign=lambda states, X: assign_many(X, states.centroids),
        prototypes=prototypes,
        hyperparameters={"k": k, "epochs": epochs, "batch_size": batch_size},
    )


# Your own hyperparameters: the sweep and the CLI call a factory with (k, config) only, so give every
# setting you want to compare a name of its own (--method examples/minibatch_kmeans.py:minibatch_kmeans_b256).
minibatch_kmeans_b256 = functools.partial(minibatch_kmeans, batch_size=256)
