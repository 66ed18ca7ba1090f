"""The experiment's configuration: config files, typed sections, validation, the field table.

``configs/*.py`` files build an ``ml_collections.ConfigDict`` (``get_config()``); command lines override
any field (``--config.sweep.seeds=8``). Before any work starts, :func:`experiment_config` converts it
once, section by section, into the typed, hashable :class:`ExperimentConfig` (``Cls(**section)``, keys
equal to field names) and checks every value: a bad one is a :class:`dng_jax.errors.ConfigError`
naming the field. Sections keep their classes beside the code that uses them
(:class:`~dng_jax.models.ModelConfig`, :class:`~dng_jax.data.augment.AugmentConfig`,
:class:`~dng_jax.segmentation.train_state.TrainConfig`, :class:`~dng_jax.segmentation.postprocess.WatershedConfig`,
:class:`~dng_jax.segmentation.classical.ClassicalConfig`, :class:`~dng_jax.clustering.methods.ClusteringConfig`,
:class:`~dng_jax.experiment.retrain.RetrainConfig`); the sections of the experiment as a whole (data,
eval, cluster_data, sweep, report) are here.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from typing import Any

from dng_jax.clustering.methods import ClusteringConfig, build_method, resolve_method
from dng_jax.data.augment import AugmentConfig
from dng_jax.data.partition import CLUSTER_FROM, PROTOCOLS
from dng_jax.errors import ConfigError
from dng_jax.models import STRIDE, ModelConfig
from dng_jax.experiment.retrain import RetrainConfig
from dng_jax.segmentation.classical import ClassicalConfig
from dng_jax.segmentation.postprocess import WatershedConfig
from dng_jax.segmentation.train_state import TrainConfig
from dng_jax.typed_config import FieldError, TypedConfig, describe_fields, from_section, param, require

__all__ = [
    "load_config",
    "DataConfig",
    "EvalConfig",
    "ClusterDataConfig",
    "SweepConfig",
    "ReportConfig",
    "BASELINE_VIEWS",
    "ExperimentConfig",
    "experiment_config",
    "check_sweep",
    "config_table",
    "comparable",
    "differing_fields",
    "VOLATILE_FIELDS",
    "JOB_FIELDS",
    "TRAINING_FIELDS",
    "TRAINING_VOLATILE",
    "SELF_TRAINING_DATA",
    "training_volatile",
    "SPLIT_FIELDS",
    "parse_overrides",
    "parse_row",
    "apply_overrides",
]


def load_config(path: str | os.PathLike):
    """``get_config()`` of a configs/*.py file (what ``--config`` does, without the overrides); also how
    ``configs/default.py`` and ``configs/cpu_real.py`` start from ``configs/paper.py``.

    Any failure (no such file, a folder, a file that is not Python, no ``get_config``, a result that is
    not a ConfigDict) is a :class:`ConfigError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    if not p.is_file():
        raise ConfigError(f"{p}: is a folder, not a config file")
    spec = importlib.util.spec_from_file_location(f"dng_config_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{p}: not a Python file (a config file is a configs/*.py with get_config())")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's file: say which and why
        raise ConfigError(f"{p}: cannot load it ({type(e).__name__}: {e})") from None
    if not callable(getattr(mod, "get_config", None)):
        raise ConfigError(f"{p}: defines no get_config() (a config file returns its ConfigDict from get_config())")
    try:
        config = mod.get_config()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{p}: get_config() failed ({type(e).__name__}: {e})") from None
    if not hasattr(config, "to_dict"):
        raise ConfigError(f"{p}: get_config() returned {type(config).__name__} {config!r:.40}, not an "
                          f"ml_collections.ConfigDict")
    return config


def parse_overrides(text: str) -> dict[str, Any]:
    """``"a.b=1,c.d=(1, 2),e.f=cosine"`` -> ``{"a.b": 1, "c.d": (1, 2), "e.f": "cosine"}``: values are Python
    literals where they parse as one, else strings; commas inside brackets stay (what the scripts'
    ``--set`` / ``--row`` flags take; the entry points use ``--config.a.b=1`` instead)."""
    out: dict[str, Any] = {}
    depth, cur = 0, ""
    for ch in text + ",":
        depth += (ch in "([{") - (ch in ")]}")
        if ch != "," or depth:
            cur += ch
            continue
        if cur.strip():
            key, eq, value = cur.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"{cur.strip()!r} is not FIELD=VALUE")
            try:
                out[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                out[key.strip()] = value.strip()
        cur = ""
    return out


def parse_row(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME:FIELD=VALUE,..."`` -> ``(NAME, overrides)``: one row of a study (a training, a sweep, a timed
    variant), named for its folder; ``NAME:`` or ``NAME`` alone is the base with no overrides. The one
    parser of every tool's ``--row`` flag (values as in :func:`parse_overrides`)."""
    name, _, assignments = spec.partition(":")
    name = name.strip()
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"{spec!r} is not NAME:FIELD=VALUE,... (NAME: a folder name)")
    return name, parse_overrides(assignments)


def apply_overrides(config, overrides: dict[str, Any]):
    """Set the dotted fields of a ConfigDict in place (an unknown field is a :class:`ConfigError`); returns it."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            if part not in node:
                raise ConfigError(f"no config field {key}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"no config field {key}")
        node[leaf] = value
    return config


def _multiple_of_stride(value: int, field: str) -> None:
    require(value >= STRIDE and value % STRIDE == 0, field,
            f"must be a positive multiple of {STRIDE} (the U-Net's stride), got {value}")


class DataConfig(TypedConfig):
    """The ``data`` section: which images, how the targets are made, the test split."""

    path: str | None = param(None, "a folder images/ + masks/ (+ manifest.csv), or the Kaggle-layout zip or "
                                   "folder; None = the bundled mini-set")
    known_type: str = param("fluorescence", "the labeled cell type the segmentation trains on (CT1; a cell type "
                            "of the folder's manifest.csv, or of the DSB2018 rule)")
    crop_size: int = param(256, "random crops for segmentation training (px, multiple of 32)")
    border_width: int = param(2, "width of the cell-border class in the targets (px; not in the paper)")
    border: str = param("all", "where the border class is: 'all' object edges (paper, Fig. 1) or only where "
                        "nuclei 'touching' each other")
    protocol: str = param("paper", "test split: 'paper' (n_test_per_type per type) or 'wide' (a CT1 test and "
                                   "validation set, every non-CT1 image)")
    n_test_per_type: int = param(2, "paper protocol: test images per cell type (paper: 2)")
    test_fraction: float = param(0.1, "wide protocol: share of CT1 in the test set")
    val_fraction: float = param(0.05, "wide protocol: share of CT1 in the validation set (for choosing settings)")
    unknown_val_fraction: float = param(0.5, "wide protocol: share of each other cell type held out for "
                                        "validation (choosing variants, k); the rest is tested")
    cluster_from: str = param("all", "clustering images: 'all' images not of the known type, test images "
                              "included (paper); 'validation': only the other types' validation images")
    seed: int = param(0, "seed of the test and validation split")

    def check(self) -> None:
        _multiple_of_stride(self.crop_size, "crop_size")
        require(self.border_width >= 0, "border_width", f"must be >= 0, got {self.border_width}")
        require(self.border in ("all", "touching"), "border", f"must be 'all' or 'touching', got {self.border!r}")
        require(self.protocol in PROTOCOLS, "protocol", f"must be one of {PROTOCOLS}, got {self.protocol!r}")
        require(self.n_test_per_type >= 0, "n_test_per_type", f"must be >= 0, got {self.n_test_per_type}")
        require(0 < self.test_fraction < 1, "test_fraction", f"must lie in (0, 1), got {self.test_fraction}")
        require(0 <= self.val_fraction and self.test_fraction + self.val_fraction < 1, "val_fraction",
                f"must be >= 0 with test_fraction + val_fraction < 1, got {self.val_fraction}")
        require(0 <= self.unknown_val_fraction < 1, "unknown_val_fraction",
                f"must lie in [0, 1), got {self.unknown_val_fraction}")
        require(self.cluster_from in CLUSTER_FROM, "cluster_from",
                f"must be one of {CLUSTER_FROM}, got {self.cluster_from!r}")
        require(bool(self.known_type.strip()), "known_type", "must name a cell type")


#: The baseline as scored besides its plain forward pass (``eval.baseline_views``): test-time augmentation
#: (the mean softmax of the 8 flips / rotations), AdaBN (the encoder normalised with each image's own
#: statistics), or both.
BASELINE_VIEWS = ("tta", "adabn", "tta+adabn")


class EvalConfig(TypedConfig):
    """The ``eval`` section: MAP of the test images, its intervals and paired comparisons."""

    enabled: bool = param(True, "score the test images at the end of segmentation training")
    tile_size: int = param(1024, "larger images are predicted in overlapping tiles of this size (px)")
    tta: bool = param(False, "test-time augmentation: mean softmax over the 8 flips / 90-degree rotations "
                      "(not in the paper)")
    wide_unknown: bool = param(False, "paper protocol: also score every non-CT1 image (the wide unknown set)")
    baseline_views: tuple[str, ...] = param((), "sweep: also score the baseline with 'tta', 'adabn' or 'tta+adabn' "
                                            "(reference rows beside the baseline and the classical reference)")
    n_boot: int = param(2000, "bootstrap resamples for the intervals (images resampled within cell types)")
    level: float = param(0.95, "confidence level of the intervals")
    workers: int = param(0, "processes for the watershed and the metric (0 = one per CPU core)")

    def check(self) -> None:
        _multiple_of_stride(self.tile_size, "tile_size")
        require(self.n_boot >= 100, "n_boot", f"must be >= 100, got {self.n_boot}")
        require(0.5 <= self.level < 1, "level", f"must lie in [0.5, 1), got {self.level}")
        require(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        bad = [v for v in self.baseline_views if v not in BASELINE_VIEWS]
        require(not bad, "baseline_views", f"unknown {bad}; use some of {BASELINE_VIEWS}")
        require(len(set(self.baseline_views)) == len(self.baseline_views), "baseline_views",
                f"names a view twice: {self.baseline_views}")


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


class SweepConfig(TypedConfig):
    """The ``sweep`` section: which configurations, how many runs."""

    checkpoint: str | None = param(None, "a trained baseline (train work dir, checkpoint, or bundled:<name> for a "
                                   "model shipped in the package); None = train one")
    baseline_runs: int = param(1, "trainings of the baseline (train.seed, +1, ...) whose spread enters the intervals; "
                               "run 0 is the one clustered and retrained")
    baseline_checkpoints: tuple[str, ...] = param((), "trained baselines for runs 1, 2, ... (train work dirs); the "
                                                  "runs without one are trained in baseline_runs/run<i>/")
    methods: tuple[str, ...] = param(("kmc", "ng", "gng"), "clustering methods: kmc, ng, gng or file.py:factory")
    ks: tuple[int, ...] = param((5, 50, 100, 500, 1000), "numbers of clusters of kMC, NG and file-loaded methods "
                                                         "(GNG runs once, at clustering.gng.start_units)")
    seeds: int = param(48, "runs per configuration (run i uses clustering seed i)")
    seed: int = param(0, "base PRNG seed of the runs (clustering keys, retraining heads and data order)")
    seeds_per_chunk: int = param(48, "runs retrained at once (vmapped); lower it when memory is short")
    ensemble: int = param(0, "also score the mean softmax of seeds 0..N-1 of each configuration (paper's future "
                          "work; 0 = none, -1 = all seeds)")
    only: str = param("", "this job runs only: configurations by their runs/ name ('ng_k500,kmc_k1000'), a shard "
                      "'i/N' (configuration j where j % N == i) or 'shared' (baseline, classical, clustering "
                      "data); '' = the whole sweep and its report (docs/scaling.md)")

    def check(self) -> None:
        require(self.baseline_runs >= 1, "baseline_runs", f"must be >= 1, got {self.baseline_runs}")
        require(len(self.baseline_checkpoints) <= self.baseline_runs - 1, "baseline_checkpoints",
                f"names {len(self.baseline_checkpoints)} checkpoints for baseline_runs - 1 = {self.baseline_runs - 1} "
                f"extra runs (run 0 is sweep.checkpoint or trained)")
        require(len(self.methods) > 0, "methods", "name at least one method")
        require(len(set(self.methods)) == len(self.methods), "methods", f"names a method twice: {self.methods}")
        require(len(self.ks) > 0 and min(self.ks) >= 1, "ks", f"need numbers of clusters >= 1, got {self.ks}")
        require(len(set(self.ks)) == len(self.ks), "ks", f"names a k twice: {self.ks}")
        require(self.seeds >= 1, "seeds", f"must be >= 1, got {self.seeds}")
        require(self.seeds_per_chunk >= 1, "seeds_per_chunk", f"must be >= 1, got {self.seeds_per_chunk}")
        require(self.ensemble == -1 or 0 <= self.ensemble <= self.seeds, "ensemble",
                f"must be 0 (none), -1 (all seeds) or at most seeds={self.seeds}, got {self.ensemble}")


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
    classical: ClassicalConfig = param(ClassicalConfig(), "")
    cluster_data: ClusterDataConfig = param(ClusterDataConfig(), "")
    clustering: ClusteringConfig = param(ClusteringConfig(), "")
    retrain: RetrainConfig = param(RetrainConfig(), "")
    sweep: SweepConfig = param(SweepConfig(), "")
    report: ReportConfig = param(ReportConfig(), "")

    def check(self) -> None:
        """Across sections: a teacher other than the network pseudo-labels test images only when asked to by
        name (``train.pseudo_label_images = "transductive"``), so a score on the test images stays honest.
        The network teacher on every clustering image is the self-training that came first; it stays."""
        t = self.train
        transductive = (t.pseudo_label_rounds > 0 and t.pseudo_label_teacher != "network"
                        and t.pseudo_label_images == "clustering" and self.data.cluster_from == "all")
        require(not transductive, "train.pseudo_label_images",
                f"the {t.pseudo_label_teacher} teacher would pseudo-label the clustering images, and "
                f"data.cluster_from='all' includes the test images; use 'teacher_pool' (inductive: half of the other "
                f"types' validation images, the other half left to choose on) or name the transductive variant, "
                f"'transductive'")


def check_sweep(cfg: ExperimentConfig) -> None:
    """What a sweep needs beyond valid sections: methods that resolve, k's the clustering data can hold,
    crops that fit. Raises :class:`ConfigError` naming the field."""
    n = cfg.cluster_data.n_images
    ids: dict[str, str] = {}
    for m in cfg.sweep.methods:
        try:
            method_id, spec = resolve_method(m)
        except ConfigError as e:
            raise ConfigError(f"config field sweep.methods: {e}") from None
        if method_id in ids:
            raise ConfigError(f"config field sweep.methods: {ids[method_id]!r} and {m!r} are both called "
                              f"{method_id!r} (their runs would share runs/{method_id}_k*); rename a factory")
        ids[method_id] = m
        ks = tuple(spec.ks(cfg.sweep.ks, cfg.clustering))
        for k in ks:
            if not 1 <= k <= n:
                where = "sweep.ks" if ks == cfg.sweep.ks else f"sweep.methods ({m} runs at k={k})"
                raise ConfigError(f"config field {where}: {m} with k={k} needs 1 <= k <= "
                                  f"cluster_data.n_images={n}")
        try:
            build_method(m, ks[0], cfg.clustering)  # a factory that fails, fails now, not after training
        except ConfigError as e:
            raise ConfigError(f"config field sweep.methods: {e}") from None
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
VOLATILE_FIELDS = frozenset({"sweep.seeds_per_chunk", "eval.workers", "eval.n_boot", "eval.level"})
#: Fields that say which part of an experiment one job runs, not what the experiment is: the jobs of a
#: split sweep differ in them and share one work dir (:mod:`dng_jax.experiment.shards`).
JOB_FIELDS = frozenset({"sweep.only"})


def comparable(cfg: ExperimentConfig) -> dict[str, Any]:
    """The fields that define an experiment's results, flattened (``{"sweep.seeds": 48, ...}``)."""
    return {name: value for name, value, _ in describe_fields(cfg) if name not in VOLATILE_FIELDS | JOB_FIELDS}


#: What a trained segmentation network depends on (a resumed training, a sweep's ``sweep.checkpoint``).
TRAINING_FIELDS = ("data.", "model.", "augment.", "train.")
#: ... except these, which may differ (where the data lies, logging, when to stop or checkpoint, how a
#: convolution is computed: the same parameters either way).
TRAINING_VOLATILE = frozenset({"model.conv", "data.path", "data.unknown_val_fraction", "data.cluster_from",
                               "train.max_steps", "train.log_every", "train.checkpoint_every",
                               "train.max_to_keep", "train.eval_every_epochs"})
#: ... the two that choose self-training's pseudo-labelled images matter when it has rounds.
SELF_TRAINING_DATA = frozenset({"data.unknown_val_fraction", "data.cluster_from"})


def training_volatile(cfg: ExperimentConfig) -> frozenset[str]:
    """The fields a resumed training of ``cfg`` may change (:data:`TRAINING_VOLATILE`, less the fields that
    pick the pseudo-labelled images when ``cfg`` self-trains: a saved round would be filtered to other images)."""
    return TRAINING_VOLATILE - SELF_TRAINING_DATA if cfg.train.pseudo_label_rounds else TRAINING_VOLATILE


#: What the test split depends on: a network trained on another split may have seen the test images.
SPLIT_FIELDS = ("data.protocol", "data.known_type", "data.n_test_per_type", "data.test_fraction", "data.val_fraction",
                "data.seed")


def differing_fields(a: ExperimentConfig, b: ExperimentConfig, prefixes: tuple[str, ...],
                     ignore: frozenset[str] = frozenset()) -> list[str]:
    """The dotted names of the fields starting with one of ``prefixes`` whose values differ."""
    fa = {n: v for n, v, _ in describe_fields(a)}
    fb = {n: v for n, v, _ in describe_fields(b)}
    return sorted(n for n in fa if n.startswith(prefixes) and n not in ignore and fa[n] != fb.get(n))


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
