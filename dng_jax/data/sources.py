"""Opening a collection of images, whatever its layout: :func:`open_source`.

Two layouts are read, both from what users already have:

- the Kaggle DSB2018 layout, ``<id>/images/<id>.png`` and one PNG per nucleus in ``<id>/masks/``, from a
  folder or straight from its zip (:class:`dng_jax.data.dsb2018.Source`);
- the folder layout of StarDist / Cellpose, ``images/<id>.png``, ``masks/<id>.png`` (label images) and an
  optional ``manifest.csv`` (:class:`dng_jax.data.folder.FolderSource`).

Both give the same samples (an RGB uint8 image and a uint16 label image) through the same methods
(``ids``, ``load``, ``load_image``, ``load_labels``, ``labeled_ids``, ``manifest_types``,
``manifest_splits``), so every command that takes ``data.path`` reads either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from dng_jax.data.dsb2018 import Source, bundled_minidata_path
from dng_jax.data.folder import FolderSource, is_folder_layout

__all__ = ["AnySource", "open_source"]

AnySource = Union[Source, FolderSource]


def open_source(path: str | os.PathLike | None = None, overlap_tolerance: float = 0.05) -> AnySource:
    """Open a folder-layout folder, or a Kaggle-layout folder or zip; ``None`` opens the bundled mini-set."""
    if path is not None and str(path).strip() and Path(path).is_dir() and is_folder_layout(path):
        return FolderSource(path)
    return Source(bundled_minidata_path() if path is None else path, overlap_tolerance)
