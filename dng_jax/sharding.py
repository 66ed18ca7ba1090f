"""Device meshes and shardings: data parallel for segmentation training, a runs axis for seeds.

Two 1-D meshes, both over every device of every process (``jax.devices()``; one process: its own):

- ``make_mesh()`` (axis ``"data"``): the segmentation batch is split over devices, the train state is
  replicated; :func:`jit_train_step` / :func:`jit_eval_step` jit a step with those shardings. With
  several processes each builds the same batch and puts its own slice on its devices.
- ``runs_mesh()`` (axis ``"runs"``): independent runs (clustering seeds, their retraining) are split
  over devices; nothing is communicated. The devices are ordered by process, so each process holds
  one contiguous block of runs (:func:`dng_jax.distributed.local_runs`).

:func:`put` is ``jax.device_put`` that also reaches other processes' devices (every process passes the
same value and keeps its own part).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["make_mesh", "runs_mesh", "put", "on_mesh", "runs_jit", "shard_batch", "replicate", "jit_train_step",
           "jit_eval_step"]


def _all_devices() -> list:
    """Every process's devices, process 0's first (one process: ``jax.devices()`` as it is)."""
    devices = jax.devices()
    if jax.process_count() > 1:
        devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return devices


def make_mesh(devices=None) -> Mesh:
    """1-D mesh over every process's devices with the batch axis ``'data'``."""
    devices = _all_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def runs_mesh(devices=None) -> Mesh:
    """A 1-D mesh whose axis ``"runs"`` shards the seeds of a clustering ``fit_many`` (and, with several
    processes, the retraining of a chunk of runs)."""
    devices = _all_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("runs",))


def _put_global(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put_global(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put(tree, sharding: NamedSharding):
    """``jax.device_put(tree, sharding)``; where ``sharding`` spans several processes' devices, every
    process passes the same values and puts its own part of each (keys included)."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _put_global(x, sharding), tree)


def on_mesh(tree, mesh: Mesh | None, per_run: bool = True):
    """``tree`` on a runs ``mesh``: split along its leading runs axis (``per_run``), or on every device;
    no mesh: ``tree`` as it is."""
    return tree if mesh is None else put(tree, NamedSharding(mesh, P("runs") if per_run else P()))


def runs_jit(fn, mesh: Mesh | None, per_run: tuple[bool, ...]):
    """``jax.jit`` of a step ``fn`` vmapped over runs, donating its first argument. With a runs ``mesh``
    each device steps its own block of runs (``shard_map``, nothing communicated); ``per_run[i]``:
    argument ``i`` has a leading runs axis, else it is the same for every run."""
    if mesh is not None:
        fn = jax.shard_map(fn, mesh=mesh, in_specs=tuple(P("runs") if r else P() for r in per_run),
                           out_specs=P("runs"), check_vma=False)
    return jax.jit(fn, donate_argnums=(0,))


def shard_batch(batch, mesh: Mesh):
    """Put host arrays on the mesh, split along the leading (batch) axis."""
    n = mesh.devices.size
    sharding = NamedSharding(mesh, P("data"))

    def one(x):
        x = np.asarray(x)
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
        return jax.device_put(x, sharding) if sharding.is_fully_addressable else _put_global(x, sharding)

    return jax.tree_util.tree_map(one, batch)


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` on every device of ``mesh``."""
    return put(tree, NamedSharding(mesh, P()))


def jit_train_step(step_fn, mesh: Mesh, donate: bool = True):
    """``jit`` of ``step(state, batch, key) -> (state, metrics)``: state replicated, batch split."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl),
                   donate_argnums=(0,) if donate else ())


def jit_eval_step(step_fn, mesh: Mesh):
    """``jit`` of ``step(state, batch) -> metrics``: state replicated, batch split."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data), out_shardings=repl)
