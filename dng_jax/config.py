"""The experiment's configuration: config files, typed sections, validation, the field table.

``configs/*.py`` files build an ``ml_collections.ConfigDict`` (``get_config()``); command lines override
any field (``--config.sweep.seeds=8``). Before any work starts, :func:`experiment_config` converts it
once, section by section, into the typed, hashable :class:`ExperimentConfig` (``Cls(**section)``, keys
equal to field names) and checks every value: a bad one is a :class:`dng_jax.errors.ConfigError`
naming the field. Library sections keep their classes beside the code that uses them
(:class:`~dng_jax.models.ModelConfig`, :class:`~dng_jax.data.augment.AugmentConfig`,
:class:`~dng_jax.segmentation.postprocess.WatershedConfig`,
:class:`~dng_jax.clustering.methods.ClusteringConfig`); the experiment's own sections are here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from dng_jax.clustering.methods import ClusteringConfig, resolve_method
from dng_jax.data.augment import AugmentConfig
from dng_jax.errors import ConfigError
from dng_jax.models import STRIDE, ModelConfig
from dng_jax.segmentation.postprocess import WatershedConfig
from dng_jax.typed_config import FieldError, TypedConfig, describe_fields, from_section, param, require

__all__ = [
    "load_config",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "ClusterDataConfig",
    "RetrainConfig",
    "SweepConfig",
    "ReportConfig",
    "ExperimentConfig",
    "experiment_config",
    "check_sweep",
    "config_table",
    "comparable",
    "VOLATILE_FIELDS",
]


def load_config(path: str | os.PathLike):
    """``get_config()`` of a configs/*.py file (what ``--config`` does, without the overrides); also how
    ``configs/default.py`` and ``configs/cpu_real.py`` start from ``configs/paper.py``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    spec = importlib.util.spec_from_file_location(f"dng_config_{p.stem}", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def _multiple_of_stride(value: int, field: str) -> None:
    require(value >= STRIDE and value % STRIDE == 0, field,
            f"must be a positive multiple of {STRIDE} (the U-Net's stride), got {value}")


class DataConfig(TypedConfig):
    """The ``data`` section: which images, how the targets are made, the test split."""

    path: str | None = param(None, "Kaggle-layout zip or folder; None = the bundled mini-set")
    crop_size: int = param(256, "random crops for segmentation training (px, multiple of 32)")
    border_width: int = param(2, "width of the cell-border class in the targets (px; not in the paper)")
    n_test_per_type: int = param(2, "test images per cell type (paper: 2)")
    seed: int = param(0, "seed of the test split")

    def check(self) -> None:
        _multiple_of_stride(self.crop_size, "crop_size")
        require(self.border_width >= 0, "border_width", f"must be >= 0, got {self.border_width}")
        require(self.n_test_per_type >= 0, "n_test_per_type", f"must be >= 0, got {self.n_test_per_type}")


class TrainConfig(TypedConfig):
    """The ``train`` section: segmentation training with LAMB (paper II-C)."""

    epochs: int = param(50, "epochs; one epoch = one random crop of every CT1 training image")
    batch_size: int = param(8, "crops per step (a multiple of the number of devices)")
    lr: float = param(1e-3, "LAMB learning rate")
    b1: float = param(0.9, "LAMB beta1")
    b2: float = param(0.999, "LAMB beta2")
    weight_decay: float = param(0.0, "LAMB weight decay")
    seed: int = param(0, "initialisation, batch order and augmentation")
    checkpoint_every: int = param(1000, "steps between checkpoints (0: only at the end)")
    max_to_keep: int = param(3, "checkpoints kept")
    log_every: int = param(20, "steps between metric rows")
    eval_every_epochs: int = param(1, "epochs between pixel loss / accuracy on fixed test crops")
    max_steps: int | None = param(None, "stop after this many steps, as if interrupted (tests)")
    max_train_images: int | None = param(None, "use only the first N CT1 training images")
    trainable: tuple[str, ...] | None = param(None, "parameter subtrees to train ('encoder', 'decoder'); None = all")

    def check(self) -> None:
        for f in ("epochs", "batch_size", "max_to_keep", "log_every", "eval_every_epochs"):
            require(getattr(self, f) >= 1, f, f"must be >= 1, got {getattr(self, f)}")
        require(self.lr >= 0, "lr", f"must be >= 0, got {self.lr}")
        for f in ("b1", "b2"):
            require(0 <= getattr(self, f) < 1, f, f"must lie in [0, 1), got {getattr(self, f)}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}")
        for f in ("max_steps", "max_train_images"):
            v = getattr(self, f)
            require(v is None or v >= 1, f, f"must be >= 1 (or None), got {v}")
        require(self.trainable is None or (len(self.trainable) > 0 and set(self.trainable) <= {"encoder", "decoder"}),
                "trainable", f"must name 'encoder' and/or 'decoder' (or be None), got {self.trainable}")


class EvalConfig(TypedConfig):
    """The ``eval`` section: MAP of the test images."""

    enabled: bool = param(True, "score the test images at the end of segmentation training")
    tile_size: int = param(1024, "larger images are predicted in overlapping tiles of this size (px)")

    def check(self) -> None:
        _multiple_of_stride(self.tile_size, "tile_size")


class ClusterDataConfig(TypedConfig):
    """The ``cluster_data`` section: the unlabeled images the latent space is clustered on."""

    n_images: int = param(5000, "augmented draws from the unlabeled (non-CT1) images")
    crop_size: int = param(256, "crop of each draw (px, multiple of 32)")
    pca_dim: int = param(32, "PCA dimensions of the pooled latent")
    batch_size: int = param(64, "images per latent-extraction batch")
    seed: int = param(0, "which images, crops and augmentations are drawn")

    def check(self) -> None:
        require(self.n_images >= 2, "n_images", f"must be >= 2, got {self.n_images}")
        _multiple_of_stride(self.crop_size, "crop_size")
        require(1 <= self.pca_dim <= self.n_images, "pca_dim",
                f"must lie in [1, n_images={self.n_images}], got {self.pca_dim}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


class RetrainConfig(TypedConfig):
    """The ``retrain`` section: the encoder + a dense head learn the pseudo-labels with SGD (paper II-C)."""

    epochs: int = param(20, "epochs over the clustering images")
    batch_size: int = param(32, "images per step (not given in the paper)")
    crop_size: int = param(128, "random crop of each clustering image (px)")
    learning_rate: float = param(0.01, "SGD learning rate")
    momentum: float = param(0.5, "SGD momentum")
    decay_every_epochs: int = param(10, "the learning rate is multiplied by decay_factor this often")
    decay_factor: float = param(0.1, "learning-rate decay")

    def check(self) -> None:
        require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        for f in ("batch_size", "crop_size", "decay_every_epochs"):
            require(getattr(self, f) >= 1, f, f"must be >= 1, got {getattr(self, f)}")
        require(self.learning_rate >= 0, "learning_rate", f"must be >= 0, got {self.learning_rate}")
        require(0 <= self.momentum < 1, "momentum", f"must lie in [0, 1), got {self.momentum}")
        require(self.decay_factor > 0, "decay_factor", f"must be > 0, got {self.decay_factor}")


class SweepConfig(TypedConfig):
    """The ``sweep`` section: which configurations, how many runs."""

    checkpoint: str | None = param(None, "a trained baseline (train work dir or checkpoint); None = train one")
    methods: tuple[str, ...] = param(("kmc", "ng", "gng"), "clustering methods: kmc, ng, gng or file.py:factory")
    ks: tuple[int, ...] = param((5, 50, 100, 500, 1000), "numbers of clusters (GNG: its start units instead)")
    seeds: int = param(48, "runs per configuration (run i uses clustering seed i)")
    seed: int = param(0, "base PRNG seed of the runs (clustering keys, retraining heads and data order)")
    seeds_per_chunk: int = param(48, "runs retrained at once (vmapped); lower it when memory is short")

    def check(self) -> None:
        require(len(self.methods) > 0, "methods", "name at least one method")
        require(len(set(self.methods)) == len(self.methods), "methods", f"names a method twice: {self.methods}")
        require(len(self.ks) > 0 and min(self.ks) >= 1, "ks", f"need numbers of clusters >= 1, got {self.ks}")
        require(len(set(self.ks)) == len(self.ks), "ks", f"names a k twice: {self.ks}")
        require(self.seeds >= 1, "seeds", f"must be >= 1, got {self.seeds}")
        require(self.seeds_per_chunk >= 1, "seeds_per_chunk", f"must be >= 1, got {self.seeds_per_chunk}")


class ReportConfig(TypedConfig):
    """The ``report`` section: figures."""

    tsne_points: int = param(2000, "latent vectors in the t-SNE of Fig. 2")
    panels: int = param(3, "test images in Fig. 5")

    def check(self) -> None:
        require(self.tsne_points >= 3, "tsne_points", f"must be >= 3, got {self.tsne_points}")
        require(self.panels >= 0, "panels", f"must be >= 0, got {self.panels}")


class ExperimentConfig(TypedConfig):
    """Every section of an experiment, typed; built by :func:`experiment_config`."""

    data: DataConfig = param(DataConfig(), "")
    model: ModelConfig = param(ModelConfig(), "")
    augment: AugmentConfig = param(AugmentConfig(), "")
    train: TrainConfig = param(TrainConfig(), "")
    postprocess: WatershedConfig = param(WatershedConfig(), "")
    eval: EvalConfig = param(EvalConfig(), "")
    cluster_data: ClusterDataConfig = param(ClusterDataConfig(), "")
    clustering: ClusteringConfig = param(ClusteringConfig(), "")
    retrain: RetrainConfig = param(RetrainConfig(), "")
    sweep: SweepConfig = param(SweepConfig(), "")
    report: ReportConfig = param(ReportConfig(), "")


def check_sweep(cfg: ExperimentConfig) -> None:
    """What a sweep needs beyond valid sections: methods that resolve, k's the clustering data can hold,
    crops that fit. Raises :class:`ConfigError` naming the field."""
    n = cfg.cluster_data.n_images
    for m in cfg.sweep.methods:
        try:
            _, spec = resolve_method(m)
        except ConfigError as e:
            raise ConfigError(f"config field sweep.methods: {e}") from None
        ks = tuple(spec.ks(cfg.sweep.ks, cfg.clustering))
        for k in ks:
            if not 1 <= k <= n:
                where = "sweep.ks" if ks == cfg.sweep.ks else f"sweep.methods ({m} runs at k={k})"
                raise ConfigError(f"config field {where}: {m} with k={k} needs 1 <= k <= "
                                  f"cluster_data.n_images={n}")
    latent = cfg.model.width * 2 ** (len(cfg.model.stage_sizes) - 1) * cfg.model.expansion
    problems = [
        ("retrain.crop_size", cfg.retrain.crop_size <= cfg.cluster_data.crop_size,
         f"must be <= cluster_data.crop_size={cfg.cluster_data.crop_size}, got {cfg.retrain.crop_size}"),
        ("cluster_data.pca_dim", cfg.cluster_data.pca_dim <= latent,
         f"must be <= the encoder's {latent} latent features, got {cfg.cluster_data.pca_dim}"),
    ]
    for field, ok, message in problems:
        if not ok:
            raise ConfigError(f"config field {field}: {message}")


def experiment_config(config: Any) -> ExperimentConfig:
    """The typed, validated form of a ConfigDict (or dict); sections it lacks take their defaults.

    Raises :class:`ConfigError` naming the first bad field (``sweep.seeds: must be >= 1, got 0``)."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    try:
        return from_section(ExperimentConfig, d)
    except FieldError as e:
        raise ConfigError(f"config field {e.field}: {e.message}") from None


#: Fields that may change between a crash and the rerun of the same experiment.
VOLATILE_FIELDS = frozenset({"sweep.seeds_per_chunk"})


def comparable(cfg: ExperimentConfig) -> dict[str, Any]:
    """The fields that define an experiment's results, flattened (``{"sweep.seeds": 48, ...}``)."""
    return {name: value for name, value, _ in describe_fields(cfg) if name not in VOLATILE_FIELDS}


def config_table(cfg: ExperimentConfig) -> str:
    """Every field with its value and meaning: what ``--config.help`` prints."""
    rows = list(describe_fields(cfg))
    width = max(len(n) for n, _, _ in rows)
    vwidth = min(max(len(repr(v)) for _, v, _ in rows), 28)
    lines, section = [], None
    for name, value, help_ in rows:
        head = name.split(".", 1)[0]
        if head != section:
            doc = (type(getattr(cfg, head)).__doc__ or "").strip().splitlines()[0].replace("``", "")
            lines += ["", f"# {doc}"]
            section = head
        lines.append(f"--config.{name:<{width}} {repr(value):<{vwidth}}  {help_}")
    return "\n".join(lines).lstrip("\n") + "\n"
