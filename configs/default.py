"""Tiny model on the bundled mini-set: a smoke run of the whole pipeline in a few minutes on a 2-core CPU.

The mini-set has only 4 CT1 training images, so the MAP of this run means little; it checks the plumbing.

``python -m dng_jax.train --config configs/default.py --workdir runs/default``
"""

import importlib.util
from pathlib import Path


def _paper():
    spec = importlib.util.spec_from_file_location("dng_configs_paper", Path(__file__).with_name("paper.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_config():
    c = _paper().get_config()
    c.data.path = None  # bundled mini-set (18 images, 4 CT1 training images)
    c.data.crop_size = 128
    c.model.stage_sizes = (1, 1, 1, 1)
    c.model.width = 8
    c.model.decoder_features = (64, 32, 16, 16, 8)
    c.train.epochs = 200  # 4 training images, batch 4: one step per epoch
    c.train.batch_size = 4
    c.train.checkpoint_every = 50
    c.train.log_every = 10
    c.train.eval_every_epochs = 50
    c.eval.tile_size = 512
    return c
