"""Self-training on the unlabeled images: a teacher's confident pixels as segmentation targets.

The paper uses its unlabeled images (every cell type but CT1) only through cluster pseudo-labels for the
encoder. Here they serve the segmentation task itself (``train.pseudo_label_rounds``): the trained U-Net
(the teacher) predicts each clustering image with test-time augmentation; a pixel whose highest class
probability reaches ``train.pseudo_label_confidence`` gets that class as its target, the others are
:data:`~dng_jax.segmentation.steps.IGNORE`. The student (the same network, going on from the teacher's
weights) then trains for ``train.pseudo_label_epochs`` on batches of CT1 crops beside as many pseudo-labeled
crops, the latter weighted ``train.pseudo_label_weight`` (:class:`~dng_jax.data.pipeline.MixedBatches`,
:func:`~dng_jax.segmentation.steps.make_weighted_loss`); a further round labels again with the student.

The pseudo-labels of round r are saved as ``pseudo_labels/round<r>.npz`` (image id -> uint8 target map),
so an interrupted student resumes on the same targets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import Sample
from dng_jax.io.atomic import atomic_save_npz
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.steps import IGNORE

__all__ = ["pseudo_targets", "pseudo_label", "save_pseudo_labels", "load_pseudo_labels"]


def pseudo_targets(probs: np.ndarray, confidence: float) -> np.ndarray:
    """``uint8 [H, W]``: the most probable class where its probability is at least ``confidence``, else
    :data:`IGNORE` (``probs``: a softmax ``[H, W, C]``)."""
    probs = np.asarray(probs, np.float32)
    cls = probs.argmax(-1).astype(np.uint8)
    return np.where(probs.max(-1) >= confidence, cls, np.uint8(IGNORE)).astype(np.uint8)


def pseudo_label(variables, model, images: Mapping[str, np.ndarray], *, confidence: float, tile_size: int,
                 tta: bool = True, progress: bool = False) -> dict[str, np.ndarray]:
    """id -> :func:`pseudo_targets` of the network's softmax (with test-time augmentation) on each image."""
    out = {}
    for sid, image in tqdm(images.items(), desc="pseudo-label", disable=not progress, leave=False):
        out[sid] = pseudo_targets(predict_probs(variables, model, image, tile_size=tile_size, tta=tta), confidence)
    return out


def save_pseudo_labels(path: str | os.PathLike, targets: Mapping[str, np.ndarray]) -> None:
    atomic_save_npz(path, dict(targets))


def load_pseudo_labels(path: str | os.PathLike, images: Mapping[str, np.ndarray]) -> list[Sample]:
    """The pseudo-labeled samples: each image of ``images`` with its saved target map as labels."""
    with np.load(path) as f:
        return [Sample(sid, images[sid], f[sid]) for sid in sorted(f.files) if sid in images]


def confident_share(samples: Sequence[Sample]) -> float:
    """The share of pixels with a target (not :data:`IGNORE`): how much the teacher was sure of."""
    total = sum(s.labels.size for s in samples)
    return float(sum(int((s.labels != IGNORE).sum()) for s in samples) / max(total, 1))
