"""Reading the Kaggle DSB2018 stage-1 layout from a folder or straight from its zip.

Layout (exactly as the Kaggle download): ``<id>/images/<id>.png`` (RGBA, grayscale or RGB PNG) and
``<id>/masks/<mask_id>.png`` (one binary PNG per nucleus). A sample is an RGB uint8 image and a uint16
instance-label image (0 = background, 1..n in the sorted order of the mask file names).

Every problem with the data raises :class:`DataError` naming the file and what is wrong, so a batch job
stops with a line a person can act on instead of a traceback from deep inside PIL.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dng_jax.errors import DataError

__all__ = [
    "LAYOUTS",
    "Sample",
    "Source",
    "bundled_minidata_path",
    "to_rgb_uint8",
    "decode_png",
    "load_samples",
    "SampleCache",
]


@dataclasses.dataclass(frozen=True)
class Sample:
    id: str
    image: np.ndarray  # uint8 [H, W, 3]
    labels: np.ndarray  # uint16 [H, W], 0 = background


#: The two layouts every command that reads data takes, as the errors name them.
LAYOUTS = ("the folder layout images/<id>.png + masks/<id>.png (+ manifest.csv; one folder, or one per experiment "
           "side by side) or the Kaggle layout <id>/images/<id>.png + <id>/masks/*.png (a folder, or its zip)")


def bundled_minidata_path() -> Path:
    """The small CC0 subset of DSB2018 shipped with the package (a zip in the Kaggle layout)."""
    return Path(str(resources.files("dng_jax.data") / "minidata" / "dsb2018_mini.zip"))


def to_rgb_uint8(array: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Normalise grayscale / gray+alpha / RGB / RGBA and 8/16-bit to RGB uint8 (alpha dropped)."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype == np.uint16 or a.dtype == np.int32 or a.dtype == np.uint32:
        hi = float(a.max()) if a.size else 0.0
        a = (a.astype(np.float64) * (255.0 / hi) if hi > 255 else a).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise DataError(f"{name}: unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] in (1, 2):
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3]
    else:
        raise DataError(f"{name}: expected a grayscale, RGB or RGBA image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def decode_png(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes with PIL; corrupt or truncated files raise DataError naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA")
            if im.mode == "I;16" or im.mode.startswith("I;16"):
                return np.array(im, dtype=np.uint16)
            return np.array(im)
    except Exception as e:  # PIL raises many types for broken files
        why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the file", str(e))
        raise DataError(f"{name}: cannot decode image ({type(e).__name__}: {why})") from None


def mask_to_gray(m: np.ndarray, where: str) -> np.ndarray:
    """One nucleus mask as a 2-D array (nonzero = nucleus) from a gray, gray+alpha, RGB or RGBA PNG.

    Colour masks are the maximum over the colour channels; an alpha channel is never read as the mask.
    A mask with transparent pixels is refused: what it means depends on the program that wrote it
    (a transparent white background reads as one nucleus covering the image)."""
    if m.ndim == 2:
        return m
    if m.ndim != 3 or m.shape[2] not in (1, 2, 3, 4):
        raise DataError(f"{where}: a mask must be a gray or RGB image, got shape {m.shape}")
    channels = m.shape[2]
    if channels in (2, 4):
        alpha = m[..., -1]
        opaque = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
        if alpha.min() < opaque:
            raise DataError(f"{where}: the mask has transparent pixels (an alpha channel); save masks as "
                            f"gray images, 0 = background, nonzero = nucleus")
        m = m[..., :-1]
    return m[..., 0] if m.shape[2] == 1 else m.max(axis=2)


def load_samples(source: Source, ids, desc: str = "load", progress: bool = True) -> list[Sample]:
    """Load the samples ``ids``; images whose files are broken (:class:`DataError`) are skipped with a
    warning naming them (one broken image should not stop a training run)."""
    out, bad = [], []
    for i in tqdm(ids, desc=desc, leave=False, mininterval=2.0, disable=not progress):
        try:
            out.append(source.load(i))
        except DataError as e:
            bad.append(f"{i}: {e}")
    if bad:
        warnings.warn(f"{desc}: skipped {len(bad)} of {len(ids)} images with bad data:\n  " + "\n  ".join(bad[:5])
                      + ("\n  ..." if len(bad) > 5 else ""), stacklevel=2)
    return out


class SampleCache:
    """The samples ``ids`` of a source, read once and kept in memory (``load`` as ``Source.load``)."""

    def __init__(self, source: Source, ids):
        self._samples = {i: source.load(i) for i in ids}

    def load(self, sid: str) -> Sample:
        return self._samples[sid]


class Source:
    """A DSB2018 collection in the Kaggle layout, read from a folder or a zip file.

    The zip may have the sample folders at its top level (the Kaggle ``stage1_train.zip``) or inside one
    top-level folder; both are found. Masks must not overlap: pixels shared by two masks are an error,
    unless they are at most ``overlap_tolerance`` of the smaller mask (then they keep the earlier label).
    """

    def __init__(self, path: str | os.PathLike, overlap_tolerance: float = 0.05):
        if not str(path).strip():
            raise DataError(f"the data path is empty: give --data (or --config.data.path) {LAYOUTS}, or leave it "
                            f"out for the bundled mini-set")
        self.path = Path(path)
        self.overlap_tolerance = overlap_tolerance
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or folder; give --data (or --config.data.path) {LAYOUTS}")
        self._zip: zipfile.ZipFile | None = None
        self._index: dict[str, dict[str, list[str]]] = {}
        if self.path.is_dir():
            self._index_dir()
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{self.path}: not a readable zip file ({e})") from None
            self._index_zip()
        if not self._index:
            raise DataError(f"{self.path}: no samples found; expected {LAYOUTS}")

    # -- indexing ---------------------------------------------------------------------------------
    def _add(self, parts: tuple[str, ...], full: str) -> None:
        # parts ends with (<id>, "images"|"masks", file)
        if len(parts) < 3 or parts[-2] not in ("images", "masks"):
            return
        sid, kind, fname = parts[-3], parts[-2], parts[-1]
        if not fname.lower().endswith(".png") or fname.startswith("."):
            return
        entry = self._index.setdefault(sid, {"images": [], "masks": []})
        entry[kind].append(full)

    def _index_zip(self) -> None:
        for name in self._zip.namelist():
            if name.endswith("/") or "__MACOSX" in name:
                continue
            self._add(PurePosixPath(name).parts, name)

    def _index_dir(self) -> None:
        for pattern in ("*/*/*.png", "*/*/*/*.png"):
            for f in sorted(self.path.glob(pattern)):
                self._add(f.relative_to(self.path).parts, str(f))

    # -- access -----------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return sorted(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def labeled_ids(self) -> list[str]:
        """Every sample: the Kaggle layout has a masks folder for each (an empty one is an error on load)."""
        return self.ids()

    has_manifest = False

    def manifest_types(self) -> None:
        """The Kaggle layout has no manifest: cell types come from the rule (:mod:`dng_jax.data.partition`)."""
        return None

    def manifest_splits(self) -> dict[str, str]:
        return {}

    def __contains__(self, sid: str) -> bool:
        return sid in self._index

    def read_bytes(self, name: str) -> bytes:
        """The bytes of one file of the collection (a name from :meth:`files`); unreadable: DataError."""
        where = f"{self.path}:{name}" if self._zip is not None else name
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return Path(name).read_bytes()
        except (KeyError, OSError, zipfile.BadZipFile) as e:
            raise DataError(f"{where}: cannot read ({e})") from None

    def _where(self, name: str) -> str:
        return f"{self.path}:{name}" if self._zip is not None else name

    def image_file(self, sid: str) -> str:
        entry = self.files(sid)
        want = f"{sid}.png"
        images = [n for n in entry["images"] if PurePosixPath(n).name == want] or entry["images"]
        if len(images) != 1:
            raise DataError(f"{self._where(f'{sid}/images/{want}')}: expected exactly one image file, "
                            f"found {len(entry['images'])}")
        return images[0]

    def files(self, sid: str) -> dict[str, list[str]]:
        """``{"images": [...], "masks": [...]}``: the files of sample ``sid`` (zip member names or paths)."""
        if sid not in self._index:
            raise DataError(f"{self.path}: no sample with id {sid!r}")
        return self._index[sid]

    def load_image(self, sid: str) -> np.ndarray:
        name = self.image_file(sid)
        return to_rgb_uint8(decode_png(self.read_bytes(name), self._where(name)), self._where(name))

    def load_labels(self, sid: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Instance labels from the per-nucleus masks; overlap or a size mismatch is an error."""
        entry = self.files(sid)
        masks = sorted(entry["masks"])
        if shape is None:
            shape = self.load_image(sid).shape[:2]
        if not masks:
            raise DataError(f"{self._where(sid + '/masks')}: no mask files (empty or missing masks folder)")
        if len(masks) > np.iinfo(np.uint16).max:
            raise DataError(f"{self._where(sid + '/masks')}: more than 65535 masks")
        labels = np.zeros(shape, dtype=np.uint16)
        for i, name in enumerate(masks, start=1):
            where = self._where(name)
            m = mask_to_gray(decode_png(self.read_bytes(name), where), where)
            if m.shape != tuple(shape):
                raise DataError(f"{where}: mask is {m.shape[1]}x{m.shape[0]} (WxH) but the image is "
                                f"{shape[1]}x{shape[0]}")
            fg = m > 0
            if fg.all() and fg.size > 1:
                raise DataError(f"{where}: the mask covers every pixel of the image; a nucleus mask is "
                                f"0 on the background (is it inverted?)")
            clash = fg & (labels > 0)
            if clash.any():
                # A seam of a few shared pixels is annotation noise (6 images of the fixed stage-1 set
                # have one): those pixels stay with the earlier mask. More is a real error.
                other_label = int(np.bincount(labels[clash]).argmax())
                smaller = min(int(fg.sum()), int((labels == other_label).sum()))
                if clash.sum() > self.overlap_tolerance * smaller:
                    other = masks[other_label - 1]
                    raise DataError(f"{where}: overlaps mask {PurePosixPath(other).name} in "
                                    f"{int(clash.sum())} of its pixels")
                fg &= ~clash
            labels[fg] = i
        return labels

    def load(self, sid: str, with_labels: bool = True) -> Sample:
        image = self.load_image(sid)
        labels = self.load_labels(sid, image.shape[:2]) if with_labels else np.zeros(image.shape[:2], np.uint16)
        return Sample(sid, image, labels)

    def __iter__(self) -> Iterator[Sample]:
        for sid in self.ids():
            yield self.load(sid)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

