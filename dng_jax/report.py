"""Re-make Table I and Figs. 6-8 from a sweep's work dir.

example:
  python -m dng_jax.report --workdir runs/cpu_real

Rewrites in --workdir: results.csv (from its own rows), table1.md (with the notes line rebuilt from
sweep_config.json when present), fig6_map_known.png, fig7_map_unknown.png and fig8_entropy_std.png
(the figures only when results.csv has rows), with the intervals of the sweep's own eval.n_boot and
eval.level unless --n-boot / --level say otherwise. fig2_latent_tsne.png and fig5_panels.png need the model
and the latent vectors: only the sweep (python -m dng_jax.sweep) makes them. Prints the paths; exit
status 2 when results.csv or baseline/map.json cannot be read.
"""

from __future__ import annotations

import sys

from dng_jax import cli
from dng_jax.experiment.report import rebuild_report


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.report", __doc__)
    p.add_argument("--workdir", required=True,
                   help="a sweep work dir (python -m dng_jax.sweep --workdir) holding results.csv and "
                        "baseline/map.json")
    p.add_argument("--n-boot", type=int, default=None,
                   help="bootstrap resamples of the intervals (default: the sweep's eval.n_boot)")
    p.add_argument("--level", type=float, default=None,
                   help="confidence level of the intervals, e.g. 0.95 (default: the sweep's eval.level)")
    args = p.parse_args(argv)
    if args.n_boot is not None and args.n_boot < 100:
        p.error(f"--n-boot {args.n_boot}: use at least 100 resamples")
    if args.level is not None and not 0.5 <= args.level < 1:
        p.error(f"--level {args.level}: give a level in [0.5, 1), e.g. 0.95")

    def run() -> int:
        for path in rebuild_report(args.workdir, n_boot=args.n_boot, level=args.level):
            print(path)
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
