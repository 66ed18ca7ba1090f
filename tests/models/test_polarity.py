"""``model.input_polarity = "grey_bright_nuclei"`` (dng_jax/models/polarity.py): on the bundled mini-set's real
images of every cell type the nuclei come out brighter than their background, and an image's crops decide as
the image does; the model sees the same for an image and its inverse or channel permutation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.config import ConfigError, experiment_config, load_config
from dng_jax.data.partition import manifest_for
from dng_jax.data.sources import open_source
from dng_jax.models import make_model, normalize_input
from dng_jax.models.polarity import POLARITY_THRESHOLD, bright_background, grey_bright_nuclei
from conftest import ROOT, TINY_MODEL

_transform = jax.jit(grey_bright_nuclei)
_decide = jax.jit(bright_background)


@pytest.fixture(scope="module")
def mini():
    """(cell type, float image in [0, 1], nucleus mask) of the 18 mini-set images."""
    src = open_source(None)
    types = manifest_for(src, progress=False)
    out = []
    for sid in src.ids():
        s = src.load(sid)
        out.append((types[sid], s.image.astype(np.float32) / 255.0, s.labels > 0))
    return out


def np_bright_background(image: np.ndarray, threshold: float = POLARITY_THRESHOLD) -> bool:
    return bool(np.median(image.mean(axis=-1)) > threshold)


def crops(shape, sizes=(64, 128, 256)):
    """Every crop of ``sizes`` on a half-overlapping grid: (y, x, size)."""
    h, w = shape
    return [(y, x, c) for c in sizes for y in range(0, h - c + 1, c // 2) for x in range(0, w - c + 1, c // 2)]


@pytest.mark.slow
def test_nuclei_are_brighter_than_background_in_every_mini_image(mini):
    assert {t for t, _, _ in mini} == {"fluorescence", "brightfield", "tissue_white", "tissue_purple",
                                       "tissue_magenta"}
    for cell_type, image, mask in mini:
        out = np.asarray(_transform(image[None]))[0]
        assert out.shape == image.shape and np.all(out == out[..., :1])  # grey, on all 3 channels
        assert out[mask].mean() > out[~mask].mean(), cell_type
        want = np_bright_background(image)
        assert bool(_decide(image[None])[0]) == want
        assert want == (cell_type != "fluorescence")
        np.testing.assert_allclose(out[..., 0], 1.0 - image.mean(-1) if want else image.mean(-1), atol=1e-6)


@pytest.mark.slow
def test_crops_with_nuclei_and_background_decide_as_their_image(mini):
    """Every 64-256 px crop where nuclei cover less than half of the pixels, empty ones included; the crops
    of all images are decided in one batch per size, so that images of a batch do not influence each other."""
    wholes = [bool(_decide(image[None])[0]) for _, image, _ in mini]
    n = 0
    for size in (64, 128, 256):
        batch, want, where = [], [], []
        for (cell_type, image, mask), whole in zip(mini, wholes, strict=True):
            for y, x, c in crops(mask.shape, (size,)):
                if mask[y:y + c, x:x + c].mean() < 0.5:
                    batch.append(image[y:y + c, x:x + c])
                    want.append(whole)
                    where.append(cell_type)
        decided = np.asarray(_decide(np.stack(batch)))
        wrong = [where[i] for i in np.flatnonzero(decided != np.asarray(want))]
        assert not wrong, (size, wrong)
        assert decided.tolist() == [np_bright_background(b) for b in batch]
        n += len(batch)
    assert n > 500


@pytest.mark.slow
def test_the_model_sees_the_same_for_an_image_its_inverse_and_its_channels_permuted(mini):
    """Grey with bright nuclei is the same input whatever the polarity or channel order of the image (for a
    fluorescence image: its inverse has a median above the threshold, so it is inverted back)."""
    model = make_model({**TINY_MODEL, "input_polarity": "grey_bright_nuclei"})
    plain = make_model(TINY_MODEL)
    fluo = next(im for t, im, _ in mini if t == "fluorescence")[:32, :32]
    tissue = next(im for t, im, _ in mini if t == "tissue_purple")[:32, :32]
    x = jnp.asarray(np.stack([fluo, 1.0 - fluo, tissue, tissue[..., ::-1]]))
    v = jax.jit(plain.init)(jax.random.key(0), x)
    def shapes(tree):
        return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), tree)

    assert shapes(v) == shapes(jax.eval_shape(model.init, jax.random.key(0), x))  # the same parameter tree
    y = np.asarray(jax.jit(model.apply)(v, x))
    np.testing.assert_allclose(y[0], y[1], atol=1e-4)
    np.testing.assert_allclose(y[2], y[3], atol=1e-4)
    assert not np.allclose(np.asarray(jax.jit(plain.apply)(v, x))[2], y[2], atol=1e-3)
    # polarity first, then the existing input_norm
    np.testing.assert_allclose(normalize_input(x, "none", "grey_bright_nuclei"), _transform(x) - 0.5, atol=1e-6)
    np.testing.assert_array_equal(normalize_input(x, "none", "none"), x - 0.5)


@pytest.mark.parametrize("field,value", [("input_polarity", "invert"), ("polarity_threshold", 1.0)])
def test_bad_polarity_fields_are_named(field, value):
    c = load_config(ROOT / "configs" / "paper.py")
    assert c.model.input_polarity == "none" and c.model.polarity_threshold == POLARITY_THRESHOLD
    c.model[field] = value
    with pytest.raises(ConfigError, match=field):
        experiment_config(c)
