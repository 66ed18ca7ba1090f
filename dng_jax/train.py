"""python -m dng_jax.train: segmentation training alone (paper II-C), resumable.

usage: python -m dng_jax.train [--config configs/<file>.py] --workdir DIR [--config.<section>.<field>=V]
                               [--data PATH] [--no-progress] [--quiet] [--config.help]
                               [--coordinator_address HOST:PORT --num_processes N --process_id I]

flags:
  --config FILE            a configs/*.py file (default: configs/default.py, the embedded default, as
                           for the sweep: a tiny model on the bundled mini-set)
  --workdir DIR            the work dir (required); rerun with it to resume (with the same config:
                           another model, data, augmentation or optimizer setting is refused;
                           a finished training with a constant lr may be given self-training
                           rounds, --config.train.pseudo_label_rounds=N and its other fields)
  --config.S.F=VALUE       override any field, e.g. --config.train.epochs=3
  --data PATH              the data (the same as --config.data.path=PATH): a folder images/ + masks/
                           (+ manifest.csv), one per experiment side by side, or the Kaggle layout
                           <id>/images/<id>.png + <id>/masks/*.png as a folder or zip
  --config.help            print every field with its value and meaning, then exit
  --no-progress            no progress bars
  --quiet, -q              no line per evaluation during training (the final table is printed)
  --coordinator_address, --num_processes, --process_id
                           train as one of N processes (machines), data parallel over all their
                           devices; process 0 writes the work dir (docs/scaling.md)

Trains the segmentation network of --config on the labelled CT1 (known cell type) training images and
then reports its MAP on the known / unknown / all test images. Written to --workdir:

  checkpoints/   orbax checkpoints, every config.train.checkpoint_every steps and at the end
  metrics.csv    training loss / accuracy / images per second, and the evaluation loss / pixel accuracy
                 (also metrics.jsonl, and tensorboard/ when tensorboardX is installed)
  config.json    the full configuration of the run
  baseline.json  the MAP on the test images, per image and cell type (if config.eval.enabled)
  manifest.json  only for data without cell types of its own: the cell types the partition rule gave
                 its images (docs/partition.md); not for the Kaggle stage-1 set (its manifest is
                 shipped) nor the folder layout (its folder names or manifest.csv name them)

Rerunning the same command resumes from the latest checkpoint and draws the same batches and
augmentation as an uninterrupted run would; a finished run is not trained again (its evaluation is).
Predict with the result: python -m dng_jax.predict --checkpoint <workdir> ...

Every input (config, data, known type, batch size, a resumed run's config) is checked before the work
dir is made or written: a failed start leaves it as it was.

Exit status: 0 done; 2 a bad flag, config value, data or work dir (one line "error: ..." naming it).
"""

from __future__ import annotations

import sys

from dng_jax import cli
from dng_jax.config import ExperimentConfig
from dng_jax.segmentation.trainer import train_and_evaluate


def train(cfg: ExperimentConfig, workdir: str, progress: bool, quiet: bool = False) -> int:
    train_and_evaluate(cfg, workdir, progress=progress, quiet=quiet)
    return cli.EXIT_OK


def main(argv=None) -> int:
    return cli.run_config_command(argv, train, default_config=str(cli.DEFAULT_CONFIG), default_workdir=None,
                                  workdir_help="folder for checkpoints/, metrics.csv, config.json and "
                                               "baseline.json (required); rerun with the same one to resume")


if __name__ == "__main__":
    sys.exit(main())
