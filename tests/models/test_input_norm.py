"""Per-image input standardisation (issue 11; dng_jax/models/resnet.py normalize_input) against plain NumPy,
and the model field that turns it on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, TINY_MODEL

from dng_jax.config import ConfigError, experiment_config, load_config
from dng_jax.models import make_model, normalize_input


def test_per_image_normalisation_standardises_each_image():
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(0, 0.1, (8, 8, 3)), rng.uniform(0.4, 1.0, (8, 8, 3))]).astype(np.float32)
    y = np.asarray(normalize_input(jnp.asarray(x), "per_image"))
    for i in range(2):
        assert abs(y[i].mean()) < 1e-5
        np.testing.assert_allclose(y[i].std(), x[i].std() / (x[i].std() + 1e-2), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(normalize_input(jnp.asarray(x), "none")), x - 0.5)
    # the dim image and 3x it give the same input (up to the epsilon)
    a = np.asarray(normalize_input(jnp.asarray(x[:1] * 3), "per_image"))
    b = np.asarray(normalize_input(jnp.asarray(x[:1]), "per_image"))
    assert np.abs(a - b).max() < 0.3


@pytest.mark.slow
def test_input_norm_is_a_model_field_and_changes_only_the_input():
    m_none = make_model({**TINY_MODEL})
    m_img = make_model({**TINY_MODEL, "input_norm": "per_image"})
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 0.2, (1, 32, 32, 3)), jnp.float32)
    v = jax.jit(m_none.init)(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(jax.jit(m_img.init)(jax.random.key(0), x))
    assert not np.allclose(np.asarray(m_none.apply(v, x)), np.asarray(m_img.apply(v, x)))
    c = load_config(ROOT / "configs" / "paper.py")
    c.model.input_norm = "batch"
    with pytest.raises(ConfigError, match="input_norm"):
        experiment_config(c)
