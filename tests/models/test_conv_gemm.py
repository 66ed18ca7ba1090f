"""The matmul convolutions (dng_jax.models.conv) against ``lax.conv_general_dilated``, alone and vmapped over
runs; the U-Net and one SGD retraining step with each path; the HLO check that counts grouped convolutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dng_jax.config import load_config, experiment_config, apply_overrides
from dng_jax.data.augment import AugmentConfig
from dng_jax.errors import ConfigError
from dng_jax.experiment.retrain import EncoderClassifier, RetrainConfig, init_runs, make_optimizer, make_retrain_step
from dng_jax.models import ModelConfig, make_model, with_conv
from dng_jax.models.conv import (CONV_IMPLS, conv_function, grouped_convolutions, resolve_retrain_conv)

DN = ("NHWC", "HWIO", "NHWC")
# (name, kernel, stride, padding, c_in, c_out): the kinds of convolution in the ResNet-50 U-Net
LAYERS = [
    ("stem 7x7 / 2", 7, 2, ((3, 3), (3, 3)), 3, 8),
    ("1x1", 1, 1, ((0, 0), (0, 0)), 8, 12),
    ("3x3", 3, 1, ((1, 1), (1, 1)), 8, 6),
    ("3x3 / 2", 3, 2, ((1, 1), (1, 1)), 8, 6),
    ("projection 1x1 / 2", 1, 2, ((0, 0), (0, 0)), 8, 12),
    ("decoder 3x3 SAME", 3, 1, "SAME", 6, 3),
]
MATMUL_IMPLS = [c for c in CONV_IMPLS if c != "xla"]


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def _conv(fn, x, w, stride, padding):
    fn = fn or lax.conv_general_dilated
    return fn(x, w, (stride, stride), padding, dimension_numbers=DN)


@pytest.mark.slow
@pytest.mark.parametrize("impl", MATMUL_IMPLS)
@pytest.mark.parametrize("layer", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_matmul_conv_matches_lax_alone_and_vmapped(impl, layer):
    _, k, s, pad, cin, cout = layer
    kx, kw, kr = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, 15, 17, cin))  # odd sizes: the strided slices must end where lax's windows do
    w = jax.random.normal(kw, (k, k, cin, cout)) / k
    fn = conv_function(impl)

    def loss(f, x, w):
        return jnp.sum(jnp.sin(_conv(f, x, w, s, pad)))

    y_ref, y = _conv(None, x, w, s, pad), _conv(fn, x, w, s, pad)
    assert y.shape == y_ref.shape
    assert _rel(y, y_ref) < 1e-5
    for g, g_ref in zip(jax.grad(lambda *a: loss(fn, *a), (0, 1))(x, w),
                        jax.grad(lambda *a: loss(None, *a), (0, 1))(x, w)):
        assert _rel(g, g_ref) < 1e-5
    # vmapped over 3 runs, each its own input and kernel: what the sweep's retraining does
    xs = jax.random.normal(kr, (3,) + x.shape)
    ws = jnp.stack([w, 2 * w, -w])
    many = jax.vmap(lambda a, b: jax.grad(lambda b_: loss(fn, a, b_))(b))(xs, ws)
    many_ref = jax.vmap(lambda a, b: jax.grad(lambda b_: loss(None, a, b_))(b))(xs, ws)
    assert _rel(many, many_ref) < 1e-5


def test_unsupported_cases_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
    ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    got = conv_function("gemm")(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    np.testing.assert_array_equal(got, ref)
    w1 = jax.random.normal(jax.random.key(2), (3, 3, 4, 4))
    ref = lax.conv_general_dilated(x, w1, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=DN)
    got = conv_function("im2col")(x, w1, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=DN)
    np.testing.assert_array_equal(got, ref)


TINY = dict(stage_sizes=(1, 1, 1, 1), width=4, decoder_features=(16, 8, 8, 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize("impl", MATMUL_IMPLS)
def test_unet_same_parameters_same_logits(impl):
    model = make_model(ModelConfig(**TINY))
    x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    variables = model.init(jax.random.key(1), x)
    other = with_conv(model, impl)
    # the same parameter tree: a checkpoint of one path loads into the other
    assert jax.tree.structure(other.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    assert _rel(other.apply(variables, x), model.apply(variables, x)) < 1e-5
    out, upd = other.apply(variables, x, train=True, mutable=["batch_stats"])
    out_ref, upd_ref = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert _rel(out, out_ref) < 1e-5
    for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(upd_ref)):
        assert _rel(a, b) < 1e-5


def _retrain_step(conv: str, layout: str = "vmap", runs: int = 2):
    unet = with_conv(make_model(ModelConfig(**TINY)), conv)
    clf = EncoderClassifier(unet.encoder, 5)
    cfg = RetrainConfig(batch_size=4, crop_size=32, runs_layout=layout)
    base = make_model(ModelConfig(**TINY)).init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))
    enc = {"params": base["params"]["encoder"], "batch_stats": base["batch_stats"]["encoder"]}
    states = init_runs(jax.random.key(1), clf, enc, runs, make_optimizer(cfg, 1), 32)
    step = make_retrain_step(clf, cfg, 1, AugmentConfig(enabled=False))
    images = jax.random.randint(jax.random.key(2), (runs, 4, 40, 40, 3), 0, 256).astype(jnp.uint8)
    labels = jnp.tile(jnp.arange(4) % 5, (runs, 1))
    keys = jax.random.split(jax.random.key(4), runs)
    return step, (states, images, labels, keys, None)


@pytest.mark.slow
@pytest.mark.parametrize("impl", MATMUL_IMPLS)
def test_one_sgd_retraining_step_matches_the_lax_path(impl):
    step, args = _retrain_step("xla")
    ref_states, ref_loss = step(*args)
    step, args = _retrain_step(impl)
    states, loss = step(*args)
    assert _rel(loss, ref_loss) < 1e-5
    assert _rel(_flat(states.params), _flat(ref_states.params)) < 1e-5  # over all the runs' parameters


@pytest.mark.slow
def test_lax_map_over_runs_is_the_vmapped_step():
    step, args = _retrain_step("gemm", "map")
    states, loss = step(*args)
    step, args = _retrain_step("gemm", "vmap")
    ref_states, ref_loss = step(*args)
    assert _rel(loss, ref_loss) < 1e-5
    assert _rel(_flat(states.params), _flat(ref_states.params)) < 1e-5  # over all the runs' parameters


@pytest.mark.slow
def test_hlo_check_counts_the_grouped_convolutions():
    counts = {}
    for impl in ("xla", "gemm"):
        step, args = _retrain_step(impl)
        counts[impl] = grouped_convolutions(step.lower(*args).as_text(dialect="hlo"))
    # vmapped over runs, the encoder's lax convs (forward and filter gradient) are grouped; the matmuls never
    assert counts["xla"] >= 10 and counts["gemm"] == 0
    text = ("%c = f32[3,8,8,4] convolution(f32[3,8,8,4] %a, f32[3,3,4,4] %b), window={size=3x3}, "
            "dim_labels=b01f_01io->b01f, feature_group_count=3\n"
            "%d = f32[8,8,4] convolution(%a, %b), dim_labels=b01f_01io->b01f\n")
    assert grouped_convolutions(text) == 1


def test_config_fields_and_auto():
    assert resolve_retrain_conv("auto", "xla", "cpu") == "gemm"
    assert resolve_retrain_conv("auto", "im2col", "gpu") == "im2col"  # no GPU figure yet: the model's path
    assert resolve_retrain_conv("xla", "gemm", "cpu") == "xla"
    cfg = load_config("configs/default.py")
    for field, bad in (("model.conv", "fft"), ("retrain.conv", "winograd"), ("retrain.runs_layout", "scan")):
        with pytest.raises(ConfigError, match=field.split(".")[1]):
            experiment_config(apply_overrides(cfg.copy_and_resolve_references(), {field: bad}))
