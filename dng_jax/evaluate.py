"""Score a folder of predicted label images against a folder of ground-truth label images.

example:
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/pred [--json scores.json]

Files (16-bit PNG or TIFF) are paired by file-name stem, so gt/abc.png pairs with pred/abc.tif. The
score is the Kaggle DSB2018 mean average precision (empty ground truth and empty prediction score
1.0, exactly one empty scores 0.0). Per-image scores go to stdout, then the mean; --json writes
{"map": float, "n_images": int, "per_image": {stem: float}} atomically.

A ground-truth image without a prediction is an error listing the names, unless --allow-missing
scores it as an empty prediction. A prediction without a ground truth is an error unless
--ignore-extra. Every problem is one line "error: ..." on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from dng_jax import cli
from dng_jax.evaluation.folders import evaluate_dirs
from dng_jax.io.atomic import atomic_write_text
from dng_jax.io.workdir import check_output_file


def _parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.evaluate", __doc__)
    ap.add_argument("--gt", required=True, help="folder of ground-truth label images (16-bit PNG/TIFF)")
    ap.add_argument("--pred", required=True, help="folder of predicted label images (16-bit PNG/TIFF)")
    ap.add_argument("--json", metavar="OUT", help="write {map, n_images, per_image} to this file (atomically)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score a ground-truth image without a prediction as an empty prediction")
    ap.add_argument("--ignore-extra", action="store_true",
                    help="skip predictions that have no ground truth instead of failing")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the mean, not per-image scores")
    cli.add_progress_flag(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)

    def run() -> int:
        t0 = time.perf_counter()
        if args.json:
            check_output_file(args.json, "--json")  # before scoring, not after
        scores = evaluate_dirs(args.gt, args.pred, allow_missing=args.allow_missing,
                               ignore_extra=args.ignore_extra, progress=None if args.progress else False)
        mean = float(np.mean(list(scores.values())))
        if not args.quiet:
            width = max(len(n) for n in scores)
            for name, s in scores.items():
                print(f"{name:<{width}}  {s:.6f}")
        print(f"mAP {mean:.6f} over {len(scores)} images ({time.perf_counter() - t0:.1f} s)")
        if args.json:
            atomic_write_text(args.json, json.dumps({"map": mean, "n_images": len(scores), "per_image": scores},
                                                    indent=1) + "\n")
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
