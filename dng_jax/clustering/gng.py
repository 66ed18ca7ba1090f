"""Growing Neural Gas (Fritzke 1995) as a jittable, vmappable state of fixed capacity.

The paper (section II-D) ran NeuPy's ``GrowingNeuralGas`` with: winner rate ``eps_b = 0.1``, neighbour
rate ``eps_n = 0.001``, maximal edge age 50, a new unit every ``lam = 100`` steps, split error decay
``alpha = 0.5``, global error decay ``0.995``, minimal distance for updates 0.2, and 5 start units
(GNG(5)); it grew to about 500 units. (One sentence of the paper swaps the names: it calls 0.1 the rate
"of the nearest neighbor" eps_n and 0.001 eps_b. We use the rates as in Fritzke (1995) and NeuPy: the
winner gets the larger rate, so the winner moves with 0.1, its topological neighbours with 0.001.)

The state has ``max_units`` slots: positions ``w (N, d)``, accumulated ``error (N,)``, an ``active``
mask, a symmetric ``age (N, N)`` int16 matrix (-1 = no edge), the degree of every unit and the number
of steps taken. Per pattern ``x`` (one ``lax.scan`` step, all work O(N d), never O(N^2)):

0. ``s1``, ``s2``: nearest and second nearest active unit (squared Euclidean, lowest index on ties).
   If ``||x - w_s1|| < min_dist`` the whole step is skipped (NeuPy's ``min_distance_for_update``: no
   move, no error, no edge change, no step counted). Our reading compares the distance itself with
   0.2 (NeuPy compares the distance with 0.2 squared, which we take for a slip).
1. The edges of ``s1`` age by one.
2. ``error[s1] += ||x - w_s1||^2`` (eq. 6).
3. ``w_s1 += eps_b (x - w_s1)``; every topological neighbour ``n`` of ``s1``: ``w_n += eps_n (x - w_n)``.
4. The edge ``s1``-``s2`` is created or refreshed with age 0.
5. Edges of ``s1`` older than ``max_age`` are removed; units this leaves without any edge are removed
   (deactivated). (Units that never had an edge, like the start units, stay until they get one.)
6. Every ``lam``-th counted step: ``q`` = active unit of largest error, ``f`` = its neighbour of largest
   error; a new unit ``r`` (lowest free slot) goes to ``0.5 (w_q + w_f)`` (eq. 7), edge q-f is replaced
   by q-r and r-f, ``error[q] *= alpha``, ``error[f] *= alpha``, ``error[r] = error[q]``. Skipped when
   all ``max_units`` slots are taken.
7. Every error decays: ``error *= decay``.

Epochs visit the patterns in a fresh random order (as NG does); ``GNGConfig.epochs`` defaults to 10:
with 5000 patterns and ``lam = 100`` that inserts about 500 units, the size the paper reports.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from dng_jax.clustering.orders import epoch_orders_many, single_key_batch, split_run_key
from dng_jax.clustering.ranking import first_argmax, first_argmin
from dng_jax.sharding import put
from dng_jax.typed_config import TypedConfig, param, require

__all__ = ["GNGConfig", "GNGState", "init", "init_from", "gng_step", "update_epoch", "update_epochs",
           "update_epochs_many", "fit", "fit_many", "n_units"]


class GNGConfig(TypedConfig):
    """The ``clustering.gng`` section: GNG's hyperparameters (the paper's values, section II-D)."""

    max_units: int = param(1024, "capacity: the most units GNG can grow to")
    start_units: int = param(5, "units at the start (the sweep's GNG(k) is GNG started with k units)")
    epochs: int = param(10, "epochs over the patterns (not given in the paper)")
    eps_b: float = param(0.1, "learning rate of the winner")
    eps_n: float = param(0.001, "learning rate of the winner's topological neighbours")
    max_age: int = param(50, "edges older than this are removed")
    lam: int = param(100, "a new unit every lam counted steps")
    alpha: float = param(0.5, "error decay of the two units a new one is split from")
    decay: float = param(0.995, "global error decay per step")
    min_dist: float = param(0.2, "no update when the winner is closer than this")
    chunk_epochs: int = param(1, "epochs per jitted call")

    def check(self) -> None:
        require(2 <= self.start_units <= self.max_units, "start_units",
                f"need 2 <= start_units <= max_units, got {self.start_units} and {self.max_units}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(0 <= self.max_age < 32000, "max_age", f"must be in [0, 32000), got {self.max_age}")
        require(self.lam >= 1, "lam", f"must be >= 1, got {self.lam}")
        for f in ("eps_b", "eps_n", "alpha", "decay"):
            require(0 <= getattr(self, f) <= 1, f, f"must lie in [0, 1], got {getattr(self, f)}")
        require(self.min_dist >= 0, "min_dist", f"must be >= 0, got {self.min_dist}")
        require(self.chunk_epochs >= 1, "chunk_epochs", f"must be >= 1, got {self.chunk_epochs}")


class GNGState(NamedTuple):
    w: jax.Array  # (N, d) float32
    error: jax.Array  # (N,) float32
    active: jax.Array  # (N,) bool
    age: jax.Array  # (N, N) int16, -1 = no edge
    degree: jax.Array  # (N,) int32
    steps: jax.Array  # () int32, counted (not skipped) steps


def n_units(state: GNGState) -> jax.Array:
    return jnp.sum(state.active, axis=-1)


def init_from(w0, max_units: int) -> GNGState:
    """Start units ``w0 (n0, d)`` in slots ``0..n0-1``, no edges, zero errors."""
    w0 = jnp.asarray(w0, jnp.float32)
    n0, d = w0.shape
    w = jnp.zeros((max_units, d), jnp.float32).at[:n0].set(w0)
    return GNGState(
        w=w,
        error=jnp.zeros((max_units,), jnp.float32),
        active=jnp.arange(max_units) < n0,
        age=jnp.full((max_units, max_units), -1, jnp.int16),
        degree=jnp.zeros((max_units,), jnp.int32),
        steps=jnp.zeros((), jnp.int32),
    )


def init(key, X, cfg: GNGConfig) -> GNGState:
    """``start_units`` units at distinct random data points (same key use as NG: split -> init, order)."""
    X = jnp.asarray(X, jnp.float32)
    if cfg.start_units > X.shape[0]:
        raise ValueError(f"start_units={cfg.start_units} > n={X.shape[0]} patterns")
    k_init, _ = split_run_key(key)
    idx = jax.random.choice(k_init, X.shape[0], (cfg.start_units,), replace=False)
    return init_from(X[idx], cfg.max_units)


def _set2(a, i, j, val):
    """Set the symmetric pair ``a[i, j] = a[j, i] = val``."""
    return a.at[i, j].set(val).at[j, i].set(val)


def _nearest_two(s: GNGState, x: jax.Array):
    """Step 0: ``(x - w, s1, its squared distance, s2, whether s2 exists)`` over the active units."""
    iota = jnp.arange(s.w.shape[0], dtype=jnp.int32)
    diff = x[None, :] - s.w
    dist = jnp.where(s.active, jnp.sum(diff * diff, axis=-1), jnp.inf)
    s1 = first_argmin(dist)
    dist2 = jnp.where(iota == s1, jnp.inf, dist)
    s2 = first_argmin(dist2)
    return diff, s1, dist[s1], s2, jnp.isfinite(dist2[s2])


def _adapt(s: GNGState, diff, s1, d1, s2, has_s2, cfg: GNGConfig):
    """Steps 1-5 on the row of ``s1`` only: ``(its new age row, w, error, active, degree)``."""
    f32 = jnp.float32
    iota = jnp.arange(s.w.shape[0], dtype=jnp.int32)
    row = s.age[s1]
    nb = row >= 0
    row_new = jnp.where(nb, row + 1, -1).astype(jnp.int16)
    err = s.error.at[s1].add(d1)
    coef = jnp.where(iota == s1, f32(cfg.eps_b), jnp.where(nb, f32(cfg.eps_n), f32(0)))
    w = s.w + coef[:, None] * diff
    connect = has_s2 & (iota == s2)
    new_edge = connect & ~nb
    row_new = jnp.where(connect, jnp.int16(0), row_new)
    prune = nb & (row_new > cfg.max_age)
    row_new = jnp.where(prune, jnp.int16(-1), row_new)
    deg = s.degree - prune.astype(jnp.int32) + new_edge.astype(jnp.int32)
    deg = jnp.where(iota == s1, jnp.sum(row_new >= 0).astype(jnp.int32), deg)
    orphan = prune & (deg == 0)
    active = s.active & ~orphan
    err = jnp.where(orphan, f32(0), err)
    w = jnp.where(orphan[:, None], f32(0), w)
    return row_new, w, err, active, deg


def _insert_unit(w, err, active, age, deg, ins_due, alpha: float):
    """Step 6: where ``ins_due``, a new unit ``r`` halfway between ``q`` (largest error) and ``f`` (its
    neighbour of largest error), if ``q`` has a neighbour and a slot is free (eq. 7)."""
    f32 = jnp.float32
    q = first_argmax(jnp.where(active, err, -jnp.inf))
    qrow = age[q]
    has_f = jnp.any(qrow >= 0)
    fsel = first_argmax(jnp.where(qrow >= 0, err, -jnp.inf))
    free = ~active
    has_r = jnp.any(free)
    r = first_argmin(jnp.where(free, f32(0), f32(1)))
    ins = ins_due & has_f & has_r
    wr = f32(0.5) * (w[q] + w[fsel])
    w = w.at[r].set(jnp.where(ins, wr, w[r]))
    active = active.at[r].set(active[r] | ins)
    age = _set2(age, q, fsel, jnp.where(ins, jnp.int16(-1), age[q, fsel]))
    age = _set2(age, q, r, jnp.where(ins, jnp.int16(0), age[q, r]))
    age = _set2(age, fsel, r, jnp.where(ins, jnp.int16(0), age[fsel, r]))
    deg = deg.at[r].add(jnp.where(ins, 2, 0))
    a = jnp.where(ins, f32(alpha), f32(1))
    err = err.at[q].multiply(a)
    err = err.at[fsel].multiply(a)
    err = err.at[r].set(jnp.where(ins, err[q], err[r]))
    return w, err, active, age, deg


def gng_step(s: GNGState, x: jax.Array, cfg: GNGConfig) -> GNGState:
    """One GNG adaptation step for the pattern ``x`` (see the module docstring for the rules)."""
    diff, s1, d1, s2, has_s2 = _nearest_two(s, x)
    do = ~(jnp.sqrt(d1) < jnp.float32(cfg.min_dist))
    steps = s.steps + do.astype(jnp.int32)
    row_new, w, err, active, deg = _adapt(s, diff, s1, d1, s2, has_s2, cfg)
    # skipped step: keep everything (row-wise selects only, never the whole age matrix)
    row_new = jnp.where(do, row_new, s.age[s1])
    w = jnp.where(do, w, s.w)
    err = jnp.where(do, err, s.error)
    active = jnp.where(do, active, s.active)
    deg = jnp.where(do, deg, s.degree)
    age = s.age.at[s1, :].set(row_new).at[:, s1].set(row_new)
    w, err, active, age, deg = _insert_unit(w, err, active, age, deg, do & (steps % cfg.lam == 0), cfg.alpha)
    err = jnp.where(do, err * jnp.float32(cfg.decay), err)  # 7. global error decay
    return GNGState(w, err, active, age, deg, steps)


def update_epoch(s: GNGState, X, order, cfg: GNGConfig) -> GNGState:
    """One epoch: ``lax.scan`` of :func:`gng_step` over ``X[order]``."""
    return lax.scan(lambda s, i: (gng_step(s, X[i], cfg), None), s, order)[0]


def _epochs_orders(s, X, orders, cfg):
    return lax.scan(lambda s, o: (update_epoch(s, X, o, cfg), None), s, orders)[0]


@functools.lru_cache(maxsize=None)
def _compiled(kind: str, cfg: GNGConfig, batched: bool, mesh: Mesh | None):
    if kind != "orders":
        raise ValueError(kind)
    nargs = 3
    f = functools.partial(_epochs_orders, cfg=cfg)
    if batched:
        f = jax.vmap(f, in_axes=(0, None, 0) + (None,) * (nargs - 3))
    if mesh is not None:
        f = jax.shard_map(f, mesh=mesh, in_specs=(P("runs"), P(), P("runs")) + (P(),) * (nargs - 3),
                          out_specs=P("runs"), check_vma=False)
    return jax.jit(f, donate_argnums=(0,))


def _copy(s):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), s)


def update_epochs(s: GNGState, X, orders, cfg: GNGConfig) -> GNGState:
    """Epochs with explicit ``(E, n)`` visiting orders (to feed a reference the same order)."""
    return _compiled("orders", cfg, False, None)(_copy(s), jnp.asarray(X, jnp.float32), jnp.asarray(orders, jnp.int32))


def update_epochs_many(s: GNGState, X, orders, cfg: GNGConfig) -> GNGState:
    """Batched :func:`update_epochs` (state leaves with a leading seed axis, ``orders (S, E, n)``)."""
    return _compiled("orders", cfg, True, None)(_copy(s), jnp.asarray(X, jnp.float32), jnp.asarray(orders, jnp.int32))


def _run(s, X, keys, cfg, batched, mesh, progress, desc):
    bar = tqdm(total=cfg.epochs, desc=desc, unit="epoch") if progress else None
    f = _compiled("orders", cfg, batched, mesh)
    keys_b = keys if batched else single_key_batch(keys)
    sharding = NamedSharding(mesh, P("runs")) if mesh is not None else None
    step = max(1, cfg.chunk_epochs)
    for a in range(0, cfg.epochs, step):
        b = min(cfg.epochs, a + step)
        orders = epoch_orders_many(keys_b, X.shape[0], a, b)
        orders = put(orders, sharding) if sharding is not None else jnp.asarray(orders if batched else orders[0])
        s = f(s, X, orders)
        if bar is not None:
            jax.block_until_ready(s)
            bar.update(b - a)
            if s.w.is_fully_addressable:  # (runs on other processes' devices: a collective only process 0 would run)
                bar.set_postfix(units=int(np.max(np.asarray(n_units(s)))))
    if bar is not None:
        bar.close()
    return s


def fit(key, X, cfg: GNGConfig, *, progress: bool = False) -> GNGState:
    X = jnp.asarray(X, jnp.float32)
    return _run(init(key, X, cfg), X, key, cfg, False, None, progress, "gng")


def fit_many(keys, X, cfg: GNGConfig, *, mesh: Mesh | None = None, progress: bool = False) -> GNGState:
    """:func:`fit` vmapped over seeds; ``mesh`` (axis ``"runs"``) shards the seeds across devices."""
    X = jnp.asarray(X, jnp.float32)
    S = keys.shape[0]
    if mesh is not None:
        pad = (-S) % mesh.devices.size
        if pad:
            keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])
    s = jax.vmap(lambda kk: init(kk, X, cfg))(keys)  # drawn alike on every process; the epochs run on the mesh
    if mesh is not None:
        s = put(s, NamedSharding(mesh, P("runs")))
        X = put(X, NamedSharding(mesh, P()))
    s = _run(s, X, keys, cfg, True, mesh, progress, "gng x%d" % S)
    return jax.tree.map(lambda a: a[:S], s)
