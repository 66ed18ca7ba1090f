"""Kaggle DSB2018 run-length encoding, both ways, and the competition's CSV files.

Pixels are numbered 1, 2, ... down the first column, then down the second, and so on (column-major,
i.e. Fortran order, 1-indexed). A mask is written as ``"start length start length ..."`` with runs in
ascending order; an empty mask is the empty string. A submission has one row per object
(``ImageId,EncodedPixels``) and an image with no objects gets one row with an empty EncodedPixels, as
Kaggle's sample submission did.

Every malformed input raises :class:`ValueError` naming where it came from (file and line for CSVs),
so a broken file stops a batch job with a line a person can act on.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from dng_jax.io.atomic import atomic_write_text
from dng_jax.evaluation.metrics import check_label_image, relabel_consecutive

__all__ = [
    "rle_encode",
    "rle_decode",
    "parse_rle",
    "labels_to_rles",
    "rles_to_labels",
    "read_rle_csv",
    "read_solution_csv",
    "write_submission_csv",
]


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (nonzero = inside) as a Kaggle RLE string; empty mask -> ``""``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode: mask must be 2-D, got shape {m.shape}")
    flat = np.concatenate([[False], m.ravel(order="F") != 0, [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # 0-based: run starts at even, run ends at odd
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(2 * starts.size, np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def parse_rle(rle: str, where: str = "rle") -> tuple[np.ndarray, np.ndarray]:
    """Parse and sanity-check an RLE string: (1-based starts, lengths) as int64 arrays.

    Checks the tokens are integers, come in pairs, starts >= 1, lengths >= 1 and runs ascend without
    overlapping; bounds need a shape and are checked by :func:`rle_decode`.
    """
    if not isinstance(rle, str):
        raise ValueError(f"{where}: RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if len(tokens) % 2:
        raise ValueError(f"{where}: odd number of RLE tokens ({len(tokens)}); expected start/length pairs")
    try:
        nums = np.array([int(tok) for tok in tokens], dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(tok for tok in tokens if not _is_int(tok))
        raise ValueError(f"{where}: bad RLE token {bad!r} (expected a positive integer)") from None
    starts, lengths = nums[0::2], nums[1::2]
    if starts.size:
        if starts.min() < 1:
            raise ValueError(f"{where}: RLE start {int(starts.min())} < 1 (pixels are numbered from 1)")
        if lengths.min() < 1:
            raise ValueError(f"{where}: RLE run length {int(lengths.min())} < 1")
        ends = starts + lengths  # one past the last pixel
        bad = np.flatnonzero(starts[1:] < ends[:-1])
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{where}: RLE runs overlap or are not ascending: run {k + 1} "
                             f"({int(starts[k])} {int(lengths[k])}) then run {k + 2} "
                             f"({int(starts[k + 1])} {int(lengths[k + 1])})")
    return starts, lengths


def _is_int(tok: str) -> bool:
    try:
        int(tok)
        return True
    except ValueError:
        return False


def _shape2(shape, where: str) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: shape must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{where}: shape must be positive, got {(h, w)}")
    return h, w


def _run_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """0-based flat (Fortran-order) indices covered by the runs."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    # position within the concatenated runs, shifted per run to its start
    offsets = np.repeat(starts - 1 - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def rle_decode(rle: str, shape: tuple[int, int], where: str = "rle") -> np.ndarray:
    """Decode a Kaggle RLE string into a bool mask of ``shape`` (height, width)."""
    h, w = _shape2(shape, where)
    starts, lengths = parse_rle(rle, where)
    if starts.size and int(starts[-1] + lengths[-1] - 1) > h * w:
        raise ValueError(f"{where}: RLE run {int(starts[-1])} {int(lengths[-1])} ends at pixel "
                         f"{int(starts[-1] + lengths[-1] - 1)}, past the {h}x{w} image ({h * w} pixels)")
    flat = np.zeros(h * w, bool)
    flat[_run_indices(starts, lengths)] = True
    return flat.reshape((h, w), order="F")


def labels_to_rles(labels: np.ndarray) -> list[str]:
    """One RLE string per object of a label image, in increasing label order (empty image -> [])."""
    lab = check_label_image(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels_to_rles: label image must be 2-D, got shape {lab.shape}")
    flat, n = relabel_consecutive(lab.T)  # transpose + C ravel == Fortran order
    if n == 0:
        return []
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n + 1)
    bounds = np.cumsum(counts)
    out = []
    for k in range(1, n + 1):
        idx = order[bounds[k - 1]:bounds[k]]  # sorted ascending (stable sort of a ravel)
        brk = np.flatnonzero(np.diff(idx) != 1)
        starts = np.concatenate([[idx[0]], idx[brk + 1]])
        ends = np.concatenate([idx[brk], [idx[-1]]])
        runs = np.empty(2 * starts.size, np.int64)
        runs[0::2] = starts + 1
        runs[1::2] = ends - starts + 1
        out.append(" ".join(map(str, runs.tolist())))
    return out


def rles_to_labels(rles: Iterable[str], shape: tuple[int, int], where: str = "rles") -> np.ndarray:
    """Label image (uint16; uint32 past 65535 objects) with object k+1 from ``rles[k]``.

    Empty strings (Kaggle's "no objects" row) are skipped; overlap between objects is an error.
    """
    h, w = _shape2(shape, where)
    rles = list(rles)
    n_objs = sum(1 for r in rles if not (isinstance(r, str) and not r.strip()))
    dtype = np.uint16 if n_objs <= np.iinfo(np.uint16).max else np.uint32
    flat = np.zeros(h * w, dtype)
    label = 0
    for k, rle in enumerate(rles):
        if isinstance(rle, str) and not rle.strip():
            continue
        sub = f"{where}[{k}]"
        mask = rle_decode(rle, (h, w), sub).ravel(order="F")
        label += 1
        clash = flat[mask]
        if clash.any():
            raise ValueError(f"{sub}: object overlaps object {int(clash[clash > 0][0])} "
                             f"({int(np.count_nonzero(clash))} shared pixels)")
        flat[mask] = label
    return flat.reshape((h, w), order="F")


def _open_csv(path: Path, required: tuple[str, ...]):
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"{path}: cannot open ({e.strerror or e})") from None
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise ValueError(f"{path}: empty file (expected a header with {', '.join(required)})") from None
    except (csv.Error, UnicodeDecodeError) as e:
        fh.close()
        raise ValueError(f"{path}:1: unreadable CSV header ({e})") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise ValueError(f"{path}:1: missing column(s) {', '.join(missing)}; header is {header}")
    return fh, reader, {c: header.index(c) for c in required}, len(header)


def _rows(path: Path, fh, reader, ncols: int):
    """Yield (line number, row) with CSV errors turned into ValueError naming the line."""
    with fh:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                raise ValueError(f"{path}:{reader.line_num}: unreadable CSV row ({e})") from None
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != ncols:
                raise ValueError(f"{path}:{reader.line_num}: expected {ncols} fields, got {len(row)}")
            yield reader.line_num, row


def read_rle_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read ``ImageId,EncodedPixels`` rows (e.g. stage1_train_labels.csv or a submission).

    Returns ``{image_id: [rle, ...]}`` in file order; an image whose only row has an empty
    EncodedPixels maps to ``[]``. Each RLE is syntax-checked (bounds need shapes: see
    :func:`rles_to_labels`).
    """
    path = Path(path)
    fh, reader, col, ncols = _open_csv(path, ("ImageId", "EncodedPixels"))
    out: dict[str, list[str]] = {}
    for line, row in _rows(path, fh, reader, ncols):
        image_id, rle = row[col["ImageId"]].strip(), row[col["EncodedPixels"]].strip()
        if not image_id:
            raise ValueError(f"{path}:{line}: empty ImageId")
        objs = out.setdefault(image_id, [])
        if rle:
            parse_rle(rle, f"{path}:{line}")
            objs.append(rle)
    return out


def read_solution_csv(path: str | os.PathLike, return_usage: bool = False):
    """Read Kaggle's ``stage1_solution.csv`` (ImageId,EncodedPixels,Height,Width,Usage) into labels.

    Returns ``{image_id: uint16 label image}`` (objects numbered in file order), or with
    ``return_usage=True`` the pair ``(labels, {image_id: usage})``.
    """
    path = Path(path)
    fh, reader, col, ncols = _open_csv(path, ("ImageId", "EncodedPixels", "Height", "Width", "Usage"))
    shapes: dict[str, tuple[int, int]] = {}
    usage: dict[str, str] = {}
    rows: dict[str, list[tuple[int, str]]] = {}
    for line, row in _rows(path, fh, reader, ncols):
        where = f"{path}:{line}"
        image_id = row[col["ImageId"]].strip()
        if not image_id:
            raise ValueError(f"{where}: empty ImageId")
        try:
            shape = (int(row[col["Height"]]), int(row[col["Width"]]))
        except ValueError:
            raise ValueError(f"{where}: Height/Width must be integers, got "
                             f"{row[col['Height']]!r}/{row[col['Width']]!r}") from None
        shape = _shape2(shape, where)
        if shapes.setdefault(image_id, shape) != shape:
            raise ValueError(f"{where}: image {image_id} is {shape[0]}x{shape[1]} here but "
                             f"{shapes[image_id][0]}x{shapes[image_id][1]} on an earlier line")
        usage.setdefault(image_id, row[col["Usage"]].strip())
        rows.setdefault(image_id, [])
        rle = row[col["EncodedPixels"]].strip()
        if rle:
            rows[image_id].append((line, rle))
    labels: dict[str, np.ndarray] = {}
    for image_id, objs in rows.items():
        h, w = shapes[image_id]
        dtype = np.uint16 if len(objs) <= np.iinfo(np.uint16).max else np.uint32
        flat = np.zeros(h * w, dtype)
        first_line = np.zeros(len(objs) + 1, np.int64)
        for k, (line, rle) in enumerate(objs, start=1):
            mask = rle_decode(rle, (h, w), f"{path}:{line}").ravel(order="F")
            clash = flat[mask]
            if clash.any():
                other = int(clash[clash > 0][0])
                raise ValueError(f"{path}:{line}: object overlaps the object on line "
                                 f"{int(first_line[other])} of image {image_id} "
                                 f"({int(np.count_nonzero(clash))} shared pixels)")
            flat[mask] = k
            first_line[k] = line
        labels[image_id] = flat.reshape((h, w), order="F")
    return (labels, usage) if return_usage else labels


def write_submission_csv(path: str | os.PathLike, predictions: Mapping[str, np.ndarray]) -> None:
    """Write ``{image_id: label image}`` as a Kaggle submission CSV, atomically (temp file + rename).

    One row per object in increasing label order; an image without objects gets one row with an
    empty EncodedPixels.
    """
    path = Path(path)
    rows: list[tuple[str, str]] = []
    for image_id, labels in predictions.items():
        if not isinstance(image_id, str) or not image_id or "," in image_id or "\n" in image_id:
            raise ValueError(f"{path}: bad image id {image_id!r}")
        try:
            rles = labels_to_rles(labels)
        except ValueError as e:
            raise ValueError(f"{path}: image {image_id}: {e}") from None
        rows.extend((image_id, r) for r in rles) if rles else rows.append((image_id, ""))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("ImageId", "EncodedPixels"))
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
