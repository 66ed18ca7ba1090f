"""Batch data augmentation of Sec. II-C, as pure jittable JAX with explicit PRNG keys.

Paper (Sec. II-C): after 256x256 random crops, "with a probability of 50%: random color channel swaps,
color inversion, random scaling with a factor between .5 and 2 (25% probability), rotation of the image
by a multiple of 90 degrees, flipping along the vertical and/or horizontal axis." The same regime is used
for the clustering step (drawing the 5000 unlabeled images) and the pseudo-label training.

Design:
  * every op is its own pure function; :func:`sample_params` draws one sample's decisions from one key
    (an :class:`AugmentParams` pytree, handy for tests/logging) and :func:`apply_params` applies them
    with ``jnp.where``/``lax.switch`` (no Python control flow on traced values); :func:`augment_sample`
    composes the two and :func:`augment_batch` splits the key and ``vmap`` s it, so each sample gets
    its own transform and the whole thing runs inside a jitted train step (CPU or GPU).
  * photometric ops (channel swap, inversion) touch the image only; geometric ops (scaling, rot90,
    flips) are applied identically to the image and to the per-pixel integer target(s).
  * order: channel swap -> inversion -> scaling -> rotation -> vertical flip -> horizontal flip.
  * when an op is "applied" it is a real change: rotation draws k in {1, 2, 3} (square crops; for
    H != W only k = 2 keeps the shape, so that is used). The channel permutation is a uniformly random
    permutation of the 3 channels (identity included, 1/6), as in the paper's "random channel swaps".
  * the scale factor is uniform in [0.5, 2] as written in the paper (``scale_log_uniform=True`` draws
    it log-uniformly instead, so shrinking and enlarging are equally likely).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from dng_jax.typed_config import TypedConfig, param, require

__all__ = [
    "AugmentConfig",
    "swap_channels",
    "invert",
    "rot90",
    "flip",
    "scale",
    "AugmentParams",
    "sample_params",
    "apply_params",
    "augment_sample",
    "augment_batch",
]


class AugmentConfig(TypedConfig):
    """The ``augment`` section: probabilities and ranges of the augmentation (paper defaults, Sec. II-C).

    Frozen and hashable: close over it or pass it as a static argument of ``jax.jit``. ``enabled=False``
    turns every augmentation of the experiment off (segmentation training, the clustering images and
    the retraining crops); the functions below apply what the probabilities say.
    """

    enabled: bool = param(True, "augment at all (segmentation training, clustering images, retraining)")
    p_channel_swap: float = param(0.5, "probability of a random permutation of the colour channels")
    p_invert: float = param(0.5, "probability of colour inversion 1 - x")
    p_rotate: float = param(0.5, "probability of a rotation by 90, 180 or 270 degrees")
    p_vflip: float = param(0.5, "probability of a vertical flip")
    p_hflip: float = param(0.5, "probability of a horizontal flip")
    p_scale: float = param(0.25, "probability of zooming by a factor in [scale_min, scale_max]")
    scale_min: float = param(0.5, "smallest zoom factor")
    scale_max: float = param(2.0, "largest zoom factor")
    scale_log_uniform: bool = param(False, "draw the zoom log-uniformly (paper: uniformly)")

    def check(self) -> None:
        for f in ("p_channel_swap", "p_invert", "p_rotate", "p_vflip", "p_hflip", "p_scale"):
            p = getattr(self, f)
            require(0.0 <= p <= 1.0, f, f"must be a probability in [0, 1], got {p}")
        require(0.0 < self.scale_min <= self.scale_max, "scale_min",
                f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")


# --------------------------------------------------------------------------------------------------
# Single ops. Images are [H, W, C] float; targets [H, W] or [H, W, K] integer. Spatial axes are 0, 1.
# --------------------------------------------------------------------------------------------------


def swap_channels(image: jax.Array, perm: jax.Array) -> jax.Array:
    """Reorder the colour channels of ``image [..., C]`` by the permutation ``perm [C]``."""
    return jnp.take(image, perm, axis=-1)


def invert(image: jax.Array) -> jax.Array:
    """Colour inversion ``1 - x`` (images are in [0, 1]); dark-field <-> bright-field look-alike."""
    return jnp.asarray(1.0, image.dtype) - image


def rot90(x: jax.Array, k) -> jax.Array:
    """Rotate the first two (spatial) axes by ``k * 90`` degrees counter-clockwise; ``k`` may be traced.

    For non-square inputs only even ``k`` keep the shape: a concrete odd ``k`` raises, a traced ``k`` is
    rounded down to even (the training crops are square, so this does not arise there).
    """
    square = x.shape[0] == x.shape[1]
    if isinstance(k, int):
        if not square and k % 2:
            raise ValueError(f"rot90 by an odd k={k} changes the shape of a non-square {x.shape[:2]} array")
        return jnp.rot90(x, k % 4, axes=(0, 1))
    k = jnp.asarray(k, jnp.int32) % 4
    if square:
        branches = [lambda a, i=i: jnp.rot90(a, i, axes=(0, 1)) for i in range(4)]
        return jax.lax.switch(k, branches, x)
    return jnp.where(k >= 2, jnp.rot90(x, 2, axes=(0, 1)), x)


def flip(x: jax.Array, axis: int) -> jax.Array:
    """Mirror along spatial ``axis`` (0: vertical flip, upside-down; 1: horizontal flip, left-right)."""
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1 (spatial), got {axis}")
    return jnp.flip(x, axis=axis)


def _nearest_resample(target: jax.Array, factor: jax.Array) -> jax.Array:
    """Nearest-neighbour zoom of ``target [H, W, ...]`` about the centre; outside -> 0 (background)."""
    h, w = target.shape[:2]
    ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
    ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    coords = [(ii - ci) / factor + ci, (jj - cj) / factor + cj]
    flat = target.reshape(h, w, -1)
    out = jax.vmap(lambda t: map_coordinates(t, coords, order=0, mode="constant", cval=0), in_axes=-1, out_axes=-1)(
        flat
    )
    return out.reshape(target.shape).astype(target.dtype)


def scale(image: jax.Array, target: jax.Array | None, factor) -> tuple[jax.Array, jax.Array | None]:
    """Zoom the content by ``factor`` about the image centre, cropping / zero-padding back to H x W.

    Image: linear interpolation with anti-aliasing (``jax.image.scale_and_translate``), zero outside.
    Target: nearest neighbour with the same geometry (pixel ``i`` samples source ``(i - c)/factor + c``,
    ``c = (H - 1)/2``), padded with 0 = background. ``factor == 1`` is an exact identity.
    """
    h, w = image.shape[:2]
    factor = jnp.asarray(factor, jnp.float32)
    s = jnp.stack([factor, factor])
    t = jnp.stack([h / 2.0 * (1.0 - factor), w / 2.0 * (1.0 - factor)])
    img = jax.image.scale_and_translate(
        image.astype(jnp.float32), image.shape, (0, 1), s, t, method="linear", antialias=True
    ).astype(image.dtype)
    img = jnp.where(factor == 1.0, image, img)  # exact identity, no float round-off
    tgt = None if target is None else _nearest_resample(target, factor)
    return img, tgt


# --------------------------------------------------------------------------------------------------
# Random composition.
# --------------------------------------------------------------------------------------------------


class AugmentParams(NamedTuple):
    """Per-sample random decisions (all arrays, so a batch of them is a vmapped pytree)."""

    perm: jax.Array  # int32 [3] channel permutation (identity when not applied)
    invert: jax.Array  # bool []
    factor: jax.Array  # float32 [] scale factor (1.0 when not applied)
    k: jax.Array  # int32 [] number of 90-degree turns (0 when not applied)
    vflip: jax.Array  # bool []
    hflip: jax.Array  # bool []


def sample_params(key: jax.Array, cfg: AugmentConfig = AugmentConfig(), square: bool = True) -> AugmentParams:
    """Draw one sample's augmentation decisions from ``key`` (``square=False``: rotation only by 180)."""
    k_sw, k_perm, k_inv, k_sc, k_fac, k_rot, k_k, k_vf, k_hf = jax.random.split(key, 9)

    def coin(k, p):
        return jax.random.uniform(k) < p

    perm = jnp.where(coin(k_sw, cfg.p_channel_swap), jax.random.permutation(k_perm, 3), jnp.arange(3))
    if cfg.scale_log_uniform:
        lo, hi = jnp.log(cfg.scale_min), jnp.log(cfg.scale_max)
        factor = jnp.exp(jax.random.uniform(k_fac, minval=lo, maxval=hi))
    else:
        factor = jax.random.uniform(k_fac, minval=cfg.scale_min, maxval=cfg.scale_max)
    k = jax.random.randint(k_k, (), 1, 4) if square else jnp.asarray(2, jnp.int32)
    return AugmentParams(
        perm=perm.astype(jnp.int32),
        invert=coin(k_inv, cfg.p_invert),
        factor=jnp.where(coin(k_sc, cfg.p_scale), factor, 1.0).astype(jnp.float32),
        k=jnp.where(coin(k_rot, cfg.p_rotate), k, 0).astype(jnp.int32),
        vflip=coin(k_vf, cfg.p_vflip),
        hflip=coin(k_hf, cfg.p_hflip),
    )


def apply_params(
    params: AugmentParams, image: jax.Array, target: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Apply drawn decisions: swap -> invert (image only) -> scale -> rot90 -> vflip -> hflip (both)."""
    image = swap_channels(image, params.perm)
    image = jnp.where(params.invert, invert(image), image)
    image, target = scale(image, target, params.factor)
    image = rot90(image, params.k)
    target = None if target is None else rot90(target, params.k)
    for do, axis in ((params.vflip, 0), (params.hflip, 1)):
        image = jnp.where(do, flip(image, axis), image)
        target = None if target is None else jnp.where(do, flip(target, axis), target)
    return image, target


def augment_sample(
    key: jax.Array, image: jax.Array, target: jax.Array | None, cfg: AugmentConfig = AugmentConfig()
) -> tuple[jax.Array, jax.Array | None]:
    """Augment one ``image [H, W, 3]`` and its per-pixel ``target [H, W(, K)]`` with the paper's regime."""
    chex.assert_rank(image, 3)
    chex.assert_axis_dimension(image, 2, 3)
    if target is not None:
        if target.ndim not in (2, 3) or target.shape[:2] != image.shape[:2]:
            raise ValueError(f"target must be [H, W] or [H, W, K] matching image {image.shape}, got {target.shape}")
        if not jnp.issubdtype(target.dtype, jnp.integer):
            raise ValueError(f"target must be an integer map, got {target.dtype}")
    params = sample_params(key, cfg, square=image.shape[0] == image.shape[1])
    return apply_params(params, image, target)


def augment_batch(
    key: jax.Array,
    images: jax.Array,
    targets: jax.Array | None = None,
    cfg: AugmentConfig = AugmentConfig(),
) -> tuple[jax.Array, jax.Array | None]:
    """Augment ``images [B, H, W, 3]`` (float in [0, 1]) and ``targets [B, H, W(, K)]`` (int) per sample.

    Each sample draws its own transform from ``jax.random.split(key, B)``; ``targets=None`` augments
    images only (used for the unlabeled clustering images). Same key -> same output.
    """
    chex.assert_rank(images, 4)
    chex.assert_axis_dimension(images, 3, 3)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")
    keys = jax.random.split(key, images.shape[0])
    if targets is None:
        out, _ = jax.vmap(lambda k, x: augment_sample(k, x, None, cfg))(keys, images)
        return out, None
    if targets.ndim not in (3, 4):
        raise ValueError(f"targets must be [B, H, W] or [B, H, W, K], got shape {targets.shape}")
    chex.assert_equal_shape_prefix([images, targets], 3)
    return jax.vmap(lambda k, x, t: augment_sample(k, x, t, cfg))(keys, images, targets)
