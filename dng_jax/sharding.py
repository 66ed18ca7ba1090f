"""Device meshes and shardings: data parallel for segmentation training, a runs axis for seeds.

Two 1-D meshes:

- ``make_mesh()`` (axis ``"data"``, this process's devices): the segmentation batch is split over
  devices, the train state is replicated; :func:`jit_train_step` / :func:`jit_eval_step` jit a step with
  those shardings.
- ``runs_mesh()`` (axis ``"runs"``, every device JAX sees): independent runs (clustering seeds) are
  split over devices; nothing is communicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["make_mesh", "runs_mesh", "shard_batch", "replicate", "jit_train_step", "jit_eval_step"]


def make_mesh(devices=None) -> Mesh:
    """1-D mesh over ``jax.local_devices()`` with the batch axis ``'data'``."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def runs_mesh(devices=None) -> Mesh:
    """A 1-D mesh whose axis ``"runs"`` shards the seeds of a clustering ``fit_many``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("runs",))


def shard_batch(batch, mesh: Mesh):
    """Put host arrays on the mesh, split along the leading (batch) axis."""
    n = mesh.devices.size
    sharding = NamedSharding(mesh, P("data"))

    def put(x):
        x = np.asarray(x)
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map(put, batch)


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def jit_train_step(step_fn, mesh: Mesh, donate: bool = True):
    """``jit`` of ``step(state, batch, key) -> (state, metrics)``: state replicated, batch split."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl),
                   donate_argnums=(0,) if donate else ())


def jit_eval_step(step_fn, mesh: Mesh):
    """``jit`` of ``step(state, batch) -> metrics``: state replicated, batch split."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, in_shardings=(repl, data), out_shardings=repl)
