"""One sweep split across independent jobs on a shared work dir (``sweep.only``; docs/scaling.md).

Which configurations a job runs (:func:`select`): ``""`` all of them (the whole sweep, as before), names
as in ``runs/`` (``"ng_k500,kmc_k1000"``), a shard ``"i/N"`` (configuration ``j`` of
:func:`~dng_jax.experiment.sweep.sweep_configurations` where ``j % N == i``) or ``"shared"`` (only the
stages every configuration needs: baseline, classical reference, clustering data).

What lets several jobs work in one work dir at once (``flock``; the kernel releases a lock when its
process dies, so a killed job leaves none behind):

- ``<W>/.lock``: the whole sweep holds it exclusively, as before (a second sweep, or a shard, stops at
  once naming it); a job of a split sweep holds it shared, beside the other jobs.
- ``<W>/.locks/shared_stages.lock``: held while a job checks the work dir's configuration and computes
  or loads the shared stages; the others wait for it (``waiting for baseline, held by pid ...``), then
  load what it finished (the stages are resumable: a finished one is loaded, not computed again).
- ``<W>/.locks/<m>_k<k>.lock``: held while a job runs that configuration; a job that finds it held skips
  the configuration: no two jobs run or write the same one.

A split job writes only its configurations' ``runs/`` folders and its own ``shards/<tag>/`` folder
(``timings.csv`` / ``.jsonl``, ``failures.json``); ``results.csv``, ``table1.md``, the figures and
``failures.json`` are the whole sweep's, or made from every job's runs by ``python -m dng_jax.report``.
A whole sweep takes none of the finer locks: its exclusive ``.lock`` covers everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from dng_jax.config import ExperimentConfig
from dng_jax.errors import ConfigError
from dng_jax.experiment import layout
from dng_jax.io.workdir import LockFile, WorkdirLock, describe_holder, remove_stale_temp_files

__all__ = ["SHARED", "Job", "select", "experiment_part", "job_lock", "shared_stages_lock", "claim",
           "clean_stale_files", "job_dir", "recorded_failures", "unfinished"]

#: ``sweep.only`` value of a job that makes the shared stages only (the first step of a split sweep).
SHARED = "shared"

log = logging.getLogger("dng_jax.sweep")  # the sweep's progress lines


class Job(NamedTuple):
    """The part of a sweep one job runs: ``only`` as given (``""``: the whole sweep) and the names of its
    configurations (``runs/`` folders) in the sweep's order."""

    only: str
    names: tuple[str, ...]

    @property
    def whole(self) -> bool:
        return not self.only

    @property
    def tag(self) -> str:
        """The job's folder under ``shards/``: ``2of11``, ``shared``, ``ng_k500+kmc_k1000`` (long lists: a hash)."""
        if self.whole:
            return ""
        if re.fullmatch(r"\d+/\d+", self.only):
            return self.only.replace("/", "of")
        if self.only == SHARED:
            return SHARED
        tag = "+".join(self.names)
        return tag if len(tag) <= 64 else "names_" + hashlib.sha256(tag.encode()).hexdigest()[:12]


def select(only: str, names: Sequence[str]) -> Job:
    """The job of ``sweep.only`` among the sweep's configuration ``names`` (in order); a value that names
    no configuration or no shard is a one-line :class:`ConfigError` listing the valid ones."""
    only = only.strip()
    valid = (f"give configurations of this sweep ({', '.join(names)}), comma-separated, a shard i/N "
             f"(0 <= i < N) or {SHARED!r}")
    if not only:
        return Job("", tuple(names))
    if only == SHARED:
        return Job(SHARED, ())
    shard = re.fullmatch(r"(-?\d+)\s*/\s*(-?\d+)", only)
    if shard:
        i, n = int(shard[1]), int(shard[2])
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"config field sweep.only: no shard {only!r} (shards count from 0: i/N needs "
                              f"0 <= i < N); {valid}")
        return Job(f"{i}/{n}", tuple(name for j, name in enumerate(names) if j % n == i))
    asked = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in asked if s not in names]
    if unknown or not asked:
        raise ConfigError(f"config field sweep.only: {', '.join(map(repr, unknown)) or repr(only)} "
                          f"{'is' if len(unknown) == 1 else 'are'} not a configuration of this sweep; {valid}")
    return Job(only, tuple(n for n in names if n in asked))


def experiment_part(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` without its job fields (:data:`~dng_jax.config.JOB_FIELDS`): what every job of one sweep shares, so the
    stages, their markers and ``sweep_config.json`` are the same whichever job makes them."""
    return dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, only=""))


def _locks(workdir: Path) -> Path:
    path = Path(workdir) / ".locks"
    path.mkdir(exist_ok=True)
    return path


def job_lock(workdir: Path, job: Job) -> WorkdirLock:
    """The work dir's lock: exclusive for the whole sweep, shared by the jobs of a split one."""
    return WorkdirLock(workdir, "--workdir", shared=not job.whole)


class _NoLock:
    """What a whole sweep holds instead of the finer locks (its exclusive ``.lock`` covers them)."""

    def note(self, **info) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def shared_stages_lock(workdir: Path, job: Job) -> LockFile | _NoLock:
    """Wait for the shared stages' lock (a split job; logs who holds it) and return it, held;
    :meth:`~dng_jax.io.workdir.LockFile.note` tells waiting jobs which stage is being made."""
    if job.whole:
        return _NoLock()
    lock = LockFile(_locks(workdir) / "shared_stages.lock")

    def waiting(holder: dict) -> None:
        log.info(f"waiting for {holder.get('stage', 'the shared stages')}, held by "
                 f"{describe_holder(holder) or 'another job'} (sweep.only={holder.get('job', '?')})")

    lock.acquire(wait=True, on_wait=waiting, stage="the work dir's configuration", job=job.only)
    return lock


def claim(workdir: Path, name: str, job: Job) -> LockFile | _NoLock | None:
    """Lock configuration ``name`` for this job (and remove the temporary files a killed job left in its
    folder); None, logged, when another job holds it: that job runs it, this one skips it."""
    if job.whole:
        return _NoLock()
    lock = LockFile(_locks(workdir) / f"{name}.lock")
    if not lock.acquire(job=job.only):
        holder = lock.holder()
        log.info(f"{name}: skipped, another job runs it ({describe_holder(holder) or 'holder unknown'}, "
                 f"sweep.only={holder.get('job', '?')})")
        return None
    for path in remove_stale_temp_files(layout.run_dir(workdir, name)):
        log.info(f"removed {path}, left by an interrupted run")
    return lock


#: The folders of the stages every configuration needs (made under the shared stages' lock).
SHARED_STAGES = (layout.BASELINE, layout.BASELINE_RUNS, layout.BASELINE_VIEWS, layout.CLASSICAL, layout.CLUSTER_DATA)


def clean_stale_files(workdir: Path, job: Job) -> list[Path]:
    """Remove the temporary files killed runs left where this job may write now: everywhere for the whole
    sweep; for a split job (holding the shared stages' lock) in the shared stages' folders and its own
    ``shards/<tag>/`` (each configuration's folder is cleaned by :func:`claim`). Not at the top: the
    report, which runs beside split jobs, may be writing there."""
    if job.whole:
        return remove_stale_temp_files(workdir)
    folders = [layout.stage_dir(workdir, name) for name in SHARED_STAGES] + [job_dir(workdir, job)]
    # the configurations on the other baselines (baseline_runs/run<i>/runs/) are cleaned by their jobs' claims
    nested_runs = list(layout.stage_dir(workdir, layout.BASELINE_RUNS).glob(f"*/{layout.RUNS}"))
    return [path for folder in folders for path in remove_stale_temp_files(folder, nested_runs)]


def job_dir(workdir: Path, job: Job) -> Path:
    """Where a job's own logs go (``timings.*``, ``failures.json``): the work dir for the whole sweep,
    ``shards/<tag>/`` for a split job (the jobs would otherwise write the same files)."""
    if job.whole:
        return Path(workdir)
    path = Path(workdir) / "shards" / job.tag
    path.mkdir(parents=True, exist_ok=True)
    return path


def recorded_failures(workdir: Path) -> dict[str, str]:
    """Configuration -> why it failed, from the whole sweep's ``failures.json`` and every split job's
    (``shards/*/failures.json``), the job named; unreadable files are passed over."""
    out: dict[str, str] = {}
    wd = Path(workdir)
    for path in [wd / layout.FAILURES, *sorted(wd.glob(f"shards/*/{layout.FAILURES}"))]:
        try:
            failures = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        job = "the whole sweep" if path.parent == wd else f"job {path.parent.name}"
        if isinstance(failures, dict):
            out.update({str(k): f"failed in {job}: {v}" for k, v in failures.items()})
    return out


def unfinished(workdir: Path, expected: Sequence[str], finished: Sequence[str]) -> dict[str, str]:
    """The ``expected`` configurations that are not ``finished``, each with what is known of it: the job
    and error it failed with, else that it has no results yet. (Whether a job runs it now is not probed:
    taking its lock, even for an instant, could make a job starting at that moment skip it.)"""
    failures = recorded_failures(workdir)
    return {name: failures.get(name, "no results yet (not run, or still running)")
            for name in expected if name not in finished}
