"""python -m dng_jax.plan: what a sweep will need before it is submitted: memory, FLOPs and time per stage.

usage: python -m dng_jax.plan [--config configs/<file>.py] [--config.<section>.<field>=V]
                              [--device_memory_gb G] [--time_steps N] [--time_runs R] [--workload FILE]
                              [--stages train,features,cluster,retrain,eval] [--json FILE]
                              [--timings PLAN.json ...]

Every jitted step of the experiment is compiled at the config's shapes on the current backend, without
running the experiment: the segmentation train step (batch ``train.batch_size``, data-parallel over this
process's devices), the latent extraction (``cluster_data.batch_size``), one NG / kMC / GNG epoch for
``sweep.seeds`` vmapped seeds, the retraining step for a chunk of runs and the evaluation forward pass at
every tile shape the test images need. Per step it prints XLA's memory per device
(``compiled.memory_analysis()``: arguments + outputs + temporaries - donated) and FLOPs
(``compiled.cost_analysis()``: XLA's count; on a GPU it leaves out the convolutions that cuDNN runs, so
take FLOPs from a CPU plan), then times ``--time_steps`` calls and multiplies by how often the sweep
makes them. The watershed and the metric (host CPU) are timed on synthetic images of the test shapes.

``sweep.seeds_per_chunk``: the retraining step is compiled for 1 and 2 runs; its memory grows by the same
amount per run, so the largest chunk that fits ``--device_memory_gb`` (default: the device's own memory;
on a CPU give it) beside what stays resident (the clustering images, the baseline) is computed, balanced so
the chunks of ``sweep.seeds`` are equal, and compiled once more to check.

How many images: from the config's data (``data.path``: CT1 training images, the scored test images and
their shapes), or from ``--workload`` (the ``workload`` entry of an earlier ``--json`` output) where the
data is not on this machine. Projections scale the timed calls linearly: in runs where fewer runs were
timed than a chunk holds (``--time_runs``, default 1 on a CPU), and nowhere else. They leave out what a
sweep does besides the steps (host batching, checkpoints, the report), so they are a floor.

``--timings PLAN.json`` (repeatable): no device of the kind planned for at hand, project from one it was
measured on: every step's time per call (per run for the retraining step, per image for the host's
scoring) is taken from an earlier plan's ``--json`` made there, matched by the step's shapes and the
model's dtype (float32's time where the dtype was not timed), and multiplied by this config's counts;
nothing is compiled or timed here. docs/gpu/plan.json holds the H200's (float32), docs/gpu/retrain_bf16.json
its bfloat16 retraining step.

Exit status 0; 2 with one line "error: ..." on a bad flag, config or unreadable data.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from dng_jax import cli
from dng_jax.clustering import gng as gng_lib
from dng_jax.clustering import neural_gas as ng_lib
from dng_jax.clustering.methods import build_method
from dng_jax.config import ExperimentConfig
from dng_jax.data.partition import open_data
from dng_jax.errors import DataError
from dng_jax.evaluation.metrics import image_score
from dng_jax.evaluation.scores import scored_images
from dng_jax.experiment.retrain import EncoderClassifier, init_runs, make_optimizer as retrain_optimizer
from dng_jax.experiment.retrain import make_retrain_step
from dng_jax.experiment.features import pooled_latent_batch
from dng_jax.experiment.sweep import Configuration, sweep_configurations
from dng_jax.io.atomic import atomic_write_text
from dng_jax.models import STRIDE, make_model, with_conv
from dng_jax.models.conv import resolve_retrain_conv
from dng_jax.segmentation.inference import softmax_forward, tile_starts
from dng_jax.segmentation.postprocess import probs_to_instances
from dng_jax.segmentation.steps import make_augment_fn, make_segmentation_loss, make_train_step
from dng_jax.segmentation.train_state import create_train_state, make_optimizer
from dng_jax.sharding import jit_train_step, make_mesh, replicate, shard_batch

__all__ = ["Workload", "StepPlan", "Plan", "plan_sweep", "project_plan", "read_timings", "scored_networks",
           "chunk_for_memory", "forward_shapes", "main"]

STAGES = ("train", "features", "cluster", "retrain", "eval")
MEMORY_HEADROOM = 0.9  # of the device's memory; the rest for the allocator's fragmentation and XLA's workspaces


class Workload(NamedTuple):
    """How much data the sweep goes through (what the config's shapes do not say)."""

    train_images: int  # CT1 training images: segmentation steps per epoch = train_images // batch_size
    scored_images: int  # test images scored per run (baseline and every retrained run)
    image_shapes: dict[str, int]  # "HxW" -> scored test images of that size
    source: str  # where the counts come from

    def to_json(self) -> dict:
        return dict(self._asdict())


class StepPlan(NamedTuple):
    """One jitted step: what XLA says of it, how long it took, and how often the sweep calls it."""

    stage: str
    step: str  # what the step is, with its shapes
    bytes_per_device: int | None  # arguments + outputs + temporaries - donated (memory_analysis)
    temp_bytes: int | None
    flops: float | None  # per call (cost_analysis)
    compile_s: float
    call_s: float | None  # median of the timed calls (scaled to the planned size where noted)
    calls: float  # how many calls the whole sweep makes
    note: str = ""

    @property
    def projected_s(self) -> float | None:
        return None if self.call_s is None else self.call_s * self.calls


class Plan(NamedTuple):
    backend: str
    device_kind: str
    devices: int
    device_memory_bytes: int | None
    seeds_per_chunk: int  # the largest chunk that fits (or the config's, without a memory budget)
    chunk_memory: dict[str, Any]  # the linear memory model of the retraining step
    workload: Workload
    steps: list[StepPlan]
    dtype: str = "float32"  # model.dtype
    timed_on: str = ""  # "": timed here; else the plans whose timings were projected (--timings)

    def total_s(self, stage: str | None = None) -> float:
        return sum(s.projected_s or 0.0 for s in self.steps if stage is None or s.stage == stage)

    def compile_s(self) -> float:
        """Compiling every step once (the retraining step: once per configuration's number of classes)."""
        return sum(s.compile_s for s in self.steps)

    def to_json(self) -> dict:
        return {"backend": self.backend, "device_kind": self.device_kind, "devices": self.devices,
                "dtype": self.dtype, "timed_on": self.timed_on,
                "device_memory_bytes": self.device_memory_bytes, "seeds_per_chunk": self.seeds_per_chunk,
                "chunk_memory": self.chunk_memory, "workload": self.workload.to_json(),
                "steps": [dict(s._asdict(), projected_s=s.projected_s) for s in self.steps],
                "projected_s": {st: self.total_s(st) for st in STAGES} | {"total": self.total_s()},
                "compile_s": self.compile_s()}


# ------------------------------------------------------------------------------------------- helpers


def analyse_compiled(compiled) -> tuple[int | None, int | None, float | None]:
    """``(bytes per device, temporaries, flops)`` of a compiled step; None where the backend says nothing."""
    total = temp = flops = None
    try:
        ma = compiled.memory_analysis()
        if ma is not None:
            temp = int(ma.temp_size_in_bytes)
            total = int(ma.argument_size_in_bytes + ma.output_size_in_bytes + temp - ma.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) and ca else ca
        if ca and "flops" in ca:
            flops = float(ca["flops"])
    except Exception:  # noqa: BLE001
        pass
    return total, temp, flops


def _compile(fn, *args) -> tuple[Any, float]:
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def _zeros(init: Callable[[], Any]):
    """What ``init()`` returns, as zeros: traced, never compiled or run (a step's time and memory do not
    depend on the values of its weights, and initialising a ResNet-50 costs more than compiling its step)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(init))


def median_time(call: Callable[[], Any], n: int) -> float:
    """Median wall time of ``n`` calls of ``call`` after one untimed call (results waited for)."""
    jax.block_until_ready(call())
    times = []
    for _ in range(max(1, n)):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def forward_shapes(h: int, w: int, tile: int, overlap: int = 64, tta: bool = False) -> Counter:
    """The ``(H, W)`` inputs of the forward passes :func:`~dng_jax.segmentation.inference.predict_probs`
    makes for one ``h x w`` image (padded to the model's stride, tiled above ``tile``; x8 views with TTA)."""
    out: Counter = Counter()
    views = [(h, w), (w, h)] * 4 if tta else [(h, w)]
    for vh, vw in views:
        ph, pw = -(-vh // STRIDE) * STRIDE, -(-vw // STRIDE) * STRIDE
        th, tw = min(tile, ph), min(tile, pw)
        out[(th, tw)] += len(tile_starts(ph, th, overlap)) * len(tile_starts(pw, tw, overlap))
    return out


def chunk_for_memory(per_run: float, fixed: float, resident: float, budget: float, seeds: int) -> int:
    """The largest number of runs per chunk whose step fits ``budget`` bytes (``fixed + per_run x R``
    beside ``resident``), balanced so that ``seeds`` splits into equal chunks; at least 1, at most ``seeds``."""
    room = budget - fixed - resident
    most = int(room // per_run) if per_run > 0 else seeds
    most = max(1, min(seeds, most))
    return -(-seeds // -(-seeds // most))  # the same number of chunks, as equal as they can be


# ------------------------------------------------------------------------------------------ workload


def workload_from_data(cfg: ExperimentConfig, progress: bool = False) -> Workload:
    """Counts and test-image shapes of ``cfg.data`` under its protocol (the images are decoded once)."""
    source, manifest, splits = open_data(cfg.data, None, progress)
    try:
        n_train = len(splits.train_ct1)
        if cfg.train.max_train_images:
            n_train = min(n_train, cfg.train.max_train_images)
        scored = scored_images(splits, manifest, cfg.eval.wide_unknown and splits.protocol == "paper")
        shapes: Counter = Counter()
        for t, ids in scored.items():
            for i in ids:
                h, w = source.load(i, with_labels=False).image.shape[:2]
                shapes[f"{h}x{w}"] += 1
    finally:
        source.close()
    return Workload(n_train, sum(shapes.values()), dict(shapes), str(cfg.data.path or "bundled mini-set"))


def workload_from_json(path: str) -> Workload:
    try:
        obj = json.loads(Path(path).read_text())
        w = obj.get("workload", obj)
        return Workload(int(w["train_images"]), int(w["scored_images"]), {str(k): int(v) for k, v in
                                                                           w["image_shapes"].items()}, f"{path}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"--workload {path}: not a plan's JSON with a 'workload' entry ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------- the stages


def plan_train(cfg: ExperimentConfig, workload: Workload, n_time: int) -> StepPlan:
    """The segmentation train step (forward, backward, LAMB, on-device augmentation), data-parallel."""
    tcfg, crop = cfg.train, cfg.data.crop_size
    mesh = make_mesh()
    model = make_model(cfg.model)
    steps_per_epoch = max(1, workload.train_images // tcfg.batch_size)
    tx = make_optimizer(tcfg, trainable=tcfg.trainable, steps_per_epoch=steps_per_epoch)
    state = replicate(_zeros(lambda: create_train_state(jax.random.key(0), model, tcfg, (1, crop, crop, 3), tx=tx)), mesh)
    step = jit_train_step(make_train_step(make_segmentation_loss(tcfg.class_weights, tcfg.dice_weight),
                                          trainable=tcfg.trainable, augment_fn=make_augment_fn(cfg.augment)), mesh)
    rng = np.random.default_rng(0)
    batch = shard_batch((rng.integers(0, 256, (tcfg.batch_size, crop, crop, 3), dtype=np.uint8),
                         rng.integers(0, 3, (tcfg.batch_size, crop, crop), dtype=np.uint8)), mesh)
    key = jax.random.key(1)
    compiled, compile_s = _compile(step, state, batch, key)
    total, temp, flops = analyse_compiled(compiled)
    box = [state]

    def call():
        box[0], metrics = compiled(box[0], batch, key)
        return metrics

    call_s = median_time(call, n_time)
    return StepPlan("train", f"segmentation train step, batch {tcfg.batch_size} x {crop}x{crop}, "
                    f"{mesh.devices.size} device(s)", total, temp, flops, compile_s, call_s,
                    tcfg.total_epochs * steps_per_epoch, f"{tcfg.total_epochs} epochs x {steps_per_epoch} steps")


def plan_features(cfg: ExperimentConfig, n_time: int) -> StepPlan:
    """The pooled latent of a batch of clustering images (the encoder in eval mode)."""
    cc = cfg.cluster_data
    model = make_model(cfg.model)
    variables = _zeros(lambda: model.init(jax.random.key(0), jnp.zeros((1, cc.crop_size, cc.crop_size, 3)), train=False))
    x = jnp.zeros((cc.batch_size, cc.crop_size, cc.crop_size, 3), jnp.float32)
    compiled, compile_s = _compile(pooled_latent_batch, model, variables, x)
    total, temp, flops = analyse_compiled(compiled)
    call_s = median_time(lambda: compiled(variables, x), n_time)
    calls = math.ceil(cc.n_images / cc.batch_size) * cfg.retrain.rounds
    return StepPlan("features", f"pooled latent, batch {cc.batch_size} x {cc.crop_size}x{cc.crop_size}", total, temp,
                    flops, compile_s, call_s, calls, f"{cc.n_images} images" +
                    (f" x {cfg.retrain.rounds} rounds (later rounds per run: not counted)" if cfg.retrain.rounds > 1 else ""))


def _cluster_data(n: int, d: int) -> jax.Array:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, d)) * 3
    return jnp.asarray(centres[rng.integers(0, 20, n)] + rng.normal(size=(n, d)), jnp.float32)


def plan_clustering(cfg: ExperimentConfig, confs: list[Configuration], n_time: int, steps: int) -> list[StepPlan]:
    """Per configuration: ``steps`` patterns of an epoch for ``sweep.seeds`` vmapped seeds, timed in every
    phase of constant neighbourhood size (NG / kMC) or in one epoch (GNG), scaled to the whole schedule."""
    S, n, d = cfg.sweep.seeds, cfg.cluster_data.n_images, cfg.cluster_data.pca_dim
    X = _cluster_data(n, d)
    steps = min(steps, n)
    out = []
    for conf in confs:
        _, method = build_method(conf.name, conf.k, cfg.clustering)
        hp = dict(method.hyperparameters)
        keys = jax.random.split(jax.random.key(0), S)
        orders = jnp.asarray(np.stack([np.random.default_rng(s).permutation(n)[:steps] for s in range(S)])[:, None])
        t0 = time.perf_counter()
        if conf.method in ("ng", "kmc"):
            ncfg = ng_lib.NGConfig(**{k: v for k, v in hp.items() if k in ng_lib.NGConfig.__dataclass_fields__})
            ms = ng_lib.neighbourhood_sizes(ncfg)
            states = jax.vmap(lambda kk: ng_lib.init(kk, X, ncfg))(keys)
            per_pattern, parts = 0.0, []
            for m, epochs in sorted(Counter(ms.tolist()).items(), reverse=True):
                start = int(np.argmax(ms == m))
                st = states._replace(epoch=jnp.full((S,), start, jnp.int32))
                s = median_time(lambda st=st: ng_lib.update_epochs_many(st, X, orders, ncfg).centroids, n_time) / steps
                per_pattern += s * epochs
                parts.append(f"m={m}:{epochs}ep")
            call_s, calls, note = per_pattern, n, " ".join(parts)
        elif conf.method == "gng":
            gcfg = gng_lib.GNGConfig(**{k: v for k, v in hp.items() if k in gng_lib.GNGConfig.__dataclass_fields__})
            s0 = jax.vmap(lambda kk: gng_lib.init(kk, X, gcfg))(keys)
            call_s = median_time(lambda: gng_lib.update_epochs_many(s0, X, orders, gcfg).w, n_time) / steps
            calls, note = n * gcfg.epochs, f"{gcfg.epochs} epochs, capacity {gcfg.max_units} units"
        else:
            out.append(StepPlan("cluster", f"{conf.method}({conf.k}) x {S} seeds", None, None, None, 0.0, None, 0,
                                "a file-loaded method: not planned"))
            continue
        elapsed = time.perf_counter() - t0
        out.append(StepPlan("cluster", f"{conf.method}({conf.k}) x {S} seeds, {n} x {d} patterns, per pattern",
                            None, None, None, elapsed, call_s, calls, note))
    return out


def retrain_parts(cfg: ExperimentConfig, n_classes: int):
    """The retraining step of one configuration and abstract arguments for ``R`` runs."""
    rc, cc = cfg.retrain, cfg.cluster_data
    unet = with_conv(make_model(cfg.model), resolve_retrain_conv(rc.conv, cfg.model.conv))
    clf = EncoderClassifier(unet.encoder, n_classes)
    steps_per_epoch = max(1, cc.n_images // min(rc.batch_size, cc.n_images))
    joint = rc.segmentation_weight > 0
    step = make_retrain_step(clf, rc, steps_per_epoch, cfg.augment, unet if joint else None,
                             cfg.train if joint else None)
    unet_vars = jax.eval_shape(lambda: unet.init(jax.random.key(0), jnp.zeros((1, cc.crop_size, cc.crop_size, 3)),
                                                 train=False))
    enc = {"params": unet_vars["params"]["encoder"], "batch_stats": unet_vars["batch_stats"]["encoder"]}
    dec = {"params": unet_vars["params"]["decoder"], "batch_stats": unet_vars["batch_stats"]["decoder"]}
    optimizer = retrain_optimizer(rc, steps_per_epoch)
    batch = min(rc.batch_size, cc.n_images)

    def args(R: int, concrete: bool = False):
        make = (lambda f: f()) if concrete else jax.eval_shape
        ev = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), enc) if concrete else enc
        dv = (jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), dec) if concrete else dec) if joint else None
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

    resident = cc.n_images * cc.crop_size ** 2 * 3 + sum(  # the clustering images and the baseline, on device
        int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(unet_vars))
    return step, args, steps_per_epoch, resident


def plan_retrain(cfg: ExperimentConfig, confs: list[Configuration], budget: int | None, time_runs: int,
                 n_time: int) -> tuple[list[StepPlan], int, dict]:
    """The vmapped retraining step: memory for 1 and 2 runs -> the chunk that fits, compiled and timed."""
    n_classes = max([c.k for c in confs if c.method != "gng"] + [cfg.clustering.gng.max_units] * any(
        c.method == "gng" for c in confs) + [2])
    step, args, steps_per_epoch, resident = retrain_parts(cfg, n_classes)
    seeds = cfg.sweep.seeds
    compiled_for: dict[int, tuple[Any, float]] = {R: _compile(step, *args(R)) for R in (1, 2)}
    mem = {R: analyse_compiled(c)[0] for R, (c, _) in compiled_for.items()}
    model: dict[str, Any] = {"resident_bytes": resident, "runs_1_bytes": mem[1], "runs_2_bytes": mem[2]}
    chunk = cfg.sweep.seeds_per_chunk
    if mem[1] is not None and mem[2] is not None:
        per_run, fixed = mem[2] - mem[1], 2 * mem[1] - mem[2]
        model |= {"per_run_bytes": per_run, "fixed_bytes": fixed}
        if budget:
            chunk = chunk_for_memory(per_run, fixed, resident, MEMORY_HEADROOM * budget, seeds)
            model |= {"budget_bytes": budget, "headroom": MEMORY_HEADROOM,
                      "fits": fixed + per_run + resident <= MEMORY_HEADROOM * budget}
    if chunk not in compiled_for:
        compiled_for[chunk] = _compile(step, *args(chunk))
    compiled, compile_s = compiled_for[chunk]
    total, temp, flops = analyse_compiled(compiled)
    model["chunk_bytes"] = total
    R = min(chunk, max(1, time_runs))
    a = args(R, concrete=True)
    timed = (compiled_for.get(R) or _compile(step, *args(R)))[0]
    box = [a[0]]

    def call():
        box[0], loss = timed(box[0], *a[1:])
        return loss

    call_s = median_time(call, n_time) * chunk / R
    note = f"timed with {R} run(s), scaled to {chunk}" if R != chunk else f"timed with {chunk} runs"
    epochs = cfg.retrain.epochs * cfg.retrain.rounds
    chunks = -(-seeds // chunk)
    out = [StepPlan("retrain", f"retrain step, {chunk} runs x batch {cfg.retrain.batch_size} x "
                    f"{cfg.retrain.crop_size}px crops", total, temp, flops, compile_s, call_s,
                    len(confs) * chunks * epochs * steps_per_epoch,
                    f"{len(confs)} configurations x {chunks} chunks x {epochs} epochs x {steps_per_epoch} steps; {note}")]
    if cfg.retrain.decoder_epochs:
        out.append(StepPlan("retrain", "decoder tuning", None, None, None, 0.0, None, 0, "not planned"))
    return out, chunk, model


def _synthetic_scoring(h: int, w: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A softmax and ground truth of ``h x w`` with nuclei-sized disks, for timing the host's share."""
    labels = np.zeros((h, w), np.int32)
    yy, xx = np.ogrid[:h, :w]
    for i in range(1, max(2, h * w // 4000)):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 14)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    cell = (labels > 0).astype(np.float32) * 0.9 + 0.05
    probs = np.stack([1.0 - cell, cell * 0.9, cell * 0.1], -1).astype(np.float32)
    return probs, labels


class Networks(NamedTuple):
    """What the sweep scores: ``scorings`` watersheds of the scored images; forward passes over them of
    ``plain`` networks without and ``tta`` networks with test-time augmentation (an ensemble member
    counts as a network); ``note`` says which."""

    scorings: int
    plain: int
    tta: int
    note: str


def scored_networks(cfg: ExperimentConfig, confs: list[Configuration]) -> Networks:
    """The baseline (and its ``eval.baseline_views``), every run, and every configuration's ensemble."""
    runs = cfg.sweep.seeds * len(confs)
    ensemble = cfg.sweep.seeds if cfg.sweep.ensemble == -1 else cfg.sweep.ensemble
    forwards = 1 + runs + len(confs) * ensemble
    views = cfg.eval.baseline_views
    plain = (0 if cfg.eval.tta else forwards) + sum("tta" not in v for v in views)
    tta = (forwards if cfg.eval.tta else 0) + sum("tta" in v for v in views)
    note = f"baseline, {runs} runs" + (f", {len(confs)} ensembles of {ensemble}" if ensemble else "")
    note += "".join(f", baseline + {v}" for v in views) + (" (TTA)" if cfg.eval.tta else "")
    scorings = 1 + runs + (len(confs) if ensemble else 0) + len(views)
    return Networks(scorings, plain, tta, note)


def eval_forward_counts(cfg: ExperimentConfig, workload: Workload, networks: Networks) -> Counter:
    """``(H, W)`` -> forward passes the scoring of ``networks`` makes over the scored images."""
    shapes: Counter = Counter()
    for hw, count in workload.image_shapes.items():
        h, w = (int(v) for v in hw.split("x"))
        for tta, n in ((False, networks.plain), (True, networks.tta)):
            for s, c in forward_shapes(h, w, cfg.eval.tile_size, tta=tta).items():
                shapes[s] += c * count * n
    return +shapes


def plan_eval(cfg: ExperimentConfig, workload: Workload, networks: Networks, n_time: int) -> list[StepPlan]:
    """Scoring a network: the forward pass at every tile shape, and the watershed + metric on the host."""
    model = make_model(cfg.model)
    variables = _zeros(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    adabn = cfg.retrain.batch_norm == "adabn"
    out = []
    for (h, w), count in sorted(eval_forward_counts(cfg, workload, networks).items(), key=lambda kv: -kv[1]):
        x = jnp.zeros((1, h, w, 3), jnp.uint8)
        compiled, compile_s = _compile(softmax_forward, model, variables, x, adabn)
        total, temp, flops = analyse_compiled(compiled)
        call_s = median_time(lambda: compiled(variables, x), n_time)
        out.append(StepPlan("eval", f"forward {h}x{w}", total, temp, flops, compile_s, call_s, count,
                            f"{networks.note}"))
    workers = cfg.eval.workers or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    host_s = 0.0
    for hw, count in workload.image_shapes.items():
        h, w = (int(v) for v in hw.split("x"))
        probs, gt = _synthetic_scoring(h, w, rng)
        t = time.perf_counter()
        image_score(gt, probs_to_instances(probs, cfg.postprocess))
        host_s += (time.perf_counter() - t) * count
    out.append(StepPlan("eval", f"watershed + metric of {workload.scored_images} images (host, {workers} workers)",
                        None, None, None, 0.0, host_s / workers, networks.scorings,
                        f"{networks.scorings} networks; synthetic images of the test shapes"))
    return out


def plan_sweep(cfg: ExperimentConfig, workload: Workload, *, device_memory: int | None = None,
               stages=STAGES, time_runs: int | None = None, n_time: int = 3, cluster_steps: int = 200,
               log: Callable[[str], None] = lambda s: None) -> Plan:
    """Compile and time every stage of ``cfg``'s sweep (see the module docstring)."""
    dev = jax.local_devices()[0]
    if device_memory is None:
        try:
            device_memory = (dev.memory_stats() or {}).get("bytes_limit")
        except Exception:  # noqa: BLE001 - CPU devices have no allocator statistics
            device_memory = None
    if time_runs is None:
        time_runs = cfg.sweep.seeds_per_chunk if dev.platform != "cpu" else 1
    confs = sweep_configurations(cfg)
    steps: list[StepPlan] = []
    chunk, chunk_model = cfg.sweep.seeds_per_chunk, {}
    for stage in stages:
        log(f"planning {stage} ...")
        if stage == "train":
            steps.append(plan_train(cfg, workload, n_time))
        elif stage == "features":
            steps.append(plan_features(cfg, n_time))
        elif stage == "cluster":
            steps += plan_clustering(cfg, confs, n_time, cluster_steps)
        elif stage == "retrain":
            rows, chunk, chunk_model = plan_retrain(cfg, confs, device_memory, time_runs, n_time)
            steps += rows
        elif stage == "eval":
            steps += plan_eval(cfg, workload, scored_networks(cfg, confs), n_time)
        else:
            raise ValueError(f"unknown stage {stage!r}")
        for s in steps:
            if s.stage == stage:
                log(f"  {s.step}: {_gib(s.bytes_per_device)} GiB/device, compile {s.compile_s:.1f} s, per call "
                    f"{_dur(s.call_s)}, x {s.calls:,.0f} = {_dur(s.projected_s)} ({s.note})")
    return Plan(dev.platform, dev.device_kind, jax.device_count(), device_memory, chunk, chunk_model, workload, steps,
                cfg.model.dtype)


# ------------------------------------------------------------------------------------ from timings


class Timing(NamedTuple):
    """A step's measured cost per unit (a call; a run of a retraining step; a pattern-epoch of a clustering
    epoch; an image of the host's scoring), from an earlier plan's JSON (``--timings``)."""

    per_unit_s: float
    compile_s: float
    bytes_per_unit: float | None
    flops_per_unit: float | None
    device_kind: str
    source: str


_KEYS = [  # a step's description -> what its time depends on, and how many units its timed call was
    ("train", re.compile(r"segmentation train step, batch (\d+) x (\d+)x\d+"), lambda m: (("train",) + m.groups(), 1)),
    ("features", re.compile(r"pooled latent, batch (\d+) x (\d+)x\d+"), lambda m: (("features",) + m.groups(), 1)),
    ("retrain", re.compile(r"retrain step, (\d+) runs x batch (\d+) x (\d+)px"),
     lambda m: (("retrain", m.group(2), m.group(3)), int(m.group(1)))),
    ("eval", re.compile(r"^forward (\d+)x(\d+)"), lambda m: (("forward",) + m.groups(), 1)),
    ("eval", re.compile(r"^watershed \+ metric of (\d+) images"), lambda m: (("host",), int(m.group(1)))),
    ("cluster", re.compile(r"^(\w+)\((\d+)\) x \d+ seeds, \d+ x (\d+) patterns"), lambda m: (("cluster",) + m.groups(), None)),
]


def _timing_key(stage: str, step: str) -> tuple[tuple, int | None] | None:
    for st, pattern, key in _KEYS:
        m = pattern.search(step)
        if st == stage and m:
            return key(m)
    return None


def _epochs_in(note: str) -> int:
    """Epochs a clustering step's note counts (``m=5:117ep m=1:83ep`` -> 200; ``10 epochs, ...`` -> 10)."""
    eps = [int(x) for x in re.findall(r":(\d+)ep", note)]
    return sum(eps) if eps else int(re.match(r"(\d+) epochs", note).group(1))


def read_timings(paths) -> dict[tuple, Timing]:
    """``(key, dtype)`` -> :class:`Timing` of every step of the plans' JSONs at ``paths`` (later files win).
    A plan made before plans recorded their dtype timed ``float32``."""
    out: dict[tuple, Timing] = {}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
            dtype, kind = doc.get("dtype", "float32"), doc["device_kind"]
            for st in doc["steps"]:
                found = _timing_key(st["stage"], st["step"])
                if found is None or st.get("call_s") is None:
                    continue
                key, units = found
                if units is None:  # clustering: call_s is a pattern's time over all its epochs
                    units = _epochs_in(st.get("note", ""))
                per = lambda v: None if v is None else v / units  # noqa: E731
                out[(key, dtype)] = Timing(st["call_s"] / units, st.get("compile_s") or 0.0, per(st.get("bytes_per_device")),
                                           per(st.get("flops")), kind, f"{path}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"--timings {path}: not a plan's JSON ({type(e).__name__}: {e})") from None
    return out


def project_plan(cfg: ExperimentConfig, workload: Workload, timings: dict[tuple, Timing], stages=STAGES) -> Plan:
    """The plan of ``cfg``'s sweep with every step's time taken from ``timings`` (measured on the device
    planned for, at the same shapes) instead of compiled and timed here: the call counts are this config's.
    Where the config's dtype was not timed, float32's time stands in (a ceiling where the dtype is faster);
    a step with no timing at its shapes is listed without a time."""
    dtype = cfg.model.dtype
    confs = sweep_configurations(cfg)
    chunk = cfg.sweep.seeds_per_chunk
    steps: list[StepPlan] = []

    def find(key):
        for dt in (dtype, "float32"):
            if (key, dt) in timings:
                return timings[(key, dt)], ("" if dt == dtype else f"; {dt}'s time")
        return None, ""

    def per_pixel():
        """The slowest timed forward pass per pixel (for shapes not timed: a ceiling, compile time their mean)."""
        rates = [(t.per_unit_s / (int(k[1]) * int(k[2])), t.compile_s, k) for (k, dt), t in timings.items()
                 if k[0] == "forward" and dt in (dtype, "float32")]
        if not rates:
            return None
        rate, _, k = max(rates)
        return rate, float(np.mean([c for _, c, _ in rates])), f"{k[1]}x{k[2]}"

    def add(stage: str, step: str, key: tuple, units: float, calls: float, note: str) -> None:
        t, fallback = find(key)
        if t is None and key[0] == "forward" and per_pixel() is not None:
            rate, compile_s, like = per_pixel()
            steps.append(StepPlan(stage, step, None, None, None, compile_s, rate * int(key[1]) * int(key[2]), calls,
                                  note + f"; not timed: scaled by pixels from forward {like}"))
            return
        if t is None:
            steps.append(StepPlan(stage, step, None, None, None, 0.0, None, calls, note + "; NOT TIMED at these shapes"))
            return
        scale = lambda v: None if v is None else v * units  # noqa: E731
        steps.append(StepPlan(stage, step, scale(t.bytes_per_unit), None, scale(t.flops_per_unit), t.compile_s,
                              t.per_unit_s * units, calls, note + fallback))

    tcfg, cc, rc = cfg.train, cfg.cluster_data, cfg.retrain
    for stage in stages:
        if stage == "train":
            spe = max(1, workload.train_images // tcfg.batch_size)
            add("train", f"segmentation train step, batch {tcfg.batch_size} x {cfg.data.crop_size}x{cfg.data.crop_size}",
                ("train", str(tcfg.batch_size), str(cfg.data.crop_size)), 1, tcfg.total_epochs * spe,
                f"{tcfg.total_epochs} epochs x {spe} steps")
        elif stage == "features":
            add("features", f"pooled latent, batch {cc.batch_size} x {cc.crop_size}x{cc.crop_size}",
                ("features", str(cc.batch_size), str(cc.crop_size)), 1, math.ceil(cc.n_images / cc.batch_size) * rc.rounds,
                f"{cc.n_images} images")
        elif stage == "cluster":
            for conf in confs:
                if conf.method in ("ng", "kmc"):
                    epochs, calls = cfg.clustering.epochs, cc.n_images
                elif conf.method == "gng":
                    epochs, calls = 1, cc.n_images * cfg.clustering.gng.epochs
                else:
                    continue
                add("cluster", f"{conf.method}({conf.k}) x {cfg.sweep.seeds} seeds, {cc.n_images} x {cc.pca_dim} "
                    f"patterns, per pattern", ("cluster", conf.method, str(conf.k), str(cc.pca_dim)), epochs, calls,
                    f"{epochs} epochs")
        elif stage == "retrain":
            spe = max(1, cc.n_images // min(rc.batch_size, cc.n_images))
            chunks, epochs = -(-cfg.sweep.seeds // chunk), rc.epochs * rc.rounds
            add("retrain", f"retrain step, {chunk} runs x batch {rc.batch_size} x {rc.crop_size}px crops",
                ("retrain", str(rc.batch_size), str(rc.crop_size)), chunk, len(confs) * chunks * epochs * spe,
                f"{len(confs)} configurations x {chunks} chunks x {epochs} epochs x {spe} steps")
        elif stage == "eval":
            networks = scored_networks(cfg, confs)
            for (h, w), count in sorted(eval_forward_counts(cfg, workload, networks).items(), key=lambda kv: -kv[1]):
                add("eval", f"forward {h}x{w}", ("forward", str(h), str(w)), 1, count, networks.note)
            add("eval", f"watershed + metric of {workload.scored_images} images (host)", ("host",),
                workload.scored_images, networks.scorings, f"{networks.scorings} networks")
    kinds = sorted({t.device_kind for t in timings.values()})
    sources = sorted({t.source for t in timings.values()})
    return Plan("projected", " / ".join(kinds), 1, None, chunk, {}, workload, steps, dtype, ", ".join(sources))


# ------------------------------------------------------------------------------------------------ shell


def _gib(b) -> str:
    return "-" if b is None else f"{b / 2**30:.2f}"


def _dur(s) -> str:
    if s is None:
        return "-"
    return f"{s:.3g} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def format_plan(plan: Plan) -> str:
    if plan.timed_on:
        head = (f"projected for {plan.device_kind} from the times measured there ({plan.timed_on}), model.dtype "
                f"{plan.dtype}; nothing was compiled or timed here")
    else:
        head = (f"backend {plan.backend} ({plan.device_kind}, {plan.devices} device(s)), model.dtype {plan.dtype}; "
                f"device memory {_gib(plan.device_memory_bytes)} GiB")
    lines = [f"{head}; data: {plan.workload.train_images} CT1 training images, {plan.workload.scored_images} scored "
             f"images per network ({plan.workload.source})", "",
             "| stage | step | memory/device GiB | GFLOP/call | compile | per call | calls | projected | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in plan.steps:
        gflop = "-" if s.flops is None else f"{s.flops / 1e9:,.1f}"
        lines.append(f"| {s.stage} | {s.step} | {_gib(s.bytes_per_device)} | {gflop} | {s.compile_s:.1f} s | "
                     f"{_dur(s.call_s)} | {s.calls:,.0f} | {_dur(s.projected_s)} | {s.note} |")
    cm = plan.chunk_memory
    lines.append("")
    if "per_run_bytes" in cm:
        lines.append(f"retraining memory: {_gib(cm['fixed_bytes'])} GiB + {_gib(cm['per_run_bytes'])} GiB per run, "
                     f"beside {_gib(cm['resident_bytes'])} GiB resident (clustering images, baseline)")
    if "budget_bytes" in cm:
        lines.append(f"sweep.seeds_per_chunk = {plan.seeds_per_chunk}: the largest equal chunk within "
                     f"{cm['headroom']:.0%} of {_gib(cm['budget_bytes'])} GiB (step: {_gib(cm['chunk_bytes'])} GiB)"
                     + ("" if cm.get("fits", True) else "; NOT EVEN ONE RUN FITS"))
    elif not plan.timed_on:
        lines.append(f"sweep.seeds_per_chunk = {plan.seeds_per_chunk} (the config's; no device memory known: "
                     f"give --device_memory_gb)")
    totals = ", ".join(f"{st} {_dur(plan.total_s(st))}" for st in STAGES if any(s.stage == st for s in plan.steps))
    lines.append(f"projected: {totals}; total {_dur(plan.total_s())}, and {_dur(plan.compile_s())} of compiling (a "
                 f"floor: host work besides the steps is not counted)")
    return "\n".join(lines) + "\n"


flags.DEFINE_float("device_memory_gb", None, "device memory to plan the chunk for (default: the device's)")
flags.DEFINE_integer("time_steps", 3, "timed calls per step (median)")
flags.DEFINE_integer("time_runs", None, "runs in the timed retraining step (default: the chunk; 1 on a CPU)")
flags.DEFINE_integer("cluster_steps", 200, "patterns per timed clustering call")
flags.DEFINE_string("workload", None, "a plan's --json output whose data counts to use (data not here)")
flags.DEFINE_multi_string("timings", [], "an earlier plan's --json made on the device to plan for: project this "
                          "config from its measured per-call times instead of compiling here (repeat to combine)")
flags.DEFINE_list("stages", list(STAGES), "which stages to plan")
flags.DEFINE_string("json", None, "also write the plan here")
FLAGS = flags.FLAGS


def plan_command(cfg: ExperimentConfig, workdir: str, progress: bool) -> int:
    del workdir  # the plan writes nothing but --json
    bad = [s for s in FLAGS.stages if s not in STAGES]
    if bad:
        raise DataError(f"--stages: unknown {', '.join(bad)} (known: {', '.join(STAGES)})")
    if FLAGS.workload:
        workload = workload_from_json(FLAGS.workload)
    else:
        try:
            workload = workload_from_data(cfg, progress)
        except DataError as e:
            raise DataError(f"{e} (where the data is not on this machine, give --workload with a plan's JSON made "
                            f"where it is, e.g. docs/plan/paper_cpu.json)") from None
    memory = int(FLAGS.device_memory_gb * 1e9) if FLAGS.device_memory_gb else None
    if FLAGS.timings:
        plan = project_plan(cfg, workload, read_timings(FLAGS.timings), FLAGS.stages)
    else:
        plan = plan_sweep(cfg, workload, device_memory=memory, stages=FLAGS.stages, time_runs=FLAGS.time_runs,
                          n_time=FLAGS.time_steps, cluster_steps=FLAGS.cluster_steps,
                          log=lambda s: print(s, flush=True))
    print()
    print(format_plan(plan), end="")
    if FLAGS.json:
        atomic_write_text(Path(FLAGS.json), json.dumps(plan.to_json(), indent=2) + "\n")
        print(f"written: {FLAGS.json}")
    return cli.EXIT_OK


def main(argv=None) -> int:
    return cli.run_config_command(argv, plan_command, default_config=None, default_workdir="-",
                                  workdir_help="unused (the plan writes only --json)")


if __name__ == "__main__":
    sys.exit(main())
