"""Stage 2: the clustering images, their pooled latent and its PCA (:mod:`dng_jax.experiment.features`),
computed once by process 0 into ``cluster_data/``; ``latent.npy`` is the last of its files."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dng_jax import distributed
from dng_jax.experiment import layout
from dng_jax.experiment.features import extract_cluster_data
from dng_jax.experiment.resume import stage_status
from dng_jax.experiment.stages.context import StageContext
from dng_jax.io import stage
from dng_jax.io.atomic import atomic_save_npy, remove_tree

__all__ = ["ClusterData", "stage_cluster_data"]

log = logging.getLogger("dng_jax.sweep")


class ClusterData(NamedTuple):
    images: np.ndarray  # the augmented clustering crops (memory-mapped)
    latent: np.ndarray  # their pooled latent after the PCA: what is clustered
    sources: dict  # where each crop came from ("types": its cell type, for Fig. 2)
    upstream: str  # names these bytes in the configurations' markers


def stage_cluster_data(ctx: StageContext) -> ClusterData:
    """The clustering data, computed once (by process 0; other processes read what it wrote).

    The marker records the baseline network (``ctx.baseline_id``), so data made from another baseline (one
    trained again after its checkpoints were lost) is computed again. Computed again when a file is
    damaged; when that gives other bytes than before (it should not: the stage is seeded), every
    configuration is computed again too, since it was made from the old ones."""
    cdir = layout.stage_dir(ctx.workdir, layout.CLUSTER_DATA)
    distributed.on_writer(_make_cluster_data, ctx, cdir)
    done = stage.read_done(cdir)
    upstream = hashlib.sha256(json.dumps([done["files"][n] for n in (layout.IMAGES, layout.LATENT)],
                                         sort_keys=True).encode()).hexdigest()
    return ClusterData(np.load(cdir / layout.IMAGES, mmap_mode="r"), np.load(cdir / layout.LATENT),
                       layout.read_json(cdir / layout.SOURCES), upstream)


def _make_cluster_data(ctx: StageContext, cdir: Path) -> None:
    before = stage.read_done(cdir)
    status = stage_status(cdir, layout.CLUSTER_DATA_FILES, baseline=ctx.baseline_id)
    redo = not status.done
    if status.done and (before or {}).get("baseline", ctx.baseline_id) != ctx.baseline_id:  # (adopted: no record)
        log.warning(f"{cdir} was made from another baseline network: computing it again")
        redo = True
    if not redo:
        return
    cfg = ctx.cfg
    cc, splits = cfg.cluster_data, ctx.data.splits
    log.info(f"stage 2: drawing {cc.n_images} augmented {cc.crop_size}x{cc.crop_size} crops from "
             f"{len(splits.cluster)} clustering images (no mask used)")
    data = extract_cluster_data(cfg, ctx.data.source, ctx.data.manifest, splits, ctx.variables, ctx.model,
                                ctx.progress)
    atomic_save_npy(cdir / layout.IMAGES, data.images)
    atomic_save_npy(cdir / layout.FEATURES, data.features)
    atomic_save_npy(cdir / layout.PCA_MEAN, np.asarray(data.pca.mean))
    atomic_save_npy(cdir / layout.PCA_COMPONENTS, np.asarray(data.pca.components))
    layout.write_json(cdir / layout.SOURCES, data.sources)
    atomic_save_npy(cdir / layout.LATENT, data.latent)
    if before is not None and any(before["files"].get(n) != stage.file_record(cdir / n)
                                  for n in (layout.IMAGES, layout.LATENT)):
        log.warning("the clustering data came out different from before: every configuration is computed again")
        # before the marker: a kill here is redone
        remove_tree(layout.stage_dir(ctx.workdir, layout.RUNS), ignore_errors=True)
    stage.write_done(cdir, layout.CLUSTER_DATA_FILES, baseline=ctx.baseline_id)  # written last: marks it done
