"""The method table: built-ins equal the algorithms they wrap, file-loaded factories (the shipped
mini-batch k-means example) against a NumPy reference, and clear errors for bad method names."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from conftest import ROOT

from dng_jax import cluster
from dng_jax.clustering import gng as gng_lib
from dng_jax.clustering import neural_gas as ng_lib
from dng_jax.clustering.methods import METHODS, ClusteringConfig, load_factory, resolve_method, run_method
from dng_jax.errors import ConfigError

EXAMPLE = str(ROOT / "examples" / "minibatch_kmeans.py")


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 4
    return (centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.slow
def test_builtins_wrap_their_algorithms():
    X = _data()
    keys = jax.random.split(jax.random.key(0), 3)
    cfg = ClusteringConfig(epochs=3)
    direct = {
        "ng": np.asarray(ng_lib.fit_many(keys, X, ng_lib.NGConfig(k=4, epochs=3, r0=8.0)).centroids),
        "kmc": np.asarray(ng_lib.fit_many(keys, X, ng_lib.kmc_config(4, epochs=3)).centroids),
    }
    for name, want in direct.items():
        res = run_method(METHODS[name].factory(4, cfg), keys, X)
        np.testing.assert_array_equal(res.centroids, want)
        assert res.active.all() and (res.units == 4).all()
        np.testing.assert_array_equal(res.labels, res.slots)
    g = METHODS["gng"].factory(3, cfg.replace(gng=cfg.gng.replace(max_units=10, epochs=2, lam=5)))
    res = run_method(g, keys, X)
    s = gng_lib.fit_many(keys, X, gng_lib.GNGConfig(max_units=10, start_units=3, epochs=2, lam=5))
    np.testing.assert_array_equal(res.active, np.asarray(s.active))
    assert (res.units == res.active.sum(1)).all()
    # labels are the active slots renumbered 0..units-1
    assert all(set(np.unique(res.labels[i])) <= set(range(res.units[i])) for i in range(3))
    assert METHODS["gng"].ks((5, 50), cfg) == (cfg.gng.start_units,) and METHODS["ng"].ks((5, 50), cfg) == (5, 50)


def _sculley(X, w0, orders, batch):
    """Mini-batch k-means as Sculley (2010) writes it: assign the batch, then per pattern
    ``v[c] += 1; c <- (1 - 1/v[c]) c + x / v[c]``."""
    w = w0.astype(np.float64).copy()
    v = np.zeros(len(w))
    for order in orders:
        for s in range(len(order) // batch):
            xb = X[order[s * batch:(s + 1) * batch]].astype(np.float64)
            nearest = np.argmin(((xb[:, None] - w[None]) ** 2).sum(-1), axis=1)
            for x, c in zip(xb, nearest):
                v[c] += 1
                w[c] = (1 - 1 / v[c]) * w[c] + x / v[c]
    return w


def test_variant_example_matches_numpy_reference():
    method_id, spec = load_factory(f"{EXAMPLE}:minibatch_kmeans")
    assert method_id == "minibatch_kmeans" and spec.label == "minibatch_kmeans"
    X = _data(n=50)
    key = jax.random.key(3)
    method = spec.factory(4, ClusteringConfig(epochs=2))
    state = method.fit_many(key[None], X)
    # the same start and permutations, by the example's own key use
    w0 = np.asarray(method.init(key, X).centroids)
    _, k_order = jax.random.split(key)
    orders = [np.asarray(jax.random.permutation(jax.random.fold_in(k_order, t), 50)) for t in range(2)]
    want = _sculley(X, w0, orders, batch=50)  # batch_size 64 > n: one batch of all 50 per epoch
    np.testing.assert_allclose(np.asarray(state.centroids[0]), want, rtol=1e-5, atol=1e-5)
    m8 = spec.factory(4, ClusteringConfig(epochs=2), batch_size=8)  # 6 batches of 8 an epoch, 2 left out
    want8 = _sculley(X, w0, [o[:48] for o in orders], batch=8)
    np.testing.assert_allclose(np.asarray(m8.fit_many(key[None], X).centroids[0]), want8, rtol=1e-5, atol=1e-5)


def test_variant_runs_through_the_cluster_cli(tmp_path):
    X = _data(n=80)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "mbk"
    assert cluster.main(["--method", f"{EXAMPLE}:minibatch_kmeans", "--k", "4", "--seeds", "3", "--epochs", "3",
                         "--input", str(tmp_path / "X.npy"), "--output", str(out), "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "minibatch_kmeans" and s["config"]["batch_size"] == 64 and len(s["runs"]) == 3
    assert np.load(out / "centroids.npy").shape == (3, 4, 3) and np.load(out / "labels.npy").shape == (3, 80)
    assert all(0 < r["quantization_error"] < 10 for r in s["runs"])


def test_bad_method_names(tmp_path):
    with pytest.raises(ConfigError, match="expected one of kmc, ng, gng"):
        resolve_method("kmeans")
    with pytest.raises(ConfigError, match="is not a file"):
        resolve_method(str(tmp_path / "missing.py") + ":f")
    f = tmp_path / "variant.py"
    f.write_text("X = 3\ndef ng(k, cfg):\n    pass\nraise_later = None\n")
    with pytest.raises(ConfigError, match="defines no 'g'"):
        resolve_method(f"{f}:g")
    with pytest.raises(ConfigError, match="not callable"):
        resolve_method(f"{f}:X")
    with pytest.raises(ConfigError, match="built-in method's name"):
        resolve_method(f"{f}:ng")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ConfigError, match="importing .*broken.py failed: ModuleNotFoundError"):
        resolve_method(f"{broken}:f")
