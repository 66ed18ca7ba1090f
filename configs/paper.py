"""The paper's settings (Sec. II-C): ResNet-50 U-Net, 256x256 crops, LAMB 1e-3, batch 8, 50 epochs on CT1.

For a GPU/TPU. Every field is listed, with its meaning, by ``python -m dng_jax.sweep --config configs/paper.py
--config.help``; the typed sections that check them are in ``dng_jax/config.py``. ``python -m dng_jax.train --config configs/paper.py --workdir runs/paper
--config.data.path=/path/to/stage1_train.zip`` (default: ../shared/data/dsb2018/stage1_train.zip
next to the repository).
"""

from pathlib import Path

import ml_collections
import numpy as np


def default_data_path() -> str:
    """The real DSB2018 zip at ``shared/data/dsb2018/stage1_train.zip`` beside the repository (``../shared``
    seen from it), found from this file's location or, after a plain ``pip install``, from the working
    directory; override with ``--config.data.path``."""
    here = Path(__file__).resolve().parent.parent  # the repository (this file is configs/paper.py)
    tail = Path("shared") / "data" / "dsb2018" / "stage1_train.zip"
    for base in (here.parent, here, Path.cwd().parent, Path.cwd()):
        if (base / tail).exists():
            return str(base / tail)
    return str(here.parent / tail)


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.data = ml_collections.ConfigDict()
    c.data.path = default_data_path()  # Kaggle-layout zip or folder, or images/ + masks/ folder; None = mini-set
    c.data.known_type = "fluorescence"  # the labeled cell type trained on (CT1); a manifest.csv's cell_type
    c.data.crop_size = 256
    c.data.border_width = 2
    c.data.border = "all"  # border class on every object edge (Fig. 1); "touching": only between nuclei
    c.data.protocol = "paper"  # 2 test images per type; "wide": CT1 test + validation sets, other types halved
    c.data.n_test_per_type = 2
    c.data.test_fraction = 0.1  # wide: share of CT1 held out for testing
    c.data.val_fraction = 0.05  # wide: share of CT1 held out for choosing settings
    c.data.unknown_val_fraction = 0.5  # wide: share of each other type for validation (the rest is tested)
    c.data.cluster_from = "all"  # every non-CT1 image, test images included (paper); "validation": inductive
    c.data.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.stage_sizes = (3, 4, 6, 3)  # ResNet-50
    c.model.width = 64
    c.model.expansion = 4
    c.model.decoder_features = (256, 128, 64, 32, 16)
    c.model.num_classes = 3
    c.model.dtype = "float32"  # compute dtype; "bfloat16" for mixed precision (params stay float32)
    c.model.input_polarity = "none"  # the image as it is; extension: "grey_bright_nuclei" (grey, bright nuclei)
    c.model.polarity_threshold = 0.3  # grey_bright_nuclei: median grey level above it = bright background
    c.model.input_norm = "none"  # encoder input x - 0.5; extension: "per_image" standardisation
    c.model.conv = "xla"  # lax.conv; "gemm_1x1" | "gemm" | "im2col": the same parameters as matmuls (speed only)

    c.augment = ml_collections.ConfigDict()
    c.augment.enabled = True
    c.augment.p_channel_swap = 0.5
    c.augment.p_invert = 0.5
    c.augment.p_rotate = 0.5
    c.augment.p_vflip = 0.5
    c.augment.p_hflip = 0.5
    c.augment.p_scale = 0.25
    c.augment.scale_min = 0.5
    c.augment.scale_max = 2.0
    c.augment.scale_log_uniform = False  # the paper draws the zoom uniformly in [0.5, 2]
    # Extension: CT1 made to look like other experiments (probability 0 = off, as in the paper)
    c.augment.p_grey_to_colour = 0.0  # grey level onto the line between two random colours (lighter = dark pixels)
    c.augment.p_hed = 0.0  # HED stain jitter (Tellez et al. 2018)
    c.augment.hed_sigma = 0.05  # stains x U(1 - s, 1 + s) + U(-s, s)
    c.augment.p_contrast = 0.0
    c.augment.contrast_min = 0.5  # factor about the image mean
    c.augment.contrast_max = 1.5
    c.augment.brightness_max = 0.1  # shift in [-0.1, 0.1]
    c.augment.p_gamma = 0.0
    c.augment.gamma_min = 0.5  # log-uniform in [0.5, 2]
    c.augment.gamma_max = 2.0
    c.augment.p_blur = 0.0
    c.augment.blur_sigma_min = 0.5  # px
    c.augment.blur_sigma_max = 2.0
    c.augment.p_noise = 0.0
    c.augment.noise_std_max = 0.05  # additive Gaussian, std in [0, 0.05]

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 50
    c.train.batch_size = 8
    c.train.lr = 1e-3
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.weight_decay = 0.0
    c.train.schedule = "constant"  # extension: "cosine" (linear warm-up, cosine decay to 0)
    c.train.warmup_epochs = 0.0
    c.train.class_weights = (1.0, 1.0, 1.0)  # cross-entropy weights: background, cell, border
    c.train.dice_weight = 0.0  # extension: + soft Dice on cell and border
    c.train.seed = 0
    c.train.checkpoint_every = 1000  # steps; a checkpoint is always written at the end
    c.train.max_to_keep = 3
    c.train.log_every = 20
    c.train.eval_every_epochs = 1  # pixel loss / accuracy on fixed crops of the validation (paper: test) images
    c.train.max_steps = ml_collections.FieldReference(None, field_type=int)  # stop early (as if interrupted)
    c.train.max_train_images = ml_collections.FieldReference(None, field_type=int)
    c.train.trainable = ml_collections.FieldReference(None, field_type=tuple)  # None: all subtrees
    # extension: self-training on the unlabeled (clustering) images with the teacher's confident pixels
    c.train.pseudo_label_rounds = 0  # 0: none (the paper)
    c.train.pseudo_label_weight = 1.0
    c.train.pseudo_label_confidence = 0.9
    c.train.pseudo_label_epochs = 0  # per round; 0 = train.epochs
    c.train.pseudo_label_teacher = "network"  # or "classical", "agreement" (classical targets where the two agree)
    c.train.pseudo_label_agreement = 0.3  # agreement teacher: share of instances matched at IoU > 0.5
    c.train.pseudo_label_images = "clustering"  # or "teacher_pool" (inductive), "transductive" (+ test images)

    c.postprocess = ml_collections.ConfigDict()
    c.postprocess.marker_threshold = 0.8
    c.postprocess.background_threshold = 0.2
    c.postprocess.height_threshold = 0.3
    c.postprocess.min_mean_cell_prob = 0.6
    # Where the paper is silent: the readings that scored best on the CT1 validation images (docs/history.md)
    c.postprocess.background_source = "cell"  # background markers: P(cell) < 0.2 ("foreground": P(cell)+P(border))
    c.postprocess.marker_connectivity = 1  # 4-connected markers (2: 8-connected)
    c.postprocess.expand_distance = 2  # grow instances back over the 2-px border ring (0 = the literal reading)
    c.postprocess.sum_tolerance = 1e-2  # allowed |sum over classes - 1| of the softmax

    c.eval = ml_collections.ConfigDict()
    c.eval.enabled = True  # baseline MAP on the test images at the end of training
    c.eval.tile_size = 1024  # larger images are predicted in overlapping tiles
    c.eval.tta = False  # extension: mean softmax over the 8 flips / 90-degree rotations
    c.eval.wide_unknown = True  # paper protocol: also score (and report) every non-CT1 image
    c.eval.baseline_views = ()  # sweep: also score the baseline with "tta", "adabn", "tta+adabn"
    c.eval.n_boot = 2000  # bootstrap resamples of the intervals (images resampled within cell types)
    c.eval.level = 0.95
    c.eval.workers = 0  # processes for the watershed and the metric; 0 = one per CPU core

    c.classical = ml_collections.ConfigDict()  # the reference without learning (Otsu + watershed),
    c.classical.sigma = 0.0  # its settings chosen on the validation set (scripts/studies/tune_classical.py)
    c.classical.min_distance = 12
    c.classical.min_size = 45

    # ---- deep clustering (python -m dng_jax.sweep) ----
    c.cluster_data = ml_collections.ConfigDict()
    c.cluster_data.n_images = 5000  # augmented draws from the unlabeled (non-CT1) images
    c.cluster_data.crop_size = 256
    c.cluster_data.pca_dim = 32
    c.cluster_data.batch_size = 64  # latent extraction
    c.cluster_data.seed = 0  # which images, crops and augmentations are drawn

    c.clustering = ml_collections.ConfigDict()
    c.clustering.epochs = 200  # T, NG and kMC
    c.clustering.eps0 = 0.1
    c.clustering.eps_fin = 1e-4
    c.clustering.r0_factor = 2.0  # R0 = 2k (our reading of the paper's "R0 = 2 . k")
    c.clustering.r0 = ml_collections.FieldReference(None, field_type=float)  # an absolute R0 instead
    c.clustering.r_fin = 1e-3
    c.clustering.kmc_r = 1e-3  # kMC: R0 = R_fin = 0.001, winner only
    c.clustering.h_min = float(np.finfo(np.float32).tiny)  # NG: weights below are dropped (float32 underflow: exact)
    c.clustering.full_rank = "bitonic"  # sorting network over the seeds; "sort" = XLA sort (see docs/benchmarks.md)
    c.clustering.gng = ml_collections.ConfigDict()
    c.clustering.gng.start_units = 5
    c.clustering.gng.max_units = 1024
    c.clustering.gng.epochs = 10  # not given in the paper
    c.clustering.gng.eps_b = 0.1  # winner
    c.clustering.gng.eps_n = 0.001  # winner's neighbours
    c.clustering.gng.max_age = 50
    c.clustering.gng.lam = 100
    c.clustering.gng.alpha = 0.5
    c.clustering.gng.decay = 0.995
    c.clustering.gng.min_dist = 0.2
    c.clustering.gng.chunk_epochs = 1  # epochs per jitted call

    c.retrain = ml_collections.ConfigDict()  # encoder + GAP + dense(k) on the pseudo-labels
    c.retrain.epochs = 20
    c.retrain.batch_size = 32  # not given in the paper
    c.retrain.crop_size = 128
    c.retrain.learning_rate = 0.01
    c.retrain.momentum = 0.5
    c.retrain.decay_every_epochs = 10
    c.retrain.decay_factor = 0.1
    # Beyond the paper (docs/results.md, "Variants of the step"); these values are the paper's step:
    c.retrain.batch_norm = "train"  # encoder BN statistics follow the clustering images ("frozen", "adabn")
    c.retrain.segmentation_weight = 0.0  # joint objective: + w x segmentation loss on CT1 crops
    c.retrain.decoder_epochs = 0  # then re-pair the decoder: LAMB on CT1, encoder fixed
    c.retrain.rounds = 1  # DeepCluster: re-extract, re-cluster, retrain
    c.retrain.conv = "auto"  # the runs' convolutions: "auto" = matmuls ("gemm") on a CPU, model.conv elsewhere
    c.retrain.runs_layout = "vmap"  # "map": the runs one after another in one step (a control)

    c.sweep = ml_collections.ConfigDict()
    c.sweep.checkpoint = ml_collections.FieldReference(None, field_type=str)  # baseline; None: train one
    c.sweep.baseline_runs = 1  # trainings of the baseline (train.seed + i) whose spread enters the intervals
    c.sweep.baseline_checkpoints = ()  # trained baselines for runs 1, 2, ...; the others are trained here
    c.sweep.methods = ("kmc", "ng", "gng")  # or path/to/file.py:factory (docs/clustering_variants.md)
    c.sweep.ks = (5, 50, 100, 500, 1000)
    c.sweep.seeds = 48  # how many runs per configuration (run i uses clustering seed i)
    c.sweep.seed = 0  # base PRNG seed of the runs (clustering keys and retraining heads/data order)
    c.sweep.seeds_per_chunk = 48  # runs retrained at once (vmapped); lower it when memory is short
    c.sweep.ensemble = 0  # also score the mean softmax of N seeds (-1: all); the paper's future work
    c.sweep.only = ""  # this job's part: 'ng_k500,kmc_k1000', a shard 'i/N' or 'shared'; '' = all (docs/scaling.md)

    c.report = ml_collections.ConfigDict()
    c.report.tsne_points = 2000
    c.report.panels = 3
    return c
