"""Encoder retraining on pseudo-labels (runs vmapped), t-SNE, and the report's table and figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.experiment.report import read_results_csv, table1_markdown, write_report
from dng_jax.experiment.retrain import EncoderClassifier, RetrainConfig, random_crops, retrain_runs
from dng_jax.experiment.tsne import tsne
from dng_jax.models import ResNetEncoder


@pytest.fixture(scope="module")
def tiny():
    enc = ResNetEncoder(stage_sizes=(1, 1, 1, 1), width=4)
    variables = enc.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    learnable = (np.arange(16) % 2).astype(np.int32)
    images[learnable == 1] //= 5  # class 1 = dark images: learnable from any crop
    return enc, variables, images, learnable


def test_runs_learn_their_own_labels_and_vmapped_equals_single(tiny):
    enc, variables, images, learnable = tiny
    shuffled = np.random.default_rng(1).permutation(learnable)
    labels = np.stack([learnable, shuffled])
    cfg = RetrainConfig(epochs=6, batch_size=8, crop_size=16, learning_rate=0.05)
    clf = EncoderClassifier(enc, 2)
    key = jax.random.key(3)
    states, losses = retrain_runs(key, clf, variables, images, labels, cfg, progress=False)
    assert losses.shape == (6, 2)
    assert losses[-1, 0] < 0.5 * losses[0, 0]  # the learnable labelling is learned
    # The encoder changed, and its parameter tree is the U-Net encoder's (same names, same shapes).
    assert jax.tree.structure(states.params["encoder"]) == jax.tree.structure(
        jax.tree.map(lambda a: a[None], variables["params"]))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a[0] - b).max()),
                                         states.params["encoder"], variables["params"]))
    assert max(moved) > 0
    # Run 0 trained alone gives the same result as inside the vmapped pair.
    single, single_losses = retrain_runs(key, clf, variables, images, labels[:1], cfg, progress=False)
    np.testing.assert_allclose(single_losses[:, 0], losses[:, 0], rtol=1e-4, atol=1e-5)
    # Run 1 trained alone (as in a chunk of its own, run_ids=[1]) follows run 1 of the pair: a run's
    # head, order, crops and augmentation depend on its id only, so the sweep's chunk size does not
    # change results. (Run 1 fits shuffled labels, a chaotic trajectory: float differences between the
    # vmapped and the single program grow after a few epochs, so compare the first three.)
    _, second_losses = retrain_runs(key, clf, variables, images, labels[1:], cfg, progress=False, run_ids=[1])
    np.testing.assert_allclose(second_losses[:3, 0], losses[:3, 1], rtol=1e-3)
    _, as_run0 = retrain_runs(key, clf, variables, images, labels[1:], cfg, progress=False)
    assert abs(float(as_run0[0, 0]) - float(losses[0, 1])) > 1e-3  # the id, not the position, decides


def test_random_crops_shape_and_content():
    images = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
    crops = random_crops(jax.random.key(0), images, 4)
    assert crops.shape == (2, 4, 4, 1)
    for b in range(2):
        y0, x0 = np.argwhere(np.asarray(images[b, :, :, 0]) == float(crops[b, 0, 0, 0]))[0]
        np.testing.assert_array_equal(crops[b], images[b, y0 : y0 + 4, x0 : x0 + 4])


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 16))
    lab = np.repeat(np.arange(3), 30)
    x = centres[lab] + rng.normal(0, 1, (90, 16))
    y = tsne(x, jax.random.key(0), perplexity=10, steps=400)
    assert y.shape == (90, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95


def _rows():
    rows = []
    for method, k, maps in (("kmc", 5, (0.4, 0.2)), ("kmc", 5, (0.5, 0.3)), ("ng", 5, (0.45, 0.25)),
                            ("gng", 5, (0.3, 0.1)), ("gng", 5, (0.5, 0.1))):
        rows.append({"method": method, "k": k, "seed": len(rows), "units": 7 if method == "gng" else k,
                     "norm_entropy": 0.9, "quant_error": 1.5, "map_known": maps[0], "map_unknown": maps[1],
                     "map_all": (maps[0] + maps[1]) / 2})
    return rows


def test_table1_by_hand():
    table = table1_markdown(_rows(), {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23})
    lines = table.splitlines()
    assert "| baseline | 1 | - | 0.410 | 0.210 | 0.230 |" in lines
    # kMC(5): known 0.4, 0.5 -> mean 0.45, sample std 0.0707
    assert "| kMC(5) | 2 | 5 | 0.450 ± 0.071 | 0.250 ± 0.071 | 0.350 ± 0.071 |" in lines
    assert "| NG(5) | 1 | 5 | 0.450 ± 0.000 | 0.250 ± 0.000 | 0.350 ± 0.000 |" in lines
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ")][1:] == [
        "baseline", "kMC(5)", "NG(5)", "GNG(5)"]


def test_write_report_round_trip(tmp_path):
    rows = _rows()
    paths = write_report(tmp_path, rows, {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23})
    for p in paths:
        assert p.stat().st_size > 0
    back = read_results_csv(tmp_path / "results.csv")
    assert len(back) == len(rows)
    assert {(r["method"], r["seed"], r["map_known"]) for r in back} == {
        (r["method"], r["seed"], r["map_known"]) for r in rows}
