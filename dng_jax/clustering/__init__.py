"""Clustering of latent vectors: NG and kMC (``neural_gas``), GNG (``gng``), PCA, quality measures,
and plain NumPy references (``reference``)."""

from dng_jax.clustering import gng, neural_gas, reference
from dng_jax.clustering.gng import GNGConfig, GNGState
from dng_jax.clustering.neural_gas import (
    NGConfig,
    NGState,
    epoch_order,
    epoch_orders,
    fit,
    fit_many,
    init,
    init_from,
    kmc_config,
    ng_config,
    runs_mesh,
    schedule,
    update_epochs,
    update_epochs_many,
)
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
    "gng", "neural_gas", "reference", "GNGConfig", "GNGState",
    "NGConfig", "NGState", "epoch_order", "epoch_orders", "fit", "fit_many", "init", "init_from",
    "kmc_config", "ng_config", "runs_mesh", "schedule", "update_epochs", "update_epochs_many",
    "PCA", "pca_fit", "pca_fit_transform", "pca_transform",
    "assign", "assign_many", "cluster_sizes", "entropy_std", "normalized_entropy",
    "normalized_entropy_many", "quantization_error", "quantization_error_many",
]
