"""Orbax checkpoints of a :class:`~dng_jax.segmentation.train_state.TrainState` plus JSON metadata.

A checkpoint ``<dir>/<step>/`` holds two items: ``state`` (the train state pytree: step, params,
batch_stats, optimizer state) and ``meta`` (JSON: global step, epoch, step in epoch, the augmentation
key's raw data and the full config), so that

- a run resumes where it stopped with the same data order and the same keys (the data position follows
  from the step, the keys from ``fold_in(key, step)``), and
- :func:`load_variables` can rebuild the model from the checkpoint alone (prediction).

Writes are atomic (orbax writes to a temporary directory and renames it on completion); saving is
asynchronous, :meth:`Checkpointer.wait` blocks until it is done. Missing or unreadable checkpoints raise
:class:`CheckpointError` naming the path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from dng_jax.config import ExperimentConfig, experiment_config
from dng_jax.errors import CheckpointError, ConfigError
from dng_jax.io.stage import read_done
from dng_jax.models import make_model
from dng_jax.segmentation.bundled import DEFAULT_MODEL, WEIGHTS_DIR, bundled_info, load_bundled
from dng_jax.segmentation.train_state import create_train_state, make_optimizer

__all__ = ["Checkpointer", "resolve_checkpoint", "checkpoint_config", "load_checkpoint", "load_variables"]

def _with_sharding(abstract_tree, sharding):
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def f(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        return x

    return jax.tree_util.tree_map(f, abstract_tree)


@contextlib.contextmanager
def _quiet_absl(enabled: bool = True):
    if not enabled:
        yield
        return
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_error(path: Path, e: BaseException) -> BaseException:
    """A failed checkpoint write as one line naming the path; an OS error (disk full, read-only) keeps its
    errno, also when orbax / TensorStore report it inside another exception's text (``os_error_code``)."""
    cause = e
    while cause.__cause__ is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    code = cause.errno if isinstance(cause, OSError) else None
    if code is None:
        m = re.search(r"os_error_code='?(\d+)", str(e))
        code = int(m.group(1)) if m else None
    if code is not None:
        return OSError(code, f"{os.strerror(code)} (writing a checkpoint; free space and rerun: it resumes from the last complete checkpoint)",
                       str(path))
    return CheckpointError(f"{path}: writing the checkpoint failed ({type(e).__name__}: {e})")


class Checkpointer:
    """Thin wrapper around ``orbax.checkpoint.CheckpointManager`` for (state, meta) checkpoints."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 3, *, read_only: bool = False):
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint directory at {self.directory}")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                               read_only=read_only, save_interval_steps=0 if read_only else 1,
                                               cleanup_tmp_directories=not read_only,
                                               # synchronous: a failed write (disk full) is one exception here,
                                               # not pages of errors from orbax's background threads
                                               enable_async_checkpointing=False)
        try:
            with _quiet_absl(read_only):  # orbax warns that a read-only manager is read-only
                self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        except Exception as e:  # noqa: BLE001 - re-raised with the path
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    # -- queries
    def all_steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def step_path(self, step: int) -> Path:
        return self.directory / str(step)

    # -- writing
    def save(self, step: int, state, meta: dict | None = None, force: bool = False) -> bool:
        if step in self.manager.all_steps():
            return False  # already saved (e.g. final save right after a periodic one)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
        try:
            return self.manager.save(int(step), args=args, force=force)
        except Exception as e:  # noqa: BLE001 - a full or read-only disk surfaces here (or in wait)
            raise _write_error(self.step_path(step), e) from e

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise _write_error(self.directory, e) from e

    def close(self) -> None:
        self.manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading
    def restore_meta(self, step: int | None = None) -> dict:
        step = self._check_step(step)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"corrupt or unreadable checkpoint metadata in {self.step_path(step)}: {e}") from e
        return dict(out["meta"] or {})

    def restore(self, abstract_state, step: int | None = None, sharding=None) -> tuple[Any, dict]:
        """Restore ``(state, meta)``; ``abstract_state`` gives the structure (e.g. ``jax.eval_shape`` of
        the init function), ``sharding`` where the arrays go (default: the first local device)."""
        step = self._check_step(step)
        target = _with_sharding(abstract_state, sharding)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"corrupt or incompatible checkpoint {self.step_path(step)}: "
                                  f"{type(e).__name__}: {e}") from e
        return out["state"], dict(out["meta"] or {})

    def restore_or_init(self, init_fn: Callable[[], Any], sharding=None) -> tuple[Any, dict | None]:
        """The latest checkpoint if there is one (``meta`` dict), else ``init_fn()`` (``meta`` None)."""
        step = self.latest_step()
        if step is None:
            return init_fn(), None
        return self.restore(jax.eval_shape(init_fn), step, sharding=sharding)

    def _check_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory}")
            return steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} (have {steps})")
        return int(step)


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, int | None]:
    """``(manager directory, step or None=latest)`` for a run workdir, a checkpoints directory, one
    step's directory ``.../checkpoints/<step>`` or a sweep's work dir (its ``baseline/``, the one network
    the sweep keeps)."""
    p = Path(path).absolute()
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint path {p} is not a directory")
    if (p / "checkpoints").is_dir():
        return p / "checkpoints", None
    if (p / "baseline" / "checkpoints").is_dir():  # a sweep's work dir
        return p / "baseline" / "checkpoints", None
    if (p / "baseline").is_dir():  # a sweep that loaded its baseline from sweep.checkpoint keeps no copy
        source = (read_done(p / "baseline") or {}).get("checkpoint")
        raise CheckpointError(f"{p} is a sweep work dir without checkpoints in {p / 'baseline'}"
                              + (f"; its baseline was loaded from sweep.checkpoint {source}: give that as --checkpoint"
                                 if source else " (its baseline did not finish training)"))
    if p.name.isdigit() and ((p / "state").exists() or (p / "_CHECKPOINT_METADATA").exists()):
        return p.parent, int(p.name)
    return p, None


def checkpoint_config(path: str | os.PathLike) -> ExperimentConfig:
    """The training config stored with a checkpoint (any path :func:`load_variables` takes), read without
    its arrays: what a command checks before it writes anything (:class:`CheckpointError` naming the path)."""
    if str(path).startswith(BUNDLED_PREFIX) or str(path).endswith(".npz"):
        name, directory = ((str(path)[len(BUNDLED_PREFIX):] or DEFAULT_MODEL, WEIGHTS_DIR)
                           if str(path).startswith(BUNDLED_PREFIX) else (Path(path).stem, Path(path).parent))
        try:
            return experiment_config(bundled_info(name, directory)["config"])
        except (ConfigError, KeyError) as e:
            raise CheckpointError(f"{Path(directory) / name}.json: its config is not valid ({e})") from None
    directory, step = resolve_checkpoint(path)
    ckpt = Checkpointer(directory, max_to_keep=None, read_only=True)
    try:
        return _stored_config(ckpt.restore_meta(step), directory)
    finally:
        ckpt.close()


def _stored_config(meta: dict, directory: Path) -> ExperimentConfig:
    if "config" not in meta:
        raise CheckpointError(f"checkpoint in {directory} has no stored config")
    try:
        return experiment_config(meta["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint in {directory}: its stored config is not valid ({e})") from None


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, dict, ExperimentConfig]:
    """``(state, meta, config)`` from a checkpoint path (see :func:`resolve_checkpoint`); the model and
    optimizer are rebuilt from the config stored in the checkpoint (typed: :class:`ExperimentConfig`)."""
    directory, step = resolve_checkpoint(path)
    ckpt = Checkpointer(directory, max_to_keep=None, read_only=True)
    try:
        config = _stored_config(ckpt.restore_meta(step), directory)
        model = make_model(config.model)
        tx = make_optimizer(config.train, trainable=config.train.trainable)
        crop = config.data.crop_size
        abstract = jax.eval_shape(lambda: create_train_state(jax.random.key(0), model, config.train,
                                                             (1, crop, crop, 3), tx=tx))
        state, meta = ckpt.restore(abstract, step)
    finally:
        ckpt.close()
    return state, meta, config


#: ``load_variables("bundled:cpu_real")`` loads a model shipped in the package instead of a checkpoint.
BUNDLED_PREFIX = "bundled:"


def load_variables(path: str | os.PathLike):
    """``(variables {'params', 'batch_stats'}, model, config)`` for inference, from a checkpoint path or
    ``bundled:<name>`` (a model shipped in the package, parameters rounded to float16: e.g. to cluster and
    retrain on top of the shipped model, ``sweep.checkpoint="bundled:cpu_real"``), or such exported weights
    anywhere (``NAME.npz`` beside its ``NAME.json``, as scripts/tools/export_bundled_model.py writes them)."""
    if str(path).startswith(BUNDLED_PREFIX):
        return load_bundled(str(path)[len(BUNDLED_PREFIX):] or DEFAULT_MODEL)
    if str(path).endswith(".npz"):
        return load_bundled(Path(path).stem, Path(path).parent)
    state, _, config = load_checkpoint(path)
    return {"params": state.params, "batch_stats": state.batch_stats}, make_model(config.model), config
