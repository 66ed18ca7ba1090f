"""Rebuild the bundled mini-set ``dng_jax/data/minidata/dsb2018_mini.zip`` from the real DSB2018 zip.

A few real CC0 images per cell type, in the Kaggle layout, so the default job and the tests have real data
without the 88 MB download. Images larger than 256x320 are cropped to the 256x256 window holding the most
nuclei (masks cropped alike; masks left empty by the crop are dropped). Also writes the partition manifest
of the full set (``dsb2018_stage1_manifest.json``). It writes into this checkout's package folder: run it
from a checkout installed with ``pip install -e .``.

    python scripts/tools/make_minidata.py --zip ../shared/data/dsb2018/stage1_train.zip
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from dng_jax.data.sources import open_source
from dng_jax.data.partition import CELL_TYPES, build_manifest, write_manifest

PER_TYPE = {"fluorescence": 6}
DEFAULT_PER_TYPE = 3
CROP = 256


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def best_window(labels: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window (stride 64) containing the most nuclei."""
    h, w = labels.shape
    best, corner = -1, (0, 0)
    for y in range(0, max(h - size, 0) + 1, 64):
        for x in range(0, max(w - size, 0) + 1, 64):
            n = len(np.unique(labels[y : y + size, x : x + size])) - 1
            if n > best:
                best, corner = n, (y, x)
    return corner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zip", default="../shared/data/dsb2018/stage1_train.zip")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "dng_jax" / "data" / "minidata"))
    p.add_argument("--seed", type=int, default=2018)
    args = p.parse_args()
    out = Path(args.out)
    src = open_source(args.zip)
    manifest = build_manifest(src)
    write_manifest(out / "dsb2018_stage1_manifest.json", manifest)
    rng = np.random.default_rng(args.seed)
    with zipfile.ZipFile(out / "dsb2018_mini.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for ctype in CELL_TYPES:
            ids = sorted(i for i, t in manifest.items() if t == ctype)
            for sid in rng.choice(ids, size=PER_TYPE.get(ctype, DEFAULT_PER_TYPE), replace=False):
                sample = src.load(str(sid))
                image, labels = sample.image, sample.labels
                if image.shape[0] * image.shape[1] > 256 * 320:
                    y, x = best_window(labels, CROP)
                    image, labels = image[y : y + CROP, x : x + CROP], labels[y : y + CROP, x : x + CROP]
                zf.writestr(f"{sid}/images/{sid}.png", png_bytes(image))
                for j, lab in enumerate(np.unique(labels[labels > 0])):
                    mask = np.where(labels == lab, 255, 0).astype(np.uint8)
                    zf.writestr(f"{sid}/masks/{j:04d}.png", png_bytes(mask))
                print(f"{ctype:15s} {sid[:16]}  {image.shape[1]}x{image.shape[0]}  {len(np.unique(labels)) - 1} nuclei")


if __name__ == "__main__":
    main()
