"""Tiny model on the bundled mini-set: a smoke run of the whole pipeline in a few minutes on a 2-core CPU.

The mini-set has only 4 CT1 training images, so the MAP of this run means little; it checks the plumbing.

``python -m dng_jax.sweep`` (the sweep's embedded default) or
``python -m dng_jax.train --config configs/default.py --workdir runs/default``
"""

from pathlib import Path

import ml_collections

from dng_jax.config import load_config


def get_config():
    c = load_config(Path(__file__).with_name("paper.py"))
    # None: the bundled mini-set (18 images, 4 CT1 training images); a FieldReference so that
    # --config.data.path=/path/to/stage1_train.zip can still override it
    c.data.path = ml_collections.FieldReference(None, field_type=str)
    c.data.crop_size = 128
    c.data.protocol = "wide"  # a CT1 test and validation set, every non-CT1 image scored
    c.model.stage_sizes = (1, 1, 1, 1)
    c.model.width = 8
    c.model.decoder_features = (64, 32, 16, 16, 8)
    # each image standardised at the encoder's input and a soft Dice term beside the cross-entropy (as
    # configs/cpu_real.py): on 4 training images the paper's recipe ends wherever the last bits of the
    # host's instruction set push it, this one near the same network on every host (docs/results.md)
    c.model.input_norm = "per_image"
    c.train.dice_weight = 1.0
    c.train.epochs = 400  # 4 training images, batch 4: one step per epoch
    c.train.batch_size = 4
    c.train.checkpoint_every = 50
    c.train.log_every = 10
    c.train.eval_every_epochs = 50
    c.eval.tile_size = 512

    # Deep-clustering sweep at smoke-test size (python -m dng_jax.sweep with no arguments).
    c.cluster_data.n_images = 240
    c.cluster_data.crop_size = 64
    c.cluster_data.pca_dim = 16
    c.clustering.epochs = 40
    c.clustering.gng.max_units = 64
    c.clustering.gng.epochs = 5
    c.retrain.epochs = 4
    c.retrain.batch_size = 16
    c.retrain.crop_size = 32
    c.retrain.decay_every_epochs = 2
    c.sweep.ks = (5, 20)
    c.sweep.seeds = 4
    c.sweep.seeds_per_chunk = 4
    c.sweep.only = ""  # all configurations; a job of a split sweep: 'i/N' or names (docs/scaling.md)
    c.report.tsne_points = 240
    c.report.panels = 3
    return c
