"""DSB2018 stage-1 as a TensorFlow Datasets (TFDS) builder that works without TensorFlow.

The builder reads the Kaggle download (``stage1_train.zip`` or its unpacked folder) from the TFDS manual
dir, or from an explicit ``source`` path (e.g. the bundled mini zip, or a collection in the folder layout
``images/`` + ``masks/`` + ``manifest.csv`` of :mod:`dng_jax.data.folder`), and writes ``array_record`` files.
Reading goes through :meth:`tfds.core.DatasetBuilder.as_data_source`, which gives random access to
examples as NumPy arrays; neither step imports TensorFlow (see docs/tfds.md for what does).

Features per example: ``id`` (text), ``image`` (uint8 [H, W, 3], zlib), ``labels`` (uint16 [H, W]
instance labels, 0 = background, zlib), ``cell_type`` (ClassLabel over
:data:`dng_jax.data.partition.CELL_TYPES`, then a folder manifest's other types by name), ``height``,
``width``, ``n_nuclei`` (-1 for an unlabeled image: one without a mask, whose labels are all 0).

Splits (from :func:`dng_jax.data.partition.make_splits` with the config's ``seed`` and ``n_test_per_type``):
``train`` (CT1 training), ``test`` (every test image, all types), ``cluster`` (non-CT1 images, unlabeled
use), ``full`` (every image once; TFDS reserves the name ``all`` for the concatenation of all splits, and
:func:`load_data_source` maps ``"all"`` to ``"full"``). The cell-type manifest and the split ids are
saved in the dataset's metadata (``builder.info.metadata``).

Command line::

    python -m dng_jax.data.tfds_builder --zip stage1_train.zip --data-dir ~/tensorflow_datasets
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from dng_jax.data.dsb2018 import bundled_minidata_path
from dng_jax.data.partition import CELL_TYPES, load_or_build_manifest, make_splits
from dng_jax.data.sources import AnySource, open_source
from dng_jax.errors import DataError, InputError

__all__ = [
    "Dsb2018",
    "Dsb2018Config",
    "SPLITS",
    "SPLIT_ALIASES",
    "config_for",
    "find_source",
    "prepare_dsb2018",
    "load_builder",
    "load_data_source",
]

SPLITS = ("train", "test", "cluster", "full")
# TFDS reserves the split name "all" (= the concatenation of every stored split, which here would repeat
# images: test and cluster overlap). The stored split with every image once is "full"; the helpers below
# accept "all" as an alias for it.
SPLIT_ALIASES = {"all": "full"}
ZIP_NAME = "stage1_train.zip"


@dataclasses.dataclass(eq=False)
class Dsb2018Config(tfds.core.BuilderConfig):
    """Split parameters; each (seed, n_test_per_type) gets its own config directory."""

    seed: int = 0
    n_test_per_type: int = 2


def _config_name(seed: int, n_test_per_type: int) -> str:
    return "default" if (seed, n_test_per_type) == (0, 2) else f"seed{seed}_test{n_test_per_type}"


def config_for(seed: int = 0, n_test_per_type: int = 2) -> Dsb2018Config:
    """The builder config for a split seed and test-set size (``default`` is seed 0, 2 per type)."""
    if n_test_per_type < 0:
        raise InputError(f"n_test_per_type must be >= 0, got {n_test_per_type}")
    if (seed, n_test_per_type) == (0, 2) and "_DEFAULT_CONFIG" in globals():
        return _DEFAULT_CONFIG  # TFDS refuses a new config object under a registered name
    return Dsb2018Config(
        name=_config_name(seed, n_test_per_type),
        description=f"splits with seed={seed}, n_test_per_type={n_test_per_type}",
        seed=seed,
        n_test_per_type=n_test_per_type,
    )


def find_source(path: str | os.PathLike) -> Path:
    """The DSB2018 data inside ``path``: a zip/Kaggle folder itself, or ``stage1_train.zip`` /
    ``stage1_train/`` inside a (manual) folder."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (expected the Kaggle {ZIP_NAME} or a folder holding it)")
    if p.is_dir():
        for cand in (p / ZIP_NAME, p / "stage1_train"):
            if cand.exists():
                return cand
    return p


_DEFAULT_CONFIG = config_for(0, 2)


# Registered under the name "dsb2018": ``tfds.builder("dsb2018", data_dir=...)`` finds it once this module
# is imported.
class Dsb2018(tfds.core.GeneratorBasedBuilder):
    """DSB2018 stage-1 training images with instance labels, cell types and the paper's splits."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (dng-jax)."}
    BUILDER_CONFIGS = [_DEFAULT_CONFIG]
    DEFAULT_CONFIG_NAME = "default"
    # TFDS 4.9.x's DatasetBuilder.code_path touches `importlib_resources`, which it only declares as a
    # dependency for Python < 3.9, so on 3.11 without that backport it raises ModuleNotFoundError
    # during download_and_prepare. This class lives in a plain file, so give the path directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:  # noqa: N805
        return epath.Path(__file__)

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {ZIP_NAME} from https://www.kaggle.com/c/data-science-bowl-2018/data (Kaggle login "
        f"needed) and put it in the manual dir (default ~/tensorflow_datasets/downloads/manual/), or "
        f"pass source=<path to the zip or unpacked folder> to the builder."
    )

    def __init__(
        self,
        *,
        source: str | os.PathLike | None = None,
        manifest_path: str | os.PathLike | None = None,
        skip_bad: bool = False,
        workers: int = 2,
        file_format: str | tfds.core.FileFormat | None = tfds.core.FileFormat.ARRAY_RECORD,
        **kwargs,
    ):
        """``source``: zip or folder to read instead of the manual dir; ``manifest_path``: where to
        cache the cell-type manifest (see :func:`dng_jax.data.partition.load_or_build_manifest`);
        ``skip_bad``: leave out samples that :meth:`Source.load` rejects (DataError, e.g. overlapping
        masks) instead of failing -- they are dropped before the splits are drawn and listed in
        ``info.metadata["skipped"]``; this costs one extra pass over the masks; ``workers``: threads
        reading samples while TFDS encodes and writes (1 = no threads)."""
        self._source_path = None if source is None else Path(source)
        self._cell_types = list(CELL_TYPES)
        if self._source_path is not None:  # a folder's manifest may name other cell types
            with open_source(find_source(self._source_path)) as src:
                own = src.manifest_types() or {}
            self._cell_types += sorted(set(own.values()) - set(CELL_TYPES))
        self._manifest_path = manifest_path
        self._skip_bad = skip_bad
        self._workers = workers
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Kaggle 2018 Data Science Bowl stage-1 training set: RGB uint8 images with uint16 "
                "instance labels built from the per-nucleus masks, a cell type from dng_jax.data.partition "
                "and the splits of dng_jax.data.partition.make_splits."
            ),
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Tensor(
                    shape=(None, None, 3), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                ),
                "labels": tfds.features.Tensor(
                    shape=(None, None), dtype=np.uint16, encoding=tfds.features.Encoding.ZLIB
                ),
                "cell_type": tfds.features.ClassLabel(names=self._cell_types),
                "height": tfds.features.Scalar(dtype=np.int32),
                "width": tfds.features.Scalar(dtype=np.int32),
                "n_nuclei": tfds.features.Scalar(dtype=np.int32),
            }),
            homepage="https://www.kaggle.com/c/data-science-bowl-2018",
            metadata=tfds.core.MetadataDict(),
        )

    def _open_source(self, dl_manager) -> AnySource:
        if self._source_path is not None:
            return open_source(find_source(self._source_path))
        # dl_manager.manual_dir raises with MANUAL_DOWNLOAD_INSTRUCTIONS when the folder is missing.
        return open_source(find_source(dl_manager.manual_dir))

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        source = self._open_source(dl_manager)
        skipped: dict[str, str] = {}
        labeled = set(source.labeled_ids())
        if self._skip_bad:
            def check(sid: str) -> str | None:
                try:
                    source.load(sid, with_labels=sid in labeled)
                except DataError as e:
                    return str(e)
                return None

            with ThreadPoolExecutor(max(self._workers, 1)) as pool:
                for sid, err in zip(source.ids(), pool.map(check, source.ids())):
                    if err is not None:
                        skipped[sid] = err
        manifest = source.manifest_types() or load_or_build_manifest(source, self._manifest_path)
        manifest = {k: v for k, v in manifest.items() if k not in skipped}
        splits = make_splits(manifest, n_test_per_type=cfg.n_test_per_type, seed=cfg.seed,
                             fixed=source.manifest_splits(), labeled=labeled & set(manifest))
        ids = {
            "train": splits.train_ct1,
            "test": splits.test_all,
            "cluster": splits.cluster,
            "full": sorted(manifest),
        }
        self.info.metadata.update({
            "source": source.path.name,
            "seed": cfg.seed,
            "n_test_per_type": cfg.n_test_per_type,
            "cell_types": dict(sorted(manifest.items())),
            "split_ids": {k: list(v) for k, v in ids.items()},
            "test_by_type": {k: list(v) for k, v in splits.test.items()},
            "skipped": skipped,
        })
        return {name: self._generate_examples(source, ids[name], manifest, labeled) for name in SPLITS}

    def _generate_examples(self, source: AnySource, ids: list[str], manifest: dict[str, str], labeled: set[str]):
        # PNG decoding (here) and TFDS's zlib encoding (in the consumer) both release the GIL, so reading
        # the next samples in a few threads overlaps them. zipfile reads are thread-safe.
        def example(sid: str):
            s = source.load(sid, with_labels=sid in labeled)
            h, w = s.labels.shape
            return sid, {
                "id": sid,
                "image": s.image,
                "labels": s.labels,
                "cell_type": manifest[sid],
                "height": h,
                "width": w,
                "n_nuclei": int(s.labels.max()) if sid in labeled else -1,
            }

        if self._workers <= 1:
            yield from map(example, ids)
            return
        with ThreadPoolExecutor(self._workers, thread_name_prefix="dsb2018-read") as pool:
            pending: deque = deque()
            todo = iter(ids)
            for sid in todo:
                pending.append(pool.submit(example, sid))
                if len(pending) >= 2 * self._workers:
                    break
            while pending:
                result = pending.popleft().result()
                sid = next(todo, None)
                if sid is not None:
                    pending.append(pool.submit(example, sid))
                yield result


def load_builder(data_dir: str | os.PathLike, seed: int = 0, n_test_per_type: int = 2) -> Dsb2018:
    """The builder over an already prepared ``data_dir`` (no data is read or written)."""
    return Dsb2018(data_dir=os.fspath(data_dir), config=config_for(seed, n_test_per_type))


def prepare_dsb2018(
    zip_path: str | os.PathLike | None,
    data_dir: str | os.PathLike,
    seed: int = 0,
    n_test_per_type: int = 2,
    manifest_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    workers: int = 2,
) -> Dsb2018:
    """Build (or reuse) the array_record dataset from ``zip_path`` (a zip or Kaggle folder, or a manual
    folder holding ``stage1_train.zip``; ``None`` = the bundled mini-set) into ``data_dir``."""
    src = find_source(zip_path) if zip_path is not None else None
    if src is None:
        src = bundled_minidata_path()

    def make() -> Dsb2018:
        return Dsb2018(
            data_dir=os.fspath(data_dir),
            config=config_for(seed, n_test_per_type),
            source=src,
            manifest_path=manifest_path,
            skip_bad=skip_bad,
            workers=workers,
        )

    builder = make()
    if builder.is_prepared() and not overwrite:
        return builder
    open_source(src).close()  # fail early with a DataError naming the file
    if builder.is_prepared():  # overwrite: drop this config/version only, then build afresh
        shutil.rmtree(os.fspath(builder.data_path))
        builder = make()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(src.parent),
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
            try_download_gcs=False,
        ),
    )
    return builder


def load_data_source(data_dir: str | os.PathLike, split: str, seed: int = 0, n_test_per_type: int = 2):
    """Random-access NumPy view of a prepared split (``ds[i]`` -> dict of numpy arrays, ``len(ds)``)."""
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)} (or 'all' = 'full')")
    builder = load_builder(data_dir, seed, n_test_per_type)
    if not builder.is_prepared():
        raise DataError(f"{builder.data_dir}: no prepared dsb2018 dataset (run prepare_dsb2018 first)")
    return builder.as_data_source(split=split)
