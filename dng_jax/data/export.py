"""Writing a collection out: ground truth for evaluation (:func:`export`), or the whole collection in the
folder layout (:func:`pack`).

- :func:`export` writes, for every image of a split, ``out/gt/<id>.png`` (16-bit instance labels, 0 =
  background) and ``out/images/<id>.png`` (the RGB input), plus ``out/cell_types.json`` (id -> type), for
  ``dng_jax.evaluate`` and viewers. Splits are the training driver's (:func:`dng_jax.data.partition.open_data`).
- :func:`pack` writes every image of a collection (the Kaggle zip, say) in the folder layout of
  :mod:`dng_jax.data.folder`: ``images/<id>.png`` (grayscale where the three channels are equal, else RGB),
  ``masks/<id>.png`` (16-bit labels) and ``manifest.csv`` (id, cell_type). Every PNG is compressed at
  zlib's highest level. The folder gives back the same samples, so every command reads it as it read the
  zip: DSB2018's 664 images take about 45 MB, small enough to travel with the repository.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dng_jax.data.partition import Splits, manifest_for, open_data
from dng_jax.data.sources import open_source
from dng_jax.errors import InputError
from dng_jax.io.atomic import atomic_write, atomic_write_text
from dng_jax.io.labels import write_labels

__all__ = ["SPLITS", "split_ids", "export", "pack", "png_bytes"]

SPLITS = ("test", "test_known", "test_unknown", "val", "val_known", "val_unknown", "train", "cluster", "all")


def split_ids(splits: Splits, manifest: dict[str, str], split: str) -> list[str]:
    """The ids of ``split`` (one of :data:`SPLITS`), as the training driver draws them."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return sorted(manifest)
    return {"test": splits.test_all, "test_known": splits.test_known, "test_unknown": splits.test_unknown,
            "val": splits.val_all, "val_known": splits.val_known, "val_unknown": splits.val_unknown,
            "train": splits.train_ct1, "cluster": splits.cluster}[split]


def png_bytes(array: np.ndarray) -> bytes:
    """``array`` as a PNG compressed at zlib's highest level."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=9, optimize=True)
    return buf.getvalue()


def export(out: str | os.PathLike, data, split: str = "test", images: bool = True, progress: bool = True) -> list[str]:
    """Write ``out/gt/<id>.png`` (and ``out/images/<id>.png``) for every image of ``split`` of the ``data``
    config section (:class:`dng_jax.config.DataConfig`); returns the ids."""
    out = Path(out)
    source, manifest, splits = open_data(data, progress=progress)
    ids = split_ids(splits, manifest, split)
    unlabeled = set(splits.unlabeled)
    if split == "all":
        ids = [i for i in ids if i not in unlabeled]
    for sid in tqdm(ids, desc=f"export {split}", disable=not progress, leave=False):
        sample = source.load(sid, with_labels=sid not in unlabeled)
        if sid not in unlabeled:
            write_labels(out / "gt" / f"{sid}.png", sample.labels)
        if images:
            atomic_write(out / "images" / f"{sid}.png",
                         lambda f, im=np.ascontiguousarray(sample.image): Image.fromarray(im).save(f, format="PNG"))
    atomic_write_text(out / "cell_types.json", json.dumps(
        {"known_type": splits.known_type, "split": split, "protocol": data.protocol,
         "cell_types": {i: manifest[i] for i in ids}}, indent=1) + "\n")
    return ids


def pack(out: str | os.PathLike, data: str | os.PathLike | None = None, progress: bool = True, *,
         cell_types: Sequence[str] | None = None, masks: bool = True, manifest: bool = True,
         masks_for: int | None = None) -> dict[str, int]:
    """Every image of the collection at ``data`` (None: the bundled mini-set) in the folder layout under
    ``out`` (module docstring); returns what was written: ``images``, ``masks``, ``gray`` (images written as
    grayscale) and ``bytes``. Cell types are the collection's (its manifest, or the DSB2018 rule); a split
    its manifest fixes is kept. ``cell_types``: only the images of these types; ``masks=False``: no masks
    (an unlabeled experiment); ``masks_for=N``: masks for the first N labeled images (by id) only, the others
    unlabeled (an experiment of which a few images are annotated); ``manifest=False``: no manifest.csv (a
    folder of one experiment placed beside others takes its cell type from its name). Everything is checked
    before the first file is written."""
    out = Path(out)
    source = open_source(data)
    types = manifest_for(source, progress=progress)
    fixed = source.manifest_splits()
    ids = source.ids()
    if cell_types is not None:
        unknown = sorted(set(cell_types) - set(types.values()))
        if unknown:
            raise InputError(f"no image of cell type {', '.join(map(repr, unknown))} in {source.path} (its types: "
                             f"{', '.join(sorted(set(types.values())))})")
        ids = [i for i in ids if types[i] in cell_types]
    labeled = set(source.labeled_ids()) & set(ids) if masks else set()
    if masks_for is not None:
        labeled = set(sorted(labeled)[:masks_for])
    unlabeled = {i for i in ids if i not in labeled}
    if (out / "images").exists() and any((out / "images").iterdir()):
        raise InputError(f"{out / 'images'}: not empty; pack into a new folder")
    counts = {"images": 0, "masks": 0, "gray": 0, "bytes": 0}
    for sid in tqdm(ids, desc="pack", unit="img", disable=not progress, leave=False):
        sample = source.load(sid, with_labels=sid not in unlabeled)
        image = sample.image
        gray = bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
        data_png = png_bytes(image[..., 0] if gray else image)
        atomic_write(out / "images" / f"{sid}.png", lambda f, b=data_png: f.write(b))
        counts["images"] += 1
        counts["gray"] += gray
        counts["bytes"] += len(data_png)
        if sid not in unlabeled:
            mask_png = png_bytes(sample.labels.astype(np.uint16))
            atomic_write(out / "masks" / f"{sid}.png", lambda f, b=mask_png: f.write(b))
            counts["masks"] += 1
            counts["bytes"] += len(mask_png)
    if manifest:
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        if any(fixed.get(i) for i in ids):
            w.writerow(["id", "cell_type", "split"])
            w.writerows([sid, types[sid], fixed.get(sid, "") if sid in labeled else ""] for sid in ids)
        else:
            w.writerow(["id", "cell_type"])
            w.writerows([sid, types[sid]] for sid in ids)
        atomic_write_text(out / "manifest.csv", text.getvalue())
    return counts
