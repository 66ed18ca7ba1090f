"""The real DSB2018 zip at a size that trains on a 2-core CPU in about 30 minutes.

``python -m dng_jax.train --config configs/cpu_real.py --workdir runs/cpu_real
[--config.data.path=/path/to/stage1_train.zip]``

Reduced from the paper: a bottleneck ResNet with stages (2, 2, 2, 2) and width 16 (latent 8x8x512 for a
256x256 input), a narrower decoder, 128x128 crops, batch 8. Data: the paper config's default
(../shared/data/dsb2018/stage1_train.zip next to the repository).

Beyond the paper, chosen on the CT1 validation images (scripts/studies/ablate_baseline.py, docs/history.md): each
image standardised at the encoder's input, a soft Dice term beside the cross-entropy, and 80 epochs
(~4500 steps, ~40 min on 2 cores). Instances are grown back over the predicted border ring
(postprocess.expand_distance = 2, from configs/paper.py).
"""

from pathlib import Path

from dng_jax.config import load_config


def get_config():
    c = load_config(Path(__file__).with_name("paper.py"))
    c.data.crop_size = 128
    c.data.protocol = "wide"  # a CT1 test and validation set, every non-CT1 image scored
    c.model.stage_sizes = (2, 2, 2, 2)
    c.model.width = 16
    c.model.decoder_features = (128, 64, 32, 16, 16)
    c.model.input_norm = "per_image"
    c.train.dice_weight = 1.0
    c.train.epochs = 80  # 57 steps per epoch
    c.train.batch_size = 8
    c.train.checkpoint_every = 200
    c.train.log_every = 10
    c.train.eval_every_epochs = 5
    c.eval.tile_size = 1024

    # Deep-clustering sweep at CPU scale (python -m dng_jax.sweep --config configs/cpu_real.py): about
    # an hour on 2 cores after the baseline. Reduced from the paper: 1500 clustering crops of 128x128
    # (paper 5000 of 256x256), retraining on 64x64 crops for 5 epochs (paper 128x128, 20), NG/kMC for 50
    # epochs (paper 200), k up to 500 (paper 1000), 8 seeds (paper 48).
    c.cluster_data.n_images = 1500
    c.cluster_data.crop_size = 128
    c.clustering.epochs = 50
    c.clustering.gng.epochs = 5
    c.retrain.epochs = 5
    c.retrain.crop_size = 64
    c.retrain.decay_every_epochs = 3
    c.sweep.ks = (5, 50, 100, 500)
    c.sweep.seeds = 8
    c.sweep.seeds_per_chunk = 8
    c.sweep.only = ""  # all configurations; one job per shard: --config.sweep.only=i/N (docs/scaling.md)
    c.report.tsne_points = 1500
    return c
