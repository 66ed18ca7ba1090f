"""A trained network scored on the test (or validation) images of the config stored with it.

The split is the one of the checkpoint's own config (``data.protocol``), so the images are those its
training held out; the result is a ``baseline.json``-style file (MAP known / unknown / all, per type, per
image) that ``python -m dng_jax.evaluate networks`` and ``seeds`` read
(``python -m dng_jax.evaluate checkpoint``).
"""

from __future__ import annotations

import dataclasses
import os

from dng_jax.data.partition import open_data
from dng_jax.evaluation.evaluator import SegmentationEvaluator, SegmentationScores
from dng_jax.segmentation.checkpointing import load_variables

__all__ = ["CHECKPOINT_SPLITS", "score_checkpoint"]

#: ``test``: the protocol's test images; ``val``: CT1's and the other types' validation images; ``choosing``:
#: CT1's validation images and the half of the other types' not in the self-training teacher pool
#: (:attr:`~dng_jax.data.partition.Splits.choosing`).
CHECKPOINT_SPLITS = ("test", "val", "choosing")


def score_checkpoint(checkpoint: str | os.PathLike, *, split: str = "test", tta: bool | None = None,
                     adabn: bool = False, data: str | None = None, progress: bool = True) -> SegmentationScores:
    """Score ``checkpoint`` (a training work dir, a checkpoint folder or ``bundled:<name>``) on ``split``;
    ``tta`` None follows the config's ``eval.tta``; ``adabn`` normalises the encoder with each image's own
    statistics (``retrain.batch_norm=adabn``); ``data`` replaces the config's ``data.path``."""
    if split not in CHECKPOINT_SPLITS:
        raise ValueError(f"split {split!r}: one of {CHECKPOINT_SPLITS}")
    variables, model, config = load_variables(checkpoint)
    data_cfg = config.data if data is None else dataclasses.replace(config.data, path=data)
    source, _, splits = open_data(data_cfg, progress=False)
    images = {"test": splits.test, "val": splits.val, "choosing": splits.choosing}[split]
    evaluator = SegmentationEvaluator.from_config(config)
    if tta is not None:
        evaluator = evaluator._replace(tta=tta)
    evaluator = evaluator._replace(adabn=adabn)
    return evaluator(variables, model, source, images, progress=progress, known_type=splits.known_type)
