"""One call from the plan command's options to a plan: where the workload comes from, and whether the
steps are measured here or projected from a device's recorded times."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from dng_jax.config import ExperimentConfig
from dng_jax.errors import DataError
from dng_jax.io.atomic import atomic_write_text
from dng_jax.planning.counts import STAGES
from dng_jax.planning.measure import plan_sweep
from dng_jax.planning.project import project_plan, read_timings
from dng_jax.planning.report import Plan
from dng_jax.planning.workload import Workload, workload_from_data, workload_from_json

__all__ = ["make_plan", "write_plan_json"]


def _workload(cfg: ExperimentConfig, workload_json: str | None, progress: bool) -> Workload:
    if workload_json:
        return workload_from_json(workload_json)
    try:
        return workload_from_data(cfg, progress)
    except DataError as e:
        raise DataError(f"{e} (where the data is not on this machine, give --workload with a plan's JSON made "
                        f"where it is, e.g. docs/plan/paper_cpu.json)") from None


def make_plan(cfg: ExperimentConfig, *, stages: Sequence[str] = STAGES, workload_json: str | None = None,
              device_memory_gb: float | None = None, timings: Sequence[str] = (), time_runs: int | None = None,
              time_steps: int = 3, cluster_steps: int = 200, progress: bool = False,
              log: Callable[[str], None] = lambda s: None) -> Plan:
    """The plan of ``cfg``'s sweep: projected from the plans' JSONs in ``timings`` where given, else measured
    here (see ``python -m dng_jax.plan``); the data's counts from ``workload_json`` or from ``cfg.data``."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise DataError(f"--stages: unknown {', '.join(bad)} (known: {', '.join(STAGES)})")
    workload = _workload(cfg, workload_json, progress)
    if timings:
        return project_plan(cfg, workload, read_timings(timings), stages)
    memory = int(device_memory_gb * 1e9) if device_memory_gb else None
    return plan_sweep(cfg, workload, device_memory=memory, stages=stages, time_runs=time_runs, n_time=time_steps,
                      cluster_steps=cluster_steps, log=log)


def write_plan_json(plan: Plan, path: str) -> None:
    atomic_write_text(Path(path), json.dumps(plan.to_json(), indent=2) + "\n")
