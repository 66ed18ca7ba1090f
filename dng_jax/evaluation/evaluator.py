"""The segmentation evaluator: Kaggle MAP of a network on the test images, by cell type.

Built from the config (big_vision's evaluator idea): :meth:`SegmentationEvaluator.from_config` takes the
watershed thresholds (``postprocess``) and the tiling (``eval``); calling it with a network's variables
scores every test image and returns :class:`SegmentationScores`, whose :meth:`~SegmentationScores.named_values`
gives ``("map_known", v), ("map_unknown", v), ("map_all", v), ("map/<cell type>", v)``. Training, the
sweep and the scripts score networks through this one object (the sweep's figure panels only draw a
few predictions); :func:`score_predictions` scores any other segmenter (the classical reference).

*known* = the CT1 (fluorescence) test images, *unknown* = those of every other type (paper: CT2-7).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol

import numpy as np
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import Sample
from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.metrics import image_score
from dng_jax.evaluation.scoring_pool import ScoringPool, default_workers
from dng_jax.io.atomic import atomic_write_text
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.postprocess import WatershedConfig

__all__ = ["SampleLoader", "SegmentationScores", "SegmentationEvaluator", "score_predictions", "format_table"]


class SampleLoader(Protocol):
    def load(self, sid: str) -> Sample: ...


def _mean(xs) -> float:
    xs = list(xs)
    return float(np.mean(xs)) if xs else float("nan")


class SegmentationScores(NamedTuple):
    """MAP of the known / unknown / all test images, per cell type, and every image's score."""

    known: float
    unknown: float
    all: float
    n_known: int
    n_unknown: int
    per_type: dict[str, float]
    per_image: dict[str, dict[str, Any]]  # id -> {type, known, score, n_true, n_pred}

    def named_values(self) -> Iterator[tuple[str, float]]:
        yield "map_known", self.known
        yield "map_unknown", self.unknown
        yield "map_all", self.all
        for t, v in self.per_type.items():
            yield f"map/{t}", v

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "unknown": self.unknown, "all": self.all, "n_known": self.n_known,
                "n_unknown": self.n_unknown, "per_type": self.per_type, "per_image": self.per_image}

    def write_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n")


def _ordered(test: Mapping[str, Sequence[str]], known_type: str) -> list[tuple[str, str]]:
    """(type, id) of the test images: the known type first, then the others by type name."""
    out = [(t, i) for t in test for i in test[t] if t == known_type]
    return out + [(t, i) for t in sorted(test) for i in test[t] if t != known_type]


def _summarize(per_image: dict[str, dict[str, Any]]) -> SegmentationScores:
    rows = per_image.values()
    return SegmentationScores(
        known=_mean(r["score"] for r in rows if r["known"]),
        unknown=_mean(r["score"] for r in rows if not r["known"]),
        all=_mean(r["score"] for r in rows),
        n_known=sum(r["known"] for r in rows),
        n_unknown=sum(not r["known"] for r in rows),
        per_type={t: _mean(r["score"] for r in rows if r["type"] == t) for t in sorted({r["type"] for r in rows})},
        per_image=per_image,
    )


def score_predictions(predict: Callable[[np.ndarray], np.ndarray], samples: SampleLoader,
                      test: Mapping[str, Sequence[str]], *, known_type: str = KNOWN_TYPE,
                      progress: bool = False) -> SegmentationScores:
    """Score ``predict(image) -> labels`` on the test images ``test`` (cell type -> ids), serially."""
    per_image: dict[str, dict[str, Any]] = {}
    for t, sid in tqdm(_ordered(test, known_type), desc="evaluate", disable=not progress, leave=False):
        sample = samples.load(sid)
        pred = predict(sample.image)
        per_image[sid] = {"type": t, "known": t == known_type,
                          "score": float(image_score(sample.labels, pred)),
                          "n_true": int(len(np.unique(sample.labels)) - (sample.labels == 0).any()),
                          "n_pred": int(len(np.unique(pred)) - (pred == 0).any())}
    return _summarize(per_image)


class SegmentationEvaluator(NamedTuple):
    """Evaluates a network's variables on the test images (``postprocess`` and ``eval`` sections).

    The forward passes run here, one image after the other; the watershed and the metric run in a
    :class:`~dng_jax.evaluation.scoring_pool.ScoringPool` of ``workers`` processes meanwhile (0: in this
    process). Scores are the same either way. For many networks on the same images, open one pool
    (:meth:`pool`) and pass it to every call."""

    postprocess: WatershedConfig = WatershedConfig()
    tile_size: int = 1024
    workers: int = 0
    tta: bool = False  # mean softmax over the 8 flips / 90-degree rotations (eval.tta)
    adabn: bool = False  # encoder BatchNorm with each image's own statistics (retrain.batch_norm="adabn")

    @classmethod
    def from_config(cls, cfg) -> SegmentationEvaluator:
        """From an :class:`~dng_jax.config.ExperimentConfig` (its ``postprocess`` and ``eval`` sections)."""
        return cls(postprocess=cfg.postprocess, tile_size=cfg.eval.tile_size,
                   workers=cfg.eval.workers or default_workers(), tta=cfg.eval.tta)

    def probs(self, variables, model, image: np.ndarray) -> np.ndarray:
        """The softmax of one image as this evaluator predicts it (tiles, TTA, AdaBN)."""
        return predict_probs(variables, model, image, tile_size=self.tile_size, tta=self.tta, adabn=self.adabn)

    def pool(self, samples: SampleLoader, ids: Sequence[str]) -> ScoringPool:
        """A pool that holds the ground truth of ``ids`` (use as a context manager)."""
        return ScoringPool({i: samples.load(i).labels for i in ids}, self.postprocess, self.workers)

    def __call__(self, variables, model, samples: SampleLoader, test: Mapping[str, Sequence[str]], *,
                 progress: bool = False, pool: ScoringPool | None = None,
                 known_type: str = KNOWN_TYPE) -> SegmentationScores:
        return self._score(lambda image: self.probs(variables, model, image), samples, test, progress=progress,
                           pool=pool, known_type=known_type)

    def ensemble(self, members: Sequence[Any], model, samples: SampleLoader, test: Mapping[str, Sequence[str]], *,
                 progress: bool = False, pool: ScoringPool | None = None,
                 known_type: str = KNOWN_TYPE) -> SegmentationScores:
        """Scores of the mean softmax of several networks' ``members`` (variables of one ``model``): the
        watershed runs once, on the average (``sweep.ensemble``)."""
        if not members:
            raise ValueError("an ensemble needs at least one member")

        def probs(image):
            return np.mean([self.probs(v, model, image) for v in members], axis=0, dtype=np.float32)

        return self._score(probs, samples, test, progress=progress, pool=pool, known_type=known_type)

    def _score(self, probs_of: Callable[[np.ndarray], np.ndarray], samples: SampleLoader,
               test: Mapping[str, Sequence[str]], *, progress: bool, pool: ScoringPool | None,
               known_type: str) -> SegmentationScores:
        images = _ordered(test, known_type)
        own = pool is None
        if own:
            pool = self.pool(samples, [i for _, i in images])
        try:
            futures: dict[str, Future] = {}
            in_flight: list[Future] = []
            for _, sid in tqdm(images, desc="evaluate", disable=not progress, leave=False):
                futures[sid] = pool.submit(sid, probs_of(samples.load(sid).image))
                in_flight.append(futures[sid])
                while len(in_flight) > 2 * max(pool.workers, 1):  # bound the softmaxes waiting in memory
                    in_flight.pop(0).result()
            per_image = {}
            for t, sid in images:
                score, n_true, n_pred = futures[sid].result()
                per_image[sid] = {"type": t, "known": t == known_type, "score": score, "n_true": n_true,
                                  "n_pred": n_pred}
        finally:
            if own:
                pool.close()
        return _summarize(per_image)


def format_table(scores: SegmentationScores) -> str:
    rows = [("known (CT1)", scores.known, scores.n_known), ("unknown (other types)", scores.unknown, scores.n_unknown),
            ("all", scores.all, scores.n_known + scores.n_unknown)]
    rows += [(f"  {t}", v, "") for t, v in scores.per_type.items()]
    lines = [f"{'test set':<24}{'MAP':>8}{'images':>8}", "-" * 40]
    lines += [f"{name:<24}{value:>8.4f}{str(n):>8}" if n != 0 else f"{name:<24}{'-':>8}{0:>8}  (no test image: "
              f"nothing to score)" for name, value, n in rows]
    return "\n".join(lines)
