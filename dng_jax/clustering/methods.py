"""The method table: every clustering algorithm as one object of pure functions (optax style).

A *factory* takes the number of clusters ``k`` and the ``clustering`` config section and returns a
:class:`ClusteringMethod` whose functions close over the hyperparameters::

    method = ng(100, ClusteringConfig(epochs=50))
    states = method.fit_many(keys, X)              # every seed of ``keys`` at once (vmapped)
    slots = method.assign(states, X)               # (S, n) index of each pattern's cluster
    centroids, active = method.prototypes(states)  # (S, K, d), (S, K)

The sweep (``sweep.methods``) and ``python -m dng_jax.cluster --method`` both look names up in
:data:`METHODS`; a name ``path/to/file.py:factory`` loads ``factory`` from that file instead, so a
researcher's own variant runs through both without editing the package (see
``docs/clustering_variants.md`` and ``examples/minibatch_kmeans.py``). :func:`run_method` fits and
measures (cluster sizes, normalized entropy, quantization error) the same way for every method.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from dng_jax import distributed
from dng_jax.clustering import gng as gng_lib
from dng_jax.clustering import neural_gas as ng_lib
from dng_jax.clustering.gng import GNGConfig
from dng_jax.clustering.neural_gas import F32_TINY, NGConfig
from dng_jax.clustering.quality import assign_many, normalized_entropy_many, quantization_error_many
from dng_jax.errors import ConfigError
from dng_jax.typed_config import TypedConfig, as_dict, param, require

__all__ = [
    "ClusteringConfig",
    "ClusteringMethod",
    "MethodSpec",
    "ClusteringResult",
    "ng",
    "kmc",
    "gng",
    "METHODS",
    "resolve_method",
    "build_method",
    "load_factory",
    "method_keys",
    "run_method",
]


class ClusteringConfig(TypedConfig):
    """The ``clustering`` section: NG / kMC schedules (paper eqs. 4-5) and GNG's settings."""

    epochs: int = param(200, "epochs T of NG and kMC")
    eps0: float = param(0.1, "NG / kMC learning rate of the first epoch")
    eps_fin: float = param(1e-4, "NG / kMC learning rate at the end")
    r0_factor: float = param(2.0, "NG: R0 = r0_factor * k (our reading of the paper's '2 . k')")
    r0: float | None = param(None, "NG: an absolute R0 instead of r0_factor * k")
    r_fin: float = param(1e-3, "NG: neighbourhood range at the end")
    kmc_r: float = param(1e-3, "kMC: R0 = R_fin = this (only the winner moves)")
    h_min: float = param(F32_TINY, "NG: drop neighbourhood weights below this (default: float32 underflow, exact)")
    full_rank: str = param("bitonic", "NG: ranking of all centroids, 'bitonic' network or XLA 'sort'")
    gng: GNGConfig = param(GNGConfig(), "Growing Neural Gas")

    def check(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        for f in ("eps0", "eps_fin", "r0_factor", "r_fin", "kmc_r"):
            require(getattr(self, f) > 0, f, f"must be > 0, got {getattr(self, f)}")
        require(self.r0 is None or self.r0 > 0, "r0", f"must be > 0 (or None for r0_factor * k), got {self.r0}")
        require(0 < self.h_min < 1, "h_min", f"must lie in (0, 1), got {self.h_min}")
        require(self.full_rank in ("bitonic", "sort"), "full_rank",
                f"must be 'bitonic' or 'sort', got {self.full_rank!r}")


class ClusteringMethod(NamedTuple):
    """A clustering algorithm as pure functions closed over its hyperparameters.

    - ``init(key, X) -> state``: the start of one run.
    - ``fit_many(keys, X, *, mesh=None, progress=False) -> states``: one run per key, states with a
      leading runs axis (vmapped; ``mesh``, a :func:`dng_jax.sharding.runs_mesh`, may shard it).
    - ``assign(states, X) -> (S, n) int32``: the cluster slot (``0..K-1``) of every pattern.
    - ``prototypes(states) -> (centroids (S, K, d), active (S, K) bool)``: the codebook; inactive slots
      (GNG's unused capacity) are no clusters.
    - ``hyperparameters``: a plain dict, written to the output beside the results.
    """

    init: Callable[..., Any]
    fit_many: Callable[..., Any]
    assign: Callable[[Any, Any], jax.Array]
    prototypes: Callable[[Any], tuple[jax.Array, jax.Array]]
    hyperparameters: Mapping[str, Any]


def _every_k(ks: tuple[int, ...], cfg: ClusteringConfig) -> tuple[int, ...]:
    return tuple(ks)


class MethodSpec(NamedTuple):
    """An entry of the method table: the factory ``(k, ClusteringConfig) -> ClusteringMethod``, the k
    values the sweep runs it at (default: every ``sweep.ks``) and the name tables and figures show."""

    factory: Callable[[int, ClusteringConfig], ClusteringMethod]
    ks: Callable[[tuple[int, ...], ClusteringConfig], tuple[int, ...]] = _every_k
    label: str = ""


# ----------------------------------------------------------------------------------------- built-ins


def _nearest(states, X, prototypes):
    centroids, active = prototypes(states)
    return assign_many(X, centroids, active)


def _ng_family(cfg: NGConfig) -> ClusteringMethod:
    def prototypes(states):
        c = states.centroids
        return c, jnp.ones(c.shape[:2], bool)

    return ClusteringMethod(
        init=functools.partial(ng_lib.init, cfg=cfg),
        fit_many=functools.partial(ng_lib.fit_many, cfg=cfg),
        assign=functools.partial(_nearest, prototypes=prototypes),
        prototypes=prototypes,
        hyperparameters=as_dict(cfg),
    )


def ng(k: int, cfg: ClusteringConfig = ClusteringConfig()) -> ClusteringMethod:
    """Neural Gas (paper eqs. 1-5): every centroid moves by ``eps exp(-rank / R)``."""
    r0 = cfg.r0 if cfg.r0 is not None else cfg.r0_factor * k
    return _ng_family(NGConfig(k=k, epochs=cfg.epochs, eps0=cfg.eps0, eps_fin=cfg.eps_fin, r0=r0,
                               r_fin=cfg.r_fin, h_min=cfg.h_min, full_rank=cfg.full_rank))


def kmc(k: int, cfg: ClusteringConfig = ClusteringConfig()) -> ClusteringMethod:
    """Pattern-by-pattern k-means: NG with ``R0 = R_fin = kmc_r`` (only the winner moves)."""
    return _ng_family(NGConfig(k=k, epochs=cfg.epochs, eps0=cfg.eps0, eps_fin=cfg.eps_fin, r0=cfg.kmc_r,
                               r_fin=cfg.kmc_r, h_min=cfg.h_min, full_rank=cfg.full_rank))


def gng(k: int, cfg: ClusteringConfig = ClusteringConfig()) -> ClusteringMethod:
    """Growing Neural Gas (Fritzke 1995) started with ``k`` units, growing up to ``gng.max_units``."""
    gcfg = cfg.gng.replace(start_units=k)

    def prototypes(states):
        return states.w, states.active

    return ClusteringMethod(
        init=functools.partial(gng_lib.init, cfg=gcfg),
        fit_many=functools.partial(gng_lib.fit_many, cfg=gcfg),
        assign=functools.partial(_nearest, prototypes=prototypes),
        prototypes=prototypes,
        hyperparameters=as_dict(gcfg),
    )


#: name -> entry; ``sweep.methods`` and ``dng_jax.cluster --method`` take these names.
METHODS: dict[str, MethodSpec] = {
    "kmc": MethodSpec(kmc, label="kMC"),
    "ng": MethodSpec(ng, label="NG"),
    "gng": MethodSpec(gng, ks=lambda ks, cfg: (cfg.gng.start_units,), label="GNG"),
}

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_factory(spec: str) -> tuple[str, MethodSpec]:
    """``(method id, entry)`` for ``path/to/file.py:name``: the file is imported as a module of its own
    and ``name`` is a factory ``(k, ClusteringConfig) -> ClusteringMethod`` or a :class:`MethodSpec`.
    The id (results, work-dir folders) is ``name``."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise ConfigError(f"method {spec!r}: expected one of {', '.join(METHODS)} or path/to/file.py:factory")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"method {spec!r}: {file} is not a file")
    if not _ID.match(name):
        raise ConfigError(f"method {spec!r}: {name!r} is not a Python name")
    if name in METHODS:
        raise ConfigError(f"method {spec!r}: {name!r} is a built-in method's name; name the factory otherwise")
    module_name = f"dng_jax_variant_{zlib.crc32(str(file.resolve()).encode()):08x}"
    module = sys.modules.get(module_name)
    if module is None:
        spec_ = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec_)
        try:
            spec_.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file: say which and why
            raise ConfigError(f"method {spec!r}: importing {file} failed: {type(e).__name__}: {e}") from e
        sys.modules[module_name] = module
    obj = getattr(module, name, None)
    if obj is None:
        raise ConfigError(f"method {spec!r}: {file} defines no {name!r}")
    if isinstance(obj, MethodSpec):
        return name, obj._replace(label=obj.label or name)
    if not callable(obj):
        raise ConfigError(f"method {spec!r}: {name!r} in {file} is not callable")
    return name, MethodSpec(obj, label=name)


def resolve_method(name: str) -> tuple[str, MethodSpec]:
    """``(method id, entry)`` of a table name or a ``file.py:factory`` string."""
    if name in METHODS:
        return name, METHODS[name]
    return load_factory(name)


def build_method(name: str, k: int, cfg: ClusteringConfig) -> tuple[str, ClusteringMethod]:
    """``(method id, method)`` of ``name`` at ``k``; a factory that raises or returns something else than
    a :class:`ClusteringMethod` is a :class:`ConfigError` naming it (it only builds closures: cheap)."""
    method_id, spec = resolve_method(name)
    try:
        method = spec.factory(k, cfg)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's factory: say which and why
        raise ConfigError(f"method {name!r}: its factory failed for k={k} ({type(e).__name__}: {e}); a factory "
                          f"is called as factory(k, ClusteringConfig)") from None
    if not isinstance(method, ClusteringMethod):
        raise ConfigError(f"method {name!r}: its factory returned {type(method).__name__}, not a ClusteringMethod "
                          f"(see docs/clustering_variants.md)")
    return method_id, method


# ----------------------------------------------------------------------------------------- running


def method_keys(base: jax.Array, method_id: str, k: int, n_seeds: int) -> jax.Array:
    """The sweep's per-run keys of one configuration: ``split(fold_in(base, crc32("<id>_<k>")), S)``."""
    return jax.random.split(jax.random.fold_in(base, zlib.crc32(f"{method_id}_{k}".encode()) % (2**31)), n_seeds)


class ClusteringResult(NamedTuple):
    """What every run of a configuration produced (host arrays, leading runs axis S)."""

    slots: np.ndarray  # (S, n) int32, the assigned slot
    labels: np.ndarray  # (S, n) int32, slots renumbered 0..units-1 over the active slots
    centroids: np.ndarray  # (S, K, d) float32
    active: np.ndarray  # (S, K) bool
    units: np.ndarray  # (S,) int, clusters per run
    norm_entropy: np.ndarray  # (S,) H / log(units) of the cluster sizes (Fig. 8)
    quant_error: np.ndarray  # (S,) mean squared distance to the nearest active prototype

    @property
    def n_classes(self) -> int:
        """Outputs of a classifier head for these labels: the largest number of clusters of a run."""
        return int(self.units.max())


def run_method(method: ClusteringMethod, keys: jax.Array, X, *, mesh: Mesh | None = None,
               progress: bool = False) -> ClusteringResult:
    """Fit every seed of ``keys`` on ``X (n, d)`` and measure the result (see :class:`ClusteringResult`).

    Raises ``FloatingPointError`` when a quantization error is not finite (data too large for float32
    distances, or a diverged method): labels from overflowing distances are meaningless."""
    X = jnp.asarray(X, jnp.float32)
    states = distributed.to_local(method.fit_many(keys, X, mesh=mesh, progress=progress))  # runs on other processes too
    slots = np.asarray(method.assign(states, X)).astype(np.int32)
    centroids, active = method.prototypes(states)
    act = np.asarray(active, bool)
    units = act.sum(axis=1)
    rank = np.cumsum(act, axis=1) - 1  # renumber the active slots 0..units-1 (identity for kMC / NG)
    labels = np.take_along_axis(rank, slots, axis=1).astype(np.int32)
    ent = np.asarray(normalized_entropy_many(jnp.asarray(slots), act.shape[1], jnp.asarray(act)))
    qe = np.asarray(quantization_error_many(X, centroids, jnp.asarray(act)))
    if not np.all(np.isfinite(qe)):
        raise FloatingPointError("the quantization error is not finite: the data (or the fitted centroids) "
                                 "overflow float32 squared distances; rescale the data first")
    return ClusteringResult(slots, labels, np.asarray(centroids, np.float32), act, units, ent, qe)
