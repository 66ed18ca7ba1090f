"""Stage 1: the baseline U-Net (trained on CT1, or ``sweep.checkpoint``) scored on the test images.

``baseline/``: its MAP on the known / unknown / all test images (``map.json``), every scored image's
score (``scores.csv``), ``metrics.csv`` with its training curves and its checkpoints. With
``sweep.baseline_runs`` the baseline's other trainings (``baseline_runs/``), with ``eval.baseline_views``
the baseline scored again with test-time augmentation and / or AdaBN (``baseline_views/``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax

from dng_jax import distributed
from dng_jax.config import SPLIT_FIELDS, TRAINING_VOLATILE, differing_fields
from dng_jax.errors import CheckpointError, ConfigMismatchError
from dng_jax.evaluation.scores import read_scores, write_scores
from dng_jax.experiment import layout
from dng_jax.experiment.resume import stage_status
from dng_jax.experiment.stages.context import StageContext
from dng_jax.experiment.stages.data import Scoring
from dng_jax.io import stage
from dng_jax.models import make_model
from dng_jax.segmentation.checkpointing import checkpoint_config, load_variables
from dng_jax.segmentation.trainer import train_and_evaluate

__all__ = ["BASELINE_FILES", "check_checkpoints", "stage_baseline", "stage_baseline_runs", "stage_baseline_views", "baseline_run_context"]

log = logging.getLogger("dng_jax.sweep")

BASELINE_FILES = (layout.MAP, layout.SCORES, layout.BASELINE_RESULT)


def _maps_line(maps: dict) -> str:
    return f"known {maps['map_known']:.3f}  unknown {maps['map_unknown']:.3f}  all {maps['map_all']:.3f}"


def stage_baseline(ctx: StageContext):
    """Train (or load) the baseline U-Net and score it; return (variables, model, MAP dict).

    The scores record the checkpoint step they came from: a rerun loads exactly that step, and when it is
    gone the sweep stops (its results could not be recomputed without changing them)."""
    cfg, bdir = ctx.cfg, layout.stage_dir(ctx.workdir, layout.BASELINE)
    legacy_step = None
    checkpoints = bdir / layout.CHECKPOINTS
    if stage.read_done(bdir) is None and (bdir / layout.MAP).exists() and checkpoints.is_dir():
        steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
        legacy_step = steps[-1] if steps else None
    status = stage_status(bdir, BASELINE_FILES, checkpoint_step=legacy_step, checkpoint=cfg.sweep.checkpoint)
    variables, model, step = _baseline_network(ctx, bdir)
    if status.done:
        metrics = layout.read_json(bdir / layout.MAP)
    else:  # process 0 scores it; other processes read what it wrote
        metrics = (distributed.on_writer(_score_baseline, ctx, bdir, variables, model, step)
                   or layout.read_json(bdir / layout.MAP))
    log.info(f"baseline MAP: {_maps_line(metrics)}")
    return variables, model, metrics


def _baseline_network(ctx: StageContext, bdir: Path):
    """``(variables, model, checkpoint step)``: from ``sweep.checkpoint`` (step None), from the step the
    scores were made from, or trained (resumed from its checkpoints)."""
    cfg, done = ctx.cfg, stage.read_done(bdir)
    if cfg.sweep.checkpoint:
        variables, model, trained = load_variables(cfg.sweep.checkpoint)
        _check_baseline_checkpoint(cfg, trained)
        return variables, model, None
    if done is not None and done.get("checkpoint_step") is not None:
        step = int(done["checkpoint_step"])
        step_dir = bdir / layout.CHECKPOINTS / str(step)
        if not step_dir.is_dir():
            raise CheckpointError(f"{step_dir} is missing: the baseline this work dir's results come from; restore "
                                  f"it, or use a new --workdir (another step would silently change the results)")
        variables, model, _ = load_variables(step_dir)
        return variables, model, step
    resuming = (bdir / layout.CHECKPOINTS).exists()
    log.info("stage 1: " + ("resuming the baseline training from its checkpoints" if resuming else
                            "training the baseline segmentation network on CT1"))
    state = train_and_evaluate(cfg, bdir, evaluate=False, progress=ctx.progress)
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    return variables, make_model(cfg.model), int(state.step)


def check_checkpoints(cfg) -> None:
    """``sweep.checkpoint`` and the ``sweep.baseline_checkpoints`` a sweep uses: readable, and trained with its
    model and test split (their stored configs only): checked before the sweep writes anything."""
    if cfg.sweep.checkpoint:
        _check_baseline_checkpoint(cfg, checkpoint_config(cfg.sweep.checkpoint))
    for path in cfg.sweep.baseline_checkpoints[: max(cfg.sweep.baseline_runs - 1, 0)]:
        _check_run_checkpoint(cfg, checkpoint_config(path), path)


def _check_baseline_checkpoint(cfg, trained) -> None:
    diffs = differing_fields(trained, cfg, ("model.",) + SPLIT_FIELDS)
    if diffs:
        raise ConfigMismatchError(
            f"sweep.checkpoint {cfg.sweep.checkpoint} was trained with another model or test split (differs "
            f"in: {', '.join(diffs)}); a network trained on another split may have seen the test images")


def _check_run_checkpoint(cfg, trained, path: str) -> None:
    diffs = differing_fields(trained, cfg, ("model.", "augment.", "train.") + SPLIT_FIELDS,
                             frozenset({"train.seed"}) | TRAINING_VOLATILE)
    if diffs:
        raise ConfigMismatchError(f"sweep.baseline_checkpoints {path} was trained with another model, "
                                  f"recipe or test split (differs in: {', '.join(diffs)})")


def _score_baseline(ctx: StageContext, bdir: Path, variables, model, step: int | None) -> dict:
    scoring = ctx.scoring
    res = scoring.evaluator(variables, model, scoring.cache, scoring.scored, progress=ctx.progress, pool=scoring.pool,
                            known_type=scoring.known_type)
    res.write_json(bdir / layout.BASELINE_RESULT)
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    write_scores(bdir / layout.SCORES, scoring.table(["baseline"], [per_image]))
    metrics = {**scoring.maps(per_image), "per_image": per_image}
    layout.write_json(bdir / layout.MAP, metrics)
    stage.write_done(bdir, BASELINE_FILES, checkpoint_step=step, checkpoint=ctx.cfg.sweep.checkpoint)
    return metrics


def stage_baseline_runs(ctx: StageContext) -> list[dict]:
    """``sweep.baseline_runs``: the baseline's other trainings (runs 1, 2, ...: ``train.seed`` + i, or
    ``sweep.baseline_checkpoints``), each scored on the same images, so that the baseline's training variance
    enters the two-level intervals. Run 0 (``baseline/``) is the network that is clustered and retrained.
    Writes ``baseline_runs/scores.csv`` (one row per run); returns each run's MAPs."""
    n = ctx.cfg.sweep.baseline_runs
    if n <= 1:
        return []
    bdir, scoring = layout.stage_dir(ctx.workdir, layout.BASELINE_RUNS), ctx.scoring
    if not stage_status(bdir).done:
        per_image = [_baseline_run_scores(ctx, i) for i in range(1, n)]
        distributed.on_writer(_write_baseline_runs, bdir, scoring, per_image, n)
    table = read_scores(bdir / layout.SCORES)
    out = [scoring.maps(dict(zip(table.ids, row))) for row in table.scores]
    for i, m in enumerate(out, start=1):
        log.info(f"baseline run {i}: {_maps_line(m)}")
    return out


def _baseline_run_scores(ctx: StageContext, i: int) -> dict:
    """Baseline run ``i``'s per-image scores (from ``run<i>/scores.csv`` when that run is done)."""
    cfg, scoring, rdir = ctx.cfg, ctx.scoring, layout.baseline_run_dir(ctx.workdir, i)
    if stage_status(rdir).done:
        table = read_scores(rdir / layout.SCORES)
        return dict(zip(table.ids, table.scores[0]))
    given = cfg.sweep.baseline_checkpoints
    if i <= len(given):
        variables, model, trained = load_variables(given[i - 1])
        _check_run_checkpoint(cfg, trained, given[i - 1])
        source = given[i - 1]
    else:
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + i))
        log.info(f"baseline run {i}: training with train.seed={run_cfg.train.seed}")
        state = train_and_evaluate(run_cfg, rdir, evaluate=False, progress=ctx.progress)
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        model, source = make_model(cfg.model), f"train.seed={run_cfg.train.seed}"
    res = scoring.evaluator(variables, model, scoring.cache, scoring.scored, progress=ctx.progress, pool=scoring.pool,
                            known_type=scoring.known_type)
    per_image = {k: v["score"] for k, v in res.per_image.items()}
    distributed.on_writer(_write_run_scores, rdir, scoring, per_image, i, source)
    return per_image


def baseline_run_context(ctx: StageContext, i: int) -> StageContext:
    """The context of baseline training ``i`` (1, 2, ...): its network (``sweep.baseline_checkpoints``, or
    the training in ``baseline_runs/run<i>/``) and its folder as the work dir, so that the clustering data
    and the configurations made on top of it go to ``baseline_runs/run<i>/cluster_data`` and ``.../runs``."""
    given, rdir = ctx.cfg.sweep.baseline_checkpoints, layout.baseline_run_dir(ctx.workdir, i)
    variables, model, _ = load_variables(given[i - 1] if i <= len(given) else rdir)
    return ctx._replace(workdir=rdir).with_baseline(variables, model)


def _write_run_scores(rdir: Path, scoring: Scoring, per_image: dict, i: int, source: str) -> None:
    write_scores(rdir / layout.SCORES, scoring.table([f"baseline run {i}"], [per_image]))
    stage.write_done(rdir, [layout.SCORES], source=source)


def _write_baseline_runs(bdir: Path, scoring: Scoring, per_image: list[dict], n: int) -> None:
    write_scores(bdir / layout.SCORES, scoring.table([f"baseline run {i}" for i in range(1, n)], per_image))
    stage.write_done(bdir, [layout.SCORES])


def stage_baseline_views(ctx: StageContext) -> dict[str, dict[str, float]]:
    """``eval.baseline_views``: the baseline scored again with test-time augmentation and / or AdaBN on the
    same images (``baseline_views/scores.csv``, one row per view); returns each view's MAPs. Made again when
    the baseline network changed (``ctx.baseline_id``, as for the clustering data)."""
    if not ctx.cfg.eval.baseline_views:
        return {}
    vdir = layout.stage_dir(ctx.workdir, layout.BASELINE_VIEWS)
    distributed.on_writer(_score_baseline_views, ctx, vdir)
    table = read_scores(vdir / layout.SCORES)
    out = {}
    for view, row in zip(table.runs, table.scores):
        out[view] = ctx.scoring.maps(dict(zip(table.ids, row)))
        log.info(f"baseline + {view}: {_maps_line(out[view])}")
    return out


def _score_baseline_views(ctx: StageContext, vdir: Path) -> None:
    if stage_status(vdir).done and (stage.read_done(vdir) or {}).get("baseline") == ctx.baseline_id:
        return
    scoring, per_image = ctx.scoring, []
    for view in ctx.cfg.eval.baseline_views:
        log.info(f"the baseline with {view} on the test images")
        evaluator = scoring.evaluator._replace(tta="tta" in view, adabn="adabn" in view)
        res = evaluator(ctx.variables, ctx.model, scoring.cache, scoring.scored, progress=ctx.progress,
                        pool=scoring.pool, known_type=scoring.known_type)
        per_image.append({k: v["score"] for k, v in res.per_image.items()})
    write_scores(vdir / layout.SCORES, scoring.table(list(ctx.cfg.eval.baseline_views), per_image))
    stage.write_done(vdir, [layout.SCORES], baseline=ctx.baseline_id)
