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

Beyond the paper: photometric ops that make CT1 (grey fluorescence, bright nuclei on black) look like other
imaging experiments (brightfield, stained tissue), each off by default (probability 0):
  * grey-to-colour: the grey level (mean of the channels), stretched to [0, 1], mapped onto the line between
    two random colours, the lighter one at the darkest pixels: the background of a fluorescence image turns
    light and its nuclei dark, as in stained tissue (after an inversion, the other way round);
  * HED stain jitter (Tellez et al. 2018, "Whole-slide mitosis detection in H&E breast histology using
    PHH3 as a reference to train distilled stain-invariant convolutional networks"): optical densities
    unmixed into haematoxylin, eosin and DAB with scikit-image's stain vectors, each stain scaled by
    U(1 - s, 1 + s) and shifted by U(-s, s), mixed back;
  * contrast (about the image's mean) and brightness, gamma, Gaussian blur, additive Gaussian noise.
  They run after the inversion, in that order, before the geometric ops; every result is clipped to [0, 1]
  and keeps the image's dtype. An op whose probability is 0 is not traced at all (its
  :class:`AugmentParams` field is ``None``), so with all of them off the augmentation is today's, bit for
  bit; their random draws come from ``fold_in(key, 9)``, a stream apart from the paper's nine keys, so
  turning one on does not change the paper's draws either.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from dng_jax.typed_config import TypedConfig, param, require

__all__ = [
    "AugmentConfig",
    "swap_channels",
    "invert",
    "rot90",
    "flip",
    "scale",
    "grey_to_colour",
    "hed_jitter",
    "adjust_contrast",
    "adjust_gamma",
    "gaussian_kernel",
    "gaussian_blur",
    "add_noise",
    "RGB_FROM_HED",
    "AugmentParams",
    "PROBABILITIES",
    "sample_params",
    "apply_photometric",
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
    # Beyond the paper: CT1 made to look like other experiments (module docstring); 0 = off, as in the paper
    p_grey_to_colour: float = param(0.0, "probability of mapping the grey level, stretched to [0, 1], onto the line "
                                         "between two random colours, the lighter one for the dark pixels (a stained "
                                         "look)")
    p_hed: float = param(0.0, "probability of HED stain jitter (Tellez et al. 2018)")
    hed_sigma: float = param(0.05, "HED jitter: each stain x U(1 - s, 1 + s) + U(-s, s) (Tellez et al. 2019: "
                                   "0.05 'HED-light', 0.2 'HED-strong')")
    p_contrast: float = param(0.0, "probability of a contrast and brightness change")
    contrast_min: float = param(0.5, "contrast factor about the image mean, uniform in [contrast_min, contrast_max]")
    contrast_max: float = param(1.5, "largest contrast factor")
    brightness_max: float = param(0.1, "brightness shift, uniform in [-brightness_max, brightness_max]")
    p_gamma: float = param(0.0, "probability of a gamma change x ** g")
    gamma_min: float = param(0.5, "smallest gamma (drawn log-uniformly in [gamma_min, gamma_max])")
    gamma_max: float = param(2.0, "largest gamma")
    p_blur: float = param(0.0, "probability of a Gaussian blur")
    blur_sigma_min: float = param(0.5, "blur sigma (px), uniform in [blur_sigma_min, blur_sigma_max]")
    blur_sigma_max: float = param(2.0, "largest blur sigma (px); the kernel reaches 3 x this")
    p_noise: float = param(0.0, "probability of additive Gaussian noise")
    noise_std_max: float = param(0.05, "noise standard deviation, uniform in [0, noise_std_max]")

    def check(self) -> None:
        for f in PROBABILITIES:
            p = getattr(self, f)
            require(0.0 <= p <= 1.0, f, f"must be a probability in [0, 1], got {p}")
        require(0.0 < self.scale_min <= self.scale_max, "scale_min",
                f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        require(0.0 <= self.hed_sigma < 1.0, "hed_sigma", f"must lie in [0, 1), got {self.hed_sigma}")
        require(0.0 <= self.contrast_min <= self.contrast_max, "contrast_min",
                f"need 0 <= contrast_min <= contrast_max, got {self.contrast_min}, {self.contrast_max}")
        require(0.0 <= self.brightness_max <= 1.0, "brightness_max", f"must lie in [0, 1], got {self.brightness_max}")
        require(0.0 < self.gamma_min <= self.gamma_max, "gamma_min",
                f"need 0 < gamma_min <= gamma_max, got {self.gamma_min}, {self.gamma_max}")
        require(0.0 < self.blur_sigma_min <= self.blur_sigma_max <= 10.0, "blur_sigma_min",
                f"need 0 < blur_sigma_min <= blur_sigma_max <= 10, got {self.blur_sigma_min}, {self.blur_sigma_max}")
        require(0.0 <= self.noise_std_max <= 1.0, "noise_std_max", f"must lie in [0, 1], got {self.noise_std_max}")


#: Every probability of :class:`AugmentConfig`; the last six are the photometric extension (0 = off).
PROBABILITIES = ("p_channel_swap", "p_invert", "p_rotate", "p_vflip", "p_hflip", "p_scale",
                 "p_grey_to_colour", "p_hed", "p_contrast", "p_gamma", "p_blur", "p_noise")


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
# Photometric ops towards other imaging experiments (not in the paper). Image in, image out, in [0, 1],
# in the image's dtype (computed in float32); parameters are arrays, so they may be traced.
# --------------------------------------------------------------------------------------------------

#: scikit-image's stain vectors (``skimage.color.rgb_from_hed``, Ruifrok & Johnston 2001): rows are the
#: optical densities of haematoxylin, eosin and DAB in R, G, B.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_LOG_FLOOR = float(np.log(1e-6))  # scikit-image's: intensities below 1e-6 count as 1e-6


def _float(image: jax.Array) -> jax.Array:
    return jnp.asarray(image, jnp.float32)


def grey_to_colour(image: jax.Array, colours: jax.Array) -> jax.Array:
    """The grey level ``g`` (mean of the channels) of ``image [H, W, C]``, stretched to [0, 1] over the image
    (``(g - min) / (max - min)``; a flat image gives 0), mapped to ``c0 + g (c1 - c0)`` with
    ``colours = [c0, c1]`` (``[2, 3]`` in [0, 1]): the darkest pixel becomes ``c0``, the brightest ``c1``.
    Stretched, because a fluorescence image fills a small part of [0, 1] and would come out one flat colour."""
    g = jnp.mean(_float(image), axis=-1, keepdims=True)
    lo, hi = jnp.min(g), jnp.max(g)
    g = jnp.where(hi > lo, (g - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    c = _float(colours)
    return (c[0] + g * (c[1] - c[0])).astype(image.dtype)


def hed_jitter(image: jax.Array, scale: jax.Array, shift: jax.Array) -> jax.Array:
    """HED stain jitter (Tellez et al. 2018) of an RGB ``image [..., 3]``: stain concentrations
    ``s = (log(x) / log(1e-6)) @ inv(RGB_FROM_HED)`` (scikit-image's ``rgb2hed``, without its clipping of
    negative concentrations, so ``scale = 1, shift = 0`` gives the image back) become ``s * scale + shift``
    (``[3]`` each) and are mixed back, ``exp((s @ RGB_FROM_HED) * log(1e-6))``, clipped to [0, 1]."""
    x = jnp.clip(_float(image), 1e-6, 1.0)
    stains = (jnp.log(x) / _LOG_FLOOR) @ jnp.asarray(_HED_FROM_RGB, jnp.float32)
    stains = stains * _float(scale) + _float(shift)
    rgb = jnp.exp((stains @ jnp.asarray(RGB_FROM_HED, jnp.float32)) * _LOG_FLOOR)
    return jnp.clip(rgb, 0.0, 1.0).astype(image.dtype)


def adjust_contrast(image: jax.Array, contrast, brightness) -> jax.Array:
    """``(x - m) * contrast + m + brightness`` with ``m`` the mean of ``image [H, W, C]``, clipped to [0, 1]."""
    x = _float(image)
    m = jnp.mean(x)
    return jnp.clip((x - m) * contrast + m + brightness, 0.0, 1.0).astype(image.dtype)


def adjust_gamma(image: jax.Array, gamma) -> jax.Array:
    """``x ** gamma`` (in [0, 1]: gamma < 1 brightens the dark tones, > 1 darkens them)."""
    return jnp.power(jnp.clip(_float(image), 0.0, 1.0), gamma).astype(image.dtype)


def gaussian_kernel(sigma, radius: int) -> jax.Array:
    """Normalised 1-D Gaussian ``[2 radius + 1]`` (``radius`` static; ``sigma > 0`` may be traced)."""
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (t / sigma) ** 2)
    return w / jnp.sum(w)


def gaussian_blur(image: jax.Array, kernel: jax.Array) -> jax.Array:
    """Separable blur of ``image [H, W, C]`` along H and W with the odd 1-D ``kernel`` (its length is static),
    edges mirrored (``x[-1] = x[0]``; scipy.ndimage's ``mode='reflect'``)."""
    r = (kernel.shape[0] - 1) // 2
    x = _float(image)
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xp = jnp.pad(x, pad, mode="symmetric")
        n = x.shape[axis]
        x = sum(kernel[i] * jax.lax.slice_in_dim(xp, i, i + n, axis=axis) for i in range(2 * r + 1))
    return x.astype(image.dtype)


def add_noise(image: jax.Array, std, key: jax.Array) -> jax.Array:
    """``x + std * N(0, 1)`` per pixel and channel (drawn from ``key``), clipped to [0, 1]."""
    x = _float(image)
    return jnp.clip(x + std * jax.random.normal(key, x.shape, jnp.float32), 0.0, 1.0).astype(image.dtype)


# --------------------------------------------------------------------------------------------------
# Random composition.
# --------------------------------------------------------------------------------------------------


class AugmentParams(NamedTuple):
    """Per-sample random decisions (all arrays, so a batch of them is a vmapped pytree).

    The photometric fields are ``None`` when their probability is 0: the op is then not traced at all.
    """

    perm: jax.Array  # int32 [3] channel permutation (identity when not applied)
    invert: jax.Array  # bool []
    factor: jax.Array  # float32 [] scale factor (1.0 when not applied)
    k: jax.Array  # int32 [] number of 90-degree turns (0 when not applied)
    vflip: jax.Array  # bool []
    hflip: jax.Array  # bool []
    grey_to_colour: jax.Array | None = None  # bool []
    colours: jax.Array | None = None  # float32 [2, 3]: colours of the darkest and the brightest pixel (lighter first)
    hed_scale: jax.Array | None = None  # float32 [3] (1 when not applied)
    hed_shift: jax.Array | None = None  # float32 [3] (0 when not applied)
    contrast: jax.Array | None = None  # float32 [] (1 when not applied)
    brightness: jax.Array | None = None  # float32 [] (0 when not applied)
    gamma: jax.Array | None = None  # float32 [] (1 when not applied)
    blur_kernel: jax.Array | None = None  # float32 [2r + 1] (a unit impulse when not applied)
    noise_std: jax.Array | None = None  # float32 [] (0 when not applied)
    noise_key: jax.Array | None = None  # PRNG key of the noise field


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
        **_sample_photometric(jax.random.fold_in(key, 9), cfg),
    )


def _sample_photometric(key: jax.Array, cfg: AugmentConfig) -> dict:
    """The photometric fields of :class:`AugmentParams`; an op with probability 0 is left out (``None``).
    Each op draws from its own key, so turning one on does not change another's draws."""
    k_colour, k_hed, k_contrast, k_gamma, k_blur, k_noise = jax.random.split(key, 6)
    uniform = partial(jax.random.uniform, dtype=jnp.float32)
    out = {}
    if cfg.p_grey_to_colour > 0:
        k_hit, k_val = jax.random.split(k_colour)
        out["grey_to_colour"] = uniform(k_hit) < cfg.p_grey_to_colour
        pair = uniform(k_val, (2, 3))  # the lighter colour for the darkest pixels: dark nuclei, as when stained
        out["colours"] = jnp.where(pair[0].sum() >= pair[1].sum(), pair, pair[::-1])
    if cfg.p_hed > 0:
        k_hit, k_scale, k_shift = jax.random.split(k_hed, 3)
        hit = uniform(k_hit) < cfg.p_hed
        s = cfg.hed_sigma
        out["hed_scale"] = jnp.where(hit, uniform(k_scale, (3,), minval=1 - s, maxval=1 + s), 1.0)
        out["hed_shift"] = jnp.where(hit, uniform(k_shift, (3,), minval=-s, maxval=s), 0.0)
    if cfg.p_contrast > 0:
        k_hit, k_c, k_b = jax.random.split(k_contrast, 3)
        hit = uniform(k_hit) < cfg.p_contrast
        c = uniform(k_c, minval=cfg.contrast_min, maxval=cfg.contrast_max)
        b = uniform(k_b, minval=-cfg.brightness_max, maxval=cfg.brightness_max)
        out["contrast"], out["brightness"] = jnp.where(hit, c, 1.0), jnp.where(hit, b, 0.0)
    if cfg.p_gamma > 0:
        k_hit, k_val = jax.random.split(k_gamma)
        log_g = uniform(k_val, minval=np.log(cfg.gamma_min), maxval=np.log(cfg.gamma_max))
        out["gamma"] = jnp.where(uniform(k_hit) < cfg.p_gamma, jnp.exp(log_g), 1.0)
    if cfg.p_blur > 0:
        k_hit, k_val = jax.random.split(k_blur)
        radius = int(np.ceil(3.0 * cfg.blur_sigma_max))
        sigma = uniform(k_val, minval=cfg.blur_sigma_min, maxval=cfg.blur_sigma_max)
        impulse = jnp.zeros(2 * radius + 1, jnp.float32).at[radius].set(1.0)
        out["blur_kernel"] = jnp.where(uniform(k_hit) < cfg.p_blur, gaussian_kernel(sigma, radius), impulse)
    if cfg.p_noise > 0:
        k_hit, k_val, out["noise_key"] = jax.random.split(k_noise, 3)
        std = uniform(k_val, maxval=cfg.noise_std_max)
        out["noise_std"] = jnp.where(uniform(k_hit) < cfg.p_noise, std, 0.0)
    return out


def apply_photometric(params: AugmentParams, image: jax.Array) -> jax.Array:
    """The photometric extension's ops that ``params`` holds, in the order grey-to-colour -> HED -> contrast
    -> gamma -> blur -> noise; a sample whose coin did not come up keeps its image exactly."""
    p = params
    if p.grey_to_colour is not None:
        image = jnp.where(p.grey_to_colour, grey_to_colour(image, p.colours), image)
    if p.hed_scale is not None:
        same = jnp.all(p.hed_scale == 1.0) & jnp.all(p.hed_shift == 0.0)
        image = jnp.where(same, image, hed_jitter(image, p.hed_scale, p.hed_shift))
    if p.contrast is not None:
        same = (p.contrast == 1.0) & (p.brightness == 0.0)
        image = jnp.where(same, image, adjust_contrast(image, p.contrast, p.brightness))
    if p.gamma is not None:
        image = jnp.where(p.gamma == 1.0, image, adjust_gamma(image, p.gamma))
    if p.blur_kernel is not None:
        r = (p.blur_kernel.shape[0] - 1) // 2
        image = jnp.where(p.blur_kernel[r] == 1.0, image, gaussian_blur(image, p.blur_kernel))
    if p.noise_std is not None:
        image = jnp.where(p.noise_std == 0.0, image, add_noise(image, p.noise_std, p.noise_key))
    return image


def apply_params(
    params: AugmentParams, image: jax.Array, target: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Apply drawn decisions: swap -> invert -> photometric extension (image only) -> scale -> rot90 -> vflip
    -> hflip (both)."""
    image = swap_channels(image, params.perm)
    image = jnp.where(params.invert, invert(image), image)
    image = apply_photometric(params, image)
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
