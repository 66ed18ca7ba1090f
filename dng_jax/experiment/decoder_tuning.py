"""Decoder fine-tuning after retraining (``retrain.decoder_epochs``; not in the paper).

The paper retrains only the encoder and notes that "the decoder remained untrained to the adapted
features". Here each run's decoder learns again on CT1 with the segmentation training's own recipe
(LAMB, the ``train`` section's learning rate, loss, batch and crop), its encoder fixed, so encoder and
decoder are paired again. Runs train together: the step is ``vmap``-ed over a leading runs axis, every
run sees the same CT1 batch with its own augmentation key.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from dng_jax import distributed
from dng_jax.data.augment import AugmentConfig, augment_batch
from dng_jax.data.pipeline import CropBatches
from dng_jax.models.unet import UNet
from dng_jax.segmentation.steps import make_segmentation_loss, to_float_images
from dng_jax.segmentation.train_state import TrainConfig, make_optimizer
from dng_jax.sharding import on_mesh, runs_jit

__all__ = ["DecoderState", "make_decoder_step", "tune_decoders"]


class DecoderState(NamedTuple):
    params: Any  # the decoder's parameters, leading runs axis
    batch_stats: Any  # the decoder's BatchNorm statistics, leading runs axis
    opt_state: Any


@functools.lru_cache(maxsize=8)
def make_decoder_step(unet: UNet, seg_train: TrainConfig, steps_per_epoch: int,
                      augment: AugmentConfig = AugmentConfig(), encoder_batch_stats: bool = False,
                      mesh: Mesh | None = None):
    """``step(states, encoders, images_u8 [B,S,S,3], targets [B,S,S], keys [R]) -> (states, loss [R])``.

    ``encoders``: each run's ``{"params", "batch_stats"}`` of the encoder (leading runs axis), never
    changed. The encoder normalises with its running averages, or with ``encoder_batch_stats`` with the
    batch's own statistics (what AdaBN does at test time)."""
    tx = make_optimizer(seg_train, steps_per_epoch=steps_per_epoch)
    loss_fn = make_segmentation_loss(seg_train.class_weights, seg_train.dice_weight)

    def one(state: DecoderState, encoder, images, targets, key):
        x = to_float_images(images)
        if augment.enabled:
            x, targets = augment_batch(key, x, targets, augment)

        def loss(params):
            variables = {"params": {"encoder": encoder["params"], "decoder": params},
                         "batch_stats": {"encoder": encoder["batch_stats"], "decoder": state.batch_stats}}
            outputs, updates = unet.apply(variables, x, train=True, encoder_train=encoder_batch_stats,
                                          mutable=["batch_stats"])
            value, _ = loss_fn(outputs, targets)
            return value, updates["batch_stats"]["decoder"]

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return DecoderState(optax.apply_updates(state.params, updates), stats, opt_state), value

    return runs_jit(jax.vmap(one, in_axes=(0, 0, None, None, 0)), mesh, (True, True, False, False, True))


def tune_decoders(key: jax.Array, unet: UNet, encoders: dict, decoder: dict, batches: CropBatches, epochs: int,
                  seg_train: TrainConfig, augment: AugmentConfig = AugmentConfig(), *,
                  run_ids: Sequence[int], encoder_batch_stats: bool = False, stacked_decoder: bool = False,
                  progress: bool = False, desc: str = "tune decoders", mesh: Mesh | None = None
                  ) -> tuple[dict, np.ndarray]:
    """Train one decoder per run on ``epochs`` epochs of CT1 ``batches`` on its fixed encoder.

    ``encoders``: ``{"params", "batch_stats"}`` with a leading runs axis; ``decoder``: the start (the
    baseline's, shared; or one per run with ``stacked_decoder``). Run ``run_ids[r]`` augments with keys
    from ``fold_in(key, run_id)`` only. Returns the decoders ``{"params", "batch_stats"}`` (leading runs
    axis) and the per-epoch mean loss ``[epochs, R]``. ``mesh``: the runs are split over its devices
    (:func:`~dng_jax.sharding.runs_jit`; ``R`` a multiple of its size)."""
    n_runs = len(run_ids)
    seg_train = seg_train.replace(epochs=max(epochs, 1))  # a cosine schedule spans the tuning, not the training
    tx = make_optimizer(seg_train, steps_per_epoch=batches.steps_per_epoch)

    def init(dec):
        return DecoderState(dec["params"], dec["batch_stats"], tx.init(dec["params"]))

    if mesh is not None and stacked_decoder:  # the joint objective's decoders, from every process
        decoder = distributed.to_local(decoder)
    states = on_mesh(jax.vmap(init, in_axes=0 if stacked_decoder else None, axis_size=n_runs)(decoder), mesh)
    encoders = on_mesh(encoders, mesh)
    step = make_decoder_step(unet, seg_train, batches.steps_per_epoch, augment, encoder_batch_stats, mesh)
    run_keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.asarray(run_ids, jnp.int32))
    losses = np.zeros((epochs, n_runs), np.float32)
    bar = tqdm(total=epochs * batches.steps_per_epoch, desc=desc, unit="step", leave=False, disable=not progress)
    for epoch in range(epochs):
        total = jnp.zeros((n_runs,))
        for s, (images, targets) in enumerate(batches.epoch(epoch)):
            keys = jax.vmap(lambda k: jax.random.fold_in(k, epoch * batches.steps_per_epoch + s))(run_keys)
            states, loss = step(states, encoders, images, targets, on_mesh(keys, mesh))
            total = total + (loss if mesh is None else distributed.fetch(loss))
            bar.update(1)
        losses[epoch] = np.asarray(total) / batches.steps_per_epoch
        bar.set_postfix(loss=f"{losses[epoch].mean():.3f}")
    bar.close()
    return {"params": states.params, "batch_stats": states.batch_stats}, losses
