"""The deep-clustering variants beyond the paper (issue: encoder and decoder kept paired): each changes
what it should and nothing else, and the paper's settings give the paper's step bit for bit."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY_MODEL, synthetic_samples, tiny_config, tiny_sweep_config

from dng_jax.clustering.methods import build_method, method_keys
from dng_jax.config import experiment_config
from dng_jax.data.pipeline import segmentation_batches
from dng_jax.errors import ConfigError
from dng_jax.evaluation.evaluator import SegmentationEvaluator, score_predictions
from dng_jax.evaluation.scores import read_scores
from dng_jax.experiment.adaptation import adapt_runs, run_variables
from dng_jax.data.augment import AugmentConfig
from dng_jax.experiment.decoder_tuning import tune_decoders
from dng_jax.experiment.retrain import EncoderClassifier, init_runs, make_optimizer, make_retrain_step, retrain_runs
from dng_jax.segmentation.steps import make_segmentation_loss
from dng_jax.segmentation.train_state import TrainConfig
from dng_jax.experiment.sweep import run_sweep
from dng_jax.models import make_model, with_conv
from dng_jax.models.conv import resolve_retrain_conv
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.postprocess import probs_to_instances


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def config(**retrain):
    c = tiny_config()
    c.retrain.epochs, c.retrain.batch_size, c.retrain.crop_size = 2, 4, 16
    c.cluster_data.pca_dim, c.cluster_data.batch_size = 4, 8
    c.clustering.epochs = 2
    for k, v in retrain.items():
        c.retrain[k] = v
    return experiment_config(c)


@pytest.fixture(scope="module")
def setup():
    model = make_model(TINY_MODEL)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False))(jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.stack([np.arange(16) % 2, (np.arange(16) // 2) % 2]).astype(np.int32)
    batches = segmentation_batches(synthetic_samples(4), 2, 32, 2, seed=0)  # small images are padded
    return model, variables, images, labels, batches


def adapt(setup, cfg, **kw):
    model, variables, images, labels, batches = setup
    _, method = build_method("kmc", 2, cfg.clustering)
    keys = method_keys(jax.random.key(0), "kmc", 2, 2)
    return adapt_runs(jax.random.key(5), cfg, model, variables, images, labels, 2, method=method, method_keys=keys,
                      run_ids=[0, 1], ct1_batches=batches, **kw)


@pytest.mark.slow
def test_paper_settings_are_the_paper_step(setup):
    """retrain.* at the paper's values: exactly the encoder retraining of before, nothing else changes."""
    model, variables, images, labels, _ = setup
    cfg = config()
    out = adapt(setup, cfg)
    clf = EncoderClassifier(with_conv(model, resolve_retrain_conv(cfg.retrain.conv, "xla")).encoder, 2)
    enc = {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]}
    states, losses = retrain_runs(jax.random.key(5), clf, enc, images, labels, cfg.retrain, cfg.augment,
                                  progress=False, run_ids=[0, 1])
    assert set(out.variables["params"]) == {"encoder"}  # the decoder stays the baseline's
    assert leaves_equal(out.variables["params"]["encoder"], states.params["encoder"])
    assert leaves_equal(out.variables["batch_stats"]["encoder"], states.batch_stats["encoder"])
    np.testing.assert_array_equal(out.losses, losses)
    assert out.later_rounds == [] and out.decoder_losses.shape == (0, 2)
    run1 = run_variables(variables, out.variables, 1)
    assert leaves_equal(run1["params"]["decoder"], variables["params"]["decoder"])
    # batch_norm="train" (the paper): the statistics follow the clustering images
    assert not leaves_equal(run1["batch_stats"]["encoder"], variables["batch_stats"]["encoder"])


@pytest.mark.slow
def test_frozen_batch_norm_keeps_the_baseline_statistics(setup):
    _, variables, *_ = setup
    paper, frozen = adapt(setup, config()), adapt(setup, config(batch_norm="frozen"))
    run0 = run_variables(variables, frozen.variables, 0)
    assert leaves_equal(run0["batch_stats"]["encoder"], variables["batch_stats"]["encoder"])
    assert not leaves_equal(run0["params"]["encoder"], variables["params"]["encoder"])  # it still learns
    assert not leaves_equal(frozen.variables["params"]["encoder"], paper.variables["params"]["encoder"])


@pytest.mark.slow
def test_decoder_tuning_changes_only_the_decoder(setup):
    _, variables, *_ = setup
    paper, tuned = adapt(setup, config()), adapt(setup, config(decoder_epochs=2))
    assert leaves_equal(tuned.variables["params"]["encoder"], paper.variables["params"]["encoder"])
    assert leaves_equal(tuned.variables["batch_stats"]["encoder"], paper.variables["batch_stats"]["encoder"])
    assert tuned.decoder_losses.shape == (2, 2) and np.isfinite(tuned.decoder_losses).all()
    for j in range(2):
        run = run_variables(variables, tuned.variables, j)
        assert not leaves_equal(run["params"]["decoder"], variables["params"]["decoder"])
    # each run's decoder learns on its own encoder: the two differ
    assert not leaves_equal(*(jax.tree.map(lambda a, j=j: a[j], tuned.variables["params"]["decoder"])
                              for j in range(2)))


@pytest.mark.slow
def test_joint_objective_trains_the_whole_unet(setup):
    _, variables, *_ = setup
    paper, joint = adapt(setup, config()), adapt(setup, config(segmentation_weight=1.0))
    assert set(joint.variables["params"]) == {"encoder", "decoder"}
    run0 = run_variables(variables, joint.variables, 0)
    assert not leaves_equal(run0["params"]["decoder"], variables["params"]["decoder"])
    assert not leaves_equal(joint.variables["params"]["encoder"], paper.variables["params"]["encoder"])
    # the logged loss is the pseudo-label cross-entropy in both: comparable, and equal at the first step's
    # start (same heads, same batches), so the first epochs are close
    assert joint.losses.shape == paper.losses.shape
    assert abs(float(joint.losses[0, 0]) - float(paper.losses[0, 0])) < 0.5


def _seg_grad(model, variables, images, targets):
    """The gradient of the segmentation loss (train section defaults) w.r.t. the decoder, encoder fixed."""
    loss_fn = make_segmentation_loss(TrainConfig().class_weights, TrainConfig().dice_weight)
    x = jnp.asarray(images, jnp.float32) / 255.0

    def seg(decoder):
        out, _ = model.apply({"params": {**variables["params"], "decoder": decoder}, "batch_stats": variables["batch_stats"]},
                             x, train=True, encoder_train=False, mutable=["batch_stats"])
        return loss_fn(out, targets)[0]

    return jax.grad(seg)(variables["params"]["decoder"])


@pytest.mark.slow
def test_joint_step_adds_the_weighted_segmentation_gradient(setup):
    """One joint step moves the decoder by exactly -lr x w x (its segmentation gradient): the decoder gets
    nothing from the pseudo-label loss (no augmentation, so the step's input is known)."""
    model, variables, images, labels, batches = setup
    cfg = config(segmentation_weight=0.5, batch_norm="frozen").retrain
    clf = EncoderClassifier(model.encoder, 2)
    enc = {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]}
    dec = {"params": variables["params"]["decoder"], "batch_stats": variables["batch_stats"]["decoder"]}
    states = init_runs(jax.random.key(1), clf, enc, 1, make_optimizer(cfg, 1), 32, decoder_variables=dec)
    step = make_retrain_step(clf, cfg, 1, AugmentConfig(enabled=False), model, TrainConfig())
    seg_x, seg_t = next(iter(batches))
    new, _ = step(states, images[None, :4], labels[:1, :4], jax.random.key(2)[None], (seg_x, seg_t))
    grad = _seg_grad(model, variables, seg_x, seg_t)
    want = jax.tree.map(lambda p, g: p - cfg.learning_rate * 0.5 * g, dec["params"], grad)
    got = jax.tree.map(lambda a: a[0], new.params["decoder"])
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert not leaves_equal(got, dec["params"])
    # frozen: the encoder's statistics did not move in either forward pass
    assert leaves_equal(jax.tree.map(lambda a: a[0], new.batch_stats["encoder"]), enc["batch_stats"])


@pytest.mark.slow
def test_decoder_step_is_a_lamb_step_on_the_segmentation_gradient(setup):
    model, variables, _, _, batches = setup
    enc = jax.tree.map(lambda a: a[None], {"params": variables["params"]["encoder"],
                                           "batch_stats": variables["batch_stats"]["encoder"]})
    dec = {"params": variables["params"]["decoder"], "batch_stats": variables["batch_stats"]["decoder"]}
    one_batch = type(batches)(batches.samples[:2], 2, 32, seed=0, transform=batches.transform)  # 1 step per epoch
    out, losses = tune_decoders(jax.random.key(0), model, enc, dec, one_batch, 1, TrainConfig(),
                                AugmentConfig(enabled=False), run_ids=[0])
    seg_x, seg_t = next(iter(one_batch))
    grad = _seg_grad(model, variables, seg_x, seg_t)
    tx = optax.lamb(TrainConfig().lr, b1=TrainConfig().b1, b2=TrainConfig().b2)
    updates, _ = tx.update(grad, tx.init(dec["params"]), dec["params"])
    want = optax.apply_updates(dec["params"], updates)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[0], out["params"])), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert losses.shape == (1, 1)


@pytest.mark.slow
def test_rounds_recluster_each_runs_own_latent(setup):
    paper, two = adapt(setup, config()), adapt(setup, config(rounds=2))
    assert len(two.later_rounds) == 1 and len(two.later_rounds[0]["units"]) == 2
    assert all(1 <= u <= 2 for u in two.later_rounds[0]["units"])
    assert two.losses.shape == (2 * paper.losses.shape[0], 2)
    np.testing.assert_array_equal(two.losses[: paper.losses.shape[0]], paper.losses)  # round 1 is the paper's
    assert not leaves_equal(two.variables["params"]["encoder"], paper.variables["params"]["encoder"])


@pytest.mark.slow
def test_adabn_normalises_the_encoder_with_the_image_itself(setup):
    """With AdaBN the encoder's running statistics do not matter (the image's own are used); the
    decoder's still do."""
    model, variables, *_ = setup
    image = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    scrambled = jax.tree.map(lambda a: a * 3.0 + 1.0, variables["batch_stats"]["encoder"])
    other = {**variables, "batch_stats": {**variables["batch_stats"], "encoder": scrambled}}
    a = predict_probs(variables, model, image, adabn=True)
    np.testing.assert_allclose(predict_probs(other, model, image, adabn=True), a, atol=1e-5)
    assert not np.allclose(predict_probs(other, model, image), predict_probs(variables, model, image), atol=1e-3)
    assert not np.allclose(a, predict_probs(variables, model, image), atol=1e-3)
    dec = jax.tree.map(lambda x: x * 3.0 + 1.0, variables["batch_stats"]["decoder"])
    other_dec = {**variables, "batch_stats": {**variables["batch_stats"], "decoder": dec}}
    assert not np.allclose(predict_probs(other_dec, model, image, adabn=True), a, atol=1e-3)


@pytest.mark.slow
def test_ensemble_scores_the_mean_softmax(setup):
    model, variables, *_ = setup
    samples = {s.id: s for s in synthetic_samples(3)}
    loader = type("Loader", (), {"load": lambda self, sid: samples[sid]})()
    test = {"fluorescence": list(samples)}
    second = jax.tree.map(lambda a: a * 1.1, variables)
    ev = SegmentationEvaluator(workers=0, tile_size=512)
    got = ev.ensemble([variables, second], model, loader, test)

    def reference(image):  # the NumPy mean of the two softmaxes, then the watershed
        probs = (predict_probs(variables, model, image) + predict_probs(second, model, image)) / 2
        return probs_to_instances(probs, ev.postprocess)

    want = score_predictions(reference, loader, test)
    assert {k: v["score"] for k, v in got.per_image.items()} == {k: v["score"] for k, v in want.per_image.items()}
    same = ev.ensemble([variables], model, loader, test)
    assert same.per_image == ev(variables, model, loader, test).per_image


def test_bad_variant_values_are_config_errors():
    for section, field, value in [("retrain", "batch_norm", "adaptive"), ("retrain", "rounds", 0),
                                  ("retrain", "decoder_epochs", -1), ("retrain", "segmentation_weight", -0.5),
                                  ("sweep", "ensemble", 99)]:
        c = tiny_sweep_config()
        c[section][field] = value
        with pytest.raises(ConfigError, match=f"{section}.{field}"):
            experiment_config(c)


@pytest.mark.slow
def test_variants_run_in_the_sweep(finished_sweep, tmp_path):
    """Every variant at once from config overrides, on the finished sweep's baseline: the runs' networks
    carry what the variants changed, the ensemble is scored and reported, a rerun computes nothing."""
    done, _ = finished_sweep
    c = tiny_sweep_config()
    c.sweep.checkpoint = str(done / "baseline")
    c.sweep.methods, c.sweep.ks = ("kmc",), (2,)
    c.retrain.batch_norm = "adabn"
    c.retrain.decoder_epochs = 1
    c.retrain.segmentation_weight = 0.5
    c.retrain.rounds = 2
    c.sweep.ensemble = -1
    res = run_sweep(c, tmp_path, progress=False)
    assert not res.failures and len(res.rows) == 2
    assert {"round2_units", "round2_norm_entropy"} <= set(res.rows[0].as_json())
    rdir = tmp_path / "runs" / "kmc_k2"
    ens = json.loads((rdir / "ensemble.json").read_text())
    assert ens["members"] == 2 and 0 <= ens["map_all"] <= 1
    assert read_scores(rdir / "ensemble_scores.csv").ids == read_scores(rdir / "scores.csv").ids
    assert "kMC ensemble(2)" in (tmp_path / "table1.md").read_text()
    baseline, _, _ = load_variables(done / "baseline")
    for c0 in (0, 1):  # seeds_per_chunk = 1: one file per run, with its own encoder and decoder
        with np.load(rdir / f"chunk_{c0:04d}_variables.npz") as f:
            assert {k.split("/")[1] for k in f.files} == {"encoder", "decoder"}
            kernel = f["params/decoder/head/kernel"]
        assert kernel.shape == (1,) + baseline["params"]["decoder"]["head"]["kernel"].shape
        assert not np.array_equal(kernel[0], baseline["params"]["decoder"]["head"]["kernel"])
    again = run_sweep(c, tmp_path, progress=False)  # resumes: nothing is computed again
    assert [r.map_all for r in again.rows] == [r.map_all for r in res.rows]
