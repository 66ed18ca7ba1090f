"""Stage outputs that can be trusted on resume: a done-marker records what a stage wrote.

A stage writes its files (atomically), then ``done.json`` last: the size and SHA-256 of every file, plus
whatever the stage wants to remember (e.g. the checkpoint step its results came from). A rerun calls
:func:`check` before reusing the stage: a file that is missing, truncated or changed is named, and the
stage is computed again; a stage that is deterministic writes the same bytes again, so the stages that
depend on it stay valid (the caller compares the old marker's records with the new files).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dng_jax.distributed import on_writer
from dng_jax.io.atomic import atomic_write_text

__all__ = ["MARKER", "file_record", "write_done", "read_done", "check", "readable", "array_digest"]

MARKER = "done.json"


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": os.path.getsize(path), "sha256": h.hexdigest()}


def write_done(stage_dir: str | os.PathLike, files: Iterable[str | os.PathLike], **extra: Any) -> None:
    """Record ``files`` (inside ``stage_dir``) and ``extra`` in ``stage_dir/done.json``; call it last."""
    on_writer(_write_done, Path(stage_dir), list(files), extra)


def _write_done(d: Path, files: list, extra: dict[str, Any]) -> None:
    records = {str(Path(f).relative_to(d) if Path(f).is_absolute() else f): file_record(d / f) for f in files}
    atomic_write_text(d / MARKER, json.dumps({"files": records, **extra}, indent=1, sort_keys=True) + "\n")


def read_done(stage_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The marker's content, or None when there is none or it cannot be read (then: not done)."""
    try:
        doc = json.loads((Path(stage_dir) / MARKER).read_text())
        return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def check(stage_dir: str | os.PathLike) -> list[str]:
    """What is wrong with a done stage's files (``[]``: every file as recorded). A missing or unreadable
    marker is one problem: the stage is not done."""
    d = Path(stage_dir)
    doc = read_done(d)
    if doc is None:
        return [f"{d / MARKER}: missing or unreadable (the stage did not finish)"]
    problems = []
    for name, rec in doc["files"].items():
        p = d / name
        if not p.is_file():
            problems.append(f"{p}: missing")
            continue
        size = p.stat().st_size
        if size != rec.get("size"):
            problems.append(f"{p}: {size} bytes, {rec.get('size')} were written (truncated or replaced)")
        elif file_record(p)["sha256"] != rec.get("sha256"):
            problems.append(f"{p}: its content changed since it was written")
    return problems


def readable(path: str | os.PathLike) -> bool:
    """Whether a file loads whole (JSON parses, ``.npy`` / ``.npz`` arrays load, a PNG decodes, a CSV has
    a header line): checked before a file made before done-markers existed is adopted, and before a
    figure is kept."""
    p = Path(path)
    try:
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".npy":
            np.load(p, mmap_mode="r")
        elif p.suffix == ".npz":
            with np.load(p) as z:
                for k in z.files:
                    z[k]
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".csv":
            return "\n" in p.read_text()
        return p.is_file()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def array_digest(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 of arrays' shapes, dtypes and bytes: names the network a later stage was computed from."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
