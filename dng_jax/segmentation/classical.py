"""The classical reference: nuclei without any learning, what a biologist tries first.

Grey image (mean of the channels) -> inverted when the background is bright (brightfield, stained
tissue: the nuclei are the dark objects) -> Gaussian smoothing -> Otsu threshold -> holes filled,
small objects dropped -> distance-transform watershed: seeds are the local maxima of the distance to the
background at least ``min_distance`` apart, so touching round nuclei are cut at their waist.

scikit-image and SciPy only. It is the floor a learned model has to beat: every Table I has its row.
Its few parameters (:class:`ClassicalConfig`) were chosen on the validation set, never on the test
images: a grid search (``scripts/studies/tune_classical.py``) on the wide protocol's 28 CT1 validation images
gave sigma 0, min_distance 12, min_size 45 (validation MAP 0.499; docs/history.md, "The classical reference").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label as cc_label
from skimage.segmentation import relabel_sequential, watershed

from dng_jax.typed_config import TypedConfig, param, require

__all__ = ["ClassicalConfig", "classical_instances"]


class ClassicalConfig(TypedConfig):
    """The ``classical`` section: the classical reference (Otsu + distance-transform watershed)."""

    sigma: float = param(0.0, "Gaussian smoothing of the grey image before the threshold (px; 0 = none)")
    min_distance: int = param(12, "watershed seeds: distance-transform maxima at least this many px apart")
    min_size: int = param(45, "objects smaller than this many px are dropped")

    def check(self) -> None:
        require(self.sigma >= 0, "sigma", f"must be >= 0, got {self.sigma}")
        require(self.min_distance >= 1, "min_distance", f"must be >= 1, got {self.min_distance}")
        require(self.min_size >= 0, "min_size", f"must be >= 0, got {self.min_size}")


def classical_instances(image: np.ndarray, cfg: ClassicalConfig = ClassicalConfig()) -> np.ndarray:
    """Instance labels ``uint16 H x W`` (0 = background) of an RGB or grey ``uint8`` image."""
    a = np.asarray(image, np.float64)
    gray = a.mean(axis=-1) if a.ndim == 3 else a
    if np.median(gray) > 127.5:  # bright background: the nuclei are the dark objects
        gray = 255.0 - gray
    if cfg.sigma > 0:
        gray = gaussian(gray, sigma=cfg.sigma, preserve_range=True)
    if gray.max() - gray.min() < 1e-6:  # a flat image has no objects
        return np.zeros(gray.shape, np.uint16)
    fg = ndi.binary_fill_holes(gray > threshold_otsu(gray))
    regions = cc_label(fg)
    if cfg.min_size > 0:  # drop small objects
        small = np.bincount(regions.ravel()) < cfg.min_size
        small[0] = False
        regions[small[regions]] = 0
        fg = regions > 0
    if not fg.any():
        return np.zeros(gray.shape, np.uint16)
    dist = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=cfg.min_distance, labels=regions, exclude_border=False)
    markers = np.zeros(gray.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a region without a peak keeps one seed (its deepest pixel), so no object is lost
    present = np.unique(regions[regions > 0])
    unseeded = np.setdiff1d(present, regions[tuple(peaks.T)])
    for n, pos in enumerate(ndi.maximum_position(dist, regions, unseeded), start=len(peaks) + 1):
        markers[pos] = n
    ws = watershed(-dist, markers, mask=fg)
    out, _, _ = relabel_sequential(ws)
    return out.astype(np.uint16 if out.max() <= np.iinfo(np.uint16).max else np.uint32)
