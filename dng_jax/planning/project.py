"""The projected plan: no device of the kind planned for at hand, every step's time is taken from a plan
measured there (``--timings``), matched by the step's key (:class:`~dng_jax.planning.counts.StepSpec`) and
the model's dtype, and multiplied by this config's calls; nothing is compiled or timed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dng_jax.config import ExperimentConfig
from dng_jax.errors import DataError
from dng_jax.planning.counts import STAGES, StepSpec, sweep_steps
from dng_jax.planning.report import Plan, StepPlan, step_plan
from dng_jax.planning.workload import Workload

__all__ = ["Timing", "read_timings", "project_plan"]


class Timing(NamedTuple):
    """A step's measured cost per unit (a call; a run of a retraining step; a pattern-epoch of a clustering
    step; an image of the host's scoring), from an earlier plan's JSON (``--timings``)."""

    per_unit_s: float
    compile_s: float
    bytes_per_unit: float | None
    flops_per_unit: float | None
    device_kind: str
    source: str


def _per_unit(v, units: float):
    return None if v is None else v / units


def _read_one(path, out: dict[tuple, Timing]) -> None:
    doc = json.loads(Path(path).read_text())
    dtype, kind = doc.get("dtype", "float32"), doc["device_kind"]
    for st in doc["steps"]:
        if "key" not in st:
            raise DataError(f"--timings {path}: a plan made before plans recorded their steps' keys (make it again "
                            f"with python -m dng_jax.plan --json where it was measured)")
        if st["key"] is None or st.get("call_s") is None:
            continue
        units = st["units"]
        out[(tuple(st["key"]), dtype)] = Timing(st["call_s"] / units, st.get("compile_s") or 0.0,
                                                _per_unit(st.get("bytes_per_device"), units),
                                                _per_unit(st.get("flops"), units), kind, f"{path}")


def read_timings(paths) -> dict[tuple, Timing]:
    """``(key, dtype)`` -> :class:`Timing` of every step of the plans' JSONs at ``paths`` (later files win).
    A plan made before plans recorded their dtype timed ``float32``."""
    out: dict[tuple, Timing] = {}
    for path in paths:
        try:
            _read_one(path, out)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError) as e:
            raise DataError(f"--timings {path}: not a plan's JSON ({type(e).__name__}: {e})") from None
    return out


def _find(timings: dict[tuple, Timing], key: tuple, dtype: str) -> tuple[Timing | None, str]:
    """The time of ``key`` at ``dtype``, else at float32 (a ceiling where the dtype is faster), with a note."""
    for dt in (dtype, "float32"):
        if (key, dt) in timings:
            return timings[(key, dt)], ("" if dt == dtype else f"; {dt}'s time")
    return None, ""


def _forward_per_pixel(timings: dict[tuple, Timing], dtype: str) -> tuple[float, float, str] | None:
    """The slowest timed forward pass per pixel (for shapes not timed: a ceiling), the mean compile time of
    the timed ones, and the shape it comes from."""
    rates = [(t.per_unit_s / (k[1] * k[2]), t.compile_s, k) for (k, dt), t in timings.items()
             if k[0] == "forward" and dt in (dtype, "float32")]
    if not rates:
        return None
    rate, _, k = max(rates)
    return rate, float(np.mean([c for _, c, _ in rates])), f"{k[1]}x{k[2]}"


def _projected(spec: StepSpec, timings: dict[tuple, Timing], dtype: str) -> StepPlan:
    if spec.key is None:
        return step_plan(spec, None)
    t, fallback = _find(timings, spec.key, dtype)
    scaled = _forward_per_pixel(timings, dtype) if t is None and spec.key[0] == "forward" else None
    if scaled is not None:
        rate, compile_s, like = scaled
        return step_plan(spec, rate * spec.key[1] * spec.key[2], compile_s=compile_s,
                         note=f"{spec.note}; not timed: scaled by pixels from forward {like}")
    if t is None:
        return step_plan(spec, None, note=f"{spec.note}; NOT TIMED at these shapes")
    scale = lambda v: None if v is None else v * spec.units  # noqa: E731
    return step_plan(spec, t.per_unit_s * spec.units, compile_s=t.compile_s, bytes_per_device=scale(t.bytes_per_unit),
                     flops=scale(t.flops_per_unit), note=spec.note + fallback)


def project_plan(cfg: ExperimentConfig, workload: Workload, timings: dict[tuple, Timing], stages=STAGES) -> Plan:
    """The plan of ``cfg``'s sweep with every step's time taken from ``timings`` (measured on the device
    planned for, at the same shapes) instead of compiled and timed here: the call counts are this config's.
    Where the config's dtype was not timed, float32's time stands in (a ceiling where the dtype is faster);
    a step with no timing at its shapes is listed without a time."""
    steps = [_projected(spec, timings, cfg.model.dtype) for spec in sweep_steps(cfg, workload, stages)]
    kinds = sorted({t.device_kind for t in timings.values()})
    sources = sorted({t.source for t in timings.values()})
    return Plan("projected", " / ".join(kinds), 1, None, cfg.sweep.seeds_per_chunk, {}, workload, steps,
                cfg.model.dtype, ", ".join(sources))
