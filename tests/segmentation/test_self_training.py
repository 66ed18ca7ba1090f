"""Self-training on the unlabeled images (train.pseudo_label_rounds): the confident-pixel targets, the
weighted loss against a NumPy reference, the mixed batches, and a teacher -> student run that resumes exactly."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chex import assert_trees_all_equal

from conftest import ORBAX_LOOP_WARNING, synthetic_samples, tiny_config

from dng_jax.config import experiment_config
from dng_jax.data.pipeline import CropBatches, MixedBatches, segmentation_batches
from dng_jax.data.sources import open_source
from dng_jax.segmentation.self_training import confident_share, load_pseudo_labels, pseudo_targets
from dng_jax.segmentation.steps import IGNORE, make_segmentation_loss, make_weighted_loss
from dng_jax.segmentation.trainer import train_and_evaluate


def test_pseudo_targets_keep_only_confident_pixels():
    probs = np.array([[[0.95, 0.03, 0.02], [0.4, 0.5, 0.1]],
                      [[0.05, 0.05, 0.90], [0.0, 1.0, 0.0]]], np.float32)
    t = pseudo_targets(probs, 0.9)
    assert t.dtype == np.uint8 and t.tolist() == [[0, IGNORE], [2, 1]]
    assert pseudo_targets(probs, 0.3).tolist() == [[0, 1], [2, 1]]


def _reference_loss(logits, targets, weights, class_weights):
    """The weighted cross-entropy in NumPy: sum over counted pixels of w_class w_sample CE / sum of weights."""
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    num = den = 0.0
    for b, h, w in np.ndindex(targets.shape):
        t = targets[b, h, w]
        if t == IGNORE:
            continue
        pw = class_weights[t] * weights[b]
        num += pw * -logp[b, h, w, t]
        den += pw
    return num / den


def test_weighted_loss_matches_numpy_and_the_plain_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5, 6, 3)).astype(np.float32)
    targets = rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)
    ones = np.ones(4, np.float32)
    cw = (1.0, 2.0, 3.0)
    plain, _ = make_segmentation_loss(cw)(jnp.asarray(logits), jnp.asarray(targets))
    weighted, _ = make_weighted_loss(cw)(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(ones))
    np.testing.assert_allclose(weighted, plain, rtol=1e-6)  # labeled crops only: the loss of today
    targets[2:, :2] = IGNORE  # the pseudo-labeled half, partly not confident
    w = np.array([1, 1, 0.5, 0.5], np.float32)
    got, metrics = make_weighted_loss(cw)(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(w))
    np.testing.assert_allclose(got, _reference_loss(logits, targets, w, cw), rtol=1e-5)
    # ignored pixels get no gradient, and a weight of 0 drops a sample
    grad = jax.grad(lambda x: make_weighted_loss(cw)(x, jnp.asarray(targets), jnp.asarray(w))[0])(jnp.asarray(logits))
    assert np.all(np.asarray(grad)[2:, :2] == 0) and np.any(np.asarray(grad)[2:, 2:] != 0)
    zero, _ = make_weighted_loss(cw)(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray([1, 1, 0, 0], jnp.float32))
    half, _ = make_segmentation_loss(cw)(jnp.asarray(logits[:2]), jnp.asarray(targets[:2]))
    np.testing.assert_allclose(zero, half, rtol=1e-6)
    assert 0 <= float(metrics["accuracy"]) <= 1


def test_mixed_batches_put_weighted_pseudo_crops_beside_the_labeled_ones():
    labeled = segmentation_batches(synthetic_samples(6), 2, 16, 2, seed=0)
    pseudo = [dataclasses.replace(s, labels=np.full(s.labels.shape, IGNORE, np.uint8)) if i == 0 else s
              for i, s in enumerate(synthetic_samples(3, seed=5))]
    mixed = MixedBatches(labeled, CropBatches(pseudo, 2, 16, seed=1), 0.25)
    assert mixed.steps_per_epoch == 3
    batches = list(mixed.epoch(0)) + list(mixed.epoch(1))
    for images, targets, weights in batches:
        assert images.shape == (4, 16, 16, 3) and targets.shape == (4, 16, 16) and targets.dtype == np.uint8
        assert weights.tolist() == [1, 1, 0.25, 0.25]
    first = next(mixed.epoch(1, start_step=2))  # resuming mid-epoch draws what the full epoch drew
    for a, b in zip(first, batches[5]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(batches[0][:2], next(labeled.epoch(0))):
        np.testing.assert_array_equal(a[:2], b)


def _self_training_config():
    c = tiny_config()
    c.data.protocol = "wide"
    c.train.epochs = 1
    c.train.pseudo_label_rounds = 1
    c.train.pseudo_label_epochs = 1
    c.train.pseudo_label_weight = 0.5
    c.train.pseudo_label_confidence = 0.34  # the 2-step teacher is barely sure of anything
    return c


@pytest.mark.slow
@ORBAX_LOOP_WARNING
def test_teacher_then_student_resumes_exactly(tmp_path):
    """Mini-set: 4 CT1 training images, batch 2 -> 2 steps of the teacher, then 2 of the student on CT1 crops
    beside pseudo-labeled crops of the 12 other images; killed inside the student's round and resumed, it
    ends where the uninterrupted run does."""
    c = _self_training_config()
    assert experiment_config(c).train.total_epochs == 2
    full = train_and_evaluate(c, tmp_path / "a", progress=False)
    assert int(full.step) == 4
    src = open_source(None)
    images = {i: src.load(i, with_labels=False).image for i in src.ids()}
    samples = load_pseudo_labels(tmp_path / "a" / "pseudo_labels" / "round1.npz", images)
    assert len(samples) == 12 and 0 < confident_share(samples) <= 1
    c.train.max_steps = 3
    part = train_and_evaluate(c, tmp_path / "b", progress=False)
    assert int(part.step) == 3 and (tmp_path / "b" / "pseudo_labels" / "round1.npz").exists()
    c.train.max_steps = None
    resumed = train_and_evaluate(c, tmp_path / "b", progress=False)
    assert_trees_all_equal(jax.device_get(full.params), jax.device_get(resumed.params))
    with np.load(tmp_path / "a" / "pseudo_labels" / "round1.npz") as a, \
            np.load(tmp_path / "b" / "pseudo_labels" / "round1.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_bad_self_training_values_are_config_errors():
    c = _self_training_config()
    c.train.pseudo_label_confidence = 0.0
    with pytest.raises(ValueError, match="pseudo_label_confidence"):
        experiment_config(c)
