"""What a collection of images holds, by cell type and split.

example:
  python -m dng_jax.summary --data stage1_train.zip

With no --data it summarises the bundled mini-set; give the Kaggle stage1_train.zip (or its unpacked
folder) for the real thing, or a folder in the layout images/ + masks/ (+ manifest.csv) of your own.
Exit status 2 on unreadable data or a bad flag (one line naming it).
"""

from __future__ import annotations

import sys

from dng_jax import cli
from dng_jax.data.summary import summarize


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.summary", __doc__)
    cli.add_data_flags(p)
    cli.add_progress_flag(p)
    args = p.parse_args(argv)

    def run() -> int:
        print(summarize(cli.data_config(args), args.progress))
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
