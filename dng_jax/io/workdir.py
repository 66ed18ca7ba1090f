"""Work dirs and output folders: created with one-line errors, locked against a second process.

``prepare_dir`` makes a folder (and its parents) or says in one line why it cannot: the path is a file,
the disk is read-only or full, permission is denied. :class:`WorkdirLock` is an exclusive ``flock`` on
``<dir>/.lock``: two jobs started on one work dir at once would otherwise delete each other's
checkpoints and duplicate rows; the second one stops with :class:`~dng_jax.errors.WorkdirBusyError`
naming the process that holds it (``shared=True``: the jobs of a split sweep, which may run side by
side, :mod:`dng_jax.experiment.shards`). :class:`LockFile` is the ``flock`` underneath, with a record
of its holder. The lock goes with the process (a killed job leaves no stale lock).
With several processes (:mod:`dng_jax.distributed`) process 0 holds the work dir's lock for all of them
(the others write nothing), and only it removes stale temporary files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from dng_jax.distributed import on_writer
from dng_jax.errors import WorkdirBusyError, WorkdirError
from dng_jax.io.atomic import TEMP_GLOB

__all__ = ["prepare_dir", "check_output_dir", "check_output_file", "LockFile", "describe_holder", "WorkdirLock",
           "remove_stale_temp_files"]


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


def check_output_dir(path: str | os.PathLike, what: str = "--output") -> Path:
    """A folder a command will make (or fill), checked before any work and without creating it: it is a
    writable folder, or the nearest folder above it that exists is writable (:func:`prepare_dir` makes it
    when the first result is written)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise WorkdirError(f"{what} {p}: exists and is not a folder")
    above = p
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise WorkdirError(f"{what} {p}: cannot create it ({above} is a file, not a folder)")
    if not os.access(above, os.W_OK | os.X_OK):
        raise WorkdirError(f"{what} {p}: " + ("not writable" if above == p else f"cannot create it ({above} is "
                                                                                 f"not writable)"))
    return p


def check_output_file(path: str | os.PathLike, what: str, made: Sequence[str | os.PathLike] = ()) -> Path:
    """An output file's path, checked before any work: its folder exists (or is one of the folders ``made``
    by the command, checked by :func:`check_output_dir`), it is not a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise WorkdirError(f"{what} {p}: is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir() and parent.resolve() in {Path(m).resolve() for m in made}:
        return p
    if not parent.is_dir():
        raise WorkdirError(f"{what} {p}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WorkdirError(f"{what} {p}: the folder {parent} is not writable")
    return p


class LockFile:
    """An ``flock`` on ``path`` whose file records who holds it: pid, host, since when, and what the holder
    adds with :meth:`note` (e.g. the stage it computes), so that whoever waits or is refused can say so.

    Exclusive, or ``shared`` (any number of shared holders, no exclusive one); :meth:`acquire` either
    waits (``wait=True``) or returns False at once when another process holds it. Each ``LockFile`` is
    its own open file: two of them on one path exclude each other even inside one process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._info: dict = {}

    def acquire(self, *, shared: bool = False, wait: bool = False, on_wait=None, **info) -> bool:
        """Take the lock; ``on_wait(holder)`` is called once before waiting for another holder
        (``holder``: :meth:`holder`'s record of it). False: held elsewhere and ``wait`` is False."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(f"{self.path.parent}: cannot create the lock file {self.path.name} "
                               f"({_reason(e)})") from None
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise WorkdirError(f"{self.path.parent}: cannot lock {self.path.name} ({_reason(e)})") from None
                if not wait:
                    os.close(fd)
                    return False
                if on_wait is not None:
                    on_wait(_read_record(fd))
                fcntl.flock(fd, mode)
        except BaseException:  # refused, or interrupted while waiting
            os.close(fd)
            raise
        self._fd = fd
        self._info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.note(**info)
        return True

    def holder(self) -> dict:
        """The record of the process holding the lock (or that held it last); {} when there is none."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return _read_record(fd)
        finally:
            os.close(fd)

    def note(self, **info) -> None:
        """Add ``info`` to the holder's record (what a waiting process shows)."""
        if self._fd is None:
            return
        self._info.update(info)
        data = json.dumps(self._info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_record(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode(errors="replace"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(record: dict) -> str:
    """``pid 123 on host, since 2024-05-01 12:00:00`` (what a lock's record says of its holder); "" if unknown."""
    try:
        return f"pid {record['pid']} on {record['host']}, since {record['since']}"
    except (KeyError, TypeError):
        return ""


class WorkdirLock:
    """Lock of a work dir for one process (``with WorkdirLock(dir): ...``): exclusive, or ``shared``
    with other shared holders (the jobs of one split sweep)."""

    def __init__(self, workdir: str | os.PathLike, what: str = "work dir", shared: bool = False):
        self.path = Path(workdir) / ".lock"
        self.what = what
        self.shared = shared
        self._lock = LockFile(self.path)

    def acquire(self) -> WorkdirLock:
        on_writer(self._acquire)  # process 0 locks for every process of a multi-process run
        return self

    def _acquire(self) -> None:
        if not self._lock.acquire(shared=self.shared):
            who = describe_holder(self._lock.holder())
            raise WorkdirBusyError(f"{self.path.parent} is in use by another run{f' ({who})' if who else ''}; "
                                   f"wait for it to finish or use another {self.what}")

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temp_files(workdir: str | os.PathLike, exclude: Sequence[Path] = ()) -> list[Path]:
    """Delete the temporary files (:data:`~dng_jax.io.atomic.TEMP_GLOB`) a killed run left behind
    (:mod:`dng_jax.io.atomic` writes through them) in ``workdir`` and below, but not below the folders
    ``exclude``. Call it holding the lock of what it cleans: then no other process is writing one there."""
    return on_writer(_remove_stale_temp_files, workdir, tuple(Path(e) for e in exclude)) or []


def _remove_stale_temp_files(workdir: str | os.PathLike, exclude: tuple[Path, ...] = ()) -> list[Path]:
    removed = []
    for p in Path(workdir).rglob(TEMP_GLOB):
        if p.is_file() and not any(e in p.parents for e in exclude):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
