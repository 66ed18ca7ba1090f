"""The photometric augmentation towards other imaging experiments (dng_jax/data/augment.py, beyond the paper):
each op against a plain NumPy / SciPy reference for fixed parameters, the random draws, and that with every
new probability at 0 the augmentation is today's, bit for bit."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import color

from dng_jax.data.augment import (
    PROBABILITIES,
    RGB_FROM_HED,
    AugmentConfig,
    AugmentParams,
    add_noise,
    adjust_contrast,
    adjust_gamma,
    apply_photometric,
    augment_batch,
    flip,
    gaussian_blur,
    gaussian_kernel,
    grey_to_colour,
    hed_jitter,
    invert,
    rot90,
    sample_params,
    scale,
    swap_channels,
)
from dng_jax.typed_config import FieldError

_aug = jax.jit(augment_batch, static_argnames="cfg")
NEW_PROBABILITIES = ("p_grey_to_colour", "p_hed", "p_contrast", "p_gamma", "p_blur", "p_noise")
ALL_ON = AugmentConfig(**{p: 1.0 for p in NEW_PROBABILITIES})


def _image(h=24, w=24, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (h, w, 3)).astype(np.float32)


# ---- NumPy references (float64) -------------------------------------------------------------------


def np_grey_to_colour(x, colours):
    g = x.astype(np.float64).mean(-1, keepdims=True)
    g = (g - g.min()) / (g.max() - g.min()) if g.max() > g.min() else np.zeros_like(g)
    return colours[0] + g * (colours[1] - colours[0])


def np_hed_jitter(x, scale_, shift):
    """scikit-image's rgb2hed / hed2rgb formulas with its own matrices, no clipping of the concentrations."""
    log_adjust = np.log(1e-6)
    stains = (np.log(np.maximum(x.astype(np.float64), 1e-6)) / log_adjust) @ color.hed_from_rgb
    stains = stains * scale_ + shift
    return np.clip(np.exp((stains @ color.rgb_from_hed) * log_adjust), 0, 1)


def np_contrast(x, c, b):
    x = x.astype(np.float64)
    return np.clip((x - x.mean()) * c + x.mean() + b, 0, 1)


def np_gamma(x, g):
    return x.astype(np.float64) ** g


def np_blur(x, sigma, radius):
    return ndi.gaussian_filter(x.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect",
                               radius=(radius, radius, 0))


def np_noise(x, std, field):
    return np.clip(x.astype(np.float64) + std * field, 0, 1)


# ---- single ops ----------------------------------------------------------------------------------


def test_grey_to_colour_matches_numpy_and_maps_darkest_and_brightest_to_the_colours():
    x, colours = _image() * 0.2 + 0.05, np.array([[0.9, 0.8, 0.85], [0.35, 0.1, 0.5]])  # a dim image
    got = np.asarray(grey_to_colour(jnp.asarray(x), jnp.asarray(colours)))
    np.testing.assert_allclose(got, np_grey_to_colour(x, colours), atol=1e-6)
    g = x.mean(-1)
    np.testing.assert_allclose(got[np.unravel_index(g.argmin(), g.shape)], colours[0], atol=1e-6)
    np.testing.assert_allclose(got[np.unravel_index(g.argmax(), g.shape)], colours[1], atol=1e-6)
    flat = np.full((4, 4, 3), 0.3, np.float32)
    np.testing.assert_allclose(grey_to_colour(jnp.asarray(flat), jnp.asarray(colours)),
                               np.broadcast_to(colours[0], flat.shape), atol=1e-6)


def test_hed_jitter_matches_scikit_image_formulas_and_is_the_identity_unjittered():
    np.testing.assert_array_equal(RGB_FROM_HED, color.rgb_from_hed)
    x = _image()
    x[0, 0] = 0.0  # black: the 1e-6 floor
    s, b = np.array([0.9, 1.1, 1.03]), np.array([0.04, -0.05, 0.01])
    np.testing.assert_allclose(hed_jitter(jnp.asarray(x), jnp.asarray(s), jnp.asarray(b)), np_hed_jitter(x, s, b),
                               atol=2e-5)
    np.testing.assert_allclose(hed_jitter(jnp.asarray(x), jnp.ones(3), jnp.zeros(3)), x, atol=2e-5)
    grey = np.full((4, 4, 3), 0.5, np.float32)  # scikit-image's clipping of the concentrations would tint it
    np.testing.assert_allclose(hed_jitter(jnp.asarray(grey), jnp.ones(3), jnp.zeros(3)), grey, atol=2e-5)


def test_contrast_and_gamma_match_numpy():
    x = _image()
    for c, b in ((0.5, 0.1), (1.5, -0.1), (1.0, 0.0)):
        np.testing.assert_allclose(adjust_contrast(jnp.asarray(x), c, b), np_contrast(x, c, b), atol=1e-6)
    for g in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(adjust_gamma(jnp.asarray(x), g), np_gamma(x, g), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sigma,radius", [(0.5, 2), (1.3, 4), (2.0, 6)])
def test_blur_matches_scipy_gaussian_filter(sigma, radius):
    x = _image(20, 28)
    k = gaussian_kernel(jnp.float32(sigma), radius)
    assert k.shape == (2 * radius + 1,) and abs(float(k.sum()) - 1.0) < 1e-6
    np.testing.assert_allclose(gaussian_blur(jnp.asarray(x), k), np_blur(x, sigma, radius), atol=1e-5)


def test_noise_matches_numpy_with_the_same_field_and_has_its_standard_deviation():
    x, key = _image(), jax.random.key(3)
    field = np.asarray(jax.random.normal(key, x.shape, jnp.float32), np.float64)
    np.testing.assert_allclose(add_noise(jnp.asarray(x), 0.05, key), np_noise(x, 0.05, field), atol=1e-6)
    grey = jnp.full((64, 64, 3), 0.5, jnp.float32)
    assert abs(float(jnp.std(add_noise(grey, 0.05, key) - grey)) - 0.05) < 0.003


def test_photometric_chain_matches_numpy_in_order():
    x = _image(16, 16)
    radius = 3
    p = AugmentParams(
        perm=jnp.arange(3), invert=jnp.bool_(False), factor=jnp.float32(1), k=jnp.int32(0),
        vflip=jnp.bool_(False), hflip=jnp.bool_(False),
        grey_to_colour=jnp.bool_(True), colours=jnp.asarray([[0.95, 0.85, 0.9], [0.4, 0.15, 0.55]], jnp.float32),
        hed_scale=jnp.asarray([1.05, 0.95, 1.0], jnp.float32), hed_shift=jnp.asarray([0.02, -0.03, 0.0], jnp.float32),
        contrast=jnp.float32(1.2), brightness=jnp.float32(-0.05), gamma=jnp.float32(0.8),
        blur_kernel=gaussian_kernel(jnp.float32(1.0), radius), noise_std=jnp.float32(0.03), noise_key=jax.random.key(1))
    want = np_grey_to_colour(x, np.asarray(p.colours, np.float64))
    want = np_hed_jitter(want, np.asarray(p.hed_scale, np.float64), np.asarray(p.hed_shift, np.float64))
    want = np_gamma(np_contrast(want, 1.2, -0.05), 0.8)
    want = np_noise(np_blur(want, 1.0, radius), 0.03, np.asarray(jax.random.normal(p.noise_key, x.shape), np.float64))
    got = jax.jit(apply_photometric)(p, jnp.asarray(x))
    np.testing.assert_allclose(got, want, atol=5e-5)


# ---- the random composition ----------------------------------------------------------------------


def test_all_new_ops_off_by_default_and_not_traced():
    cfg = AugmentConfig()
    assert all(getattr(cfg, p) == 0.0 for p in NEW_PROBABILITIES)
    assert set(NEW_PROBABILITIES) < set(PROBABILITIES)
    params = sample_params(jax.random.key(0), cfg)
    assert all(getattr(params, f) is None for f in AugmentParams._fields[6:])


@pytest.mark.parametrize("seed,want", [  # drawn by the code before the photometric extension (commit b2c8c13)
    (0, ([0, 1, 2], False, 1.0, 0, True, True)),
    (1, ([0, 1, 2], False, 1.5100072622299194, 3, False, False)),
    (2, ([0, 1, 2], False, 1.0, 0, False, True)),
    (3, ([2, 0, 1], True, 1.0, 3, True, False)),
])
def test_paper_draws_are_todays_and_do_not_move_when_new_ops_are_on(seed, want):
    for cfg in (AugmentConfig(), ALL_ON):
        got = sample_params(jax.random.key(seed), cfg)[:6]
        assert [np.asarray(v).tolist() for v in got] == list(want)


@pytest.mark.parametrize("p_scale", [0.0, 0.25])
def test_with_new_probabilities_zero_the_batch_is_the_paper_ops(p_scale):
    """augment_batch with the new probabilities at 0 == the paper's ops composed by hand from the same draws:
    bit for bit without the zoom (whose interpolation XLA may fuse differently under jit), else to 1e-5."""
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.uniform(0, 1, (8, 32, 32, 3)), jnp.float32)
    tg = jnp.asarray(rng.integers(0, 3, (8, 32, 32)), jnp.int32)
    key, cfg = jax.random.key(11), AugmentConfig(p_scale=p_scale)
    out, out_t = _aug(key, img, tg, cfg=cfg)
    for i, k in enumerate(jax.random.split(key, 8)):
        p = sample_params(k, cfg)
        x = swap_channels(img[i], p.perm)
        x = jnp.where(p.invert, invert(x), x)
        x, t = scale(x, tg[i], p.factor)
        x, t = rot90(x, p.k), rot90(t, p.k)
        for do, axis in ((p.vflip, 0), (p.hflip, 1)):
            x, t = jnp.where(do, flip(x, axis), x), jnp.where(do, flip(t, axis), t)
        if p_scale == 0.0:
            assert np.asarray(out[i]).tobytes() == np.asarray(x).tobytes()
        np.testing.assert_allclose(out[i], x, atol=1e-5)
        np.testing.assert_array_equal(out_t[i], t)


def test_photometric_ops_keep_range_and_targets_and_draw_per_sample():
    rng = np.random.default_rng(1)
    tg = jnp.asarray(rng.integers(0, 3, (6, 32, 32)), jnp.int32)
    photometric_only = dataclasses.replace(ALL_ON, p_channel_swap=0.0, p_invert=0.0, p_rotate=0.0, p_vflip=0.0,
                                           p_hflip=0.0, p_scale=0.0)
    img = jnp.asarray(np.repeat(rng.uniform(0, 1, (1, 32, 32, 3)), 6, 0), jnp.float32)  # one image, 6 times
    out, out_t = _aug(jax.random.key(2), img, tg, cfg=photometric_only)
    assert out.dtype == img.dtype and out.shape == img.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(out_t, tg)  # photometric: the targets do not move
    assert len({np.asarray(out[i]).tobytes() for i in range(6)}) == 6  # each sample its own draw
    again, _ = _aug(jax.random.key(2), img, tg, cfg=photometric_only)
    np.testing.assert_array_equal(out, again)


def test_photometric_ops_keep_the_dtype():
    x = jnp.asarray(_image(8, 8), jnp.bfloat16)
    outs = jax.jit(lambda x: [
        grey_to_colour(x, jnp.full((2, 3), 0.5)), hed_jitter(x, jnp.ones(3), jnp.zeros(3)),
        adjust_contrast(x, 1.2, 0.1), adjust_gamma(x, 0.7), gaussian_blur(x, gaussian_kernel(1.0, 2)),
        add_noise(x, 0.1, jax.random.key(0))])(x)
    assert all(o.dtype == jnp.bfloat16 and o.shape == x.shape for o in outs)
    assert all(0.0 <= float(o.min()) and float(o.max()) <= 1.0 for o in outs)


def test_draws_stay_in_their_ranges_and_coins_have_their_probability():
    cfg = dataclasses.replace(ALL_ON, p_grey_to_colour=0.5, p_hed=0.5, p_contrast=0.5, p_gamma=0.5, p_blur=0.5,
                              p_noise=0.5, hed_sigma=0.2, blur_sigma_max=1.5)
    p = jax.jit(jax.vmap(lambda k: sample_params(k, cfg)))(jax.random.split(jax.random.key(0), 2000))
    hed_on = np.any(np.asarray(p.hed_scale) != 1.0, axis=1)
    on = {"grey_to_colour": np.asarray(p.grey_to_colour), "hed": hed_on,
          "contrast": np.asarray(p.contrast) != 1.0, "gamma": np.asarray(p.gamma) != 1.0,
          "blur": np.asarray(p.blur_kernel)[:, 5] != 1.0, "noise": np.asarray(p.noise_std) != 0.0}
    for name, hits in on.items():
        assert 0.45 < hits.mean() < 0.55, name  # 2000 fair coins: 5 standard deviations
    assert 0.8 <= np.asarray(p.hed_scale).min() and np.asarray(p.hed_scale).max() <= 1.2
    assert np.abs(np.asarray(p.hed_shift)).max() <= 0.2 and np.all(np.asarray(p.hed_shift)[~hed_on] == 0.0)
    c = np.asarray(p.contrast)[on["contrast"]]
    assert 0.5 <= c.min() and c.max() <= 1.5 and np.abs(np.asarray(p.brightness)).max() <= 0.1
    g = np.asarray(p.gamma)[on["gamma"]]
    assert 0.5 <= g.min() and g.max() <= 2.0 and abs(np.mean(np.log(g))) < 0.05  # log-uniform about 1
    assert p.blur_kernel.shape == (2000, 11)  # radius ceil(3 x 1.5) = 5
    np.testing.assert_allclose(np.asarray(p.blur_kernel).sum(1), 1.0, atol=1e-5)
    assert 0.0 <= np.asarray(p.noise_std).min() and np.asarray(p.noise_std).max() <= 0.05
    colours = np.asarray(p.colours)
    assert colours.shape == (2000, 2, 3) and 0.0 <= colours.min() and colours.max() <= 1.0
    assert np.all(colours[:, 0].sum(1) >= colours[:, 1].sum(1))  # the lighter colour for the dark pixels


@pytest.mark.parametrize("field,value", [("p_hed", 1.5), ("p_noise", -0.1), ("hed_sigma", 1.0),
                                         ("contrast_min", 2.0), ("gamma_min", 0.0), ("blur_sigma_min", 0.0),
                                         ("blur_sigma_max", 11.0), ("noise_std_max", 2.0), ("brightness_max", -1.0)])
def test_bad_photometric_fields_are_named(field, value):
    with pytest.raises(FieldError, match=field.replace("blur_sigma_max", "blur_sigma_min")):
        AugmentConfig(**{field: value})
