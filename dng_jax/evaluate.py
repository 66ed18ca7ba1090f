"""Score a folder of predicted label images against a folder of ground-truth label images.

example:
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/pred [--json scores.json]
  python -m dng_jax.evaluate --gt test_set/gt --pred test_set/classical --compare test_set/pred

Files (16-bit PNG or TIFF) are paired by file-name stem, so gt/abc.png pairs with pred/abc.tif. The
score is the Kaggle DSB2018 mean average precision (empty ground truth and empty prediction score
1.0, exactly one empty scores 0.0). Per-image scores go to stdout, then the mean with its 95%
bootstrap interval (images resampled within cell types when --cell-types, or the cell_types.json
that python -m dng_jax.export_labels writes beside the gt folder, names them).

--compare B scores a second prediction folder on the same images and prints the paired comparison
B - PRED: the mean difference with its bootstrap interval (images resampled within cell types), the
share of images that improved, and the two-sided sign-flip permutation p-value of the mean difference
(exact up to 13 images that differ, else 10000 random sign sets). The verdict needs the interval on one
side of 0 and p < 0.05, and at least 10 images (5 of each cell type). --json writes {"map", "interval",
"n_images", "per_image"} (and "compare") atomically.

A ground-truth image without a prediction is an error listing the names, unless --allow-missing
scores it as an empty prediction. A prediction without a ground truth is an error unless
--ignore-extra. Every problem is one line "error: ..." on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dng_jax import cli
from dng_jax.errors import InputError
from dng_jax.evaluation.folders import evaluate_dirs
from dng_jax.evaluation.statistics import bootstrap_mean, paired_comparison, verdict_text
from dng_jax.io.atomic import atomic_write_text
from dng_jax.io.workdir import check_output_file


def _parser() -> cli.ArgumentParser:
    ap = cli.make_parser("python -m dng_jax.evaluate", __doc__)
    ap.add_argument("--gt", required=True, help="folder of ground-truth label images (16-bit PNG/TIFF)")
    ap.add_argument("--pred", required=True, help="folder of predicted label images (16-bit PNG/TIFF)")
    ap.add_argument("--json", metavar="OUT", help="write {map, interval, n_images, per_image} (and compare, with --compare) to this file "
                         "(atomically)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score a ground-truth image without a prediction as an empty prediction")
    ap.add_argument("--ignore-extra", action="store_true",
                    help="skip predictions that have no ground truth instead of failing")
    ap.add_argument("--compare", metavar="PRED_B", default=None,
                    help="a second prediction folder: paired comparison PRED_B - PRED on the same images")
    ap.add_argument("--cell-types", metavar="JSON", default=None,
                    help="cell type of every image ({'cell_types': {stem: type}}, as export_labels writes) for "
                         "resampling within types; default: GT/../cell_types.json when it exists")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the mean, not per-image scores")
    cli.add_progress_flag(ap)
    return ap


def _strata(path: Path, names: list[str], explicit: bool) -> list[str] | None:
    """The cell type of every image from an export_labels ``cell_types.json`` (None: not given)."""
    if not path.exists():
        if explicit:
            raise InputError(f"--cell-types {path}: no such file")
        return None
    try:
        types = json.loads(path.read_text())["cell_types"]
        return [types[n] for n in names]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a cell_types.json naming every image ({type(e).__name__}: {e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)

    def run() -> int:
        t0 = time.perf_counter()
        if args.json:
            check_output_file(args.json, "--json")  # before scoring, not after
        if args.n_boot < 100:
            raise InputError(f"--n-boot must be >= 100, got {args.n_boot}")
        types_path = Path(args.cell_types) if args.cell_types else Path(args.gt).parent / "cell_types.json"
        scores = evaluate_dirs(args.gt, args.pred, allow_missing=args.allow_missing,
                               ignore_extra=args.ignore_extra, progress=None if args.progress else False)
        names = list(scores)
        strata = _strata(types_path, names, explicit=args.cell_types is not None)
        values = np.array([scores[n] for n in names])
        iv = bootstrap_mean(values, strata, n_boot=args.n_boot)
        if not args.quiet:
            width = max(len(n) for n in scores)
            for name, sc in scores.items():
                print(f"{name:<{width}}  {sc:.6f}")
        by = f", resampled within {len(set(strata))} cell types" if strata is not None else ""
        print(f"mAP {iv.estimate:.6f} [{iv.low:.4f}, {iv.high:.4f}] over {len(scores)} images (95% bootstrap "
              f"interval{by}; {time.perf_counter() - t0:.1f} s)")
        out = {"map": iv.estimate, "interval": [iv.low, iv.high], "n_images": len(scores), "per_image": scores}
        if args.compare:
            other = evaluate_dirs(args.gt, args.compare, allow_missing=args.allow_missing,
                                  ignore_extra=args.ignore_extra, progress=None if args.progress else False)
            pc = paired_comparison(values, np.array([other[n] for n in names]), strata, n_boot=args.n_boot)
            print(f"{args.compare} - {args.pred}: {pc.diff.estimate:+.4f} [{pc.diff.low:+.4f}, {pc.diff.high:+.4f}] "
                  f"(mAP {pc.mean_b:.4f} vs {pc.mean_a:.4f}); improved on {pc.improved:.0%} of the images, worse on "
                  f"{pc.worse:.0%}; sign-flip permutation p = {pc.p:.3g}{' (exact)' if pc.p_exact else ''}: "
                  f"{verdict_text(pc)}")
            out["compare"] = {"pred_b": str(args.compare), "map_b": pc.mean_b, "diff": pc.diff.estimate,
                              "interval": [pc.diff.low, pc.diff.high], "improved": pc.improved, "worse": pc.worse,
                              "p_permutation": pc.p, "p_exact": pc.p_exact, "per_image_b": other}
        if args.json:
            atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")
        return cli.EXIT_OK

    return cli.run_command(run)


if __name__ == "__main__":
    sys.exit(main())
