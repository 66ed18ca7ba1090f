"""Ensembles (dng_jax/segmentation/ensemble.py): the averaged softmax against a NumPy reference on tiny
networks, with and without TTA, and the refusal of networks that read their input differently."""

from functools import partial

import jax
import numpy as np
import pytest
from conftest import random_image, tiny_config

from dng_jax.config import experiment_config
from dng_jax.errors import InputError
from dng_jax.segmentation.bundled import save_bundled
from dng_jax.segmentation.ensemble import (Network, check_same_input, ensemble_probs, load_networks,
                                           make_ensemble_predictor, mean_softmax)
from dng_jax.segmentation.inference import predict_probs


def _networks(model_and_state, n=2):
    """The tiny network and n - 1 others: its parameters, each scaled by a random factor in [0.2, 1.8]
    (members that differ, with logits of the same size)."""
    model, state = model_and_state
    config = experiment_config(tiny_config())
    rng = np.random.default_rng(0)
    networks = []
    for s in range(n):
        params = jax.tree_util.tree_map(lambda x: np.asarray(x) * (rng.uniform(0.2, 1.8, x.shape) if s else 1.0),
                                        state.params)
        networks.append(Network(f"net{s}", {"params": params, "batch_stats": state.batch_stats}, model, config))
    return networks


@partial(jax.jit, static_argnums=0)
def _logits(model, variables, x):
    return model.apply(variables, x, train=False)


def _numpy_views(network, image):
    """The softmax of the 8 views (rotations by k x 90 degrees, each also mirrored), each mapped back; the
    logits are the only JAX step (one batch: both orientations of the image pad to the same square), the
    softmax and the mapping are NumPy."""
    h, w = image.shape[:2]
    size = -(-max(h, w) // 32) * 32
    assert -(-min(h, w) // 32) * 32 == size
    views = [(k, flip) for k in range(4) for flip in (False, True)]
    batch = np.zeros((len(views), size, size, 3), np.float32)
    for i, (k, flip) in enumerate(views):
        turned = np.rot90(image, k)[:, ::-1] if flip else np.rot90(image, k)
        batch[i, : turned.shape[0], : turned.shape[1]] = turned / 255.0
    logits = np.asarray(_logits(network.model, network.variables, batch), np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    out = []
    for p, (k, flip) in zip(probs, views):
        p = p[: (w if k % 2 else h), : (h if k % 2 else w)]
        out.append(np.rot90(p[:, ::-1] if flip else p, -k))
    return np.array(out)  # view 0 is the image itself


def test_ensemble_softmax_is_the_mean_of_the_networks_softmax(model_and_state):
    networks = _networks(model_and_state)
    image = random_image(37, 53, seed=5)
    views = [_numpy_views(n, image) for n in networks]
    got = ensemble_probs(networks, image)
    want = np.mean([v[0] for v in views], axis=0)
    assert got.shape == (37, 53, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, views[0][0], atol=1e-3)  # the members differ
    # TTA: each network's mean over the 8 views, then the mean over the networks
    got_tta = ensemble_probs(networks, image, tta=True)
    np.testing.assert_allclose(got_tta, np.mean([v.mean(0) for v in views], axis=0), atol=1e-5)
    # one network: its own softmax, bit for bit, so predict with one --checkpoint is unchanged
    one = predict_probs(networks[0].variables, networks[0].model, image)
    np.testing.assert_array_equal(mean_softmax([one]), one)
    np.testing.assert_array_equal(ensemble_probs(networks[:1], image), one)
    labels = make_ensemble_predictor(networks)(image)
    assert labels.shape == (37, 53) and labels.dtype == np.uint16


def test_networks_that_read_images_differently_are_refused(model_and_state, tmp_path):
    cfg = tiny_config()
    variables = _networks(model_and_state, 1)[0].variables
    save_bundled(variables, cfg.to_dict(), {}, name="plain", directory=tmp_path)
    save_bundled(variables, cfg.to_dict(), {}, name="plain_too", directory=tmp_path)
    cfg.model.input_polarity = "grey_bright_nuclei"
    save_bundled(variables, cfg.to_dict(), {}, name="grey", directory=tmp_path)
    plain, plain_too, grey = (str(tmp_path / f"{n}.npz") for n in ("plain", "plain_too", "grey"))
    assert [n.source for n in load_networks([plain, plain_too])] == [plain, plain_too]
    with pytest.raises(InputError, match=rf"^{plain} and {grey} cannot be averaged: model.input_polarity is "
                                         r"'none' in the first, 'grey_bright_nuclei' in the second"):
        load_networks([plain, plain_too, grey])
    with pytest.raises(InputError, match="at least one network"):
        check_same_input([])
