"""Instance segmentation of images with a trained network: softmax -> the paper's watershed -> labels.

example:
  python -m dng_jax.predict --input images/ b.png --output labels/
  python -m dng_jax.predict --checkpoint runs/default --input images/ b.png \\
      --output labels/ --csv submission.csv

model:
  Without --checkpoint the model shipped in the package is used (bundled:cpu_real:
  the recipe of configs/cpu_real_unseen.py trained with seed 0 on the DSB2018
  stage-1 fluorescence images; which data, config and commit made it, and its
  MAP, are in dng_jax/segmentation/weights/cpu_real.json; --model-info prints them).
  --checkpoint is a training work dir (python -m dng_jax.train --workdir DIR),
  its checkpoints/ folder (latest step), one checkpoints/<step>/ folder, or a
  sweep's work dir (its baseline/ is used: WORKDIR and WORKDIR/baseline are the
  same network). The sweep does not keep its retrained encoders (only their
  scores and seed 0's test predictions), so the baseline network is the one to
  predict with; a sweep that loaded its baseline from --config.sweep.checkpoint
  keeps no copy: give that folder. The model and the watershed thresholds
  (config.postprocess) come from the training config stored with the
  checkpoint, the same config the training wrote to its work dir's config.json;
  editing that file changes nothing here. --checkpoint also takes exported
  weights (NAME.npz beside its NAME.json) and bundled:<name>.

ensemble:
  --checkpoint given several times averages the networks' softmax before the
  watershed (one segmentation per image; with TTA each network averages its 8
  views first). The networks must read images the same way (model.input_polarity,
  polarity_threshold, input_norm) and share the watershed (postprocess): a mix is
  refused, naming the two files. The first network's config decides eval.tta
  (the shipped model's: on).
  E.g. the three trainings of configs/cpu_real_unseen.py (seed 0 is the shipped
  model; docs/results.md, "Ensembles of the three trainings"):
    python -m dng_jax.predict --checkpoint bundled:cpu_real \\
      --checkpoint docs/figures/replicated/seed1/weights/cpu_real_unseen_seed1.npz \\
      --checkpoint docs/figures/replicated/seed2/weights/cpu_real_unseen_seed2.npz \\
      --input images/ --output labels/
  Each member costs one network's time: N members take about N x as long.

inputs:
  --input takes image files (PNG, TIFF, JPEG, BMP), folders of them, and
  Kaggle-layout folders (<folder>/<id>/images/<id>.png). Gray images are repeated
  to RGB, alpha is dropped, 16-bit images are rescaled to 8 bits. An image that
  cannot be read is skipped; the others are predicted, the bad ones are listed
  at the end and the exit status is 1.

outputs:
  <output>/<name>.png (or .tif with --format tif) per input: 16-bit instance
  labels, 0 = background, one value per object (opens in Fiji / napari). <name> is
  the file name without its suffix, or the <id> of a Kaggle-layout sample; two
  inputs with the same name are an error. --csv also writes a Kaggle run-length
  submission CSV of all inputs.

padding and tiling:
  Images of any size are padded at the bottom/right to a multiple of 32 (the
  network's total stride); the padding is cut off the result. Zero padding
  (--pad-mode constant) is what training saw (small images are zero padded
  before cropping, paper II-C), so it is the default; --pad-mode reflect tends
  to be a little better at the image edge of bright-background (brightfield,
  tissue) images, where a black frame looks like fluorescence background.
  Padded images larger than --tile-size in either dimension are predicted in
  overlapping tiles of --tile-size; overlapping softmax outputs are blended with
  a window that fades out over --overlap px towards the tile edges.

test-time augmentation (TTA):
  On for the shipped model; with --checkpoint, its config's eval.tta decides.
  TTA averages the softmax over the 8 flips and 90-degree rotations of each
  image (README's results table gives the MAP with and without it).
  --no-tta turns it off, --tta turns it on. It runs 8 forward passes per image
  instead of 1: once compiled it takes about 7x the time per image on a CPU
  (a large folder), and about 2.5x for one command on the 18 mini-set images
  (start-up and compilation included); scripts/bench/bench_predict_tta.py measures it.

exit status: 0 done; 1 some images could not be read (listed); 2 bad flags,
checkpoint or output folder (one line naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dng_jax import cli
from dng_jax.errors import InputError
from dng_jax.io.images import list_inputs
from dng_jax.io.workdir import check_output_dir, check_output_file
from dng_jax.models import STRIDE
from dng_jax.segmentation.bundled import DEFAULT_MODEL, bundled_info, describe_bundled, load_bundled
from dng_jax.segmentation.ensemble import Network, load_networks, make_ensemble_predictor
from dng_jax.segmentation.inference import segment_files


def _parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.predict", __doc__)
    ap.add_argument("--checkpoint", action="append", default=None,
                    help="training work dir (latest step), its checkpoints/ folder, one step folder "
                         "checkpoints/<step>, a sweep's work dir (its baseline; see below), NAME.npz or "
                         "bundled:<name>; several: their ensemble (mean softmax); default: the model shipped "
                         "in the package")
    ap.add_argument("--input", nargs="+", help="image files, folders of images and/or Kaggle-layout folders")
    ap.add_argument("--output", "--out", dest="output", help="folder for the label images")
    ap.add_argument("--model-info", action="store_true",
                    help="print which model predict uses without --checkpoint and where it came from (data, config, "
                         "commit, MAP), then exit")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="test-time augmentation: mean softmax over 8 flips / rotations, about 7x the time "
                         "per image (default: the model's eval.tta, on for the shipped model)")
    ap.add_argument("--csv", default=None, help="also write a Kaggle run-length submission CSV here")
    ap.add_argument("--format", choices=("png", "tif"), default="png", help="label image format (16-bit)")
    ap.add_argument("--tile-size", type=int, default=1024,
                    help="padded images larger than this (px, a multiple of 32) in either dimension are "
                         "predicted in overlapping tiles of this size")
    ap.add_argument("--overlap", type=int, default=64,
                    help="overlap of neighbouring tiles in px (0 <= overlap < tile size); the blending "
                         "window fades out over it")
    ap.add_argument("--pad-mode", choices=("constant", "reflect"), default="constant",
                    help="padding to a multiple of 32: constant = zeros, as in training; reflect = mirror "
                         "the image (can help bright-background images)")
    cli.add_verbosity_flags(ap, "no line per image")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def run() -> int:
        if args.model_info:
            info = bundled_info()
            print(describe_bundled(info))
            if not args.quiet:
                print(json.dumps(info["provenance"], indent=1))
            return 0
        if not args.input or not args.output:
            raise InputError("--input and --output are required (unless --model-info)")
        if args.tile_size < STRIDE or args.tile_size % STRIDE:
            raise InputError(f"--tile-size must be a positive multiple of {STRIDE}, got {args.tile_size}")
        if not 0 <= args.overlap < args.tile_size:
            raise InputError(f"--overlap must lie in [0, --tile-size), got {args.overlap}")
        check_output_dir(args.output, "--output")  # made when the first image is written
        if args.csv:
            check_output_file(args.csv, "--csv", made=[args.output])
        inputs = list_inputs(args.input)
        if args.checkpoint is None:
            networks = [Network(f"bundled:{DEFAULT_MODEL}", *load_bundled())]
        else:
            networks = load_networks(args.checkpoint)
        tta = networks[0].config.eval.tta if args.tta is None else args.tta
        predict = make_ensemble_predictor(networks, tile_size=args.tile_size, overlap=args.overlap,
                                          pad_mode=args.pad_mode, tta=tta)
        bad = segment_files(predict, inputs, args.output, fmt=args.format, csv=args.csv, progress=args.progress,
                            verbose=not args.quiet)
        return cli.report_skipped(bad, len(inputs), args.output)

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
