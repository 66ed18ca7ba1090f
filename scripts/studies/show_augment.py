#!/usr/bin/env python
"""A grid of CT1 crops under each photometric augmentation (``augment.p_grey_to_colour``, ``p_hed``,
``p_contrast``, ``p_gamma``, ``p_blur``, ``p_noise``), for the eyes: one row per op alone (probability 1,
the config's ranges, no geometric op), then the paper's regime with every new op at probability 0.5.

    python scripts/studies/show_augment.py --n 5 --output docs/figures/augment/ct1_augment.png

The bundled mini-set's CT1 images by default (``--data`` another collection); ``--set hed_sigma=0.2``
changes a range (any numeric augment field, repeatable).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dng_jax.data.augment import AugmentConfig, augment_batch
from dng_jax.data.partition import manifest_for
from dng_jax.data.sources import open_source

NEW_OPS = ("p_grey_to_colour", "p_hed", "p_contrast", "p_gamma", "p_blur", "p_noise")
NO_PAPER_OPS = dict(p_channel_swap=0.0, p_invert=0.0, p_rotate=0.0, p_vflip=0.0, p_hflip=0.0, p_scale=0.0)


def ct1_crops(path, n: int, size: int, known_type: str = "fluorescence") -> np.ndarray:
    """``float32 [n, size, size, 3]``: the centre crops of the first ``n`` images of the known type."""
    src = open_source(path)
    types = manifest_for(src, progress=False)
    out = []
    for sid in [i for i in src.ids() if types[i] == known_type][:n]:
        im = src.load_image(sid)
        y, x = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
        out.append(im[y:y + size, x:x + size].astype(np.float32) / 255.0)
    return np.stack(out)


def rows(images: np.ndarray, base: AugmentConfig, seed: int) -> list[tuple[str, np.ndarray]]:
    """(title, augmented images) per op alone, then everything together."""
    key = jax.random.key(seed)
    out = [("CT1 crop", images)]
    for op in NEW_OPS:
        cfg = dataclasses.replace(base, **NO_PAPER_OPS, **{op: 1.0})
        out.append((op[2:], np.asarray(augment_batch(key, jnp.asarray(images), None, cfg)[0])))
    cfg = dataclasses.replace(base, **{op: 0.5 for op in NEW_OPS})
    out.append(("paper + new at 0.5", np.asarray(augment_batch(key, jnp.asarray(images), None, cfg)[0])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a collection (default: the bundled mini-set)")
    ap.add_argument("--n", type=int, default=6, help="how many CT1 crops (columns)")
    ap.add_argument("--size", type=int, default=96, help="crop size (px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="an augment field for the ranges, e.g. hed_sigma=0.2 (repeatable)")
    ap.add_argument("--output", default="docs/figures/augment/ct1_augment.png")
    a = ap.parse_args()
    fields = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    overrides = {}
    for item in a.set:
        name, _, value = item.partition("=")
        if name not in fields:
            sys.exit(f"error: --set {item}: no augment field {name!r}")
        overrides[name] = float(value)
    base = AugmentConfig(**overrides)
    images = ct1_crops(a.data, a.n, a.size)
    grid = rows(images, base, a.seed)
    fig, axes = plt.subplots(len(grid), len(images), figsize=(1.1 * len(images) + 1.6, 1.1 * len(grid)),
                             squeeze=False)
    for r, (title, ims) in enumerate(grid):
        for c, im in enumerate(ims):
            ax = axes[r, c]
            ax.imshow(np.clip(im, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.subplots_adjust(left=0.2)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.output, dpi=80)
    print(f"wrote {a.output} ({Path(a.output).stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
