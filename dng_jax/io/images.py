"""Input images for prediction: any PNG / TIFF / JPEG / BMP, folders of them, Kaggle-layout folders."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from dng_jax.data.dsb2018 import decode_png, to_rgb_uint8
from dng_jax.errors import DataError, InputError

__all__ = ["IMAGE_SUFFIXES", "read_image", "list_inputs"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any PNG / TIFF / JPEG as RGB uint8 (gray is repeated, alpha dropped, 16-bit rescaled)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            a = tifffile.imread(path)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{path}: cannot read TIFF ({type(e).__name__}: {e})") from None
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)
    else:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
        try:
            a = decode_png(data, str(path))
        except DataError:
            if _format_known(data):
                raise  # a broken file of a known format: the decoder's message says what is wrong
            raise DataError(f"{path}: not a readable image (its content is not PNG, TIFF, JPEG or BMP)") from None
    return to_rgb_uint8(a, str(path))


def _format_known(data: bytes) -> bool:
    """Whether PIL recognises the bytes' format from their header (a truncated file of a known format
    fails later, with another error)."""
    try:
        Image.open(io.BytesIO(data)).close()
    except UnidentifiedImageError:
        return False
    except Exception:  # noqa: BLE001 - the header was recognised, the rest is broken
        return True
    return True


def list_inputs(inputs: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{image id: file}`` for files, folders of images and Kaggle-layout folders."""
    out: dict[str, Path] = {}

    def add(name: str, p: Path):
        if name in out and out[name] != p:
            raise InputError(f"two inputs named {name!r}: {out[name]} and {p}")
        out[name] = p

    for item in inputs:
        p = Path(item)
        if p.is_file():
            add(p.stem, p)
        elif p.is_dir():
            found = False
            for f in sorted(p.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    add(f.stem, f)
                    found = True
                elif f.is_dir() and (f / "images").is_dir():
                    for g in sorted((f / "images").iterdir()):
                        if g.suffix.lower() in IMAGE_SUFFIXES:
                            add(f.name, g)
                            found = True
                            break
            if not found:
                raise InputError(f"--input {p}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        else:
            raise InputError(f"--input {p}: does not exist")
    return out
