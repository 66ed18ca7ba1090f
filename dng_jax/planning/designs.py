"""Before a sweep: how many baseline trainings and runs a comparison needs to detect a given difference, and
what they cost in time.

A row of Table I is judged by its run-level interval (:mod:`dng_jax.evaluation.run_level`); whether a
design of B baselines with R runs each can find a difference of, say, 0.02 on the unknown cell types
depends on the variance components of that comparison (:class:`~dng_jax.evaluation.design_power.VarianceComponents`):
how the clustering step's effect varies between trainings of the baseline, between runs, between images.
The package ships the components measured at CPU scale (``variance_components.json``, made by
``scripts/studies/variance_components.py`` from the committed per-image scores); ``python -m dng_jax.plan
--variance FILE`` takes others (e.g. measured on a pilot at the paper's scale). The time of a design comes
from the plan: per baseline its training and clustering data, per run one configuration's share of the
clustering, retraining and scoring.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from dng_jax.config import ExperimentConfig
from dng_jax.errors import InputError
from dng_jax.evaluation.design_power import VarianceComponents, detectable_difference, expected_se_df, plan_designs
from dng_jax.experiment.sweep import sweep_configurations
from dng_jax.planning.report import Plan, duration

__all__ = ["SHIPPED_COMPONENTS", "DesignCost", "read_components", "design_costs", "image_floor", "format_designs"]

#: The variance components shipped with the package (the unknown types at CPU scale).
SHIPPED_COMPONENTS = Path(str(resources.files("dng_jax.planning") / "variance_components.json"))


class DesignCost(NamedTuple):
    baselines: int
    runs: int  # per baseline
    detectable: float  # the smallest difference found with 80% power at Holm's level for the table
    reaches: bool
    seconds: float | None  # the plan's projected time for these trainings and runs (one configuration)


def read_components(path: str | Path | None = None) -> tuple[VarianceComponents, str]:
    """The components in ``path`` (default: the shipped ones) and the sentence that says where they come from."""
    path = Path(path) if path else SHIPPED_COMPONENTS
    try:
        doc = json.loads(path.read_text())
        return VarianceComponents(**doc["components"]), str(doc.get("source", path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--variance {path}: not a variance-components file ({e}); see "
                         f"scripts/studies/variance_components.py for its format") from None


def _per_baseline_and_run(plan: Plan, cfg: ExperimentConfig) -> tuple[float | None, float | None]:
    """Seconds per baseline training (training, clustering data) and per run of one configuration."""
    if not plan.steps:
        return None, None
    n_runs = max(1, len(sweep_configurations(cfg)) * cfg.sweep.seeds)
    per_run = sum(plan.total_s(s) for s in ("cluster", "retrain", "eval")) / n_runs
    return plan.total_s("train") + plan.total_s("features"), per_run


def design_costs(plan: Plan, cfg: ExperimentConfig, components: VarianceComponents, target: float,
                 family_size: int) -> list[DesignCost]:
    """Per number of baselines (1: the conditional claim on one trained network; 2 or more: the general
    claim), the fewest runs that reach ``target`` (or the most tried), with its time."""
    base_s, run_s = _per_baseline_and_run(plan, cfg)
    out = []
    for claim, baselines in (("conditional", (1,)), ("general", (2, 3, 4, 6, 8))):
        rows = plan_designs(components, target, family_size, claim="this step, on this trained network"
                            if claim == "conditional" else "this step, for a U-Net trained this way",
                            baselines=baselines, runs=(2, 3, 4, 8, 16))
        for b in baselines:
            mine = [r for r in rows if r.baselines == b]
            row = next((r for r in mine if r.reaches), mine[-1])
            seconds = None if base_s is None else b * base_s + b * row.runs * run_s
            out.append(DesignCost(b, row.runs, row.detectable, row.reaches, seconds))
    return out


def image_floor(components: VarianceComponents, family_size: int) -> float:
    """The smallest difference any number of runs on one baseline could detect on these images (10^4 runs):
    what the images and that baseline's image-by-image quirks leave."""
    se, df = expected_se_df(components, 1, 10**4)
    return float(detectable_difference(se, df, family_size))


def format_designs(costs: list[DesignCost], target: float, family_size: int, source: str,
                   floor: float | None = None) -> str:
    lines = [f"Designs to detect ±{target:g} on the unknown cell types (80% power at Holm's level for "
             f"{family_size} comparisons; variance components: {source}):",
             "| baselines B | runs per baseline R | detectable | time (one configuration) |",
             "|---:|---:|---:|---:|"]
    for c in costs:
        note = "" if c.reaches else " (not reached)"
        lines.append(f"| {c.baselines} | {c.runs} | {c.detectable:.3f}{note} | {duration(c.seconds)} |")
    lines.append("B = 1 answers for one trained network (the conditional claim); a claim about training in "
                 "general needs B >= 2.")
    if floor is not None and floor > target:
        lines.append(f"On one baseline no number of runs reaches ±{target:g} on these images: the images leave "
                     f"{floor:.3f} (more test images, or more baselines, would).")
    return "\n".join(lines) + "\n"
