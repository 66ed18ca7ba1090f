from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_params,
    augment_batch,
    flip,
    invert,
    rot90,
    sample_params,
    scale,
    swap_channels,
)

H = 32
_aug = jax.jit(augment_batch, static_argnames="cfg")


def _blob_batch(b=8, h=H, seed=0):
    """Grey images of random off-centre blobs and the matching binary target (1 inside)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :h]
    tg = np.zeros((b, h, h), np.int32)
    for i in range(b):
        cy, cx = rng.integers(6, h - 10, 2)
        tg[i] = ((yy - cy) ** 2 / 16 + (xx - cx) ** 2 / 36) <= 1
        tg[i, 2:5, 2:8] = 1  # asymmetric corner mark: makes rotations/flips distinguishable
    img = np.repeat(tg[..., None].astype(np.float32), 3, axis=-1)
    return jnp.asarray(img), jnp.asarray(tg)


def test_rot90_four_times_identity_and_matches_numpy():
    x = jnp.arange(H * H * 3, dtype=jnp.float32).reshape(H, H, 3)
    y = x
    for _ in range(4):
        y = rot90(y, 1)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(rot90(x, 1), np.rot90(np.asarray(x), 1, axes=(0, 1)))
    # Traced k (lax.switch) agrees with numpy for every k.
    f = jax.jit(rot90)
    for k in range(4):
        np.testing.assert_array_equal(f(x, jnp.int32(k)), np.rot90(np.asarray(x), k, axes=(0, 1)))


def test_rot90_non_square():
    x = jnp.arange(12).reshape(3, 4)
    with pytest.raises(ValueError):
        rot90(x, 1)
    np.testing.assert_array_equal(rot90(x, 2), np.rot90(np.asarray(x), 2))
    np.testing.assert_array_equal(jax.jit(rot90)(x, jnp.int32(2)), np.rot90(np.asarray(x), 2))


def test_flip_twice_identity():
    x = jnp.arange(H * H).reshape(H, H)
    for axis in (0, 1):
        assert not np.array_equal(flip(x, axis), x)
        np.testing.assert_array_equal(flip(flip(x, axis), axis), x)
    np.testing.assert_array_equal(flip(x, 0), np.flipud(np.asarray(x)))
    np.testing.assert_array_equal(flip(x, 1), np.fliplr(np.asarray(x)))
    with pytest.raises(ValueError):
        flip(x, 2)


def test_invert_twice_identity():
    x = jax.random.uniform(jax.random.key(0), (H, H, 3))
    np.testing.assert_allclose(invert(x), 1.0 - x)
    np.testing.assert_allclose(invert(invert(x)), x, atol=1e-7)


def test_swap_channels_is_a_permutation():
    x = jax.random.uniform(jax.random.key(1), (H, H, 3))
    perm = jnp.array([2, 0, 1])
    y = swap_channels(x, perm)
    for c in range(3):
        np.testing.assert_array_equal(y[..., c], x[..., int(perm[c])])
    inv = jnp.argsort(perm)
    np.testing.assert_array_equal(swap_channels(y, inv), x)


def test_scale_identity_and_area():
    img, tg = _blob_batch(1)
    img, tg = img[0], tg[0]
    i1, t1 = scale(img, tg, 1.0)
    np.testing.assert_array_equal(i1, img)
    np.testing.assert_array_equal(t1, tg)

    sq = np.zeros((H, H), np.int32)
    sq[12:20, 12:20] = 1  # centred 8x8 square
    sq_img = jnp.asarray(np.repeat(sq[..., None], 3, -1).astype(np.float32))
    i2, t2 = scale(sq_img, jnp.asarray(sq), 2.0)
    assert t2.dtype == jnp.int32
    assert abs(int(t2.sum()) - 4 * 64) <= 0.1 * 4 * 64
    assert abs(float(i2[..., 0].sum()) - 4 * 64) <= 0.1 * 4 * 64
    # Centre stays put.
    ys, xs = np.nonzero(np.asarray(t2))
    assert abs(ys.mean() - (H - 1) / 2) < 0.6 and abs(xs.mean() - (H - 1) / 2) < 0.6
    # Shrinking: 1/4 of the area, padded with 0 (background) at the border.
    i3, t3 = scale(sq_img, jnp.asarray(sq), 0.5)
    assert abs(int(t3.sum()) - 16) <= 4
    full = jnp.ones((H, H, 3))
    i4, t4 = scale(full, jnp.ones((H, H), jnp.int32), 0.5)
    assert int(t4[0, 0]) == 0 and float(i4[0, 0, 0]) == 0.0 and int(t4[H // 2, H // 2]) == 1


def test_image_and_target_transformed_consistently():
    img, tg = _blob_batch(16)
    # Without scaling every geometric op is exact, so the thresholded image equals the target.
    cfg = AugmentConfig(p_invert=0.0, p_scale=0.0)
    oi, ot = _aug(jax.random.key(3), img, tg, cfg=cfg)
    np.testing.assert_array_equal(np.asarray(oi[..., 0] > 0.5).astype(np.int32), ot)
    assert oi.shape == img.shape and ot.shape == tg.shape and ot.dtype == jnp.int32
    # With forced scaling, bilinear image and nearest target still agree nearly everywhere.
    cfg = AugmentConfig(p_invert=0.0, p_scale=1.0)
    oi, ot = _aug(jax.random.key(4), img, tg, cfg=cfg)
    agree = np.mean(np.asarray(oi[..., 0] > 0.5).astype(np.int32) == np.asarray(ot))
    assert agree > 0.97


def test_apply_params_matches_manual_composition():
    img, tg = _blob_batch(1)
    img, tg = img[0], tg[0]
    p = AugmentParams(
        perm=jnp.array([1, 2, 0]), invert=jnp.array(True), factor=jnp.float32(1.0),
        k=jnp.int32(3), vflip=jnp.array(False), hflip=jnp.array(True),
    )
    oi, ot = apply_params(p, img, tg)
    ei = flip(rot90(invert(swap_channels(img, p.perm)), 3), 1)
    et = flip(rot90(tg, 3), 1)
    np.testing.assert_array_equal(oi, ei)
    np.testing.assert_array_equal(ot, et)


def test_same_key_same_output_and_samples_differ():
    img, tg = _blob_batch(1)
    imgs, tgs = jnp.repeat(img, 16, 0), jnp.repeat(tg, 16, 0)
    a = _aug(jax.random.key(7), imgs, tgs)
    b = _aug(jax.random.key(7), imgs, tgs)
    c = _aug(jax.random.key(8), imgs, tgs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # Identical inputs, different per-sample transforms.
    distinct = {np.asarray(a[0][i]).tobytes() for i in range(16)}
    assert len(distinct) >= 8


def test_extra_target_channels_and_images_only():
    img, tg = _blob_batch(4)
    extra = jnp.stack([tg, tg * 7], axis=-1)  # [B, H, W, 2], e.g. class map + instance ids
    cfg = AugmentConfig(p_scale=1.0)
    oi, ot = _aug(jax.random.key(9), img, extra, cfg=cfg)
    assert ot.shape == extra.shape
    np.testing.assert_array_equal(ot[..., 1], ot[..., 0] * 7)
    oi2, none = _aug(jax.random.key(9), img, None, cfg=cfg)
    assert none is None
    np.testing.assert_allclose(oi2, oi)
    with pytest.raises(ValueError):
        augment_batch(jax.random.key(0), img, tg.astype(jnp.float32))
    with pytest.raises(AssertionError):
        augment_batch(jax.random.key(0), img[..., :2], tg)


def test_probabilities():
    cfg = AugmentConfig()
    n = 4000
    keys = jax.random.split(jax.random.key(11), n)
    p = jax.jit(jax.vmap(lambda k: sample_params(k, cfg)))(keys)
    swapped = np.any(np.asarray(p.perm) != np.arange(3), axis=1).mean()
    assert abs(swapped - 0.5 * 5 / 6) < 0.04  # the drawn permutation is the identity 1/6 of the time
    assert abs(np.asarray(p.invert).mean() - 0.5) < 0.04
    assert abs(np.asarray(p.vflip).mean() - 0.5) < 0.04
    assert abs(np.asarray(p.hflip).mean() - 0.5) < 0.04
    assert abs((np.asarray(p.k) != 0).mean() - 0.5) < 0.04
    assert set(np.unique(np.asarray(p.k))) == {0, 1, 2, 3}
    f = np.asarray(p.factor)
    assert abs((f != 1.0).mean() - 0.25) < 0.03
    assert f.min() >= 0.5 and f.max() <= 2.0
    # Non-square: rotation only by 180 degrees.
    pk = jax.jit(jax.vmap(lambda k: sample_params(k, cfg, square=False)))(keys[:200]).k
    assert set(np.unique(np.asarray(pk))) <= {0, 2}
    # End to end: inversion shows up in about half of the outputs.
    imgs = jnp.full((400, 4, 4, 3), 0.2)
    out, _ = _aug(jax.random.key(12), imgs, None, cfg=AugmentConfig(p_scale=0.0))
    assert abs(float((out.mean(axis=(1, 2, 3)) > 0.5).mean()) - 0.5) < 0.08


def test_config_validation():
    with pytest.raises(ValueError):
        AugmentConfig(p_invert=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(scale_min=2.0, scale_max=1.0)
    hash(AugmentConfig())  # usable as a static jit argument
