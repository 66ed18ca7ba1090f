"""The baseline extensions of issue 11 against plain NumPy: weighted cross-entropy, soft Dice, the
cosine schedule; and that their defaults leave the paper's path alone (per-image input standardisation:
tests/models/test_input_norm.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.config import ConfigError, experiment_config, load_config
from dng_jax.segmentation.steps import make_segmentation_loss, segmentation_loss, soft_dice_loss
from dng_jax.segmentation.train_state import TrainConfig, learning_rate
from conftest import ROOT


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


@pytest.mark.parametrize("field,value", [("schedule", "linear"), ("class_weights", (1.0, 0.0, 1.0)),
                                         ("class_weights", (1.0, 2.0)), ("dice_weight", -1.0),
                                         ("warmup_epochs", -1.0)])
def test_bad_training_fields_are_named(field, value):
    c = load_config(ROOT / "configs" / "paper.py")
    c.train[field] = value
    with pytest.raises(ConfigError, match=field):
        experiment_config(c)
