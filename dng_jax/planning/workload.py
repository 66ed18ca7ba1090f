"""How much data a sweep goes through: what a plan needs besides the config's shapes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from dng_jax.config import ExperimentConfig
from dng_jax.data.partition import open_data
from dng_jax.errors import DataError
from dng_jax.evaluation.scores import scored_images

__all__ = ["Workload", "workload_from_data", "workload_from_json"]


class Workload(NamedTuple):
    """How much data the sweep goes through (what the config's shapes do not say)."""

    train_images: int  # CT1 training images: segmentation steps per epoch = train_images // batch_size
    scored_images: int  # test images scored per run (baseline and every retrained run)
    image_shapes: dict[str, int]  # "HxW" -> scored test images of that size
    source: str  # where the counts come from

    def to_json(self) -> dict:
        return dict(self._asdict())


def workload_from_data(cfg: ExperimentConfig, progress: bool = False) -> Workload:
    """Counts and test-image shapes of ``cfg.data`` under its protocol (the images are decoded once)."""
    source, manifest, splits = open_data(cfg.data, None, progress)
    try:
        n_train = len(splits.train_ct1)
        if cfg.train.max_train_images:
            n_train = min(n_train, cfg.train.max_train_images)
        scored = scored_images(splits, manifest, cfg.eval.wide_unknown and splits.protocol == "paper")
        shapes: Counter = Counter()
        for t, ids in scored.items():
            for i in ids:
                h, w = source.load(i, with_labels=False).image.shape[:2]
                shapes[f"{h}x{w}"] += 1
    finally:
        source.close()
    return Workload(n_train, sum(shapes.values()), dict(shapes), str(cfg.data.path or "bundled mini-set"))


def workload_from_json(path: str) -> Workload:
    """The ``workload`` entry of a plan's JSON (for planning where the data is not)."""
    try:
        obj = json.loads(Path(path).read_text())
        w = obj.get("workload", obj)
        return Workload(int(w["train_images"]), int(w["scored_images"]), {str(k): int(v) for k, v in
                                                                           w["image_shapes"].items()}, f"{path}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"--workload {path}: not a plan's JSON with a 'workload' entry "
                        f"({type(e).__name__}: {e})") from None
