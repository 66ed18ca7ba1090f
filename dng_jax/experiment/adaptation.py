"""From pseudo-labels to adapted U-Nets: one chunk of runs through every retraining variant.

The paper's step is one retraining of the encoder on the pseudo-labels (:mod:`.retrain`); with the
``retrain`` section's defaults this module does exactly that. Beyond the paper, composable with every
clustering method:

- ``rounds > 1`` (DeepCluster): after retraining, each run's encoder encodes the clustering images again,
  the pooled latent gets its own PCA and is clustered again (same method, the run's key folded with the
  round), and the run retrains on the new labels from where it stopped, with a fresh head.
- ``segmentation_weight > 0``: every retraining step also learns the segmentation of a CT1 batch with
  the whole U-Net (:func:`~dng_jax.experiment.retrain.make_retrain_step`).
- ``decoder_epochs > 0``: at the end each run's decoder learns CT1 again on its fixed encoder
  (:mod:`.decoder_tuning`).
- ``batch_norm``: see :class:`~dng_jax.experiment.retrain.RetrainConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from dng_jax import distributed
from dng_jax.clustering.methods import ClusteringMethod, run_method
from dng_jax.clustering.pca import pca_fit, pca_transform
from dng_jax.data.pipeline import CropBatches
from dng_jax.experiment.decoder_tuning import tune_decoders
from dng_jax.experiment.features import pooled_latent
from dng_jax.experiment.retrain import EncoderClassifier, retrain_runs
from dng_jax.metric_writers import MetricWriter
from dng_jax.models import with_conv
from dng_jax.models.conv import resolve_retrain_conv
from dng_jax.models.unet import UNet

__all__ = ["AdaptedRuns", "adapt_runs", "run_variables", "needs_ct1_batches"]


class AdaptedRuns(NamedTuple):
    variables: dict  # what the runs changed: {"params": {"encoder"[, "decoder"]}, "batch_stats": ...}, runs axis
    #                  (with a mesh: split over it, padded to a multiple of its devices; see adapt_runs)
    losses: np.ndarray  # [rounds * retrain.epochs, R] pseudo-label cross-entropy per epoch
    decoder_losses: np.ndarray  # [decoder_epochs, R] segmentation loss of the decoder tuning
    later_rounds: list[dict[str, Any]]  # per round after the first: {"units": [R], "norm_entropy": [R]}


def needs_ct1_batches(cfg) -> bool:
    """Whether the ``retrain`` section trains on CT1 crops (joint objective or decoder tuning)."""
    return cfg.retrain.segmentation_weight > 0 or cfg.retrain.decoder_epochs > 0


def run_variables(baseline: dict, adapted: dict, j: int) -> dict:
    """Run ``j``'s whole U-Net: the baseline's variables with the subtrees the runs changed replaced."""
    return {col: {**baseline[col], **{name: jax.tree.map(lambda a: a[j], tree) for name, tree in adapted[col].items()}}
            for col in ("params", "batch_stats")}


def _subtree(variables: dict, name: str) -> dict:
    return {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name]}


def _recluster(unet: UNet, method: ClusteringMethod, keys: jax.Array, images: np.ndarray, baseline: dict,
               encoders: dict, pca_dim: int, batch_size: int) -> tuple[np.ndarray, dict[str, list], int]:
    """Each run's labels ``[R, n]`` from its own encoder's latent (own PCA, own clustering)."""
    labels, units, entropy, slots = [], [], [], 0
    for j in range(keys.shape[0]):
        variables = run_variables(baseline, {"params": {"encoder": encoders["params"]},
                                             "batch_stats": {"encoder": encoders["batch_stats"]}}, j)
        features = jnp.asarray(pooled_latent(unet, variables, images, batch_size))
        latent = pca_transform(pca_fit(features, pca_dim), features)
        res = run_method(method, keys[j][None], latent)
        labels.append(res.labels[0])
        units.append(int(res.units[0]))
        entropy.append(float(res.norm_entropy[0]))
        slots = res.centroids.shape[1]
    return np.stack(labels), {"units": units, "norm_entropy": entropy}, slots


def adapt_runs(key: jax.Array, cfg, unet: UNet, baseline: dict, images: np.ndarray, labels: np.ndarray,
               n_classes: int, *, method: ClusteringMethod | None = None, method_keys: jax.Array | None = None,
               run_ids: Sequence[int], ct1_batches: CropBatches | None = None, progress: bool = False,
               desc: str = "retrain", writer: MetricWriter | None = None, mesh: Mesh | None = None) -> AdaptedRuns:
    """Adapt the runs ``run_ids`` (labels ``[R, n]`` of the first clustering, heads of ``n_classes``).

    ``cfg``: the :class:`~dng_jax.config.ExperimentConfig`; ``baseline``: the U-Net's variables;
    ``method`` / ``method_keys`` (the runs' clustering keys, ``[R]``): for later rounds; ``ct1_batches``:
    for the joint objective and the decoder tuning (:func:`needs_ct1_batches`). The first round uses
    ``key`` itself, so the paper's variant gives the paper's step bit for bit.

    ``mesh`` (:func:`dng_jax.sharding.runs_mesh`, used with several devices): the runs are split over
    its devices, padded to a multiple of their number with copies of the last run; the variables come
    back split and padded (:func:`dng_jax.distributed.local_runs` picks a process's runs), the losses and
    later rounds' statistics whole, for the ``R`` runs."""
    rc = cfg.retrain
    if rc.rounds > 1 and (method is None or method_keys is None):
        raise ValueError("retrain.rounds > 1 needs the clustering method and the runs' keys")
    if needs_ct1_batches(cfg) and ct1_batches is None:
        raise ValueError("retrain.segmentation_weight or retrain.decoder_epochs needs CT1 batches")
    joint = rc.segmentation_weight > 0
    ids = np.asarray(run_ids, np.int32)
    n_runs = len(ids)
    if mesh is not None:  # every device gets the same number of runs: repeat the last one
        pad = np.r_[np.arange(n_runs), np.full((-n_runs) % mesh.devices.size, n_runs - 1)]
        ids, labels = ids[pad], np.asarray(labels)[pad]
        method_keys = None if method_keys is None else method_keys[jnp.asarray(pad)]
    encoders, decoders = _subtree(baseline, "encoder"), _subtree(baseline, "decoder")
    # the networks stepped vmapped over runs compute their convolutions by retrain.conv (same parameters)
    runs_unet = with_conv(unet, resolve_retrain_conv(rc.conv, unet.encoder.conv))
    stacked, losses, later = False, [], []
    for r in range(rc.rounds):
        if r > 0:
            keys = jax.vmap(lambda k: jax.random.fold_in(k, r))(method_keys)
            labels, stats, n_classes = _recluster(unet, method, keys, images, baseline, distributed.to_local(encoders),
                                                  cfg.cluster_data.pca_dim, cfg.cluster_data.batch_size)
            stats = {name: values[:n_runs] for name, values in stats.items()}
            later.append(stats)
        clf = EncoderClassifier(runs_unet.encoder, n_classes)
        states, round_losses = retrain_runs(
            key if r == 0 else jax.random.fold_in(key, r), clf, encoders, images, labels, rc, cfg.augment,
            progress=progress, desc=desc if rc.rounds == 1 else f"{desc} round {r + 1}", run_ids=ids,
            writer=writer, stacked=stacked, decoder_variables=decoders if joint else None, unet=runs_unet,
            seg_batches=ct1_batches, seg_train=cfg.train, first_epoch=r * rc.epochs, mesh=mesh)
        losses.append(round_losses)
        encoders = _subtree({"params": states.params, "batch_stats": states.batch_stats}, "encoder")
        if joint:
            decoders = _subtree({"params": states.params, "batch_stats": states.batch_stats}, "decoder")
        stacked = True
    decoder_losses = np.zeros((0, len(ids)), np.float32)
    if rc.decoder_epochs:
        decoders, decoder_losses = tune_decoders(
            jax.random.fold_in(key, 1_000_003), runs_unet, encoders, decoders, ct1_batches, rc.decoder_epochs, cfg.train,
            cfg.augment, run_ids=ids, encoder_batch_stats=rc.batch_norm == "adabn", stacked_decoder=joint,
            progress=progress, desc=f"{desc} decoder", mesh=mesh)
    changed = {"encoder": encoders}
    if joint or rc.decoder_epochs:
        changed["decoder"] = decoders
    variables = {col: {name: tree[col] for name, tree in changed.items()} for col in ("params", "batch_stats")}
    return AdaptedRuns(variables, np.concatenate(losses)[:, :n_runs], decoder_losses[:, :n_runs], later)
