"""Ground truth as one instance-label image per input, for ``dng_jax.evaluate`` and viewers.

Kaggle ships one mask PNG per nucleus; :func:`export` writes, for every image of a split,
``out/gt/<id>.png`` (16-bit instance labels, 0 = background) and ``out/images/<id>.png`` (the RGB
input), plus ``out/cell_types.json`` (id -> type). Splits are the training driver's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import open_source
from dng_jax.data.partition import KNOWN_TYPE, make_splits, manifest_for
from dng_jax.errors import InputError
from dng_jax.io.atomic import atomic_write, atomic_write_text
from dng_jax.io.labels import write_labels

__all__ = ["SPLITS", "split_ids", "export"]

SPLITS = ("test", "test_known", "test_unknown", "val", "train", "cluster", "all")


def split_ids(manifest: dict[str, str], split: str, n_test_per_type: int = 2, seed: int = 0,
              protocol: str = "paper", test_fraction: float = 0.1, val_fraction: float = 0.05) -> list[str]:
    """The ids of ``split`` (one of :data:`SPLITS`), as the training driver draws them."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return sorted(manifest)
    try:
        s = make_splits(manifest, n_test_per_type, seed, protocol, test_fraction, val_fraction)
    except ValueError as e:
        raise InputError(str(e)) from None
    return {"test": s.test_all, "test_known": s.test_known, "test_unknown": s.test_unknown, "val": s.val,
            "train": s.train_ct1, "cluster": s.cluster}[split]


def export(out: str | os.PathLike, data: str | os.PathLike | None = None, split: str = "test",
           n_test_per_type: int = 2, seed: int = 0, images: bool = True, progress: bool = True,
           protocol: str = "paper", test_fraction: float = 0.1, val_fraction: float = 0.05) -> list[str]:
    """Write ``out/gt/<id>.png`` (and ``out/images/<id>.png``) for every image of ``split``; returns the ids."""
    out = Path(out)
    source = open_source(data)
    manifest = manifest_for(source, progress=progress)
    ids = split_ids(manifest, split, n_test_per_type, seed, protocol, test_fraction, val_fraction)
    for sid in tqdm(ids, desc=f"export {split}", disable=not progress, leave=False):
        sample = source.load(sid)
        write_labels(out / "gt" / f"{sid}.png", sample.labels)
        if images:
            atomic_write(out / "images" / f"{sid}.png",
                         lambda f, im=np.ascontiguousarray(sample.image): Image.fromarray(im).save(f, format="PNG"))
    atomic_write_text(out / "cell_types.json", json.dumps(
        {"known_type": KNOWN_TYPE, "split": split, "protocol": protocol, "cell_types": {i: manifest[i] for i in ids}}, indent=1) + "\n")
    return ids
