"""``python -m dng_jax.export_labels --out DIR [--data ZIP] [--split test]``: ground truth for the CLIs.

Kaggle ships one mask PNG per nucleus; ``dng_jax.evaluate`` and most viewers want one instance-label image
per input. This writes, for every image of a split, ``DIR/gt/<id>.png`` (16-bit instance labels, 0 =
background) and ``DIR/images/<id>.png`` (the RGB input), plus ``DIR/cell_types.json`` (id -> type). So::

    python -m dng_jax.export_labels --data stage1_train.zip --split test --out test_set
    python -m dng_jax.predict --checkpoint runs/cpu_real --input test_set/images --output test_set/pred
    python -m dng_jax.evaluate --gt test_set/gt --pred test_set/pred

Splits are the training driver's (``--n-test-per-type``, ``--seed`` as in ``config.data``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dng_jax.atomic import atomic_write, atomic_write_text
from dng_jax.dsb2018 import DataError, open_source
from dng_jax.label_io import write_labels
from dng_jax.partition import KNOWN_TYPE, make_splits, manifest_for

__all__ = ["SPLITS", "split_ids", "export", "main"]

SPLITS = ("test", "test_known", "test_unknown", "train", "cluster", "all")


def split_ids(manifest: dict[str, str], split: str, n_test_per_type: int = 2, seed: int = 0) -> list[str]:
    """The ids of ``split`` (one of :data:`SPLITS`), as the training driver draws them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return sorted(manifest)
    s = make_splits(manifest, n_test_per_type, seed)
    return {"test": s.test_all, "test_known": s.test_known, "test_unknown": s.test_unknown,
            "train": s.train_ct1, "cluster": s.cluster}[split]


def export(out: str | os.PathLike, data: str | os.PathLike | None = None, split: str = "test",
           n_test_per_type: int = 2, seed: int = 0, images: bool = True, progress: bool = True) -> list[str]:
    """Write ``out/gt/<id>.png`` (and ``out/images/<id>.png``) for every image of ``split``; returns the ids."""
    out = Path(out)
    source = open_source(data)
    manifest = manifest_for(source)
    ids = split_ids(manifest, split, n_test_per_type, seed)
    for sid in tqdm(ids, desc=f"export {split}", disable=not progress, leave=False):
        sample = source.load(sid)
        write_labels(out / "gt" / f"{sid}.png", sample.labels)
        if images:
            atomic_write(out / "images" / f"{sid}.png",
                         lambda f, im=np.ascontiguousarray(sample.image): Image.fromarray(im).save(f, format="PNG"))
    atomic_write_text(out / "cell_types.json", json.dumps(
        {"known_type": KNOWN_TYPE, "split": split, "cell_types": {i: manifest[i] for i in ids}}, indent=1) + "\n")
    return ids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dng_jax.export_labels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (gets gt/, images/, cell_types.json)")
    p.add_argument("--data", default=None, help="Kaggle-layout zip or folder (default: bundled mini-set)")
    p.add_argument("--split", default="test", choices=SPLITS, help="which images (default: test)")
    p.add_argument("--n-test-per-type", type=int, default=2, help="test images per cell type (paper: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test split")
    p.add_argument("--no-images", action="store_true", help="write only the label images")
    args = p.parse_args(argv)
    try:
        ids = export(args.out, args.data, args.split, args.n_test_per_type, args.seed, images=not args.no_images)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(ids)} label images to {Path(args.out) / 'gt'}"
          + ("" if args.no_images else f" and their inputs to {Path(args.out) / 'images'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
