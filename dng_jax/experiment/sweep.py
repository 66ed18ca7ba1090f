"""The paper's whole experiment as one resumable batch job: :func:`run_sweep`, a driver over the stages
of :mod:`dng_jax.experiment.stages`, in this order:

1. ``baseline/``       the segmentation U-Net trained on CT1 (or ``sweep.checkpoint``), scored
   (``baseline_runs/``, ``baseline_views/`` with ``sweep.baseline_runs``, ``eval.baseline_views``);
   ``classical/``      the reference without learning, on the same images.
2. ``cluster_data/``   the augmented clustering images, their pooled latent and its PCA.
3. ``runs/<m>_k<k>/``  per configuration: every seed clustered, the encoder retrained on the
                       pseudo-labels, each run scored (and the seeds' ensemble with ``sweep.ensemble``).
4. ``results.csv``, ``table1.md``, ``differences.csv``, Figs. 2, 5-8: made from the work dir alone
   (:func:`~dng_jax.experiment.report.rebuild_report`, as ``python -m dng_jax.report`` makes them).

Each stage is saved atomically, its done-marker written last; a rerun of the same command skips what
is finished and recomputes what is damaged (:mod:`dng_jax.experiment.resume`); where each file lies is
:mod:`dng_jax.experiment.layout`'s. One configuration that fails is reported in ``failures.json`` and
does not stop the others; stage timings go to ``timings.csv`` / ``.jsonl``. The work dir is locked
while a sweep runs in it, and it holds one configuration only. ``sweep.only`` splits a sweep into jobs
that may run at once on one work dir (:mod:`dng_jax.experiment.shards`).

Several processes (:mod:`dng_jax.distributed`) all run this driver: the runs of a chunk are split over
every process's devices (each scores its own), process 0 computes the stages of one network (baseline
and classical scores, clustering data, ensemble, report) and writes every file.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from dng_jax import distributed
from dng_jax.config import ExperimentConfig, check_sweep, experiment_config
from dng_jax.errors import ConfigError, WorkerError
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.experiment import layout, shards
from dng_jax.experiment.adaptation import needs_ct1_batches
from dng_jax.experiment.layout import RunResult
from dng_jax.experiment.resume import check_workdir_config
from dng_jax.experiment.stages.baseline import (baseline_run_context, check_checkpoints, stage_baseline,
                                                stage_baseline_runs, stage_baseline_views)
from dng_jax.experiment.stages.classical import stage_classical
from dng_jax.experiment.stages.cluster_data import ClusterData, stage_cluster_data
from dng_jax.experiment.stages.configuration import Configuration, stage_configuration, sweep_configurations
from dng_jax.experiment.stages.context import StageContext, stage_timer
from dng_jax.experiment.stages.data import check_data, ct1_training_batches, open_scoring, prepare_data
from dng_jax.experiment.stages.report import stage_report
from dng_jax.io.workdir import check_output_dir, prepare_dir

__all__ = ["SweepResult", "Configuration", "sweep_configurations", "run_sweep", "log"]

#: The sweep's progress lines; the command line shows them (``[sweep HH:MM:SS] ...``).
log = logging.getLogger("dng_jax.sweep")

#: Errors of the disk, not of a configuration: they stop the sweep (one line, exit 2) instead of failing
#: every configuration in turn.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})


class SweepResult(NamedTuple):
    rows: list[RunResult]  # this run's configurations' runs
    baseline: dict[str, float]  # map_known / map_unknown / map_all
    paths: list[Path]  # the report's files (none for a job of a split sweep)
    failures: dict[str, str]  # configuration -> why it failed
    train_images: int = -1  # the CT1 images the baseline learned from (its split's training set)


def run_sweep(config, workdir, progress: bool = True) -> SweepResult:
    """Run (or resume) the sweep of ``config`` (ConfigDict or :class:`ExperimentConfig`) in ``workdir``.

    Every value is checked before any work starts (:class:`~dng_jax.errors.ConfigError`); the work dir
    is locked for the duration (:class:`~dng_jax.errors.WorkdirBusyError` if another run holds it). With
    ``sweep.only`` the run is one job of a split sweep: its configurations only, no report
    (:mod:`~dng_jax.experiment.shards`)."""
    cfg = config if isinstance(config, ExperimentConfig) else experiment_config(config)
    check_sweep(cfg)
    job = shards.select(cfg.sweep.only, [c.dirname for c in sweep_configurations(cfg)])
    if not job.whole and distributed.is_multiprocess():
        raise ConfigError("config field sweep.only: a split sweep's jobs run one process each (give each job its own "
                          "devices); several processes (--num_processes) run the whole sweep together")
    cfg = shards.experiment_part(cfg)  # every job of the sweep makes the same stages, whichever it is
    # check, then write: the work dir's path, the data, its known type and splits, the checkpoints and the
    # work dir's own configuration, before the work dir is made or written (a failed start leaves it as it was)
    check_output_dir(workdir, "--workdir")
    opened = check_data(cfg, Path(workdir), progress)
    check_checkpoints(cfg)
    check_workdir_config(Path(workdir), cfg, record=False)
    workdir = prepare_dir(workdir)
    with shards.job_lock(workdir, job), shards.shared_stages_lock(workdir, job) as shared:
        check_workdir_config(workdir, cfg)
        for path in shards.clean_stale_files(workdir, job):
            log.info(f"removed {path}, left by an interrupted run")
        if cfg.sweep.checkpoint:
            log.info(f"baseline: the network of sweep.checkpoint {cfg.sweep.checkpoint} (not trained here)")
        return _run(cfg, workdir, progress, job, shared, opened)


def _run(cfg: ExperimentConfig, workdir: Path, progress: bool, job: shards.Job, shared, opened) -> SweepResult:
    t_start, logdir = time.time(), shards.job_dir(workdir, job)
    with stage_timer(logdir) as timed_stage:
        evaluator = SegmentationEvaluator.from_config(cfg)
        data = prepare_data(cfg, workdir, progress, opened)
        with open_scoring(evaluator, data) as scoring:
            ctx = StageContext(cfg, workdir, data, scoring, progress)
            with _shared_stage(shared, timed_stage, "baseline"):
                variables, model, baseline = stage_baseline(ctx)
            ctx = ctx.with_baseline(variables, model)
            if cfg.sweep.baseline_runs > 1:
                with _shared_stage(shared, timed_stage, "baseline_runs"):
                    stage_baseline_runs(ctx)
            if cfg.eval.baseline_views:
                with _shared_stage(shared, timed_stage, "baseline_views"):
                    stage_baseline_views(ctx)
            with _shared_stage(shared, timed_stage, "classical"):
                stage_classical(ctx)
            with _shared_stage(shared, timed_stage, "cluster_data"):
                cluster_data = stage_cluster_data(ctx)
            nested = [_nested_baseline(ctx, i, shared, timed_stage) for i in range(1, cfg.sweep.baseline_runs)]
            shared.release()  # the shared stages are done: the other jobs load them now
            confs = [c for c in sweep_configurations(cfg) if c.dirname in job.names]
            rows, failures = _run_configurations(ctx, confs, cluster_data, job, timed_stage)
            for i, (sub, cdata) in enumerate(nested, start=1):  # the same configurations on every other baseline
                log.info(f"baseline run {i}: {len(confs)} configurations on top of it")
                more, failed = _run_configurations(sub, confs, cdata, job, timed_stage, f"run{i}/")
                rows += [r._replace(baseline=i) for r in more]
                failures.update(failed)
            _write_failures(logdir, failures)
            paths = []
            if job.whole:  # a split job's runs are merged by python -m dng_jax.report
                with timed_stage("report"):
                    paths = distributed.on_writer(stage_report, ctx) or []
    log.info(f"done in {time.time() - t_start:.0f}s; {len(rows)} runs, {len(failures)} failed configurations"
             + ("" if job.whole else f" (sweep.only={job.only}: {len(confs)} configurations)"))
    n_train = len(data.splits.train_ct1[: cfg.train.max_train_images or None])
    return SweepResult(rows, {c: baseline[c] for c in ("map_known", "map_unknown", "map_all")}, paths, failures,
                       n_train)


@contextmanager
def _shared_stage(shared, timed_stage, name: str) -> Iterator[None]:
    """A stage every job of a split sweep shares: the jobs waiting for it are told which, and it is timed."""
    shared.note(stage=name)
    with timed_stage(name):
        yield


def _run_configurations(ctx: StageContext, confs: list[Configuration], cluster_data: ClusterData, job: shards.Job,
                        timed_stage, where: str = "") -> tuple[list[RunResult], dict[str, str]]:
    """Every configuration of this job that no other job holds; one that fails is recorded, not fatal
    (unless the disk or a scoring worker failed: the others would fail too)."""
    rows: list[RunResult] = []
    failures: dict[str, str] = {}
    ct1 = ct1_training_batches(ctx.cfg, ctx.data, ctx.progress) if needs_ct1_batches(ctx.cfg) and confs else None
    for i, conf in enumerate(confs):
        claim = shards.claim(ctx.workdir, conf.dirname, job)  # None: another job runs it
        if claim is None:
            continue
        log.info(f"configuration {i + 1}/{len(confs)}: {conf.method}({conf.k})")
        with timed_stage("configuration", where + conf.dirname):
            try:
                rows += stage_configuration(ctx, conf, cluster_data, ct1)
            except KeyboardInterrupt:
                raise
            except BrokenExecutor as e:  # a scoring worker died (killed, out of memory): the rest would fail too
                raise WorkerError(f"a scoring worker process died during {conf.method}({conf.k}) ({e}); rerun the "
                                  f"same command to resume, with fewer workers (--config.eval.workers) if memory "
                                  f"is short") from None
            except OSError as e:
                if e.errno in FATAL_ERRNOS:  # the disk, not the configuration: the others would fail too
                    raise
                failures[where + conf.dirname] = f"{type(e).__name__}: {e}"
                log.error(f"configuration {conf.method}({conf.k}) FAILED: {type(e).__name__}: {e}")
            except Exception as e:  # one failing configuration must not lose the others
                failures[where + conf.dirname] = f"{type(e).__name__}: {e}"
                log.error(f"configuration {conf.method}({conf.k}) FAILED: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
            finally:
                claim.release()
    return rows, failures


def _nested_baseline(ctx: StageContext, i: int, shared, timed_stage) -> tuple[StageContext, ClusterData]:
    """Baseline training ``i``'s context and clustering data (``baseline_runs/run<i>/``), a shared stage: the
    nested design makes every configuration on every baseline, each run paired with its own."""
    sub = baseline_run_context(ctx, i)
    with _shared_stage(shared, timed_stage, f"cluster_data run{i}"):
        return sub, stage_cluster_data(sub)


def _write_failures(logdir: Path, failures: dict[str, str]) -> None:
    try:
        layout.write_json(logdir / layout.FAILURES, failures)
    except OSError as e:
        log.error(f"{logdir / layout.FAILURES} could not be written ({e.strerror}); failed: "
                  f"{', '.join(failures) or 'none'}")
