"""Model: ResNet-50 parameter count, latent/logit shapes, encoder/decoder subtrees, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dng_jax.models import ResNetEncoder, UNet, count_params, make_model

TINY = dict(stage_sizes=(1, 1, 1, 1), width=4, decoder_features=(8, 8, 8, 8, 8))


def test_resnet50_encoder_param_count_matches_reference():
    # torchvision resnet50 without fc: 25,557,032 - 2,049,000 = 23,508,032 (BN running stats excluded).
    enc = ResNetEncoder(stage_sizes=(3, 4, 6, 3), width=64)
    v = jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    assert count_params(v["params"]) == 23_508_032
    # the same encoder inside the U-Net, as its own subtree
    model = make_model({})
    vu = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    assert set(vu["params"]) == {"encoder", "decoder"}
    assert set(vu["batch_stats"]) == {"encoder", "decoder"}
    assert count_params(vu["params"]["encoder"]) == 23_508_032


@pytest.mark.slow
def test_paper_latent_and_logit_shapes():
    model = make_model({})
    x = jnp.zeros((2, 256, 256, 3))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    latent, skips = jax.eval_shape(lambda v: model.apply(v, x, method=UNet.encode), v)
    assert latent.shape == (2, 8, 8, 2048)
    assert [s.shape[1] for s in skips] == [128, 64, 32, 16]
    logits = jax.eval_shape(lambda v: model.apply(v, x), v)
    assert logits.shape == (2, 256, 256, 3) and logits.dtype == jnp.float32


@pytest.mark.slow
def test_tiny_model_forward_non_square():
    model = make_model(TINY)
    x = jax.random.uniform(jax.random.key(1), (2, 32, 64, 3))
    v = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0, impl="rbg"), x)

    @jax.jit
    def run(v, x):
        latent, _ = model.apply(v, x, method=UNet.encode)
        return latent, model.apply(v, x, train=False)

    latent, logits = run(v, x)
    assert latent.shape == (2, 1, 2, 4 * 8 * 4)
    assert logits.shape == (2, 32, 64, 3) and bool(jnp.all(jnp.isfinite(logits)))
    # (train mode and its BatchNorm statistics updates are covered in test_train.py)
    with pytest.raises(ValueError, match="multiples of 32"):
        jax.eval_shape(lambda v: model.apply(v, x[:, :30], train=False), v)


def test_bf16_compute_keeps_float32_params_and_logits():
    model = make_model({**TINY, "dtype": "bfloat16"})
    x = jnp.zeros((1, 32, 32, 3))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert {a.dtype for a in jax.tree_util.tree_leaves(v["params"])} == {np.dtype("float32")}
    assert jax.eval_shape(lambda v: model.apply(v, x), v).dtype == jnp.float32
    with pytest.raises(ValueError, match="dtype: use one of"):
        make_model({"dtype": "float8"})
