"""What a collection holds, by cell type and split (``python -m dng_jax.summary``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from dng_jax.data.partition import open_data, type_order

__all__ = ["summarize"]


def summarize(data, progress: bool = True) -> str:
    """A table of images, labeled / test / validation images and nuclei per cell type, and the sizes of the
    splits, for the ``data`` config section (:class:`dng_jax.config.DataConfig`)."""
    src, manifest, splits = open_data(data, progress=progress)  # the training driver's splits
    unlabeled = set(splits.unlabeled)
    rows: dict[str, list] = defaultdict(list)
    for sid in src.ids():
        sample = src.load(sid, with_labels=sid not in unlabeled)
        n = -1 if sid in unlabeled else int(len(np.unique(sample.labels)) - (sample.labels == 0).any())
        rows[manifest[sid]].append((sample.image.shape[0] * sample.image.shape[1], n))
    lines = [f"collection: {src.path}  ({len(src)} images{', manifest.csv' if src.has_manifest else ''})", "",
             f"{'cell type':16s} {'images':>6s} {'labeled':>7s} {'test':>5s} {'val':>5s} {'nuclei':>7s} "
             f"{'nuclei/img':>10s} {'mean px':>9s}"]
    for ctype in type_order(rows, splits.known_type, rule_order=True):
        px, nuc = np.array(rows[ctype]).T
        labeled = nuc >= 0
        tag = " (CT1, known)" if ctype == splits.known_type else ""
        per_image = f"{nuc[labeled].mean():10.1f}" if labeled.any() else f"{'-':>10s}"
        lines.append(f"{ctype:16s} {len(px):6d} {int(labeled.sum()):7d} {len(splits.test.get(ctype, [])):5d} "
                     f"{len(splits.val.get(ctype, [])):5d} {int(nuc[labeled].sum()):7d} {per_image} {px.mean():9.0f}{tag}")
    lines += ["", f"{data.protocol} protocol (seed {data.seed}): training images {len(splits.train_ct1)}, validation "
              f"images {len(splits.val_known)} of CT1 and {len(splits.val_unknown)} of the other types, test images "
              f"{len(splits.test_known)} of CT1 and {len(splits.test_unknown)} of the other types, clustering images "
              f"{len(splits.cluster)} ({len(unlabeled)} unlabeled; data.cluster_from={data.cluster_from!r})"]
    return "\n".join(lines)
