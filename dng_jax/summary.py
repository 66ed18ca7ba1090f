"""``python -m dng_jax.summary [--data PATH]``: what a DSB2018 collection holds, by cell type and split.

With no ``--data`` it summarises the bundled mini-set; give the Kaggle ``stage1_train.zip`` (or its
unpacked folder) for the real thing.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np

from dng_jax.dsb2018 import DataError, open_source
from dng_jax.partition import CELL_TYPES, KNOWN_TYPE, make_splits, manifest_for


def summarize(path=None, n_test_per_type: int = 2, seed: int = 0) -> str:
    src = open_source(path)
    manifest = manifest_for(src)  # the training driver's manifest, so the splits match
    splits = make_splits(manifest, n_test_per_type, seed)
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
    lines += ["", f"CT1 training images: {len(splits.train_ct1)}   unlabeled clustering images: "
              f"{len(splits.cluster)}   test images: {len(splits.test_all)} (seed {seed})"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dng_jax.summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="Kaggle-layout zip or folder (default: bundled mini-set)")
    p.add_argument("--n-test-per-type", type=int, default=2,
                   help="test images per cell type (paper: 2; default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test split (default 0)")
    args = p.parse_args(argv)
    try:
        print(summarize(args.data, args.n_test_per_type, args.seed))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
