"""A small exact t-SNE (van der Maaten & Hinton 2008) in JAX, for the paper's Fig. 2.

Exact O(n^2) gradients: fine for the few thousand latent vectors of the clustering set, and it keeps
scikit-learn out of the dependencies. Perplexity calibration is a vectorised bisection over all points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["tsne"]


def _sq_dists(x: jax.Array) -> jax.Array:
    s = jnp.sum(x * x, axis=1)
    return jnp.maximum(s[:, None] + s[None, :] - 2.0 * x @ x.T, 0.0)


@functools.partial(jax.jit, static_argnames=("iters",))
def _affinities(x: jax.Array, perplexity: float, iters: int = 64) -> jax.Array:
    """Symmetrised input affinities P with each row's entropy matching log(perplexity)."""
    n = x.shape[0]
    d = _sq_dists(x)
    d = d / jnp.maximum(jnp.median(d), 1e-12)
    eye = jnp.eye(n, dtype=bool)
    target = jnp.log(perplexity)

    def row_p(beta):
        logits = jnp.where(eye, -jnp.inf, -d * beta[:, None])
        p = jax.nn.softmax(logits, axis=1)
        h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=1)
        return p, h

    def body(_, carry):
        lo, hi = carry
        beta = jnp.sqrt(lo * hi)
        _, h = row_p(beta)
        too_flat = h > target  # entropy too high -> sharpen (larger beta)
        return jnp.where(too_flat, beta, lo), jnp.where(too_flat, hi, beta)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.full((n,), 1e-6), jnp.full((n,), 1e6)))
    p, _ = row_p(jnp.sqrt(lo * hi))
    p = (p + p.T) / (2.0 * n)
    return jnp.maximum(p, 1e-12)


@functools.partial(jax.jit, static_argnames=("steps",))
def _optimise(p: jax.Array, y0: jax.Array, steps: int, learning_rate: float) -> jax.Array:
    def kl_grad(y, exaggeration):
        num = 1.0 / (1.0 + _sq_dists(y))
        num = num * (1.0 - jnp.eye(y.shape[0]))
        q = jnp.maximum(num / jnp.sum(num), 1e-12)
        w = (exaggeration * p - q) * num
        return 4.0 * (jnp.sum(w, axis=1, keepdims=True) * y - w @ y)

    def step(carry, i):
        y, vel, gains = carry
        early = i < 250
        g = kl_grad(y, jnp.where(early, 12.0, 1.0))
        momentum = jnp.where(early, 0.5, 0.8)
        gains = jnp.where(jnp.sign(g) != jnp.sign(vel), gains + 0.2, gains * 0.8)
        gains = jnp.maximum(gains, 0.01)
        vel = momentum * vel - learning_rate * gains * g
        y = y + vel
        return (y - jnp.mean(y, axis=0), vel, gains), None

    (y, _, _), _ = jax.lax.scan(step, (y0, jnp.zeros_like(y0), jnp.ones_like(y0)), jnp.arange(steps))
    return y


def tsne(x: np.ndarray, key: jax.Array, perplexity: float = 30.0, steps: int = 750,
         learning_rate: float | None = None) -> np.ndarray:
    """2-D t-SNE embedding of the rows of ``x`` (n x d)."""
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = float(min(perplexity, (n - 1) / 3.0))
    lr = learning_rate if learning_rate is not None else max(n / 12.0, 50.0)
    p = _affinities(x, perplexity)
    y0 = 1e-4 * jax.random.normal(key, (n, 2), jnp.float32)
    return np.asarray(_optimise(p, y0, steps, lr))
