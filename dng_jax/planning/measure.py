"""The measured plan: every step of :func:`~dng_jax.planning.counts.sweep_steps` compiled at the config's
shapes on this backend and timed, without running the experiment.

Per step: XLA's memory per device and FLOPs (:mod:`dng_jax.planning.xla_cost`; on a GPU XLA's FLOPs leave
out the convolutions cuDNN runs), the median of a few timed calls, times the calls the sweep makes. The
retraining step is compiled for 1 and 2 runs: its memory grows by the same amount per run, which gives the
largest chunk of runs that fits the device's memory beside what stays resident.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.clustering import gng as gng_lib
from dng_jax.clustering import neural_gas as ng_lib
from dng_jax.clustering.methods import build_method
from dng_jax.config import ExperimentConfig
from dng_jax.evaluation.metrics import image_score
from dng_jax.experiment.features import pooled_latent_batch
from dng_jax.experiment.sweep import Configuration, sweep_configurations
from dng_jax.models import make_model
from dng_jax.planning.counts import STAGES, StepSpec, stage_steps, train_steps_per_epoch
from dng_jax.planning.report import Plan, StepPlan, duration, gib, step_plan
from dng_jax.planning.retrain_step import retrain_parts
from dng_jax.planning.workload import Workload
from dng_jax.planning.xla_cost import analyse_compiled, compile_timed, median_time, zeros_of
from dng_jax.segmentation.inference import softmax_forward
from dng_jax.segmentation.postprocess import probs_to_instances
from dng_jax.segmentation.steps import make_augment_fn, make_segmentation_loss, make_train_step
from dng_jax.segmentation.train_state import create_train_state, make_optimizer
from dng_jax.sharding import jit_train_step, make_mesh, replicate, shard_batch

__all__ = ["MEMORY_HEADROOM", "chunk_for_memory", "plan_sweep"]

MEMORY_HEADROOM = 0.9  # of the device's memory; the rest for the allocator's fragmentation and XLA's workspaces


def chunk_for_memory(per_run: float, fixed: float, resident: float, budget: float, seeds: int) -> int:
    """The largest number of runs per chunk whose step fits ``budget`` bytes (``fixed + per_run x R``
    beside ``resident``), balanced so that ``seeds`` splits into equal chunks; at least 1, at most ``seeds``."""
    room = budget - fixed - resident
    most = int(room // per_run) if per_run > 0 else seeds
    most = max(1, min(seeds, most))
    return -(-seeds // -(-seeds // most))  # the same number of chunks, as equal as they can be


def _measured(spec: StepSpec, compiled, compile_s: float, call_s: float, **kw) -> StepPlan:
    total, temp, flops = analyse_compiled(compiled)
    return step_plan(spec, call_s, compile_s=compile_s, bytes_per_device=total, temp_bytes=temp, flops=flops, **kw)


def _not_planned(spec: StepSpec) -> StepPlan:
    return step_plan(spec, None)


def measure_train(cfg: ExperimentConfig, workload: Workload, spec: StepSpec, n_time: int) -> StepPlan:
    """The segmentation train step (forward, backward, LAMB, on-device augmentation), data-parallel."""
    tcfg, crop = cfg.train, cfg.data.crop_size
    mesh = make_mesh()
    model = make_model(cfg.model)
    tx = make_optimizer(tcfg, trainable=tcfg.trainable, steps_per_epoch=train_steps_per_epoch(cfg, workload))
    state = replicate(zeros_of(lambda: create_train_state(jax.random.key(0), model, tcfg, (1, crop, crop, 3), tx=tx)),
                      mesh)
    step = jit_train_step(make_train_step(make_segmentation_loss(tcfg.class_weights, tcfg.dice_weight),
                                          trainable=tcfg.trainable, augment_fn=make_augment_fn(cfg.augment)), mesh)
    rng = np.random.default_rng(0)
    batch = shard_batch((rng.integers(0, 256, (tcfg.batch_size, crop, crop, 3), dtype=np.uint8),
                         rng.integers(0, 3, (tcfg.batch_size, crop, crop), dtype=np.uint8)), mesh)
    key = jax.random.key(1)
    compiled, compile_s = compile_timed(step, state, batch, key)
    box = [state]

    def call():
        box[0], metrics = compiled(box[0], batch, key)
        return metrics

    call_s = median_time(call, n_time)
    return _measured(spec, compiled, compile_s, call_s, label=spec.describe(f"{mesh.devices.size} device(s)"))


def measure_features(cfg: ExperimentConfig, spec: StepSpec, n_time: int) -> StepPlan:
    """The pooled latent of a batch of clustering images (the encoder in eval mode)."""
    cc = cfg.cluster_data
    model = make_model(cfg.model)
    variables = zeros_of(lambda: model.init(jax.random.key(0), jnp.zeros((1, cc.crop_size, cc.crop_size, 3)),
                                            train=False))
    x = jnp.zeros((cc.batch_size, cc.crop_size, cc.crop_size, 3), jnp.float32)
    compiled, compile_s = compile_timed(pooled_latent_batch, model, variables, x)
    return _measured(spec, compiled, compile_s, median_time(lambda: compiled(variables, x), n_time))


def _cluster_data(n: int, d: int) -> jax.Array:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, d)) * 3
    return jnp.asarray(centres[rng.integers(0, 20, n)] + rng.normal(size=(n, d)), jnp.float32)


def _ng_pattern_s(hp: dict, X, keys, orders, n_time: int, steps: int) -> tuple[float, str]:
    """An NG / kMC pattern's time over the whole schedule: timed in every phase of constant neighbourhood
    size, weighted by the phase's epochs; and the phases (``m=5:117ep m=1:83ep``)."""
    ncfg = ng_lib.NGConfig(**{k: v for k, v in hp.items() if k in ng_lib.NGConfig.__dataclass_fields__})
    ms = ng_lib.neighbourhood_sizes(ncfg)
    S = keys.shape[0]
    states = jax.vmap(lambda kk: ng_lib.init(kk, X, ncfg))(keys)
    per_pattern, parts = 0.0, []
    for m, epochs in sorted(Counter(ms.tolist()).items(), reverse=True):
        st = states._replace(epoch=jnp.full((S,), int(np.argmax(ms == m)), jnp.int32))
        s = median_time(lambda st=st: ng_lib.update_epochs_many(st, X, orders, ncfg).centroids, n_time) / steps
        per_pattern += s * epochs
        parts.append(f"m={m}:{epochs}ep")
    return per_pattern, " ".join(parts)


def _gng_pattern_s(hp: dict, X, keys, orders, n_time: int, steps: int) -> float:
    """A GNG pattern's time in one epoch."""
    gcfg = gng_lib.GNGConfig(**{k: v for k, v in hp.items() if k in gng_lib.GNGConfig.__dataclass_fields__})
    s0 = jax.vmap(lambda kk: gng_lib.init(kk, X, gcfg))(keys)
    return median_time(lambda: gng_lib.update_epochs_many(s0, X, orders, gcfg).w, n_time) / steps


def measure_clustering(cfg: ExperimentConfig, specs: list[StepSpec], n_time: int, steps: int) -> list[StepPlan]:
    """Per configuration: ``steps`` patterns of an epoch for ``sweep.seeds`` vmapped seeds, timed in every
    phase of constant neighbourhood size (NG / kMC) or in one epoch (GNG), scaled to the whole schedule."""
    S, n, d = cfg.sweep.seeds, cfg.cluster_data.n_images, cfg.cluster_data.pca_dim
    X = _cluster_data(n, d)
    steps = min(steps, n)
    out = []
    for spec in specs:
        if spec.key is None:
            out.append(_not_planned(spec))
            continue
        conf = spec.configuration
        hp = dict(build_method(conf.name, conf.k, cfg.clustering)[1].hyperparameters)
        keys = jax.random.split(jax.random.key(0), S)
        orders = jnp.asarray(np.stack([np.random.default_rng(s).permutation(n)[:steps] for s in range(S)])[:, None])
        t0 = time.perf_counter()
        if conf.method == "gng":
            call_s, note = _gng_pattern_s(hp, X, keys, orders, n_time, steps), spec.note
        else:
            call_s, note = _ng_pattern_s(hp, X, keys, orders, n_time, steps)
        out.append(step_plan(spec, call_s, note=note, compile_s=time.perf_counter() - t0))
    return out


def _n_classes(cfg: ExperimentConfig, confs: list[Configuration]) -> int:
    """The most classes a retraining head has in the sweep (GNG: its capacity)."""
    return max([c.k for c in confs if c.method != "gng"] + [cfg.clustering.gng.max_units] * any(
        c.method == "gng" for c in confs) + [2])


def _chunk_model(cfg: ExperimentConfig, mem: dict[int, int | None], resident: int,
                 budget: int | None) -> tuple[int, dict[str, Any]]:
    """The linear memory model of the retraining step from its memory at 1 and 2 runs, and the chunk that fits
    ``budget`` (the config's chunk without one)."""
    model: dict[str, Any] = {"resident_bytes": resident, "runs_1_bytes": mem[1], "runs_2_bytes": mem[2]}
    chunk = cfg.sweep.seeds_per_chunk
    if mem[1] is not None and mem[2] is not None:
        per_run, fixed = mem[2] - mem[1], 2 * mem[1] - mem[2]
        model |= {"per_run_bytes": per_run, "fixed_bytes": fixed}
        if budget:
            chunk = chunk_for_memory(per_run, fixed, resident, MEMORY_HEADROOM * budget, cfg.sweep.seeds)
            model |= {"budget_bytes": budget, "headroom": MEMORY_HEADROOM,
                      "fits": fixed + per_run + resident <= MEMORY_HEADROOM * budget}
    return chunk, model


def measure_retrain(cfg: ExperimentConfig, workload: Workload, confs: list[Configuration], budget: int | None,
                    time_runs: int, n_time: int) -> tuple[list[StepPlan], int, dict]:
    """The vmapped retraining step: memory for 1 and 2 runs -> the chunk that fits, compiled and timed."""
    step, args, _, resident = retrain_parts(cfg, _n_classes(cfg, confs))
    compiled_for: dict[int, tuple[Any, float]] = {R: compile_timed(step, *args(R)) for R in (1, 2)}
    chunk, model = _chunk_model(cfg, {R: analyse_compiled(c)[0] for R, (c, _) in compiled_for.items()}, resident,
                                budget)
    if chunk not in compiled_for:
        compiled_for[chunk] = compile_timed(step, *args(chunk))
    compiled, compile_s = compiled_for[chunk]
    model["chunk_bytes"] = analyse_compiled(compiled)[0]
    R = min(chunk, max(1, time_runs))
    a = args(R, concrete=True)
    timed = (compiled_for.get(R) or compile_timed(step, *args(R)))[0]
    box = [a[0]]

    def call():
        box[0], loss = timed(box[0], *a[1:])
        return loss

    call_s = median_time(call, n_time) * chunk / R
    timed_note = f"timed with {R} run(s), scaled to {chunk}" if R != chunk else f"timed with {chunk} runs"
    specs = stage_steps("retrain", cfg, workload, confs, chunk)
    rows = [_measured(specs[0], compiled, compile_s, call_s, note=f"{specs[0].note}; {timed_note}")]
    return rows + [_not_planned(s) for s in specs[1:]], chunk, model


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


def _measure_host(cfg: ExperimentConfig, workload: Workload, spec: StepSpec) -> StepPlan:
    """The watershed + metric of the scored images, on synthetic images of their shapes, over the workers."""
    workers = cfg.eval.workers or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    host_s = 0.0
    for hw, count in workload.image_shapes.items():
        h, w = (int(v) for v in hw.split("x"))
        probs, gt = _synthetic_scoring(h, w, rng)
        t = time.perf_counter()
        image_score(gt, probs_to_instances(probs, cfg.postprocess))
        host_s += (time.perf_counter() - t) * count
    return step_plan(spec, host_s / workers, label=spec.describe(f"{workers} workers"),
                     note=f"{spec.note}; synthetic images of the test shapes")


def measure_eval(cfg: ExperimentConfig, workload: Workload, specs: list[StepSpec], n_time: int) -> list[StepPlan]:
    """Scoring a network: the forward pass at every tile shape, and the watershed + metric on the host."""
    model = make_model(cfg.model)
    variables = zeros_of(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    adabn = cfg.retrain.batch_norm == "adabn"
    out = []
    for spec in specs:
        if spec.key[0] == "host":
            out.append(_measure_host(cfg, workload, spec))
            continue
        x = jnp.zeros((1, spec.key[1], spec.key[2], 3), jnp.uint8)
        compiled, compile_s = compile_timed(softmax_forward, model, variables, x, adabn)
        out.append(_measured(spec, compiled, compile_s, median_time(lambda: compiled(variables, x), n_time)))
    return out


def _device_memory(dev) -> int | None:
    try:
        return (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - CPU devices have no allocator statistics
        return None


def _log_stage(log: Callable[[str], None], rows: list[StepPlan]) -> None:
    for s in rows:
        log(f"  {s.step}: {gib(s.bytes_per_device)} GiB/device, compile {s.compile_s:.1f} s, per call "
            f"{duration(s.call_s)}, x {s.calls:,.0f} = {duration(s.projected_s)} ({s.note})")


def plan_sweep(cfg: ExperimentConfig, workload: Workload, *, device_memory: int | None = None, stages=STAGES,
               time_runs: int | None = None, n_time: int = 3, cluster_steps: int = 200,
               log: Callable[[str], None] = lambda s: None) -> Plan:
    """Compile and time every stage of ``cfg``'s sweep (``time_runs``: runs in the timed retraining step,
    default the chunk, 1 on a CPU; ``cluster_steps``: patterns per timed clustering call)."""
    dev = jax.local_devices()[0]
    device_memory = _device_memory(dev) if device_memory is None else device_memory
    time_runs = (cfg.sweep.seeds_per_chunk if dev.platform != "cpu" else 1) if time_runs is None else time_runs
    confs = sweep_configurations(cfg)
    steps: list[StepPlan] = []
    chunk, chunk_model = cfg.sweep.seeds_per_chunk, {}
    for stage in stages:
        log(f"planning {stage} ...")
        if stage == "retrain":
            rows, chunk, chunk_model = measure_retrain(cfg, workload, confs, device_memory, time_runs, n_time)
        else:
            specs = stage_steps(stage, cfg, workload, confs, chunk)
            if stage == "train":
                rows = [measure_train(cfg, workload, specs[0], n_time)]
            elif stage == "features":
                rows = [measure_features(cfg, specs[0], n_time)]
            elif stage == "cluster":
                rows = measure_clustering(cfg, specs, n_time, cluster_steps)
            else:
                rows = measure_eval(cfg, workload, specs, n_time)
        steps += rows
        _log_stage(log, rows)
    return Plan(dev.platform, dev.device_kind, jax.device_count(), device_memory, chunk, chunk_model, workload, steps,
                cfg.model.dtype)
