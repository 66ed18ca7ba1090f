#!/usr/bin/env python
"""Does ``model.input_polarity = "grey_bright_nuclei"`` make the nuclei bright on every cell type, and do an
image's crops decide as the image does?

For every labelled image: the model's own transform (:func:`dng_jax.models.polarity.grey_bright_nuclei`,
jitted) and the mean grey level inside the nuclei (the masks) against outside; the share of images per cell
type where the nuclei come out brighter. For crops of 64, 128 and 256 px on a half-overlapping grid: the
share that decide as their whole image, by how much of the crop is nucleus (none; some but less than half;
half or more), at ``--threshold`` and at the classical pipeline's mid-grey (0.5). And the evidence for the
threshold, from the wide protocol's validation images only (and the CT1 training images, which are
training data): the largest median grey level of a fluorescence image or crop with less than half nucleus,
and the smallest of any other type.

    python scripts/studies/check_polarity.py --data /path/to/stage1_train.zip --json docs/data/polarity_check.json

(``--data`` a Kaggle zip or folder, or the images/ + masks/ folder layout; about a minute on 2 CPU cores.)
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from dng_jax.config import DataConfig
from dng_jax.data.partition import open_data, type_order
from dng_jax.models.polarity import POLARITY_THRESHOLD, bright_background, grey_bright_nuclei

CROP_SIZES = (64, 128, 256)
CLASSICAL = 0.5  # the classical pipeline's rule: median grey level above mid-grey


@jax.jit
def _transform(x):
    return bright_background(x)[0], grey_bright_nuclei(x)[0, ..., 0]


def crop_kind(nucleus_share: float) -> str:
    if nucleus_share == 0:
        return "no_nuclei"
    return "nuclei_under_half" if nucleus_share < 0.5 else "nuclei_half_or_more"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the DSB2018 collection (Kaggle zip or folder, or folder layout)")
    ap.add_argument("--json", default=None, help="write the findings here")
    a = ap.parse_args()
    threshold = POLARITY_THRESHOLD
    source, manifest, splits = open_data(DataConfig(path=a.data, protocol="wide"), progress=False)
    split_of = {i: "validation" for i in splits.val_all}
    split_of.update({i: "test" for i in splits.test_all})
    split_of.update({i: "train" for i in splits.train_ct1})

    images = collections.defaultdict(lambda: collections.Counter())
    failures = []
    crops = collections.defaultdict(lambda: collections.Counter())  # (size, type, kind) -> counts
    medians = collections.defaultdict(list)  # (split, known type?) -> medians of images / crops under half nucleus
    for sid in tqdm(source.labeled_ids(), desc="polarity", mininterval=5):
        sample = source.load(sid)
        cell_type, split = manifest[sid], split_of.get(sid, "unused")
        image = sample.image.astype(np.float32) / 255.0
        mask = sample.labels > 0
        inverted, out = _transform(image[None])
        inverted, out = bool(inverted), np.asarray(out)
        bright = bool(out[mask].mean() > out[~mask].mean())
        images[cell_type].update(n=1, nuclei_bright=bright, inverted=inverted)
        if not bright:
            failures.append({"id": sid, "cell_type": cell_type, "split": split})
        grey = image.mean(axis=-1)
        group = (split, cell_type == splits.known_type)
        medians[group].append(float(np.median(grey)))
        h, w = grey.shape
        for size in CROP_SIZES:
            for y in range(0, h - size + 1, size // 2):
                for x in range(0, w - size + 1, size // 2):
                    share = float(mask[y:y + size, x:x + size].mean())
                    med = float(np.median(grey[y:y + size, x:x + size]))
                    c = crops[(size, cell_type, crop_kind(share))]
                    c.update(n=1, agree=(med > threshold) == inverted, agree_classical=(med > CLASSICAL) == inverted)
                    if share < 0.5:
                        medians[group].append(med)

    types = type_order(images, splits.known_type)
    report = {
        "command": "python scripts/studies/check_polarity.py --data <DSB2018 stage1_train> "
                   "--json docs/data/polarity_check.json",
        "data": Path(a.data).name,
        "rule": f"grey = mean of the channels; inverted when its median is above {threshold}",
        "threshold": threshold,
        "images": {t: {"n": images[t]["n"], "nuclei_brighter_share": images[t]["nuclei_bright"] / images[t]["n"],
                       "inverted_share": images[t]["inverted"] / images[t]["n"]} for t in types},
        "images_with_dark_nuclei": failures,
        "crops": {str(size): {t: {kind: {"n": c["n"], "agree_share": c["agree"] / c["n"],
                                         "agree_share_at_0.5": c["agree_classical"] / c["n"]}
                                  for kind in ("no_nuclei", "nuclei_under_half", "nuclei_half_or_more")
                                  if (c := crops[(size, t, kind)])["n"]}
                              for t in types} for size in CROP_SIZES},
        "threshold_evidence": {
            "what": "median grey levels of whole images and of crops with less than half nucleus pixels",
            "validation_known_type_max": max(medians[("validation", True)]),
            "validation_other_types_min": min(medians[("validation", False)]),
            "train_known_type_max": max(medians[("train", True)]),
            "train_known_type_share_above_threshold": float(np.mean(np.array(medians[("train", True)]) > threshold)),
        },
    }
    ev = report["threshold_evidence"]
    ev["validation_gap_middle"] = (ev["validation_known_type_max"] + ev["validation_other_types_min"]) / 2

    print(f"rule: {report['rule']}")
    print("cell type        images  nuclei bright  inverted   crops with less than half nucleus that decide as "
          "their image, 64 / 128 / 256 px (at 0.5)")
    for t in types:
        r = report["images"][t]
        under = [report["crops"][str(s)][t].get("nuclei_under_half", {}) for s in CROP_SIZES]
        agree = " ".join(f"{u.get('agree_share', np.nan):.3f}" for u in under)
        agree05 = " ".join(f"{u.get('agree_share_at_0.5', np.nan):.3f}" for u in under)
        shares = f"{r['nuclei_brighter_share']:14.3f} {r['inverted_share']:9.3f}"
        print(f"{t:16s} {r['n']:6d} {shares}   {agree} ({agree05})")
    print("threshold evidence:", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in ev.items()}))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
