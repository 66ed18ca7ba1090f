"""Several processes, one experiment: multi-process JAX for ``train`` and ``sweep``.

Every process runs the same driver on its own devices (JAX's multi-controller model, here for the host
code too); together they see one global device list, ``jax.devices()``, over which
:func:`dng_jax.sharding.make_mesh` makes the segmentation training data parallel and
:func:`dng_jax.sharding.runs_mesh` splits the runs of a configuration (clustering seeds, their
retraining and their evaluation: each process scores the runs its devices hold, :func:`local_runs`).

Files: only process 0 writes. :func:`on_writer` runs a write on process 0 while the others wait before
and after it; :mod:`dng_jax.io.atomic`, the stage markers, the metric writers and the work-dir lock go
through it, so every process reads the work dir exactly as process 0 left it and takes the same
decisions (which stages are done, which chunks to compute). An error of process 0's write is raised on
every process. One process (no :func:`initialize`, or ``--num_processes=1``): everything is a plain
call, as before.

Start: :func:`initialize` with ``--coordinator_address``, ``--num_processes`` and ``--process_id``
(``scripts/tools/launch_local.sh N ...`` on one machine), or with none of them where a cluster provides them
(a SLURM step of several tasks, a multi-host TPU slice): then ``jax.distributed.initialize()`` reads
the environment. On CPU the processes talk through gloo. See ``docs/scaling.md``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from dng_jax.errors import DistributedError

__all__ = ["cluster_environment", "initialize", "is_multiprocess", "is_writer", "on_writer", "each_process",
           "barrier", "to_local", "fetch", "LocalRuns", "local_runs", "gather_runs"]

T = TypeVar("T")

_ERROR_BYTES = 4096  # room for process 0's error message, sent to the others when a write fails


# ----------------------------------------------------------------------------------------- start


def _int_env(name: str) -> int:
    try:
        return int(os.environ.get(name, "") or 0)
    except ValueError:
        return 0


def cluster_environment() -> str | None:
    """The cluster that starts this process as one of several, as JAX's ``initialize()`` detects it
    without arguments: ``"SLURM"`` (a job step of more than one task, ``srun``), ``"TPU"`` (a multi-host
    TPU slice), else None (one process: nothing to join)."""
    env = os.environ
    if all(v in env for v in ("SLURM_JOB_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST")):
        if max(_int_env("SLURM_STEP_NUM_TASKS"), _int_env("SLURM_NTASKS")) > 1:
            return "SLURM"
    for var in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
        if len([h for h in env.get(var, "").split(",") if h.strip()]) > 1:
            return "TPU"
    return None


def _use_gloo() -> None:
    """CPU collectives through gloo (the processes' CPU devices exchange arrays over TCP), unless the
    environment chose an implementation (``JAX_CPU_COLLECTIVES_IMPLEMENTATION``, e.g. ``mpi``)."""
    if os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        return
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):  # an option this JAX does not have: its default
        pass


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: int = 300) -> bool:
    """Join the other processes of this run; True when there are several (call before any JAX work).

    The three arguments go together; with none of them, ``jax.distributed.initialize()`` is called
    without arguments where :func:`cluster_environment` finds a cluster, and nothing happens otherwise
    (nor with ``num_processes=1`` alone).
    A process that cannot join within ``timeout`` seconds (no coordinator at that address, another
    process missing) stops with :class:`~dng_jax.errors.DistributedError` in one line (JAX itself would
    abort the process with a C++ stack trace)."""
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
             "--process_id": process_id}
    missing = [k for k, v in given.items() if v is None]
    if num_processes == 1 and process_id in (None, 0):  # one process, whatever the environment says
        return False
    if len(missing) not in (0, 3):
        raise DistributedError(f"{', '.join(missing)} missing: --coordinator_address, --num_processes and "
                               f"--process_id go together (or none of them, in a SLURM step or on a TPU slice)")
    if timeout < 1:
        raise DistributedError(f"--initialization_timeout must be >= 1 second, got {timeout}")
    if not missing:
        _check_process_flags(coordinator_address, num_processes, process_id)
        kwargs: dict[str, Any] = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                                  "process_id": process_id}
        who = f"process {process_id} of {num_processes} (coordinator {coordinator_address})"
    else:
        env = cluster_environment()
        if env is None:
            return False
        kwargs, who = {}, f"a process of the {env} job"
    if jax.distributed.is_initialized():  # joined before (a second command in one Python process)
        return jax.process_count() > 1
    _use_gloo()
    _join(kwargs, who, timeout)
    return jax.process_count() > 1


def _check_process_flags(coordinator_address: str, num_processes: int, process_id: int) -> None:
    if num_processes < 1:
        raise DistributedError(f"--num_processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise DistributedError(f"--process_id must lie in 0..{num_processes - 1} (--num_processes "
                               f"{num_processes}), got {process_id}")
    host, sep, port = coordinator_address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"--coordinator_address must be host:port (process 0's machine and a free "
                               f"port), got {coordinator_address!r}")


def _join(kwargs: dict[str, Any], who: str, timeout: int) -> None:
    """``jax.distributed.initialize(**kwargs)``; a process still waiting after ``timeout`` seconds prints one
    line and exits with status 2 (JAX would abort it with a C++ stack trace a few seconds later)."""
    hint = ("start every process with the same --coordinator_address (reachable from every machine) and "
            "--num_processes, each with its own --process_id" if kwargs else
            "every task of the job must start this command (or pass --num_processes=1 to run alone)")
    message = f"{who} could not join the others within {timeout} s: {hint}, or raise --initialization_timeout"

    def give_up():
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=timeout + 30)
    except Exception as e:  # noqa: BLE001 - a bad address, JAX already in use: one line naming it
        raise DistributedError(f"{who}: jax.distributed.initialize failed "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        watchdog.cancel()


# ----------------------------------------------------------------------------------------- writes


def is_multiprocess() -> bool:
    """Whether this process is one of several (:func:`initialize` joined others). Starts no backend."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the shared files: process 0, or the only process."""
    return not is_multiprocess() or jax.process_index() == 0


def _allgather(a: np.ndarray) -> np.ndarray:
    """Every process's ``a`` (same shape and dtype everywhere), stacked ``[processes, ...]``, bit for bit
    (sent as bytes: float64 survives a device without 64-bit floats)."""
    a = np.ascontiguousarray(a)
    raw = a.reshape(-1).view(np.uint8)
    if raw.size == 0:
        raw = np.zeros(1, np.uint8)
    out = np.asarray(multihost_utils.process_allgather(raw))
    n = jax.process_count()
    if a.size == 0:
        return np.zeros((n,) + a.shape, a.dtype)
    return np.ascontiguousarray(out).view(a.dtype).reshape((n,) + a.shape)


def barrier() -> None:
    """Wait until every process is here (one process: return at once)."""
    if is_multiprocess():
        _allgather(np.zeros(1, np.uint8))


def _describe(e: BaseException) -> bytes:
    info = {"type": type(e).__name__, "module": type(e).__module__, "message": str(e)}
    if isinstance(e, OSError):
        info.update(errno=e.errno, strerror=e.strerror, filename=None if e.filename is None else str(e.filename))
    return json.dumps(info).encode()[:_ERROR_BYTES]


def _rebuild(raw: bytes, process: int) -> BaseException:
    """Another process's error, raised here too: of the same class where it can be (an ``OSError`` with its
    errno, a class built from its message), so every process takes the same path; else a RuntimeError."""
    try:
        info = json.loads(raw.rstrip(b"\0").decode(errors="replace"))
    except ValueError:
        return RuntimeError(f"process {process} failed (its error message was cut)")
    cls = getattr(sys.modules.get(info.get("module", "")), info.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = None
    if info.get("errno") is not None:
        cls = cls if cls is not None and issubclass(cls, OSError) else OSError
        return cls(info["errno"], info.get("strerror") or info["message"], info.get("filename"))
    if cls is not None:
        try:
            return cls(info["message"])
        except Exception:  # noqa: BLE001 - a class that takes other arguments
            pass
    return RuntimeError(f"process {process} failed: {info.get('type')}: {info.get('message')}")


def _agree(error: BaseException | None) -> None:
    """Raise on every process if any failed: its own error where it failed, the first failing process's
    (rebuilt) elsewhere. A collective."""
    failed = _allgather(np.asarray([error is not None], np.uint8))[:, 0]
    if not failed.any():
        return
    buf = np.zeros(_ERROR_BYTES, np.uint8)
    if error is not None:
        text = _describe(error)
        buf[: len(text)] = np.frombuffer(text, np.uint8)
    raws = _allgather(buf)
    if error is not None:
        raise error
    first = int(np.flatnonzero(failed)[0])
    raise _rebuild(raws[first].tobytes(), first)


_depth = 0  # > 0 inside on_writer: a nested write (a marker inside a writer's creation) is a plain call


def on_writer(fn: Callable[..., T], *args, **kwargs) -> T | None:
    """``fn(*args, **kwargs)`` on process 0 only (its value there, None elsewhere); every process waits
    before it (so no one still reads what it changes) and after it (so everyone then sees it). Every
    process must make the same calls in the same order: the sweep's driver does, as it runs the same
    code on the same data everywhere. An exception of ``fn`` is raised on every process. One process:
    just the call."""
    global _depth
    if _depth or not is_multiprocess():
        return fn(*args, **kwargs)
    _depth += 1
    try:
        barrier()
        return _call_and_agree(fn, args, kwargs, run=jax.process_index() == 0)
    finally:
        _depth -= 1


def each_process(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` on every process, each doing its own share of a job without collectives
    (scoring its runs); an exception on any process is raised on all of them, so none is left waiting
    for the others in the next collective. One process: just the call."""
    if not is_multiprocess():
        return fn(*args, **kwargs)
    return _call_and_agree(fn, args, kwargs, run=True)


def _call_and_agree(fn: Callable[..., T], args, kwargs, *, run: bool) -> T | None:
    """``fn(*args, **kwargs)`` where ``run`` (None elsewhere), then :func:`_agree` on its error: an exception
    of ``fn`` on any process is raised on every process."""
    result, error = None, None
    if run:
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - raised again by _agree, on every process
            error = e
    _agree(error)
    return result


# ----------------------------------------------------------------------------------------- arrays


def _spans_processes(x) -> bool:
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def _gather(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_gather(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_local(tree):
    """``tree`` with every array that spans several processes' devices gathered whole onto this
    process (a local ``jax.Array``); the others as they are (one process: arrays split over its devices
    moved onto the first). A collective: every process calls it."""
    if not is_multiprocess():
        return _on_one_device(tree)
    return jax.tree.map(lambda x: _gather(x) if _spans_processes(x) else x, tree)


def _on_one_device(tree):
    """One process with several devices: the arrays split over them (the runs mesh), moved onto the first,
    where the one-device computations beside them (scoring, reclustering) run."""
    def split(x) -> bool:
        return isinstance(x, jax.Array) and len(x.sharding.device_set) > 1

    if not any(split(x) for x in jax.tree.leaves(tree)):
        return tree  # one device: the tree itself
    return jax.tree.map(lambda x: jax.device_put(x, jax.local_devices()[0]) if split(x) else x, tree)


def fetch(tree):
    """``jax.device_get(tree)``, also for arrays spread over several processes (gathered first; a
    collective then)."""
    return jax.device_get(to_local(tree))


class LocalRuns(NamedTuple):
    """The runs of a runs-sharded pytree that this process's devices hold (:func:`local_runs`)."""

    runs: range  # their indices, below the number of runs (padding left out)
    block: int  # rows each process gives to gather_runs (its share of the padded runs)
    tree: Any  # those runs' arrays (leading axis: len(runs)), on this process


def local_runs(tree, n_runs: int) -> LocalRuns:
    """The runs ``0..n_runs-1`` of ``tree`` (leaves with a leading runs axis, sharded over
    :func:`dng_jax.sharding.runs_mesh` and padded to a multiple of its devices) held here. One process:
    every run (moved onto one device if split over several)."""
    leaves = jax.tree.leaves(tree)
    if not leaves or not any(_spans_processes(x) for x in leaves):
        return LocalRuns(range(n_runs), n_runs, _on_one_device(tree))
    first = next(x for x in leaves if _spans_processes(x))
    starts = sorted({s.index[0].start or 0 for s in first.addressable_shards})
    stops = sorted({s.index[0].stop if s.index[0].stop is not None else first.shape[0]
                    for s in first.addressable_shards})
    start, stop = starts[0], stops[-1]
    if any(a != b for a, b in zip(stops[:-1], starts[1:])):
        raise ValueError("this process's runs are not contiguous: build the mesh with runs_mesh()")

    def mine(x):
        if _spans_processes(x) and not x.sharding.is_fully_replicated:
            parts = {s.index[0].start or 0: s.data for s in x.addressable_shards}
            block = np.concatenate([np.asarray(parts[k]) for k in sorted(parts)])
        else:  # on every device: take this process's rows
            block = np.asarray(x.addressable_data(0) if _spans_processes(x) else x)[start:stop]
        return jnp.asarray(block[: max(0, min(stop, n_runs) - start)])

    return LocalRuns(range(start, min(stop, n_runs)), stop - start, jax.tree.map(mine, tree))


def gather_runs(rows: np.ndarray, n_runs: int) -> np.ndarray:
    """Every process's ``rows [block, ...]`` (:class:`LocalRuns`: padding rows included) in run order,
    cut to ``n_runs``: the runs' results on every process, bit for bit. One process: ``rows[:n_runs]``."""
    if not is_multiprocess():
        return rows[:n_runs]
    out = _allgather(rows)
    return out.reshape((-1,) + rows.shape[1:])[:n_runs]
