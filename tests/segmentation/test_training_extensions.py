"""The baseline extensions of issue 11 against plain NumPy: weighted cross-entropy, soft Dice, the
cosine schedule, per-image input standardisation; and that their defaults leave the paper's path alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.config import ConfigError, apply_overrides, experiment_config, load_config, parse_overrides
from dng_jax.models import make_model, normalize_input
from dng_jax.segmentation.steps import make_segmentation_loss, segmentation_loss, soft_dice_loss
from dng_jax.segmentation.train_state import TrainConfig, learning_rate
from conftest import ROOT, TINY_MODEL


def _logits_targets(seed=0, shape=(2, 6, 5)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape + (3,)).astype(np.float32), rng.integers(0, 3, shape)


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_equal_weights_no_dice_is_the_paper_loss_itself():
    assert make_segmentation_loss((1.0, 1.0, 1.0), 0.0) is segmentation_loss
    assert make_segmentation_loss((2.0, 2.0, 2.0), 0.0) is segmentation_loss


def test_weighted_cross_entropy_matches_numpy():
    logits, targets = _logits_targets()
    w = np.array([1.0, 2.0, 5.0])
    ce = -np.take_along_axis(_np_log_softmax(logits.astype(np.float64)), targets[..., None], -1)[..., 0]
    expected = (w[targets] * ce).sum() / w[targets].sum()
    loss, metrics = make_segmentation_loss(tuple(w), 0.0)(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert metrics["loss"] == loss
    np.testing.assert_allclose(float(metrics["accuracy"]), (logits.argmax(-1) == targets).mean())


def test_soft_dice_matches_numpy_and_is_zero_for_a_perfect_prediction():
    logits, targets = _logits_targets(1)
    p = np.exp(_np_log_softmax(logits.astype(np.float64)))
    t = np.eye(3)[targets]
    dice = [(2 * (p[..., c] * t[..., c]).sum() + 1) / (p[..., c].sum() + t[..., c].sum() + 1) for c in (1, 2)]
    np.testing.assert_allclose(float(soft_dice_loss(jnp.asarray(logits), jnp.asarray(targets))),
                               1 - np.mean(dice), rtol=1e-5)
    perfect = jnp.asarray(np.eye(3)[targets] * 200.0 - 100.0, jnp.float32)
    assert float(soft_dice_loss(perfect, jnp.asarray(targets))) < 1e-6
    # the combined loss adds dice_weight x Dice to the (here unweighted) cross-entropy
    both, _ = make_segmentation_loss((1.0, 1.0, 1.0), 0.5)(jnp.asarray(logits), jnp.asarray(targets))
    ce, _ = segmentation_loss(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(float(both), float(ce) + 0.5 * (1 - np.mean(dice)), rtol=1e-5)


def test_cosine_schedule_warms_up_and_decays_to_zero():
    cfg = TrainConfig(epochs=10, lr=1e-3, schedule="cosine", warmup_epochs=1.0)
    sched = learning_rate(cfg, steps_per_epoch=20)  # 200 steps, 20 of warm-up
    assert float(sched(0)) == 0.0
    np.testing.assert_allclose(float(sched(10)), 0.5e-3, rtol=1e-5)
    np.testing.assert_allclose(float(sched(20)), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(float(sched(110)), 0.5e-3, rtol=1e-4)  # half-way through the decay
    assert float(sched(200)) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(TrainConfig(lr=3e-4), 20) == 3e-4  # the paper: a constant


def test_per_image_normalisation_standardises_each_image():
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(0, 0.1, (8, 8, 3)), rng.uniform(0.4, 1.0, (8, 8, 3))]).astype(np.float32)
    y = np.asarray(normalize_input(jnp.asarray(x), "per_image"))
    for i in range(2):
        assert abs(y[i].mean()) < 1e-5
        np.testing.assert_allclose(y[i].std(), x[i].std() / (x[i].std() + 1e-2), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(normalize_input(jnp.asarray(x), "none")), x - 0.5)
    # the dim image and 3x it give the same input (up to the epsilon)
    a = np.asarray(normalize_input(jnp.asarray(x[:1] * 3), "per_image"))
    b = np.asarray(normalize_input(jnp.asarray(x[:1]), "per_image"))
    assert np.abs(a - b).max() < 0.3


def test_input_norm_is_a_model_field_and_changes_only_the_input():
    m_none = make_model({**TINY_MODEL})
    m_img = make_model({**TINY_MODEL, "input_norm": "per_image"})
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 0.2, (1, 32, 32, 3)), jnp.float32)
    v = jax.jit(m_none.init)(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(jax.jit(m_img.init)(jax.random.key(0), x))
    assert not np.allclose(np.asarray(m_none.apply(v, x)), np.asarray(m_img.apply(v, x)))
    c = load_config(ROOT / "configs" / "paper.py")
    c.model.input_norm = "batch"
    with pytest.raises(ConfigError, match="input_norm"):
        experiment_config(c)


@pytest.mark.parametrize("field,value", [("schedule", "linear"), ("class_weights", (1.0, 0.0, 1.0)),
                                         ("class_weights", (1.0, 2.0)), ("dice_weight", -1.0),
                                         ("warmup_epochs", -1.0)])
def test_bad_training_fields_are_named(field, value):
    c = load_config(ROOT / "configs" / "paper.py")
    c.train[field] = value
    with pytest.raises(ConfigError, match=field):
        experiment_config(c)


def test_parse_and_apply_overrides():
    o = parse_overrides("train.schedule=cosine, train.class_weights=(1.0, 2.0, 4.0),train.lr=3e-4")
    assert o == {"train.schedule": "cosine", "train.class_weights": (1.0, 2.0, 4.0), "train.lr": 3e-4}
    c = apply_overrides(load_config(ROOT / "configs" / "paper.py"), o)
    cfg = experiment_config(c)
    assert cfg.train.schedule == "cosine" and cfg.train.class_weights == (1.0, 2.0, 4.0)
    with pytest.raises(ConfigError, match="no config field train.nope"):
        apply_overrides(c, {"train.nope": 1})
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_overrides("train.lr")
