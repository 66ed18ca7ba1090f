"""A plan: every step with its cost, calls and projected time; its JSON and its printed table."""

from __future__ import annotations

from typing import Any, NamedTuple

from dng_jax.planning.counts import STAGES, StepSpec
from dng_jax.planning.workload import Workload

__all__ = ["StepPlan", "Plan", "step_plan", "format_plan", "gib", "duration"]


class StepPlan(NamedTuple):
    """One jitted step: what XLA says of it, how long it took, and how often the sweep calls it."""

    stage: str
    step: str  # what the step is, with its shapes
    bytes_per_device: int | None  # arguments + outputs + temporaries - donated (memory_analysis)
    temp_bytes: int | None
    flops: float | None  # per call (cost_analysis)
    compile_s: float
    call_s: float | None  # median of the timed calls (scaled to the planned size where noted)
    calls: float  # how many calls the whole sweep makes
    note: str = ""
    key: tuple | None = None  # the step and its shapes (StepSpec.key): what --timings matches by
    units: float = 1  # units of work a call does (StepSpec.units): call_s / units is what --timings reuses

    @property
    def projected_s(self) -> float | None:
        return None if self.call_s is None else self.call_s * self.calls


def step_plan(spec: StepSpec, call_s: float | None, *, label: str | None = None, note: str | None = None,
              compile_s: float = 0.0, bytes_per_device=None, temp_bytes=None, flops=None) -> StepPlan:
    """The row of ``spec`` (its label, calls and note unless given) with what was measured of it."""
    return StepPlan(spec.stage, spec.describe() if label is None else label, bytes_per_device, temp_bytes, flops,
                    compile_s, call_s, spec.calls, spec.note if note is None else note, spec.key, spec.units)


class Plan(NamedTuple):
    backend: str
    device_kind: str
    devices: int
    device_memory_bytes: int | None
    seeds_per_chunk: int  # the largest chunk that fits (or the config's, without a memory budget)
    chunk_memory: dict[str, Any]  # the linear memory model of the retraining step
    workload: Workload
    steps: list[StepPlan]
    dtype: str = "float32"  # model.dtype
    timed_on: str = ""  # "": timed here; else the plans whose timings were projected (--timings)

    def total_s(self, stage: str | None = None) -> float:
        return sum(s.projected_s or 0.0 for s in self.steps if stage is None or s.stage == stage)

    def compile_s(self) -> float:
        """Compiling every step once (the retraining step: once per configuration's number of classes)."""
        return sum(s.compile_s for s in self.steps)

    def to_json(self) -> dict:
        return {"backend": self.backend, "device_kind": self.device_kind, "devices": self.devices,
                "dtype": self.dtype, "timed_on": self.timed_on,
                "device_memory_bytes": self.device_memory_bytes, "seeds_per_chunk": self.seeds_per_chunk,
                "chunk_memory": self.chunk_memory, "workload": self.workload.to_json(),
                "steps": [dict(s._asdict(), projected_s=s.projected_s) for s in self.steps],
                "projected_s": {st: self.total_s(st) for st in STAGES} | {"total": self.total_s()},
                "compile_s": self.compile_s()}


def gib(b) -> str:
    return "-" if b is None else f"{b / 2**30:.2f}"


def duration(s) -> str:
    if s is None:
        return "-"
    return f"{s:.3g} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def _head(plan: Plan) -> str:
    if plan.timed_on:
        head = (f"projected for {plan.device_kind} from the times measured there ({plan.timed_on}), model.dtype "
                f"{plan.dtype}; nothing was compiled or timed here")
    else:
        head = (f"backend {plan.backend} ({plan.device_kind}, {plan.devices} device(s)), model.dtype {plan.dtype}; "
                f"device memory {gib(plan.device_memory_bytes)} GiB")
    return (f"{head}; data: {plan.workload.train_images} CT1 training images, {plan.workload.scored_images} scored "
            f"images per network ({plan.workload.source})")


def _chunk_lines(plan: Plan) -> list[str]:
    cm, lines = plan.chunk_memory, []
    if "per_run_bytes" in cm:
        lines.append(f"retraining memory: {gib(cm['fixed_bytes'])} GiB + {gib(cm['per_run_bytes'])} GiB per run, "
                     f"beside {gib(cm['resident_bytes'])} GiB resident (clustering images, baseline)")
    if "budget_bytes" in cm:
        lines.append(f"sweep.seeds_per_chunk = {plan.seeds_per_chunk}: the largest equal chunk within "
                     f"{cm['headroom']:.0%} of {gib(cm['budget_bytes'])} GiB (step: {gib(cm['chunk_bytes'])} GiB)"
                     + ("" if cm.get("fits", True) else "; NOT EVEN ONE RUN FITS"))
    elif not plan.timed_on:
        lines.append(f"sweep.seeds_per_chunk = {plan.seeds_per_chunk} (the config's; no device memory known: "
                     f"give --device_memory_gb)")
    return lines


def format_plan(plan: Plan) -> str:
    """The plan as printed: its head, a markdown table of the steps, the chunk's memory and the totals."""
    lines = [_head(plan), "",
             "| stage | step | memory/device GiB | GFLOP/call | compile | per call | calls | projected | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in plan.steps:
        gflop = "-" if s.flops is None else f"{s.flops / 1e9:,.1f}"
        lines.append(f"| {s.stage} | {s.step} | {gib(s.bytes_per_device)} | {gflop} | {s.compile_s:.1f} s | "
                     f"{duration(s.call_s)} | {s.calls:,.0f} | {duration(s.projected_s)} | {s.note} |")
    lines += [""] + _chunk_lines(plan)
    totals = ", ".join(f"{st} {duration(plan.total_s(st))}" for st in STAGES if any(s.stage == st for s in plan.steps))
    lines.append(f"projected: {totals}; total {duration(plan.total_s())}, and {duration(plan.compile_s())} of "
                 f"compiling (a floor: host work besides the steps is not counted)")
    return "\n".join(lines) + "\n"
