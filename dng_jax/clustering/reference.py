"""Plain NumPy references of NG, kMC and GNG, written straight from the equations (used in tests and
as the baseline of ``scripts/bench_cluster.py``).

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


def gng_reference(X, w0, orders, *, max_units: int, eps_b=0.1, eps_n=0.001, max_age=50, lam=100,
                  alpha=0.5, decay=0.995, min_dist=0.2, dtype=np.float32,
                  state: GNGReferenceResult | None = None) -> GNGReferenceResult:
    """Growing Neural Gas (Fritzke 1995) with the conventions of ``dng_jax.clustering.gng``.

    One pattern at a time, vectorised over the units; the units live in ``max_units`` slots (the
    ``len(w0)`` start units in slots 0..), a new unit takes the lowest free slot, ties go to the
    lowest index.
    """
    X = np.asarray(X, dtype)
    N = max_units
    if state is not None:  # continue a previous run (w0 is then ignored)
        w, active, age, error = (np.array(a, copy=True) for a in (state.w, state.active, state.age, state.error))
        steps, inserted, removed = state.steps, state.inserted, state.removed
    else:
        n0, d = np.asarray(w0).shape
        w = np.zeros((N, d), dtype)
        w[:n0] = w0
        active = np.zeros(N, bool)
        active[:n0] = True
        error = np.zeros(N, dtype)
        age = -np.ones((N, N), np.int32)
        steps = inserted = removed = 0
    eps_b, eps_n, alpha, decay = (dtype(v) for v in (eps_b, eps_n, alpha, decay))
    for order in np.asarray(orders):
        for i in order:
            x = X[i]
            # 1. nearest and second nearest active unit (vectorised over units, lowest index on ties)
            diff = x - w
            dist = np.where(active, np.einsum("ij,ij->i", diff, diff), np.inf)
            s1 = int(np.argmin(dist))
            dbest = dist[s1]
            dist[s1] = np.inf
            s2 = int(np.argmin(dist))
            has_s2 = np.isfinite(dist[s2])
            # NeuPy's "minimal distance for updates": the step is skipped altogether
            if np.sqrt(dbest) < min_dist:
                continue
            steps += 1
            neighbours = np.flatnonzero(age[s1] >= 0)
            # 2. age the edges of s1
            age[s1, neighbours] += 1
            age[neighbours, s1] += 1
            # 3. error of the winner (eq. 6)
            error[s1] += dbest
            # 4. move the winner and its topological neighbours
            w[s1] += eps_b * diff[s1]
            w[neighbours] += eps_n * diff[neighbours]
            # 5. connect s1 and s2 (age 0)
            if has_s2:
                age[s1, s2] = 0
                age[s2, s1] = 0
            # 6. remove old edges, then units that this left without edges
            for u in neighbours:
                if age[s1, u] > max_age:
                    age[s1, u] = -1
                    age[u, s1] = -1
                    if not np.any(age[u] >= 0):
                        active[u] = False
                        removed += 1
                        error[u] = 0
                        w[u] = 0
            # 7. every lam steps a new unit between q (largest error) and its worst neighbour f
            if steps % lam == 0:
                q = int(np.argmax(np.where(active, error, -np.inf)))
                nq = age[q] >= 0
                free = np.flatnonzero(~active)
                if nq.any() and free.size:
                    f = int(np.argmax(np.where(nq, error, -np.inf)))
                    r = int(free[0])
                    w[r] = dtype(0.5) * (w[q] + w[f])
                    active[r] = True
                    inserted += 1
                    age[q, f] = age[f, q] = -1
                    age[q, r] = age[r, q] = 0
                    age[f, r] = age[r, f] = 0
                    error[q] *= alpha
                    error[f] *= alpha
                    error[r] = error[q]
            # 8. global error decay
            error *= decay
    return GNGReferenceResult(w, active, age, error, steps, inserted, removed)
