"""Encoder retraining on pseudo-labels (paper II-C), many runs at once.

The network is the baseline's ResNet encoder + global average pooling + a dense layer to ``k`` classes.
It learns to predict each clustering image's cluster index from a random 128x128 crop of it, with the
training augmentation; SGD (lr 0.01, momentum 0.5), the learning rate x0.1 every 10 epochs, 20 epochs.
Only the encoder (and the new head) change; the decoder stays the baseline's.

Beyond the paper (each 0 / "train" / 1 reproduces it): ``batch_norm="frozen"`` runs the encoder's
BatchNorm on the baseline's statistics while it learns (they never move to the clustering images);
``segmentation_weight > 0`` adds the segmentation loss of the whole U-Net on CT1 crops to every step
(the decoder then trains too); ``decoder_epochs`` and ``rounds`` are driven by
:mod:`dng_jax.experiment.adaptation`.

All seeds of one configuration train together: the state carries a leading *runs* axis and the step is
``vmap``-ed over it (each run has its own labels, visiting order and augmentation keys); with a ``mesh``
(:func:`dng_jax.sharding.runs_mesh`: several devices, in one process or many) the runs axis is split over
its devices and each device steps its own runs (``shard_map``, nothing communicated), so a topology with
the same devices runs the same programs. ``RetrainConfig.conv`` computes the convolutions as batched
matmuls instead of grouped convolutions (:mod:`dng_jax.models.conv`); ``runs_layout="map"`` steps the runs
one after another (a control). The paper does not give the batch size of this step: it is a config field.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from dng_jax import distributed
from dng_jax.data.augment import AugmentConfig, augment_batch
from dng_jax.metric_writers import MetricWriter
from dng_jax.data.pipeline import CropBatches
from dng_jax.models import ResNetEncoder
from dng_jax.models.conv import CONV_IMPLS
from dng_jax.models.unet import UNet
from dng_jax.progress import step_bar, step_done
from dng_jax.segmentation.steps import make_segmentation_loss, to_float_images
from dng_jax.segmentation.train_state import TrainConfig
from dng_jax.sharding import on_mesh, runs_jit
from dng_jax.typed_config import TypedConfig, param, require

__all__ = [
    "BATCH_NORM_MODES",
    "RUNS_LAYOUTS",
    "RetrainConfig",
    "EncoderClassifier",
    "RetrainState",
    "make_optimizer",
    "init_runs",
    "make_retrain_step",
    "retrain_runs",
    "random_crops",
]


BATCH_NORM_MODES = ("train", "frozen", "adabn")
RUNS_LAYOUTS = ("vmap", "map")


class RetrainConfig(TypedConfig):
    """The ``retrain`` section: the encoder + a dense head learn the pseudo-labels with SGD (paper II-C)."""

    epochs: int = param(20, "epochs over the clustering images")
    batch_size: int = param(32, "images per step (not given in the paper)")
    crop_size: int = param(128, "random crop of each clustering image (px)")
    learning_rate: float = param(0.01, "SGD learning rate")
    momentum: float = param(0.5, "SGD momentum")
    decay_every_epochs: int = param(10, "the learning rate is multiplied by decay_factor this often")
    decay_factor: float = param(0.1, "learning-rate decay")
    batch_norm: str = param("train", "encoder BatchNorm statistics: 'train' (paper: they follow the clustering "
                            "images), 'frozen' (the baseline's, in training and at test time), 'adabn' "
                            "('train', and at test time each image's own)")
    segmentation_weight: float = param(0.0, "joint objective: + this x the segmentation loss of the whole U-Net on "
                                       "CT1 crops in every step (paper: 0)")
    decoder_epochs: int = param(0, "then train the decoder (encoder fixed) this many epochs on CT1 with LAMB and "
                                "the train section's loss, batch and crop (paper: 0)")
    rounds: int = param(1, "cluster + retrain rounds; each later round clusters each run's own re-extracted "
                        "latent (DeepCluster; paper: 1)")
    conv: str = param("auto", "how the runs' convolutions are computed (dng_jax.models.conv): 'auto' = the fastest "
                      "measured on this backend (matmuls, 'gemm', on a CPU; model.conv elsewhere), or one of "
                      "'xla', 'gemm_1x1', 'gemm', 'im2col'")
    runs_layout: str = param("vmap", "how a chunk's runs are stepped: 'vmap' (together, batched) or 'map' "
                             "(lax.map, one after another in one compiled step; a control)")

    def check(self) -> None:
        require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        for f in ("batch_size", "crop_size", "decay_every_epochs"):
            require(getattr(self, f) >= 1, f, f"must be >= 1, got {getattr(self, f)}")
        require(self.learning_rate >= 0, "learning_rate", f"must be >= 0, got {self.learning_rate}")
        require(0 <= self.momentum < 1, "momentum", f"must lie in [0, 1), got {self.momentum}")
        require(self.decay_factor > 0, "decay_factor", f"must be > 0, got {self.decay_factor}")
        require(self.batch_norm in BATCH_NORM_MODES, "batch_norm",
                f"must be one of {BATCH_NORM_MODES}, got {self.batch_norm!r}")
        require(self.segmentation_weight >= 0, "segmentation_weight", f"must be >= 0, got {self.segmentation_weight}")
        require(self.decoder_epochs >= 0, "decoder_epochs", f"must be >= 0, got {self.decoder_epochs}")
        require(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        require(self.conv in ("auto",) + CONV_IMPLS, "conv", f"must be 'auto' or one of {CONV_IMPLS}, got {self.conv!r}")
        require(self.runs_layout in RUNS_LAYOUTS, "runs_layout",
                f"must be one of {RUNS_LAYOUTS}, got {self.runs_layout!r}")


class EncoderClassifier(nn.Module):
    """``encoder`` (same module, same parameter names as the U-Net's) -> GAP -> Dense(k)."""

    encoder: ResNetEncoder
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        latent, _ = self.encoder(x, train=train)
        pooled = jnp.mean(latent.astype(jnp.float32), axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(pooled)


class RetrainState(NamedTuple):
    params: Any  # {'encoder': ..., 'head': ...} (+ 'decoder' with the joint objective), leading runs axis
    batch_stats: Any  # {'encoder': ...} (+ 'decoder'), leading runs axis
    opt_state: Any
    step: jax.Array  # [runs] int32


def make_optimizer(cfg: RetrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    schedule = optax.exponential_decay(cfg.learning_rate, transition_steps=cfg.decay_every_epochs * steps_per_epoch,
                                       decay_rate=cfg.decay_factor, staircase=True)
    return optax.sgd(schedule, momentum=cfg.momentum)


def init_runs(key: jax.Array, model: EncoderClassifier, encoder_variables: dict, n_runs: int,
              optimizer: optax.GradientTransformation, image_size: int,
              run_ids: jax.Array | None = None, *, decoder_variables: dict | None = None,
              stacked: bool = False) -> RetrainState:
    """Every run starts from the baseline encoder and its own freshly initialised head (from
    ``fold_in(key, run_id)``; ``run_ids`` default ``0..n_runs-1``). ``decoder_variables`` (joint
    objective) join the state; with ``stacked`` both carry a leading runs axis (each run goes on from its
    own networks: a later round)."""
    def one(k, enc, dec):
        shapes = jax.eval_shape(lambda: model.init(k, jnp.zeros((1, image_size, image_size, 3)), train=False))
        head_in = shapes["params"]["head"]["kernel"].shape[0]
        head = nn.Dense(model.num_classes).init(k, jnp.zeros((1, head_in)))["params"]
        params = {"encoder": enc["params"], "head": head}
        stats = {"encoder": enc["batch_stats"]}
        if dec is not None:
            params["decoder"], stats["decoder"] = dec["params"], dec["batch_stats"]
        return RetrainState(params, stats, optimizer.init(params), jnp.zeros((), jnp.int32))

    ids = jnp.arange(n_runs) if run_ids is None else jnp.asarray(run_ids)
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(ids)
    axis = 0 if stacked else None
    return jax.vmap(one, in_axes=(0, axis, axis))(keys, encoder_variables, decoder_variables)


def random_crops(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
    """One random ``size`` x ``size`` window per image of ``images [B, H, W, C]``."""
    b, h, w, _ = images.shape
    ky, kx = jax.random.split(key)
    ys = jax.random.randint(ky, (b,), 0, h - size + 1)
    xs = jax.random.randint(kx, (b,), 0, w - size + 1)
    return jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(im, (y, x, 0), (size, size, im.shape[-1])))(images, ys, xs)


@functools.lru_cache(maxsize=32)
def make_retrain_step(model: EncoderClassifier, cfg: RetrainConfig, steps_per_epoch: int,
                      augment: AugmentConfig = AugmentConfig(), unet: UNet | None = None,
                      seg_train: TrainConfig | None = None, mesh: Mesh | None = None):
    """``step(states, images_u8 [R,B,H,W,3], labels [R,B], keys [R], seg_batch) -> (states, loss [R])``,
    vmapped over runs; ``loss`` is the pseudo-label cross-entropy.

    With ``cfg.segmentation_weight > 0`` (``unet`` and ``seg_train`` given) ``seg_batch = (images u8
    [B,S,S,3], targets [B,S,S])`` is one CT1 batch shared by every run (each augments it with its own key)
    and its segmentation loss (``seg_train``'s class weights and Dice term) joins the objective; else
    ``None``. Cached on its (hashable) arguments, so the chunks of a configuration share one compiled step.
    ``mesh``: the runs are split over its devices (:func:`dng_jax.sharding.runs_jit`).
    """
    optimizer = make_optimizer(cfg, steps_per_epoch)
    joint = cfg.segmentation_weight > 0
    if joint and (unet is None or seg_train is None):
        raise ValueError("retrain.segmentation_weight > 0 needs the U-Net and the train section")
    seg_loss = make_segmentation_loss(seg_train.class_weights, seg_train.dice_weight) if joint else None
    bn_train = cfg.batch_norm != "frozen"

    def one(state: RetrainState, images, labels, key, seg_batch):
        k_crop, k_aug, k_seg = jax.random.split(key, 3)
        x = random_crops(k_crop, images, cfg.crop_size).astype(jnp.float32) / 255.0
        if augment.enabled:
            x, _ = augment_batch(k_aug, x, None, augment)

        def loss_fn(params):
            stats = dict(state.batch_stats)
            variables = {"params": {"encoder": params["encoder"], "head": params["head"]},
                         "batch_stats": {"encoder": stats["encoder"]}}
            if bn_train:
                logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
                stats["encoder"] = updates["batch_stats"]["encoder"]
            else:  # the encoder normalises with the baseline's statistics, which stay as they are
                logits = model.apply(variables, x, train=False)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            if not joint:
                return ce, (ce, stats)
            seg_x, seg_t = seg_batch
            seg_x = to_float_images(seg_x)
            if augment.enabled:
                seg_x, seg_t = augment_batch(k_seg, seg_x, seg_t, augment)
            outputs, updates = unet.apply(
                {"params": {"encoder": params["encoder"], "decoder": params["decoder"]},
                 "batch_stats": {"encoder": stats["encoder"], "decoder": stats["decoder"]}},
                seg_x, train=True, encoder_train=bn_train, mutable=["batch_stats"])
            seg, _ = seg_loss(outputs, seg_t)
            stats = {**stats, **{k: updates["batch_stats"][k] for k in (("encoder",) if bn_train else ()) + ("decoder",)}}
            return ce + cfg.segmentation_weight * seg, (ce, stats)

        (_, (ce, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return RetrainState(params, batch_stats, opt_state, state.step + 1), ce

    if cfg.runs_layout == "map":  # the control: one run after another inside one compiled step
        def over_runs(states, images, labels, keys, seg_batch):
            return jax.lax.map(lambda a: one(*a, seg_batch), (states, images, labels, keys))
    else:
        over_runs = jax.vmap(one, in_axes=(0, 0, 0, 0, None))
    return runs_jit(over_runs, mesh, (True, True, True, True, False))


@jax.jit
def _gather(images, labels, idx):
    """Each run's batch: ``images[idx] [R,B,...]`` and its labels ``[R,B]``."""
    return images[idx], jnp.take_along_axis(labels, idx, axis=1)


def _cycle(batches: CropBatches):
    """The batches of epoch 0, 1, 2, ... without end."""
    for epoch in itertools.count():
        yield from batches.epoch(epoch)


def retrain_runs(key: jax.Array, model: EncoderClassifier, encoder_variables: dict, images: np.ndarray,
                 labels: np.ndarray, cfg: RetrainConfig, augment: AugmentConfig = AugmentConfig(),
                 progress: bool = True, desc: str = "retrain", run_ids: Sequence[int] | None = None,
                 writer: MetricWriter | None = None, *, stacked: bool = False,
                 decoder_variables: dict | None = None, unet: UNet | None = None,
                 seg_batches: CropBatches | None = None, seg_train: TrainConfig | None = None,
                 first_epoch: int = 0, mesh: Mesh | None = None) -> tuple[RetrainState, np.ndarray]:
    """Train ``R = labels.shape[0]`` runs on ``images [N,H,W,3] uint8`` with ``labels [R, N]``.

    Run ``run_ids[r]`` (default ``r``) draws its head, image order, crops and augmentation from
    ``fold_in(key, run_id)`` alone, so a run's result does not depend on which other runs share its
    chunk. The last incomplete batch of an epoch is dropped. Returns the final states and the per-epoch
    mean loss ``[epochs, R]``; ``writer`` gets one row per epoch and run (``step`` = ``first_epoch`` +
    epoch, ``run``, ``loss``).

    ``stacked``: the start variables carry a leading runs axis (a later round). The joint objective
    (``cfg.segmentation_weight > 0``) needs ``unet``, the baseline's ``decoder_variables``, CT1
    ``seg_batches`` (one batch per step, shared by the runs) and the ``seg_train`` section (its loss).

    ``mesh`` (:func:`dng_jax.sharding.runs_mesh`): the runs are split over its devices, also those of
    other processes (``R`` must be a multiple of its size); the states come back split the same way, the
    losses whole on every process.
    """
    labels = np.asarray(labels)
    run_ids = _checked_run_ids(images, labels, cfg, run_ids, mesh)
    n_runs, n = labels.shape
    joint = cfg.segmentation_weight > 0
    if joint and (unet is None or decoder_variables is None or seg_batches is None or seg_train is None):
        raise ValueError("retrain.segmentation_weight > 0 needs unet, decoder_variables, seg_batches and seg_train")
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch
    optimizer = make_optimizer(cfg, steps_per_epoch)
    k_init, k_order, k_step = jax.random.split(key, 3)
    if mesh is not None and stacked:  # a later round: the runs' own networks, from every process
        encoder_variables, decoder_variables = distributed.to_local((encoder_variables, decoder_variables))
    # the bookkeeping (keys, orders, the start states) is drawn on each process alike; only what a step
    # reads goes onto the mesh (no mesh: as it is)
    states = on_mesh(init_runs(k_init, model, encoder_variables, n_runs, optimizer, images.shape[1], run_ids,
                               decoder_variables=decoder_variables if joint else None, stacked=stacked), mesh)
    steps = _RetrainSteps(
        step_fn=make_retrain_step(model, cfg, steps_per_epoch, augment, unet if joint else None,
                                  seg_train if joint else None, mesh),
        images=jnp.asarray(images) if mesh is None else on_mesh(images, mesh, per_run=False),
        labels=jnp.asarray(labels, jnp.int32) if mesh is None else on_mesh(labels.astype(np.int32), mesh),
        run_ids=run_ids, run_keys=jax.vmap(lambda r: jax.random.fold_in(k_step, r))(run_ids),
        seg_stream=_cycle(seg_batches) if joint else None, batch=batch, steps_per_epoch=steps_per_epoch, mesh=mesh)
    losses = np.zeros((cfg.epochs, n_runs), np.float32)
    run_list = np.asarray(run_ids).tolist()
    logged = [(r, run) for r, run in enumerate(run_list) if run not in run_list[:r]]  # a padding copy: not again
    bar = step_bar(cfg.epochs * steps_per_epoch, desc, unit="step", leave=False, disable=not progress)
    for epoch in range(cfg.epochs):
        states, epoch_loss = steps.epoch(states, jax.random.fold_in(k_order, epoch), epoch, bar)
        losses[epoch] = np.asarray(epoch_loss) / steps_per_epoch
        bar.set_postfix(loss=f"{losses[epoch].mean():.3f}")
        if writer is not None:
            for r, run in logged:
                writer.write_scalars(first_epoch + epoch, {"run": run, "loss": float(losses[epoch, r])})
    bar.close()
    return states, losses


def _checked_run_ids(images: np.ndarray, labels: np.ndarray, cfg: RetrainConfig, run_ids, mesh) -> jax.Array:
    """``run_ids`` (default ``0..R-1``) as int32, once the shapes of the inputs agree; else ValueError."""
    chex.assert_rank(labels, 2)
    n_runs, n = labels.shape
    run_ids = jnp.arange(n_runs) if run_ids is None else jnp.asarray(run_ids, jnp.int32)
    chex.assert_shape(run_ids, (n_runs,))
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images but labels for {n}")
    if mesh is not None and n_runs % mesh.devices.size:
        raise ValueError(f"{n_runs} runs do not split over the mesh's {mesh.devices.size} devices")
    if images.shape[1] < cfg.crop_size or images.shape[2] < cfg.crop_size:
        raise ValueError(f"images {images.shape[1:3]} are smaller than the crop {cfg.crop_size}")
    return run_ids


class _RetrainSteps(NamedTuple):
    """What every epoch of :func:`retrain_runs` steps through: the compiled step, the data where the step
    reads it, each run's key and the CT1 batches of the joint objective."""

    step_fn: Any
    images: jax.Array
    labels: jax.Array
    run_ids: jax.Array
    run_keys: jax.Array  # fold_in(k_step, run_ids[r]); step s of the run draws from fold_in(run_keys[r], s)
    seg_stream: Any  # an endless iterator of CT1 batches, or None without the joint objective
    batch: int
    steps_per_epoch: int
    mesh: Mesh | None

    def epoch(self, states: RetrainState, epoch_key: jax.Array, epoch: int, bar) -> tuple[RetrainState, jax.Array]:
        """One epoch of every run, each in its own order (drawn from ``fold_in(epoch_key, run_id)``);
        returns the states and the runs' summed step losses ``[R]``."""
        n = self.labels.shape[1]
        orders = jax.vmap(lambda r: jax.random.permutation(jax.random.fold_in(epoch_key, r), n))(self.run_ids)
        epoch_loss = jnp.zeros((self.labels.shape[0],))
        for s in range(self.steps_per_epoch):
            idx = orders[:, s * self.batch : (s + 1) * self.batch]
            x, y = _gather(self.images, self.labels, on_mesh(idx, self.mesh))
            keys = jax.vmap(lambda k: jax.random.fold_in(k, epoch * self.steps_per_epoch + s))(self.run_keys)
            seg_batch = next(self.seg_stream) if self.seg_stream is not None else None
            states, loss = self.step_fn(states, x, y, on_mesh(keys, self.mesh), seg_batch)
            epoch_loss = epoch_loss + (loss if self.mesh is None else distributed.fetch(loss))
            step_done(bar, loss)
        return states, epoch_loss
