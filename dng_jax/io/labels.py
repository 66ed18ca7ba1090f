"""Reading and writing instance-label images (0 = background, 1..n = objects).

Formats: PNG (8- or 16-bit single channel; written as 16-bit) and TIFF (any unsigned/non-negative
integer type; written as uint16, or uint32 past 65535 objects). The file type is chosen by suffix
(.png, .tif, .tiff, case-insensitive). Writes are atomic (temp file in the same folder + os.replace)
so an interrupted job never leaves a half-written label image that a later evaluation would read.
Every problem reading a file raises :class:`~dng_jax.errors.DataError` (a ``ValueError``) naming it.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from dng_jax.errors import DataError
from dng_jax.io.atomic import atomic_write

__all__ = ["LABEL_SUFFIXES", "read_labels", "write_labels"]

LABEL_SUFFIXES = (".png", ".tif", ".tiff")

# PIL modes that hold one integer channel; anything else (RGB, RGBA, LA, F, ...) is not a label image.
_PIL_LABEL_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".png":
        return "png"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    raise DataError(f"{path}: unsupported label image type {path.suffix!r} "
                     f"(expected one of {', '.join(LABEL_SUFFIXES)})")


def _as_labels(a: np.ndarray, path: Path, integer_only: bool = False) -> np.ndarray:
    """Validate a decoded array and return it as uint16 (uint32 when the labels need it); ``integer_only``
    refuses floating-point pixels even where their values are whole numbers."""
    if a.ndim == 3 and a.shape[0] == 1:  # (1, H, W) single-page stacks
        a = a[0]
    elif a.ndim == 3 and a.shape[-1] == 1:  # (H, W, 1)
        a = a[..., 0]
    if a.ndim != 2:
        hint = " (looks like a colour image)" if a.ndim == 3 and a.shape[-1] in (3, 4) else ""
        raise DataError(f"{path}: label image must be 2-D, got shape {a.shape}{hint}")
    if a.dtype == np.bool_:
        return a.astype(np.uint16)
    if np.issubdtype(a.dtype, np.floating):
        if integer_only:
            raise DataError(f"{path}: floating-point pixels ({a.dtype}); a mask must be an integer label image "
                            f"(8- or 16-bit, 0 = background, 1..n = nuclei)")
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise DataError(f"{path}: floating-point image with non-integer values is not a label image")
    elif not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: unsupported pixel type {a.dtype} for a label image")
    if a.size and a.min() < 0:
        raise DataError(f"{path}: label image has negative values (min {a.min()})")
    top = a.max() if a.size else 0
    if top > np.iinfo(np.uint32).max:
        raise DataError(f"{path}: label value {top} does not fit in uint32")
    return a.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32, copy=False)


def read_labels(path: str | os.PathLike, integer_only: bool = False) -> np.ndarray:
    """Read a label image as uint16 (or uint32 for TIFFs with labels above 65535); ``integer_only``: a
    floating-point image is an error even with whole-number values (a dataset's masks)."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if kind == "png":
        try:
            with Image.open(path) as im:
                if im.mode not in _PIL_LABEL_MODES:
                    raise DataError(f"{path}: PNG mode {im.mode} is not a label image "
                                     f"(expected 8/16-bit single-channel, e.g. 16-bit grayscale)")
                a = np.asarray(im)
        except DataError:
            raise
        except Exception as e:  # PIL raises many types for corrupt files
            raise DataError(f"{path}: cannot read PNG ({type(e).__name__}: {e})") from None
    else:
        log = logging.getLogger("tifffile")
        level = log.level
        log.setLevel(logging.ERROR)  # its warnings on broken files would break the one-line errors
        try:
            a = tifffile.imread(path)
        except Exception as e:
            raise DataError(f"{path}: cannot read TIFF ({type(e).__name__}: {e})") from None
        finally:
            log.setLevel(level)
        if np.asarray(a).size == 0:
            raise DataError(f"{path}: cannot read TIFF (no image data; corrupt or empty file)")
    return _as_labels(np.asarray(a), path, integer_only)


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label image atomically: 16-bit PNG for .png, uint16/uint32 TIFF for .tif/.tiff."""
    path = Path(path)
    kind = _kind(path)
    a = np.asarray(labels)
    if a.dtype == np.bool_:
        a = a.astype(np.uint16)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{path}: labels must have an integer dtype, got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{path}: labels must be 2-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{path}: labels are empty (shape {a.shape})")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise ValueError(f"{path}: labels have negative values (min {lo})")
    if kind == "png" and hi > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: label {hi} does not fit a 16-bit PNG (max 65535); "
                         f"relabel consecutively or write a .tif")
    if hi > np.iinfo(np.uint32).max:
        raise ValueError(f"{path}: label {hi} does not fit in uint32")
    a = np.ascontiguousarray(a.astype(np.uint16 if hi <= np.iinfo(np.uint16).max else np.uint32))
    if kind == "png":
        atomic_write(path, lambda f: Image.fromarray(a).save(f, format="PNG"))
    else:
        buf = io.BytesIO()  # tifffile wants a named file or a BytesIO, not an fd-backed stream
        tifffile.imwrite(buf, a, compression="zlib")
        atomic_write(path, lambda f: f.write(buf.getvalue()))
