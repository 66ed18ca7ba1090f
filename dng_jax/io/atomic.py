"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

With several processes (:mod:`dng_jax.distributed`) only process 0 writes or removes; the others wait
for it (:func:`~dng_jax.distributed.on_writer`) and then see the file as it left it.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dng_jax.distributed import on_writer

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "atomic_save_npz",
           "remove", "remove_tree", "TEMP_PREFIX", "TEMP_SUFFIX", "TEMP_GLOB"]

#: A write goes through ``<dir>/.<name><random>.tmp``; ``TEMP_GLOB`` finds those a killed process left.
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"
TEMP_GLOB = f"{TEMP_PREFIX}*{TEMP_SUFFIX}"


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync, then rename it over ``path``."""
    on_writer(_atomic_write, Path(path), write)
    return Path(path)


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """A compressed ``.npz`` of named arrays."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def remove(path: str | os.PathLike, missing_ok: bool = True) -> None:
    """Delete a file (a stage's output that is stale or damaged)."""
    on_writer(Path(path).unlink, missing_ok=missing_ok)


def remove_tree(path: str | os.PathLike, ignore_errors: bool = False) -> None:
    """Delete a folder and everything in it."""
    on_writer(shutil.rmtree, path, ignore_errors=ignore_errors)
