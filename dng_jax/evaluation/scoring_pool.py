"""The watershed and the metric of many images at once, on every CPU core.

The network's forward pass runs in the main process (one XLA program at a time); turning its softmax into
instances (:func:`~dng_jax.segmentation.postprocess.probs_to_instances`) and scoring them
(:func:`~dng_jax.evaluation.metrics.image_score`) is NumPy / scikit-image work that a pool of worker
processes does meanwhile. Every worker gets the ground truth of the test images once, when it starts;
a task is ``(image id, softmax)``. Results are exactly the serial path's (the same functions on the same
arrays). Workers are started with "spawn" (no fork of a multithreaded JAX process). This module imports
no JAX itself, but spawn imports the parent's ``__main__`` module again in each worker, so under
``python -m dng_jax.sweep`` a worker does import JAX once when it starts (a few seconds): the sweep
makes one pool for all its scoring stages; the training driver makes one per validation pass.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from dng_jax.evaluation.metrics import image_score
from dng_jax.segmentation.postprocess import WatershedConfig, probs_to_instances

__all__ = ["score_probs", "ScoringPool", "default_workers"]

_GT: dict[str, np.ndarray] = {}
_POST = WatershedConfig()


def score_probs(labels: np.ndarray, probs: np.ndarray, post: WatershedConfig) -> tuple[float, int, int]:
    """``(score, objects in the ground truth, objects predicted)`` of one softmax."""
    pred = probs_to_instances(probs, post)
    return (float(image_score(labels, pred)), int(len(np.unique(labels)) - (labels == 0).any()),
            int(len(np.unique(pred)) - (pred == 0).any()))


def _init(gt: Mapping[str, np.ndarray], post: WatershedConfig) -> None:
    global _POST
    _GT.update(gt)
    _POST = post


def _task(sid: str, probs: np.ndarray) -> tuple[float, int, int]:
    return score_probs(_GT[sid], probs, _POST)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class ScoringPool:
    """``submit(id, probs) -> Future[(score, n_true, n_pred)]``; ``workers=0``: score in the calling
    process (no pool), the serial path."""

    def __init__(self, gt: Mapping[str, np.ndarray], post: WatershedConfig, workers: int = 0):
        self.gt, self.post = dict(gt), post
        self.workers = workers
        self._pool = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init, initargs=(self.gt, post))

    def submit(self, sid: str, probs: np.ndarray) -> Future:
        if self._pool is not None:
            return self._pool.submit(_task, sid, probs)
        f: Future = Future()
        f.set_result(score_probs(self.gt[sid], probs, self.post))
        return f

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
