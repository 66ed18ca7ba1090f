"""The reference without learning: Otsu + distance-transform watershed on the baseline's images
(``classical/scores.csv``), Table I's "classical (no learning)" row."""

from __future__ import annotations

import logging
from pathlib import Path

from dng_jax import distributed
from dng_jax.evaluation.evaluator import score_predictions
from dng_jax.evaluation.scores import read_scores, write_scores
from dng_jax.experiment import layout
from dng_jax.experiment.resume import stage_status
from dng_jax.experiment.stages.context import StageContext
from dng_jax.io import stage
from dng_jax.segmentation.classical import classical_instances

__all__ = ["stage_classical"]

log = logging.getLogger("dng_jax.sweep")


def stage_classical(ctx: StageContext) -> dict[str, float]:
    """The classical reference (no learning) on the same images; returns its MAPs."""
    cdir = layout.stage_dir(ctx.workdir, layout.CLASSICAL)
    distributed.on_writer(_score_classical, ctx, cdir)  # other processes read what it wrote
    table = read_scores(cdir / layout.SCORES)
    maps = ctx.scoring.maps(dict(zip(table.ids, table.scores[0])))
    log.info(f"classical MAP: known {maps['map_known']:.3f}  unknown {maps['map_unknown']:.3f}  "
             f"all {maps['map_all']:.3f}")
    return maps


def _score_classical(ctx: StageContext, cdir: Path) -> None:
    if not stage_status(cdir, (layout.SCORES,)).done:
        log.info("classical reference (Otsu + distance-transform watershed) on the test images")
        scoring = ctx.scoring
        res = score_predictions(lambda image: classical_instances(image, ctx.cfg.classical), scoring.cache,
                                scoring.scored, known_type=scoring.known_type, progress=ctx.progress)
        per_image = {k: v["score"] for k, v in res.per_image.items()}
        write_scores(cdir / layout.SCORES, scoring.table(["classical"], [per_image]))
        stage.write_done(cdir, [layout.SCORES])
