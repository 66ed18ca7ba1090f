"""Clustering of latent vectors: NG and kMC (``neural_gas``), GNG (``gng``), their ranks (``ranking``) and
seeded visiting orders (``orders``), the method table (``methods``), PCA, quality measures, and plain NumPy
references (``reference``)."""

from dng_jax.clustering import gng, methods, neural_gas, orders, ranking, reference
from dng_jax.clustering.gng import GNGConfig, GNGState
from dng_jax.clustering.methods import (
    METHODS,
    ClusteringConfig,
    ClusteringMethod,
    ClusteringResult,
    MethodSpec,
    resolve_method,
    run_method,
)
from dng_jax.clustering.neural_gas import NGConfig, NGState, kmc_config, ng_config
from dng_jax.clustering.pca import PCA, pca_fit, pca_fit_transform, pca_transform
from dng_jax.clustering.quality import (
    assign,
    assign_many,
    cluster_sizes,
    entropy_std,
    normalized_entropy,
    normalized_entropy_many,
    quantization_error,
    quantization_error_many,
)

__all__ = [
    "gng", "methods", "neural_gas", "orders", "ranking", "reference",
    "METHODS", "ClusteringConfig", "ClusteringMethod", "ClusteringResult", "MethodSpec", "resolve_method",
    "run_method", "GNGConfig", "GNGState", "NGConfig", "NGState", "kmc_config", "ng_config",
    "PCA", "pca_fit", "pca_fit_transform", "pca_transform",
    "assign", "assign_many", "cluster_sizes", "entropy_std", "normalized_entropy",
    "normalized_entropy_many", "quantization_error", "quantization_error_many",
]
