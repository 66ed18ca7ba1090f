"""The images every stage shares: the data opened once, the test set recorded, the scoring set up.

:func:`prepare_data` opens the data and its splits and writes ``test_set.json`` (which scored images
are the protocol's test and validation sets: what the report reads the scores on); :func:`open_scoring`
holds the scored images in memory with the pool of workers that score them (:class:`Scoring`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from dng_jax.config import ExperimentConfig
from dng_jax.data.dsb2018 import SampleCache, load_samples
from dng_jax.data.partition import MANIFEST_CACHE, Splits, cache_manifest, open_data, type_order
from dng_jax.data.pipeline import CropBatches, segmentation_batches
from dng_jax.errors import ConfigError
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.evaluation.scores import ScoreTable, scored_images, view_maps
from dng_jax.evaluation.scoring_pool import ScoringPool
from dng_jax.experiment import layout

__all__ = ["OpenedData", "PreparedData", "check_data", "Scoring", "prepare_data", "open_scoring", "ct1_training_batches"]


class OpenedData(NamedTuple):
    """What :func:`~dng_jax.data.partition.open_data` returns."""

    source: Any
    manifest: dict[str, str]
    splits: Splits


class PreparedData(NamedTuple):
    """The opened data (``source``), each image's cell type (``manifest``), the splits, and the images to
    score (``scored``: cell type -> ids: the test and the validation images, in the scoring order)."""

    source: Any
    manifest: dict[str, str]
    splits: Splits
    scored: dict[str, list[str]]

    @property
    def scored_ids(self) -> list[str]:
        return [i for t in type_order(self.scored, self.splits.known_type) for i in self.scored[t]]


def check_data(cfg: ExperimentConfig, workdir: Path, progress: bool) -> OpenedData:
    """The data opened and its splits made, writing nothing (a manifest the work dir caches is read): what a
    sweep checks before it makes its work dir."""
    return OpenedData(*open_data(cfg.data, workdir if workdir.is_dir() else None, progress, write_cache=False))


def prepare_data(cfg: ExperimentConfig, workdir: Path, progress: bool, opened: OpenedData | None = None
                 ) -> PreparedData:
    """Open the data (or take :func:`check_data`'s), cache its manifest in the work dir and record the test
    set (``test_set.json``)."""
    source, manifest, splits = opened or open_data(cfg.data, workdir, progress)
    cache_manifest(source, manifest, workdir / MANIFEST_CACHE)
    every_unknown = cfg.eval.wide_unknown and splits.protocol == "paper"
    scored = scored_images(splits, manifest, every_unknown)
    wide = [i for t in sorted(scored) if t != splits.known_type for i in scored[t] if i not in splits.val_all]
    layout.write_test_set(workdir, splits.test, wide if every_unknown else None, val=splits.val,
                          known_type=splits.known_type)
    return PreparedData(source, manifest, splits, scored)


class Scoring(NamedTuple):
    """What every scoring stage shares: the evaluator, its worker pool, the test images in memory, the
    images to score (``scored``: cell type -> ids: the test and the validation images) and the protocol's
    test set (``test``, a subset: what the MAPs of results.csv are of)."""

    evaluator: SegmentationEvaluator
    pool: ScoringPool
    cache: SampleCache
    scored: dict[str, list[str]]
    test: dict[str, list[str]]
    types: dict[str, str]  # image id -> cell type, in the order the images are scored
    known_type: str

    def maps(self, per_image: dict[str, float]) -> dict[str, float]:
        """``map_known`` / ``map_unknown`` / ``map_all`` of the test images."""
        return view_maps(per_image, self.test, self.known_type)

    def table(self, runs, per_image) -> ScoreTable:
        """A score table with the images in the scoring order, however the per-image dicts were stored."""
        return ScoreTable.from_per_image(runs, per_image, self.types, ids=list(self.types))

    def panel_ids(self, n: int) -> list[str]:
        """The Fig. 5 images: the first test image of each cell type, ``n`` at most."""
        return [self.test[t][0] for t in type_order(self.test, self.known_type, rule_order=True) if self.test[t]][:n]


@contextmanager
def open_scoring(evaluator: SegmentationEvaluator, data: PreparedData) -> Iterator[Scoring]:
    """The scored images loaded once, and the pool that scores them (closed on exit)."""
    ids = data.scored_ids
    cache = SampleCache(data.source, ids)
    with evaluator.pool(cache, ids) as pool:
        yield Scoring(evaluator, pool, cache, data.scored, data.splits.test, {i: data.manifest[i] for i in ids},
                      data.splits.known_type)


def ct1_training_batches(cfg: ExperimentConfig, data: PreparedData, progress: bool) -> CropBatches:
    """The CT1 training crops of the segmentation training (its batch, crop, targets and seed): what the
    joint objective and the decoder tuning learn from."""
    ids = list(data.splits.train_ct1)[: cfg.train.max_train_images or None]
    samples = load_samples(data.source, ids, "load CT1 train", progress)
    if len(samples) < cfg.train.batch_size:
        raise ConfigError(f"config field train.batch_size: {len(samples)} CT1 training images cannot fill one "
                          f"batch of {cfg.train.batch_size}")
    return segmentation_batches(samples, cfg.train.batch_size, cfg.data.crop_size, cfg.data.border_width,
                                cfg.train.seed, touching_only=cfg.data.border == "touching")
