"""The clustering data (paper II-C): augmented crops of the unlabeled images, their latent, its PCA.

``cluster_data.n_images`` draws (with replacement) from the non-CT1 images, each a random crop of
``cluster_data.crop_size`` px square with the training augmentation; the encoder's last stage
(8x8x2048 for ResNet-50 at 256 px) is globally average-pooled (2048-D) and reduced by PCA to
``cluster_data.pca_dim`` dimensions (paper: 32). The augmented crops themselves are kept: the
encoder is retrained on them.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dng_jax.clustering.pca import PCA, pca_fit, pca_transform
from dng_jax.config import ExperimentConfig
from dng_jax.data.augment import augment_batch
from dng_jax.data.sources import AnySource
from dng_jax.data.partition import Splits
from dng_jax.data.pipeline import random_crop

__all__ = ["ClusterData", "extract_cluster_data", "pooled_latent", "pooled_latent_batch"]


@partial(jax.jit, static_argnums=(0,))
def pooled_latent_batch(model, variables, x):
    """The encoder's last stage, globally average-pooled: ``[B, latent]`` float32."""
    return jnp.mean(model.apply(variables, x, train=False, method="encode")[0].astype(jnp.float32), axis=(1, 2))


def pooled_latent(model, variables, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The pooled latent ``[n, latent]`` of ``uint8`` images under ``variables`` (a U-Net's; only the
    encoder is used): what a later clustering round clusters (after its own PCA)."""
    out = np.zeros((images.shape[0], model.encoder.latent_features), np.float32)
    for s in range(0, images.shape[0], batch_size):
        x = jnp.asarray(images[s : s + batch_size], jnp.float32) / 255.0
        out[s : s + batch_size] = np.asarray(pooled_latent_batch(model, variables, x))
    return out


class ClusterData(NamedTuple):
    images: np.ndarray  # (n, crop, crop, 3) uint8, augmented
    features: np.ndarray  # (n, latent) float32, pooled latent
    pca: PCA
    latent: np.ndarray  # (n, pca_dim) float32, what is clustered
    sources: dict  # {"ids": [...], "types": [...]}: which image each draw came from


def extract_cluster_data(cfg: ExperimentConfig, source: AnySource, manifest: dict[str, str], splits: Splits,
                         variables, model, progress: bool = False) -> ClusterData:
    """Draw, augment and encode the clustering images (deterministic given ``cluster_data.seed``)."""
    cc = cfg.cluster_data
    n, crop = cc.n_images, cc.crop_size
    rng = np.random.default_rng(cc.seed)
    picks = rng.integers(0, len(splits.cluster), n)
    loaded = {}
    for i in tqdm(sorted(set(picks.tolist())), desc="load unlabeled", disable=not progress, leave=False):
        loaded[i] = source.load(splits.cluster[i], with_labels=False).image
    images = np.zeros((n, crop, crop, 3), np.uint8)
    for j, i in enumerate(picks):
        images[j], _ = random_crop(rng, loaded[i], np.zeros(loaded[i].shape[:2], np.uint8), crop)
    key = jax.random.key(cc.seed)

    @jax.jit
    def aug(k, x):
        x = x.astype(jnp.float32) / 255.0
        return augment_batch(k, x, None, cfg.augment)[0] if cfg.augment.enabled else x

    features = np.zeros((n, model.encoder.latent_features), np.float32)
    for s in tqdm(range(0, n, cc.batch_size), desc="latent", disable=not progress, leave=False):
        x = aug(jax.random.fold_in(key, s), jnp.asarray(images[s : s + cc.batch_size]))
        images[s : s + cc.batch_size] = np.asarray(jnp.round(x * 255.0)).astype(np.uint8)
        features[s : s + cc.batch_size] = np.asarray(pooled_latent_batch(model, variables, x))
    pca = pca_fit(jnp.asarray(features), cc.pca_dim)
    latent = np.asarray(pca_transform(pca, jnp.asarray(features)), np.float32)
    sources = {"ids": [splits.cluster[i] for i in picks], "types": [manifest[splits.cluster[i]] for i in picks]}
    return ClusterData(images, features, pca, latent, sources)
