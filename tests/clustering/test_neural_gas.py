"""NG and kMC against the plain NumPy reference, determinism, vmap and sharding over seeds."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import xla_flags_with_devices

from dng_jax.clustering import neural_gas as ng
from dng_jax.clustering import reference as ref
from dng_jax.clustering.orders import epoch_orders


def _data(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _ref_run(X, w0, orders, cfg):
    eps, R = ref.ng_schedule(cfg.epochs, cfg.eps0, cfg.eps_fin, cfg.R0, cfg.r_fin)
    return ref.ng_reference(X, w0, orders, eps, R)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [
    ng.NGConfig(k=40, epochs=20),  # goes through m = k (sort), 4m >= k (dense top-k), top-k rows, winner
    ng.NGConfig(k=6, epochs=8, full_rank="sort"),
    ng.kmc_config(9, epochs=4),
    ng.kmc_config(70, epochs=2),  # k >= 64: blocked winner search
], ids=["ng", "ng-xla-sort", "kmc", "kmc-blocked"])
def test_matches_reference(cfg):
    X = _data(80, 3)
    key = jax.random.key(1)
    st = ng.init(key, X, cfg)
    orders = np.asarray(epoch_orders(key, len(X), cfg.epochs))
    out = ng.update_epochs(st, X, orders, cfg)
    expect = _ref_run(X, np.asarray(st.centroids), orders, cfg)
    assert _rel(out.centroids, expect) < 1e-4
    # fit() derives the very same start and orders from the key
    np.testing.assert_array_equal(np.asarray(ng.fit(key, X, cfg).centroids), np.asarray(out.centroids))
    if cfg.r0 is None and cfg.k == 40:
        ms = set(ng.neighbourhood_sizes(cfg).tolist())
        assert 40 in ms and 1 in ms and any(4 * m >= 40 for m in ms - {40}) and any(1 < 4 * m < 40 for m in ms)


def test_paper_defaults_and_schedule():
    cfg = ng.NGConfig(k=100)
    assert (cfg.epochs, cfg.eps0, cfg.eps_fin, cfg.r_fin, cfg.R0) == (200, 0.1, 1e-4, 1e-3, 200.0)
    eps, R = ng.schedule(cfg)
    assert eps[0] == np.float32(0.1) and R[0] == np.float32(200.0)
    np.testing.assert_allclose(eps[100], np.sqrt(0.1 * 1e-4), rtol=1e-6)
    ms = ng.neighbourhood_sizes(cfg)
    assert ms[0] == 100 and ms[-1] == 1 and np.all(np.diff(ms) <= 0)
    # every rank that is dropped really has weight below h_min in float32
    for m, r in zip(ms, R):
        if m < cfg.k:
            assert np.exp(-np.float32(m) / r) < cfg.h_min
    kcfg = ng.kmc_config(100)
    assert kcfg.R0 == kcfg.r_fin == 1e-3 and set(ng.neighbourhood_sizes(kcfg).tolist()) == {1}


def test_ties_broken_by_lowest_index():
    X = _data(30, 2)
    X[5] = X[17]  # duplicate pattern
    w0 = np.stack([X[5], X[17], X[3], X[5], X[9], X[11]])  # duplicate centroids
    for cfg in (ng.NGConfig(k=6, epochs=6), ng.kmc_config(6, epochs=3)):
        orders = np.asarray(epoch_orders(jax.random.key(4), 30, cfg.epochs))
        out = ng.update_epochs(ng.init_from(w0), X, orders, cfg)
        assert _rel(out.centroids, _ref_run(X, w0, orders, cfg)) < 1e-4


def test_kmc_moves_at_most_one_centroid_per_pattern():
    X = _data(50, 3)
    cfg = ng.kmc_config(7, epochs=2)
    w = ng.init(jax.random.key(0), X, cfg).centroids
    m = int(ng.neighbourhood_sizes(cfg)[0])

    def body(w, i):
        w2 = ng.ng_step(w, jnp.asarray(X)[i], 0.1, 1e-3, m)
        return w2, jnp.sum(jnp.any(w2 != w, axis=1))

    _, moved = jax.lax.scan(body, w, jnp.arange(50))
    assert int(moved.max()) == 1 and int(moved.min()) >= 0
    # and the winner-only path does no ranking at all: no sort / top_k in its program
    hlo = jax.jit(lambda w, x: ng.ng_step(w, x, 0.1, 1e-3, m)).lower(w, jnp.asarray(X[0])).as_text()
    assert "sort" not in hlo and "top_k" not in hlo.lower()


def test_kmc_blocked_winner_path_equals_pattern_by_pattern():
    X = jnp.asarray(_data(70, 3))  # 4 blocks of 16 and a tail of 6
    w = jnp.asarray(_data(70, 3, seed=1)[:65])  # k = 65 >= 64: the blocked path is the default
    order = jnp.asarray(np.random.default_rng(0).permutation(70))
    blocked = ng._epoch(w, X, order, 0.3, 1e-3, 1, "bitonic")
    single = ng._epoch(w, X, order, 0.3, 1e-3, 1, "bitonic", block=1)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(single), rtol=1e-6, atol=1e-6)
    moved = np.any(np.asarray(blocked) != np.asarray(w), axis=1).sum()
    assert 0 < moved <= 70


def test_ng_end_of_schedule_is_kmc():
    X = _data(40, 3)
    cfg = ng.NGConfig(k=10, epochs=50)
    eps, R = ng.schedule(cfg)
    assert ng.neighbourhood_sizes(cfg)[-1] == 1
    w = ng.init(jax.random.key(2), X, cfg).centroids
    order = jnp.asarray(np.random.default_rng(0).permutation(40))
    full = ng.update_epoch(w, jnp.asarray(X), order, eps[-1], R[-1], m=None)  # full ranking
    kmc = ng.update_epoch(w, jnp.asarray(X), order, eps[-1], 1e-3, m=1)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(kmc))


def test_same_seed_same_result_other_seed_differs():
    X = _data(40, 2)
    cfg = ng.NGConfig(k=5, epochs=5)
    a = ng.fit(jax.random.key(7), X, cfg).centroids
    b = ng.fit(jax.random.key(7), X, cfg).centroids
    c = ng.fit(jax.random.key(8), X, cfg).centroids
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [ng.NGConfig(k=4, epochs=4), ng.kmc_config(4, epochs=3)], ids=["ng", "kmc"])
def test_fit_many_equals_single_runs(cfg):
    X = _data(24, 2)
    keys = jax.random.split(jax.random.key(0), 48)
    many = np.asarray(ng.fit_many(keys, X, cfg).centroids)
    assert many.shape == (48, 4, 2)
    single = np.stack([np.asarray(ng.fit(keys[i], X, cfg).centroids) for i in range(48)])
    np.testing.assert_allclose(many, single, rtol=1e-6, atol=1e-6)
    # seeds vmapped in groups of 5 (lax.map with a remainder group) give the same
    grouped = np.asarray(ng.fit_many(keys[:12], X, cfg.replace(seed_chunk=5)).centroids)
    np.testing.assert_allclose(grouped, single[:12], rtol=1e-6, atol=1e-6)
    # explicit orders, batched, too
    orders = jnp.stack([epoch_orders(kk, 24, cfg.epochs) for kk in keys[:3]])
    w0 = jnp.stack([ng.init(kk, X, cfg).centroids for kk in keys[:3]])
    out = ng.update_epochs_many(ng.NGState(w0, jnp.zeros(3, jnp.int32)), X, orders, cfg)
    np.testing.assert_allclose(np.asarray(out.centroids), single[:3], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_sharded_runs_axis_on_fake_devices():
    code = textwrap.dedent("""
        import jax, numpy as np
        from dng_jax.clustering import neural_gas as ng
        from dng_jax.sharding import runs_mesh
        assert jax.device_count() == 4, jax.devices()
        X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
        keys = jax.random.split(jax.random.key(0), 6)     # 6 seeds over 4 devices: padded
        for cfg in (ng.NGConfig(k=4, epochs=3), ng.kmc_config(3, epochs=2)):
            mesh = runs_mesh()
            a = ng.fit_many(keys, X, cfg, mesh=mesh).centroids
            b = ng.fit_many(keys, X, cfg).centroids
            assert a.shape == (6, cfg.k, 2)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
        c8 = ng.fit_many(jax.random.split(jax.random.key(1), 8), X, ng.NGConfig(k=3, epochs=2), mesh=mesh).centroids
        assert len(c8.sharding.device_set) == 4 and c8.addressable_shards[0].data.shape == (2, 3, 2)
        from dng_jax.clustering import gng
        gcfg = gng.GNGConfig(max_units=8, epochs=1, lam=5)
        a = gng.fit_many(keys, X, gcfg, mesh=runs_mesh())
        b = gng.fit_many(keys, X, gcfg)
        np.testing.assert_array_equal(np.asarray(a.age), np.asarray(b.age))
        np.testing.assert_allclose(np.asarray(a.w), np.asarray(b.w), rtol=1e-6, atol=1e-6)
        print("SHARDED-OK")
    """)
    env = dict(os.environ, XLA_FLAGS=xla_flags_with_devices(4), JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "SHARDED-OK" in r.stdout, r.stderr[-3000:]


def test_init_rejects_k_greater_than_n():
    with pytest.raises(ValueError, match="k=5 > n=3"):
        ng.init(jax.random.key(0), _data(3, 2), ng.NGConfig(k=5))
