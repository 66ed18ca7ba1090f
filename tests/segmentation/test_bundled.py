"""The shipped model (dng_jax/segmentation/bundled.py): float16 round trip, the predict command without
--checkpoint, ``bundled:NAME`` where a checkpoint is expected."""

import jax
import numpy as np
import pytest
from conftest import random_image, tiny_config
from PIL import Image

from dng_jax.errors import CheckpointError
from dng_jax.io.labels import read_labels
from dng_jax.predict import main
from dng_jax.segmentation.bundled import DEFAULT_MODEL, load_bundled, save_bundled
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.inference import predict_probs


def test_bundled_model_round_trip_and_cli(model_and_state, tmp_path, monkeypatch):
    model, state = model_and_state
    cfg = tiny_config()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    save_bundled(variables, cfg.to_dict(), {"commit": "abc"}, name="tiny", directory=tmp_path / "w")
    loaded, model2, config = load_bundled("tiny", tmp_path / "w")
    assert config.model.width == cfg.model.width
    image = random_image(32, 32, seed=4)
    a = predict_probs(variables, model, image)
    b = predict_probs(loaded, model2, image)
    np.testing.assert_allclose(a, b, atol=2e-3)  # float16 parameters
    # the CLI uses the bundled model when no --checkpoint is given
    monkeypatch.setattr("dng_jax.predict.load_bundled", lambda: (loaded, model2, config))
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(image).save(inp / "a.png")
    assert main(["--input", str(inp), "--output", str(tmp_path / "out"), "--quiet", "--tta"]) == 0
    assert read_labels(tmp_path / "out" / "a.png").shape == (32, 32)
    with pytest.raises(CheckpointError, match="missing"):
        load_bundled("nope", tmp_path / "w")


def test_bundled_prefix_loads_the_shipped_model_where_a_checkpoint_is_expected():
    """``sweep.checkpoint="bundled:cpu_real"`` clusters and retrains on top of the shipped model."""
    variables, model, config = load_variables(f"bundled:{DEFAULT_MODEL}")
    shipped, _, shipped_config = load_bundled()
    assert config == shipped_config
    for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(shipped), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match=f"no bundled model 'nope'.*ships {DEFAULT_MODEL}"):
        load_variables("bundled:nope")
