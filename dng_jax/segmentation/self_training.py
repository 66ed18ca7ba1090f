"""Self-training on the unlabeled images: a teacher's confident pixels as segmentation targets.

The paper uses its unlabeled images (every cell type but CT1) only through cluster pseudo-labels for the
encoder. Here they serve the segmentation task itself (``train.pseudo_label_rounds``): the trained U-Net (the
teacher) predicts each of self-training's images (``train.pseudo_label_images``: the clustering images, or the
inductive teacher pool, :func:`dng_jax.data.partition.pseudo_label_ids`) with test-time augmentation; a pixel
whose highest class probability reaches ``train.pseudo_label_confidence`` gets that class as its target, the
others are :data:`~dng_jax.segmentation.steps.IGNORE`. The student (the same network, going on from the
teacher's weights) then trains for ``train.pseudo_label_epochs`` on batches of CT1 crops beside as many
pseudo-labeled crops, the latter weighted ``train.pseudo_label_weight``
(:class:`~dng_jax.data.pipeline.MixedBatches`, :func:`~dng_jax.segmentation.steps.make_weighted_loss`); a
further round labels again with the student.

The teacher (``train.pseudo_label_teacher``, :func:`teach`) is the network by default. The ``classical``
teacher takes the classical reference's instances (Otsu + distance-transform watershed,
:mod:`dng_jax.segmentation.classical`) of every image, turned into background / cell / border targets as CT1's
masks are (:func:`dng_jax.data.targets.labels_to_classes`, whole images, no pixel ignored): a teacher that
never learnt from CT1, so it does not carry CT1's look over to the other types. The ``agreement`` teacher
keeps those targets only for the images where the classical and the network's (TTA) instances agree: the share
of instances matched at IoU > 0.5, TP / (TP + FP + FN), reaches ``train.pseudo_label_agreement``
(:func:`instance_agreement`). The rule is per image, not per pixel: a per-pixel rule (classical target kept
where the network's argmax equals it) keeps only what the network already predicts, so it could teach it
nothing new; per image, a kept image brings its classical targets whole, the pixels the network gets wrong
included, and an image where the classical pipeline fails (where the threshold catches the wrong objects) is
dropped whole. Matching at IoU 0.5, not the DSB2018 score's 0.5-0.95, asks whether the two found the same
nuclei, not whether they drew the same boundary (the classical outline and the network's border class differ
by design). The measure is symmetric, so neither side is taken as the truth.

The pseudo-labels of round r are saved as ``pseudo_labels/round<r>.npz`` (image id -> uint8 target map), so an
interrupted student resumes on the same targets; the agreement teacher also writes each image's agreement to
``pseudo_labels/round<r>_agreement.json`` (kept or not).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import Sample
from dng_jax.data.targets import DEFAULT_BORDER_WIDTH, labels_to_classes
from dng_jax.evaluation.metrics import image_score
from dng_jax.io.atomic import atomic_save_npz, atomic_write_text
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.postprocess import WatershedConfig, probs_to_instances
from dng_jax.segmentation.steps import IGNORE

__all__ = ["pseudo_targets", "pseudo_label", "classical_targets", "instance_agreement", "agreeing_ids",
           "TeacherSettings", "PseudoLabels", "teach", "save_pseudo_labels", "save_agreement", "load_pseudo_labels",
           "confident_share", "AGREEMENT_IOU"]

#: The IoU above which a classical and a network instance are the same nucleus (the agreement teacher).
AGREEMENT_IOU = 0.5


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


def classical_targets(image: np.ndarray, cfg: ClassicalConfig = ClassicalConfig(), *,
                      border_width: int = DEFAULT_BORDER_WIDTH, touching_only: bool = False) -> np.ndarray:
    """``uint8 [H, W]``: the classical reference's instances of ``image`` as background / cell / border
    targets, made as CT1's masks are (``data.border_width``, ``data.border``)."""
    return labels_to_classes(classical_instances(image, cfg), border_width, touching_only=touching_only)


def instance_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """How far two instance label images found the same nuclei: TP / (TP + FP + FN) with a match at IoU >
    :data:`AGREEMENT_IOU` (the DSB2018 precision at its lowest threshold; symmetric in ``a`` and ``b``;
    1 when both are empty, 0 when one is)."""
    return image_score(a, b, thresholds=(AGREEMENT_IOU,))


def agreeing_ids(agreement: Mapping[str, float], threshold: float) -> list[str]:
    """The ids whose agreement reaches ``threshold`` (the agreement teacher's images), sorted."""
    return sorted(i for i, a in agreement.items() if a >= threshold)


class TeacherSettings(NamedTuple):
    """What :func:`teach` needs besides the network (:meth:`from_config`)."""

    teacher: str = "network"  # train.pseudo_label_teacher
    confidence: float = 0.9  # network teacher: train.pseudo_label_confidence
    agreement: float = 0.3  # agreement teacher: train.pseudo_label_agreement
    classical: ClassicalConfig = ClassicalConfig()
    watershed: WatershedConfig = WatershedConfig()  # the network's instances (postprocess)
    border_width: int = DEFAULT_BORDER_WIDTH
    touching_only: bool = False
    tile_size: int = 1024

    @classmethod
    def from_config(cls, cfg) -> TeacherSettings:
        """From an :class:`~dng_jax.config.ExperimentConfig`."""
        t = cfg.train
        return cls(t.pseudo_label_teacher, t.pseudo_label_confidence, t.pseudo_label_agreement, cfg.classical,
                   cfg.postprocess, cfg.data.border_width, cfg.data.border == "touching", cfg.eval.tile_size)


class PseudoLabels(NamedTuple):
    targets: dict[str, np.ndarray]  # id -> uint8 target map, of the images the teacher keeps
    agreement: dict[str, float]  # agreement teacher: id -> agreement of every image it looked at; else empty


def teach(settings: TeacherSettings, variables, model, images: Mapping[str, np.ndarray], *,
          progress: bool = False) -> PseudoLabels:
    """The targets of ``settings.teacher`` for ``images`` (id -> image); see the module docstring."""
    if settings.teacher == "network":
        return PseudoLabels(pseudo_label(variables, model, images, confidence=settings.confidence,
                                         tile_size=settings.tile_size, progress=progress), {})
    if settings.teacher not in ("classical", "agreement"):
        raise ValueError(f"teacher {settings.teacher!r}: 'network', 'classical' or 'agreement'")
    instances, agreement = {}, {}
    for sid, image in tqdm(images.items(), desc=f"{settings.teacher} teacher", disable=not progress, leave=False):
        instances[sid] = classical_instances(image, settings.classical)
        if settings.teacher == "agreement":
            probs = predict_probs(variables, model, image, tile_size=settings.tile_size, tta=True)
            agreement[sid] = instance_agreement(instances[sid], probs_to_instances(probs, settings.watershed))
    keep = agreeing_ids(agreement, settings.agreement) if settings.teacher == "agreement" else sorted(instances)
    return PseudoLabels({sid: labels_to_classes(instances[sid], settings.border_width,
                                                touching_only=settings.touching_only) for sid in keep}, agreement)


def save_pseudo_labels(path: str | os.PathLike, targets: Mapping[str, np.ndarray]) -> None:
    atomic_save_npz(path, dict(targets))


def save_agreement(path: str | os.PathLike, agreement: Mapping[str, float]) -> None:
    """The agreement teacher's per-image agreement as JSON (id -> agreement, sorted)."""
    atomic_write_text(path, json.dumps(dict(sorted(agreement.items())), indent=1) + "\n")


def load_pseudo_labels(path: str | os.PathLike, images: Mapping[str, np.ndarray]) -> list[Sample]:
    """The pseudo-labeled samples: each image of ``images`` with its saved target map as labels."""
    with np.load(path) as f:
        return [Sample(sid, images[sid], f[sid]) for sid in sorted(f.files) if sid in images]


def confident_share(samples: Sequence[Sample]) -> float:
    """The share of pixels with a target (not :data:`IGNORE`): how much the teacher was sure of."""
    total = sum(s.labels.size for s in samples)
    return float(sum(int((s.labels != IGNORE).sum()) for s in samples) / max(total, 1))
