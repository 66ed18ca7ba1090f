"""The segmentation network's train state and its LAMB optimizer (paper II-C).

- :class:`TrainState` -- ``flax.training.train_state.TrainState`` plus ``batch_stats``.
- :func:`make_optimizer` -- LAMB (lr 1e-3, b1 0.9, b2 0.999), optionally masked so that only some
  top-level parameter subtrees (``'encoder'``, ``'decoder'``, ...) are trained; the rest get zero updates.
- :func:`create_train_state` -- initialise a model and its optimizer state.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from dng_jax.data.partition import PSEUDO_LABEL_IMAGES
from dng_jax.typed_config import TypedConfig, param, require

__all__ = ["SCHEDULES", "PSEUDO_LABEL_TEACHERS", "TrainConfig", "TrainState", "trainable_mask", "learning_rate",
           "make_optimizer", "create_train_state"]


SCHEDULES = ("constant", "cosine")
#: Who makes self-training's targets (``train.pseudo_label_teacher``; :mod:`dng_jax.segmentation.self_training`).
PSEUDO_LABEL_TEACHERS = ("network", "classical", "agreement")


class TrainConfig(TypedConfig):
    """The ``train`` section: segmentation training with LAMB (paper II-C)."""

    epochs: int = param(50, "epochs; one epoch = one random crop of every CT1 training image")
    batch_size: int = param(8, "crops per step (a multiple of the number of devices)")
    lr: float = param(1e-3, "LAMB learning rate")
    b1: float = param(0.9, "LAMB beta1")
    b2: float = param(0.999, "LAMB beta2")
    weight_decay: float = param(0.0, "LAMB weight decay")
    schedule: str = param("constant", "learning rate: 'constant' (paper) or 'cosine' (linear warm-up, cosine "
                          "decay to 0 at the last step)")
    warmup_epochs: float = param(0.0, "cosine schedule: epochs of linear warm-up from 0")
    class_weights: tuple[float, ...] = param((1.0, 1.0, 1.0), "cross-entropy weights of background, cell, "
                                             "border (paper: equal)")
    dice_weight: float = param(0.0, "weight of a soft Dice term on the cell and border classes (paper: 0)")
    seed: int = param(0, "initialisation, batch order and augmentation")
    checkpoint_every: int = param(1000, "steps between checkpoints (0: only at the end)")
    max_to_keep: int = param(3, "checkpoints kept")
    log_every: int = param(20, "steps between metric rows")
    eval_every_epochs: int = param(1, "epochs between pixel loss / accuracy on fixed crops of the validation "
                                   "(paper protocol: test) images")
    max_steps: int | None = param(None, "stop after this many steps, as if interrupted (tests)")
    max_train_images: int | None = param(None, "use only the first N CT1 training images")
    trainable: tuple[str, ...] | None = param(None, "parameter subtrees to train ('encoder', 'decoder'); None = all")
    pseudo_label_rounds: int = param(0, "self-training: rounds of a student trained on CT1 plus the teacher's "
                                     "confident pixels on the clustering images (0 = none, the paper); a finished "
                                     "training with a constant lr gets them by resuming its work dir with them")
    pseudo_label_weight: float = param(1.0, "self-training: weight of the pseudo-labeled crops' loss")
    pseudo_label_confidence: float = param(0.9, "self-training: a pixel is a target where the teacher's (TTA) "
                                           "softmax reaches this, else it is ignored")
    pseudo_label_epochs: int = param(0, "self-training: epochs of each student round (0 = train.epochs), going "
                                     "on from the teacher's weights")
    pseudo_label_teacher: str = param("network", "self-training's teacher: 'network' (its confident TTA pixels), "
                                      "'classical' (Otsu + watershed instances as targets) or 'agreement' (classical "
                                      "targets of the images where the two teachers agree)")
    pseudo_label_agreement: float = param(0.3, "agreement teacher: keep an image when its classical and network "
                                          "instances match at IoU > 0.5 for at least this share, TP/(TP+FP+FN)")
    pseudo_label_images: str = param("clustering", "self-training's images: 'clustering' (data.cluster_from), "
                                     "'teacher_pool' (half the other types' validation images: inductive) or "
                                     "'transductive' (the teacher pool and the other types' test images)")

    @property
    def total_epochs(self) -> int:
        """The teacher's epochs and every self-training round's."""
        return self.epochs + self.pseudo_label_rounds * (self.pseudo_label_epochs or self.epochs)

    def check(self) -> None:
        for f in ("epochs", "batch_size", "max_to_keep", "log_every", "eval_every_epochs"):
            require(getattr(self, f) >= 1, f, f"must be >= 1, got {getattr(self, f)}")
        require(self.lr >= 0, "lr", f"must be >= 0, got {self.lr}")
        for f in ("b1", "b2"):
            require(0 <= getattr(self, f) < 1, f, f"must lie in [0, 1), got {getattr(self, f)}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.schedule in SCHEDULES, "schedule", f"use one of {SCHEDULES}, got {self.schedule!r}")
        require(self.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")
        require(len(self.class_weights) == 3 and min(self.class_weights) > 0, "class_weights",
                f"need 3 positive weights (background, cell, border), got {self.class_weights}")
        require(self.dice_weight >= 0, "dice_weight", f"must be >= 0, got {self.dice_weight}")
        require(self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        for f in ("max_steps", "max_train_images"):
            v = getattr(self, f)
            require(v is None or v >= 1, f, f"must be >= 1 (or None), got {v}")
        require(self.pseudo_label_rounds >= 0, "pseudo_label_rounds", f"must be >= 0, got {self.pseudo_label_rounds}")
        require(self.pseudo_label_weight >= 0, "pseudo_label_weight", f"must be >= 0, got {self.pseudo_label_weight}")
        require(0 < self.pseudo_label_confidence <= 1, "pseudo_label_confidence",
                f"must lie in (0, 1], got {self.pseudo_label_confidence}")
        require(self.pseudo_label_epochs >= 0, "pseudo_label_epochs", f"must be >= 0, got {self.pseudo_label_epochs}")
        require(self.pseudo_label_teacher in PSEUDO_LABEL_TEACHERS, "pseudo_label_teacher",
                f"must be one of {PSEUDO_LABEL_TEACHERS}, got {self.pseudo_label_teacher!r}")
        require(0 <= self.pseudo_label_agreement <= 1, "pseudo_label_agreement",
                f"must lie in [0, 1], got {self.pseudo_label_agreement}")
        require(self.pseudo_label_images in PSEUDO_LABEL_IMAGES, "pseudo_label_images",
                f"must be one of {PSEUDO_LABEL_IMAGES}, got {self.pseudo_label_images!r}")
        require(self.trainable is None or (len(self.trainable) > 0 and set(self.trainable) <= {"encoder", "decoder"}),
                "trainable", f"must name 'encoder' and/or 'decoder' (or be None), got {self.trainable}")



class TrainState(train_state.TrainState):
    batch_stats: Any = None


def trainable_mask(params, trainable: Sequence[str] | None):
    """Label tree ``'train'`` / ``'freeze'`` by top-level subtree name (``None``: everything trains)."""
    if trainable is None:
        return jax.tree_util.tree_map(lambda _: "train", params)
    unknown = set(trainable) - set(params)
    if unknown:
        raise ValueError(f"trainable subtrees {sorted(unknown)} not in params (have {sorted(params)})")
    return {k: jax.tree_util.tree_map(lambda _, k=k: "train" if k in trainable else "freeze", v)
            for k, v in params.items()}


def learning_rate(cfg: TrainConfig, steps_per_epoch: int = 1):
    """The LAMB learning rate: ``cfg.lr`` (paper), or with ``schedule="cosine"`` a linear warm-up over
    ``warmup_epochs`` and a cosine decay to 0 at the last step of the whole training (the self-training
    rounds included: :attr:`TrainConfig.total_epochs`)."""
    if cfg.schedule == "constant":
        return cfg.lr
    total = max(cfg.total_epochs * steps_per_epoch, 1)
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, total, end_value=0.0)


def make_optimizer(cfg: TrainConfig | None = None, *, trainable: Sequence[str] | None = None,
                   base: optax.GradientTransformation | None = None,
                   steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """LAMB from ``cfg`` (``lr``, ``b1``, ``b2``, ``weight_decay``; paper: 1e-3, 0.9, 0.999, 0; the
    schedule of :func:`learning_rate`, for which ``steps_per_epoch`` counts), or ``base`` if given; with
    ``trainable`` only those top-level subtrees are updated (``optax.multi_transform`` with
    ``set_to_zero`` for the rest, which also keeps no optimizer state for them)."""
    cfg = TrainConfig() if cfg is None else cfg
    if base is None:
        base = optax.lamb(learning_rate(cfg, steps_per_epoch), b1=cfg.b1, b2=cfg.b2,
                          weight_decay=cfg.weight_decay)
    if trainable is None:
        return base
    trainable = tuple(trainable)
    return optax.multi_transform({"train": base, "freeze": optax.set_to_zero()},
                                 lambda params: trainable_mask(params, trainable))


def _init_key(key):
    """An ``rbg`` key derived from ``key`` for parameter initialisation.

    Threefry-based init of a ResNet compiles slowly on CPU (longer than the network's forward pass: the bits
    generator is inlined per parameter); XLA's RngBitGenerator compiles fast. Initial weights are
    then deterministic per seed and backend (not bitwise equal across CPU / GPU / TPU), which is all
    training needs: resumed runs restore the weights from the checkpoint."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0, impl="rbg")):
            return key
    elif isinstance(key, jax.Array) and key.dtype == jnp.uint32:  # raw (legacy) key
        key = jax.random.wrap_key_data(key)
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


def create_train_state(key, model, cfg: TrainConfig | None = None, input_shape=(1, 256, 256, 3), *,
                       tx: optax.GradientTransformation | None = None) -> TrainState:
    """Initialise ``model`` on zeros of ``input_shape`` and wrap it in a :class:`TrainState`.

    The optimizer is ``tx``, else :func:`make_optimizer` of ``cfg`` (training ``cfg.trainable``).
    Works under ``jax.eval_shape`` (abstract states for checkpoint restoring)."""
    if tx is None:
        cfg = TrainConfig() if cfg is None else cfg
        tx = make_optimizer(cfg, trainable=cfg.trainable)
    variables = jax.jit(partial(model.init, train=False))(_init_key(key), jnp.zeros(input_shape, jnp.float32))
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))
