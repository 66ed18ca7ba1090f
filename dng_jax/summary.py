"""What a collection of images holds, by cell type and split.

example:
  python -m dng_jax.summary --data stage1_train.zip
  python -m dng_jax.summary --data my_study --known-type ct1

With no --data it summarises the bundled mini-set. --data takes either layout, as every command that reads
data does: the Kaggle layout <id>/images/<id>.png + <id>/masks/*.png (the stage1_train.zip or its unpacked
folder), or the folder layout images/<id>.png + masks/<id>.png (+ manifest.csv), one such folder or one
per experiment side by side (README, "Your own experiment"). It writes nothing.
Exit status 2 on unreadable data or a bad flag (one line naming it).
"""

from __future__ import annotations

import sys

from dng_jax import cli
from dng_jax.data.summary import summarize


def main(argv=None) -> int:
    p = cli.make_parser("python -m dng_jax.summary", __doc__)
    cli.add_data_flags(p)
    cli.add_verbosity_flags(p, "the split sizes only, not the table of cell types")
    args = p.parse_args(argv)

    def run() -> int:
        text = summarize(cli.data_config(args), args.progress)
        print(text.split("\n\n")[-1] if args.quiet else text)
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
