"""Segmentation training (paper II-C): U-Net/ResNet, LAMB, pixel-wise cross-entropy, on-device augmentation.

usage: python -m dng_jax.train --config configs/default.py --workdir runs/default [--config.train.epochs=3]

Trains the segmentation network of --config on the labelled CT1 (known cell type) training images and
then reports its MAP on the known / unknown / all test images. --config (a configs/*.py file; any field
can be overridden, e.g. --config.train.epochs=3) and --workdir are both required. Written to --workdir:

  checkpoints/   orbax checkpoints, every config.train.checkpoint_every steps and at the end
  metrics.csv    training loss / accuracy / images per second, and the evaluation loss / pixel accuracy
  config.json    the full configuration of the run
  baseline.json  the MAP on the test images, per image and cell type (if config.eval.enabled)
  manifest.json  the cell type of every image (not for the Kaggle stage-1 set: its manifest is shipped)

Rerunning the same command resumes from the latest checkpoint and draws the same batches and
augmentation as an uninterrupted run would; a finished run is not trained again (its evaluation is).
Predict with the result: python -m dng_jax.predict --checkpoint <workdir> ...

Developer notes
---------------

Building blocks (pure functions, jitted by the driver):

- :class:`TrainState` -- ``flax.training.train_state.TrainState`` plus ``batch_stats``.
- :func:`make_optimizer` -- LAMB (lr 1e-3, b1 0.9, b2 0.999), optionally masked so that only some top-level
  parameter subtrees (``'encoder'``, ``'decoder'``, ...) are trained; the rest get zero updates.
- :func:`create_train_state` -- initialise a model and its optimizer state.
- :func:`make_train_step` -- a general ``train_step(state, batch, key) -> (state, metrics)`` factory: loss
  function, trainable subtrees and augmentation are arguments (the deep-clustering step reuses it with an
  encoder + dense head, a classification loss and SGD). :data:`train_step` is the segmentation instance.
- :func:`make_eval_step` / :data:`eval_step` -- ``eval_step(state, batch) -> metrics`` (BatchNorm in eval mode).
- :func:`train_and_evaluate` -- the driver: data, data-parallel sharding over all local devices,
  checkpoints every N steps with exact resumption, metrics CSV, tqdm bar, and at the end the baseline
  MAP evaluation (known / unknown / all test images).

Batches are ``(images uint8 [B,H,W,3], targets uint8/int [B,H,W])``; images are scaled to [0, 1] in the
step. The augmentation key of step ``s`` is ``fold_in(key, s)`` with ``s = state.step``, so a resumed run
draws exactly the keys an uninterrupted one would.

``--help`` prints only the part of this docstring above "Developer notes" (see :func:`_usage`).
"""

from __future__ import annotations

import csv
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dng_jax.models import make_model

__all__ = [
    "TrainState",
    "make_optimizer",
    "trainable_mask",
    "create_train_state",
    "segmentation_loss",
    "make_train_step",
    "make_eval_step",
    "default_augment_fn",
    "open_data",
    "make_batches",
    "prefetch",
    "train_step",
    "eval_step",
    "make_mesh",
    "jit_train_step",
    "jit_eval_step",
    "shard_batch",
    "replicate",
    "MetricsWriter",
    "train_and_evaluate",
    "main",
]

Batch = tuple[Any, Any]
LossFn = Callable[[Any, Any], tuple[jax.Array, dict[str, jax.Array]]]


class TrainState(train_state.TrainState):
    batch_stats: Any = None


# ----------------------------------------------------------------------------------------- optimizer


def _cfg_get(cfg, key, default=None):
    if cfg is None:
        return default
    if hasattr(cfg, "get"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def trainable_mask(params, trainable: Sequence[str] | None):
    """Label tree ``'train'`` / ``'freeze'`` by top-level subtree name (``None``: everything trains)."""
    if trainable is None:
        return jax.tree_util.tree_map(lambda _: "train", params)
    unknown = set(trainable) - set(params)
    if unknown:
        raise ValueError(f"trainable subtrees {sorted(unknown)} not in params (have {sorted(params)})")
    return {k: jax.tree_util.tree_map(lambda _, k=k: "train" if k in trainable else "freeze", v)
            for k, v in params.items()}


def make_optimizer(train_cfg=None, *, trainable: Sequence[str] | None = None,
                   base: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """LAMB from ``train_cfg`` (``lr``, ``b1``, ``b2``, ``weight_decay``; paper: 1e-3, 0.9, 0.999, 0), or
    ``base`` if given; with ``trainable`` only those top-level subtrees are updated
    (``optax.multi_transform`` with ``set_to_zero`` for the rest, which also keeps no optimizer state
    for them)."""
    if base is None:
        base = optax.lamb(float(_cfg_get(train_cfg, "lr", 1e-3)), b1=float(_cfg_get(train_cfg, "b1", 0.9)),
                          b2=float(_cfg_get(train_cfg, "b2", 0.999)),
                          weight_decay=float(_cfg_get(train_cfg, "weight_decay", 0.0)))
    if trainable is None:
        return base
    trainable = tuple(trainable)
    return optax.multi_transform({"train": base, "freeze": optax.set_to_zero()},
                                 lambda params: trainable_mask(params, trainable))


def _init_key(key):
    """An ``rbg`` key derived from ``key`` for parameter initialisation.

    Threefry-based init of a ResNet compiles slowly on CPU (~4x longer than the network's forward pass,
    the bits generator is inlined per parameter); XLA's RngBitGenerator compiles fast. Initial weights are
    then deterministic per seed and backend (not bitwise equal across CPU / GPU / TPU), which is all
    training needs: resumed runs restore the weights from the checkpoint."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0, impl="rbg")):
            return key
    elif isinstance(key, jax.Array) and key.dtype == jnp.uint32:  # raw (legacy) key
        key = jax.random.wrap_key_data(key)
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


def create_train_state(key, model, cfg=None, input_shape=(1, 256, 256, 3), *,
                       tx: optax.GradientTransformation | None = None,
                       trainable: Sequence[str] | None = None) -> TrainState:
    """Initialise ``model`` on zeros of ``input_shape`` and wrap it in a :class:`TrainState`.

    ``cfg`` is the whole config or its ``train`` section (for :func:`make_optimizer`); ``tx`` overrides it.
    Works under ``jax.eval_shape`` (abstract states for checkpoint restoring)."""
    train_cfg = cfg.train if cfg is not None and "train" in cfg else cfg
    if tx is None:
        tx = make_optimizer(train_cfg, trainable=trainable if trainable is not None
                            else _cfg_get(train_cfg, "trainable", None))
    variables = jax.jit(partial(model.init, train=False))(_init_key(key), jnp.zeros(input_shape, jnp.float32))
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))


# ----------------------------------------------------------------------------------------- steps


def segmentation_loss(logits, targets) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean pixel-wise softmax cross-entropy (float32) and pixel accuracy."""
    logits = logits.astype(jnp.float32)
    targets = targets.astype(jnp.int32)
    # one-hot form: no gather / scatter in the backward pass (faster on CPU and TPU)
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
    loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1))
    accuracy = (jnp.argmax(logits, -1) == targets).mean()
    return loss, {"loss": loss, "accuracy": accuracy}


def to_float_images(images):
    """uint8 [0, 255] -> float32 [0, 1]; float input is taken to be in [0, 1] already."""
    if jnp.issubdtype(images.dtype, jnp.integer):
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def default_augment_fn(cfg=None):
    """``augment_batch`` from :mod:`dng_jax.augment` bound to ``cfg`` (an ``AugmentConfig`` or a dict)."""
    from dng_jax import augment

    if cfg is None:
        acfg = augment.AugmentConfig()
    elif isinstance(cfg, augment.AugmentConfig):
        acfg = cfg
    else:
        import dataclasses

        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        names = {f.name for f in dataclasses.fields(augment.AugmentConfig)}
        acfg = augment.AugmentConfig(**{k: v for k, v in d.items() if k in names})
    return lambda key, images, targets: augment.augment_batch(key, images, targets, acfg)


def make_train_step(loss_fn: LossFn = segmentation_loss, *, trainable: Sequence[str] | None = None,
                    augment_fn: Callable | None = None, apply_kwargs: dict | None = None):
    """Returns a pure ``train_step(state, batch, key) -> (state, metrics)`` to be jitted by the caller.

    - ``loss_fn(outputs, targets) -> (loss, metrics)``: ``outputs`` is whatever ``state.apply_fn``
      returns with ``train=True``.
    - ``trainable``: top-level parameter subtrees to differentiate (``None``: all). Frozen subtrees get
      no gradient (zeros are passed to the optimizer: use :func:`make_optimizer` with the same
      ``trainable`` so they get exactly zero updates) and keep their BatchNorm statistics.
    - ``augment_fn(key, images float [0,1], targets) -> (images, targets)``, run on device with key
      ``fold_in(key, state.step)``.
    """
    apply_kwargs = dict(apply_kwargs or {})

    def step(state: TrainState, batch: Batch, key):
        images, targets = batch
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
            loss, metrics = loss_fn(outputs, targets)
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


# Plain segmentation instances (no augmentation; the driver builds its own with augmentation).
train_step = make_train_step(segmentation_loss)
eval_step = make_eval_step(segmentation_loss)


# ----------------------------------------------------------------------------------------- devices


def make_mesh(devices=None) -> Mesh:
    """1-D mesh over ``jax.local_devices()`` with the batch axis ``'data'``."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def shard_batch(batch, mesh: Mesh):
    """Put host arrays on the mesh, split along the leading (batch) axis."""
    n = mesh.devices.size
    sharding = NamedSharding(mesh, P("data"))

    def put(x):
        x = np.asarray(x)
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map(put, batch)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, P()))


def jit_train_step(step_fn, mesh: Mesh, donate: bool = True):
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl),
                   donate_argnums=(0,) if donate else ())


def jit_eval_step(step_fn, mesh: Mesh):
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data), out_shardings=repl)


# ----------------------------------------------------------------------------------------- logging


class MetricsWriter:
    """Appends rows to ``metrics.csv`` (flushed and fsynced per write). On resume, rows logged after the
    restored step are dropped first so the file matches an uninterrupted run."""

    FIELDS = ("step", "epoch", "split", "loss", "accuracy", "grad_norm", "images_per_sec", "wall_time")

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and resume_step is not None:
            from dng_jax.atomic import atomic_write_text

            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r.get("step") or 0)) <= resume_step]
            lines = [",".join(self.FIELDS)] + [",".join(str(r.get(k, "")) for k in self.FIELDS) for r in rows]
            atomic_write_text(self.path, "\n".join(lines) + "\n")
        elif self.path.exists() and resume_step is None:
            self.path.unlink()
        if not self.path.exists():
            with open(self.path, "w") as f:
                f.write(",".join(self.FIELDS) + "\n")

    def write(self, **row):
        vals = []
        for k in self.FIELDS:
            v = row.get(k, "")
            if k == "wall_time" and isinstance(v, float):
                v = f"{v:.3f}"
            elif isinstance(v, float):
                v = f"{v:.6g}"
            vals.append(str(v))
        with open(self.path, "a") as f:
            f.write(",".join(vals) + "\n")
            f.flush()
            os.fsync(f.fileno())


def prefetch(iterator: Iterable, size: int = 2) -> Iterator:
    """Run a host iterator in a background thread, ``size`` items ahead. Closing the generator early
    (``break`` in the consumer) stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    sentinel = object()
    err: list[BaseException] = []

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            err.append(e)
        put(sentinel)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is sentinel:
                if err:
                    raise err[0]
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


# ----------------------------------------------------------------------------------------- data


def open_data(config, workdir: str | os.PathLike | None = None):
    """(source, manifest, splits) for ``config.data`` (``path`` None = the bundled mini-set)."""
    from dng_jax import dsb2018, partition

    source = dsb2018.open_source(config.data.get("path"))
    manifest = partition.manifest_for(source, Path(workdir) / "manifest.json" if workdir is not None else None)
    splits = partition.make_splits(manifest, n_test_per_type=int(config.data.get("n_test_per_type", 2)),
                                   seed=int(config.data.get("seed", 0)))
    return source, manifest, splits


def _load_samples(source, ids, desc: str):
    """Load samples; images whose files are broken (``DataError``) are skipped with a warning."""
    import warnings

    from tqdm.auto import tqdm

    from dng_jax.dsb2018 import DataError

    out, bad = [], []
    for i in tqdm(ids, desc=desc, leave=False, mininterval=2.0):
        try:
            out.append(source.load(i))
        except DataError as e:
            bad.append(f"{i}: {e}")
    if bad:
        warnings.warn(f"{desc}: skipped {len(bad)} of {len(ids)} images with bad data:\n  " + "\n  ".join(bad[:5])
                      + ("\n  ..." if len(bad) > 5 else ""), stacklevel=2)
    return out


def make_batches(samples, config, seed: int, batch_size: int | None = None):
    from dng_jax.pipeline import CropBatches
    from dng_jax.targets import labels_to_classes

    bw = int(config.data.get("border_width", 2))
    return CropBatches(samples, batch_size or int(config.train.batch_size), crop_size=int(config.data.crop_size),
                       seed=seed, transform=partial(labels_to_classes, border_width=bw))


# ----------------------------------------------------------------------------------------- driver


def train_and_evaluate(config, workdir: str | os.PathLike, *, samples=None, eval_samples=None,
                       evaluate: bool | None = None, progress: bool = True) -> TrainState:
    """Train the segmentation network of ``config`` in ``workdir`` (resuming from its checkpoints).

    Writes ``workdir/checkpoints/`` (orbax), ``metrics.csv``, ``config.json`` and, when ``evaluate``
    (default ``config.eval.enabled``), ``baseline.json`` with the MAP on the known / unknown / all test
    images. ``samples`` / ``eval_samples`` (lists of :class:`dng_jax.dsb2018.Sample`) replace the data of
    ``config.data`` (tests; no MAP evaluation then). ``config.train.max_steps`` stops early, as if
    interrupted, after writing a checkpoint. Returns the final state.
    """
    from tqdm.auto import tqdm

    from dng_jax.atomic import atomic_write_text
    from dng_jax.checkpointing import Checkpointer

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tcfg = config.train
    source = splits = None
    if samples is None:
        source, _, splits = open_data(config, workdir)
        ids = list(splits.train_ct1)
        limit = tcfg.get("max_train_images")
        if limit:
            ids = ids[: int(limit)]
        samples = _load_samples(source, ids, "load train")
        if eval_samples is None:
            eval_samples = _load_samples(source, splits.test_all, "load test")
    batches = make_batches(samples, config, seed=int(tcfg.seed))
    steps_per_epoch = batches.steps_per_epoch
    total_steps = int(tcfg.epochs) * steps_per_epoch
    max_steps = tcfg.get("max_steps")
    stop_at = min(total_steps, int(max_steps)) if max_steps else total_steps
    batch_size = int(tcfg.batch_size)

    mesh = make_mesh()
    n_dev = mesh.devices.size
    if batch_size % n_dev:
        raise ValueError(f"train.batch_size={batch_size} must be a multiple of the {n_dev} devices")
    model = make_model(config.model)
    crop = int(config.data.crop_size)
    init_key, aug_key = jax.random.split(jax.random.key(int(tcfg.seed)))
    aug_cfg = config.get("augment")
    augment_fn = default_augment_fn(aug_cfg) if (aug_cfg is None or aug_cfg.get("enabled", True)) else None
    trainable = tcfg.get("trainable")
    tx = make_optimizer(tcfg, trainable=trainable)
    init_fn = partial(create_train_state, model=model, cfg=tcfg, input_shape=(1, crop, crop, 3), tx=tx)
    p_train = jit_train_step(make_train_step(segmentation_loss, trainable=trainable, augment_fn=augment_fn), mesh)
    p_eval = jit_eval_step(make_eval_step(segmentation_loss), mesh)
    log_every = max(int(tcfg.get("log_every", 10)), 1)
    ckpt_every = int(tcfg.get("checkpoint_every", 0) or 0)
    eval_every = max(int(tcfg.get("eval_every_epochs", 1) or 1), 1)

    cfg_json = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
    atomic_write_text(workdir / "config.json", cfg_json + "\n")

    with Checkpointer(workdir / "checkpoints", max_to_keep=int(tcfg.get("max_to_keep", 3))) as ckpt:
        state, meta = ckpt.restore_or_init(lambda: init_fn(init_key), sharding=NamedSharding(mesh, P()))
        start_step = int(state.step)
        if meta is not None and "rng" in meta:  # the key the run started with (same seed -> same key)
            aug_key = jax.random.wrap_key_data(jnp.asarray(np.asarray(meta["rng"], np.uint32)))
        state = replicate(state, mesh)
        aug_key = replicate(aug_key, mesh)
        writer = MetricsWriter(workdir / "metrics.csv", resume_step=start_step if start_step > 0 else None)

        def meta_for(step: int) -> dict:
            return {"global_step": step, "epoch": step // steps_per_epoch,
                    "step_in_epoch": step % steps_per_epoch, "steps_per_epoch": steps_per_epoch,
                    "rng": np.asarray(jax.random.key_data(aug_key)).tolist(), "config": json.loads(cfg_json)}

        def run_eval(step: int, epoch: int):
            """Mean loss / pixel accuracy over fixed crops of the test images (no augmentation)."""
            bs = min(batch_size, len(eval_samples or ())) // n_dev * n_dev
            if bs < 1:
                return None
            sums: dict[str, float] = {}
            n = 0
            for b in make_batches(eval_samples, config, seed=int(tcfg.seed) + 10_000, batch_size=bs).epoch(0):
                for k, v in jax.device_get(p_eval(state, shard_batch(b, mesh))).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n += 1
            means = {k: v / n for k, v in sums.items()}
            writer.write(step=step, epoch=epoch, split="eval", wall_time=time.time(), **means)
            return means

        step = start_step
        bar = tqdm(total=stop_at, initial=start_step, desc="train", unit="step", disable=not progress,
                   dynamic_ncols=True, mininterval=1.0)
        t_log, n_log = time.time(), 0
        try:
            while step < stop_at:
                epoch, in_epoch = divmod(step, steps_per_epoch)
                for batch in prefetch(batches.epoch(epoch, start_step=in_epoch)):
                    state, metrics = p_train(state, shard_batch(batch, mesh), aug_key)
                    step += 1
                    n_log += 1
                    bar.update(1)
                    if step % log_every == 0 or step == stop_at:
                        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                        dt = time.time() - t_log
                        ips = n_log * batch_size / dt if dt > 0 else float("nan")
                        writer.write(step=step, epoch=epoch, split="train", images_per_sec=ips,
                                     wall_time=time.time(), **m)
                        bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['accuracy']:.3f}", ips=f"{ips:.1f}")
                        t_log, n_log = time.time(), 0
                    if ckpt_every and step % ckpt_every == 0 and step < stop_at:
                        ckpt.save(step, state, meta_for(step))
                    if step >= stop_at:
                        break
                done_epochs = step // steps_per_epoch
                if step % steps_per_epoch == 0 and (done_epochs % eval_every == 0 or step == total_steps):
                    ev = run_eval(step, done_epochs - 1)
                    if ev is not None:
                        bar.write(f"epoch {step // steps_per_epoch}/{tcfg.epochs}: eval loss {ev['loss']:.4f} "
                                  f"pixel accuracy {ev['accuracy']:.3f}")
            ckpt.save(step, state, meta_for(step), force=True)
        finally:
            bar.close()
            ckpt.wait()

    do_eval = config.get("eval", {}).get("enabled", True) if evaluate is None else evaluate
    if do_eval and step >= total_steps and source is not None and splits is not None:
        from dng_jax.predict import evaluate_baseline, format_table, postprocess_config

        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        result = evaluate_baseline(variables, model, source, splits, post_cfg=postprocess_config(config),
                                   tile_size=int(config.get("eval", {}).get("tile_size", 1024)),
                                   path=workdir / "baseline.json", progress=progress)
        print(format_table(result))
    return state


def _usage() -> str:
    """The command-line part of the module docstring: what absl's ``--help`` shows."""
    return (__doc__ or "").split("\nDeveloper notes\n", 1)[0].rstrip() + "\n"


def main(argv=None) -> int:
    from absl import app, flags
    from ml_collections import config_flags

    from dng_jax import cli

    flags_ = flags.FLAGS

    def define():
        config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file (required); override "
                                        "its fields with --config.<section>.<field>=value.", lock_config=True)
        flags.DEFINE_string("workdir", None, "Directory for checkpoints/, metrics.csv, config.json and "
                                             "baseline.json (required); rerun with the same one to resume.")
        flags.mark_flags_as_required(["config", "workdir"])

    def _main(args):
        from absl import logging

        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments {args[1:]}")
        if not flags_["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
        try:
            train_and_evaluate(flags_.config, flags_.workdir)
        except cli.user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    return cli.run(define, _main, argv)


if __name__ == "__main__":
    __doc__ = _usage()  # absl's --help prints __main__'s docstring: the usage, not the developer notes
    sys.exit(main())
