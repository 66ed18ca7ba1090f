"""Host-side batches of random crops for training (paper II-C: 256x256 crops, smaller images zero padded).

Deterministic given (seed, epoch): the shuffle and every crop offset come from a NumPy generator seeded
with both, so an interrupted run that restarts at epoch e, step s sees exactly the batches it would have
seen. Augmentation is *not* done here; it runs on device inside the jitted train step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import numpy as np

from dng_jax.data.dsb2018 import Sample
from dng_jax.data.targets import labels_to_classes

__all__ = ["pad_to", "random_crop", "CropBatches", "MixedBatches", "segmentation_batches", "prefetch"]


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-pad the first two axes (bottom/right) up to at least height x width."""
    ph, pw = max(height - array.shape[0], 0), max(width - array.shape[1], 0)
    if ph == 0 and pw == 0:
        return array
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad)


def random_crop(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The same random ``size`` x ``size`` window of image and labels; small images are zero padded first."""
    if image.shape[:2] != labels.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape[:2]} differ in size")
    image, labels = pad_to(image, size, size), pad_to(labels, size, size)
    y = int(rng.integers(0, image.shape[0] - size + 1))
    x = int(rng.integers(0, image.shape[1] - size + 1))
    return image[y : y + size, x : x + size], labels[y : y + size, x : x + size]


class CropBatches:
    """Epochs of shuffled batches ``(images uint8 [B,S,S,3], targets [B,S,S])`` from in-memory samples.

    ``transform`` maps a cropped label image to the training target (e.g. the 3-class map of
    :func:`dng_jax.data.targets.labels_to_classes`); it runs after cropping so borders are computed on the
    crop, as a network sees it. The last incomplete batch of an epoch is dropped.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        crop_size: int = 256,
        seed: int = 0,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(samples) < batch_size:
            raise ValueError(f"{len(samples)} samples cannot fill one batch of {batch_size}")
        self.samples = list(samples)
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.transform = transform

    @property
    def steps_per_epoch(self) -> int:
        return len(self.samples) // self.batch_size

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of ``epoch`` from ``start_step`` on (for resuming mid-epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.samples))
        # One generator per batch, derived from (seed, epoch, step): skipping steps changes nothing.
        for step in range(start_step, self.steps_per_epoch):
            batch_rng = np.random.default_rng([self.seed, epoch, step])
            images, targets = [], []
            for i in order[step * self.batch_size : (step + 1) * self.batch_size]:
                s = self.samples[i]
                im, lab = random_crop(batch_rng, s.image, s.labels, self.crop_size)
                images.append(im)
                targets.append(self.transform(lab) if self.transform is not None else lab)
            yield np.stack(images), np.stack(targets)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch(0)


class MixedBatches:
    """Every step a batch of ``labeled`` crops beside one of ``other`` crops (pseudo-labeled images), with
    their sample weights: ``(images [B+B'], targets [B+B'], weights [B+B'])``, weight 1 for the labeled
    crops and ``other_weight`` for the others. An epoch is the labeled set's; the other set's batches run
    through its own epochs, however many it has (deterministic from both seeds, as :class:`CropBatches`)."""

    def __init__(self, labeled: CropBatches, other: CropBatches, other_weight: float):
        self.labeled, self.other, self.other_weight = labeled, other, float(other_weight)

    @property
    def steps_per_epoch(self) -> int:
        return self.labeled.steps_per_epoch

    def _other(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.other.steps_per_epoch
        k = epoch * self.steps_per_epoch + step  # the k-th step of the whole training, in the other set's epochs
        other_epoch, other_step = divmod(k, n)
        return next(self.other.epoch(other_epoch, start_step=other_step))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for step, (images, targets) in enumerate(self.labeled.epoch(epoch, start_step), start=start_step):
            oi, ot = self._other(epoch, step)
            weights = np.concatenate([np.ones(len(images), np.float32), np.full(len(oi), self.other_weight, np.float32)])
            yield (np.concatenate([images, oi]), np.concatenate([targets.astype(np.uint8), ot.astype(np.uint8)]),
                   weights)

    def __iter__(self):
        return self.epoch(0)


def segmentation_batches(samples: Sequence[Sample], batch_size: int, crop_size: int, border_width: int,
                         seed: int, touching_only: bool = False) -> CropBatches:
    """Crop batches with the paper's 3-class targets (background / cell / border, Fig. 1); with
    ``touching_only`` the border class marks only where nuclei touch (``data.border = "touching"``)."""
    return CropBatches(samples, batch_size, crop_size=crop_size, seed=seed,
                       transform=partial(labels_to_classes, border_width=border_width, touching_only=touching_only))


def prefetch(iterator: Iterable, size: int = 2) -> Iterator:
    """Run a host iterator in a background thread, ``size`` items ahead. Closing the generator early
    (``break`` in the consumer) stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    sentinel = object()
    err: list[BaseException] = []

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            err.append(e)
        put(sentinel)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is sentinel:
                if err:
                    raise err[0]
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
