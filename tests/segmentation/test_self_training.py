"""Self-training on the unlabeled images (train.pseudo_label_rounds): the confident-pixel targets, the
classical teacher's targets and the agreement rule against NumPy references, the weighted loss against a
NumPy reference, the mixed batches, the classical teacher on the teacher pool, and a teacher -> student run
that resumes exactly (its rounds added to a finished training)."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chex import assert_trees_all_equal

from conftest import ORBAX_LOOP_WARNING, synthetic_samples, tiny_config

from dng_jax.config import TRAINING_FIELDS, differing_fields, experiment_config
from dng_jax.data.partition import open_data
from dng_jax.data.pipeline import CropBatches, MixedBatches, segmentation_batches
from dng_jax.data.sources import open_source
from dng_jax.errors import ConfigError
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances
from dng_jax.segmentation.postprocess import probs_to_instances
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.self_training import (TeacherSettings, agreeing_ids, classical_targets, confident_share,
                                               instance_agreement, load_pseudo_labels, pseudo_targets, teach)
from dng_jax.segmentation.steps import IGNORE, make_segmentation_loss, make_weighted_loss
from dng_jax.segmentation.trainer import SelfTraining, _adds_self_training, train_and_evaluate


def test_pseudo_targets_keep_only_confident_pixels():
    probs = np.array([[[0.95, 0.03, 0.02], [0.4, 0.5, 0.1]],
                      [[0.05, 0.05, 0.90], [0.0, 1.0, 0.0]]], np.float32)
    t = pseudo_targets(probs, 0.9)
    assert t.dtype == np.uint8 and t.tolist() == [[0, IGNORE], [2, 1]]
    assert pseudo_targets(probs, 0.3).tolist() == [[0, 1], [2, 1]]


def test_classical_targets_are_the_masks_targets_of_the_classical_instances():
    """Two bright 6 x 6 squares on a dark 16 x 16 image: background 0, a 1-px border ring 2, a 4 x 4 cell
    interior 1; the same on a bright background (inverted); no border where nothing touches."""
    image = np.full((16, 16, 3), 10, np.uint8)
    image[2:8, 2:8] = image[9:15, 9:15] = 200
    ref = np.zeros((16, 16), np.uint8)
    for y, x in ((2, 2), (9, 9)):
        ref[y:y + 6, x:x + 6] = 2
        ref[y + 1:y + 5, x + 1:x + 5] = 1
    cfg = ClassicalConfig(min_size=0)
    np.testing.assert_array_equal(classical_targets(image, cfg, border_width=1), ref)
    np.testing.assert_array_equal(classical_targets(255 - image, cfg, border_width=1), ref)
    np.testing.assert_array_equal(classical_targets(image, cfg, border_width=1, touching_only=True), np.minimum(ref, 1))


def _reference_agreement(a, b):
    """TP / (TP + FP + FN) at IoU > 0.5, one object pair at a time."""
    ia, ib = [i for i in np.unique(a) if i], [j for j in np.unique(b) if j]
    if not ia and not ib:
        return 1.0
    tp = sum(np.sum((a == i) & (b == j)) / np.sum((a == i) | (b == j)) > 0.5 for i in ia for j in ib)
    return tp / (len(ia) + len(ib) - tp)


def test_instance_agreement_matches_numpy_and_the_rule_keeps_what_reaches_the_threshold():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.zeros((12, 12), np.int32)
        for k in range(1, rng.integers(1, 5)):
            y, x, h, w = rng.integers(0, 9, 4)
            a[y:y + 2 + h % 4, x:x + 2 + w % 4] = k
        b = np.roll(a, rng.integers(-2, 3, 2), axis=(0, 1)) * rng.integers(1, 3)  # moved, other label values
        b[rng.integers(0, 10):, :rng.integers(1, 4)] = 7  # and one object a does not have
        got = instance_agreement(a, b)
        assert got == pytest.approx(_reference_agreement(a, b)) and got == pytest.approx(instance_agreement(b, a))
    empty = np.zeros((4, 4), np.int32)
    assert instance_agreement(empty, empty) == 1.0 and instance_agreement(empty, empty + 1) == 0.0
    assert agreeing_ids({"c": 0.5, "a": 0.7, "b": 0.49}, 0.5) == ["a", "c"]


def test_teachers_on_tiny_images(model_and_state):
    """The classical teacher labels every image; the agreement teacher keeps the classical targets of the
    images whose agreement with the network's TTA instances reaches the threshold, and reports every one."""
    c = experiment_config(tiny_config())
    model, state = model_and_state
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = {s.id: s.image[:32, :32] for s in synthetic_samples(2)}
    images["flat"] = np.full((32, 32, 3), 20, np.uint8)  # no object on either side: agreement 1
    settings = TeacherSettings.from_config(c)._replace(classical=ClassicalConfig(min_size=0, min_distance=4))
    classical = teach(settings._replace(teacher="classical"), None, model, images)
    assert classical.agreement == {} and sorted(classical.targets) == sorted(images)
    for sid, image in images.items():
        np.testing.assert_array_equal(classical.targets[sid], classical_targets(image, settings.classical,
                                                                                border_width=c.data.border_width))
    agreed = teach(settings._replace(teacher="agreement", agreement=0.0), variables, model, images)
    for sid, image in images.items():
        net = probs_to_instances(predict_probs(variables, model, image, tile_size=512, tta=True), c.postprocess)
        assert agreed.agreement[sid] == instance_agreement(classical_instances(image, settings.classical), net)
        np.testing.assert_array_equal(agreed.targets[sid], classical.targets[sid])
    kept = teach(settings._replace(teacher="agreement", agreement=0.5), variables, model, images)
    assert sorted(kept.targets) == agreeing_ids(agreed.agreement, 0.5) and kept.agreement == agreed.agreement
    assert 0 < len(kept.targets) < len(images)  # the untrained network finds none of the squares: both rules used


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
    beside pseudo-labeled crops of the 12 other images. A training without rounds, given them by resuming its
    work dir, killed inside the student's round and resumed, ends where the uninterrupted run does."""
    c = _self_training_config()
    assert experiment_config(c).train.total_epochs == 2
    full = train_and_evaluate(c, tmp_path / "a", progress=False)
    assert int(full.step) == 4
    src = open_source(None)
    images = {i: src.load(i, with_labels=False).image for i in src.ids()}
    samples = load_pseudo_labels(tmp_path / "a" / "pseudo_labels" / "round1.npz", images)
    assert len(samples) == 12 and 0 < confident_share(samples) <= 1
    plain = c.copy_and_resolve_references()
    plain.train.pseudo_label_rounds = 0
    assert int(train_and_evaluate(plain, tmp_path / "b", progress=False).step) == 2
    c.train.max_steps = 3
    part = train_and_evaluate(c, tmp_path / "b", progress=False)
    assert int(part.step) == 3 and (tmp_path / "b" / "pseudo_labels" / "round1.npz").exists()
    c.train.max_steps = None
    resumed = train_and_evaluate(c, tmp_path / "b", progress=False)
    assert_trees_all_equal(jax.device_get(full.params), jax.device_get(resumed.params))
    with np.load(tmp_path / "a" / "pseudo_labels" / "round1.npz") as a, \
            np.load(tmp_path / "b" / "pseudo_labels" / "round1.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_rounds_are_added_to_a_finished_training_only_with_a_constant_lr():
    """Resuming a training with rounds it had none of is exactly its teacher phase under a constant lr only
    (a cosine schedule spans the rounds); anything else changed is still refused."""
    with_rounds = experiment_config(_self_training_config())
    without = dataclasses.replace(with_rounds, train=dataclasses.replace(with_rounds.train, pseudo_label_rounds=0))
    diffs = differing_fields(without, with_rounds, TRAINING_FIELDS)
    assert diffs == ["train.pseudo_label_rounds"]
    assert _adds_self_training(without, with_rounds, diffs)
    assert not _adds_self_training(with_rounds, without, diffs)  # taking rounds away
    cosine = dataclasses.replace(with_rounds, train=dataclasses.replace(with_rounds.train, schedule="cosine"))
    assert not _adds_self_training(without, cosine, diffs)
    assert not _adds_self_training(without, with_rounds, diffs + ["train.lr"])


def test_bad_self_training_values_are_config_errors():
    c = _self_training_config()
    c.train.pseudo_label_confidence = 0.0
    with pytest.raises(ValueError, match="pseudo_label_confidence"):
        experiment_config(c)
    for field, bad in (("pseudo_label_teacher", "otsu"), ("pseudo_label_images", "test"),
                       ("pseudo_label_agreement", 1.5)):
        c = _self_training_config()
        c.train[field] = bad
        with pytest.raises(ConfigError, match=f"train.{field}"):
            experiment_config(c)


def test_a_classical_teacher_on_test_images_must_be_asked_for_by_name():
    c = _self_training_config()
    c.train.pseudo_label_teacher = "classical"  # on the clustering images, test images included
    with pytest.raises(ConfigError, match="train.pseudo_label_images.*includes the test images.*'transductive'"):
        experiment_config(c)
    for images in ("teacher_pool", "transductive"):
        c.train.pseudo_label_images = images
        experiment_config(c)
    c.train.pseudo_label_images, c.data.cluster_from = "clustering", "validation"  # inductive
    experiment_config(c)


def test_classical_teacher_labels_the_teacher_pool(tmp_path):
    """Mini-set, wide protocol: round 1's targets are the classical targets of the teacher pool's images (one
    validation image of each other type), none of them a test or choosing image; no network is run."""
    c = _self_training_config()
    c.train.pseudo_label_teacher, c.train.pseudo_label_images = "classical", "teacher_pool"
    cfg = experiment_config(c)
    source, _, splits = open_data(cfg.data, progress=False)
    rounds = SelfTraining(cfg, tmp_path, 2, source, splits, progress=False)
    images, targets = next(rounds.batches(1, types.SimpleNamespace(params={}, batch_stats={})).epoch(0))
    assert images.shape == (2, 32, 32, 3) and targets.shape == (2, 32, 32) and targets.max() <= 2
    with np.load(tmp_path / "pseudo_labels" / "round1.npz") as f:
        assert f.files == splits.teacher_pool and len(f.files) == 4
        choosing = {i for ids in splits.choosing.values() for i in ids}
        assert not set(f.files) & (set(splits.test_all) | choosing)
        for sid in f.files:
            np.testing.assert_array_equal(f[sid], classical_targets(source.load(sid).image, cfg.classical,
                                                                    border_width=cfg.data.border_width))
    c.data.unknown_val_fraction = 0.0  # no validation images of the other types: no teacher pool
    cfg = experiment_config(c)
    source, _, splits = open_data(cfg.data, progress=False)
    with pytest.raises(ConfigError, match="train.pseudo_label_images: the teacher pool"):
        SelfTraining(cfg, tmp_path, 2, source, splits, progress=False)
