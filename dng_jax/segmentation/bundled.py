"""The segmentation model shipped inside the package, so ``predict`` works without a checkpoint.

A bundled model is two files in ``dng_jax/segmentation/weights/``: ``<name>.npz`` (every parameter and
BatchNorm statistic, keyed by its path in the variables tree, parameters stored as float16 to stay small;
loading converts back to float32) and ``<name>.json`` (the full training config, which builds the model
and the watershed, and where the weights came from: data, config file, commit, wide-protocol MAP).
Written by ``scripts/tools/export_bundled_model.py`` from a training work dir; nothing is ever downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from dng_jax.config import ExperimentConfig, experiment_config
from dng_jax.errors import CheckpointError, ConfigError
from dng_jax.io.atomic import atomic_save_npz, atomic_write_text
from dng_jax.models import make_model
from dng_jax.typed_config import as_dict

__all__ = ["WEIGHTS_DIR", "DEFAULT_MODEL", "save_bundled", "load_bundled", "bundled_info", "describe_bundled"]

WEIGHTS_DIR = Path(__file__).with_name("weights")
DEFAULT_MODEL = "cpu_real"


def save_bundled(variables: dict, config: ExperimentConfig | dict, provenance: dict,
                 name: str = DEFAULT_MODEL, directory: str | os.PathLike = WEIGHTS_DIR) -> Path:
    """Write ``variables`` ({'params', 'batch_stats'}) as ``<directory>/<name>.npz`` (parameters float16,
    BatchNorm statistics float32) and the config + ``provenance`` as ``<name>.json``."""
    directory = Path(directory)
    host = jax.device_get({k: variables[k] for k in ("params", "batch_stats")})
    flat = {}
    for path, value in flatten_dict(host, sep="/").items():
        value = np.asarray(value)
        if path.startswith("params") and np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float16)
        flat[path] = value
    cfg = as_dict(config) if isinstance(config, ExperimentConfig) else dict(config)
    atomic_save_npz(directory / f"{name}.npz", flat)
    atomic_write_text(directory / f"{name}.json",
                      json.dumps({"provenance": provenance, "config": cfg}, indent=1, sort_keys=True) + "\n")
    return directory / f"{name}.npz"


def bundled_info(name: str = DEFAULT_MODEL, directory: str | os.PathLike = WEIGHTS_DIR) -> dict:
    """The ``<name>.json`` of a bundled model: ``{"provenance": ..., "config": ...}``."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        shipped = ", ".join(sorted(q.stem for q in Path(directory).glob("*.json") if q.with_suffix(".npz").exists()))
        raise CheckpointError(f"no bundled model {name!r}: {path} is missing "
                              f"(this install ships {shipped or 'none; pass --checkpoint'})")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable bundled-model description ({e})") from None


def describe_bundled(info: dict, name: str = DEFAULT_MODEL) -> str:
    """A bundled model in one sentence: its name (``bundled:<name>``, the file's, which names where the
    model is used, not the recipe), the config file of its recipe, the seed and data it was trained with and
    its test MAPs (``info``: :func:`bundled_info`)."""
    prov, cfg = info.get("provenance", {}), info.get("config", {})
    seed = cfg.get("train", {}).get("seed", "?")
    steps = f" for {prov['step']} steps" if "step" in prov else ""
    data = prov.get("data", {}).get("file", "its data")
    text = (f"bundled:{name} (weights/{name}.npz; predict's model without --checkpoint): the recipe of "
            f"{prov.get('config_file', 'its config')} trained with seed {seed}{steps} on {data}")
    maps = [(key, prov[key]) for key in ("map", "map_tta") if isinstance(prov.get(key), dict)]
    if maps:
        text += f"; test MAP ({prov.get('protocol', '')} protocol) " + ", ".join(
            f"CT1 {m['known']:.3f} / other types {m['unknown']:.3f}" + (" with TTA" if key == "map_tta" else "")
            for key, m in maps)
    return text


def load_bundled(name: str = DEFAULT_MODEL, directory: str | os.PathLike = WEIGHTS_DIR):
    """``(variables, model, config)`` of a bundled model, as :func:`~dng_jax.segmentation.checkpointing.load_variables`
    returns them for a checkpoint (parameters back in float32)."""
    info = bundled_info(name, directory)
    npz = Path(directory) / f"{name}.npz"
    try:
        config = experiment_config(info["config"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{npz.with_suffix('.json')}: its config is not valid ({e})") from None
    try:
        with np.load(npz) as data:
            flat = {k: data[k] for k in data.files}
        flat = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in flat.items()}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{npz}: the bundled weights cannot be read ({e})") from None
    variables = unflatten_dict(flat, sep="/")
    model = make_model(config.model)
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)))
    got = jax.tree_util.tree_map(lambda x: x.shape, variables)
    want = jax.tree_util.tree_map(lambda x: tuple(x.shape), dict(expected))
    if got != want:
        raise CheckpointError(f"{npz}: the weights do not fit the model of its config")
    return variables, model, config
