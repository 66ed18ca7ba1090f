"""Pattern-by-pattern Neural Gas (NG) and k-means (kMC) in JAX (paper section II-D, eqs. 1-5).

For every epoch ``t`` of ``T`` the patterns are visited one by one in a fresh random order and every
centroid moves by ``eps(t) * exp(-rank / R(t)) * (x - w)`` with

    eps(t) = eps0 * (eps_fin / eps0) ** (t / T),    R(t) = R0 * (R_fin / R0) ** (t / T),   t = 0..T-1.

The paper's values are ``eps0=0.1, eps_fin=1e-4, R_fin=1e-3, T=200`` and ``R0 = "2 . k"``, which we read
as ``R0 = 2k`` (``NGConfig.r0=None`` means 2k; pass a number to override). kMC is the same algorithm
with ``R0 = R_fin = 1e-3``: then ``exp(-1/R)`` is 0 in float32 and only the winner moves.

Ranks are never computed with a double argsort. For epoch ``t`` only the ``m(t)`` nearest centroids
can get a non-zero weight: rank ``r`` contributes ``exp(-r/R) < h_min`` once ``r > R * log(1/h_min)``
(``h_min`` defaults to the smallest normal float32, i.e. exactly where float32 ``exp`` underflows, so
dropping those terms changes nothing). ``m(t)`` shrinks as ``R(t)`` does; the schedule is cut into
phases of constant, static ``m`` (rounded up to a power of two) and each phase is its own jitted
``lax.scan`` (at most ``chunk_epochs`` epochs a call):

* ``4 m >= k``: all centroids are ranked (:func:`dng_jax.clustering.ranking.full_ranks`: by default a
  bitonic sorting network whose vector lanes are the seeds), then one dense update;
* ``1 < m < k/4``: ``lax.top_k`` on ``-dist`` gives the ``m`` nearest in rank order; only those rows move;
* ``m == 1`` (all of kMC, and NG at the end of its schedule): ``argmin`` only, one row is updated.
  For ``k >= 64`` the patterns go in blocks of 16: one ``(16, d) x (d, k)`` product gives the
  distances to the block-start centroids, and each pattern re-measures only the rows that the
  block's earlier patterns moved (exactly the sequential result, but ``w`` is read once a block).

Distances for ranking are ``||w||^2 - 2 w.x`` with the squared norms carried along the scan (one
matrix-vector product a pattern, and kMC rewrites a single row and a single norm). Rounding can order
two centroids differently from ``||x - w||^2`` only when their squared distances differ by less than
about ``1e-7 * (||w||^2 + ||x||^2)``: a near-tie either order is as right as the other.

Ties are broken by the lowest centroid index everywhere (as ``np.argsort(kind="stable")`` does).

The seed changes the start (``k`` distinct data points) and the visiting order, nothing else:
``key -> (init_key, order_key)``, and epoch ``t`` visits a NumPy permutation seeded with the key data of
``fold_in(order_key, t)`` (:mod:`dng_jax.clustering.orders`).

Public API (optax-like pure functions over NamedTuple states)::

    cfg = NGConfig(k=100)            # or kmc_config(100)
    state = init(key, X, cfg)        # NGState(centroids (k, d), epoch)
    state = update_epochs(state, X, orders, cfg)   # explicit (E, n) visiting orders
    state = fit(key, X, cfg)
    states = fit_many(keys, X, cfg, mesh=None)      # vmapped over seeds, runs axis shardable
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from dng_jax.clustering.orders import epoch_orders_many, single_key_batch, split_run_key
from dng_jax.clustering.ranking import first_argmin, full_ranks
from dng_jax.sharding import put
from dng_jax.typed_config import REQUIRED, TypedConfig, param, require

__all__ = [
    "NGConfig",
    "NGState",
    "ng_config",
    "kmc_config",
    "schedule",
    "neighbourhood_sizes",
    "init",
    "init_from",
    "ng_step",
    "update_epoch",
    "update_epochs",
    "update_epochs_many",
    "fit",
    "fit_many",
    "seed_chunk_size",
    "F32_TINY",
]

F32_TINY = float(np.finfo(np.float32).tiny)  # 1.1754944e-38: exp(-r/R) below this underflows


class NGConfig(TypedConfig):
    """Hyperparameters of NG / kMC (defaults: the paper's NG).

    ``r0=None`` means ``2 * k`` (our reading of the paper's "R0 = 2 . k").
    ``h_min``: neighbourhood weights below it are dropped (default: float32 underflow, i.e. exact).
    ``chunk_epochs``: epochs per jitted call (bounds memory of the visiting orders, drives progress).
    ``full_rank``: how all k centroids are ranked in the epochs where (almost) all get a weight:
    ``"bitonic"`` (a sorting network vectorised over seeds, default) or ``"sort"`` (XLA's sort).
    ``seed_chunk``: in :func:`fit_many`, seeds are vmapped in groups of this many (``lax.map`` with
    ``batch_size``); 0 = automatic (see :func:`seed_chunk_size`).
    """

    k: int = param(REQUIRED, "number of centroids")
    epochs: int = param(200, "epochs T")
    eps0: float = param(0.1, "learning rate of the first epoch")
    eps_fin: float = param(1e-4, "learning rate at the end of the schedule")
    r0: float | None = param(None, "neighbourhood range of the first epoch; None = 2k")
    r_fin: float = param(1e-3, "neighbourhood range at the end of the schedule")
    h_min: float = param(F32_TINY, "drop neighbourhood weights below this (default: exact)")
    chunk_epochs: int = param(10, "epochs per jitted call")
    full_rank: str = param("bitonic", "ranking of all centroids: 'bitonic' network or XLA 'sort'")
    seed_chunk: int = param(0, "seeds vmapped together in fit_many; 0 = all")

    def check(self) -> None:
        require(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        for f in ("eps0", "eps_fin", "r_fin"):
            require(getattr(self, f) > 0, f, f"must be > 0, got {getattr(self, f)}")
        require(self.r0 is None or self.r0 > 0, "r0", f"must be > 0 (or None for 2k), got {self.r0}")
        require(0 < self.h_min < 1, "h_min", f"must lie in (0, 1), got {self.h_min}")
        require(self.chunk_epochs >= 1, "chunk_epochs", f"must be >= 1, got {self.chunk_epochs}")
        require(self.full_rank in ("bitonic", "sort"), "full_rank",
                f"must be 'bitonic' or 'sort', got {self.full_rank!r}")
        require(self.seed_chunk >= 0, "seed_chunk", f"must be >= 0, got {self.seed_chunk}")

    @property
    def R0(self) -> float:
        return 2.0 * self.k if self.r0 is None else float(self.r0)


class NGState(NamedTuple):
    centroids: jax.Array  # (k, d) float32  [(S, k, d) for fit_many]
    epoch: jax.Array  # int32, epochs done  [(S,)]


def ng_config(k: int, **kw) -> NGConfig:
    return NGConfig(k=k, **kw)


def kmc_config(k: int, **kw) -> NGConfig:
    """Pattern-by-pattern k-means: NG with ``R0 = R_fin = 1e-3`` (winner-only updates)."""
    kw.setdefault("r0", 1e-3)
    kw.setdefault("r_fin", 1e-3)
    return NGConfig(k=k, **kw)


# ----------------------------------------------------------------------------------------- schedule


def schedule(cfg: NGConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch ``eps(t)`` and ``R(t)`` for ``t = 0..T-1`` (eqs. 4-5), computed in float64, as float32."""
    t = np.arange(cfg.epochs, dtype=np.float64) / cfg.epochs
    eps = cfg.eps0 * (cfg.eps_fin / cfg.eps0) ** t
    R = cfg.R0 * (cfg.r_fin / cfg.R0) ** t
    return eps.astype(np.float32), R.astype(np.float32)


def _bucket(m: int, k: int) -> int:
    """Round ``m`` up to a power of two (static shapes: few compilations), capped at ``k``."""
    if m <= 1:
        return 1
    b = 1 << (m - 1).bit_length()
    return k if b >= k else b


def neighbourhood_sizes(cfg: NGConfig) -> np.ndarray:
    """Static number ``m(t)`` of centroids that get work in epoch ``t`` (power of two or ``k``).

    Rank ``r`` has weight ``exp(-r/R) >= h_min`` iff ``r <= R log(1/h_min)``; ranks are 0-based.
    """
    _, R = schedule(cfg)
    L = -math.log(cfg.h_min)
    out = []
    for r in R.astype(np.float64):
        m = min(cfg.k, int(math.floor(r * L)) + 1)
        # float32 exp(-(m)/R) of the first dropped rank must really be < h_min; widen if not
        while m < cfg.k and np.exp(-np.float32(m) / np.float32(r)) >= cfg.h_min:
            m += 1
        out.append(_bucket(m, cfg.k))
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------------------- init/order


def _as_f32(X) -> jax.Array:
    X = jnp.asarray(X)
    return X.astype(jnp.float32) if X.dtype != jnp.float32 else X


def init_from(centroids) -> NGState:
    """A state starting at given centroids (e.g. the same start as a reference run)."""
    return NGState(_as_f32(centroids), jnp.zeros((), jnp.int32))


def init(key, X, cfg: NGConfig) -> NGState:
    """Centroids start at ``k`` distinct, randomly chosen data points."""
    X = _as_f32(X)
    n = X.shape[0]
    if cfg.k > n:
        raise ValueError(f"k={cfg.k} > n={n} patterns")
    k_init, _ = split_run_key(key)
    idx = jax.random.choice(k_init, n, (cfg.k,), replace=False)
    return NGState(X[idx], jnp.zeros((), jnp.int32))


# ------------------------------------------------------------------------------------------ steps


def _winner_step(w: jax.Array, wn: jax.Array, x: jax.Array, eps):
    """Winner-only update with cached squared norms ``wn = ||w||^2``: the winner is
    ``argmin ||w||^2 - 2 w.x`` (one pass over ``w``), and only its row and norm are rewritten."""
    i = first_argmin(wn - 2.0 * (w @ x))
    wi = lax.dynamic_index_in_dim(w, i, axis=0, keepdims=False)
    wi = wi + eps * (x - wi)
    w = lax.dynamic_update_index_in_dim(w, wi, i, axis=0)
    wn = lax.dynamic_update_index_in_dim(wn, jnp.sum(wi * wi), i, axis=0)
    return w, wn


def _ng_step_n(w, wn, x, eps, R, m: int, full_rank: str):
    """NG step on ``(w, wn = ||w||^2)``; returns the new pair. ``m`` static, ``1 <= m <= k``."""
    k = w.shape[0]
    if m == 1:
        return _winner_step(w, wn, x, eps)
    dist = wn - 2.0 * (w @ x)  # ||x - w||^2 - ||x||^2: same order
    if 4 * m >= k:  # every centroid (or a large share) gets work: rank them all, one dense update
        coef = eps * jnp.exp(-full_ranks(dist, full_rank) / R)
        w = w + coef[:, None] * (x[None, :] - w)
        return w, jnp.sum(w * w, axis=-1)
    _, idx = lax.top_k(-dist, m)  # the m nearest, nearest first (lowest index on ties)
    coef = eps * jnp.exp(-jnp.arange(m, dtype=jnp.float32) / R)
    rows = w[idx]
    rows = rows + coef[:, None] * (x[None, :] - rows)
    w = w.at[idx].set(rows, unique_indices=True)
    wn = wn.at[idx].set(jnp.sum(rows * rows, axis=-1), unique_indices=True)
    return w, wn


def ng_step(w: jax.Array, x: jax.Array, eps, R, m: int | None = None, full_rank: str = "bitonic") -> jax.Array:
    """One NG update for pattern ``x``: ``w_i += eps * exp(-rank_i / R) * (x - w_i)`` (eqs. 1-3).

    ``m`` (static) is the number of nearest centroids that can get a non-zero weight; ``None`` = k.
    ``m == 1`` is the winner-only (kMC) update; with ``4 m >= k`` all centroids are ranked (``full_rank``
    network) and updated densely, otherwise ``lax.top_k`` picks the ``m`` nearest rows.
    """
    k = w.shape[0]
    m = k if m is None else max(1, min(int(m), k))
    return _ng_step_n(w, jnp.sum(w * w, axis=-1), x, eps, R, m, full_rank)[0]


def update_epoch(w: jax.Array, X: jax.Array, order: jax.Array, eps, R, m: int | None = None,
                 full_rank: str = "bitonic") -> jax.Array:
    """One epoch: ``lax.scan`` over the patterns ``X[order]`` (one run; vmap it for many)."""
    return _epoch(w, X, order, eps, R, m, full_rank)


def _winner_block(w, wn, Xb, eps):
    """Winner-only updates for the B patterns ``Xb`` in sequence, exactly as B single steps.

    Only one row changes per pattern, so the distances of all B patterns to the block-start
    centroids come from one ``(B, d) x (d, k)`` matrix product (``w`` is read once per block instead
    of once per pattern); before pattern ``b`` picks its winner, the rows moved by patterns
    ``0..b-1`` of the block get their distances recomputed from their current values.
    """
    D = wn[None, :] - 2.0 * (Xb @ w.T)  # (B, k)
    touched = []
    for b in range(Xb.shape[0]):
        x = Xb[b]
        col = D[b]
        if touched:
            t = jnp.stack(touched)
            col = col.at[t].set(wn[t] - 2.0 * (w[t] @ x))
        i = first_argmin(col)
        wi = lax.dynamic_index_in_dim(w, i, axis=0, keepdims=False)
        wi = wi + eps * (x - wi)
        w = lax.dynamic_update_index_in_dim(w, wi, i, axis=0)
        wn = lax.dynamic_update_index_in_dim(wn, jnp.sum(wi * wi), i, axis=0)
        touched.append(i)
    return w, wn


WINNER_BLOCK = 16  # patterns per matrix product in the winner-only path (for k >= WINNER_BLOCK_MIN_K)
WINNER_BLOCK_MIN_K = 64  # below this the distances are cheap and the per-pattern loop is faster


def _epoch(w, X, order, eps, R, m, full_rank, block: int | None = None):
    k = w.shape[0]
    m = k if m is None else max(1, min(int(m), k))
    if block is None:
        block = WINNER_BLOCK if k >= WINNER_BLOCK_MIN_K else 1
    c = (w, jnp.sum(w * w, axis=-1))
    n = order.shape[0]
    if m == 1 and block > 1 and n >= block:
        nb = n // block

        def body_block(c, idx):
            return _winner_block(c[0], c[1], X[idx], eps), None

        c = lax.scan(body_block, c, order[: nb * block].reshape(nb, block))[0]
        order = order[nb * block:]

    def body(c, i):
        return _ng_step_n(c[0], c[1], X[i], eps, R, m, full_rank), None

    if order.shape[0]:
        c = lax.scan(body, c, order)[0]
    return c[0]


# ----------------------------------------------------------------------------------------- phases


def _phases(cfg: NGConfig, start: int, stop: int) -> list[tuple[int, int, int]]:
    """Split epochs ``[start, stop)`` into ``(a, b, m)`` runs of constant static m, <= chunk_epochs."""
    ms = neighbourhood_sizes(cfg)
    out = []
    a = start
    while a < stop:
        b = a + 1
        while b < stop and ms[b] == ms[a] and b - a < cfg.chunk_epochs:
            b += 1
        out.append((a, b, int(ms[a])))
        a = b
    return out


def _epochs_with_orders(w, X, orders, eps, R, *, m, full_rank):
    def body(w, xs):
        order, e, r = xs
        return _epoch(w, X, order, e, r, m, full_rank), None

    return lax.scan(body, w, (orders, eps, R))[0]


def seed_chunk_size(S: int, seed_chunk: int = 0) -> int:
    """How many of ``S`` seeds are vmapped together (the rest of the seed axis is a sequential ``lax.map``).

    Automatic (``seed_chunk`` 0): all seeds at once, since the seeds are the vector lanes of the ranking
    network (smaller groups: docs/benchmarks.md).
    """
    if seed_chunk > 0:
        return min(S, seed_chunk)
    return S


def _batched(f: Callable, nargs: int, seed_chunk: int) -> Callable:
    """vmap ``f(w, X, per_run, *shared)`` over the seeds of ``w`` and ``per_run``, in groups."""

    def g(w, X, per_run, *shared):
        c = seed_chunk_size(w.shape[0], seed_chunk)
        if c >= w.shape[0]:
            return jax.vmap(f, in_axes=(0, None, 0) + (None,) * (nargs - 3))(w, X, per_run, *shared)
        return lax.map(lambda a: f(a[0], X, a[1], *shared), (w, per_run), batch_size=c)

    return g


@functools.lru_cache(maxsize=None)
def _compiled(kind: str, m: int, full_rank: str, batched: bool, mesh: Mesh | None, seed_chunk: int = 0) -> Callable:
    # (w, X, orders, eps, R): only w and the orders are per run
    if kind != "orders":
        raise ValueError(kind)
    nargs = 5
    f = functools.partial(_epochs_with_orders, m=m, full_rank=full_rank)
    if batched:
        f = _batched(f, nargs, seed_chunk)
    if mesh is not None:
        f = jax.shard_map(f, mesh=mesh, in_specs=(P("runs"), P(), P("runs")) + (P(),) * (nargs - 3),
                          out_specs=P("runs"), check_vma=False)
    return jax.jit(f, donate_argnums=(0,))


def update_epochs(state: NGState, X, orders, cfg: NGConfig) -> NGState:
    """Run epochs ``state.epoch .. state.epoch + E - 1`` of the schedule with explicit ``(E, n)`` orders.

    This is the lower-level entry point used to feed a NumPy reference the very same visiting order.
    """
    X = _as_f32(X)
    orders = jnp.asarray(orders, jnp.int32)
    start = int(state.epoch)
    eps, R = schedule(cfg)
    w = jnp.array(state.centroids, copy=True)
    for a, b, m in _phases(cfg, start, start + orders.shape[0]):
        f = _compiled("orders", m, cfg.full_rank, False, None)
        w = f(w, X, orders[a - start:b - start], jnp.asarray(eps[a:b]), jnp.asarray(R[a:b]))
    return NGState(w, jnp.asarray(start + orders.shape[0], jnp.int32))


def update_epochs_many(states: NGState, X, orders, cfg: NGConfig) -> NGState:
    """Batched :func:`update_epochs`: ``states.centroids (S, k, d)``, ``orders (S, E, n)``."""
    X = _as_f32(X)
    orders = jnp.asarray(orders, jnp.int32)
    start = int(np.asarray(states.epoch).reshape(-1)[0])
    eps, R = schedule(cfg)
    w = jnp.array(states.centroids, copy=True)
    for a, b, m in _phases(cfg, start, start + orders.shape[1]):
        f = _compiled("orders", m, cfg.full_rank, True, None, cfg.seed_chunk)
        w = f(w, X, orders[:, a - start:b - start], jnp.asarray(eps[a:b]), jnp.asarray(R[a:b]))
    S = w.shape[0]
    return NGState(w, jnp.full((S,), start + orders.shape[1], jnp.int32))


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="epoch") if enabled else None


def _run_phases(w, X, keys, cfg: NGConfig, batched: bool, mesh: Mesh | None, progress: bool, desc: str):
    eps, R = schedule(cfg)
    n = X.shape[0]
    bar = _progress(cfg.epochs, desc, progress)
    keys_b = keys if batched else single_key_batch(keys)
    sharding = NamedSharding(mesh, P("runs")) if mesh is not None else None
    for a, b, m in _phases(cfg, 0, cfg.epochs):
        f = _compiled("orders", m, cfg.full_rank, batched, mesh, cfg.seed_chunk)
        orders = epoch_orders_many(keys_b, n, a, b)
        orders = put(orders, sharding) if sharding is not None else jnp.asarray(orders if batched else orders[0])
        w = f(w, X, orders, jnp.asarray(eps[a:b]), jnp.asarray(R[a:b]))
        if bar is not None:
            w.block_until_ready()
            bar.update(b - a)
            bar.set_postfix(m=m)
    if bar is not None:
        bar.close()
    return w


def fit(key, X, cfg: NGConfig, *, progress: bool = False) -> NGState:
    """Full NG / kMC run for one seed: init + ``cfg.epochs`` epochs in seeded random orders."""
    X = _as_f32(X)
    state = init(key, X, cfg)
    w = _run_phases(state.centroids, X, key, cfg, False, None, progress, "ng")
    return NGState(w, jnp.asarray(cfg.epochs, jnp.int32))


def fit_many(keys, X, cfg: NGConfig, *, mesh: Mesh | None = None, progress: bool = False) -> NGState:
    """``fit`` vmapped over a leading axis of seeds; ``mesh`` (:func:`dng_jax.sharding.runs_mesh`) shards that axis.

    With a mesh of D devices the seeds are padded to a multiple of D (the padding is dropped again);
    every device runs its own seeds, nothing is communicated.
    """
    X = _as_f32(X)
    S = keys.shape[0]
    if mesh is not None:
        D = mesh.devices.size
        pad = (-S) % D
        if pad:
            keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])
    # the start (data points) and the visiting orders are drawn alike on every process; the runs' epochs
    # run on the mesh
    w0 = jax.vmap(lambda kk: init(kk, X, cfg).centroids)(keys)
    if mesh is not None:
        w0 = put(w0, NamedSharding(mesh, P("runs")))
        X = put(X, NamedSharding(mesh, P()))
    w = _run_phases(w0, X, keys, cfg, True, mesh, progress, "ng x%d" % S)
    w = w[:S]
    return NGState(w, jnp.full((S,), cfg.epochs, jnp.int32))
