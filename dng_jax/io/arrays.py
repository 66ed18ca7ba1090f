"""Data matrices from ``.npy`` files, checked before any work (what ``dng_jax.cluster`` reads)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from dng_jax.errors import InputError

__all__ = ["load_data_matrix"]

_NPY_MAGIC = b"\x93NUMPY"  # what numpy.save writes first (numpy.lib.format)
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive (refused below, by name)


def load_data_matrix(path: str | os.PathLike) -> np.ndarray:
    """An ``n x d`` float32 data matrix from a ``.npy`` file; :class:`InputError` naming the file and
    what is wrong (missing, empty, not 2-D, not numeric, NaN/inf, too large for float32 distances)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy file")
    if p.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    with open(p, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC and not head.startswith(_ZIP_MAGIC):
        raise InputError(f"{path}: not an .npy file (no NumPy header); write the n x d matrix with numpy.save")
    try:
        X = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in why:  # numpy's advice is to load it unsafely: never
            why = "it holds Python objects, not numbers"
        raise InputError(f"{path}: not a readable .npy array ({why})") from None
    if isinstance(X, np.lib.npyio.NpzFile):
        X.close()
        raise InputError(f"{path}: is an .npz archive, expected a single .npy array")
    if X.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array (n patterns x d features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{path}: empty array of shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise InputError(f"{path}: expected a numeric array, got dtype {X.dtype}")
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{path}: {int(bad.sum())} NaN/inf values (first at row {r}, column {c})")
    # NG / kMC / GNG keep centroids inside the data's convex hull, so every squared distance is at most
    # 4 max ||x||^2; with room for the sums around it, that must stay far from float32's limit.
    norm2 = float(np.max(np.sum(np.square(X.astype(np.float64)), axis=1)))
    if not 4.0 * norm2 < float(np.finfo(np.float32).max) / 8:
        raise InputError(f"{path}: values up to {float(np.max(np.abs(X))):.3g} are too large: squared distances "
                         f"overflow float32; rescale the data first (e.g. standardise each column)")
    return X.astype(np.float32)
