"""The classical reference: nuclei without learning (Otsu threshold + distance-transform watershed).

example:
  python -m dng_jax.classical --input test_set/images --output test_set/classical
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/classical

What a biologist tries first, and the floor a learned model has to beat: grey image, inverted when
the background is bright, Gaussian smoothing (--sigma), Otsu threshold, holes filled, objects under
--min-size px dropped, watershed on the distance transform seeded at maxima at least --min-distance px
apart. The defaults were chosen on the validation set (scripts/studies/tune_classical.py), never on the test
images. Inputs and outputs as python -m dng_jax.predict: image files, folders of them and Kaggle-layout
folders in; 16-bit label images (and --csv, a Kaggle run-length CSV) out.

exit status: 0 done; 1 some images could not be read (listed); 2 bad flags or output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial

from dng_jax import cli
from dng_jax.errors import ConfigError, InputError
from dng_jax.io.images import list_inputs
from dng_jax.io.workdir import check_output_dir, check_output_file
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances
from dng_jax.segmentation.inference import segment_files


def main(argv: Sequence[str] | None = None) -> int:
    d = ClassicalConfig()
    ap = cli.make_parser("python -m dng_jax.classical", __doc__)
    ap.add_argument("--input", required=True, nargs="+", help="image files, folders of images and/or Kaggle-layout folders")
    cli.add_output_flag(ap, "folder for the label images")
    ap.add_argument("--csv", default=None, help="also write a Kaggle run-length submission CSV here")
    ap.add_argument("--format", choices=("png", "tif"), default="png", help="label image format (16-bit)")
    ap.add_argument("--sigma", type=float, default=d.sigma, help="Gaussian smoothing before the threshold (px)")
    ap.add_argument("--min-distance", type=int, default=d.min_distance, help="seeds at least this many px apart")
    ap.add_argument("--min-size", type=int, default=d.min_size, help="drop objects smaller than this (px)")
    cli.add_verbosity_flags(ap, "no line per image")
    args = ap.parse_args(argv)

    def run() -> int:
        try:
            cfg = ClassicalConfig(sigma=args.sigma, min_distance=args.min_distance, min_size=args.min_size)
        except ConfigError as e:
            raise InputError(f"--{str(e).split(':', 1)[0].replace('_', '-')}:{str(e).split(':', 1)[1]}") from None
        check_output_dir(args.output, "--output")  # made when the first image is written
        if args.csv:
            check_output_file(args.csv, "--csv", made=[args.output])
        inputs = list_inputs(args.input)
        bad = segment_files(partial(classical_instances, cfg=cfg), inputs, args.output, fmt=args.format,
                            csv=args.csv, progress=args.progress, verbose=not args.quiet)
        return cli.report_skipped(bad, len(inputs), args.output)

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
