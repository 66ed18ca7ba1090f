"""The cell-type partition of DSB2018 and the paper's splits (section II-B).

The paper split the images into seven types by hand. We replace that with a deterministic rule on image
statistics so that anyone gets the same partition from the same files:

1. *grayscale* when the mean absolute difference between neighbouring colour channels is below 1 grey
   level; else *colour* (stained tissue).
2. grayscale with a median grey level below 128 (dark background) -> ``fluorescence`` (CT1, the known
   type); with a bright background -> ``brightfield``.
3. colour images are split by the saturation of their median colour (the background): below 0.15 ->
   ``tissue_white``; at or above 0.33 -> ``tissue_magenta``; in between -> ``tissue_purple``.

On the stage-1 training set this gives 541 / 16 / 38 / 56 / 13 images; the thresholds sit in wide gaps
of the statistics' distributions (see docs/partition.md), so small changes to an image do not move it.

Splits, by protocol (``data.protocol``):

- ``paper``: a seeded test set of ``n_test_per_type`` images of every type (the paper: 2); the CT1
  training set is CT1 minus its test images; no validation set.
- ``wide``: a seeded CT1 test set (``test_fraction`` of CT1, default 10%) and a seeded CT1 validation
  set (``val_fraction``, 5%), both kept out of training; every other type is split in two, seeded and
  stratified by type: ``unknown_val_fraction`` of its images (default half) for validation, the rest for
  testing (they are never trained on with labels). Two test images per type cannot tell methods apart:
  one fluorescence image's MAP varies by about 0.22 between images.

The unlabeled clustering set (``data.cluster_from``) is by default every non-CT1 image, test images
included, as in the paper ("training with the test data is a viable approach", pseudo-labels only);
``validation`` clusters only the other types' validation images (an inductive control). Validation images
are for choosing settings (thresholds, epochs, variants, k), never the test images.

Self-training's images (``train.pseudo_label_images``, :func:`pseudo_label_ids`): the clustering images, or
the *teacher pool*: of each other type's validation images, sorted by id, those at even positions (0, 2,
...), with the unlabeled images. The odd positions, with CT1's validation images, are the *choosing pool*
(:attr:`Splits.choosing`): what a variant trained on the teacher pool is chosen on, so that what is chosen
on was not trained on. A fixed rule on sorted ids, not a draw: the halves do not move with a seed.

The known type is ``data.known_type`` (``fluorescence``, CT1, for DSB2018). A collection in the folder
layout (:mod:`dng_jax.data.folder`) may bring its own ``manifest.csv``: its cell types replace the rule, and
its ``split`` column fixes the split of the images it names; images without a mask only join the
clustering images.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import bundled_minidata_path
from dng_jax.data.sources import AnySource, open_source
from dng_jax.errors import DataError
from dng_jax.io.atomic import atomic_write_text

__all__ = [
    "CELL_TYPES",
    "KNOWN_TYPE",
    "RULE_VERSION",
    "image_statistics",
    "classify",
    "build_manifest",
    "manifest_for",
    "cache_manifest",
    "MANIFEST_CACHE",
    "write_manifest",
    "read_manifest",
    "load_or_build_manifest",
    "Splits",
    "PROTOCOLS",
    "CLUSTER_FROM",
    "PSEUDO_LABEL_IMAGES",
    "make_splits",
    "halve_validation",
    "pseudo_label_ids",
    "type_order",
    "open_data",
]

KNOWN_TYPE = "fluorescence"
PROTOCOLS = ("paper", "wide")
CELL_TYPES = ("fluorescence", "brightfield", "tissue_white", "tissue_purple", "tissue_magenta")
RULE_VERSION = 1

GRAY_MAX_CHANNEL_DIFF = 1.0
DARK_BACKGROUND_MAX = 128.0
WHITE_MAX_SATURATION = 0.15
MAGENTA_MIN_SATURATION = 0.33


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """The statistics the rule looks at, for one RGB uint8 image."""
    im = image.astype(np.float32)
    channel_diff = float(np.abs(im[..., 0] - im[..., 1]).mean() + np.abs(im[..., 1] - im[..., 2]).mean())
    median = np.median(im.reshape(-1, 3), axis=0)
    _, saturation, _ = colorsys.rgb_to_hsv(*(median / 255.0))
    return {
        "channel_diff": channel_diff,
        "median_gray": float(median.mean()),
        "median_saturation": float(saturation),
    }


def classify(stats: dict[str, float]) -> str:
    """Cell type from :func:`image_statistics` (the rule in the module docstring)."""
    if stats["channel_diff"] < GRAY_MAX_CHANNEL_DIFF:
        return "fluorescence" if stats["median_gray"] < DARK_BACKGROUND_MAX else "brightfield"
    if stats["median_saturation"] < WHITE_MAX_SATURATION:
        return "tissue_white"
    if stats["median_saturation"] >= MAGENTA_MIN_SATURATION:
        return "tissue_magenta"
    return "tissue_purple"


def build_manifest(source: AnySource, progress: bool = True) -> dict[str, str]:
    """id -> cell type for every image of ``source`` (reads the images only, not the masks)."""
    ids = source.ids()
    it = tqdm(ids, desc="partition", unit="img", leave=False, disable=not progress)
    return {sid: classify(image_statistics(source.load_image(sid))) for sid in it}


def write_manifest(path: str | os.PathLike, manifest: dict[str, str]) -> None:
    doc = {"rule_version": RULE_VERSION, "types": dict(sorted(manifest.items()))}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_manifest(path: str | os.PathLike) -> dict[str, str]:
    try:
        doc = json.loads(Path(path).read_text())
        types = doc["types"]
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a dng-jax manifest ({e})") from None
    bad = sorted({t for t in types.values() if t not in CELL_TYPES})
    if bad:
        raise DataError(f"{path}: unknown cell types {bad}; expected some of {list(CELL_TYPES)}")
    if doc.get("rule_version") != RULE_VERSION:
        raise DataError(f"{path}: made by partition rule {doc.get('rule_version')}, this is {RULE_VERSION}")
    return dict(types)


def load_or_build_manifest(source: AnySource, path: str | os.PathLike | None = None,
                           progress: bool = True, *, write: bool = True) -> dict[str, str]:
    """Read the manifest at ``path`` if it covers exactly ``source``'s ids; else build it (and write it
    there when ``write``)."""
    if path is not None and Path(path).exists():
        try:
            manifest = read_manifest(path)
        except DataError:
            manifest = None
        if manifest is not None and sorted(manifest) == source.ids():
            return manifest
    manifest = build_manifest(source, progress)
    if path is not None and write:
        write_manifest(path, manifest)
    return manifest


#: The rule's cell types of a collection without a manifest of its own, cached in a work dir.
MANIFEST_CACHE = "manifest.json"


def _shipped_manifest(source: AnySource) -> dict[str, str] | None:
    """The shipped stage-1 manifest when ``source`` is the collection it was made for (same ids), else None."""
    shipped = Path(bundled_minidata_path()).parent / "dsb2018_stage1_manifest.json"
    if shipped.exists():
        try:
            m = read_manifest(shipped)
            if sorted(m) == source.ids():
                return m
        except DataError:
            pass
    return None


def manifest_for(source: AnySource, cache: str | os.PathLike | None = None, progress: bool = True, *,
                 write_cache: bool = True) -> dict[str, str]:
    """id -> cell type: a folder's own ``manifest.csv`` where it has one; else the shipped manifest when
    ``source`` is the DSB2018 stage-1 set it was made for (no image is read); else the rule applied to
    ``source`` (read from ``cache`` when it covers ``source``; written there when ``write_cache``)."""
    own = source.manifest_types()
    if own is not None:
        return own
    shipped = _shipped_manifest(source)
    if shipped is not None:
        return shipped
    return load_or_build_manifest(source, cache, progress, write=write_cache)


def cache_manifest(source: AnySource, manifest: dict[str, str], path: str | os.PathLike) -> None:
    """Write ``manifest`` to ``path`` when it is the rule's (what :func:`manifest_for` caches), unless a whole
    one is there: a command that checked its data before making its work dir caches it afterwards."""
    if source.manifest_types() is not None or _shipped_manifest(source) is not None:
        return
    try:
        if read_manifest(path) == manifest:
            return
    except DataError:
        pass
    write_manifest(path, manifest)


@dataclasses.dataclass(frozen=True)
class Splits:
    train_ct1: list[str]  # labelled segmentation training set (the known type minus its test and validation images)
    test: dict[str, list[str]]  # cell type -> test ids
    cluster: list[str]  # unlabeled clustering set (data.cluster_from; default every non-CT1 image, test images included)
    val: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # cell type -> validation ids
    protocol: str = "paper"
    known_type: str = KNOWN_TYPE
    unlabeled: list[str] = dataclasses.field(default_factory=list)  # no mask (or split 'unlabeled'): clustering only

    @property
    def test_known(self) -> list[str]:
        return list(self.test.get(self.known_type, []))

    @property
    def test_unknown(self) -> list[str]:
        return [i for t, ids in sorted(self.test.items()) if t != self.known_type for i in ids]

    @property
    def test_all(self) -> list[str]:
        return self.test_known + self.test_unknown

    @property
    def val_known(self) -> list[str]:
        """The known type's validation images (wide protocol): what segmentation settings are chosen on."""
        return list(self.val.get(self.known_type, []))

    @property
    def val_unknown(self) -> list[str]:
        """The other types' validation halves (wide protocol): what clustering settings are chosen on."""
        return [i for t, ids in sorted(self.val.items()) if t != self.known_type for i in ids]

    @property
    def val_all(self) -> list[str]:
        return self.val_known + self.val_unknown

    @property
    def teacher_pool(self) -> list[str]:
        """The images a teacher may pseudo-label inductively: the even-position half of each other type's
        validation images (:func:`halve_validation`) and the unlabeled images; never a test image."""
        teacher, _ = halve_validation(self.val, self.known_type)
        return sorted({i for ids in teacher.values() for i in ids} | set(self.unlabeled))

    @property
    def choosing(self) -> dict[str, list[str]]:
        """cell type -> the validation images to choose on beside a teacher: CT1's and the odd-position
        half of each other type's."""
        return halve_validation(self.val, self.known_type)[1]

    def cell_types(self) -> list[str]:
        """The cell types with test or validation images, the known type first, then by name."""
        return type_order(set(self.test) | set(self.val), self.known_type)


#: Where the clustering images come from (``data.cluster_from``).
CLUSTER_FROM = ("all", "validation")
#: Which images self-training pseudo-labels (``train.pseudo_label_images``): the clustering images
#: (``data.cluster_from`` decides), the teacher pool (inductive), or the teacher pool and the other types'
#: test images (the transductive variant, named so).
PSEUDO_LABEL_IMAGES = ("clustering", "teacher_pool", "transductive")


def halve_validation(val: dict[str, list[str]], known_type: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(teacher, choosing)``: each other type's validation ids, sorted, split by position, even to the
    teacher and odd to choosing; the known type's all to choosing (it is trained on with labels, never
    pseudo-labeled). Disjoint, and together ``val``."""
    teacher: dict[str, list[str]] = {}
    choosing: dict[str, list[str]] = {}
    for ctype, ids in val.items():
        ids = sorted(ids)
        if ctype == known_type:
            choosing[ctype] = ids
            continue
        if ids[0::2]:
            teacher[ctype] = ids[0::2]
        if ids[1::2]:
            choosing[ctype] = ids[1::2]
    return teacher, choosing


def pseudo_label_ids(splits: Splits, images: str) -> list[str]:
    """The ids self-training pseudo-labels under ``train.pseudo_label_images`` = ``images``: ``clustering``
    (``splits.cluster``), ``teacher_pool`` (:attr:`Splits.teacher_pool`) or ``transductive`` (the teacher
    pool and the other types' test images)."""
    if images == "clustering":
        return list(splits.cluster)
    if images == "teacher_pool":
        return splits.teacher_pool
    if images == "transductive":
        return sorted(set(splits.teacher_pool) | set(splits.test_unknown))
    raise ValueError(f"pseudo-labeled images {images!r}: one of {PSEUDO_LABEL_IMAGES}")


def make_splits(manifest: dict[str, str], n_test_per_type: int = 2, seed: int = 0, protocol: str = "paper",
                test_fraction: float = 0.1, val_fraction: float = 0.05, *, known_type: str = KNOWN_TYPE,
                unknown_val_fraction: float = 0.0, cluster_from: str = "all", fixed: dict[str, str] | None = None,
                labeled=None) -> Splits:
    """The splits of ``protocol`` (module docstring), reproducible from the manifest and the arguments.

    ``manifest``: id -> cell type of every image. ``labeled``: the ids with a mask (default: all); the others
    are unlabeled and join the clustering images only. ``fixed``: id -> split from a folder's manifest.csv
    (``train``, ``val``, ``test``, ``unlabeled``; '' or absent: the protocol decides among those images).
    ``unknown_val_fraction`` (wide protocol): the share of each other type's images held out for validation,
    the rest is tested. ``cluster_from``: ``all`` (every image not of the known type and every unlabeled
    image, test images included: the paper's transductive reading) or ``validation`` (the other types'
    validation images and the unlabeled ones: no test image is clustered)."""
    _check_split_arguments(protocol, n_test_per_type, unknown_val_fraction, cluster_from)
    fixed = {i: s for i, s in (fixed or {}).items() if s}
    labeled = set(manifest) if labeled is None else set(labeled)
    bad = sorted(i for i, s in fixed.items() if s == "train" and manifest[i] != known_type)
    if bad:
        raise ValueError(f"{bad[0]!r} is a train image of cell type {manifest[bad[0]]!r}, but only the known type "
                         f"{known_type!r} is trained on")
    unlabeled = sorted(i for i in manifest if i not in labeled or fixed.get(i) == "unlabeled")
    free = {i: t for i, t in manifest.items() if i in labeled and i not in fixed}  # the protocol places these
    rng = np.random.default_rng(seed)
    if protocol == "wide":
        train, test, val = _wide_splits(free, rng, known_type, test_fraction, val_fraction, unknown_val_fraction)
    else:
        train, test, val = _paper_splits(free, rng, known_type, n_test_per_type)
    for sid, split in sorted(fixed.items()):
        if split == "train":
            train.append(sid)
        elif split in ("test", "val"):
            (test if split == "test" else val).setdefault(manifest[sid], []).append(sid)
    test = {t: sorted(ids) for t, ids in test.items() if ids}
    val = {t: sorted(ids) for t, ids in val.items() if ids}
    if cluster_from == "all":
        cluster = sorted(set(unlabeled) | {i for i, t in manifest.items() if t != known_type})
    else:
        cluster = sorted(set(unlabeled) | {i for t, ids in val.items() if t != known_type for i in ids})
    return Splits(train_ct1=sorted(train), test=test, cluster=cluster, val=val, protocol=protocol,
                  known_type=known_type, unlabeled=unlabeled)


def _check_split_arguments(protocol: str, n_test_per_type: int, unknown_val_fraction: float,
                           cluster_from: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if n_test_per_type < 0:
        raise ValueError(f"n_test_per_type must be >= 0, got {n_test_per_type}")
    if not 0 <= unknown_val_fraction < 1:
        raise ValueError(f"unknown_val_fraction must lie in [0, 1), got {unknown_val_fraction}")
    if cluster_from not in CLUSTER_FROM:
        raise ValueError(f"cluster_from must be one of {CLUSTER_FROM}, got {cluster_from!r}")


def _wide_splits(free: dict[str, str], rng: np.random.Generator, known_type: str, test_fraction: float,
                 val_fraction: float, unknown_val_fraction: float):
    """``(train, test, val)`` of the ``wide`` protocol over the images it places (``free``: id -> type)."""
    if not (0 < test_fraction and 0 <= val_fraction and test_fraction + val_fraction < 1):
        raise ValueError(f"need 0 < test_fraction, 0 <= val_fraction and a sum below 1, got "
                         f"{test_fraction} and {val_fraction}")
    test: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    ct1 = sorted(i for i, t in free.items() if t == known_type)
    order = [ct1[j] for j in rng.permutation(len(ct1))]
    n_test = min(len(ct1), math.ceil(test_fraction * len(ct1)))
    n_val = min(len(ct1) - n_test, math.ceil(val_fraction * len(ct1)))
    if ct1:
        test[known_type] = sorted(order[:n_test])
        val[known_type] = sorted(order[n_test:n_test + n_val])
    train = order[n_test + n_val:]
    for ctype in sorted({t for t in free.values() if t != known_type}):
        ids = sorted(i for i, t in free.items() if t == ctype)
        if unknown_val_fraction > 0:  # drawn after CT1's split, so that one is the same with or without it
            ids = [ids[j] for j in rng.permutation(len(ids))]
        n_val = math.floor(unknown_val_fraction * len(ids))
        test[ctype] = sorted(ids[n_val:])
        if n_val:
            val[ctype] = sorted(ids[:n_val])
    return train, test, val


def _paper_splits(free: dict[str, str], rng: np.random.Generator, known_type: str, n_test_per_type: int):
    """``(train, test, val)`` of the ``paper`` protocol (no validation images) over ``free`` (id -> type)."""
    test: dict[str, list[str]] = {}
    for ctype in sorted(set(free.values()), key=lambda t: (_type_rank(t), t)):
        ids = sorted(i for i, t in free.items() if t == ctype)
        n = min(n_test_per_type, len(ids) - 1 if ctype == known_type else len(ids))
        test[ctype] = sorted(rng.choice(ids, size=max(n, 0), replace=False).tolist())
    train = [i for i, t in free.items() if t == known_type and i not in set(test.get(known_type, []))]
    return train, test, {}


def _type_rank(cell_type: str) -> int:
    """DSB2018's types in the rule's order (what the paper protocol has always drawn in), then others."""
    return CELL_TYPES.index(cell_type) if cell_type in CELL_TYPES else len(CELL_TYPES)


def type_order(types, known_type: str, rule_order: bool = False) -> list[str]:
    """``types`` with the known type first, then by name (``rule_order``: DSB2018's types in the rule's
    order, as Fig. 5 shows them, then the others by name)."""
    if rule_order:
        return sorted(types, key=lambda t: (t != known_type, _type_rank(t), t))
    return sorted(types, key=lambda t: (t != known_type, t))


def open_data(cfg, cache_dir: str | os.PathLike | None = None, progress: bool = True, *,
              write_cache: bool = True) -> tuple[AnySource, dict[str, str], Splits]:
    """``(source, manifest, splits)`` of a ``data`` config section (``cfg.path`` None = the bundled
    mini-set); a manifest built by the rule is cached as ``cache_dir/manifest.json`` (read from there only,
    unless ``write_cache``: the check a command makes before it writes anything, :func:`cache_manifest`).

    Raises :class:`DataError` when no labeled image has the type ``cfg.known_type`` (naming the manifest
    or the data), or a manifest's split cannot be used."""
    source = open_source(cfg.path)
    manifest = manifest_for(source, Path(cache_dir) / MANIFEST_CACHE if cache_dir is not None else None, progress,
                            write_cache=write_cache)
    where = source.manifest_path if source.has_manifest else source.path
    labeled = source.labeled_ids()
    if not any(manifest[i] == cfg.known_type for i in labeled):
        types = sorted({manifest[i] for i in labeled})
        raise DataError(f"{where}: no labeled image of the known cell type {cfg.known_type!r} (data.known_type); "
                        f"the labeled images are of type {', '.join(map(repr, types)) or 'none'}")
    try:
        splits = make_splits(manifest, cfg.n_test_per_type, cfg.seed, cfg.protocol, cfg.test_fraction,
                             cfg.val_fraction, known_type=cfg.known_type, unknown_val_fraction=cfg.unknown_val_fraction,
                             cluster_from=cfg.cluster_from, fixed=source.manifest_splits(), labeled=labeled)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    if cfg.cluster_from == "validation" and not splits.cluster:
        raise DataError(f"{where}: data.cluster_from='validation' but there are no validation images of the unknown "
                        f"types nor unlabeled images to cluster (the wide protocol with data.unknown_val_fraction > 0 "
                        f"makes them)")
    return source, manifest, splits
