"""Reading the folder layout users already have (the StarDist / Cellpose convention).

Layout, one experiment::

    DIR/images/<id>.png|.tif|.tiff   the inputs (gray, RGB or RGBA; 8 or 16 bit)
    DIR/masks/<id>.png|.tif|.tiff    16-bit (or 8-bit) instance-label images, 0 = background; optional
    DIR/manifest.csv                 optional: columns id, cell_type[, split]

or several experiments side by side, each folder's name its cell type (a labeled experiment and an
unlabeled one, the situation the paper is about)::

    DIR/<cell type>/images/<id>.png   DIR/<cell type>/masks/<id>.png   [DIR/manifest.csv]

An image without a mask is *unlabeled*: it joins the clustering images only. Ids are the file names'
stems and must be unique across the experiments. A manifest's ``cell_type`` column names each image's
imaging experiment (``data.known_type`` picks the one the segmentation trains on) and its optional
``split`` column fixes where an image goes (``train``, ``val``, ``test`` or ``unlabeled``; blank: the
protocol decides). With one experiment and no manifest the DSB2018 cell-type rule and the ``paper`` /
``wide`` protocols apply, as for the Kaggle layout.

Samples are what :class:`dng_jax.data.dsb2018.Source` gives: an RGB uint8 image and a uint16 label image.
Every problem is a :class:`DataError` naming the file (or the manifest's line) and what is wrong: a mask
whose size differs from its image, an RGB or floating-point mask, two files with one id, a manifest row
naming a missing image, an unknown split, a ``test`` / ``train`` / ``val`` image without a mask.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from dng_jax.data.dsb2018 import LAYOUTS, Sample
from dng_jax.errors import DataError
from dng_jax.io.images import read_image
from dng_jax.io.labels import LABEL_SUFFIXES, read_labels

__all__ = ["FOLDER_SPLITS", "LABELED_SPLITS", "MANIFEST_NAME", "FolderSource", "is_folder_layout"]

MANIFEST_NAME = "manifest.csv"
#: The values of the manifest's ``split`` column ('' = the protocol decides).
FOLDER_SPLITS = ("train", "val", "test", "unlabeled")
#: Splits whose images need a mask.
LABELED_SPLITS = ("train", "val", "test")
IMAGE_FILE_SUFFIXES = (".png", ".tif", ".tiff")


def _has_images(folder: Path) -> bool:
    images = folder / "images"
    return images.is_dir() and any(f.suffix.lower() in IMAGE_FILE_SUFFIXES for f in images.iterdir())


def _experiments(path: Path) -> list[tuple[Path, str | None]]:
    """``[(folder, cell type from its name or None)]``: ``path`` itself when it holds ``images/``, else its
    subfolders that do. A Kaggle-layout folder (``<id>/images/<id>.png``) gives none."""
    if _has_images(path):
        return [(path, None)]
    subs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and _has_images(d))
    kaggle = any((d / "images" / f"{d.name}.png").is_file() for d in subs)  # a sample named as its folder
    return [] if kaggle else [(d, d.name) for d in subs]


def is_folder_layout(path: str | os.PathLike) -> bool:
    """True for a folder in the layout of the module docstring (one experiment or several side by side)."""
    return Path(path).is_dir() and bool(_experiments(Path(path)))


def _index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """``{id: file}`` of a folder's files with one of ``suffixes``; two files with one id are an error."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file() or f.suffix.lower() not in suffixes:
            continue
        if f.stem in out:
            raise DataError(f"{f}: duplicate id {f.stem!r} (also {out[f.stem].name}); give each image one file")
        out[f.stem] = f
    return out


def _header(path: Path) -> tuple[tuple[int, int], int, str]:
    """``((height, width), channels, dtype kind)`` of an image file, from its header (pixels not decoded);
    kind is numpy's: 'u' / 'i' integers, 'f' floating point, 'b' bool."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, kind = tuple(series.shape), np.dtype(series.dtype).kind
            if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
                shape = shape[1:] + shape[:1]  # (C, H, W) -> (H, W, C), as read_image does
            if len(shape) == 3 and shape[0] == 1:
                shape = shape[1:]
            return tuple(shape[:2]), (shape[2] if len(shape) == 3 else 1), kind
        with Image.open(path) as im:
            channels = len(im.getbands())
            kind = "f" if im.mode == "F" else "u"
            return (im.size[1], im.size[0]), channels, kind
    except (OSError, ValueError, tifffile.TiffFileError, IndexError) as e:
        raise DataError(f"{path}: cannot read it as an image ({type(e).__name__}: {e})") from None


def _check_pair(image: Path, mask: Path) -> None:
    """A mask must be one integer channel of its image's size (checked from the headers, before any work)."""
    (h, w), _, _ = _header(image)
    (mh, mw), channels, kind = _header(mask)
    if channels > 1:
        raise DataError(f"{mask}: a colour ({channels}-channel) image; a mask must be a label image (8- or 16-bit "
                        f"gray, 0 = background, 1..n = nuclei)")
    if kind == "f":
        raise DataError(f"{mask}: floating-point pixels; a mask must be an integer label image (8- or 16-bit, "
                        f"0 = background, 1..n = nuclei)")
    if (mh, mw) != (h, w):
        raise DataError(f"{mask}: mask is {mw}x{mh} (WxH) but its image {image.name} is {w}x{h}")


class FolderSource:
    """A collection in the folder layout (module docstring); ``load`` as :class:`~dng_jax.data.dsb2018.Source`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        experiments = _experiments(self.path) if self.path.is_dir() else []
        if not experiments:
            raise DataError(f"{self.path}: no images/ folder with images in it; expected {LAYOUTS}")
        self._images: dict[str, Path] = {}
        self._masks: dict[str, Path] = {}
        folder_types: dict[str, str] = {}
        for folder, ctype in experiments:
            images = _index(folder / "images", IMAGE_FILE_SUFFIXES)
            masks = _index(folder / "masks", LABEL_SUFFIXES)
            for sid, f in masks.items():
                if sid not in images:
                    raise DataError(f"{f}: a mask without an image (no images/{sid}.png or .tif beside it)")
            for sid, f in images.items():
                if sid in self._images:
                    raise DataError(f"{f}: duplicate id {sid!r} (also {self._images[sid]}); ids must be unique "
                                    f"across the experiments")
                self._images[sid] = f
                if ctype is not None:
                    folder_types[sid] = ctype
            self._masks.update(masks)
            if ctype is not None and (folder / MANIFEST_NAME).exists():
                raise DataError(f"{folder / MANIFEST_NAME}: one manifest.csv for all experiments goes in {self.path}")
        for sid in self._masks:
            _check_pair(self._images[sid], self._masks[sid])
        self.manifest_path = self.path / MANIFEST_NAME
        self._types: dict[str, str] | None = folder_types or None
        self._splits: dict[str, str] = {}
        if self.manifest_path.exists():
            self._types, self._splits = self._read_manifest()

    # -- the manifest ------------------------------------------------------------------------------
    def _read_manifest(self) -> tuple[dict[str, str], dict[str, str]]:
        where = self.manifest_path
        try:
            with open(where, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{where}: cannot read it ({e})") from None
        if not rows:
            raise DataError(f"{where}: empty; expected a header line 'id,cell_type,split'")
        header = [h.strip().lower() for h in rows[0]]
        if "id" not in header or "cell_type" not in header:
            raise DataError(f"{where}: the header must name the columns id and cell_type (and optionally split), "
                            f"got {','.join(rows[0])!r}")
        col = {name: header.index(name) for name in ("id", "cell_type", "split") if name in header}
        types: dict[str, str] = {}
        splits: dict[str, str] = {}
        for line, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
            sid, ctype, split = cells["id"], cells["cell_type"], cells.get("split", "")
            here = f"{where}, line {line}"
            if not sid:
                raise DataError(f"{here}: no id")
            if sid in types:
                raise DataError(f"{here}: duplicate id {sid!r}")
            if sid not in self._images:
                raise DataError(f"{here}: names {sid!r}, but there is no image {sid}.png or .tif")
            if not ctype:
                raise DataError(f"{here}: no cell_type for {sid!r}")
            if split and split not in FOLDER_SPLITS:
                raise DataError(f"{here}: unknown split {split!r} for {sid!r}; use one of {', '.join(FOLDER_SPLITS)} "
                                f"or leave it blank (the protocol decides)")
            if split in LABELED_SPLITS and sid not in self._masks:
                raise DataError(f"{here}: {sid!r} is a {split} image but has no mask (masks/{sid}.png or .tif)")
            types[sid] = ctype
            splits[sid] = split
        missing = sorted(set(self._images) - set(types))
        if missing:
            raise DataError(f"{self._images[missing[0]]}: not in {where} ({len(missing)} images are not); give every "
                            f"image a row, or remove the manifest")
        return types, splits

    @property
    def has_manifest(self) -> bool:
        return self.manifest_path.exists()

    def manifest_types(self) -> dict[str, str] | None:
        """id -> cell type from ``manifest.csv``, else from the experiments' folder names (None for one
        experiment without a manifest: the rule decides)."""
        return None if self._types is None else dict(self._types)

    def manifest_splits(self) -> dict[str, str]:
        """id -> the manifest's split ('' = the protocol decides; empty without a manifest)."""
        return dict(self._splits)

    # -- access ------------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return sorted(self._images)

    def labeled_ids(self) -> list[str]:
        """The images with a mask (those marked ``unlabeled`` in the manifest are not)."""
        return sorted(i for i in self._masks if self._splits.get(i, "") != "unlabeled")

    def __len__(self) -> int:
        return len(self._images)

    def __contains__(self, sid: str) -> bool:
        return sid in self._images

    def image_file(self, sid: str) -> str:
        if sid not in self._images:
            raise DataError(f"{self.path}: no image with id {sid!r}")
        return str(self._images[sid])

    def load_image(self, sid: str) -> np.ndarray:
        return read_image(self.image_file(sid))

    def load_labels(self, sid: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The mask of ``sid`` as uint16; a size other than the image's, colour or float pixels are errors."""
        if sid not in self._masks:
            raise DataError(f"{self.path / 'masks'}: no mask for {sid!r} (masks/{sid}.png or .tif)")
        path = self._masks[sid]
        labels = read_labels(path, integer_only=True)
        if labels.dtype != np.uint16:
            raise DataError(f"{path}: label {int(labels.max())} does not fit 16 bits; number the nuclei 1..n "
                            f"with n <= 65535")
        if shape is None:
            shape = self.load_image(sid).shape[:2]
        if labels.shape != tuple(shape):
            raise DataError(f"{path}: mask is {labels.shape[1]}x{labels.shape[0]} (WxH) but its image "
                            f"{self._images[sid].name} is {shape[1]}x{shape[0]}")
        return labels

    def load(self, sid: str, with_labels: bool = True) -> Sample:
        image = self.load_image(sid)
        labels = self.load_labels(sid, image.shape[:2]) if with_labels else np.zeros(image.shape[:2], np.uint16)
        return Sample(sid, image, labels)

    def __iter__(self) -> Iterator[Sample]:
        for sid in self.ids():
            yield self.load(sid, with_labels=sid in self._masks)

    def close(self) -> None:
        pass

    def __enter__(self) -> FolderSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
