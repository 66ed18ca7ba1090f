"""Work dirs and output folders: created with one-line errors, locked against a second process.

``prepare_dir`` makes a folder (and its parents) or says in one line why it cannot: the path is a file,
the disk is read-only or full, permission is denied. :class:`WorkdirLock` is an exclusive ``flock`` on
``<dir>/.lock``: two jobs started on one work dir at once would otherwise delete each other's
checkpoints and duplicate rows; the second one stops with :class:`~dng_jax.errors.WorkdirBusyError`
naming the process that holds it. The lock goes with the process (a killed job leaves no stale lock).
With several processes (:mod:`dng_jax.distributed`) process 0 holds the lock for all of them (the others
write nothing), and only it removes stale temporary files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from dng_jax.distributed import on_writer
from dng_jax.errors import WorkdirBusyError, WorkdirError
from dng_jax.io.atomic import TEMP_GLOB

__all__ = ["prepare_dir", "check_output_file", "WorkdirLock", "remove_stale_temp_files"]


def _reason(e: OSError) -> str:
    return {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
            errno.ENOTDIR: "a parent is a file, not a folder", errno.EEXIST: "exists and is not a folder",
            }.get(e.errno, e.strerror or type(e).__name__)


def prepare_dir(path: str | os.PathLike, what: str = "--workdir") -> Path:
    """Create the folder ``path`` if needed; :class:`WorkdirError` naming it when it cannot be used."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise WorkdirError(f"{what} {p}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"{what} {p}: cannot create it ({_reason(e)})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise WorkdirError(f"{what} {p}: not writable")
    return p


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """An output file's path, checked before any work: its folder exists, it is not a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise WorkdirError(f"{what} {p}: is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise WorkdirError(f"{what} {p}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WorkdirError(f"{what} {p}: the folder {parent} is not writable")
    return p


class WorkdirLock:
    """Exclusive lock of a work dir for one process (``with WorkdirLock(dir): ...``)."""

    def __init__(self, workdir: str | os.PathLike, what: str = "work dir"):
        self.path = Path(workdir) / ".lock"
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        on_writer(self._acquire)  # process 0 locks for every process of a multi-process run
        return self

    def _acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(f"{self.path.parent}: cannot create the lock file ({_reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                try:
                    h = json.loads(holder)
                    who = f" (pid {h['pid']} on {h['host']}, since {h['since']})"
                except (ValueError, KeyError, TypeError):
                    who = ""
                raise WorkdirBusyError(f"{self.path.parent} is in use by another run{who}; wait for it to "
                                       f"finish or use another {self.what}") from None
            raise WorkdirError(f"{self.path.parent}: cannot lock it ({_reason(e)})") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temp_files(workdir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (:data:`~dng_jax.io.atomic.TEMP_GLOB`) a killed run left behind
    (:mod:`dng_jax.io.atomic` writes through them). Call it holding the work dir's lock: then no other process is writing one."""
    return on_writer(_remove_stale_temp_files, workdir) or []


def _remove_stale_temp_files(workdir: str | os.PathLike) -> list[Path]:
    removed = []
    for p in Path(workdir).rglob(TEMP_GLOB):
        if p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
