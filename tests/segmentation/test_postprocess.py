from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from dng_jax.segmentation.postprocess import WatershedConfig, probs_to_instances, validate_probs
from dng_jax.data.targets import classes_to_onehot, labels_to_classes


def _softmax_from_labels(labels, border_width=2, sigma=0.7):
    """A plausible network output: one-hot of the 3-class target, softened and blurred, renormalised."""
    oh = classes_to_onehot(labels_to_classes(labels, border_width)) * 0.9 + 0.1 / 3
    oh = np.stack([gaussian_filter(oh[..., c], sigma) for c in range(3)], -1)
    return (oh / oh.sum(-1, keepdims=True)).astype(np.float32)


def _two_touching():
    yy, xx = np.mgrid[:32, :32]
    labels = np.zeros((32, 32), np.uint16)
    labels[(yy - 16) ** 2 + (xx - 10) ** 2 <= 49] = 1
    labels[(yy - 16) ** 2 + (xx - 22) ** 2 <= 49] = 2  # overlaps disk 1: they touch along a line
    return labels


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_separates_two_touching_blobs():
    labels = _two_touching()
    probs = _softmax_from_labels(labels)
    out = probs_to_instances(probs)
    assert out.dtype == np.uint16 and out.shape == labels.shape
    assert set(np.unique(out)) == {0, 1, 2}
    # Each predicted instance lies inside exactly one true nucleus (the literal reading: its interior).
    for i in (1, 2):
        inside = labels[out == i]
        assert len(np.unique(inside)) == 1 and inside[0] != 0
    # Growing back into the predicted border ring recovers the full nuclei.
    grown = probs_to_instances(probs, WatershedConfig(expand_distance=2))
    assert set(np.unique(grown)) == {0, 1, 2}
    for i in (1, 2):
        j = np.bincount(labels[grown == i]).argmax()
        assert _iou(grown == i, labels == j) > 0.85


def test_border_line_between_markers():
    # Hand-made softmax: two cell rectangles, a 2 px border line between them, background elsewhere.
    probs = np.zeros((16, 24, 3), np.float32)
    probs[..., 0] = 1.0
    probs[4:12, 2:11] = [0.0, 0.9, 0.1]
    probs[4:12, 11:13] = [0.0, 0.05, 0.95]
    probs[4:12, 13:22] = [0.0, 0.9, 0.1]
    out = probs_to_instances(probs)
    assert out.max() == 2
    assert np.all(out[4:12, 11:13] == 0)
    assert len(set(np.unique(out[4:12, 2:11]))) == 1 and len(set(np.unique(out[4:12, 13:22]))) == 1
    assert out[8, 5] != out[8, 18]


def test_low_probability_instance_dropped():
    probs = np.zeros((32, 32, 3), np.float32)
    probs[..., 0] = 1.0
    # Confident nucleus.
    probs[4:12, 4:12] = [0.05, 0.9, 0.05]
    # Weak nucleus: a few marker pixels in a large lukewarm (0.4) region -> mean P(cell) < 0.6.
    probs[16:30, 16:30] = [0.3, 0.4, 0.3]
    probs[22:24, 22:24] = [0.05, 0.85, 0.1]
    out = probs_to_instances(probs)
    assert out.max() == 1 and np.all(out[4:12, 4:12] == 1) and not out[16:30, 16:30].any()
    kept = probs_to_instances(probs, WatershedConfig(min_mean_cell_prob=0.3))
    assert kept.max() == 2 and np.all(kept[16:30, 16:30] > 0)


def test_thresholds_configurable():
    probs = _softmax_from_labels(_two_touching())
    assert probs_to_instances(probs, WatershedConfig(marker_threshold=0.99)).max() == 0
    # With the height map binarised at 0.95, pixels with P(cell) in (0.2, 0.95] are shared by plain BFS;
    # the result is still two instances.
    assert probs_to_instances(probs, WatershedConfig(height_threshold=0.95)).max() == 2
    # background_source="foreground": border pixels are no longer background seeds, so instances are
    # larger (include the border ring); drop-threshold lowered since the ring has low P(cell).
    lit = probs_to_instances(probs, WatershedConfig(min_mean_cell_prob=0.0))
    fg = probs_to_instances(probs, WatershedConfig(background_source="foreground", min_mean_cell_prob=0.0))
    assert (fg > 0).sum() > (lit > 0).sum()
    with pytest.raises(ValueError):
        WatershedConfig(marker_threshold=1.5)
    with pytest.raises(ValueError):
        WatershedConfig(background_source="border")


def test_empty_and_all_background():
    probs = np.zeros((8, 8, 3), np.float32)
    probs[..., 0] = 1.0
    out = probs_to_instances(probs)
    assert out.dtype == np.uint16 and not out.any()


def test_bad_input():
    good = np.full((8, 8, 3), 1 / 3, np.float32)
    validate_probs(good)
    with pytest.raises(ValueError, match="shape"):
        probs_to_instances(good[..., :2])
    with pytest.raises(ValueError, match="shape"):
        probs_to_instances(good[0])
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probs_to_instances(bad)
    with pytest.raises(ValueError, match="sum"):
        probs_to_instances(good * 0.5)
    with pytest.raises(ValueError, match="logits"):
        probs_to_instances(np.broadcast_to(np.float32([-2.0, 1.0, 2.0]), (8, 8, 3)))
