"""PCA in JAX (the paper reduces 2048-D latent vectors to 32-D before clustering).

``pca_fit`` centers the data and takes the top ``n_components`` right singular vectors of the centered
matrix (``jnp.linalg.svd``, float32 by default). Signs are made deterministic: each component is flipped
so that its entry of largest absolute value is positive.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["PCA", "pca_fit", "pca_transform", "pca_fit_transform"]


class PCA(NamedTuple):
    mean: jax.Array  # (D,)
    components: jax.Array  # (n_components, D), orthonormal rows
    explained_variance: jax.Array  # (n_components,), sample variance (ddof=1) along each component


def pca_fit(X, n_components: int = 32) -> PCA:
    X = jnp.asarray(X)
    X = X.astype(jnp.float32) if not jnp.issubdtype(X.dtype, jnp.floating) else X
    n, D = X.shape
    if not 1 <= n_components <= min(n, D):
        raise ValueError(f"n_components={n_components} must be in [1, min(n={n}, D={D})]")
    return _pca_fit(X, n_components)


def _pca_fit_impl(X, n_components):
    mean = jnp.mean(X, axis=0)
    Xc = X - mean
    _, s, vt = jnp.linalg.svd(Xc, full_matrices=False)
    comps = vt[:n_components]
    big = jnp.argmax(jnp.abs(comps), axis=1)
    signs = jnp.sign(jnp.take_along_axis(comps, big[:, None], axis=1))
    comps = comps * jnp.where(signs == 0, 1.0, signs)
    var = (s[:n_components] ** 2) / max(X.shape[0] - 1, 1)
    return PCA(mean, comps, var)


_pca_fit = jax.jit(_pca_fit_impl, static_argnums=1)


def pca_transform(pca: PCA, X) -> jax.Array:
    return (jnp.asarray(X, pca.mean.dtype) - pca.mean) @ pca.components.T


def pca_fit_transform(X, n_components: int = 32) -> tuple[PCA, jax.Array]:
    p = pca_fit(X, n_components)
    return p, pca_transform(p, X)
