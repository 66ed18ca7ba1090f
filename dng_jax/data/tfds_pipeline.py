"""Training batches of random crops read straight from a TFDS data source (no TensorFlow).

:class:`TfdsCropBatches` has the interface of :class:`dng_jax.data.pipeline.CropBatches` (``steps_per_epoch``,
``epoch(e, start_step=0)``) but reads examples on demand from a random-access source such as
``builder.as_data_source("train")`` (see :mod:`dng_jax.data.tfds_builder`), so the whole set never has to sit
in memory. The random numbers are drawn exactly as in ``CropBatches`` -- the shuffle from
``default_rng([seed, epoch])`` and each batch's crops from ``default_rng([seed, epoch, step])`` with
:func:`dng_jax.data.pipeline.random_crop` -- so both give the same batches for the same samples in the same
order, and a batch depends only on (seed, epoch, step), whichever thread builds it.

Batches are built by a small thread pool a few steps ahead (reading records, zlib decoding, cropping and
``transform`` all release the GIL for much of their time); they come out in step order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from dng_jax.data.pipeline import random_crop
from dng_jax.data.tfds_builder import load_data_source

__all__ = ["RandomAccessSource", "TfdsCropBatches", "from_data_dir"]


class RandomAccessSource(Protocol):
    """``len(src)`` and ``src[i]`` -> mapping with ``"image"`` (uint8 HxWx3) and ``"labels"`` (HxW)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


class TfdsCropBatches:
    """Epochs of shuffled batches ``(images uint8 [B,S,S,3], targets [B,S,S])`` from a data source.

    ``transform`` maps a cropped label image to the training target (any callable labels -> array, e.g.
    :func:`dng_jax.data.targets.labels_to_classes`); without it the targets are the uint16 instance labels of
    the crop. Images smaller than the crop are zero padded (bottom/right). The last incomplete batch of
    an epoch is dropped. ``workers`` threads build up to ``prefetch`` batches ahead (``workers=0``: build
    each batch in the consuming thread).
    """

    def __init__(
        self,
        source: RandomAccessSource | Sequence[Any],
        batch_size: int,
        crop_size: int = 256,
        seed: int = 0,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        workers: int = 2,
        prefetch: int | None = None,
        image_key: str = "image",
        labels_key: str = "labels",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        n = len(source)
        if n < batch_size:
            raise ValueError(f"{n} examples cannot fill one batch of {batch_size}")
        self.source = source
        self.num_examples = n
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.transform = transform
        self.workers = workers
        self.prefetch = max(1, prefetch if prefetch is not None else 2 * max(workers, 1))
        self.image_key = image_key
        self.labels_key = labels_key

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch`` (same draw as ``CropBatches``)."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def _read(self, indices: list[int]) -> list[Any]:
        getitems = getattr(self.source, "__getitems__", None)
        if getitems is not None:
            return list(getitems(indices))
        return [self.source[i] for i in indices]

    def batch(self, epoch: int, step: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``step`` of ``epoch`` (a pure function of seed, epoch and step)."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        if order is None:
            order = self.order(epoch)
        indices = [int(i) for i in order[step * self.batch_size : (step + 1) * self.batch_size]]
        rng = np.random.default_rng([self.seed, epoch, step])
        images, targets = [], []
        for ex in self._read(indices):
            image = np.asarray(ex[self.image_key])
            labels = np.asarray(ex[self.labels_key])
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
            im, lab = random_crop(rng, image, labels, self.crop_size)
            images.append(im)
            targets.append(self.transform(lab) if self.transform is not None else lab)
        return np.stack(images), np.stack(targets)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of ``epoch`` from ``start_step`` on (for resuming mid-epoch)."""
        order = self.order(epoch)
        steps = range(start_step, self.steps_per_epoch)
        if self.workers == 0:
            for step in steps:
                yield self.batch(epoch, step, order)
            return
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tfds-crops")
        pending: deque[Future] = deque()
        it = iter(steps)
        try:
            for step in it:
                pending.append(pool.submit(self.batch, epoch, step, order))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(it, -1)
                if nxt >= 0:
                    pending.append(pool.submit(self.batch, epoch, nxt, order))
                yield result
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch(0)


def from_data_dir(
    data_dir: str | os.PathLike,
    split: str,
    batch_size: int,
    crop_size: int = 256,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    workers: int = 2,
    split_seed: int = 0,
    n_test_per_type: int = 2,
) -> TfdsCropBatches:
    """Crop batches over a split of a dataset prepared by :func:`dng_jax.data.tfds_builder.prepare_dsb2018`.

    ``seed`` drives shuffling and crops; ``split_seed`` / ``n_test_per_type`` select the builder config.
    """
    ds = load_data_source(data_dir, split, seed=split_seed, n_test_per_type=n_test_per_type)
    return TfdsCropBatches(ds, batch_size, crop_size=crop_size, seed=seed, transform=transform,
                           workers=workers)
