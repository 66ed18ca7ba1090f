#!/usr/bin/env python
"""Is a packed collection (``python -m dng_jax.pack``) the collection it was packed from?

Compares, image by image, what the loader gives from the original (the Kaggle zip) and from the packed
folder: the RGB images and the label images must be identical, and so must the cell types and the
splits of both protocols. It also counts the pixels that two or more of the Kaggle layout's per-nucleus
masks claim (the loader gives them to the earlier mask, in both layouts), and scores the shipped model on
the wide protocol's test images from both sources (the MAPs must be identical).

    python -m dng_jax.pack --data ../shared/data/dsb2018/stage1_train.zip --output /tmp/dsb_folder
    python scripts/studies/check_pack.py --zip ../shared/data/dsb2018/stage1_train.zip --folder /tmp/dsb_folder \
        --json docs/figures/pack_check.json
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dng_jax.config import DataConfig
from dng_jax.data.dsb2018 import Source, mask_to_gray
from dng_jax.data.partition import open_data
from dng_jax.data.sources import open_source
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.segmentation.bundled import load_bundled


def overlap_pixels(src: Source, sid: str) -> int:
    """Pixels of ``sid`` that two or more of its Kaggle masks cover."""
    entry = src.files(sid)  # the per-nucleus files are what is counted here
    count = None
    for name in entry["masks"]:
        with Image.open(io.BytesIO(src.read_bytes(name))) as im:
            m = mask_to_gray(np.asarray(im), name) > 0
        count = m.astype(np.int32) if count is None else count + m
    return 0 if count is None else int((count > 1).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", required=True, help="the original collection (Kaggle zip or folder)")
    ap.add_argument("--folder", required=True, help="the packed folder")
    ap.add_argument("--no-map", action="store_true", help="skip scoring the shipped model (minutes on a CPU)")
    ap.add_argument("--json", default=None, help="write the findings here")
    a = ap.parse_args()
    original, packed = open_source(a.zip), open_source(a.folder)
    out: dict = {"images": len(original), "same_ids": original.ids() == packed.ids()}
    differing, overlaps = [], {}
    for sid in tqdm(original.ids(), desc="compare", mininterval=5):
        x, y = original.load(sid), packed.load(sid)
        if not (np.array_equal(x.image, y.image) and np.array_equal(x.labels, y.labels)):
            differing.append(sid)
        n = overlap_pixels(original, sid) if isinstance(original, Source) else 0
        if n:
            overlaps[sid] = n
    out["differing_samples"] = differing
    out["overlap_pixels"] = {"images": len(overlaps), "pixels": sum(overlaps.values()), "per_image": overlaps}
    for protocol in ("wide", "paper"):
        za = open_data(DataConfig(path=a.zip, protocol=protocol), progress=False)
        fa = open_data(DataConfig(path=a.folder, protocol=protocol), progress=False)
        out[f"same_types_and_splits_{protocol}"] = za[1] == fa[1] and za[2] == fa[2]
    if not a.no_map:
        variables, model, config = load_bundled()
        evaluator = SegmentationEvaluator.from_config(config)._replace(tta=False)
        maps = {}
        for name, path in (("zip", a.zip), ("folder", a.folder)):
            source, _, splits = open_data(DataConfig(path=path, protocol="wide"), progress=False)
            s = evaluator(variables, model, source, splits.test, progress=True)
            maps[name] = {"known": s.known, "unknown": s.unknown, "all": s.all, "per_type": s.per_type}
        out["shipped_model_wide_test_map"] = maps
        out["same_map"] = maps["zip"] == maps["folder"]
    text = json.dumps(out, indent=1, sort_keys=True)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
