from __future__ import annotations

import numpy as np
import pytest

from dng_jax.data.targets import (
    BACKGROUND,
    BORDER,
    CELL,
    NUM_CLASSES,
    classes_to_onehot,
    disk_footprint,
    labels_to_classes,
)


def _disk(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _cross_object_cell_contacts(classes, labels):
    """Number of 4-adjacent pixel pairs that are both CELL but belong to different objects."""
    cell = classes == CELL
    lab = labels.astype(np.int64)
    h = cell[:, 1:] & cell[:, :-1] & (lab[:, 1:] != lab[:, :-1])
    v = cell[1:, :] & cell[:-1, :] & (lab[1:, :] != lab[:-1, :])
    return int(h.sum() + v.sum())


def test_constants():
    assert (BACKGROUND, CELL, BORDER, NUM_CLASSES) == (0, 1, 2, 3)


def test_disk_counts_hand_made():
    labels = _disk((32, 32), (16, 16), 8).astype(np.uint16)
    classes = labels_to_classes(labels, border_width=2)
    assert classes.dtype == np.uint8 and classes.shape == labels.shape
    area = int(labels.sum())
    # Border = object minus its erosion by a radius-2 disk; interior = disk of radius ~6.
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(labels > 0, structure=disk_footprint(2))
    assert (classes == CELL).sum() == interior.sum()
    assert (classes == BORDER).sum() == area - interior.sum()
    assert (classes == BACKGROUND).sum() == labels.size - area
    # The whole object is cell or border, background untouched.
    assert np.all((classes > 0) == (labels > 0))


def test_two_touching_nuclei_are_separated():
    labels = np.zeros((32, 32), np.uint16)
    labels[8:24, 4:16] = 1
    labels[8:24, 16:28] = 2  # shares the column boundary 15|16 with object 1
    for bw in (1, 2, 3):
        classes = labels_to_classes(labels, border_width=bw)
        assert _cross_object_cell_contacts(classes, labels) == 0
        # Columns next to the contact line are border on both sides.
        assert np.all(classes[10:22, 16 - bw : 16 + bw] == BORDER)
        # Each object still has a cell interior.
        for i in (1, 2):
            assert np.any(classes[labels == i] == CELL)


def test_border_width_parameter():
    labels = _disk((32, 32), (16, 16), 10).astype(np.uint16)
    n_border = [(labels_to_classes(labels, border_width=w) == BORDER).sum() for w in (0, 1, 2, 3)]
    assert n_border[0] == 0
    assert n_border[0] < n_border[1] < n_border[2] < n_border[3]
    # Width 1 = pixels 4-adjacent to the outside.
    c1 = labels_to_classes(labels, border_width=1)
    lab = np.pad(labels, 1)
    outside_nb = (lab[:-2, 1:-1] == 0) | (lab[2:, 1:-1] == 0) | (lab[1:-1, :-2] == 0) | (lab[1:-1, 2:] == 0)
    np.testing.assert_array_equal(c1 == BORDER, (labels > 0) & outside_nb)


def test_image_frame_is_not_a_border():
    labels = np.ones((16, 16), np.uint16)
    assert np.all(labels_to_classes(labels) == CELL)


def test_empty_image():
    classes = labels_to_classes(np.zeros((16, 20), np.uint16))
    assert classes.shape == (16, 20) and classes.dtype == np.uint8 and not classes.any()


def test_tiny_object_keeps_an_interior():
    labels = np.zeros((16, 16), np.uint16)
    labels[5:8, 5:8] = 1  # 3x3: all border at width 2
    assert not np.any(labels_to_classes(labels, 2, ensure_interior=False) == CELL)
    c = labels_to_classes(labels, 2)
    assert c[6, 6] == CELL and (c == CELL).sum() == 1


def test_many_random_touching_objects_separated():
    from skimage.segmentation import watershed

    rng = np.random.default_rng(0)
    seeds = np.zeros((64, 64), np.int32)
    pts = rng.integers(0, 64, (25, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 26)
    labels = watershed(np.zeros((64, 64)), seeds).astype(np.uint16)  # tessellation: everything touches
    classes = labels_to_classes(labels, border_width=2)
    assert _cross_object_cell_contacts(classes, labels) == 0


def test_bad_input():
    with pytest.raises(ValueError):
        labels_to_classes(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError):
        labels_to_classes(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        labels_to_classes(np.zeros((4, 4), np.uint16), border_width=-1)


def test_onehot():
    c = np.array([[0, 1], [2, 1]], np.uint8)
    oh = classes_to_onehot(c)
    assert oh.shape == (2, 2, 3) and oh.dtype == np.float32
    np.testing.assert_array_equal(oh.argmax(-1), c)
    np.testing.assert_array_equal(oh.sum(-1), 1)
    with pytest.raises(ValueError):
        classes_to_onehot(np.array([3]))


def _touching_border_reference(labels, width):
    """Plain loops: an object pixel is border iff another object's pixel lies within ``width`` (disk),
    the frame replicated (as the filters' mode='nearest')."""
    h, w = labels.shape
    out = np.zeros(labels.shape, bool)
    r = int(width)
    for y in range(h):
        for x in range(w):
            if labels[y, x] == 0:
                continue
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dy * dy + dx * dx > r * r:
                        continue
                    v = labels[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
                    if v != 0 and v != labels[y, x]:
                        out[y, x] = True
    return out


@pytest.mark.parametrize("width", [1, 2])
def test_touching_only_border_matches_reference_and_still_separates(width):
    from skimage.segmentation import watershed

    rng = np.random.default_rng(1)
    seeds = np.zeros((40, 40), np.int32)
    pts = rng.integers(0, 40, (12, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 13)
    labels = watershed(np.zeros((40, 40)), seeds).astype(np.uint16)
    labels[_disk((40, 40), (20, 20), 6)] = 0  # some background, so some edges are free
    classes = labels_to_classes(labels, border_width=width, touching_only=True, ensure_interior=False)
    np.testing.assert_array_equal(classes == BORDER, _touching_border_reference(labels, width))
    assert _cross_object_cell_contacts(classes, labels) == 0
    # an isolated nucleus has no border at all: its whole extent is cell
    lone = _disk((20, 20), (10, 10), 5).astype(np.uint8)
    assert not (labels_to_classes(lone, 2, touching_only=True) == BORDER).any()
    assert (labels_to_classes(lone, 2, touching_only=True) == CELL).sum() == lone.sum()
