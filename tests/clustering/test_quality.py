"""Assignment, quantization error, normalized entropy and PCA."""

import numpy as np

from dng_jax.clustering import pca as P
from dng_jax.clustering import quality as Q


def test_assign_and_quantization_error_match_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(101, 5)).astype(np.float32)
    C = rng.normal(size=(7, 5)).astype(np.float32)
    D = ((X[:, None] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.asarray(Q.assign(X, C)), D.argmin(1))
    np.testing.assert_allclose(float(Q.quantization_error(X, C)), D.min(1).mean(), rtol=1e-5)
    active = np.ones(7, bool)
    active[D.argmin(1)[0]] = False  # an inactive (padded) unit never wins
    lab = np.asarray(Q.assign(X, C, active))
    np.testing.assert_array_equal(lab, np.where(active[None], D, np.inf).argmin(1))
    many = np.asarray(Q.assign_many(X, np.stack([C, C[::-1]])))
    np.testing.assert_array_equal(many[1], 6 - D.argmin(1))
    qe = np.asarray(Q.quantization_error_many(X, np.stack([C, C[::-1]])))
    np.testing.assert_allclose(qe, D.min(1).mean(), rtol=1e-5)


def test_ties_go_to_lowest_index():
    X = np.zeros((3, 2), np.float32)
    C = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    np.testing.assert_array_equal(np.asarray(Q.assign(X, C)), [0, 0, 0])


def test_normalized_entropy():
    assert abs(float(Q.normalized_entropy(np.arange(40) % 4, 4)) - 1.0) < 1e-6
    assert float(Q.normalized_entropy(np.zeros(40, int), 4)) == 0.0
    lab = np.array([0, 0, 0, 1])
    p = np.array([0.75, 0.25])
    expect = -(p * np.log(p)).sum() / np.log(5)
    np.testing.assert_allclose(float(Q.normalized_entropy(lab, 5)), expect, rtol=1e-6)
    # GNG: K = number of active units, not the padded capacity
    np.testing.assert_allclose(float(Q.normalized_entropy(lab, 10, n_clusters=2)), -(p * np.log(p)).sum() / np.log(2),
                               rtol=1e-6)
    H = np.asarray(Q.normalized_entropy_many(np.stack([np.arange(40) % 4, np.zeros(40, int)]), 4))
    np.testing.assert_allclose(H, [1.0, 0.0], atol=1e-6)
    assert abs(Q.entropy_std(H) - 0.5) < 1e-6


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
