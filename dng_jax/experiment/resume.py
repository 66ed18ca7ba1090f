"""What a rerun of a sweep may reuse: the state of a stage folder, and whether a work dir is this sweep's.

A stage is reused when its done-marker is there and every file it records is whole
(:mod:`dng_jax.io.stage`); a damaged file is named (logged) and the stage computed again. A stage made
before done-markers existed is adopted when its files load. A work dir holds one configuration: a rerun
with another one is refused before any work (:func:`check_workdir_config`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import NamedTuple

from dng_jax.clustering.methods import METHODS
from dng_jax.config import ExperimentConfig, comparable, experiment_config
from dng_jax.errors import ConfigError, ConfigMismatchError
from dng_jax.experiment import layout
from dng_jax.io import stage
from dng_jax.typed_config import as_dict

__all__ = ["StageStatus", "stage_status", "check_workdir_config", "method_files"]

log = logging.getLogger("dng_jax.sweep")


class StageStatus(NamedTuple):
    """``done``: the stage is finished and every file it recorded is whole (reuse it). ``problems``: what
    is wrong with a finished stage's files (one line each; empty when it is done, or was never finished)."""

    done: bool
    problems: tuple[str, ...] = ()


def stage_status(stage_dir: Path, legacy: tuple[str, ...] = (), **extra) -> StageStatus:
    """The state of a stage folder; its problems are logged, one line each.

    ``legacy``: the files a stage made before done-markers existed (the last one was its marker); a work
    dir of that version is adopted when every such file loads whole: its checksums are recorded now (with
    ``extra`` in the marker)."""
    if stage.read_done(stage_dir) is None:
        if legacy and all(stage.readable(stage_dir / f) for f in legacy):
            stage.write_done(stage_dir, legacy, **extra)
            log.info(f"{stage_dir}: recorded the checksums of a stage made before done-markers")
            return StageStatus(True)
        return StageStatus(False)
    problems = tuple(stage.check(stage_dir))
    for p in problems:
        log.warning(f"{p}: computing {stage_dir.name} again")
    return StageStatus(not problems, problems)


def check_workdir_config(workdir: Path, cfg: ExperimentConfig, *, record: bool = True) -> None:
    """Refuse to mix two configurations in one work dir (a rerun must be the same experiment); record the
    configuration (``sweep_config.json``, with the latest values of the fields that may change between
    reruns) and the method files' checksums (``method_files.json``). ``record=False``: the check alone,
    writing nothing (before the work dir is made)."""
    path = workdir / layout.SWEEP_CONFIG
    if not path.exists():
        if record:
            layout.write_json(path, as_dict(cfg))
            if method_files(cfg):
                layout.write_json(workdir / layout.METHOD_FILES, method_files(cfg))
        return
    try:
        raw = layout.read_json(path)
        saved = comparable(experiment_config(raw))
    except (ValueError, ConfigError) as e:
        raise ConfigMismatchError(f"{path} is not a readable sweep configuration ({e}); use a new --workdir") from None
    current = comparable(cfg)
    diffs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diffs:
        raise ConfigMismatchError(
            f"{workdir} holds a sweep made with another configuration (differs in: {', '.join(diffs)}); "
            f"rerun with the same config or use a new --workdir")
    if record and raw != layout.json_value(as_dict(cfg)):  # a volatile field changed
        layout.write_json(path, as_dict(cfg))  # the latest values (e.g. eval.n_boot, which `report` reuses)
    _check_method_files(workdir, cfg, record)


def _check_method_files(workdir: Path, cfg: ExperimentConfig, record: bool) -> None:
    """A file-loaded method's file must be the one the work dir's runs came from."""
    files_path = workdir / layout.METHOD_FILES
    files = method_files(cfg)
    try:
        saved_files = layout.read_json(files_path) if files_path.exists() else {}
    except (OSError, ValueError) as e:
        raise ConfigMismatchError(f"{files_path} cannot be read ({e}); it records which method files the runs "
                                  f"came from: restore it or use a new --workdir") from None
    changed = sorted(m for m in files if m in saved_files and saved_files[m] != files[m])
    if changed:
        raise ConfigMismatchError(
            f"{', '.join(m.rpartition(':')[0] for m in changed)} changed since {workdir} was started (its runs "
            f"used the earlier version); restore the file or use a new --workdir")
    if record and files and files != saved_files:
        layout.write_json(files_path, {**saved_files, **files})


def method_files(cfg: ExperimentConfig) -> dict[str, str]:
    """SHA-256 of every file a file-loaded method of ``sweep.methods`` comes from."""
    return {m: hashlib.sha256(Path(m.rpartition(":")[0]).read_bytes()).hexdigest()
            for m in cfg.sweep.methods if m not in METHODS}
