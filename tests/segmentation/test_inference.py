"""Inference (dng_jax/segmentation/inference.py): odd-sized non-square images, padding, tiling, test-time
augmentation over the eight dihedral views."""

import numpy as np
import pytest
from conftest import random_image

from dng_jax.segmentation.inference import (dihedral, pad_to_multiple, predict_instances, predict_probs, tile_starts,
                                            undo_dihedral)


def test_padding_and_tiles():
    assert pad_to_multiple(np.zeros((37, 53, 3)), 32).shape == (64, 64, 3)
    assert pad_to_multiple(np.zeros((64, 32)), 32).shape == (64, 32)
    r = pad_to_multiple(np.arange(6, dtype=float).reshape(2, 3), 32, mode="reflect")
    assert r.shape == (32, 32) and r[0, 3] == r[0, 1]
    assert tile_starts(64, 64, 8) == [0]
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


def test_predict_odd_non_square_image(model_and_state):
    model, state = model_and_state
    image = random_image(37, 53)
    probs = predict_probs(state, model, image)
    assert probs.shape == (37, 53, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    labels = predict_instances(state, model, image)
    assert labels.shape == (37, 53) and labels.dtype == np.uint16
    # grayscale input works as well
    assert predict_probs(state, model, image[..., 0]).shape == (37, 53, 3)


def test_tiled_prediction_covers_large_image(model_and_state):
    model, state = model_and_state
    image = random_image(45, 70, seed=1)
    probs = predict_probs(state, model, image, tile_size=32, overlap=8)
    assert probs.shape == (45, 70, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # a single tile reproduces the untiled prediction
    single = predict_probs(state, model, image[:32, :32], tile_size=32, overlap=8)
    np.testing.assert_allclose(single, predict_probs(state, model, image[:32, :32]), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 32"):
        predict_probs(state, model, image, tile_size=48)


def test_tta_is_the_mean_over_the_eight_views(model_and_state):
    model, state = model_and_state
    image = random_image(37, 53, seed=3)
    for k in range(4):
        for flip in (False, True):
            assert np.array_equal(undo_dihedral(dihedral(image, k, flip), k, flip), image)
    views = [undo_dihedral(predict_probs(state, model, np.ascontiguousarray(dihedral(image, k, f))), k, f)
             for k in range(4) for f in (False, True)]
    tta = predict_probs(state, model, image, tta=True)
    assert tta.shape == (37, 53, 3)
    np.testing.assert_allclose(tta, np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(tta, views[0], atol=1e-4)  # the views differ: averaging does something
    # a rotation of the image rotates the TTA softmax (up to float rounding)
    np.testing.assert_allclose(predict_probs(state, model, np.ascontiguousarray(np.rot90(image)), tta=True),
                               np.rot90(tta), atol=1e-5)
