"""What every stage of a sweep is given (:class:`StageContext`), and the stages' timings.

A stage is a function of the context (and of what earlier stages returned) that reads and writes its
own folder of the work dir (:mod:`dng_jax.experiment.layout`) and returns a value; the driver
(:mod:`dng_jax.experiment.sweep`) calls them in order inside :func:`stage_timer`'s ``timed_stage``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import jax

from dng_jax.config import ExperimentConfig
from dng_jax.experiment import layout
from dng_jax.experiment.stages.data import PreparedData, Scoring
from dng_jax.io import stage
from dng_jax.metric_writers import create_default_writer, keep_all

__all__ = ["StageContext", "stage_timer", "TIMING_FIELDS"]

TIMING_FIELDS = ("step", "stage", "configuration", "seconds", "wall_time")


class StageContext(NamedTuple):
    """The sweep's configuration, work dir, data, scoring and progress bars; after the baseline stage, the
    baseline network too (:meth:`with_baseline`): what the later stages start from."""

    cfg: ExperimentConfig
    workdir: Path
    data: PreparedData
    scoring: Scoring
    progress: bool
    variables: Any = None  # the baseline U-Net's variables
    model: Any = None
    baseline_id: str = ""  # names the baseline network in later stages' markers (stage.array_digest)

    def with_baseline(self, variables, model) -> StageContext:
        return self._replace(variables=variables, model=model,
                             baseline_id=stage.array_digest(jax.tree.leaves(variables)))


@contextmanager
def stage_timer(logdir: Path) -> Iterator[Callable[..., AbstractContextManager[None]]]:
    """``timed_stage(name, configuration="")``: a context manager that adds a row to ``logdir/timings.csv``
    (and ``.jsonl``) when its stage finishes; ``step`` numbers the events across reruns."""
    writer = create_default_writer(logdir, layout.TIMINGS, TIMING_FIELDS, keep=keep_all, tensorboard=False)
    with open(logdir / f"{layout.TIMINGS}.csv") as f:  # step: the event's number in the work dir, across reruns
        event = itertools.count(sum(1 for _ in f) - 1)

    @contextmanager
    def timed_stage(name: str, configuration: str = "") -> Iterator[None]:
        t0 = time.time()
        yield
        writer.write_scalars(next(event), {"stage": name, "configuration": configuration,
                                           "seconds": time.time() - t0, "wall_time": time.time()})

    try:
        yield timed_stage
    finally:
        writer.close()
