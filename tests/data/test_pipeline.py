"""The crop batches (dng_jax/data/pipeline.py): small images padded, batches deterministic and resumable."""

from __future__ import annotations

import numpy as np
import pytest

from dng_jax.data.dsb2018 import Sample
from dng_jax.data.pipeline import CropBatches, random_crop


def test_random_crop_pads_small_images_with_zeros():
    rng = np.random.default_rng(0)
    image = np.full((5, 7, 3), 9, np.uint8)
    labels = np.ones((5, 7), np.uint16)
    im, lab = random_crop(rng, image, labels, 8)
    assert im.shape == (8, 8, 3) and lab.shape == (8, 8)
    assert (im[5:] == 0).all() and (im[:, 7:] == 0).all() and (lab[:5, :7] == 1).all()


def test_crop_batches_are_deterministic_and_resumable():
    rng = np.random.default_rng(0)
    samples = [Sample(str(i), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
                      rng.integers(0, 3, (40, 50)).astype(np.uint16)) for i in range(7)]
    cb = CropBatches(samples, batch_size=2, crop_size=16, seed=3, transform=lambda lab: (lab > 0).astype(np.uint8))
    assert cb.steps_per_epoch == 3
    e1 = list(cb.epoch(1))
    assert len(e1) == 3 and e1[0][0].shape == (2, 16, 16, 3) and e1[0][1].dtype == np.uint8
    again = list(CropBatches(samples, 2, 16, seed=3, transform=cb.transform).epoch(1))
    for (a, b), (c, d) in zip(e1, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    resumed = list(cb.epoch(1, start_step=2))
    np.testing.assert_array_equal(resumed[0][0], e1[2][0])
    assert not np.array_equal(list(cb.epoch(2))[0][0], e1[0][0])
    with pytest.raises(ValueError, match="cannot fill one batch"):
        CropBatches(samples[:1], batch_size=2)
