"""The sweep's retraining step at a config's shapes, with arguments for any number of runs, unrun: what the
plan compiles to size a chunk of runs, and what scripts/bench/bench_retrain.py and profile_retrain.py time."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.config import ExperimentConfig
from dng_jax.experiment.retrain import EncoderClassifier, init_runs, make_optimizer, make_retrain_step
from dng_jax.models import make_model, with_conv
from dng_jax.models.conv import resolve_retrain_conv
from dng_jax.planning.counts import retrain_steps_per_epoch

__all__ = ["RetrainParts", "retrain_parts"]


class RetrainParts(NamedTuple):
    step: Callable  # the jitted retraining step of a chunk of runs
    args: Callable[..., tuple]  # args(R, concrete=False): its arguments for R runs (abstract, or zeros)
    steps_per_epoch: int
    resident_bytes: int  # what stays on the device beside the step: the clustering images, the baseline


def _zeros_like(tree):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)


def retrain_parts(cfg: ExperimentConfig, n_classes: int) -> RetrainParts:
    """The retraining step of one configuration (``n_classes`` pseudo-labels) and its arguments for
    ``R`` runs (``args(R)``: abstract shapes to compile; ``args(R, concrete=True)``: zeros to time)."""
    rc, cc = cfg.retrain, cfg.cluster_data
    unet = with_conv(make_model(cfg.model), resolve_retrain_conv(rc.conv, cfg.model.conv))
    clf = EncoderClassifier(unet.encoder, n_classes)
    steps_per_epoch = retrain_steps_per_epoch(cfg)
    joint = rc.segmentation_weight > 0
    step = make_retrain_step(clf, rc, steps_per_epoch, cfg.augment, unet if joint else None,
                             cfg.train if joint else None)
    unet_vars = jax.eval_shape(lambda: unet.init(jax.random.key(0), jnp.zeros((1, cc.crop_size, cc.crop_size, 3)),
                                                 train=False))
    enc = {"params": unet_vars["params"]["encoder"], "batch_stats": unet_vars["batch_stats"]["encoder"]}
    dec = {"params": unet_vars["params"]["decoder"], "batch_stats": unet_vars["batch_stats"]["decoder"]}
    optimizer = make_optimizer(rc, steps_per_epoch)
    batch = min(rc.batch_size, cc.n_images)

    def args(R: int, concrete: bool = False):
        make = (lambda f: f()) if concrete else jax.eval_shape
        ev = _zeros_like(enc) if concrete else enc
        dv = (_zeros_like(dec) if concrete else dec) if joint else None
        states = make(lambda: init_runs(jax.random.key(0), clf, ev, R, optimizer, cc.crop_size,
                                        decoder_variables=dv))
        keys = make(lambda: jax.random.split(jax.random.key(1), R))
        images = jnp.zeros((R, batch, cc.crop_size, cc.crop_size, 3), jnp.uint8)
        labels = jnp.zeros((R, batch), jnp.int32)
        seg = (jnp.zeros((cfg.train.batch_size,) + (cfg.data.crop_size,) * 2 + (3,), jnp.uint8),
               jnp.zeros((cfg.train.batch_size,) + (cfg.data.crop_size,) * 2, jnp.uint8)) if joint else None
        if not concrete:
            images, labels = (jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (images, labels))
        return states, images, labels, keys, seg

    resident = cc.n_images * cc.crop_size ** 2 * 3 + sum(
        int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(unet_vars))
    return RetrainParts(step, args, steps_per_epoch, resident)

