"""Instance labels -> the paper's three-class semantic targets (Fig. 1, Sec. II-B).

The segmentation network is trained on a pixel-wise 3-class problem: *background*, *cell* and
*cell-border* (Fig. 1). Instance masks are recovered afterwards by the watershed in
:mod:`dng_jax.segmentation.postprocess`, which seeds one instance per connected *cell* region; the border class is
what keeps touching nuclei apart. This module builds those targets on the host (NumPy/SciPy).

Border definition: a pixel of object ``L`` is *border* when some pixel within Euclidean distance
``border_width`` of it (a disk footprint) is not ``L`` (background or another object). Because the disk
of radius >= 1 contains the 4-neighbours, no *cell* pixel of one object is ever 4-adjacent to any pixel
of another object, so touching nuclei are always split by at least ``2 * border_width`` border pixels.
The image frame is *not* treated as background (objects cut by the crop have no border on the frame):
the object continues outside the field of view, so there is no real boundary there.

Default ``border_width=2`` (the paper does not state a width): the gap it leaves between touching nuclei
(>= 4 px) survives the 0.5x random scaling of the augmentation (Sec. II-C) and the blur of the u-net's
upsampling path, while DSB2018 nuclei (typically radius >= 4 px) still keep a non-empty cell interior.
Objects too thin for an interior at that width fall back to a smaller width (down to 1) so that every
nucleus still gets a watershed seed (``ensure_interior``).

``touching_only=True`` (an extension, ``data.border = "touching"``): only pixels with *another object*
within ``border_width`` are border; an object's edge against the background stays *cell*. The watershed's
cell region is then the whole nucleus where it is free, which the paper's reading of the softmax (the
instance is the cell region) needs to reach the high IoU thresholds on small nuclei.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BACKGROUND",
    "CELL",
    "BORDER",
    "NUM_CLASSES",
    "CLASS_NAMES",
    "DEFAULT_BORDER_WIDTH",
    "disk_footprint",
    "labels_to_classes",
    "classes_to_onehot",
]

BACKGROUND, CELL, BORDER = 0, 1, 2
NUM_CLASSES = 3
CLASS_NAMES = ("background", "cell", "cell-border")
DEFAULT_BORDER_WIDTH = 2


def disk_footprint(radius: int) -> np.ndarray:
    """Boolean disk ``x^2 + y^2 <= radius^2`` of shape ``(2r+1, 2r+1)`` (radius 1 = 4-neighbour cross)."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def _border_mask(labels: np.ndarray, width: int, touching_only: bool = False) -> np.ndarray:
    """Object pixels with a differently-labelled pixel (``touching_only``: another object's pixel) within
    ``width`` (min/max filter trick, no loop)."""
    fp = disk_footprint(width)
    # mode='nearest' replicates the edge: the frame does not create a border.
    hi = ndi.maximum_filter(labels, footprint=fp, mode="nearest")
    if touching_only:  # background counts as +inf for the minimum, so only a smaller object id shows
        lo = ndi.minimum_filter(np.where(labels > 0, labels, np.iinfo(labels.dtype).max), footprint=fp, mode="nearest")
        return (labels > 0) & ((hi > labels) | (lo < labels))
    lo = ndi.minimum_filter(labels, footprint=fp, mode="nearest")
    return (labels > 0) & ((hi != labels) | (lo != labels))


def labels_to_classes(
    labels: np.ndarray,
    border_width: int = DEFAULT_BORDER_WIDTH,
    ensure_interior: bool = True,
    touching_only: bool = False,
) -> np.ndarray:
    """Instance labels ``uint HxW`` (0 = background) -> class map ``uint8 HxW`` in {0, 1, 2}.

    Args:
      labels: 2-D integer array, 0 = background, each nucleus a distinct positive id.
      border_width: border band width in px (>= 0; 0 = no border class, touching objects then merge).
      ensure_interior: objects that would be all border get the next smaller width (down to 1), so each
        keeps at least one *cell* pixel, i.e. one watershed seed. Separation still holds (width >= 1).
      touching_only: border only where another object is within ``border_width`` (see above).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"labels must be an integer array, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative (0 = background)")
    if int(border_width) != border_width or border_width < 0:
        raise ValueError(f"border_width must be a non-negative integer, got {border_width!r}")
    border_width = int(border_width)
    labels = labels.astype(np.int64 if labels.dtype.itemsize > 4 else np.int32, copy=False)

    classes = np.where(labels > 0, CELL, BACKGROUND).astype(np.uint8)
    if border_width == 0 or not labels.any():
        return classes

    border = _border_mask(labels, border_width, touching_only)
    if ensure_interior and border_width > 1:
        n = int(labels.max()) + 1
        for w in range(border_width - 1, 0, -1):
            has_cell = np.bincount(labels[(labels > 0) & ~border], minlength=n) > 0
            has_cell[0] = True
            starved = ~has_cell[labels]  # pixels of objects with no cell pixel yet
            if not starved.any():
                break
            border = np.where(starved, _border_mask(labels, w, touching_only), border)
    classes[border] = BORDER
    return classes


def classes_to_onehot(classes: np.ndarray, num_classes: int = NUM_CLASSES, dtype=np.float32) -> np.ndarray:
    """Class map ``[..., H, W]`` -> one-hot ``[..., H, W, num_classes]`` (e.g. for a soft-label loss)."""
    classes = np.asarray(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes}), got [{classes.min()}, {classes.max()}]")
    return np.eye(num_classes, dtype=dtype)[classes]
