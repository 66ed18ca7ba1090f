"""Per-image scores, kept: every run's score of every test image, so any comparison can be recomputed
later without predicting again.

A :class:`ScoreTable` holds the scores of ``R`` runs on the same ``N`` images (``scores[r, i]``), with
each image's cell type. On disk it is a long CSV, one row per (run, image)::

    run,image,cell_type,score
    baseline,0a7d30b2...,fluorescence,0.412500000

Groups of images (:func:`groups`) are the views a report shows: the known type (CT1), the unknown types,
all images, and every cell type on its own.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE, Splits
from dng_jax.errors import DataError
from dng_jax.io.atomic import atomic_write_text

__all__ = ["ScoreTable", "write_scores", "read_scores", "groups", "view_maps", "scored_images"]


class ScoreTable(NamedTuple):
    runs: tuple[str, ...]
    ids: tuple[str, ...]
    types: tuple[str, ...]
    scores: np.ndarray  # (R, N) float64

    @classmethod
    def from_per_image(cls, runs: Sequence[str], per_image: Sequence[Mapping[str, float]],
                       types: Mapping[str, str], ids: Sequence[str] | None = None) -> ScoreTable:
        """From one ``{image id: score}`` per run (the same images for every run), columns in the order of
        ``ids`` (default: the first run's)."""
        ids = tuple(ids) if ids is not None else (tuple(per_image[0]) if per_image else ())
        for p in per_image:
            if set(p) != set(ids):
                raise ValueError("every run must score the same images")
        return cls(tuple(str(r) for r in runs), ids, tuple(types[i] for i in ids),
                   np.asarray([[p[i] for i in ids] for p in per_image], np.float64).reshape(len(per_image), len(ids)))

    def select(self, ids: Sequence[str]) -> ScoreTable:
        """The columns of ``ids`` (in that order)."""
        pos = {i: j for j, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise KeyError(f"no scores for {len(missing)} image(s), e.g. {missing[0]}")
        cols = [pos[i] for i in ids]
        return ScoreTable(self.runs, tuple(ids), tuple(self.types[c] for c in cols), self.scores[:, cols])

    def per_image_mean(self) -> np.ndarray:
        """``(N,)``: each image's score averaged over the runs (seeds averaged per image first)."""
        return self.scores.mean(axis=0)


def write_scores(path: str | os.PathLike, table: ScoreTable) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "image", "cell_type", "score"])
    for r, run in enumerate(table.runs):
        for i, (sid, t) in enumerate(zip(table.ids, table.types)):
            w.writerow([run, sid, t, f"{table.scores[r, i]:.9f}"])
    atomic_write_text(path, buf.getvalue())


def read_scores(path: str | os.PathLike) -> ScoreTable:
    """A table written by :func:`write_scores` (runs and images in their first-seen order)."""
    runs: dict[str, dict[str, float]] = {}
    types: dict[str, str] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                runs.setdefault(row["run"], {})[row["image"]] = float(row["score"])
                types[row["image"]] = row["cell_type"]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable per-image score table ({type(e).__name__}: {e})") from None
    if not runs:
        raise DataError(f"{path}: no scores")
    try:
        return ScoreTable.from_per_image(list(runs), list(runs.values()), types)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def groups(ids: Sequence[str], types: Sequence[str], known_type: str = KNOWN_TYPE) -> dict[str, list[str]]:
    """The report's views of a test set: ``known``, ``unknown``, ``all`` and ``type:<cell type>``."""
    out = {"known": [i for i, t in zip(ids, types) if t == known_type],
           "unknown": [i for i, t in zip(ids, types) if t != known_type],
           "all": list(ids)}
    for t in sorted(set(types)):
        out[f"type:{t}"] = [i for i, tt in zip(ids, types) if tt == t]
    return out


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def view_maps(per_image: Mapping[str, float], test: Mapping[str, Sequence[str]],
              known_type: str = KNOWN_TYPE) -> dict[str, float]:
    """``map_known`` / ``map_unknown`` / ``map_all`` of the test images ``test`` (type -> ids), from
    per-image scores that may cover more images (the known type first, then the others by name)."""
    known = [per_image[i] for i in test.get(known_type, [])]
    unknown = [per_image[i] for t in sorted(test) if t != known_type for i in test[t]]
    return {"map_known": _mean(known), "map_unknown": _mean(unknown), "map_all": _mean(known + unknown)}


def scored_images(splits: Splits, manifest: Mapping[str, str], every_unknown: bool = False) -> dict[str, list[str]]:
    """The images to score, cell type -> ids: the test and the validation images and, with ``every_unknown``
    (paper protocol), every labeled image of the unknown types, so that the wide unknown view can be
    reported too."""
    out: dict[str, set[str]] = {}
    for part in (splits.test, splits.val):
        for t, ids in part.items():
            out.setdefault(t, set()).update(ids)
    if every_unknown:
        unlabeled = set(splits.unlabeled)
        for i in splits.cluster:
            if manifest[i] != splits.known_type and i not in unlabeled:
                out.setdefault(manifest[i], set()).add(i)
    return {t: sorted(ids) for t, ids in out.items()}
