"""What a DSB2018 collection holds, by cell type and split.

example:
  python -m dng_jax.summary --data stage1_train.zip

With no --data it summarises the bundled mini-set; give the Kaggle stage1_train.zip (or its unpacked
folder) for the real thing. Exit status 2 on unreadable data or a bad flag (one line naming it).
"""

from __future__ import annotations

import sys

from dng_jax import cli
from dng_jax.data.summary import summarize
from dng_jax.errors import InputError


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.summary", __doc__)
    p.add_argument("--data", default=None, help="Kaggle-layout zip or folder (default: bundled mini-set)")
    p.add_argument("--protocol", choices=("paper", "wide"), default="wide",
                   help="the test split to show (wide: the default of configs/default.py and cpu_real.py)")
    p.add_argument("--n-test-per-type", type=int, default=2, help="paper protocol: test images per cell type")
    p.add_argument("--seed", type=int, default=0, help="seed of the test split")
    cli.add_progress_flag(p)
    args = p.parse_args(argv)

    def run() -> int:
        if args.n_test_per_type < 0:
            raise InputError(f"--n-test-per-type must be >= 0, got {args.n_test_per_type}")
        print(summarize(args.data, args.n_test_per_type, args.seed, args.progress, args.protocol))
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
