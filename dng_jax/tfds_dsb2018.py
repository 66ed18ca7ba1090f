"""Build the DSB2018 TFDS dataset (array_record files; no TensorFlow needed).

example:
  python -m dng_jax.tfds_dsb2018 --data stage1_train.zip --data-dir ~/tensorflow_datasets

Reads --data, the Kaggle stage1_train.zip (or its unpacked folder, or a folder holding it; default: the bundled
mini-set) and writes the splits train / test / cluster / full with the cell types (docs/tfds.md).
Exit status 2 on unreadable data or a bad flag (one line naming it).
"""

from __future__ import annotations

import sys
import time

import tensorflow_datasets as tfds

from dng_jax import cli
from dng_jax.data.tfds_builder import ZIP_NAME, prepare_dsb2018
from dng_jax.errors import InputError
from dng_jax.io.workdir import check_output_dir


def main(argv: list[str] | None = None) -> int:
    ap = cli.make_parser("python -m dng_jax.tfds_dsb2018", __doc__)
    ap.add_argument("--data", "--zip", dest="data", default=None,
                    help=f"Kaggle {ZIP_NAME}, its unpacked folder, or a folder holding it "
                         f"(default: the bundled 18-image mini-set)")
    ap.add_argument("--data-dir", required=True, help="TFDS data dir to write into (TFDS's name for its output folder)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the test split")
    ap.add_argument("--n-test-per-type", type=int, default=2, help="test images per cell type (paper: 2)")
    ap.add_argument("--manifest", default=None, help="cell-type manifest cache (JSON) to read/write")
    ap.add_argument("--overwrite", action="store_true", help="rebuild even if the dataset exists")
    ap.add_argument("--workers", type=int, default=2, help="threads reading the source")
    ap.add_argument("--skip-bad", action="store_true",
                    help="leave out samples that cannot be read (e.g. overlapping masks) instead of failing")
    cli.add_verbosity_flags(ap, "no summary line")
    args = ap.parse_args(argv)

    def run() -> int:
        if args.workers < 1:
            raise InputError(f"--workers must be >= 1, got {args.workers}")
        t0 = time.perf_counter()
        check_output_dir(args.data_dir, "--data-dir")  # made by the builder, once the data is found
        if not args.progress:
            tfds.disable_progress_bar()
        builder = prepare_dsb2018(args.data, args.data_dir, args.seed, args.n_test_per_type,
                                  manifest_path=args.manifest, overwrite=args.overwrite,
                                  skip_bad=args.skip_bad, workers=args.workers)
        sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
        if args.quiet:
            return cli.EXIT_OK
        print(f"dsb2018/{builder.builder_config.name} at {builder.data_dir}: {sizes} "
              f"({time.perf_counter() - t0:.1f} s)")
        for sid, why in builder.info.metadata.get("skipped", {}).items():
            print(f"skipped {sid}: {why}")
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
