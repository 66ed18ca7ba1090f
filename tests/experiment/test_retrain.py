"""Encoder retraining on pseudo-labels (dng_jax/experiment/retrain.py): runs vmapped, each run's own labels
learned, a run's result independent of the chunk it is in; random crops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.experiment.retrain import EncoderClassifier, RetrainConfig, random_crops, retrain_runs
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


@pytest.mark.slow
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
    # Run 0 trained alone gives the same result as inside the vmapped pair, up to float differences
    # between the two programs (the vmapped one is a grouped convolution) that training amplifies: the
    # first three epochs agree closely, all six within 1% (the tests' XLA flags, tests/conftest.py).
    single, single_losses = retrain_runs(key, clf, variables, images, labels[:1], cfg, progress=False)
    np.testing.assert_allclose(single_losses[:3, 0], losses[:3, 0], rtol=1e-3)
    np.testing.assert_allclose(single_losses[:, 0], losses[:, 0], rtol=1e-2)
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
