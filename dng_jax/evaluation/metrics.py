"""The Kaggle DSB2018 instance-segmentation score ("mean average precision" over IoU thresholds).

Per image, for each threshold t in 0.50, 0.55, ..., 0.95 a ground-truth object and a predicted object
*match* when their IoU is strictly greater than t (IoU exactly equal to t is not a match). With
TP = matched objects, FP = unmatched predictions and FN = unmatched ground-truth objects, the precision
at t is TP / (TP + FP + FN); the image score is the mean over the thresholds and the dataset score the
mean over images.

Because every threshold is >= 0.5, an object can overlap at most one other object with IoU > 0.5, so
the matching is one-to-one without any assignment step: TP(t) is simply the number of (gt, pred)
pairs with IoU > t. The IoUs come from one label-pair histogram (a contingency table of the two label
images), never from per-object loops.

Conventions for images without objects (Kaggle left them undefined: TP + FP + FN = 0):

* ground truth empty and prediction empty -> score 1.0 (nothing to find, nothing claimed);
* exactly one of them empty -> score 0.0 (every threshold has TP = 0 and FP + FN > 0, so this is
  what the formula gives anyway).

Label images are integer arrays of the same shape, 0 = background; the label values need not be
consecutive (they are relabelled internally). Boolean arrays count as one object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DENSE_CELLS_MAX",
    "check_label_image",
    "relabel_consecutive",
    "contingency",
    "iou_matrix",
    "precision_at",
    "image_score",
    "mean_average_precision",
]

# Written as decimal literals (not np.arange(0.5, 1.0, 0.05), whose values drift to 0.6000000000000001
# etc.), so that "IoU exactly equal to the threshold" means what it says.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

#: Above this many (n_gt + 1) * (n_pred + 1) cells the table is built sparsely (sort) instead of with
#: one dense bincount, so images with thousands of objects on both sides do not allocate gigabytes.
DENSE_CELLS_MAX = 1 << 24


def check_label_image(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as an ndarray after checking it is a non-negative integer (or bool) image."""
    a = np.asarray(labels)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: label image must have an integer dtype, got {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name}: label image must be an array, got a scalar")
    if np.issubdtype(a.dtype, np.signedinteger) and a.size and int(a.min()) < 0:
        raise ValueError(f"{name}: label image has negative values (min {int(a.min())}); 0 is background")
    return a


def relabel_consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the labels present to 1..n (0 stays 0), flattened to intp; returns (flat labels, n).

    Uses a lookup table when the largest label is not much bigger than the image (the usual case,
    linear time) and ``np.unique`` otherwise (arbitrary 32/64-bit ids).
    """
    flat = np.asarray(labels).ravel()
    if flat.size == 0:
        return flat.astype(np.intp), 0
    top = int(flat.max())
    if top == 0:
        return np.zeros(flat.size, np.intp), 0
    if top <= 4 * flat.size + (1 << 16):
        flat = flat.astype(np.intp, copy=False)
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.intp)
        lut[~present] = 0
        return lut[flat], int(lut[-1])
    uniq, inv = np.unique(flat, return_inverse=True)
    inv = inv.astype(np.intp, copy=False).ravel()
    if uniq[0] == 0:
        return inv, uniq.size - 1
    return inv + 1, uniq.size


def contingency(gt: np.ndarray, pred: np.ndarray):
    """Sparse overlap table of two label images.

    Returns ``(area_gt, area_pred, gi, pj, inter)``: object areas (length n_gt / n_pred, objects
    numbered 0.. in increasing label order) and, for every pair of objects that overlap, their indices
    and the intersection in pixels (all int64).
    """
    g = check_label_image(gt, "gt")
    p = check_label_image(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: gt is {g.shape} but pred is {p.shape}")
    gf, ng = relabel_consecutive(g)
    pf, npr = relabel_consecutive(p)
    cols = npr + 1
    cells = (ng + 1) * cols
    codes = gf.astype(np.int64) * cols + pf
    if cells <= DENSE_CELLS_MAX:
        table = np.bincount(codes, minlength=cells).reshape(ng + 1, cols)
        area_gt = table[1:].sum(axis=1)
        area_pred = table[:, 1:].sum(axis=0)
        gi, pj = np.nonzero(table[1:, 1:])
        inter = table[1:, 1:][gi, pj]
    else:
        uniq, counts = np.unique(codes, return_counts=True)
        ui, uj = np.divmod(uniq, cols)
        area_gt = np.bincount(ui, weights=counts, minlength=ng + 1)[1:].astype(np.int64)
        area_pred = np.bincount(uj, weights=counts, minlength=cols)[1:].astype(np.int64)
        both = (ui > 0) & (uj > 0)
        gi, pj, inter = ui[both] - 1, uj[both] - 1, counts[both]
    return (area_gt.astype(np.int64), area_pred.astype(np.int64),
            gi.astype(np.int64), pj.astype(np.int64), inter.astype(np.int64))


def _pair_ious(area_gt, area_pred, gi, pj, inter) -> np.ndarray:
    union = area_gt[gi] + area_pred[pj] - inter
    return inter.astype(np.float64) / union.astype(np.float64)


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Dense (n_gt, n_pred) float64 IoU matrix; rows/columns follow increasing label value."""
    area_gt, area_pred, gi, pj, inter = contingency(gt, pred)
    iou = np.zeros((area_gt.size, area_pred.size), np.float64)
    iou[gi, pj] = _pair_ious(area_gt, area_pred, gi, pj, inter)
    return iou


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("thresholds: need at least one IoU threshold")
    if not np.all((t >= 0.5) & (t <= 1.0)):
        # Below 0.5 one object can match several, and "IoU > t" no longer defines a one-to-one matching.
        raise ValueError(f"thresholds must lie in [0.5, 1.0], got {t.tolist()}")
    return t


def precision_at(iou: np.ndarray, t: float) -> tuple[int, int, int]:
    """(TP, FP, FN) at threshold ``t`` (>= 0.5) from an (n_gt, n_pred) IoU matrix; match is IoU > t."""
    _check_thresholds([t])
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"iou must be a 2-D (n_gt, n_pred) matrix, got shape {iou.shape}")
    n_gt, n_pred = iou.shape
    tp = int(np.count_nonzero(iou > t))
    return tp, n_pred - tp, n_gt - tp


def image_score(gt: np.ndarray, pred: np.ndarray,
                thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> float:
    """Kaggle DSB2018 score of one image: mean over thresholds of TP / (TP + FP + FN).

    Empty gt and empty pred -> 1.0; exactly one of them empty -> 0.0.
    """
    t = _check_thresholds(thresholds)
    area_gt, area_pred, gi, pj, inter = contingency(gt, pred)
    n_gt, n_pred = area_gt.size, area_pred.size
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0
    ious = _pair_ious(area_gt, area_pred, gi, pj, inter)
    tp = np.count_nonzero(ious[None, :] > t[:, None], axis=1)
    # TP + FP + FN = TP + (n_pred - TP) + (n_gt - TP)
    return float(np.mean(tp / (n_gt + n_pred - tp)))


def mean_average_precision(pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                           thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> tuple[float, list[float]]:
    """Dataset score over ``(gt, pred)`` pairs: (mean of the image scores, list of image scores)."""
    scores = []
    for k, (gt, pred) in enumerate(pairs):
        try:
            scores.append(image_score(gt, pred, thresholds))
        except ValueError as e:
            raise ValueError(f"image {k}: {e}") from None
    if not scores:
        raise ValueError("mean_average_precision: no images given")
    return float(np.mean(scores)), scores
