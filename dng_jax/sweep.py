"""python -m dng_jax.sweep: the paper's whole experiment, resumable, as one batch job.

usage: python -m dng_jax.sweep [--config configs/<file>.py] [--workdir DIR] [--config.<section>.<field>=V]
                               [--data PATH] [--no-progress] [--quiet] [--config.help]
                               [--coordinator_address HOST:PORT --num_processes N --process_id I]

flags:
  --config FILE            a configs/*.py file (default: configs/default.py, the embedded default)
  --workdir DIR            the work dir (default: runs/sweep_default); rerun with it to resume
  --config.S.F=VALUE       override any field, e.g. --config.sweep.seeds=8
  --data PATH              the data (the same as --config.data.path=PATH): a folder images/ + masks/
                           (+ manifest.csv), one per experiment side by side, or the Kaggle layout
                           <id>/images/<id>.png + <id>/masks/*.png as a folder or zip
  --config.help            print every field with its value and meaning, then exit
  --no-progress            no progress bars
  --quiet, -q              no progress lines, only the summary at the end
  --coordinator_address, --num_processes, --process_id
                           run as one of N processes (machines) that share the work: the training data
                           parallel, the runs split over every device; process 0 writes the work dir.
                           scripts/tools/launch_local.sh N [flags] starts N on this machine; under srun (SLURM)
                           or on a TPU slice JAX finds the others itself (docs/scaling.md)

Trains the baseline U-Net on CT1 (or loads --config.sweep.checkpoint), draws and encodes the
clustering images, clusters their latent with every configuration (kMC and NG at every k, GNG, and any
file-loaded method of sweep.methods) over sweep.seeds seeds, retrains the encoder on each
clustering, scores every run, and writes Table I and the paper's figures to --workdir:

  results.csv, table1.md, fig2_latent_tsne.png, fig5_panels.png, fig6_map_known.png,
  fig7_map_unknown.png, fig8_entropy_std.png; failures.json; timings.csv;
  baseline/, cluster_data/, runs/<method>_k<k>/ (every stage, written atomically)

At the end it prints where the outputs are and what they say, in at most 15 lines: the baseline, the
best row on the unknown cell types with its difference to the baseline, interval and verdict ("–": too
few images for one), the classical reference; the full tables are in table1.md. Every input (config,
data, known type, checkpoint, the work dir's own configuration) is checked before the work dir is made or
written: a failed start leaves it as it was.

With no arguments it runs configs/default.py (a tiny model on the bundled mini-set, minutes on a CPU).
--config configs/paper.py is the paper's protocol. Killed at any point, the same command continues
where it stopped; a work dir holds one configuration only, and one sweep at a time (it is locked).
--config.help lists every field with its value and meaning.

Split across jobs (docs/scaling.md): --config.sweep.only=shared makes the baseline and clustering data,
then --config.sweep.only=i/N (or names, ng_k500,kmc_k1000) runs one share of the configurations; such
jobs may run at once on one work dir, and write no table: python -m dng_jax.report --workdir DIR merges
them.

Exit status:
  0  every configuration finished; the table and figures are written (a split job: its configurations
     finished, or are run by another job).
  1  some configurations failed (listed in failures.json, a split job's in shards/<job>/failures.json;
     the table and figures cover the others, and a rerun retries only the failed ones).
  2  the sweep could not start or go on: a bad flag or config value, unreadable data or checkpoint, a
     work dir made with another configuration, in use by another sweep, or not writable; one line
     "error: ..." on stderr naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dng_jax import cli, distributed
from dng_jax.config import ExperimentConfig
from dng_jax.experiment.console import sweep_summary
from dng_jax.experiment.sweep import run_sweep

# configs/ at the top of the repository, installed as the package dng_jax.configs
DEFAULT_CONFIG = cli.DEFAULT_CONFIG


def sweep(cfg: ExperimentConfig, workdir: str, progress: bool, quiet: bool = False) -> int:
    if not quiet:
        cli.show_log("dng_jax.sweep", "sweep")
    out = run_sweep(cfg, workdir, progress=progress)
    if cfg.sweep.only:  # one job of a split sweep: no table of its own
        print(f"\n{len(out.rows)} runs of sweep.only={cfg.sweep.only} in {Path(workdir).resolve() / 'runs'}; when "
              f"every job is done, merge them: python -m dng_jax.report --workdir {workdir}")
        return cli.EXIT_PARTIAL if out.failures else cli.EXIT_OK
    if distributed.is_writer():  # the answer in a few lines; the tables are in table1.md
        print()
        print(sweep_summary(workdir, level=cfg.eval.level, checkpoint=cfg.sweep.checkpoint or "",
                            failures=out.failures, train_images=out.train_images, runs=len(out.rows)))
    return cli.EXIT_PARTIAL if out.failures else cli.EXIT_OK


def main(argv=None) -> int:
    return cli.run_config_command(argv, sweep, default_config=str(DEFAULT_CONFIG),
                                  default_workdir="runs/sweep_default",
                                  workdir_help="folder for every stage's outputs (rerun with the same one to resume)")


if __name__ == "__main__":
    sys.exit(main())
