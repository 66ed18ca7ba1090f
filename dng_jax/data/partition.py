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
  set (``val_fraction``, 5%), both kept out of training; the unknown test set is *every* non-CT1 image
  (they are never trained on with labels). Two test images per type cannot tell methods apart: one
  fluorescence image's MAP varies by about 0.22 between images.

In both, the unlabeled clustering set is every non-CT1 image, test images included, as in the paper
("training with the test data is a viable approach", pseudo-labels only). Validation images are for
choosing settings (thresholds, epochs), never the test images.
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

from dng_jax.data.dsb2018 import Source, bundled_minidata_path, open_source
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
    "write_manifest",
    "read_manifest",
    "load_or_build_manifest",
    "Splits",
    "PROTOCOLS",
    "make_splits",
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


def build_manifest(source: Source, progress: bool = True) -> dict[str, str]:
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


def load_or_build_manifest(source: Source, path: str | os.PathLike | None = None,
                           progress: bool = True) -> dict[str, str]:
    """Read the manifest at ``path`` if it covers exactly ``source``'s ids; else build and write it."""
    if path is not None and Path(path).exists():
        try:
            manifest = read_manifest(path)
        except DataError:
            manifest = None
        if manifest is not None and sorted(manifest) == source.ids():
            return manifest
    manifest = build_manifest(source, progress)
    if path is not None:
        write_manifest(path, manifest)
    return manifest


def manifest_for(source: Source, cache: str | os.PathLike | None = None, progress: bool = True) -> dict[str, str]:
    """The shipped manifest when ``source`` is the DSB2018 stage-1 set it was made for (no image is read);
    otherwise the rule applied to ``source`` (cached at ``cache`` when given)."""
    shipped = Path(bundled_minidata_path()).parent / "dsb2018_stage1_manifest.json"
    if shipped.exists():
        try:
            m = read_manifest(shipped)
            if sorted(m) == source.ids():
                return m
        except DataError:
            pass
    return load_or_build_manifest(source, cache, progress)


@dataclasses.dataclass(frozen=True)
class Splits:
    train_ct1: list[str]  # labelled segmentation training set (CT1 minus its test and validation images)
    test: dict[str, list[str]]  # cell type -> test ids
    cluster: list[str]  # unlabeled clustering set: every non-CT1 image, test images included
    val: list[str] = dataclasses.field(default_factory=list)  # CT1 validation ids (wide protocol)
    protocol: str = "paper"

    @property
    def test_known(self) -> list[str]:
        return list(self.test.get(KNOWN_TYPE, []))

    @property
    def test_unknown(self) -> list[str]:
        return [i for t, ids in sorted(self.test.items()) if t != KNOWN_TYPE for i in ids]

    @property
    def test_all(self) -> list[str]:
        return self.test_known + self.test_unknown


def make_splits(manifest: dict[str, str], n_test_per_type: int = 2, seed: int = 0, protocol: str = "paper",
                test_fraction: float = 0.1, val_fraction: float = 0.05) -> Splits:
    """The splits of ``protocol`` (module docstring), reproducible from the manifest and the arguments."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if n_test_per_type < 0:
        raise ValueError(f"n_test_per_type must be >= 0, got {n_test_per_type}")
    cluster = sorted(i for i, t in manifest.items() if t != KNOWN_TYPE)
    rng = np.random.default_rng(seed)
    if protocol == "wide":
        if not (0 < test_fraction and 0 <= val_fraction and test_fraction + val_fraction < 1):
            raise ValueError(f"need 0 < test_fraction, 0 <= val_fraction and a sum below 1, got "
                             f"{test_fraction} and {val_fraction}")
        ct1 = sorted(i for i, t in manifest.items() if t == KNOWN_TYPE)
        order = [ct1[j] for j in rng.permutation(len(ct1))]
        n_test = min(len(ct1), math.ceil(test_fraction * len(ct1)))
        n_val = min(len(ct1) - n_test, math.ceil(val_fraction * len(ct1)))
        test = {KNOWN_TYPE: sorted(order[:n_test])} if ct1 else {}
        test.update({t: sorted(i for i in cluster if manifest[i] == t) for t in CELL_TYPES
                     if t != KNOWN_TYPE and any(manifest[i] == t for i in cluster)})
        return Splits(train_ct1=sorted(order[n_test + n_val:]), test=test, cluster=cluster,
                      val=sorted(order[n_test:n_test + n_val]), protocol=protocol)
    test = {}
    for ctype in CELL_TYPES:
        ids = sorted(i for i, t in manifest.items() if t == ctype)
        if not ids:
            continue
        n = min(n_test_per_type, len(ids) - 1 if ctype == KNOWN_TYPE else len(ids))
        test[ctype] = sorted(rng.choice(ids, size=max(n, 0), replace=False).tolist())
    known_test = set(test.get(KNOWN_TYPE, []))
    train = sorted(i for i, t in manifest.items() if t == KNOWN_TYPE and i not in known_test)
    return Splits(train_ct1=train, test=test, cluster=cluster, protocol=protocol)


def open_data(cfg, cache_dir: str | os.PathLike | None = None,
              progress: bool = True) -> tuple[Source, dict[str, str], Splits]:
    """``(source, manifest, splits)`` of a ``data`` config section (``cfg.path`` None = the bundled
    mini-set); a manifest built by the rule is cached as ``cache_dir/manifest.json``."""
    source = open_source(cfg.path)
    manifest = manifest_for(source, Path(cache_dir) / "manifest.json" if cache_dir is not None else None, progress)
    return source, manifest, make_splits(manifest, cfg.n_test_per_type, cfg.seed, cfg.protocol, cfg.test_fraction,
                                         cfg.val_fraction)
