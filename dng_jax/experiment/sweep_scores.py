"""The per-image scores and result rows of one sweep's work dir, or of several combined: what the report's
statistics are computed from (:class:`~dng_jax.experiment.comparisons.SweepScores`).

A sweep's runs sit on baseline 0 (``runs/``) and, with ``sweep.baseline_runs = B > 1``, on each other
baseline training b (``baseline_runs/run<b>/runs/``): every run is paired with the baseline it was made
from. Work dirs of separate sweeps, one per trained baseline (``sweep.checkpoint``), combine into the same
nested design (:func:`stack_sweeps`; ``python -m dng_jax.report --combine``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dng_jax.clustering.methods import METHODS
from dng_jax.errors import InputError
from dng_jax.evaluation.scores import ScoreTable, read_scores
from dng_jax.experiment import layout
from dng_jax.experiment.comparisons import ENSEMBLE, SweepScores
from dng_jax.experiment.layout import RunResult

__all__ = ["METHOD_ORDER", "method_rank", "configuration_order", "baseline_roots", "sweep_rows", "read_sweep_scores",
           "stack_sweeps"]

METHOD_ORDER = tuple(METHODS)  # built-ins first, in the method table's order; other methods by name


def method_rank(method: str) -> tuple[int, str]:
    """Table I's order of methods (an ensemble after its method)."""
    base, ens = method.removesuffix(ENSEMBLE), method.endswith(ENSEMBLE)
    return (METHOD_ORDER.index(base), "+" * ens) if base in METHOD_ORDER else (len(METHOD_ORDER), method)


def configuration_order(key: tuple[str, int]):
    """Table I's order of configurations: by k (GNG last), then by method."""
    method, k = key
    return (k if method.removesuffix(ENSEMBLE) != "gng" else math.inf, method_rank(method))


def baseline_roots(workdir) -> list[tuple[int, Path]]:
    """``(b, folder)`` of every baseline that has runs: the work dir itself for baseline 0, and
    ``baseline_runs/run<b>`` for each other training whose configurations were run on it."""
    wd = Path(workdir)
    out = [(0, wd)]
    b = 1
    while layout.baseline_run_dir(wd, b).is_dir():
        root = layout.baseline_run_dir(wd, b)
        if (root / layout.RUNS).is_dir():
            out.append((b, root))
        b += 1
    return out


def sweep_rows(workdir) -> list[RunResult]:
    """Every finished configuration's runs, on every baseline (``RunResult.baseline`` says which)."""
    return [r._replace(baseline=b) for b, root in baseline_roots(workdir)
            for rows in layout.finished_configurations(root).values() for r in rows]


def _run_scores(workdir) -> tuple[dict[tuple[str, int], ScoreTable], dict[tuple[str, int], tuple[int, ...]]]:
    """(method, k) -> its runs' scores on every baseline (an ensemble, ``method + ENSEMBLE``: one row per
    baseline), and each row's baseline; in Table I's order."""
    parts: dict[tuple[str, int], list[tuple[int, ScoreTable]]] = {}
    for b, root in baseline_roots(workdir):
        for name, rows in layout.finished_configurations(root).items():
            rdir = layout.run_dir(root, name)
            if not rows or not (rdir / layout.SCORES).exists():
                continue
            key = (rows[0].method, rows[0].k)
            parts.setdefault(key, []).append((b, read_scores(rdir / layout.SCORES)))
            if (rdir / layout.ENSEMBLE_SCORES).exists():  # sweep.ensemble: the runs' mean softmax
                parts.setdefault((key[0] + ENSEMBLE, key[1]), []).append((b, read_scores(rdir / layout.ENSEMBLE_SCORES)))
    runs, owners = {}, {}
    for key in sorted(parts, key=configuration_order):
        runs[key], owners[key] = _stacked(parts[key])
    return runs, owners


def _stacked(parts: Sequence[tuple[int, ScoreTable]]) -> tuple[ScoreTable, tuple[int, ...]]:
    """The tables of several baselines as one (on the first one's images), and each row's baseline."""
    first = parts[0][1]
    if len(parts) == 1 and parts[0][0] == 0:
        return first, (0,) * len(first.runs)
    tables = [(b, t.select(first.ids)) for b, t in parts]
    names = tuple(f"b{b}/{r}" for b, t in tables for r in t.runs)
    scores = np.concatenate([t.scores for _, t in tables])
    return ScoreTable(names, first.ids, first.types, scores), tuple(b for b, t in tables for _ in t.runs)


def _baseline_scores(wd: Path) -> tuple[ScoreTable, dict[str, ScoreTable]]:
    """The baseline's trainings (one row each: ``baseline/`` then ``baseline_runs/``) and its views
    (``eval.baseline_views``: "baseline + tta", ..., one row each)."""
    baseline = read_scores(layout.stage_dir(wd, layout.BASELINE) / layout.SCORES)
    more_path = layout.stage_dir(wd, layout.BASELINE_RUNS) / layout.SCORES
    if more_path.exists():  # sweep.baseline_runs: the baseline's other trainings
        more = read_scores(more_path).select(baseline.ids)
        baseline = ScoreTable(baseline.runs + more.runs, baseline.ids, baseline.types,
                              np.concatenate([baseline.scores, more.scores]))
    references = {}
    views_path = layout.stage_dir(wd, layout.BASELINE_VIEWS) / layout.SCORES
    if views_path.exists():  # eval.baseline_views
        views = read_scores(views_path)
        references = {f"baseline + {v}": ScoreTable((v,), views.ids, views.types, views.scores[i:i + 1])
                      for i, v in enumerate(views.runs)}
    return baseline, references


def read_sweep_scores(workdir) -> SweepScores | None:
    """The per-image scores of a sweep's work dir (None when it has none: made before they were kept), on
    the images of its ``test_set.json`` (:func:`~dng_jax.experiment.layout.read_test_set`)."""
    wd = Path(workdir)
    if not (wd / layout.TEST_SET).exists() or not (layout.stage_dir(wd, layout.BASELINE) / layout.SCORES).exists():
        return None
    images = layout.read_test_set(wd)
    baseline, references = _baseline_scores(wd)
    classical = layout.stage_dir(wd, layout.CLASSICAL) / layout.SCORES
    runs, owners = _run_scores(wd)
    return SweepScores(baseline=baseline, classical=read_scores(classical) if classical.exists() else None,
                       runs=runs, test=images.test, every_unknown=images.every_unknown, val=images.val,
                       known_type=images.known_type, references=references,
                       run_baselines={k: v for k, v in owners.items() if any(v)})


def stack_sweeps(sweeps: Sequence[SweepScores], names: Sequence[str]) -> SweepScores:
    """Sweeps made on different trainings of one baseline recipe (each with one baseline), on the same
    images, as one nested design: baseline b is sweep b's, each run paired with its own; the classical
    reference and the baseline's views are the first sweep's. Raises :class:`~dng_jax.errors.InputError`
    when the sweeps were not scored on the same test images or one has several baselines itself."""
    first = sweeps[0]
    for s, name in zip(sweeps, names):
        if s.test != first.test or s.known_type != first.known_type:
            raise InputError(f"{name} was scored on other test images than {names[0]}: only sweeps of one data "
                             f"split combine")
        if len(s.baseline.runs) != 1:
            raise InputError(f"{name} has {len(s.baseline.runs)} baseline trainings; combine sweeps of one "
                             f"baseline each")
    ids = first.baseline.ids
    baseline = ScoreTable(tuple(names), ids, first.baseline.types,
                          np.concatenate([s.baseline.select(ids).scores for s in sweeps]))
    keys = sorted({k for s in sweeps for k in s.runs}, key=configuration_order)
    runs, owners = {}, {}
    for key in keys:
        runs[key], owners[key] = _stacked([(b, s.runs[key]) for b, s in enumerate(sweeps) if key in s.runs])
    return first._replace(baseline=baseline, runs=runs, run_baselines=owners)
