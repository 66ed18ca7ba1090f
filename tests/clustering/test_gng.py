"""GNG against the plain NumPy reference (same units, edges, errors), vmap and determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.clustering import gng
from dng_jax.clustering.orders import epoch_order
from dng_jax.clustering import reference as ref


def _data(n=150, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, 2)) * 2).astype(np.float32)


def _orders(key, n, epochs):
    return np.asarray(jnp.stack([epoch_order(key, t, n) for t in range(epochs)]))


def _reference(X, s0, orders, cfg):
    return ref.gng_reference(X, np.asarray(s0.w[: cfg.start_units]), orders, max_units=cfg.max_units,
                             eps_b=cfg.eps_b, eps_n=cfg.eps_n, max_age=cfg.max_age, lam=cfg.lam,
                             alpha=cfg.alpha, decay=cfg.decay, min_dist=cfg.min_dist)


@pytest.mark.parametrize("cfg,expect", [
    (gng.GNGConfig(max_units=40, epochs=4, lam=15, max_age=1), "removals"),
    (gng.GNGConfig(max_units=16, epochs=3, lam=10, max_age=6), "full"),
])
def test_matches_reference(cfg, expect):
    X = _data()
    key = jax.random.key(2)
    s0 = gng.init(key, X, cfg)
    orders = _orders(key, len(X), cfg.epochs)
    s = gng.update_epochs(s0, X, orders, cfg)
    r = _reference(X, s0, orders, cfg)
    assert int(s.steps) == r.steps
    np.testing.assert_array_equal(np.asarray(s.active), r.active)
    np.testing.assert_array_equal(np.asarray(s.age), r.age)  # same edges with the same ages
    np.testing.assert_array_equal(np.asarray(s.degree), (r.age >= 0).sum(1))
    np.testing.assert_allclose(np.asarray(s.w), r.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.error), r.error, rtol=1e-4, atol=1e-5 * r.error.max())
    if expect == "removals":
        assert r.removed > 0 and r.inserted > 10
    else:
        assert r.active.all()  # capacity reached: insertion is skipped, nothing breaks
    np.testing.assert_array_equal(np.asarray(gng.fit(key, X, cfg).w), np.asarray(s.w))


def test_min_dist_skips_the_step():
    X = np.zeros((10, 2), np.float32)
    X[:, 0] = np.arange(10) * 0.01  # all patterns within 0.2 of every start unit
    cfg = gng.GNGConfig(max_units=8, start_units=2, epochs=1)
    s0 = gng.init_from(X[:2], cfg.max_units)
    s = gng.update_epochs(s0, X, np.arange(10)[None], cfg)
    assert int(s.steps) == 0 and not np.any(np.asarray(s.age) >= 0)
    np.testing.assert_array_equal(np.asarray(s.w), np.asarray(s0.w))


def test_paper_defaults():
    cfg = gng.GNGConfig()
    assert (cfg.eps_b, cfg.eps_n, cfg.max_age, cfg.lam, cfg.alpha, cfg.decay, cfg.min_dist, cfg.start_units) \
        == (0.1, 0.001, 50, 100, 0.5, 0.995, 0.2, 5)


def test_fit_many_equals_single_runs_and_is_deterministic():
    X = _data(60)
    cfg = gng.GNGConfig(max_units=12, epochs=2, lam=10, max_age=5)
    keys = jax.random.split(jax.random.key(0), 5)
    many = gng.fit_many(keys, X, cfg)
    for i in range(5):
        one = gng.fit(keys[i], X, cfg)
        np.testing.assert_array_equal(np.asarray(many.active[i]), np.asarray(one.active))
        np.testing.assert_array_equal(np.asarray(many.age[i]), np.asarray(one.age))
        np.testing.assert_allclose(np.asarray(many.w[i]), np.asarray(one.w), rtol=1e-6, atol=1e-6)
    again = gng.fit_many(keys, X, cfg)
    np.testing.assert_array_equal(np.asarray(again.w), np.asarray(many.w))
    assert np.all(np.asarray(gng.n_units(many)) > 5)
