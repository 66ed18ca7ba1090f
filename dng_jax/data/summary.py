"""What a DSB2018 collection holds, by cell type and split (``python -m dng_jax.summary``)."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from dng_jax.data.dsb2018 import open_source
from dng_jax.data.partition import CELL_TYPES, KNOWN_TYPE, make_splits, manifest_for

__all__ = ["summarize"]


def summarize(path: str | os.PathLike | None = None, n_test_per_type: int = 2, seed: int = 0,
              progress: bool = True, protocol: str = "paper") -> str:
    """A table of images, test images and nuclei per cell type, and the sizes of the splits."""
    src = open_source(path)
    manifest = manifest_for(src, progress=progress)  # the training driver's manifest, so the splits match
    splits = make_splits(manifest, n_test_per_type, seed, protocol)
    rows: dict[str, list] = defaultdict(list)
    for sid in src.ids():
        sample = src.load(sid)
        rows[manifest[sid]].append((sample.image.shape[0] * sample.image.shape[1], int(sample.labels.max())))
    lines = [f"DSB2018 collection: {src.path}  ({len(src)} images)", "",
             f"{'cell type':16s} {'images':>6s} {'test':>5s} {'nuclei':>7s} {'nuclei/img':>10s} {'mean px':>9s}"]
    for ctype in CELL_TYPES:
        r = rows.get(ctype, [])
        if not r:
            continue
        px, nuc = np.array(r).T
        tag = " (CT1, known)" if ctype == KNOWN_TYPE else ""
        lines.append(f"{ctype:16s} {len(r):6d} {len(splits.test.get(ctype, [])):5d} {nuc.sum():7d} "
                     f"{nuc.mean():10.1f} {px.mean():9.0f}{tag}")
    lines += ["", f"{protocol} protocol: CT1 training images {len(splits.train_ct1)}, CT1 validation images "
              f"{len(splits.val)}, test images {len(splits.test_all)}, unlabeled clustering images "
              f"{len(splits.cluster)} (seed {seed})"]
    return "\n".join(lines)
