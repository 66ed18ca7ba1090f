"""Assignment, quantization error and normalized entropy (dng_jax/clustering/quality.py)."""

import numpy as np

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
