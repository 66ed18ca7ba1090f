"""Softmax (background, cell, cell-border) -> instance labels: the paper's watershed (Sec. II-C, Fig. 1).

Paper text: "The input of the post processing algorithm is a softmax tensor of shape h x w x 3 ...
Starting points were pixels where the likelihood of being a cell and not a cell-border was greater than
80%. Additionally, background starting points were pixels with a value below 20%. The height map is a
binarized version of the cell output map with a threshold of 30%. All instances computed by the
watershed algorithm that had an average cell likelihood below 60% were set to background."

Reading chosen here (``c = probs[..., 1]`` is the *cell* channel, "cell and not cell-border"):
  1. instance markers: connected components (4-connectivity by default, so a thin diagonal border line
     cannot be bridged) of ``c > marker_threshold`` (0.8);
  2. background markers: ``c < background_threshold`` (0.2) -- "a value" read as the value of the same
     cell map. Note this makes predicted border pixels background seeds too, which is what keeps
     touching nuclei apart; ``background_source="foreground"`` uses ``P(cell) + P(border)`` instead
     (i.e. ``P(background) > 0.8``);
  3. height map: ``0`` where ``c > height_threshold`` (0.3), ``1`` elsewhere (the binarised cell map,
     inverted so the flood fills the likely-cell regions first; ties on each plateau are resolved in
     breadth-first order by skimage's priority queue), flooded from all markers with
     ``skimage.segmentation.watershed``; the background basin becomes label 0;
  4. instances with mean ``c`` < ``min_mean_cell_prob`` (0.6) are set to background; the rest are
     relabelled 1..n (uint16, or uint32 above 65535 instances).

Under this literal reading an instance is the predicted *cell interior* (the border ring, part of the
object in :mod:`dng_jax.data.targets`, goes to background). ``expand_distance > 0`` (not in the paper; off by
default) grows the kept instances by that many pixels into non-background pixels (``argmax != 0``)
afterwards, e.g. ``expand_distance=2`` to match the 2 px target border.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as cc_label
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from dng_jax.typed_config import TypedConfig, param, require

__all__ = ["WatershedConfig", "validate_probs", "probs_to_instances"]


class WatershedConfig(TypedConfig):
    """The ``postprocess`` section: thresholds of the watershed (paper defaults, Sec. II-C)."""

    marker_threshold: float = param(0.8, "instance markers: connected regions with P(cell) above this")
    background_threshold: float = param(0.2, "background markers: pixels with P(cell) below this")
    height_threshold: float = param(0.3, "height map: P(cell) binarised at this value")
    min_mean_cell_prob: float = param(0.6, "instances with a mean P(cell) below this become background")
    background_source: str = param("cell", "background markers from 'cell' = P(cell) (literal) or "
                                   "'foreground' = P(cell) + P(border)")
    marker_connectivity: int = param(1, "markers: 1 = 4-connected, 2 = 8-connected")
    expand_distance: int = param(0, "extension: grow instances by this many px into the border ring; 0 = paper")
    sum_tolerance: float = param(1e-2, "allowed |sum over classes - 1| of the softmax input")

    def check(self) -> None:
        for f in ("marker_threshold", "background_threshold", "height_threshold", "min_mean_cell_prob"):
            v = getattr(self, f)
            require(0.0 <= v <= 1.0, f, f"must lie in [0, 1], got {v}")
        require(self.background_source in ("cell", "foreground"), "background_source",
                f"must be 'cell' or 'foreground', got {self.background_source!r}")
        require(self.marker_connectivity in (1, 2), "marker_connectivity",
                f"must be 1 or 2, got {self.marker_connectivity}")
        require(self.expand_distance >= 0, "expand_distance",
                f"must be a non-negative integer, got {self.expand_distance}")
        require(self.sum_tolerance >= 0, "sum_tolerance", f"must be >= 0, got {self.sum_tolerance}")


def validate_probs(probs, tol: float = 1e-2) -> np.ndarray:
    """Check ``probs`` is an ``H x W x 3`` finite softmax (entries in [0, 1], summing to ~1); float32 copy."""
    p = np.asarray(probs)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f"probs must have shape (H, W, 3) (background, cell, border), got {p.shape}")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"probs must be numeric, got {p.dtype}")
    p = p.astype(np.float32)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or inf")
    if p.size and (p.min() < -tol or p.max() > 1.0 + tol):
        raise ValueError(
            f"probs must lie in [0, 1], got range [{p.min():.3g}, {p.max():.3g}] (pass softmax, not logits)"
        )
    if p.size:
        err = float(np.abs(p.sum(-1) - 1.0).max())
        if err > tol:
            raise ValueError(f"probs must sum to 1 over the class axis (max deviation {err:.3g}); apply softmax first")
    return p


def probs_to_instances(probs, cfg: WatershedConfig = WatershedConfig()) -> np.ndarray:
    """Softmax ``H x W x 3`` (background, cell, border) -> instance labels ``H x W`` (0 = background)."""
    p = validate_probs(probs, cfg.sum_tolerance)
    h, w, _ = p.shape
    cell = p[..., 1]

    markers = cc_label(cell > cfg.marker_threshold, connectivity=cfg.marker_connectivity).astype(np.int32)
    n = int(markers.max())
    if n == 0:
        return np.zeros((h, w), np.uint16)

    bg_value = cell if cfg.background_source == "cell" else cell + p[..., 2]
    bg_label = n + 1
    seeds = np.where((markers == 0) & (bg_value < cfg.background_threshold), bg_label, markers)

    height = (cell <= cfg.height_threshold).astype(np.float32)  # 0 = binarised cell region, flooded first
    ws = watershed(height, seeds, connectivity=1)
    ws[ws == bg_label] = 0

    # Drop instances whose average cell likelihood is below the threshold.
    sums = np.bincount(ws.ravel(), weights=cell.ravel(), minlength=n + 1)
    counts = np.bincount(ws.ravel(), minlength=n + 1)
    keep = (counts > 0) & (sums >= cfg.min_mean_cell_prob * np.maximum(counts, 1))
    keep[0] = False
    ws = np.where(keep[ws], ws, 0)

    if cfg.expand_distance > 0:
        grown = expand_labels(ws, distance=cfg.expand_distance)
        not_bg = np.argmax(p, axis=-1) != 0
        ws = np.where(ws > 0, ws, np.where(not_bg, grown, 0))

    out, _, _ = relabel_sequential(ws)
    return out.astype(np.uint16 if out.max() <= np.iinfo(np.uint16).max else np.uint32)
