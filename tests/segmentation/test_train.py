"""Training: loss decreases, frozen subtrees, eval step, checkpoints, exact resume, data parallelism."""

import csv
import os
import subprocess
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (ORBAX_LOOP_WARNING, TINY_MODEL, XLA_CACHE, synthetic_samples, tiny_config,
                      xla_flags_with_devices)

from dng_jax.errors import CheckpointError
from dng_jax.models import make_model
from dng_jax.segmentation.checkpointing import Checkpointer
from dng_jax.segmentation.steps import eval_step, make_train_step
from dng_jax.segmentation.train_state import create_train_state, make_optimizer
from dng_jax.segmentation.trainer import train_and_evaluate
from dng_jax.sharding import jit_eval_step, jit_train_step, make_mesh, replicate, shard_batch


def fixed_batch(n=2, h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
    targets = (images[..., 0] > 128).astype(np.uint8) + (images[..., 1] > 200)
    return images, targets


def tree_equal(a, b):
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.slow
def test_steps_lower_loss_on_fixed_batch(tiny_state):
    mesh = make_mesh()
    step = jit_train_step(make_train_step(), mesh, donate=False)
    batch, key = shard_batch(fixed_batch(), mesh), jax.random.key(1)
    state, losses = replicate(tiny_state, mesh), []
    for _ in range(6):
        state, metrics = step(state, batch, key)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 6
    assert losses[-1] < losses[0] - 0.02, losses
    ev = jit_eval_step(eval_step, mesh)(state, batch)
    assert set(ev) >= {"loss", "accuracy"} and np.isfinite(float(ev["loss"]))


@pytest.mark.slow
def test_training_only_encoder_leaves_decoder_unchanged(tiny_state):
    state = tiny_state.replace(tx=make_optimizer(None, trainable=("encoder",)))
    state = state.replace(opt_state=state.tx.init(state.params))
    step = jax.jit(make_train_step(trainable=("encoder",)))
    new, _ = step(state, fixed_batch(), jax.random.key(1))
    assert tree_equal(new.params["decoder"], state.params["decoder"])
    assert tree_equal(new.batch_stats["decoder"], state.batch_stats["decoder"])
    assert not tree_equal(new.params["encoder"], state.params["encoder"])
    assert not tree_equal(new.batch_stats["encoder"], state.batch_stats["encoder"])
    with pytest.raises(ValueError, match="not in params"):
        make_optimizer(None, trainable=("head",)).init(state.params)


@ORBAX_LOOP_WARNING
def test_checkpoint_round_trip_and_errors(tiny_state, tmp_path):
    ck = Checkpointer(tmp_path / "ck", max_to_keep=2)
    state = tiny_state.replace(step=jnp.asarray(7, jnp.int32))
    ck.save(7, state, {"epoch": 3, "note": "x"})
    ck.wait()
    restored, meta = ck.restore(jax.eval_shape(lambda: tiny_state))
    assert meta == {"epoch": 3, "note": "x"} and int(restored.step) == 7
    assert tree_equal(restored.params, state.params) and tree_equal(restored.batch_stats, state.batch_stats)
    assert tree_equal(restored.opt_state, state.opt_state)
    ck.close()
    with pytest.raises(CheckpointError, match="nowhere"):
        Checkpointer(tmp_path / "nowhere", read_only=True)
    with pytest.raises(CheckpointError, match="no checkpoint"), Checkpointer(tmp_path / "empty") as empty:
        empty.restore(jax.eval_shape(lambda: tiny_state))
    # corrupt: damage every array file of the saved state
    for f in (tmp_path / "ck" / "7" / "state").rglob("*"):
        if f.is_file() and "metadata" not in f.name.lower():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=str(tmp_path / "ck" / "7")), Checkpointer(tmp_path / "ck") as bad:
        bad.restore(jax.eval_shape(lambda: tiny_state))


def _rows(path):
    with open(path, newline="") as f:
        return [(r["step"], r["split"], r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
@ORBAX_LOOP_WARNING
def test_interrupted_run_resumes_to_identical_result(tmp_path):
    samples, eval_samples = synthetic_samples(), synthetic_samples(2, seed=1)
    cfg = tiny_config()  # 5 samples, batch 2 -> 2 steps/epoch, 2 epochs, augmentation on
    full = train_and_evaluate(cfg, tmp_path / "a", samples=samples, eval_samples=eval_samples, progress=False)
    cfg.train.max_steps = 3  # "interrupted" after step 3, mid-epoch 2
    part = train_and_evaluate(cfg, tmp_path / "b", samples=samples, eval_samples=eval_samples, progress=False)
    assert int(part.step) == 3
    with Checkpointer(tmp_path / "b" / "checkpoints") as ck:
        assert ck.latest_step() == 3
    cfg.train.max_steps = None
    resumed = train_and_evaluate(cfg, tmp_path / "b", samples=samples, eval_samples=eval_samples, progress=False)
    assert int(full.step) == int(resumed.step) == 4
    assert tree_equal(jax.device_get(full.params), jax.device_get(resumed.params))
    assert tree_equal(jax.device_get(full.batch_stats), jax.device_get(resumed.batch_stats))
    assert tree_equal(jax.device_get(full.opt_state), jax.device_get(resumed.opt_state))
    assert _rows(tmp_path / "a" / "metrics.csv") == _rows(tmp_path / "b" / "metrics.csv")
    assert {r[1] for r in _rows(tmp_path / "a" / "metrics.csv")} == {"train", "eval"}


@pytest.mark.slow
def test_data_parallel_two_cpu_devices_matches_one(tiny_state):
    """The same two steps on a 2-device mesh (fake CPU devices, in a subprocess) and on one device."""
    code = textwrap.dedent("""
        import jax, numpy as np
        assert len(jax.local_devices()) == 2
        from dng_jax.models import make_model
        from dng_jax.segmentation.steps import make_train_step
        from dng_jax.segmentation.train_state import create_train_state
        from dng_jax.sharding import jit_train_step, make_mesh, replicate, shard_batch
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
        targets = (images[..., 0] > 128).astype(np.uint8)
        model = make_model(dict(stage_sizes=(1, 1, 1, 1), width=4, decoder_features=(8, 8, 8, 8, 8)))
        mesh = make_mesh()
        state = replicate(create_train_state(jax.random.key(0), model, None, (1, 32, 32, 3)), mesh)
        step = jit_train_step(make_train_step(), mesh)
        for _ in range(2):
            state, m = step(state, shard_batch((images, targets), mesh), jax.random.key(1))
        assert len(state.params["encoder"]["stem_conv"]["kernel"].sharding.device_set) == 2
        np.save(OUT, np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(jax.device_get(state.params))]))
        print("OK", float(m["loss"]))
    """)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "params.npy")
        env = dict(os.environ, XLA_FLAGS=xla_flags_with_devices(2), JAX_PLATFORMS="cpu",
                   JAX_COMPILATION_CACHE_DIR=XLA_CACHE,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        r = subprocess.run([sys.executable, "-c", f"OUT = {out!r}\n" + code], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
        loss2 = float(r.stdout.split("OK")[1])
        params2 = np.load(out)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    targets = (images[..., 0] > 128).astype(np.uint8)
    mesh = make_mesh(jax.local_devices()[:1])
    step = jit_train_step(make_train_step(), mesh, donate=False)
    state = replicate(tiny_state, mesh)
    for _ in range(2):
        state, m = step(state, shard_batch((images, targets), mesh), jax.random.key(1))
    params1 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(jax.device_get(state.params))])
    assert abs(float(m["loss"]) - loss2) < 1e-4
    np.testing.assert_allclose(params1, params2, atol=1e-4)


@pytest.mark.slow
def test_bf16_train_step_traces_with_float32_state():
    model = make_model({**TINY_MODEL, "dtype": "bfloat16"})
    state = jax.eval_shape(lambda: create_train_state(jax.random.key(0), model, None, (1, 32, 32, 3)))
    batch = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), fixed_batch())
    new, metrics = jax.eval_shape(make_train_step(), state, batch, jax.random.key(1))
    assert metrics["loss"].dtype == jnp.float32
    assert {a.dtype for a in jax.tree_util.tree_leaves(new.params)} == {np.dtype("float32")}
