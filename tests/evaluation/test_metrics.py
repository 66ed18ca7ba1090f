"""Kaggle DSB2018 metric: hand-worked cases, conventions, and input errors."""

from __future__ import annotations

import numpy as np
import pytest

from dng_jax.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    contingency,
    image_score,
    iou_matrix,
    mean_average_precision,
    precision_at,
    relabel_consecutive,
)


def _rect(shape, boxes):
    """Label image with label v painted on box (r0, r1, c0, c1) for each (v, box)."""
    lab = np.zeros(shape, np.int32)
    for v, (r0, r1, c0, c1) in boxes:
        lab[r0:r1, c0:c1] = v
    return lab


def test_thresholds_are_exact_decimals():
    assert DEFAULT_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_iou_exactly_06_scores_02():
    # gt: 10 pixels; pred: 6 of them -> IoU = 6/10 = 0.6 exactly.
    gt = _rect((4, 10), [(1, (0, 1, 0, 10))])
    pred = _rect((4, 10), [(1, (0, 1, 0, 6))])
    assert iou_matrix(gt, pred)[0, 0] == 0.6
    # matches at 0.5 and 0.55; at 0.6 IoU == t is NOT a match; none above.
    assert image_score(gt, pred) == pytest.approx((1 + 1 + 0 * 8) / 10)
    assert precision_at(iou_matrix(gt, pred), 0.6) == (0, 1, 1)
    assert precision_at(iou_matrix(gt, pred), 0.55) == (1, 0, 0)


def test_iou_equal_to_threshold_is_not_a_match():
    # IoU = 1/2 exactly: no threshold (all >= 0.5) matches.
    gt = _rect((2, 4), [(1, (0, 1, 0, 4))])
    pred = _rect((2, 4), [(1, (0, 1, 0, 2))])
    assert iou_matrix(gt, pred)[0, 0] == 0.5
    assert image_score(gt, pred) == 0.0
    # IoU = 3/4 exactly: matches at 0.5..0.7 (5 thresholds), not at 0.75.
    pred = _rect((2, 4), [(1, (0, 1, 0, 3))])
    assert image_score(gt, pred) == pytest.approx(5 / 10)


def test_two_objects_one_missed():
    gt = _rect((10, 10), [(1, (0, 3, 0, 3)), (2, (5, 8, 5, 8))])
    pred = _rect((10, 10), [(1, (0, 3, 0, 3))])  # perfect on object 1, object 2 missed
    # every threshold: TP=1, FP=0, FN=1 -> 1/2
    assert image_score(gt, pred) == pytest.approx(0.5)


def test_perfect_and_extra_prediction():
    gt = _rect((10, 10), [(1, (0, 3, 0, 3))])
    pred = _rect((10, 10), [(1, (0, 3, 0, 3)), (2, (6, 9, 6, 9))])
    assert image_score(gt, gt) == 1.0
    assert image_score(gt, pred) == pytest.approx(0.5)  # TP=1, FP=1


def test_mixed_iou_hand_worked():
    # object A: IoU 1; object B: IoU 8/10 = 0.8 -> at t<0.8: 2 TP; at t>=0.8: TP=1, FP=1, FN=1.
    gt = _rect((6, 20), [(1, (0, 2, 0, 5)), (2, (4, 5, 0, 10))])
    pred = _rect((6, 20), [(5, (0, 2, 0, 5)), (9, (4, 5, 0, 8))])
    expected = (6 * 1.0 + 4 * (1 / 3)) / 10
    assert image_score(gt, pred) == pytest.approx(expected)


def test_empty_conventions():
    z = np.zeros((5, 5), np.uint16)
    one = z.copy()
    one[1:3, 1:3] = 4
    assert image_score(z, z) == 1.0
    assert image_score(z, one) == 0.0
    assert image_score(one, z) == 0.0
    assert iou_matrix(z, one).shape == (0, 1)


def test_nonconsecutive_labels_and_dtypes_do_not_matter():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 5, (30, 30))
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.2] = 0
    base = image_score(gt, pred)
    lut = np.array([0, 70000, 3, 12, 65535])
    assert image_score(lut[gt].astype(np.uint32), (pred * 1000).astype(np.int64)) == pytest.approx(base)
    huge = np.array([0, 2**40, 7, 2**33, 5], dtype=np.uint64)  # np.unique path
    assert image_score(huge[gt], pred.astype(np.uint8)) == pytest.approx(base)
    assert image_score(gt.astype(bool), pred.astype(bool)) == image_score((gt > 0) * 1, (pred > 0) * 1)


def test_iou_matrix_matches_bruteforce_and_sparse_path(monkeypatch):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 7, (25, 31)) * 3
    pred = rng.integers(0, 5, (25, 31)) + 10 * (rng.random((25, 31)) < 0.3)
    dense = iou_matrix(gt, pred)
    gv = [v for v in np.unique(gt) if v]
    pv = [v for v in np.unique(pred) if v]
    brute = np.array([[np.sum((gt == a) & (pred == b)) / np.sum((gt == a) | (pred == b)) for b in pv]
                      for a in gv])
    np.testing.assert_allclose(dense, brute, rtol=0, atol=1e-15)
    import dng_jax.evaluation.metrics as M

    monkeypatch.setattr(M, "DENSE_CELLS_MAX", 1)
    np.testing.assert_array_equal(iou_matrix(gt, pred), dense)


def test_sparse_and_dense_scores_agree(monkeypatch):
    import dng_jax.evaluation.metrics as M

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 40, (40, 40))
    pred = np.roll(gt, 1, axis=0)
    dense = image_score(gt, pred)
    monkeypatch.setattr(M, "DENSE_CELLS_MAX", 1)
    assert M.image_score(gt, pred) == dense


def test_contingency_areas():
    gt = _rect((4, 4), [(2, (0, 2, 0, 2))])
    pred = _rect((4, 4), [(7, (1, 3, 1, 3))])
    ag, ap, gi, pj, inter = contingency(gt, pred)
    assert ag.tolist() == [4] and ap.tolist() == [4]
    assert gi.tolist() == [0] and pj.tolist() == [0] and inter.tolist() == [1]


def test_relabel_consecutive():
    flat, n = relabel_consecutive(np.array([[0, 5], [9, 5]]))
    assert n == 2 and flat.tolist() == [0, 1, 2, 1]
    flat, n = relabel_consecutive(np.zeros((2, 2), np.uint8))
    assert n == 0 and flat.tolist() == [0, 0, 0, 0]


def test_mean_average_precision():
    gt = _rect((4, 10), [(1, (0, 1, 0, 10))])
    pred = _rect((4, 10), [(1, (0, 1, 0, 6))])
    z = np.zeros((3, 3), np.uint8)
    m, per = mean_average_precision([(gt, pred), (gt, gt), (z, z)])
    assert per == pytest.approx([0.2, 1.0, 1.0])
    assert m == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError, match="no images"):
        mean_average_precision([])
    with pytest.raises(ValueError, match="image 1: shape mismatch"):
        mean_average_precision([(z, z), (z, gt)])


@pytest.mark.parametrize(
    "gt, pred, match",
    [
        (np.zeros((3, 3), int), np.zeros((3, 4), int), r"shape mismatch: gt is \(3, 3\) but pred is \(3, 4\)"),
        (np.zeros((3, 3), float), np.zeros((3, 3), int), "gt: label image must have an integer dtype"),
        (np.zeros((3, 3), int), np.full((3, 3), 0.5), "pred: label image must have an integer dtype"),
        (np.zeros((3, 3), int), -np.ones((3, 3), int), "pred: label image has negative values"),
        (np.int64(3), np.int64(3), "scalar"),
    ],
)
def test_bad_inputs(gt, pred, match):
    with pytest.raises(ValueError, match=match):
        image_score(gt, pred)


def test_bad_thresholds():
    a = np.ones((2, 2), int)
    with pytest.raises(ValueError, match=r"\[0.5, 1.0\]"):
        image_score(a, a, thresholds=[0.3])
    with pytest.raises(ValueError, match="at least one"):
        image_score(a, a, thresholds=[])
    with pytest.raises(ValueError, match="2-D"):
        precision_at(np.zeros(3), 0.5)


def test_large_image_is_fast():
    import time

    rng = np.random.default_rng(0)
    gt = np.kron(rng.integers(0, 3000, (104, 139)), np.ones((10, 10), np.int64))  # 1040x1390
    pred = np.roll(gt, 2, axis=1)
    t0 = time.perf_counter()
    s = image_score(gt, pred)
    assert time.perf_counter() - t0 < 2.0
    assert 0.0 < s < 1.0
