"""Scoring folders of label images: predictions against ground truth, paired by file-name stem.

Files (16-bit PNG or TIFF, see :mod:`dng_jax.io.labels`) pair by stem, so ``gt/abc.png`` pairs with
``pred/abc.tif``. The score is the Kaggle DSB2018 MAP (:mod:`dng_jax.evaluation.metrics`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dng_jax.errors import EvaluationError
from dng_jax.evaluation.metrics import image_score
from dng_jax.io.labels import LABEL_SUFFIXES, read_labels

__all__ = ["list_label_images", "evaluate_dirs"]


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
    # disable=None: a bar only on a terminal, so logs and pipes stay clean.
    items = tqdm(names, desc="scoring", unit="img", file=sys.stderr,
                 disable=None if progress is None else not progress, leave=False)
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
