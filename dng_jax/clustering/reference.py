"""Plain NumPy references of NG, kMC and GNG, written straight from the equations (used in tests and
as the baseline of ``scripts/bench/bench_cluster.py``).

They take the start and the visiting orders explicitly, so that a JAX run and a reference run can be
fed exactly the same ones. Everything is float32 (like the JAX code) unless ``dtype`` says otherwise.
The NG reference is a fair baseline: per pattern one vectorised distance computation over the
centroids, one ``argsort``, and one vectorised update of all centroids; kMC uses ``argmin`` and
updates one row; GNG is vectorised over the units.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ng_schedule", "ng_reference", "kmc_reference", "gng_reference", "GNGReferenceResult"]


def ng_schedule(epochs: int, eps0: float, eps_fin: float, r0: float, r_fin: float):
    """eps(t) = eps0 (eps_fin/eps0)^(t/T), R(t) = R0 (R_fin/R0)^(t/T), t = 0..T-1 (eqs. 4-5)."""
    t = np.arange(epochs, dtype=np.float64) / epochs
    eps = eps0 * (eps_fin / eps0) ** t
    R = r0 * (r_fin / r0) ** t
    return eps.astype(np.float32), R.astype(np.float32)


def ng_reference(X, w0, orders, eps, R, dtype=np.float32) -> np.ndarray:
    """NG (eqs. 1-3): for each pattern, ranks by one stable argsort, every centroid moves.

    ``orders``: (E, n) visiting orders, ``eps``/``R``: (E,) per-epoch values.
    """
    X = np.asarray(X, dtype)
    w = np.array(w0, dtype, copy=True)
    k = w.shape[0]
    arange = np.arange(k, dtype=dtype)
    ranks = np.empty(k, dtype)
    for order, e, r in zip(np.asarray(orders), np.asarray(eps, dtype), np.asarray(R, dtype)):
        for i in order:
            diff = X[i] - w
            dist = np.einsum("ij,ij->i", diff, diff)
            ranks[np.argsort(dist, kind="stable")] = arange
            h = np.exp(-ranks / r)
            w += (e * h)[:, None] * diff
    return w


def kmc_reference(X, w0, orders, eps, dtype=np.float32) -> np.ndarray:
    """Pattern-by-pattern k-means: only the nearest centroid moves, ``w_j += eps (x - w_j)``."""
    X = np.asarray(X, dtype)
    w = np.array(w0, dtype, copy=True)
    for order, e in zip(np.asarray(orders), np.asarray(eps, dtype)):
        for i in order:
            x = X[i]
            diff = x - w
            j = np.argmin(np.einsum("ij,ij->i", diff, diff))
            w[j] += e * (x - w[j])
    return w


# -------------------------------------------------------------------------------------------- GNG


class GNGReferenceResult:
    """Units (fixed capacity, like the JAX state), active mask, edge ages (-1 = no edge), errors,
    counted steps, and how many units were inserted and removed."""

    def __init__(self, w, active, age, error, steps, inserted, removed):
        self.w, self.active, self.age, self.error, self.steps = w, active, age, error, steps
        self.inserted, self.removed = inserted, removed


def _start(w0, N: int, dtype) -> GNGReferenceResult:
    """The ``len(w0)`` start units in slots 0.., no edges, zero errors."""
    n0, d = np.asarray(w0).shape
    w = np.zeros((N, d), dtype)
    w[:n0] = w0
    active = np.zeros(N, bool)
    active[:n0] = True
    return GNGReferenceResult(w, active, -np.ones((N, N), np.int32), np.zeros(N, dtype), 0, 0, 0)


def _prune_edges(st: GNGReferenceResult, s1: int, neighbours, max_age: int) -> None:
    """Remove the edges of ``s1`` older than ``max_age``, then the units that this left without edges."""
    for u in neighbours:
        if st.age[s1, u] > max_age:
            st.age[s1, u] = -1
            st.age[u, s1] = -1
            if not np.any(st.age[u] >= 0):
                st.active[u] = False
                st.removed += 1
                st.error[u] = 0
                st.w[u] = 0


def _insert(st: GNGReferenceResult, alpha) -> None:
    """A new unit between q (largest error) and its worst neighbour f, in the lowest free slot."""
    q = int(np.argmax(np.where(st.active, st.error, -np.inf)))
    nq = st.age[q] >= 0
    free = np.flatnonzero(~st.active)
    if not (nq.any() and free.size):
        return
    f = int(np.argmax(np.where(nq, st.error, -np.inf)))
    r = int(free[0])
    st.w[r] = st.w.dtype.type(0.5) * (st.w[q] + st.w[f])
    st.active[r] = True
    st.inserted += 1
    st.age[q, f] = st.age[f, q] = -1
    st.age[q, r] = st.age[r, q] = 0
    st.age[f, r] = st.age[r, f] = 0
    st.error[q] *= alpha
    st.error[f] *= alpha
    st.error[r] = st.error[q]


def _step(st: GNGReferenceResult, x, eps_b, eps_n, max_age: int, lam: int, alpha, decay, min_dist) -> None:
    """One pattern, in place."""
    # 1. nearest and second nearest active unit (vectorised over units, lowest index on ties)
    diff = x - st.w
    dist = np.where(st.active, np.einsum("ij,ij->i", diff, diff), np.inf)
    s1 = int(np.argmin(dist))
    dbest = dist[s1]
    dist[s1] = np.inf
    s2 = int(np.argmin(dist))
    # NeuPy's "minimal distance for updates": the step is skipped altogether
    if np.sqrt(dbest) < min_dist:
        return
    st.steps += 1
    neighbours = np.flatnonzero(st.age[s1] >= 0)
    # 2. age the edges of s1
    st.age[s1, neighbours] += 1
    st.age[neighbours, s1] += 1
    # 3. error of the winner (eq. 6)
    st.error[s1] += dbest
    # 4. move the winner and its topological neighbours
    st.w[s1] += eps_b * diff[s1]
    st.w[neighbours] += eps_n * diff[neighbours]
    # 5. connect s1 and s2 (age 0)
    if np.isfinite(dist[s2]):
        st.age[s1, s2] = 0
        st.age[s2, s1] = 0
    # 6. remove old edges, then units that this left without edges
    _prune_edges(st, s1, neighbours, max_age)
    # 7. every lam steps a new unit between q (largest error) and its worst neighbour f
    if st.steps % lam == 0:
        _insert(st, alpha)
    # 8. global error decay
    st.error *= decay


def gng_reference(X, w0, orders, *, max_units: int, eps_b=0.1, eps_n=0.001, max_age=50, lam=100,
                  alpha=0.5, decay=0.995, min_dist=0.2, dtype=np.float32,
                  state: GNGReferenceResult | None = None) -> GNGReferenceResult:
    """Growing Neural Gas (Fritzke 1995) with the conventions of ``dng_jax.clustering.gng``.

    One pattern at a time, vectorised over the units; the units live in ``max_units`` slots (the
    ``len(w0)`` start units in slots 0..), a new unit takes the lowest free slot, ties go to the
    lowest index. ``state`` continues a previous run (``w0`` is then ignored).
    """
    X = np.asarray(X, dtype)
    if state is not None:
        st = GNGReferenceResult(*(np.array(a, copy=True) for a in (state.w, state.active, state.age, state.error)),
                                state.steps, state.inserted, state.removed)
    else:
        st = _start(w0, max_units, dtype)
    eps_b, eps_n, alpha, decay = (dtype(v) for v in (eps_b, eps_n, alpha, decay))
    for order in np.asarray(orders):
        for i in order:
            _step(st, X[i], eps_b, eps_n, max_age, lam, alpha, decay, min_dist)
    return st
