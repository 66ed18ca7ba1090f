"""python -m dng_jax.plan: what a sweep will need before it is submitted: memory, FLOPs and time per stage.

usage: python -m dng_jax.plan [--config configs/<file>.py] [--config.<section>.<field>=V] [--data PATH]
                              [--no-progress] [--quiet]
                              [--device_memory_gb G] [--time_steps N] [--time_runs R] [--workload FILE]
                              [--stages train,features,cluster,retrain,eval] [--json FILE]
                              [--timings PLAN.json ...]

Every jitted step of the experiment is compiled at the config's shapes on the current backend, without
running the experiment: the segmentation train step (batch ``train.batch_size``, data-parallel over this
process's devices), the latent extraction (``cluster_data.batch_size``), one NG / kMC / GNG epoch for
``sweep.seeds`` vmapped seeds, the retraining step for a chunk of runs and the evaluation forward pass at
every tile shape the test images need. Per step it prints XLA's memory per device
(``compiled.memory_analysis()``: arguments + outputs + temporaries - donated) and FLOPs
(``compiled.cost_analysis()``: XLA's count; on a GPU it leaves out the convolutions that cuDNN runs, so
take FLOPs from a CPU plan), then times ``--time_steps`` calls and multiplies by how often the sweep
makes them. The watershed and the metric (host CPU) are timed on synthetic images of the test shapes.

``sweep.seeds_per_chunk``: the retraining step is compiled for 1 and 2 runs; its memory grows by the same
amount per run, so the largest chunk that fits ``--device_memory_gb`` (default: the device's own memory;
on a CPU give it) beside what stays resident (the clustering images, the baseline) is computed, balanced so
the chunks of ``sweep.seeds`` are equal, and compiled once more to check.

How many images: from the config's data (``data.path``: CT1 training images, the scored test images and
their shapes), or from ``--workload`` (the ``workload`` entry of an earlier ``--json`` output) where the
data is not on this machine. Projections scale the timed calls linearly: in runs where fewer runs were
timed than a chunk holds (``--time_runs``, default 1 on a CPU), and nowhere else. They leave out what a
sweep does besides the steps (host batching, checkpoints, the report), so they are a floor.

``--timings PLAN.json`` (repeatable): no device of the kind planned for at hand, project from one it was
measured on: every step's time per call (per run for the retraining step, per image for the host's
scoring) is taken from an earlier plan's ``--json`` made there, matched by the step's key (which step, at
which shapes) and the model's dtype (float32's time where the dtype was not timed), and multiplied by this
config's counts; nothing is compiled or timed here. Both kinds of plan count the calls with
:func:`dng_jax.planning.sweep_steps`. docs/gpu/plan.json holds the H200's (float32), docs/gpu/retrain_bf16.json
its bfloat16 retraining step.

``--data PATH`` is ``--config.data.path=PATH``; ``--quiet`` leaves out the line per compiled step (the plan is
printed); ``--json`` is checked before anything is compiled.

Exit status 0; 2 with one line "error: ..." on a bad flag, config or unreadable data.
"""

from __future__ import annotations

import sys

from absl import flags

from dng_jax import cli
from dng_jax.config import ExperimentConfig
from dng_jax.experiment.sweep import sweep_configurations
from dng_jax.io.workdir import check_output_file
from dng_jax.planning import STAGES, format_plan, make_plan, write_plan_json
from dng_jax.planning.designs import design_costs, format_designs, image_floor, read_components

__all__ = ["main"]

flags.DEFINE_float("device_memory_gb", None, "device memory to plan the chunk for (default: the device's)")
flags.DEFINE_integer("time_steps", 3, "timed calls per step (median)")
flags.DEFINE_integer("time_runs", None, "runs in the timed retraining step (default: the chunk; 1 on a CPU)")
flags.DEFINE_integer("cluster_steps", 200, "patterns per timed clustering call")
flags.DEFINE_string("workload", None, "a plan's --json output whose data counts to use (data not here)")
flags.DEFINE_multi_string("timings", [], "an earlier plan's --json made on the device to plan for: project this "
                          "config from its measured per-call times instead of compiling here (repeat to combine)")
flags.DEFINE_list("stages", list(STAGES), "which stages to plan")
flags.DEFINE_string("json", None, "also write the plan here")
flags.DEFINE_float("detect", 0.02, "the difference on the unknown cell types a comparison should detect: the "
                   "baselines and runs it needs are printed after the plan")
flags.DEFINE_string("variance", None, "variance components to plan designs with (default: the shipped ones, "
                    "measured at CPU scale; scripts/studies/variance_components.py makes them)")
FLAGS = flags.FLAGS


def plan_command(cfg: ExperimentConfig, workdir: str, progress: bool, quiet: bool = False) -> int:
    del workdir  # the plan writes nothing but --json
    if FLAGS.json:
        check_output_file(FLAGS.json, "--json")  # before the compiling and timing, not after
    plan = make_plan(cfg, stages=FLAGS.stages, workload_json=FLAGS.workload, device_memory_gb=FLAGS.device_memory_gb,
                     timings=FLAGS.timings, time_runs=FLAGS.time_runs, time_steps=FLAGS.time_steps,
                     cluster_steps=FLAGS.cluster_steps, progress=progress,
                     log=(lambda s: None) if quiet else (lambda s: print(s, flush=True)))
    print()
    print(format_plan(plan), end="")
    components, source = read_components(FLAGS.variance)
    family = len(sweep_configurations(cfg)) + 1  # a column of the differences table: the rows and classical
    print()
    costs = design_costs(plan, cfg, components, FLAGS.detect, family)
    print(format_designs(costs, FLAGS.detect, family, source, image_floor(components, family)), end="")
    if FLAGS.json:
        write_plan_json(plan, FLAGS.json)
        print(f"written: {FLAGS.json}")
    return cli.EXIT_OK


def main(argv=None) -> int:
    return cli.run_config_command(argv, plan_command, default_config=None, default_workdir="-",
                                  workdir_help="unused (the plan writes only --json)")


if __name__ == "__main__":
    sys.exit(main())
