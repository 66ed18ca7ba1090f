"""Which jitted steps a sweep calls, at which shapes, how often: the one count model of both plans.

A plan either compiles and times every step on this machine (:mod:`dng_jax.planning.measure`) or takes the
times measured on another device (:mod:`dng_jax.planning.project`); both multiply by the calls that
:func:`sweep_steps` counts, so the two cannot count differently.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import NamedTuple

from dng_jax.config import ExperimentConfig
from dng_jax.experiment.sweep import Configuration, sweep_configurations
from dng_jax.models import STRIDE
from dng_jax.planning.workload import Workload
from dng_jax.segmentation.inference import tile_starts

__all__ = ["STAGES", "StepSpec", "Networks", "sweep_steps", "stage_steps", "scored_networks", "forward_shapes",
           "eval_forward_counts", "train_steps_per_epoch", "retrain_steps_per_epoch"]

STAGES = ("train", "features", "cluster", "retrain", "eval")


class StepSpec(NamedTuple):
    """One jitted step of the sweep at its shapes, and how often the sweep calls it.

    ``key`` names the step and the shapes its time depends on: a time measured on another device is
    matched by it. ``units`` is how much work one call does in the unit such a time is kept per: runs
    (the retraining step), scored images (the host's watershed + metric), epochs (an NG / kMC call is a
    pattern over the whole schedule), else 1.
    """

    stage: str
    key: tuple | None  # ("train", batch, crop), ("forward", H, W), ...; None: a step the plan does not model
    label: str  # what the step is, with its shapes (see describe)
    calls: float  # how many calls the whole sweep makes
    units: float
    note: str  # how the calls are counted
    label_end: str = ""  # what closes the label after a detail of the machine
    configuration: Configuration | None = None  # the sweep configuration a clustering step belongs to

    def describe(self, detail: str = "") -> str:
        """The label, with a detail of the machine it was timed on (``"1 device(s)"``) where given."""
        return self.label + (f", {detail}" if detail else "") + self.label_end


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


def eval_forward_counts(cfg: ExperimentConfig, workload: Workload, networks: Networks) -> Counter:
    """``(H, W)`` -> forward passes the scoring of ``networks`` makes over the scored images."""
    shapes: Counter = Counter()
    for hw, count in workload.image_shapes.items():
        h, w = (int(v) for v in hw.split("x"))
        for tta, n in ((False, networks.plain), (True, networks.tta)):
            for s, c in forward_shapes(h, w, cfg.eval.tile_size, tta=tta).items():
                shapes[s] += c * count * n
    return +shapes


def train_steps_per_epoch(cfg: ExperimentConfig, workload: Workload) -> int:
    return max(1, workload.train_images // cfg.train.batch_size)


def retrain_steps_per_epoch(cfg: ExperimentConfig) -> int:
    n = cfg.cluster_data.n_images
    return max(1, n // min(cfg.retrain.batch_size, n))


# ------------------------------------------------------------------------------------ the stages


def _train(cfg: ExperimentConfig, workload: Workload, confs, chunk: int) -> list[StepSpec]:
    """The segmentation train step (forward, backward, LAMB, on-device augmentation)."""
    t, crop, spe = cfg.train, cfg.data.crop_size, train_steps_per_epoch(cfg, workload)
    return [StepSpec("train", ("train", t.batch_size, crop), f"segmentation train step, batch {t.batch_size} x "
                     f"{crop}x{crop}", t.total_epochs * spe, 1, f"{t.total_epochs} epochs x {spe} steps")]


def _features(cfg: ExperimentConfig, workload: Workload, confs, chunk: int) -> list[StepSpec]:
    """The pooled latent of the clustering images (later rounds' extractions per run are not counted)."""
    cc, rounds = cfg.cluster_data, cfg.retrain.rounds
    note = f"{cc.n_images} images" + (f" x {rounds} rounds (later rounds per run: not counted)" if rounds > 1 else "")
    return [StepSpec("features", ("features", cc.batch_size, cc.crop_size), f"pooled latent, batch {cc.batch_size} x "
                     f"{cc.crop_size}x{cc.crop_size}", math.ceil(cc.n_images / cc.batch_size) * rounds, 1, note)]


def _cluster(cfg: ExperimentConfig, workload: Workload, confs, chunk: int) -> list[StepSpec]:
    """Per configuration, a pattern's epochs for ``sweep.seeds`` vmapped seeds: NG / kMC over the whole
    schedule per call, GNG one epoch per call."""
    S, n, d = cfg.sweep.seeds, cfg.cluster_data.n_images, cfg.cluster_data.pca_dim
    out = []
    for conf in confs:
        label = f"{conf.method}({conf.k}) x {S} seeds"
        key = ("cluster", conf.method, conf.k, d)
        if conf.method in ("ng", "kmc"):
            epochs = cfg.clustering.epochs
            out.append(StepSpec("cluster", key, f"{label}, {n} x {d} patterns, per pattern", n, epochs,
                                f"{epochs} epochs", configuration=conf))
        elif conf.method == "gng":
            g = cfg.clustering.gng
            out.append(StepSpec("cluster", key, f"{label}, {n} x {d} patterns, per pattern", n * g.epochs, 1,
                                f"{g.epochs} epochs, capacity {g.max_units} units", configuration=conf))
        else:
            out.append(StepSpec("cluster", None, label, 0, 1, "a file-loaded method: not planned", configuration=conf))
    return out


def _retrain(cfg: ExperimentConfig, workload: Workload, confs, chunk: int) -> list[StepSpec]:
    """The vmapped retraining step of ``chunk`` runs, for every configuration's chunks of seeds."""
    rc, spe = cfg.retrain, retrain_steps_per_epoch(cfg)
    chunks, epochs = -(-cfg.sweep.seeds // chunk), rc.epochs * rc.rounds
    out = [StepSpec("retrain", ("retrain", rc.batch_size, rc.crop_size), f"retrain step, {chunk} runs x batch "
                    f"{rc.batch_size} x {rc.crop_size}px crops", len(confs) * chunks * epochs * spe, chunk,
                    f"{len(confs)} configurations x {chunks} chunks x {epochs} epochs x {spe} steps")]
    if rc.decoder_epochs:
        out.append(StepSpec("retrain", None, "decoder tuning", 0, 1, "not planned"))
    return out


def _eval(cfg: ExperimentConfig, workload: Workload, confs, chunk: int) -> list[StepSpec]:
    """Scoring every network: the forward pass at every tile shape (most calls first), and the watershed +
    metric of the scored images on the host."""
    networks = scored_networks(cfg, confs)
    counts = sorted(eval_forward_counts(cfg, workload, networks).items(), key=lambda kv: -kv[1])
    out = [StepSpec("eval", ("forward", h, w), f"forward {h}x{w}", count, 1, networks.note) for (h, w), count in counts]
    out.append(StepSpec("eval", ("host",), f"watershed + metric of {workload.scored_images} images (host",
                        networks.scorings, workload.scored_images, f"{networks.scorings} networks", label_end=")"))
    return out


_STAGES = {"train": _train, "features": _features, "cluster": _cluster, "retrain": _retrain, "eval": _eval}


def stage_steps(stage: str, cfg: ExperimentConfig, workload: Workload, confs: list[Configuration],
                seeds_per_chunk: int) -> list[StepSpec]:
    """The steps of one stage (``seeds_per_chunk``: the runs of a retraining step)."""
    if stage not in _STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return _STAGES[stage](cfg, workload, confs, seeds_per_chunk)


def sweep_steps(cfg: ExperimentConfig, workload: Workload, stages=STAGES,
                seeds_per_chunk: int | None = None) -> list[StepSpec]:
    """Every step of ``cfg``'s sweep over ``workload``, stage by stage in the order of ``stages``;
    ``seeds_per_chunk`` (default: the config's) is the number of runs a retraining step trains."""
    confs = sweep_configurations(cfg)
    chunk = cfg.sweep.seeds_per_chunk if seeds_per_chunk is None else seeds_per_chunk
    return [spec for stage in stages for spec in stage_steps(stage, cfg, workload, confs, chunk)]
