"""PCA (dng_jax/clustering/pca.py) against NumPy's SVD."""

import numpy as np

from dng_jax.clustering import pca as P


def test_pca_matches_numpy_svd_with_deterministic_signs():
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(80, 40)) @ rng.normal(size=(40, 40))).astype(np.float32)
    p, Z = P.pca_fit_transform(X, 8)
    assert Z.shape == (80, 8)
    Xc = X - X.mean(0)
    _, s, vt = np.linalg.svd(Xc.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(np.abs(np.asarray(p.components)), np.abs(vt[:8]), atol=2e-3)
    np.testing.assert_allclose(np.asarray(p.explained_variance), s[:8] ** 2 / 79, rtol=1e-3)
    C = np.asarray(p.components)
    np.testing.assert_allclose(C @ C.T, np.eye(8), atol=1e-4)
    assert np.all(C[np.arange(8), np.abs(C).argmax(1)] > 0)
    p2 = P.pca_fit(-X + 3.0, 8)  # a sign flip of the data does not flip the components
    np.testing.assert_allclose(np.asarray(p2.components), C, atol=2e-3)
    np.testing.assert_allclose(np.asarray(P.pca_transform(p, X)), np.asarray(Z), atol=1e-4)
