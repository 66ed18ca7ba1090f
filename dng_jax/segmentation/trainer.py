"""The segmentation training driver (paper II-C): U-Net/ResNet, LAMB, pixel-wise cross-entropy.

:func:`train_and_evaluate` trains on the labelled CT1 training images, data parallel over every device
(of every process, :mod:`dng_jax.distributed`), with checkpoints every ``train.checkpoint_every`` steps
and exact resumption, and at the end scores the test images (known / unknown / all). Written to the
work dir (by process 0):

  checkpoints/   orbax checkpoints (state + the config + the augmentation key)
  metrics.csv    training loss / accuracy / images per second, evaluation loss / pixel accuracy (on
                 fixed crops of the validation images; the test images under the paper protocol)
  metrics.jsonl  the same rows as JSON lines (and tensorboard/ when tensorboardX is installed)
  config.json    the full configuration of the run
  baseline.json  the MAP on the test images, per image and cell type (if ``eval.enabled``)
  manifest.json  the rule's cell types, only for data without cell types of its own (not for the Kaggle
                 stage-1 set, whose manifest is shipped, nor the folder layout)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from dng_jax import distributed
from dng_jax.config import (TRAINING_FIELDS, ExperimentConfig, differing_fields, training_volatile,
                            experiment_config)
from dng_jax.data.dsb2018 import Sample, load_samples
from dng_jax.data.partition import MANIFEST_CACHE, cache_manifest, open_data, pseudo_label_ids
from dng_jax.data.pipeline import CropBatches, MixedBatches, prefetch, segmentation_batches
from dng_jax.errors import CheckpointError, ConfigError, ConfigMismatchError
from dng_jax.evaluation.evaluator import SegmentationEvaluator, format_table
from dng_jax.io.atomic import atomic_write_text
from dng_jax.io.workdir import WorkdirLock, check_output_dir, prepare_dir
from dng_jax.metric_writers import create_default_writer, up_to_step
from dng_jax.models import make_model
from dng_jax.progress import step_bar, step_done
from dng_jax.segmentation.checkpointing import Checkpointer
from dng_jax.segmentation.self_training import (TeacherSettings, confident_share, load_pseudo_labels, save_agreement,
                                               save_pseudo_labels, teach)
from dng_jax.segmentation.steps import (make_augment_fn, make_eval_step, make_segmentation_loss, make_train_step,
                                        make_weighted_loss, segmentation_loss)
from dng_jax.segmentation.train_state import TrainState, create_train_state, make_optimizer
from dng_jax.sharding import jit_eval_step, jit_train_step, make_mesh, replicate, shard_batch
from dng_jax.typed_config import as_dict

__all__ = ["METRIC_FIELDS", "train_and_evaluate"]

METRIC_FIELDS = ("step", "epoch", "split", "loss", "accuracy", "grad_norm", "images_per_sec", "wall_time")


def _typed(config: Any) -> ExperimentConfig:
    return config if isinstance(config, ExperimentConfig) else experiment_config(config)


def train_and_evaluate(config, workdir: str | os.PathLike, *, samples: list[Sample] | None = None,
                       eval_samples: list[Sample] | None = None, evaluate: bool | None = None,
                       progress: bool = True, quiet: bool = False) -> TrainState:
    """Train the segmentation network of ``config`` in ``workdir`` (resuming from its checkpoints).

    ``config`` is an :class:`ExperimentConfig` or a ConfigDict (converted and checked first).
    ``samples`` / ``eval_samples`` replace the data of ``config.data`` (tests; no MAP evaluation then).
    ``train.max_steps`` stops early, as if interrupted, after writing a checkpoint. ``evaluate``
    (default ``eval.enabled``) scores the test images into ``baseline.json``; ``quiet``: no line per
    evaluation during training (the final table is printed). Returns the final state.
    """
    cfg = _typed(config)
    # check, then write: the work dir's path, the data, its known type and splits, the batch and a resumed
    # training's config, before the work dir is made or locked (a failed start leaves the file system as it was)
    check_output_dir(workdir, "--workdir")
    data = _training_data(cfg, Path(workdir), samples, eval_samples, progress)
    _check_training(cfg, Path(workdir), data)
    workdir = prepare_dir(workdir)
    with WorkdirLock(workdir, "--workdir"):
        if data.source is not None:
            cache_manifest(data.source, data.manifest, workdir / MANIFEST_CACHE)
        return _train(cfg, workdir, data, evaluate, progress, quiet)


def _check_training(cfg: ExperimentConfig, workdir: Path, data: _TrainingData) -> None:
    """What :func:`train_and_evaluate` refuses before it writes: too few images for a batch, a batch the
    devices cannot share, self-training without unlabeled images, a work dir holding another training."""
    tcfg, n_devices = cfg.train, jax.device_count()
    if len(data.samples) < tcfg.batch_size:
        raise ConfigError(f"config field train.batch_size: {len(data.samples)} training images cannot fill one "
                          f"batch of {tcfg.batch_size}")
    if tcfg.batch_size % n_devices:
        raise ConfigError(f"config field train.batch_size: {tcfg.batch_size} must be a multiple of the "
                          f"{n_devices} devices")
    if tcfg.pseudo_label_rounds and (data.source is None or not data.splits.cluster):
        raise ConfigError("config field train.pseudo_label_rounds: self-training needs the data's unlabeled "
                          "(clustering) images; there are none")
    if (workdir / "checkpoints").is_dir():
        with Checkpointer(workdir / "checkpoints", max_to_keep=None, read_only=True) as ckpt:
            if ckpt.latest_step() is not None:  # resuming: the run must go on with the config it started with
                _check_resumed_config(ckpt, cfg, workdir)


class SelfTraining:
    """The rounds of ``train.pseudo_label_rounds`` (:mod:`dng_jax.segmentation.self_training`): which round a
    step belongs to (0: the teacher), and each round's pseudo-labeled crops of ``train.pseudo_label_images``,
    labeled by ``train.pseudo_label_teacher`` (from the network as it is when the round starts) and saved,
    so a resumed round trains on the same targets."""

    def __init__(self, cfg: ExperimentConfig, workdir: Path, steps_per_epoch: int, source, splits, progress: bool):
        tcfg = cfg.train
        self.cfg, self.workdir, self.source, self.splits, self.progress = cfg, workdir, source, splits, progress
        self.teacher_steps = tcfg.epochs * steps_per_epoch
        self.student_steps = (tcfg.pseudo_label_epochs or tcfg.epochs) * steps_per_epoch
        self.ids = pseudo_label_ids(splits, tcfg.pseudo_label_images) if splits is not None else []
        if tcfg.pseudo_label_rounds and (source is None or not self.ids):
            if tcfg.pseudo_label_images != "clustering":
                raise ConfigError(f"config field train.pseudo_label_images: the teacher pool "
                                  f"({tcfg.pseudo_label_images!r}) is empty; it is half of the other types' validation "
                                  f"images (the wide protocol with data.unknown_val_fraction > 0 makes them) and the "
                                  f"unlabeled images")
            raise ConfigError("config field train.pseudo_label_rounds: self-training needs the data's unlabeled "
                              "(clustering) images; there are none")
        self._images: dict | None = None

    def round_of(self, step: int) -> int:
        return 0 if step < self.teacher_steps else 1 + (step - self.teacher_steps) // self.student_steps

    def path(self, r: int) -> Path:
        return self.workdir / "pseudo_labels" / f"round{r}.npz"

    def batches(self, r: int, state) -> CropBatches:
        """Crop batches of round ``r``'s pseudo-labeled images (labeled now from ``state`` if not yet)."""
        if self._images is None:
            self._images = {i: self.source.load(i, with_labels=False).image for i in self.ids}
        if not self.path(r).exists():
            variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
            distributed.on_writer(self._label, r, variables)
        samples = load_pseudo_labels(self.path(r), self._images)
        tcfg = self.cfg.train
        kept = (f" ({len(samples)} of {len(self._images)} kept: agreement >= {tcfg.pseudo_label_agreement})"
                if tcfg.pseudo_label_teacher == "agreement" else "")
        if distributed.is_writer():
            tqdm.write(f"self-training round {r}: {len(samples)} pseudo-labeled images, "
                       f"{confident_share(samples):.0%} of their pixels confident{kept}")
        if len(samples) < tcfg.batch_size:
            raise ConfigError(f"config field train.pseudo_label_rounds: {len(samples)} unlabeled images cannot fill a "
                              f"batch of {tcfg.batch_size}{kept}")
        return CropBatches(samples, tcfg.batch_size, self.cfg.data.crop_size, seed=tcfg.seed + 1000 * r)

    def _label(self, r: int, variables) -> None:
        labels = teach(TeacherSettings.from_config(self.cfg), variables, make_model(self.cfg.model), self._images,
                       progress=self.progress)
        if self.cfg.train.pseudo_label_teacher == "agreement":
            save_agreement(self.path(r).with_name(f"round{r}_agreement.json"), labels.agreement)
        save_pseudo_labels(self.path(r), labels.targets)


def _check_resumed_config(ckpt: Checkpointer, cfg: ExperimentConfig, workdir: Path) -> None:
    """Refuse to resume a training with another model, data, augmentation or optimizer setting."""
    meta = ckpt.restore_meta()
    try:
        stored = experiment_config(meta.get("config", {}))
    except ConfigError as e:
        raise CheckpointError(f"{ckpt.directory}: the stored config is not valid ({e})") from None
    diffs = differing_fields(stored, cfg, TRAINING_FIELDS, training_volatile(cfg))
    if diffs and not _adds_self_training(stored, cfg, diffs):
        raise ConfigMismatchError(f"{workdir} holds a training made with another configuration (differs in: "
                                  f"{', '.join(diffs)}); resume it with the same config or use a new --workdir")


def _adds_self_training(stored: ExperimentConfig, cfg: ExperimentConfig, diffs: list[str]) -> bool:
    """Whether ``cfg`` only gives the stored training self-training rounds it had none of: with a constant
    learning rate its steps so far are then exactly ``cfg``'s teacher phase, so resuming it trains the rounds
    as a fresh training of ``cfg`` would (a cosine schedule spans the rounds too, and would differ)."""
    return (stored.train.pseudo_label_rounds == 0 and cfg.train.pseudo_label_rounds > 0
            and cfg.train.schedule == "constant"
            and all(d.startswith("train.pseudo_label_") for d in diffs))


class _TrainingData(NamedTuple):
    samples: list[Sample]  # the labelled training images
    eval_samples: list[Sample] | None  # the images monitored during training
    source: Any  # the collection they come from (None when the caller passed the samples)
    splits: Any
    manifest: dict[str, str] | None = None


def _training_data(cfg: ExperimentConfig, workdir: Path, samples, eval_samples, progress: bool) -> _TrainingData:
    """The CT1 training images and the monitored images of ``cfg.data``, unless the caller passed them; read
    only (a manifest the work dir caches is used, none is written)."""
    if samples is not None:
        return _TrainingData(samples, eval_samples, None, None)
    source, manifest, splits = open_data(cfg.data, workdir if workdir.is_dir() else None, progress,
                                         write_cache=False)
    ids = list(splits.train_ct1)
    if cfg.train.max_train_images:
        ids = ids[: cfg.train.max_train_images]
    samples = load_samples(source, ids, "load train", progress)
    if eval_samples is None:
        # monitored on the CT1 validation images where the protocol has them (wide), else the test images
        eval_samples = load_samples(source, splits.val_known or splits.test_all, "load eval", progress)
    return _TrainingData(samples, eval_samples, source, splits, manifest)


def _crop_batches(cfg: ExperimentConfig, samples, seed: int, batch_size: int) -> CropBatches:
    return segmentation_batches(samples, batch_size, cfg.data.crop_size, cfg.data.border_width, seed,
                                touching_only=cfg.data.border == "touching")


class _Schedule(NamedTuple):
    steps_per_epoch: int
    total_steps: int  # every epoch of every self-training round
    stop_at: int  # ``train.max_steps`` (if earlier): stop there as if interrupted


class _StepFunctions(NamedTuple):
    train: Callable  # the labelled batches' step
    student: Callable | None  # self-training: labelled beside pseudo-labeled crops, weighted
    eval: Callable


def _step_functions(cfg: ExperimentConfig, mesh) -> _StepFunctions:
    """The compiled train, self-training and evaluation steps of ``cfg``, data parallel over ``mesh``."""
    tcfg = cfg.train
    train_loss = make_segmentation_loss(tcfg.class_weights, tcfg.dice_weight)
    train = jit_train_step(make_train_step(train_loss, trainable=tcfg.trainable,
                                           augment_fn=make_augment_fn(cfg.augment)), mesh)
    student = jit_train_step(make_train_step(make_weighted_loss(tcfg.class_weights, tcfg.dice_weight),
                                             trainable=tcfg.trainable, augment_fn=make_augment_fn(cfg.augment)),
                             mesh) if tcfg.pseudo_label_rounds else None
    return _StepFunctions(train, student, jit_eval_step(make_eval_step(segmentation_loss), mesh))


def _restore_or_init(ckpt: Checkpointer, cfg: ExperimentConfig, workdir: Path, mesh, init, aug_key, cfg_dict: dict):
    """``(state, aug_key, start_step)``: the latest checkpoint's (its augmentation key too), else ``init()``'s,
    both replicated over ``mesh``; writes ``config.json``."""
    state, meta = ckpt.restore_or_init(init, sharding=NamedSharding(mesh, P()))
    atomic_write_text(workdir / "config.json", json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")
    start_step = int(state.step)
    if meta is not None and "rng" in meta:  # the key the run started with (same seed -> same key)
        aug_key = jax.random.wrap_key_data(jnp.asarray(np.asarray(meta["rng"], np.uint32)))
    return replicate(state, mesh), replicate(aug_key, mesh), start_step


def _train(cfg: ExperimentConfig, workdir: Path, data: _TrainingData, evaluate, progress, quiet) -> TrainState:
    tcfg = cfg.train
    batches = _crop_batches(cfg, data.samples, tcfg.seed, tcfg.batch_size)
    steps_per_epoch = batches.steps_per_epoch
    total_steps = tcfg.total_epochs * steps_per_epoch
    schedule = _Schedule(steps_per_epoch, total_steps, min(total_steps, tcfg.max_steps) if tcfg.max_steps
                         else total_steps)
    rounds = SelfTraining(cfg, workdir, steps_per_epoch, data.source, data.splits, progress)
    mesh = make_mesh()
    model = make_model(cfg.model)
    crop = cfg.data.crop_size
    init_key, aug_key = jax.random.split(jax.random.key(tcfg.seed))
    tx = make_optimizer(tcfg, trainable=tcfg.trainable, steps_per_epoch=steps_per_epoch)
    init_fn = partial(create_train_state, model=model, cfg=tcfg, input_shape=(1, crop, crop, 3), tx=tx)
    steps = _step_functions(cfg, mesh)
    cfg_dict = json.loads(json.dumps(as_dict(cfg)))

    with Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.max_to_keep) as ckpt:
        state, aug_key, start_step = _restore_or_init(ckpt, cfg, workdir, mesh, lambda: init_fn(init_key), aug_key,
                                                      cfg_dict)
        writer = create_default_writer(workdir, "metrics", METRIC_FIELDS,
                                       keep=up_to_step(start_step) if start_step > 0 else None,
                                       purge_step=start_step + 1 if start_step > 0 else None)
        loop = _TrainingLoop(cfg, schedule, mesh, batches, rounds, steps, data.eval_samples, aug_key, ckpt, writer,
                             cfg_dict, quiet)
        state, step = loop.run(state, start_step, progress)

    do_eval = cfg.eval.enabled if evaluate is None else evaluate
    if do_eval and step >= total_steps and data.source is not None and data.splits is not None:
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        distributed.on_writer(_evaluate, cfg, variables, model, data.source, data.splits, workdir,
                              progress)  # by process 0
    return state


class _Throughput:
    """Images per second since the last logged step."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.since, self.steps = time.time(), 0

    def images_per_sec(self, batch_size: int) -> float:
        dt = time.time() - self.since
        return self.steps * batch_size / dt if dt > 0 else float("nan")


@dataclasses.dataclass(frozen=True)
class _TrainingLoop:
    """The step loop of one training: batches, the compiled steps, metrics, checkpoints and the evaluation
    after an epoch. Step ``s`` draws its batch from epoch ``s // steps_per_epoch`` at position
    ``s % steps_per_epoch`` and its augmentation from ``aug_key``, so a resumed run takes the same steps."""

    cfg: ExperimentConfig
    schedule: _Schedule
    mesh: Any
    batches: CropBatches
    rounds: SelfTraining
    steps: _StepFunctions
    eval_samples: list[Sample] | None
    aug_key: Any
    ckpt: Checkpointer
    writer: Any
    cfg_dict: dict
    quiet: bool = False  # no line per evaluation

    def run(self, state, start_step: int, progress: bool):
        """Train from ``start_step`` to ``schedule.stop_at``; returns the final ``(state, step)``, checkpointed."""
        step = start_step
        bar = step_bar(self.schedule.stop_at, "train", initial=start_step, unit="step", disable=not progress,
                       dynamic_ncols=True, mininterval=1.0)
        throughput = _Throughput()
        try:
            while step < self.schedule.stop_at:
                state, step = self._epoch(state, step, bar, throughput)
            self.ckpt.save(step, state, self.meta_for(step), force=True)
        finally:
            bar.close()
            self.ckpt.wait()
            self.writer.close()
        return state, step

    def meta_for(self, step: int) -> dict:
        spe = self.schedule.steps_per_epoch
        return {"global_step": step, "epoch": step // spe, "step_in_epoch": step % spe, "steps_per_epoch": spe,
                "rng": np.asarray(jax.random.key_data(self.aug_key)).tolist(), "config": self.cfg_dict}

    def _epoch(self, state, step: int, bar, throughput: _Throughput):
        """Train from ``step`` to the end of its epoch (or to ``stop_at``), then evaluate if it is time."""
        tcfg, stop_at = self.cfg.train, self.schedule.stop_at
        epoch, in_epoch = divmod(step, self.schedule.steps_per_epoch)
        r = self.rounds.round_of(step)
        source_of_batches, step_fn = (self.batches, self.steps.train) if r == 0 else (
            MixedBatches(self.batches, self.rounds.batches(r, state), tcfg.pseudo_label_weight), self.steps.student)
        for batch in prefetch(source_of_batches.epoch(epoch, start_step=in_epoch)):
            state, metrics = step_fn(state, shard_batch(batch, self.mesh), self.aug_key)
            step += 1
            throughput.steps += 1
            step_done(bar, metrics)
            if step % tcfg.log_every == 0 or step == stop_at:
                self._log_train(step, epoch, metrics, bar, throughput)
            if tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0 and step < stop_at:
                self.ckpt.save(step, state, self.meta_for(step))
            if step >= stop_at:
                break
        self._evaluate_after_epoch(state, step, r, bar)
        return state, step

    def _log_train(self, step: int, epoch: int, metrics, bar, throughput: _Throughput) -> None:
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        ips = throughput.images_per_sec(self.cfg.train.batch_size)
        self.writer.write_scalars(step, {"epoch": epoch, "split": "train", "images_per_sec": ips,
                                         "wall_time": time.time(), **m})
        bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['accuracy']:.3f}", ips=f"{ips:.1f}")
        throughput.reset()

    def _evaluate_after_epoch(self, state, step: int, r: int, bar) -> None:
        """At the end of every ``eval_every_epochs``-th epoch, the last one and a self-training round's last."""
        tcfg, spe = self.cfg.train, self.schedule.steps_per_epoch
        done_epochs = step // spe
        if step % spe == 0 and (done_epochs % tcfg.eval_every_epochs == 0 or step == self.schedule.total_steps
                                or self.rounds.round_of(step) != r):
            ev = self.evaluate_crops(state, step, done_epochs - 1)
            if ev is not None and distributed.is_writer() and not self.quiet:
                bar.write(f"epoch {step // spe}/{tcfg.total_epochs}: eval loss {ev['loss']:.4f} "
                          f"pixel accuracy {ev['accuracy']:.3f}" + (f" (self-training round {r})" if r else ""))

    def evaluate_crops(self, state, step: int, epoch: int) -> dict[str, float] | None:
        """Mean cross-entropy / pixel accuracy over fixed crops of the eval images (no augmentation); None
        when they cannot fill a batch on every device."""
        n_dev = self.mesh.devices.size
        bs = min(self.cfg.train.batch_size, len(self.eval_samples or ())) // n_dev * n_dev
        if bs < 1:
            return None
        sums: dict[str, float] = {}
        n = 0
        for b in _crop_batches(self.cfg, self.eval_samples, self.cfg.train.seed + 10_000, bs).epoch(0):
            for k, v in jax.device_get(self.steps.eval(state, shard_batch(b, self.mesh))).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        means = {k: v / n for k, v in sums.items()}
        self.writer.write_scalars(step, {"epoch": epoch, "split": "eval", "wall_time": time.time(), **means})
        return means


def _evaluate(cfg: ExperimentConfig, variables, model, source, splits, workdir: Path, progress: bool) -> None:
    scores = SegmentationEvaluator.from_config(cfg)(variables, model, source, splits.test, progress=progress,
                                                    known_type=splits.known_type)
    scores.write_json(workdir / "baseline.json")
    print(format_table(scores))
