"""The deep-clustering variants study: does any variant lift the unknown-type MAP above the baseline
without lowering CT1? And does NG give more stable clusterings than kMC (paper Fig. 8)?

example:
  python -m dng_jax.variants --workdir runs/variants --checkpoint runs/baseline_cpu_real
  python -m dng_jax.variants --workdir runs/variants --checkpoint bundled:cpu_real \\
      --row paper: --row frozen_bn_decoder:retrain.batch_norm=frozen,retrain.decoder_epochs=2

Each --row NAME:FIELD=VALUE,... is one sweep (python -m dng_jax.sweep) in WORKDIR/NAME: the base config
(--config) with the study's settings (dng_jax.experiment.variants_study.STUDY, then --set), then the row's
own overrides, on the trained baseline --checkpoint. Every row scores the same test images with the same
baseline and the same clustering images; rows that change only retrain.* / sweep.* fields of the
configurations start from a copy of the first row's baseline scores, classical reference and clustering
data instead of computing them again. Rerun the same command to resume (each sweep resumes where it
stopped). Without --row: the paper's step and each variant alone (paper, frozen_bn, decoder, adabn,
joint, rounds).

Written to WORKDIR:

  study.csv / study.md   per row and configuration (and its ensemble): the MAPs and the paired difference
                         to the baseline (CT1 / without CT1 / all) with bootstrap intervals
  study.png              the differences with their intervals, CT1 beside the unknown types
  stability.csv / .md    std over seeds of the normalised entropy of the cluster sizes, kMC and NG at
  stability.png          every --stability-ks, with bootstrap intervals over seeds (paper Fig. 8)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dng_jax import cli
from dng_jax.config import parse_overrides
from dng_jax.experiment import layout
from dng_jax.experiment.stability import stability
from dng_jax.experiment.variants_study import DEFAULT_ROWS, run_study, study_markdown


def _parser() -> cli.ArgumentParser:
    p = cli.make_parser("python -m dng_jax.variants", __doc__)
    p.add_argument("--config", default=str(cli.DEFAULT_CONFIG.with_name("cpu_real.py")),
                   help="the base config of every row (default: configs/cpu_real.py)")
    p.add_argument("--checkpoint", required=True, help="the trained baseline: a train work dir, a checkpoint, or "
                   "bundled:<name> for a model shipped in the package (e.g. bundled:cpu_real)")
    p.add_argument("--workdir", default="runs/variants", help="the study's folder: one sweep work dir per row")
    p.add_argument("--data", default=None, help="the data, if not where --config says (sets data.path of every row)")
    p.add_argument("--set", default="", help="FIELD=VALUE,... for every row, after the study's settings")
    p.add_argument("--row", action="append", help="NAME:FIELD=VALUE,... (default: the study's rows)")
    p.add_argument("--stability-ks", default="5,100",
                   help="k of the stability comparison (default: the study's k and the paper's smallest)")
    p.add_argument("--stability-seeds", type=int, default=48)
    cli.add_verbosity_flags(p, "no progress lines of the sweeps, only the study's tables")
    return p


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    try:
        ks = [int(k) for k in args.stability_ks.split(",") if k]
    except ValueError:
        p.error(f"--stability-ks {args.stability_ks!r}: give numbers, e.g. 5,100")

    def run() -> int:
        if not args.quiet:
            cli.show_log("dng_jax.sweep", "sweep")
            cli.show_log("dng_jax.variants", "variants")
        settings = {**parse_overrides(args.set), **({"data.path": args.data} if args.data else {})}
        result = run_study(args.config, args.checkpoint, args.workdir, args.row or DEFAULT_ROWS, settings,
                           progress=args.progress)
        print(study_markdown(result.entries, result.minutes))
        latent = np.load(layout.stage_dir(result.first, layout.CLUSTER_DATA) / layout.LATENT)
        cfg = result.config
        print(stability(Path(args.workdir), cfg, latent, ks, args.stability_seeds, cfg.eval.n_boot, cfg.eval.level))
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
