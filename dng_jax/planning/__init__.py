"""What a sweep will need before it is submitted: memory, FLOPs and time of every jitted step.

``counts`` (which steps, at which shapes, how many calls: :func:`sweep_steps`), ``measure`` (compile and
time them here), ``project`` (take their times from a plan measured on another device), ``xla_cost``
(XLA's memory and FLOPs of a compiled step, timed calls), ``retrain_step`` (the retraining step at a
config's shapes), ``workload`` (the data's counts), ``report`` (the plan, its JSON and table), ``driver``
(the plan command's one call).
"""

from dng_jax.planning.counts import STAGES, Networks, StepSpec, forward_shapes, scored_networks, sweep_steps
from dng_jax.planning.driver import make_plan, write_plan_json
from dng_jax.planning.measure import MEMORY_HEADROOM, chunk_for_memory, plan_sweep
from dng_jax.planning.project import Timing, project_plan, read_timings
from dng_jax.planning.report import Plan, StepPlan, format_plan
from dng_jax.planning.retrain_step import RetrainParts, retrain_parts
from dng_jax.planning.workload import Workload, workload_from_data, workload_from_json
from dng_jax.planning.xla_cost import analyse_compiled, median_time

__all__ = ["STAGES", "Networks", "StepSpec", "forward_shapes", "scored_networks", "sweep_steps", "make_plan",
           "write_plan_json", "MEMORY_HEADROOM", "chunk_for_memory", "plan_sweep", "Timing", "project_plan",
           "read_timings", "Plan", "StepPlan", "format_plan", "RetrainParts", "retrain_parts", "Workload",
           "workload_from_data", "workload_from_json", "analyse_compiled", "median_time"]
