"""Stage 4: Table I and the figures, made from the work dir alone (:func:`~dng_jax.experiment.report.rebuild_report`,
what ``python -m dng_jax.report`` runs too), and Fig. 5, which needs the baseline network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dng_jax.evaluation.metrics import image_score
from dng_jax.experiment import layout
from dng_jax.experiment.report import plot_panels, rebuild_report
from dng_jax.experiment.stages.configuration import sweep_configurations
from dng_jax.experiment.stages.context import StageContext
from dng_jax.segmentation.inference import predict_instances

__all__ = ["stage_report", "panel_configuration", "draw_panels"]


def stage_report(ctx: StageContext) -> list[Path]:
    """``results.csv``, ``table1.md``, ``differences*.csv``, Figs. 2, 6, 7, 8 (:func:`rebuild_report`) and
    Fig. 5; returns their paths."""
    paths = rebuild_report(ctx.workdir)
    shown = panel_configuration(ctx)
    if shown is not None and draw_panels(ctx, shown):
        paths.append(ctx.workdir / layout.FIG5)
    return paths


def panel_configuration(ctx: StageContext) -> tuple[str, int] | None:
    """The configuration Fig. 5 shows, ``(method, k)``: the paper shows kMC, so the kMC configuration (else
    any) with the best mean MAP on the unknown types, the first in the sweep's order on a tie; None when no
    configuration has finished."""
    finished = layout.finished_configurations(ctx.workdir)
    by_cfg = {(c.method, c.k): [r.map_unknown for r in finished[c.dirname]]
              for c in sweep_configurations(ctx.cfg) if finished.get(c.dirname)}
    cands = [c for c in by_cfg if c[0] == "kmc"] or list(by_cfg)
    return max(cands, key=lambda c: np.mean(by_cfg[c])) if cands else None


def draw_panels(ctx: StageContext, shown: tuple[str, int]) -> bool:
    """Fig. 5 (``fig5_panels.png``): per image, the baseline's instances and those of seed 0 of the
    configuration ``shown``; False when that run's predictions were not kept."""
    method, k = shown
    pred_path = layout.run_dir(ctx.workdir, layout.run_name(method, k)) / layout.SEED0_PREDICTIONS
    if not pred_path.exists():
        return False
    preds = dict(np.load(pred_path))
    scoring, panels = ctx.scoring, []
    ev = scoring.evaluator
    for sid in [i for i in scoring.panel_ids(ctx.cfg.report.panels) if i in preds]:
        s = scoring.cache.load(sid)
        base = predict_instances(ctx.variables, ctx.model, s.image, ev.postprocess, tile_size=ev.tile_size, tta=ev.tta)
        after = preds[sid]
        panels.append({"name": sid[:12], "cell_type": scoring.types[sid], "image": s.image, "gt": s.labels,
                       "baseline": base, "baseline_map": image_score(s.labels, base),
                       "clustered": after, "clustered_map": image_score(s.labels, after),
                       "run": f"{method}({k}) seed 0"})
    plot_panels(panels, ctx.workdir / layout.FIG5)
    return True
