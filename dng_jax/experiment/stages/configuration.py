"""Stage 3: one configuration of Table I, every seed: clustered, retrained, scored (``runs/<m>_k<k>/``).

Every seed is clustered at once (pseudo-labels), then the encoder is retrained on them (seeds vmapped,
in chunks of ``sweep.seeds_per_chunk``) and each run is scored with the baseline decoder (every scored
image's score in ``scores.csv``). A chunk's results are saved as soon as it finishes; ``results.json``
(its :class:`~dng_jax.experiment.layout.RunResult` rows) marks the configuration done. The ``retrain``
variants (:mod:`dng_jax.experiment.adaptation`) run inside a chunk; with ``sweep.ensemble`` the chunks
keep their runs' networks and the seeds' mean softmax is scored too (``ensemble_scores.csv``,
``ensemble.json``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dng_jax import distributed
from dng_jax.clustering.methods import build_method, method_keys, resolve_method, run_method
from dng_jax.config import ExperimentConfig
from dng_jax.data.pipeline import CropBatches
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.evaluation.scores import write_scores
from dng_jax.experiment import layout
from dng_jax.experiment.adaptation import AdaptedRuns, adapt_runs, run_variables
from dng_jax.experiment.layout import RunResult
from dng_jax.experiment.resume import StageStatus, stage_status
from dng_jax.experiment.stages.cluster_data import ClusterData
from dng_jax.experiment.stages.context import StageContext
from dng_jax.io import stage
from dng_jax.io.atomic import atomic_save_npy, atomic_save_npz, remove, remove_tree
from dng_jax.metric_writers import create_default_writer
from dng_jax.segmentation.postprocess import probs_to_instances
from dng_jax.sharding import runs_mesh

__all__ = ["Configuration", "sweep_configurations", "stage_configuration", "RUN_FILES"]

log = logging.getLogger("dng_jax.sweep")

#: A finished configuration's files (and its chunks'; before done-markers, ``results.json`` was its marker).
RUN_FILES = (layout.CLUSTERING, layout.PSEUDO_LABELS, layout.SCORES, layout.RESULTS)

#: A run's per-image scores: image id -> score.
PerImage = dict[str, float]


class Configuration(NamedTuple):
    """One row group of Table I: a clustering method at one k (``method`` = its id in the results)."""

    method: str  # id: "kmc", "ng", "gng" or a file-loaded factory's name
    name: str  # as given in sweep.methods
    k: int

    @property
    def dirname(self) -> str:
        """Its folder in ``runs/`` (:func:`~dng_jax.experiment.layout.run_name`)."""
        return layout.run_name(self.method, self.k)


def sweep_configurations(cfg: ExperimentConfig) -> list[Configuration]:
    """The sweep's configurations in order: every ``sweep.ks`` for kMC and NG (and file-loaded methods),
    GNG once with its start size (the method table's ``ks``)."""
    out = []
    for name in cfg.sweep.methods:
        method_id, spec = resolve_method(name)
        out += [Configuration(method_id, name, int(k)) for k in spec.ks(cfg.sweep.ks, cfg.clustering)]
    return out


class _Runs(NamedTuple):
    """What every chunk of one configuration shares."""

    conf: Configuration
    rdir: Path
    method: Any  # the clustering method (for the later rounds of retrain.rounds)
    keys: Any  # the runs' clustering keys, [seeds]
    mesh: Any  # the devices the runs are split over (None: one device)
    labels: np.ndarray  # pseudo-labels, [seeds, images]
    stats: list[dict]  # per seed: units, norm_entropy, quant_error
    evaluator: SegmentationEvaluator
    n_ensemble: int  # seeds 0..n_ensemble-1 form the ensemble


def stage_configuration(ctx: StageContext, conf: Configuration, data: ClusterData,
                        ct1_batches: CropBatches | None = None) -> list[RunResult]:
    """Cluster, retrain and evaluate every seed of one configuration; returns its result rows (and
    writes every run's per-image scores to ``scores.csv``).

    ``data.upstream`` names the clustering data (and through it the baseline) the runs are made from; a
    configuration whose marker names other data is computed again. On damage the old marker stays until
    the stage is done again, so a rerun interrupted half-way still knows what the old runs were made of."""
    cfg, rdir = ctx.cfg, layout.run_dir(ctx.workdir, conf.dirname)
    before, status = _resume(rdir, data.upstream)
    if status.done:
        return layout.read_results(rdir)
    _, method = build_method(conf.name, conf.k, cfg.clustering)
    keys = method_keys(jax.random.key(cfg.sweep.seed), conf.method, conf.k, cfg.sweep.seeds)
    # the clustering and the retraining split the runs over every device, in one process or many: the same
    # devices run the same programs whichever processes hold them (docs/scaling.md)
    mesh = runs_mesh() if jax.device_count() > 1 else None
    labels, stats = _pseudo_labels(ctx, conf, rdir, before, data.latent, method, keys, mesh)
    runs = _Runs(conf, rdir, method, keys, mesh, labels, stats,
                 ctx.scoring.evaluator._replace(adabn=cfg.retrain.batch_norm == "adabn"),
                 cfg.sweep.seeds if cfg.sweep.ensemble == -1 else cfg.sweep.ensemble)
    results: list[tuple[RunResult, PerImage]] = []
    for c0 in range(0, cfg.sweep.seeds, cfg.sweep.seeds_per_chunk):
        seeds = list(range(c0, min(c0 + cfg.sweep.seeds_per_chunk, cfg.sweep.seeds)))
        done = _read_chunk(rdir, seeds, runs.n_ensemble)
        results += done if done is not None else _run_chunk(ctx, runs, seeds, np.asarray(data.images), ct1_batches)
    return _finish(ctx, runs, results, data.upstream)


def _resume(rdir: Path, upstream: str) -> tuple[dict | None, StageStatus]:
    """The configuration's old marker (None: none, or made from other clustering data: the folder is then
    emptied) and its state; the damaged files are dropped, with the summaries made from them."""
    before = stage.read_done(rdir)
    if before is not None and before.get("upstream", upstream) != upstream:
        log.warning(f"{rdir} was made from other clustering data: computing it again")
        remove_tree(rdir)
        before = None
    status = stage_status(rdir, RUN_FILES + tuple(layout.chunk_files(rdir)), upstream=upstream)
    if status.problems:  # keep what is intact
        for name in [p.split(": ", 1)[0] for p in status.problems] + [rdir / layout.RESULTS, rdir / layout.SCORES]:
            remove(name)
        if not (rdir / layout.SEED0_PREDICTIONS).exists():
            remove(layout.chunk_rows(rdir, 0))  # the chunk that draws seed 0's predictions
    return before, status


def _pseudo_labels(ctx: StageContext, conf: Configuration, rdir: Path, before: dict | None, latent, method, keys,
                   mesh) -> tuple[np.ndarray, list[dict]]:
    """Every seed's pseudo-labels and clustering statistics: read back, or clustered (then the chunks made
    from other labels are dropped)."""
    labels_path = rdir / layout.PSEUDO_LABELS
    if labels_path.exists():
        try:
            return np.load(labels_path), layout.read_json(rdir / layout.CLUSTERING)
        except (OSError, ValueError, EOFError) as e:
            log.warning(f"{labels_path} or clustering.json cannot be read ({type(e).__name__}): clustering "
                        f"{conf.dirname} again (its runs are kept if the labels come out the same)")
            for f in [labels_path, rdir / layout.CLUSTERING]:
                remove(f)
    t0, n_seeds = time.time(), ctx.cfg.sweep.seeds
    res = run_method(method, keys, latent, mesh=mesh, progress=ctx.progress)
    stats = [{"seed": i, "units": int(res.units[i]), "norm_entropy": float(res.norm_entropy[i]),
              "quant_error": float(res.quant_error[i])} for i in range(n_seeds)]
    layout.write_json(rdir / layout.CLUSTERING, stats)
    atomic_save_npy(labels_path, res.labels)
    recorded = (before or {}).get("files", {}).get(layout.PSEUDO_LABELS)
    stale = [rdir / name for name in layout.chunk_files(rdir)]
    if stale and recorded != stage.file_record(labels_path):  # other labels, or none recorded to compare
        log.warning(f"{conf.dirname}: the clustering came out different from before (or its record is lost): "
                    f"its runs are computed again")
        for f in stale:
            remove(f, missing_ok=False)
    log.info(f"{conf.method}({conf.k}): clustered {n_seeds} seeds in {time.time() - t0:.1f}s")
    return res.labels, stats


def _read_chunk(rdir: Path, seeds: list[int], n_ensemble: int) -> list[tuple[RunResult, PerImage]] | None:
    """A finished chunk's rows and per-image scores; None when it has not run (or cannot be read: then its
    file is dropped and its runs are computed again)."""
    cpath = layout.chunk_rows(rdir, seeds[0])
    if not cpath.exists():
        return None
    try:
        doc = layout.read_json(cpath)
        if not (isinstance(doc, list) and [r["seed"] for r in doc] == seeds and all("per_image" in r for r in doc)):
            raise ValueError("not this chunk's rows")
        variables = layout.chunk_variables(rdir, seeds[0])
        if seeds[0] < n_ensemble and not stage.readable(variables):
            raise ValueError(f"the ensemble needs its runs' variables, {variables.name}")
        return [(RunResult.from_json(r), r["per_image"]) for r in doc]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning(f"{cpath} cannot be read ({type(e).__name__}: {e}): computing its runs again")
        remove(cpath)
        return None


def _run_chunk(ctx: StageContext, runs: _Runs, seeds: list[int], images: np.ndarray,
               ct1_batches: CropBatches | None) -> list[tuple[RunResult, PerImage]]:
    """Retrain and score the runs ``seeds``; save their rows (and what the ensemble and Fig. 5 need)."""
    conf, rdir = runs.conf, runs.rdir
    writer = create_default_writer(rdir, layout.RETRAIN_METRICS, ("step", "run", "loss"), tensorboard=False,
                                   keep=lambda row, s=frozenset(seeds): int(row["run"]) not in s)
    key = jax.random.key(ctx.cfg.sweep.seed + 1)  # run i's randomness: fold_in(key, i), any chunking
    desc = f"retrain {conf.method}({conf.k}) seeds {seeds[0]}-{seeds[-1]}"
    try:
        adapted = adapt_runs(key, ctx.cfg, ctx.model, ctx.variables, images, runs.labels[seeds],
                             max(int(s["units"]) for s in runs.stats), method=runs.method,
                             method_keys=runs.keys[np.asarray(seeds)], run_ids=seeds, ct1_batches=ct1_batches,
                             progress=ctx.progress, desc=desc, writer=writer, mesh=runs.mesh)
    finally:
        writer.close()
    if seeds[0] < runs.n_ensemble:  # the ensemble (scored after the last chunk) needs the runs' networks
        atomic_save_npz(layout.chunk_variables(rdir, seeds[0]), flatten_dict(
            jax.tree.map(lambda a: a[: len(seeds)], distributed.fetch(adapted.variables)), sep="/"))
    scores, preds = _score_runs(ctx, runs.evaluator, adapted.variables, seeds)
    rows = [(_run_result(conf, seed, runs.stats[seed], ctx.scoring.maps(scores[j]), adapted, j), scores[j])
            for j, seed in enumerate(seeds)]
    if seeds[0] == 0:  # keep one run's predictions for the Fig. 5 panels
        atomic_save_npz(rdir / layout.SEED0_PREDICTIONS, preds)
    layout.write_json(layout.chunk_rows(rdir, seeds[0]), [{**r.as_json(), "per_image": p} for r, p in rows])
    return rows


def _run_result(conf: Configuration, seed: int, stats: dict, maps: dict[str, float], adapted: AdaptedRuns,
                j: int) -> RunResult:
    """Run ``j`` of a chunk (seed ``seed``) as a row of Table I."""
    return RunResult(conf.method, conf.k, seed, int(stats["units"]), float(stats["norm_entropy"]),
                     float(stats["quant_error"]), **maps,
                     final_loss=float(adapted.losses[-1, j]) if len(adapted.losses) else float("nan"),
                     rounds=tuple((later["units"][j], later["norm_entropy"][j]) for later in adapted.later_rounds))


def _finish(ctx: StageContext, runs: _Runs, results: list[tuple[RunResult, PerImage]], upstream: str
            ) -> list[RunResult]:
    """The configuration's scores, ensemble and rows written, then its marker (last)."""
    rdir, chunk = runs.rdir, ctx.cfg.sweep.seeds_per_chunk
    write_scores(rdir / layout.SCORES, ctx.scoring.table([r.seed for r, _ in results], [p for _, p in results]))
    files = list(RUN_FILES)
    if runs.n_ensemble:
        distributed.on_writer(_score_ensemble, ctx, runs.conf, rdir, runs.n_ensemble, runs.evaluator)
        files += [layout.ENSEMBLE_RESULT, layout.ENSEMBLE_SCORES]
        files += [layout.chunk_variables(rdir, c0).name for c0 in range(0, runs.n_ensemble, chunk)]
    rows = [r for r, _ in results]
    layout.write_results(rdir, rows)
    files += layout.chunk_files(rdir)
    files += [layout.SEED0_PREDICTIONS] if (rdir / layout.SEED0_PREDICTIONS).exists() else []
    stage.write_done(rdir, files, upstream=upstream)
    return rows


def _score_runs(ctx: StageContext, evaluator: SegmentationEvaluator, adapted: dict,
                seeds: list[int]) -> tuple[list[PerImage], dict | None]:
    """Every run's per-image scores (in the order of ``seeds``) and, if seed 0 is one of them, its
    predictions of the Fig. 5 images. With several processes each scores the runs its devices hold
    (seed 0: process 0) and the scores are gathered, bit for bit."""
    scoring, model = ctx.scoring, ctx.model
    mine = distributed.local_runs(adapted, len(seeds))
    ids = list(scoring.types)
    panels = scoring.panel_ids(ctx.cfg.report.panels)

    def score():
        table, preds = np.full((mine.block, len(ids)), np.nan), None
        for i, j in enumerate(mine.runs):
            run_vars = run_variables(ctx.variables, mine.tree, i)
            res = evaluator(run_vars, model, scoring.cache, scoring.scored, pool=scoring.pool,
                            known_type=scoring.known_type)
            table[i] = [res.per_image[sid]["score"] for sid in ids]
            if seeds[j] == 0:
                preds = {sid: probs_to_instances(evaluator.probs(run_vars, model, scoring.cache.load(sid).image),
                                                 evaluator.postprocess) for sid in panels}
        return table, preds

    table, preds = distributed.each_process(score)
    return [dict(zip(ids, row.tolist())) for row in distributed.gather_runs(table, len(seeds))], preds


def _score_ensemble(ctx: StageContext, conf: Configuration, rdir: Path, n: int,
                    evaluator: SegmentationEvaluator) -> None:
    """``sweep.ensemble``: the mean softmax of seeds ``0..n-1`` per test image, then the watershed (the
    paper's proposed kMC ensembles, and the same for every method); ``ensemble_scores.csv`` /
    ``ensemble.json`` (Table I's paired comparison shows it as "<method> ensemble")."""
    chunk, scoring, members = ctx.cfg.sweep.seeds_per_chunk, ctx.scoring, []
    for c0 in range(0, n, chunk):
        with np.load(layout.chunk_variables(rdir, c0)) as f:
            adapted = unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})
        members += [run_variables(ctx.variables, adapted, j) for j in range(min(chunk, n - c0))]
    res = evaluator.ensemble(members, ctx.model, scoring.cache, scoring.scored, pool=scoring.pool,
                             progress=ctx.progress, known_type=scoring.known_type)
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    write_scores(rdir / layout.ENSEMBLE_SCORES, scoring.table([f"ensemble of {n}"], [per_image]))
    maps = scoring.maps(per_image)
    layout.write_json(rdir / layout.ENSEMBLE_RESULT, {"members": n, **maps})
    log.info(f"{conf.method}({conf.k}) ensemble of {n}: known {maps['map_known']:.3f}  unknown "
             f"{maps['map_unknown']:.3f}  all {maps['map_all']:.3f}")
