"""Score a folder of predicted label images against a folder of ground-truth label images.

    python -m dng_jax.evaluate --gt GT_DIR --pred PRED_DIR [--json OUT] [--allow-missing]
                               [--ignore-extra] [--quiet]

Files (16-bit PNG or TIFF, see :mod:`dng_jax.label_io`) are paired by file-name stem, so
``gt/abc.png`` pairs with ``pred/abc.tif``. The score is the Kaggle DSB2018 mean average precision
(:mod:`dng_jax.metrics`: empty gt and empty prediction score 1.0, exactly one empty scores 0.0).
Per-image scores go to stdout, then the mean; ``--json`` writes
``{"map": float, "n_images": int, "per_image": {stem: float}}`` atomically.

A ground-truth image without a prediction is an error listing the names, unless ``--allow-missing``
scores it as an empty prediction. A prediction without a ground truth is an error unless
``--ignore-extra``. Every problem is one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dng_jax.atomic import atomic_write_text
from dng_jax.label_io import LABEL_SUFFIXES, read_labels
from dng_jax.metrics import image_score

__all__ = ["EvaluationError", "list_label_images", "evaluate_dirs", "main"]


class EvaluationError(ValueError):
    """A problem with the inputs of an evaluation; the message says what and where."""


def _name_list(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def list_label_images(folder: str | os.PathLike, what: str = "folder") -> dict[str, Path]:
    """``{stem: path}`` of the label images directly in ``folder`` (hidden files skipped)."""
    folder = Path(folder)
    if not folder.exists():
        raise EvaluationError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise EvaluationError(f"{what} {folder} is not a directory")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in LABEL_SUFFIXES:
            continue
        if p.stem in found:
            raise EvaluationError(f"{what} {folder}: two files for '{p.stem}': "
                                  f"{found[p.stem].name} and {p.name}")
        found[p.stem] = p
    return found


def evaluate_dirs(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, allow_missing: bool = False,
                  ignore_extra: bool = False, progress: bool | None = None) -> dict[str, float]:
    """Per-image scores ``{stem: score}`` (sorted by stem) of the predictions in ``pred_dir``."""
    gt = list_label_images(gt_dir, "ground-truth folder")
    pred = list_label_images(pred_dir, "prediction folder")
    if not gt:
        raise EvaluationError(f"ground-truth folder {gt_dir} has no label images "
                              f"({', '.join(LABEL_SUFFIXES)})")
    missing = sorted(set(gt) - set(pred))
    extra = sorted(set(pred) - set(gt))
    if missing and not allow_missing:
        raise EvaluationError(f"{len(missing)} ground-truth image(s) have no prediction in {pred_dir}: "
                              f"{_name_list(missing)} (use --allow-missing to score them as empty)")
    if extra and not ignore_extra:
        raise EvaluationError(f"{len(extra)} prediction(s) have no ground truth in {gt_dir}: "
                              f"{_name_list(extra)} (use --ignore-extra to skip them)")
    names = sorted(gt)
    items = names
    if progress is None or progress:
        try:
            from tqdm import tqdm

            # disable=None: only on a terminal, so logs and pipes stay clean.
            items = tqdm(names, desc="scoring", unit="img", file=sys.stderr,
                         disable=None if progress is None else not progress, leave=False)
        except ImportError:
            pass
    scores: dict[str, float] = {}
    for name in items:
        g = read_labels(gt[name])
        if name in pred:
            p = read_labels(pred[name])
            if p.shape != g.shape:
                raise EvaluationError(f"shape mismatch for '{name}': {gt[name]} is {g.shape[0]}x{g.shape[1]} "
                                      f"but {pred[name]} is {p.shape[0]}x{p.shape[1]}")
        else:
            p = np.zeros_like(g)
        scores[name] = image_score(g, p)
    return scores


def _write_json_atomic(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dng_jax.evaluate",
                                 description="Kaggle DSB2018 mean average precision of predicted label "
                                             "images against ground truth (paired by file-name stem).")
    ap.add_argument("--gt", required=True, help="folder of ground-truth label images (16-bit PNG/TIFF)")
    ap.add_argument("--pred", required=True, help="folder of predicted label images (16-bit PNG/TIFF)")
    ap.add_argument("--json", metavar="OUT", help="write {map, n_images, per_image} here (atomically)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="score a ground-truth image without a prediction as an empty prediction")
    ap.add_argument("--ignore-extra", action="store_true",
                    help="skip predictions that have no ground truth instead of failing")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the mean, not per-image scores")
    ap.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        scores = evaluate_dirs(args.gt, args.pred, allow_missing=args.allow_missing,
                               ignore_extra=args.ignore_extra,
                               progress=False if args.no_progress else None)
        mean = float(np.mean(list(scores.values())))
        if not args.quiet:
            width = max(len(n) for n in scores)
            for name, s in scores.items():
                print(f"{name:<{width}}  {s:.6f}")
        print(f"mAP {mean:.6f} over {len(scores)} images ({time.perf_counter() - t0:.1f} s)")
        if args.json:
            _write_json_atomic(Path(args.json), {"map": mean, "n_images": len(scores), "per_image": scores})
    except (ValueError, OSError) as e:
        # ValueError covers EvaluationError and the label_io/metrics errors, which name their file.
        msg = str(e).replace("\n", " ")
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            msg = f"{type(e).__name__}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
