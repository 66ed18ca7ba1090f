"""Polarity and colour normalisation at the network's input (``model.input_polarity``; not in the paper).

CT1, the one labelled cell type, is grey fluorescence: bright nuclei on black. Brightfield and stained
tissue show dark nuclei on a bright, often coloured background, which the U-Net never saw in training.
``"grey_bright_nuclei"`` shows the encoder every image as CT1 looks: its grey level (the mean of the
channels), inverted where the background is bright. The grey level is repeated over the input's channels,
so the parameter tree (the stem's 3 input channels) is the same as without it and checkpoints are shared.

The rule: the background covers most of an image, so it is bright when the median grey level exceeds
``model.polarity_threshold``; the nuclei are then the dark objects (the classical pipeline,
:func:`dng_jax.segmentation.classical.classical_instances`, asks the same with mid-grey, 0.5). It is decided
per image inside the jitted model, from that image's (or tile's) pixels only. The median measures the
background level, which every tile of an image shares: a tile without nuclei decides as its image does, and
so does a tile where nuclei cover less than half of the pixels. A tile that is mostly nucleus is the one it
can get wrong (7% of the 64 px CT1 crops that are half nucleus or more). Relative rules (mean below median,
Otsu's class sizes) would decide a tile without nuclei by its noise.

The threshold 0.3 was chosen on the wide protocol's validation images: there, in whole images and in
64-256 px crops with less than half nucleus pixels, every fluorescence median is at most 0.17 and every
other type's at least 0.35; 0.3 is the middle of that gap (0.26) to one decimal. 0.04% of the CT1 training
images and crops lie above it. Mid-grey (0.5) cuts through the cytoplasm of brightfield cells and the pink
of magenta tissue: 4-6% of their 64 px crops with less than half nucleus decide against their image at 0.5,
none at 0.3 (``scripts/studies/check_polarity.py``, docs/data/polarity_check.json).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["INPUT_POLARITIES", "POLARITY_THRESHOLD", "grey_level", "bright_background", "grey_bright_nuclei",
           "apply_polarity"]

#: ``model.input_polarity``: ``"none"`` (paper: the RGB image as it is) or ``"grey_bright_nuclei"``.
INPUT_POLARITIES = ("none", "grey_bright_nuclei")
#: ``model.polarity_threshold``: a median grey level above it marks a bright background (module docstring).
POLARITY_THRESHOLD = 0.3


def grey_level(x: jax.Array) -> jax.Array:
    """``[..., C]`` -> ``[..., 1]``: the mean of the channels (the classical pipeline's grey image)."""
    return jnp.mean(x, axis=-1, keepdims=True)


def bright_background(x: jax.Array, threshold: float = POLARITY_THRESHOLD) -> jax.Array:
    """``bool [B]``: does image ``b`` of ``x [B, H, W, C]`` (in [0, 1]) have a bright background, i.e. is the
    median of its grey level above ``threshold`` (its nuclei are then the dark objects)?"""
    g = grey_level(jnp.asarray(x, jnp.float32))
    return jnp.median(g.reshape(g.shape[0], -1), axis=1) > threshold


def grey_bright_nuclei(x: jax.Array, threshold: float = POLARITY_THRESHOLD) -> jax.Array:
    """``float32 [B, H, W, C]`` in [0, 1] -> the grey level, ``1 - grey`` where the background is bright,
    repeated over the ``C`` channels: bright nuclei on a dark background, as CT1."""
    x = jnp.asarray(x, jnp.float32)
    g = grey_level(x)
    g = jnp.where(bright_background(x, threshold)[:, None, None, None], 1.0 - g, g)
    return jnp.broadcast_to(g, x.shape)


def apply_polarity(x: jax.Array, mode: str = "none", threshold: float = POLARITY_THRESHOLD) -> jax.Array:
    """``model.input_polarity`` on ``float32 [B, H, W, C]`` in [0, 1]; ``"none"`` returns ``x`` itself."""
    if mode == "none":
        return x
    if mode == "grey_bright_nuclei":
        return grey_bright_nuclei(x, threshold)
    raise ValueError(f"input_polarity must be one of {INPUT_POLARITIES}, got {mode!r}")
