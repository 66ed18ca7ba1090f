"""Pure train and eval steps (jitted by the caller, see :mod:`dng_jax.sharding`).

- :func:`segmentation_loss` -- pixel-wise softmax cross-entropy and pixel accuracy (paper).
- :func:`make_segmentation_loss` -- the same with class weights and a soft Dice term (extensions).
- :func:`make_train_step` -- ``train_step(state, batch, key) -> (state, metrics)``; loss function,
  trainable subtrees and augmentation are arguments.
- :func:`make_eval_step` -- ``eval_step(state, batch) -> metrics`` (BatchNorm in eval mode).

Batches are ``(images uint8 [B,H,W,3], targets uint8/int [B,H,W])``; images are scaled to [0, 1] in the
step. The augmentation key of step ``s`` is ``fold_in(key, s)`` with ``s = state.step``, so a resumed run
draws exactly the keys an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from dng_jax.data.augment import AugmentConfig, augment_batch
from dng_jax.segmentation.train_state import TrainState

__all__ = ["IGNORE", "segmentation_loss", "make_segmentation_loss", "make_weighted_loss", "soft_dice_loss",
           "to_float_images", "make_augment_fn", "make_train_step", "make_eval_step", "train_step", "eval_step"]

#: A target pixel that no loss counts (a pseudo-label the teacher was not confident of).
IGNORE = 255

Batch = tuple[Any, Any]
LossFn = Callable[[Any, Any], tuple[jax.Array, dict[str, jax.Array]]]


def segmentation_loss(logits, targets) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean pixel-wise softmax cross-entropy (float32) and pixel accuracy."""
    logits = logits.astype(jnp.float32)
    targets = targets.astype(jnp.int32)
    # one-hot form: no gather / scatter in the backward pass (faster on CPU and TPU)
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
    loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    accuracy = (jnp.argmax(logits, -1) == targets).mean()
    return loss, {"loss": loss, "accuracy": accuracy}


def soft_dice_loss(logits, targets, classes: Sequence[int] = (1, 2), eps: float = 1.0, mask=None) -> jax.Array:
    """Mean over ``classes`` of ``1 - (2 sum p t + eps) / (sum p + sum t + eps)``, sums over the whole
    batch (so a crop without nuclei does not count as a perfect or a failed one on its own); ``mask``
    (``[B,H,W]`` in [0, 1]) weighs the pixels (0: not counted)."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(targets.astype(jnp.int32), logits.shape[-1], dtype=jnp.float32)
    idx = jnp.asarray(classes)
    p, t = probs[..., idx], onehot[..., idx]
    if mask is not None:
        p, t = p * mask[..., None], t * mask[..., None]
    axes = tuple(range(p.ndim - 1))
    dice = (2.0 * jnp.sum(p * t, axes) + eps) / (jnp.sum(p, axes) + jnp.sum(t, axes) + eps)
    return 1.0 - jnp.mean(dice)


def make_segmentation_loss(class_weights: Sequence[float] = (1.0, 1.0, 1.0), dice_weight: float = 0.0) -> LossFn:
    """The loss of a train step: cross-entropy with per-class weights (``sum w_t CE / sum w_t`` over the
    pixels) plus ``dice_weight`` x :func:`soft_dice_loss` on the cell and border classes. With equal
    weights and no Dice term it is :func:`segmentation_loss` itself (the paper's loss, bit for bit)."""
    weights = tuple(float(w) for w in class_weights)
    if len(set(weights)) == 1 and dice_weight == 0:
        return segmentation_loss
    w = jnp.asarray(weights, jnp.float32)

    def loss_fn(logits, targets):
        logits = logits.astype(jnp.float32)
        targets = targets.astype(jnp.int32)
        onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
        ce = -jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1)
        pw = jnp.sum(onehot * w, axis=-1)
        loss = jnp.sum(pw * ce) / jnp.sum(pw)
        if dice_weight:
            loss = loss + dice_weight * soft_dice_loss(logits, targets)
        accuracy = (jnp.argmax(logits, -1) == targets).mean()
        return loss, {"loss": loss, "accuracy": accuracy}

    return loss_fn


def make_weighted_loss(class_weights: Sequence[float] = (1.0, 1.0, 1.0), dice_weight: float = 0.0) -> Callable:
    """``loss_fn(logits, targets, sample_weights)`` for batches mixing labeled crops (weight 1) and
    pseudo-labeled ones (``train.pseudo_label_weight``): the cross-entropy of :func:`make_segmentation_loss`
    with each pixel weighted by its class weight and its sample's weight, pixels whose target is
    :data:`IGNORE` left out; the Dice term over the same pixels. On a batch of weight-1 samples without
    ignored pixels it equals :func:`make_segmentation_loss`'s loss."""
    w = jnp.asarray(tuple(float(x) for x in class_weights), jnp.float32)

    def loss_fn(logits, targets, sample_weights):
        logits = logits.astype(jnp.float32)
        valid = targets != IGNORE
        t = jnp.where(valid, targets, 0).astype(jnp.int32)
        onehot = jax.nn.one_hot(t, logits.shape[-1], dtype=jnp.float32)
        ce = -jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1)
        pixel_w = jnp.sum(onehot * w, axis=-1) * valid * sample_weights.astype(jnp.float32)[:, None, None]
        loss = jnp.sum(pixel_w * ce) / jnp.maximum(jnp.sum(pixel_w), 1e-12)
        if dice_weight:
            loss = loss + dice_weight * soft_dice_loss(logits, t, mask=valid.astype(jnp.float32))
        accuracy = jnp.sum((jnp.argmax(logits, -1) == t) * valid) / jnp.maximum(jnp.sum(valid), 1)
        return loss, {"loss": loss, "accuracy": accuracy}

    return loss_fn


def to_float_images(images):
    """uint8 [0, 255] -> float32 [0, 1]; float input is taken to be in [0, 1] already."""
    if jnp.issubdtype(images.dtype, jnp.integer):
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def make_augment_fn(cfg: AugmentConfig = AugmentConfig()) -> Callable | None:
    """The on-device augmentation of a train step, ``None`` when ``cfg.enabled`` is False."""
    if not cfg.enabled:
        return None
    return lambda key, images, targets: augment_batch(key, images, targets, cfg)


def make_train_step(loss_fn: LossFn = segmentation_loss, *, trainable: Sequence[str] | None = None,
                    augment_fn: Callable | None = None, apply_kwargs: dict | None = None):
    """Returns a pure ``train_step(state, batch, key) -> (state, metrics)`` to be jitted by the caller.

    - ``loss_fn(outputs, targets, *extra) -> (loss, metrics)``: ``outputs`` is whatever ``state.apply_fn``
      returns with ``train=True``; ``extra`` are the batch's entries after the targets (the sample weights
      of a mixed batch, :func:`make_weighted_loss`).
    - ``trainable``: top-level parameter subtrees to differentiate (``None``: all). Frozen subtrees get
      no gradient (zeros are passed to the optimizer: use ``make_optimizer`` with the same
      ``trainable`` so they get exactly zero updates) and keep their BatchNorm statistics.
    - ``augment_fn(key, images float [0,1], targets) -> (images, targets)``, run on device with key
      ``fold_in(key, state.step)``.
    """
    apply_kwargs = dict(apply_kwargs or {})

    def step(state: TrainState, batch: Batch, key):
        images, targets, *extra = batch
        images = to_float_images(images)
        step_key = jax.random.fold_in(key, state.step)
        if augment_fn is not None:
            images, targets = augment_fn(step_key, images, targets)

        names = tuple(state.params) if trainable is None else tuple(trainable)
        train_params = {k: state.params[k] for k in names}
        frozen_params = {k: v for k, v in state.params.items() if k not in names}

        def compute_loss(tp):
            params = {**frozen_params, **tp}
            params = {k: params[k] for k in state.params}  # keep the original key order
            outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                              train=True, mutable=["batch_stats"], **apply_kwargs)
            loss, metrics = loss_fn(outputs, targets, *extra)
            return loss, (metrics, updates["batch_stats"])

        grads, (metrics, new_stats) = jax.grad(compute_loss, has_aux=True)(train_params)
        metrics = dict(metrics)
        metrics["grad_norm"] = optax.tree.norm(grads)
        full_grads = {k: grads[k] if k in grads else jax.tree_util.tree_map(jnp.zeros_like, v)
                      for k, v in state.params.items()}
        if trainable is not None:
            new_stats = {k: (new_stats[k] if k in names else v) for k, v in state.batch_stats.items()}
        state = state.apply_gradients(grads=full_grads, batch_stats=new_stats)
        return state, metrics

    return step


def make_eval_step(loss_fn: LossFn = segmentation_loss, apply_kwargs: dict | None = None):
    """Returns ``eval_step(state, batch) -> metrics`` (no augmentation, BatchNorm running averages)."""
    apply_kwargs = dict(apply_kwargs or {})

    def step(state: TrainState, batch: Batch):
        images, targets = batch
        outputs = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                                 to_float_images(images), train=False, **apply_kwargs)
        _, metrics = loss_fn(outputs, targets)
        return metrics

    return step


# Plain segmentation instances (no augmentation; the trainer builds its own with augmentation).
train_step = make_train_step(segmentation_loss)
eval_step = make_eval_step(segmentation_loss)
