"""The paper's whole experiment as one resumable batch job: :func:`run_sweep`.

Stages (each saved atomically in the work dir, its done-marker written last; a rerun of the same
command skips what is finished):

1. ``baseline/``       the segmentation U-Net trained on CT1 (or ``sweep.checkpoint``) and its MAP on
                       the known / unknown / all test images (``map.json``, per image ``scores.csv``;
                       ``metrics.csv`` holds its training curves).
   ``classical/``      the reference without learning (Otsu + distance-transform watershed) on the same
                       images (``scores.csv``).
2. ``cluster_data/``   the augmented clustering images, their pooled latent and its PCA
                       (:mod:`dng_jax.experiment.features`); ``latent.npy`` marks it done.
3. ``runs/<m>_k<k>/``  per configuration: every seed clustered at once (pseudo-labels), then the
                       encoder retrained on them (seeds vmapped, in chunks of ``sweep.seeds_per_chunk``),
                       each run scored with the baseline decoder (every test image's score in
                       ``scores.csv``). A chunk's results are saved as soon as it finishes;
                       ``results.json`` marks the configuration done. The ``retrain`` variants
                       (:mod:`dng_jax.experiment.adaptation`) run inside a chunk; with
                       ``sweep.ensemble`` the chunks keep their runs' networks
                       (``chunk_*_variables.npz``) and the seeds' mean softmax is scored too
                       (``ensemble_scores.csv``, ``ensemble.json``).
4. ``results.csv``, ``table1.md`` (with the classical row, paired differences to the baseline with
   bootstrap intervals, per-type MAPs), ``fig2_latent_tsne.png``, ``fig5_panels.png``, ``fig6_map_known.png``,
   ``fig7_map_unknown.png``, ``fig8_entropy_std.png``.

One configuration that fails is reported in ``failures.json`` and does not stop the others. Stage
timings go to ``timings.csv`` / ``.jsonl``, retraining losses to ``runs/<m>_k<k>/retrain_metrics.*``.
The work dir is locked while a sweep runs in it, and it holds one configuration only. ``sweep.only``
splits a sweep into jobs that may run at once on one work dir (:mod:`dng_jax.experiment.shards`).

Several processes (:mod:`dng_jax.distributed`) all run this driver: the runs of a chunk are split over
every process's devices (each scores its own), process 0 computes the stages of one network (baseline
and classical scores, clustering data, ensemble, report) and writes every file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import sys
import time
import traceback
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dng_jax import distributed
from dng_jax.clustering.methods import METHODS, build_method, method_keys, resolve_method, run_method
from dng_jax.config import (SPLIT_FIELDS, TRAINING_VOLATILE, ExperimentConfig, check_sweep, comparable,
                            differing_fields, experiment_config)
from dng_jax.data.dsb2018 import SampleCache, load_samples
from dng_jax.data.partition import open_data, type_order
from dng_jax.data.sources import open_source
from dng_jax.data.pipeline import CropBatches, segmentation_batches
from dng_jax.errors import CheckpointError, ConfigError, ConfigMismatchError, WorkerError
from dng_jax.evaluation.evaluator import SegmentationEvaluator, score_predictions
from dng_jax.evaluation.metrics import image_score
from dng_jax.evaluation.scores import ScoreTable, read_scores, scored_images, view_maps, write_scores
from dng_jax.evaluation.scoring_pool import ScoringPool
from dng_jax.experiment.features import extract_cluster_data
from dng_jax.experiment.report import (draw_latent, plot_panels, read_sweep_scores, table1_notes, write_report,
                                       write_test_set)
from dng_jax.experiment import shards
from dng_jax.experiment.adaptation import adapt_runs, needs_ct1_batches, run_variables
from dng_jax.io import stage
from dng_jax.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write_text, remove, remove_tree
from dng_jax.io.workdir import prepare_dir
from dng_jax.metric_writers import MetricWriter, create_default_writer, keep_all
from dng_jax.models import make_model
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.classical import classical_instances
from dng_jax.segmentation.inference import predict_instances
from dng_jax.segmentation.postprocess import probs_to_instances
from dng_jax.segmentation.trainer import train_and_evaluate
from dng_jax.sharding import runs_mesh
from dng_jax.typed_config import as_dict

__all__ = ["SweepResult", "Configuration", "sweep_configurations", "run_sweep", "log"]

#: The sweep's progress lines; the command line shows them (``[sweep HH:MM:SS] ...``).
log = logging.getLogger("dng_jax.sweep")

#: Errors of the disk, not of a configuration: they stop the sweep (one line, exit 2) instead of failing
#: every configuration in turn.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")


class Configuration(NamedTuple):
    """One row group of Table I: a clustering method at one k (``method`` = its id in the results)."""

    method: str  # id: "kmc", "ng", "gng" or a file-loaded factory's name
    name: str  # as given in sweep.methods
    k: int

    @property
    def dirname(self) -> str:
        return f"{self.method}_k{self.k}"


class SweepResult(NamedTuple):
    rows: list[dict]
    baseline: dict[str, float]
    paths: list[Path]
    failures: dict[str, str]


def sweep_configurations(cfg: ExperimentConfig) -> list[Configuration]:
    """The sweep's configurations in order: every ``sweep.ks`` for kMC and NG (and file-loaded methods),
    GNG once with its start size (the method table's ``ks``)."""
    out = []
    for name in cfg.sweep.methods:
        method_id, spec = resolve_method(name)
        out += [Configuration(method_id, name, int(k)) for k in spec.ks(cfg.sweep.ks, cfg.clustering)]
    return out


def _check_workdir_config(workdir: Path, cfg: ExperimentConfig) -> None:
    """Refuse to mix two configurations in one work dir (a rerun must be the same experiment)."""
    path = workdir / "sweep_config.json"
    current = comparable(cfg)
    if not path.exists():
        _write_json(path, as_dict(cfg))
        if _method_files(cfg):
            _write_json(workdir / "method_files.json", _method_files(cfg))
        return
    try:
        raw = _read_json(path)
        saved = comparable(experiment_config(raw))
    except (ValueError, ConfigError) as e:
        raise ConfigMismatchError(f"{path} is not a readable sweep configuration ({e}); use a new --workdir") from None
    diffs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diffs:
        raise ConfigMismatchError(
            f"{workdir} holds a sweep made with another configuration (differs in: {', '.join(diffs)}); "
            f"rerun with the same config or use a new --workdir")
    if raw != json.loads(json.dumps(as_dict(cfg), default=_json_default)):  # a volatile field changed
        _write_json(path, as_dict(cfg))  # the latest values (e.g. eval.n_boot, which `report` reuses)
    files_path = workdir / "method_files.json"
    files = _method_files(cfg)
    try:
        saved_files = _read_json(files_path) if files_path.exists() else {}
    except (OSError, ValueError) as e:
        raise ConfigMismatchError(f"{files_path} cannot be read ({e}); it records which method files the runs "
                                  f"came from: restore it or use a new --workdir") from None
    changed = sorted(m for m in files if m in saved_files and saved_files[m] != files[m])
    if changed:
        raise ConfigMismatchError(
            f"{', '.join(m.rpartition(':')[0] for m in changed)} changed since {workdir} was started (its runs "
            f"used the earlier version); restore the file or use a new --workdir")
    if files and files != saved_files:
        _write_json(files_path, {**saved_files, **files})


def _method_files(cfg: ExperimentConfig) -> dict[str, str]:
    """SHA-256 of every file a file-loaded method of ``sweep.methods`` comes from."""
    return {m: hashlib.sha256(Path(m.rpartition(":")[0]).read_bytes()).hexdigest()
            for m in cfg.sweep.methods if m not in METHODS}


class Scoring(NamedTuple):
    """What every scoring stage shares: the evaluator, its worker pool, the test images in memory, the
    images to score (``scored``: cell type -> ids: the test and the validation images) and the protocol's
    test set (``test``, a subset: what the MAPs of results.csv are of)."""

    evaluator: SegmentationEvaluator
    pool: ScoringPool
    cache: SampleCache
    scored: dict[str, list[str]]
    test: dict[str, list[str]]
    types: dict[str, str]  # image id -> cell type, in the order the images are scored
    known_type: str

    def maps(self, per_image: dict[str, float]) -> dict[str, float]:
        """``map_known`` / ``map_unknown`` / ``map_all`` of the test images."""
        return view_maps(per_image, self.test, self.known_type)

    def table(self, runs, per_image) -> ScoreTable:
        """A score table with the images in the scoring order, however the per-image dicts were stored."""
        return ScoreTable.from_per_image(runs, per_image, self.types, ids=list(self.types))


# ----------------------------------------------------------------------------------------- stage 1


def _damaged(stage_dir: Path, legacy: tuple[str, ...] = (), **extra) -> list[str] | None:
    """``None``: the stage is not done; ``[]``: done and intact; else what is wrong (logged, one line each).

    ``legacy``: the files a stage made before done-markers existed (the last one was its marker); a work
    dir of that version is adopted when every such file loads whole: its checksums are recorded now."""
    if stage.read_done(stage_dir) is None:
        if legacy and all(stage.readable(stage_dir / f) for f in legacy):
            stage.write_done(stage_dir, legacy, **extra)
            log.info(f"{stage_dir}: recorded the checksums of a stage made before done-markers")
            return []
        return None
    problems = stage.check(stage_dir)
    for p in problems:
        log.warning(f"{p}: computing {stage_dir.name} again")
    return problems


def stage_baseline(cfg: ExperimentConfig, workdir: Path, scoring: Scoring, progress: bool):
    """Train (or load) the baseline U-Net and score it; return (variables, model, MAP dict).

    The scores record the checkpoint step they came from: a rerun loads exactly that step, and when it is
    gone the sweep stops (its results could not be recomputed without changing them)."""
    bdir = workdir / "baseline"
    legacy_step = None
    if stage.read_done(bdir) is None and (bdir / "map.json").exists() and (bdir / "checkpoints").is_dir():
        steps = sorted(int(p.name) for p in (bdir / "checkpoints").iterdir() if p.name.isdigit())
        legacy_step = steps[-1] if steps else None
    damaged = _damaged(bdir, ("map.json", "scores.csv", "baseline.json"), checkpoint_step=legacy_step,
                       checkpoint=cfg.sweep.checkpoint)
    done = stage.read_done(bdir)
    if cfg.sweep.checkpoint:
        variables, model, trained = load_variables(cfg.sweep.checkpoint)
        diffs = differing_fields(trained, cfg, ("model.",) + SPLIT_FIELDS)
        if diffs:
            raise ConfigMismatchError(
                f"sweep.checkpoint {cfg.sweep.checkpoint} was trained with another model or test split (differs "
                f"in: {', '.join(diffs)}); a network trained on another split may have seen the test images")
        step = None
    elif done is not None and done.get("checkpoint_step") is not None:
        step = int(done["checkpoint_step"])
        step_dir = bdir / "checkpoints" / str(step)
        if not step_dir.is_dir():
            raise CheckpointError(f"{step_dir} is missing: the baseline this work dir's results come from; restore "
                                  f"it, or use a new --workdir (another step would silently change the results)")
        variables, model, _ = load_variables(step_dir)
    else:
        resuming = (bdir / "checkpoints").exists()
        log.info("stage 1: " + ("resuming the baseline training from its checkpoints" if resuming else
                                "training the baseline segmentation network on CT1"))
        state = train_and_evaluate(cfg, bdir, evaluate=False, progress=progress)
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        model = make_model(cfg.model)
        step = int(state.step)
    if damaged == []:
        metrics = _read_json(bdir / "map.json")
    else:  # process 0 scores it; other processes read what it wrote
        metrics = (distributed.on_writer(_score_baseline, cfg, bdir, scoring, variables, model, step, progress)
                   or _read_json(bdir / "map.json"))
    log.info(f"baseline MAP: known {metrics['map_known']:.3f}  unknown {metrics['map_unknown']:.3f}  "
             f"all {metrics['map_all']:.3f}")
    return variables, model, metrics


def _score_baseline(cfg: ExperimentConfig, bdir: Path, scoring: Scoring, variables, model, step: int | None,
                    progress: bool) -> dict:
    res = scoring.evaluator(variables, model, scoring.cache, scoring.scored, progress=progress, pool=scoring.pool,
                            known_type=scoring.known_type)
    res.write_json(bdir / "baseline.json")
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    write_scores(bdir / "scores.csv", scoring.table(["baseline"], [per_image]))
    metrics = {**scoring.maps(per_image), "per_image": per_image}
    _write_json(bdir / "map.json", metrics)
    stage.write_done(bdir, ["map.json", "scores.csv", "baseline.json"], checkpoint_step=step,
                     checkpoint=cfg.sweep.checkpoint)
    return metrics


def stage_baseline_runs(cfg: ExperimentConfig, workdir: Path, scoring: Scoring, progress: bool) -> list[dict]:
    """``sweep.baseline_runs``: the baseline's other trainings (runs 1, 2, ...: ``train.seed`` + i, or
    ``sweep.baseline_checkpoints``), each scored on the same images, so that the baseline's training variance
    enters the two-level intervals. Run 0 (``baseline/``) is the network that is clustered and retrained.
    Writes ``baseline_runs/scores.csv`` (one row per run); returns each run's MAPs."""
    n = cfg.sweep.baseline_runs
    if n <= 1:
        return []
    bdir = workdir / "baseline_runs"
    if _damaged(bdir) != []:
        per_image = [_baseline_run_scores(cfg, bdir, i, scoring, progress) for i in range(1, n)]
        distributed.on_writer(_write_baseline_runs, bdir, scoring, per_image, n)
    table = read_scores(bdir / "scores.csv")
    out = [scoring.maps(dict(zip(table.ids, row))) for row in table.scores]
    for i, m in enumerate(out, start=1):
        log.info(f"baseline run {i}: known {m['map_known']:.3f}  unknown {m['map_unknown']:.3f}  all {m['map_all']:.3f}")
    return out


def _baseline_run_scores(cfg: ExperimentConfig, bdir: Path, i: int, scoring: Scoring, progress: bool) -> dict:
    """Baseline run ``i``'s per-image scores (from ``run<i>/scores.csv`` when that run is done)."""
    rdir = bdir / f"run{i}"
    if _damaged(rdir) == []:
        table = read_scores(rdir / "scores.csv")
        return dict(zip(table.ids, table.scores[0]))
    given = cfg.sweep.baseline_checkpoints
    if i <= len(given):
        variables, model, trained = load_variables(given[i - 1])
        diffs = differing_fields(trained, cfg, ("model.", "augment.", "train.") + SPLIT_FIELDS,
                                 frozenset({"train.seed"}) | TRAINING_VOLATILE)
        if diffs:
            raise ConfigMismatchError(f"sweep.baseline_checkpoints {given[i - 1]} was trained with another model, "
                                      f"recipe or test split (differs in: {', '.join(diffs)})")
        source = given[i - 1]
    else:
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + i))
        log.info(f"baseline run {i}: training with train.seed={run_cfg.train.seed}")
        state = train_and_evaluate(run_cfg, rdir, evaluate=False, progress=progress)
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        model, source = make_model(cfg.model), f"train.seed={run_cfg.train.seed}"
    res = scoring.evaluator(variables, model, scoring.cache, scoring.scored, progress=progress, pool=scoring.pool,
                            known_type=scoring.known_type)
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    distributed.on_writer(_write_run_scores, rdir, scoring, per_image, i, source)
    return per_image


def _write_run_scores(rdir: Path, scoring: Scoring, per_image: dict, i: int, source: str) -> None:
    write_scores(rdir / "scores.csv", scoring.table([f"baseline run {i}"], [per_image]))
    stage.write_done(rdir, ["scores.csv"], source=source)


def _write_baseline_runs(bdir: Path, scoring: Scoring, per_image: list[dict], n: int) -> None:
    write_scores(bdir / "scores.csv", scoring.table([f"baseline run {i}" for i in range(1, n)], per_image))
    stage.write_done(bdir, ["scores.csv"])


def stage_baseline_views(cfg: ExperimentConfig, workdir: Path, scoring: Scoring, variables, model,
                         progress: bool, baseline_id: str) -> dict[str, dict[str, float]]:
    """``eval.baseline_views``: the baseline scored again with test-time augmentation and / or AdaBN on the
    same images (``baseline_views/scores.csv``, one row per view); returns each view's MAPs. Made again when
    the baseline network changed (``baseline_id``, as for the clustering data)."""
    if not cfg.eval.baseline_views:
        return {}
    vdir = workdir / "baseline_views"
    distributed.on_writer(_score_baseline_views, cfg, vdir, scoring, variables, model, progress, baseline_id)
    table = read_scores(vdir / "scores.csv")
    out = {}
    for view, row in zip(table.runs, table.scores):
        out[view] = scoring.maps(dict(zip(table.ids, row)))
        log.info(f"baseline + {view}: known {out[view]['map_known']:.3f}  unknown {out[view]['map_unknown']:.3f}  "
                 f"all {out[view]['map_all']:.3f}")
    return out


def _score_baseline_views(cfg: ExperimentConfig, vdir: Path, scoring: Scoring, variables, model, progress: bool,
                          baseline_id: str) -> None:
    if _damaged(vdir) == [] and (stage.read_done(vdir) or {}).get("baseline") == baseline_id:
        return
    per_image = []
    for view in cfg.eval.baseline_views:
        log.info(f"the baseline with {view} on the test images")
        evaluator = scoring.evaluator._replace(tta="tta" in view, adabn="adabn" in view)
        res = evaluator(variables, model, scoring.cache, scoring.scored, progress=progress, pool=scoring.pool,
                        known_type=scoring.known_type)
        per_image.append({k: v["score"] for k, v in res.per_image.items()})
    write_scores(vdir / "scores.csv", scoring.table(list(cfg.eval.baseline_views), per_image))
    stage.write_done(vdir, ["scores.csv"], baseline=baseline_id)


def stage_classical(cfg: ExperimentConfig, workdir: Path, scoring: Scoring, progress: bool) -> dict[str, float]:
    """The classical reference (no learning) on the same images; returns its MAPs."""
    cdir = workdir / "classical"
    distributed.on_writer(_score_classical, cfg, cdir, scoring, progress)  # other processes read what it wrote
    table = read_scores(cdir / "scores.csv")
    maps = scoring.maps(dict(zip(table.ids, table.scores[0])))
    log.info(f"classical MAP: known {maps['map_known']:.3f}  unknown {maps['map_unknown']:.3f}  "
             f"all {maps['map_all']:.3f}")
    return maps


def _score_classical(cfg: ExperimentConfig, cdir: Path, scoring: Scoring, progress: bool) -> None:
    if _damaged(cdir, ("scores.csv",)) != []:
        log.info("classical reference (Otsu + distance-transform watershed) on the test images")
        res = score_predictions(lambda image: classical_instances(image, cfg.classical), scoring.cache,
                                scoring.scored, known_type=scoring.known_type, progress=progress)
        per_image = {k: v["score"] for k, v in res.per_image.items()}
        write_scores(cdir / "scores.csv", scoring.table(["classical"], [per_image]))
        stage.write_done(cdir, ["scores.csv"])


# ----------------------------------------------------------------------------------------- stage 2


CLUSTER_DATA_FILES = ("images.npy", "features.npy", "pca_mean.npy", "pca_components.npy", "sources.json",
                      "latent.npy")


def stage_cluster_data(cfg: ExperimentConfig, workdir: Path, source, manifest, splits, variables, model,
                       progress: bool, baseline_id: str):
    """``(images (memory-mapped), latent, sources, upstream)`` of the clustering images, computed once
    (by process 0; other processes read what it wrote).

    ``baseline_id`` names the baseline network (:func:`~dng_jax.io.stage.array_digest` of its variables);
    the marker records it, so data made from another baseline (one trained again after its checkpoints
    were lost) is computed again. Computed again when a file is damaged; when that gives other bytes than
    before (it should not: the stage is seeded), every configuration is computed again too, since it was
    made from the old ones. ``upstream`` names these bytes for the configurations' markers."""
    cdir = workdir / "cluster_data"
    distributed.on_writer(_make_cluster_data, cfg, workdir, source, manifest, splits, variables, model, progress,
                          baseline_id)
    done = stage.read_done(cdir)
    upstream = hashlib.sha256(json.dumps([done["files"][n] for n in ("images.npy", "latent.npy")],
                                         sort_keys=True).encode()).hexdigest()
    return (np.load(cdir / "images.npy", mmap_mode="r"), np.load(cdir / "latent.npy"),
            _read_json(cdir / "sources.json"), upstream)


def _make_cluster_data(cfg: ExperimentConfig, workdir: Path, source, manifest, splits, variables, model,
                       progress: bool, baseline_id: str) -> None:
    cdir = workdir / "cluster_data"
    before = stage.read_done(cdir)
    damaged = _damaged(cdir, CLUSTER_DATA_FILES, baseline=baseline_id)
    if damaged == [] and (before or {}).get("baseline", baseline_id) != baseline_id:  # (adopted: no record)
        log.warning(f"{cdir} was made from another baseline network: computing it again")
        damaged = ["baseline"]
    if damaged != []:
        cc = cfg.cluster_data
        log.info(f"stage 2: drawing {cc.n_images} augmented {cc.crop_size}x{cc.crop_size} crops from "
                 f"{len(splits.cluster)} unlabeled images")
        data = extract_cluster_data(cfg, source, manifest, splits, variables, model, progress)
        atomic_save_npy(cdir / "images.npy", data.images)
        atomic_save_npy(cdir / "features.npy", data.features)
        atomic_save_npy(cdir / "pca_mean.npy", np.asarray(data.pca.mean))
        atomic_save_npy(cdir / "pca_components.npy", np.asarray(data.pca.components))
        _write_json(cdir / "sources.json", data.sources)
        atomic_save_npy(cdir / "latent.npy", data.latent)
        if before is not None and any(before["files"].get(n) != stage.file_record(cdir / n)
                                      for n in ("images.npy", "latent.npy")):
            log.warning("the clustering data came out different from before: every configuration is computed again")
            remove_tree(workdir / "runs", ignore_errors=True)  # before the marker: a kill here is redone
        stage.write_done(cdir, CLUSTER_DATA_FILES, baseline=baseline_id)  # written last: marks the stage done


# ----------------------------------------------------------------------------------------- stage 3


def stage_configuration(cfg: ExperimentConfig, workdir: Path, conf: Configuration, images, latent, variables,
                        model, scoring: Scoring, progress: bool, upstream: str | None = None,
                        ct1_batches: CropBatches | None = None) -> list[dict]:
    """Cluster, retrain and evaluate every seed of one configuration; returns its result rows (and
    writes every run's per-image scores to ``scores.csv``).

    ``upstream`` names the clustering data (and through it the baseline) the runs are made from; a
    configuration whose marker names other data is computed again. On damage the old marker stays until
    the stage is done again, so a rerun interrupted half-way still knows what the old runs were made of."""
    rdir = workdir / "runs" / conf.dirname
    legacy = ("clustering.json", "pseudo_labels.npy", "scores.csv", "results.json")
    before = stage.read_done(rdir)
    if before is not None and before.get("upstream", upstream) != upstream:
        log.warning(f"{rdir} was made from other clustering data: computing it again")
        remove_tree(rdir)
        before = None
    damaged = _damaged(rdir, legacy + tuple(sorted(p.name for p in rdir.glob("chunk_*.json"))), upstream=upstream)
    if damaged == []:
        return _read_json(rdir / "results.json")
    if damaged:  # keep what is intact, drop the damaged files and the summaries made from them
        for name in [p.split(": ", 1)[0] for p in damaged] + [str(rdir / "results.json"), str(rdir / "scores.csv")]:
            remove(name)
        if not (rdir / "seed0_predictions.npz").exists():
            remove(rdir / "chunk_0000.json")  # the chunk that draws seed 0's predictions
    n_seeds = cfg.sweep.seeds
    labels_path = rdir / "pseudo_labels.npy"
    labels = stats = None
    if labels_path.exists():
        try:
            labels, stats = np.load(labels_path), _read_json(rdir / "clustering.json")
        except (OSError, ValueError, EOFError) as e:
            log.warning(f"{labels_path} or clustering.json cannot be read ({type(e).__name__}): clustering "
                        f"{conf.dirname} again (its runs are kept if the labels come out the same)")
            for f in [labels_path, rdir / "clustering.json"]:
                remove(f)
            labels = None
    _, method = build_method(conf.name, conf.k, cfg.clustering)
    keys = method_keys(jax.random.key(cfg.sweep.seed), conf.method, conf.k, n_seeds)
    # the clustering and the retraining split the runs over every device, in one process or many: the same
    # devices run the same programs whichever processes hold them (docs/scaling.md)
    mesh = runs_mesh() if jax.device_count() > 1 else None
    if labels is None:
        t0 = time.time()
        res = run_method(method, keys, latent, mesh=mesh, progress=progress)
        labels = res.labels
        stats = [{"seed": i, "units": int(res.units[i]), "norm_entropy": float(res.norm_entropy[i]),
                  "quant_error": float(res.quant_error[i])} for i in range(n_seeds)]
        _write_json(rdir / "clustering.json", stats)
        atomic_save_npy(labels_path, labels)
        recorded = (before or {}).get("files", {}).get("pseudo_labels.npy")
        stale = sorted(rdir.glob("chunk_*.json"))
        if stale and recorded != stage.file_record(labels_path):  # other labels, or none recorded to compare
            log.warning(f"{conf.dirname}: the clustering came out different from before (or its record is lost): "
                        f"its runs are computed again")
            for f in stale:
                remove(f, missing_ok=False)
        log.info(f"{conf.method}({conf.k}): clustered {n_seeds} seeds in {time.time() - t0:.1f}s")
    n_classes = max(int(s["units"]) for s in stats)
    evaluator = scoring.evaluator._replace(adabn=cfg.retrain.batch_norm == "adabn")
    n_ensemble = n_seeds if cfg.sweep.ensemble == -1 else cfg.sweep.ensemble
    chunk = cfg.sweep.seeds_per_chunk
    rows: list[dict] = []
    for c0 in range(0, n_seeds, chunk):
        seeds = list(range(c0, min(c0 + chunk, n_seeds)))
        cpath = rdir / f"chunk_{c0:04d}.json"
        if cpath.exists():
            try:
                chunk_rows = _read_json(cpath)
                if not (isinstance(chunk_rows, list) and [r["seed"] for r in chunk_rows] == seeds
                        and all("per_image" in r for r in chunk_rows)):
                    raise ValueError("not this chunk's rows")
                if seeds[0] < n_ensemble and not stage.readable(_chunk_variables(rdir, c0)):
                    raise ValueError(f"the ensemble needs its runs' variables, {_chunk_variables(rdir, c0).name}")
                rows += chunk_rows
                continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning(f"{cpath} cannot be read ({type(e).__name__}: {e}): computing its runs again")
                remove(cpath)
        writer = create_default_writer(rdir, "retrain_metrics", ("step", "run", "loss"), tensorboard=False,
                                       keep=lambda row, s=frozenset(seeds): int(row["run"]) not in s)
        key = jax.random.key(cfg.sweep.seed + 1)  # run i's randomness: fold_in(key, i), any chunking
        try:
            adapted = adapt_runs(key, cfg, model, variables, np.asarray(images), labels[seeds], n_classes,
                                 method=method, method_keys=keys[np.asarray(seeds)], run_ids=seeds,
                                 ct1_batches=ct1_batches, progress=progress,
                                 desc=f"retrain {conf.method}({conf.k}) seeds {seeds[0]}-{seeds[-1]}", writer=writer,
                                 mesh=mesh)
        finally:
            writer.close()
        losses = adapted.losses
        if seeds[0] < n_ensemble:  # the ensemble (scored after the last chunk) needs the runs' networks
            atomic_save_npz(_chunk_variables(rdir, c0), flatten_dict(
                jax.tree.map(lambda a: a[: len(seeds)], distributed.fetch(adapted.variables)), sep="/"))
        scores, preds = _score_runs(evaluator, variables, adapted.variables, model, scoring, seeds,
                                    _panel_ids(cfg, scoring))
        chunk_rows = []
        for j, seed in enumerate(seeds):
            per_image = scores[j]
            st = stats[seed]
            chunk_rows.append({"method": conf.method, "k": conf.k, "seed": seed, "units": int(st["units"]),
                               "norm_entropy": float(st["norm_entropy"]), "quant_error": float(st["quant_error"]),
                               **scoring.maps(per_image),
                               "final_loss": float(losses[-1, j]) if len(losses) else float("nan"),
                               **{f"round{r + 2}_{name}": later[name][j] for r, later in enumerate(adapted.later_rounds)
                                  for name in ("units", "norm_entropy")},
                               "per_image": per_image})
        if seeds[0] == 0:  # keep one run's predictions for the Fig. 5 panels
            atomic_save_npz(rdir / "seed0_predictions.npz", preds)
        _write_json(cpath, chunk_rows)
        rows += chunk_rows
    write_scores(rdir / "scores.csv", scoring.table([r["seed"] for r in rows], [r["per_image"] for r in rows]))
    files = ["clustering.json", "pseudo_labels.npy", "scores.csv", "results.json"]
    if n_ensemble:
        distributed.on_writer(_score_ensemble, rdir, conf, n_ensemble, chunk, variables, model, evaluator, scoring,
                              progress)
        files += ["ensemble.json", "ensemble_scores.csv"]
        files += [_chunk_variables(rdir, c0).name for c0 in range(0, n_ensemble, chunk)]
    rows = [{k: v for k, v in r.items() if k != "per_image"} for r in rows]
    _write_json(rdir / "results.json", rows)
    files += sorted(p.name for p in rdir.glob("chunk_*.json"))
    files += ["seed0_predictions.npz"] if (rdir / "seed0_predictions.npz").exists() else []
    stage.write_done(rdir, files, upstream=upstream)
    return rows


def _score_runs(evaluator: SegmentationEvaluator, variables, adapted: dict, model, scoring: Scoring,
                seeds: list[int], panels: list[str]) -> tuple[list[dict[str, float]], dict | None]:
    """Every run's per-image scores (``{image id: score}``, in the order of ``seeds``) and, if seed 0 is
    one of them, its predictions of the ``panels`` images (Fig. 5). With several processes each scores
    the runs its devices hold (seed 0: process 0) and the scores are gathered, bit for bit."""
    mine = distributed.local_runs(adapted, len(seeds))
    ids = list(scoring.types)

    def score():
        table, preds = np.full((mine.block, len(ids)), np.nan), None
        for i, j in enumerate(mine.runs):
            run_vars = run_variables(variables, mine.tree, i)
            res = evaluator(run_vars, model, scoring.cache, scoring.scored, pool=scoring.pool,
                            known_type=scoring.known_type)
            table[i] = [res.per_image[sid]["score"] for sid in ids]
            if seeds[j] == 0:
                preds = {sid: probs_to_instances(evaluator.probs(run_vars, model, scoring.cache.load(sid).image),
                                                 evaluator.postprocess) for sid in panels}
        return table, preds

    table, preds = distributed.each_process(score)
    return [dict(zip(ids, row.tolist())) for row in distributed.gather_runs(table, len(seeds))], preds


def _chunk_variables(rdir: Path, c0: int) -> Path:
    """What the runs of the chunk starting at seed ``c0`` changed in the U-Net (kept for the ensemble)."""
    return rdir / f"chunk_{c0:04d}_variables.npz"


def _score_ensemble(rdir: Path, conf: Configuration, n: int, chunk: int, variables, model,
                    evaluator: SegmentationEvaluator, scoring: Scoring, progress: bool) -> None:
    """``sweep.ensemble``: the mean softmax of seeds ``0..n-1`` per test image, then the watershed (the
    paper's proposed kMC ensembles, and the same for every method); ``ensemble_scores.csv`` /
    ``ensemble.json`` (Table I's paired comparison shows it as "<method> ensemble")."""
    members = []
    for c0 in range(0, n, chunk):
        with np.load(_chunk_variables(rdir, c0)) as f:
            adapted = unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})
        members += [run_variables(variables, adapted, j) for j in range(min(chunk, n - c0))]
    res = evaluator.ensemble(members, model, scoring.cache, scoring.scored, pool=scoring.pool, progress=progress,
                             known_type=scoring.known_type)
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    write_scores(rdir / "ensemble_scores.csv", scoring.table([f"ensemble of {n}"], [per_image]))
    maps = scoring.maps(per_image)
    _write_json(rdir / "ensemble.json", {"members": n, **maps})
    log.info(f"{conf.method}({conf.k}) ensemble of {n}: known {maps['map_known']:.3f}  unknown "
             f"{maps['map_unknown']:.3f}  all {maps['map_all']:.3f}")


def ct1_training_batches(cfg: ExperimentConfig, source, splits, progress: bool) -> CropBatches:
    """The CT1 training crops of the segmentation training (its batch, crop, targets and seed): what the
    joint objective and the decoder tuning learn from."""
    ids = list(splits.train_ct1)[: cfg.train.max_train_images or None]
    samples = load_samples(source, ids, "load CT1 train", progress)
    if len(samples) < cfg.train.batch_size:
        raise ConfigError(f"config field train.batch_size: {len(samples)} CT1 training images cannot fill one "
                          f"batch of {cfg.train.batch_size}")
    return segmentation_batches(samples, cfg.train.batch_size, cfg.data.crop_size, cfg.data.border_width,
                                cfg.train.seed, touching_only=cfg.data.border == "touching")


# ----------------------------------------------------------------------------------------- stage 4


def _panel_ids(cfg: ExperimentConfig, scoring: Scoring) -> list[str]:
    """The Fig. 5 images: the first test image of each cell type."""
    return [scoring.test[t][0] for t in type_order(scoring.test, scoring.known_type, rule_order=True)
            if scoring.test[t]][: cfg.report.panels]


def stage_report(cfg: ExperimentConfig, workdir: Path, rows, baseline, latent, sources, variables, model,
                 scoring: Scoring) -> list[Path]:
    paths = write_report(workdir, rows, baseline, table1_notes(as_dict(cfg)), read_sweep_scores(workdir),
                         n_boot=cfg.eval.n_boot, level=cfg.eval.level)
    paths.append(draw_latent(workdir, latent, sources["types"], cfg.report.tsne_points))
    if rows:
        # The configuration shown: the paper shows kMC; take the kMC (else any) config with the best mean
        # MAP on the unknown types.
        by_cfg: dict[tuple[str, int], list[float]] = {}
        for r in rows:
            by_cfg.setdefault((r["method"], r["k"]), []).append(r["map_unknown"])
        cands = [c for c in by_cfg if c[0] == "kmc"] or list(by_cfg)
        method, k = max(cands, key=lambda c: np.mean(by_cfg[c]))
        pred_path = workdir / "runs" / f"{method}_k{k}" / "seed0_predictions.npz"
        if pred_path.exists():
            preds = dict(np.load(pred_path))
            panels = []
            ev = scoring.evaluator
            for sid in [i for i in _panel_ids(cfg, scoring) if i in preds]:
                s = scoring.cache.load(sid)
                base = predict_instances(variables, model, s.image, ev.postprocess, tile_size=ev.tile_size,
                                         tta=ev.tta)
                after = preds[sid]
                panels.append({"name": sid[:12], "cell_type": scoring.types[sid], "image": s.image, "gt": s.labels,
                               "baseline": base, "baseline_map": image_score(s.labels, base),
                               "clustered": after, "clustered_map": image_score(s.labels, after),
                               "run": f"{method}({k}) seed 0"})
            plot_panels(panels, workdir / "fig5_panels.png")
            paths.append(workdir / "fig5_panels.png")
    return paths


# ----------------------------------------------------------------------------------------- driver


def _timed(writer: MetricWriter, step: int, name: str, configuration: str, t0: float) -> None:
    writer.write_scalars(step, {"stage": name, "configuration": configuration, "seconds": time.time() - t0,
                                "wall_time": time.time()})


def run_sweep(config, workdir, progress: bool = True) -> SweepResult:
    """Run (or resume) the sweep of ``config`` (ConfigDict or :class:`ExperimentConfig`) in ``workdir``.

    Every value is checked before any work starts (:class:`~dng_jax.errors.ConfigError`); the work dir
    is locked for the duration (:class:`~dng_jax.errors.WorkdirBusyError` if another run holds it). With
    ``sweep.only`` the run is one job of a split sweep: its configurations only, no report
    (:mod:`~dng_jax.experiment.shards`)."""
    cfg = config if isinstance(config, ExperimentConfig) else experiment_config(config)
    check_sweep(cfg)
    job = shards.select(cfg.sweep.only, [c.dirname for c in sweep_configurations(cfg)])
    if not job.whole and distributed.is_multiprocess():
        raise ConfigError("config field sweep.only: a split sweep's jobs run one process each (give each job its own "
                          "devices); several processes (--num_processes) run the whole sweep together")
    cfg = shards.experiment_part(cfg)  # every job of the sweep makes the same stages, whichever it is
    open_source(cfg.data.path).close()  # unreadable data stops here, before a work dir is made
    workdir = prepare_dir(workdir)
    with shards.job_lock(workdir, job), shards.shared_stages_lock(workdir, job) as shared:
        _check_workdir_config(workdir, cfg)
        for path in shards.clean_stale_files(workdir, job):
            log.info(f"removed {path}, left by an interrupted run")
        return _run(cfg, workdir, progress, job, shared)


def _run(cfg: ExperimentConfig, workdir: Path, progress: bool, job: shards.Job, shared) -> SweepResult:
    t_start = time.time()
    logdir = shards.job_dir(workdir, job)
    timings = create_default_writer(logdir, "timings", ("step", "stage", "configuration", "seconds", "wall_time"),
                                    keep=keep_all, tensorboard=False)
    with open(logdir / "timings.csv") as f:  # step: the event's number in the work dir, across reruns
        event = itertools.count(sum(1 for _ in f) - 1)
    evaluator = SegmentationEvaluator.from_config(cfg)
    source, manifest, splits = open_data(cfg.data, workdir, progress)
    every_unknown = cfg.eval.wide_unknown and splits.protocol == "paper"
    scored = scored_images(splits, manifest, every_unknown)
    ids = [i for t in type_order(scored, splits.known_type) for i in scored[t]]
    write_test_set(workdir, splits.test, [i for t in sorted(scored) if t != splits.known_type for i in scored[t]
                                          if i not in splits.val_all] if every_unknown else None,
                   val=splits.val, known_type=splits.known_type)
    cache = SampleCache(source, ids)
    with evaluator.pool(cache, ids) as pool:
        scoring = Scoring(evaluator, pool, cache, scored, splits.test, {i: manifest[i] for i in ids}, splits.known_type)
        t0 = time.time()
        shared.note(stage="baseline")  # what a job waiting for the shared stages is told
        variables, model, baseline = stage_baseline(cfg, workdir, scoring, progress)
        _timed(timings, next(event), "baseline", "", t0)
        baseline_id = stage.array_digest(jax.tree.leaves(variables))
        if cfg.sweep.baseline_runs > 1:
            t0 = time.time()
            shared.note(stage="baseline_runs")
            stage_baseline_runs(cfg, workdir, scoring, progress)
            _timed(timings, next(event), "baseline_runs", "", t0)
        if cfg.eval.baseline_views:
            t0 = time.time()
            shared.note(stage="baseline_views")
            stage_baseline_views(cfg, workdir, scoring, variables, model, progress, baseline_id)
            _timed(timings, next(event), "baseline_views", "", t0)
        t0 = time.time()
        shared.note(stage="classical")
        stage_classical(cfg, workdir, scoring, progress)
        _timed(timings, next(event), "classical", "", t0)
        t0 = time.time()
        shared.note(stage="cluster_data")
        images, latent, sources, upstream = stage_cluster_data(cfg, workdir, source, manifest, splits, variables,
                                                               model, progress, baseline_id)
        _timed(timings, next(event), "cluster_data", "", t0)
        shared.release()  # the shared stages are done: the other jobs load them now
        rows: list[dict] = []
        failures: dict[str, str] = {}
        confs = [c for c in sweep_configurations(cfg) if c.dirname in job.names]
        ct1 = ct1_training_batches(cfg, source, splits, progress) if needs_ct1_batches(cfg) and confs else None
        for i, conf in enumerate(confs):
            claim = shards.claim(workdir, conf.dirname, job)  # None: another job runs it
            if claim is None:
                continue
            log.info(f"configuration {i + 1}/{len(confs)}: {conf.method}({conf.k})")
            t0 = time.time()
            try:
                rows += stage_configuration(cfg, workdir, conf, images, latent, variables, model, scoring, progress,
                                            upstream, ct1)
            except KeyboardInterrupt:
                raise
            except BrokenExecutor as e:  # a scoring worker died (killed, out of memory): the rest would fail too
                raise WorkerError(f"a scoring worker process died during {conf.method}({conf.k}) ({e}); rerun the "
                                  f"same command to resume, with fewer workers (--config.eval.workers) if memory "
                                  f"is short") from None
            except OSError as e:
                if e.errno in FATAL_ERRNOS:  # the disk, not the configuration: the others would fail too
                    raise
                failures[conf.dirname] = f"{type(e).__name__}: {e}"
                log.error(f"configuration {conf.method}({conf.k}) FAILED: {type(e).__name__}: {e}")
            except Exception as e:  # one failing configuration must not lose the others
                failures[conf.dirname] = f"{type(e).__name__}: {e}"
                log.error(f"configuration {conf.method}({conf.k}) FAILED: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
            finally:
                claim.release()
            _timed(timings, next(event), "configuration", conf.dirname, t0)
        try:
            _write_json(logdir / "failures.json", failures)
        except OSError as e:
            log.error(f"{logdir / 'failures.json'} could not be written ({e.strerror}); failed: "
                      f"{', '.join(failures) or 'none'}")
        base = {c: baseline[c] for c in ("map_known", "map_unknown", "map_all")}
        paths = []
        if job.whole:  # a split job's runs are merged by python -m dng_jax.report
            t0 = time.time()
            paths = distributed.on_writer(stage_report, cfg, workdir, rows, base, latent, sources, variables, model,
                                          scoring) or []
            _timed(timings, next(event), "report", "", t0)
    timings.close()
    log.info(f"done in {time.time() - t_start:.0f}s; {len(rows)} runs, {len(failures)} failed configurations"
             + ("" if job.whole else f" (sweep.only={job.only}: {len(confs)} configurations)"))
    return SweepResult(rows, base, paths, failures)
