"""Whole-image prediction: softmax of the U-Net -> the paper's watershed -> instance labels.

example:
  python -m dng_jax.predict --checkpoint runs/default --input images/ b.png \\
      --output labels/ --csv submission.csv

checkpoint:
  --checkpoint is a training work dir (python -m dng_jax.train --workdir DIR, or
  a sweep's WORKDIR/baseline/), its checkpoints/ folder (latest step) or one
  checkpoints/<step>/ folder. The sweep does not keep its retrained encoders
  (only their scores and seed 0's test predictions), so the baseline network is
  the one to predict with. The model and the watershed thresholds
  (config.postprocess; the paper's values where it has none) come from the
  training config stored with the checkpoint, the same config the training
  wrote to its work dir's config.json; editing that file changes nothing here.

inputs:
  --input takes image files (PNG, TIFF, JPEG, BMP), folders of them, and
  Kaggle-layout folders (<folder>/<id>/images/<id>.png). Gray images are repeated
  to RGB, alpha is dropped, 16-bit images are rescaled to 8 bits.

outputs:
  <output>/<name>.png (or .tif with --format tif) per input: 16-bit instance
  labels, 0 = background, one value per object (opens in Fiji / napari). <name> is
  the file name without its suffix, or the <id> of a Kaggle-layout sample; two
  inputs with the same name are an error. --csv also writes a Kaggle run-length
  submission CSV of all inputs.

padding and tiling:
  Images of any size are padded at the bottom/right to a multiple of 32 (the
  network's total stride); the padding is cut off the result. Zero padding
  (--pad-mode constant) is what training saw (small images are zero padded
  before cropping, paper II-C), so it is the default; --pad-mode reflect tends
  to be a little better at the image edge of bright-background (brightfield,
  tissue) images, where a black frame looks like fluorescence background.
  Padded images larger than --tile-size in either dimension are predicted in
  overlapping tiles of --tile-size; overlapping softmax outputs are blended with
  a window that fades out over --overlap px towards the tile edges, so no tile
  seams reach the watershed. Each distinct padded/tile shape compiles once
  (jax.jit cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "pad_to_multiple",
    "tile_starts",
    "predict_probs",
    "predict_instances",
    "postprocess_config",
    "evaluate_baseline",
    "format_table",
    "list_inputs",
    "read_image",
    "main",
]

STRIDE = 32
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def pad_to_multiple(image: np.ndarray, multiple: int = STRIDE, mode: str = "constant",
                    min_size: int = 0) -> np.ndarray:
    """Pad ``H x W (x C)`` at the bottom/right to multiples of ``multiple`` (and at least ``min_size``)."""
    h, w = image.shape[:2]
    th = max(-(-h // multiple) * multiple, min_size)
    tw = max(-(-w // multiple) * multiple, min_size)
    if (th, tw) == (h, w):
        return image
    pad = [(0, th - h), (0, tw - w)] + [(0, 0)] * (image.ndim - 2)
    if mode == "reflect" and min(h, w) < 2:
        mode = "edge"  # reflecting needs at least 2 pixels
    return np.pad(image, pad, mode=mode)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``size`` with at least ``overlap`` overlap."""
    if size <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def _window(tile: int, overlap: int) -> np.ndarray:
    """1-D blending weights: ramp up over ``overlap`` px at both ends, never exactly 0."""
    if overlap <= 0:
        return np.ones(tile, np.float32)
    x = np.arange(tile, dtype=np.float32)
    ramp = np.minimum((x + 1) / (overlap + 1), (tile - x) / (overlap + 1))
    return np.clip(ramp, 1e-3, 1.0)


@partial(jax.jit, static_argnums=(0,))
def _softmax_forward(model, variables, images):
    logits = model.apply(variables, images.astype(jnp.float32) / 255.0, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _as_variables(state_or_variables) -> dict:
    if hasattr(state_or_variables, "params"):
        return {"params": state_or_variables.params, "batch_stats": state_or_variables.batch_stats}
    v = dict(state_or_variables)
    return {k: v[k] for k in ("params", "batch_stats") if k in v}


def predict_probs(state_or_variables, model, image: np.ndarray, *, tile_size: int = 1024, overlap: int = 64,
                  pad_mode: str = "constant") -> np.ndarray:
    """Softmax ``float32 H x W x 3`` (background, cell, border) for one ``uint8 H x W x 3`` image."""
    from dng_jax.dsb2018 import to_rgb_uint8

    image = to_rgb_uint8(np.asarray(image), "image")
    if tile_size % STRIDE:
        raise ValueError(f"tile_size must be a multiple of {STRIDE}, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must lie in [0, tile_size), got {overlap}")
    variables = _as_variables(state_or_variables)
    h, w = image.shape[:2]
    padded = pad_to_multiple(image, STRIDE, pad_mode)
    ph, pw = padded.shape[:2]
    if ph <= tile_size and pw <= tile_size:
        probs = np.asarray(_softmax_forward(model, variables, jnp.asarray(padded[None])))[0]
        return np.ascontiguousarray(probs[:h, :w])

    th, tw = min(tile_size, ph), min(tile_size, pw)
    acc = np.zeros((ph, pw, 3), np.float32)
    wsum = np.zeros((ph, pw, 1), np.float32)
    win = _window(th, overlap)[:, None, None] * _window(tw, overlap)[None, :, None]
    for y in tile_starts(ph, th, overlap):
        for x in tile_starts(pw, tw, overlap):
            tile = padded[y : y + th, x : x + tw]
            p = np.asarray(_softmax_forward(model, variables, jnp.asarray(tile[None])))[0]
            acc[y : y + th, x : x + tw] += p * win
            wsum[y : y + th, x : x + tw] += win
    probs = acc / wsum
    return np.ascontiguousarray(probs[:h, :w])


def postprocess_config(config=None):
    """``WatershedConfig`` from ``config.postprocess`` (the paper's thresholds by default)."""
    import dataclasses

    from dng_jax.postprocess import WatershedConfig

    section = None if config is None else config.get("postprocess")
    if not section:
        return WatershedConfig()
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    names = {f.name for f in dataclasses.fields(WatershedConfig)}
    return WatershedConfig(**{k: v for k, v in d.items() if k in names})


def predict_instances(state_or_variables, model, image: np.ndarray, post_cfg=None, **kwargs) -> np.ndarray:
    """Instance labels ``uint16 H x W`` (0 = background) for one image: softmax -> paper watershed."""
    from dng_jax.postprocess import WatershedConfig, probs_to_instances

    probs = predict_probs(state_or_variables, model, image, **kwargs)
    return probs_to_instances(probs, post_cfg or WatershedConfig())


# ----------------------------------------------------------------------------------------- evaluation


def evaluate_baseline(state_or_variables, model, source, splits, *, post_cfg=None, tile_size: int = 1024,
                      path: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Kaggle MAP of the test images: ``{"known", "unknown", "all", "per_type", "per_image"}``.

    *known* = the CT1 (fluorescence) test images, *unknown* = those of every other type (paper: CT2-7).
    Written to ``path`` as JSON (atomically) when given."""
    from tqdm.auto import tqdm

    from dng_jax.metrics import image_score
    from dng_jax.partition import KNOWN_TYPE

    type_of = {i: t for t, ids in splits.test.items() for i in ids}
    per_image: dict[str, dict[str, Any]] = {}
    for sid in tqdm(splits.test_all, desc="evaluate", disable=not progress, leave=False):
        sample = source.load(sid)
        pred = predict_instances(state_or_variables, model, sample.image, post_cfg, tile_size=tile_size)
        per_image[sid] = {"type": type_of[sid], "known": type_of[sid] == KNOWN_TYPE,
                          "score": float(image_score(sample.labels, pred)),
                          "n_true": int(len(np.unique(sample.labels)) - (sample.labels == 0).any()),
                          "n_pred": int(len(np.unique(pred)) - (pred == 0).any())}

    def mean(xs):
        xs = list(xs)
        return float(np.mean(xs)) if xs else float("nan")

    result = {
        "known": mean(r["score"] for r in per_image.values() if r["known"]),
        "unknown": mean(r["score"] for r in per_image.values() if not r["known"]),
        "all": mean(r["score"] for r in per_image.values()),
        "n_known": sum(r["known"] for r in per_image.values()),
        "n_unknown": sum(not r["known"] for r in per_image.values()),
        "per_type": {t: mean(r["score"] for r in per_image.values() if r["type"] == t)
                     for t in sorted({r["type"] for r in per_image.values()})},
        "per_image": per_image,
    }
    if path is not None:
        from dng_jax.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(result, indent=2, allow_nan=True) + "\n")
    return result


def format_table(result: Mapping[str, Any]) -> str:
    rows = [("known (CT1)", result["known"], result.get("n_known", "")),
            ("unknown (other types)", result["unknown"], result.get("n_unknown", "")),
            ("all", result["all"], result.get("n_known", 0) + result.get("n_unknown", 0))]
    rows += [(f"  {t}", v, "") for t, v in result.get("per_type", {}).items()]
    lines = [f"{'test set':<24}{'MAP':>8}{'images':>8}", "-" * 40]
    lines += [f"{name:<24}{value:>8.4f}{str(n):>8}" for name, value, n in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- CLI


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any PNG / TIFF / JPEG as RGB uint8 (gray is repeated, alpha dropped, 16-bit rescaled)."""
    from dng_jax.dsb2018 import DataError, decode_png, to_rgb_uint8

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            a = tifffile.imread(path)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{path}: cannot read TIFF ({type(e).__name__}: {e})") from None
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)
    else:
        a = decode_png(path.read_bytes(), str(path))
    return to_rgb_uint8(a, str(path))


def list_inputs(inputs: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{image id: file}`` for files, folders of images and Kaggle-layout folders."""
    out: dict[str, Path] = {}

    def add(name: str, p: Path):
        if name in out and out[name] != p:
            raise ValueError(f"two inputs named {name!r}: {out[name]} and {p}")
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
                raise FileNotFoundError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    return out


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Epilog as written; ``(default: ...)`` only for options whose default is a value."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    head, _, rest = (__doc__ or "").partition("\n\n")
    ap = argparse.ArgumentParser(prog="python -m dng_jax.predict", description=head, epilog=rest.strip() or None,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--checkpoint", required=True,
                    help="training work dir (latest step), its checkpoints/ folder, or one step folder "
                         "checkpoints/<step> (see below)")
    ap.add_argument("--input", required=True, nargs="+",
                    help="image files, folders of images and/or Kaggle-layout folders")
    ap.add_argument("--output", required=True, help="folder for the label images")
    ap.add_argument("--csv", default=None, help="also write a Kaggle run-length submission CSV here")
    ap.add_argument("--format", choices=("png", "tif"), default="png", help="label image format (16-bit)")
    ap.add_argument("--tile-size", type=int, default=1024,
                    help="padded images larger than this (px, a multiple of 32) in either dimension are "
                         "predicted in overlapping tiles of this size")
    ap.add_argument("--overlap", type=int, default=64,
                    help="overlap of neighbouring tiles in px (0 <= overlap < tile size); the blending "
                         "window fades out over it")
    ap.add_argument("--pad-mode", choices=("constant", "reflect"), default="constant",
                    help="padding to a multiple of 32: constant = zeros, as in training; reflect = mirror "
                         "the image (can help bright-background images)")
    ap.add_argument("--quiet", action="store_true",
                    help="no progress bar and no per-image line (errors are still printed)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from dng_jax.checkpointing import CheckpointError, load_variables
    from dng_jax.dsb2018 import DataError
    from dng_jax.label_io import write_labels

    args = _parser().parse_args(argv)
    try:
        inputs = list_inputs(args.input)
        variables, model, config = load_variables(args.checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    post_cfg = postprocess_config(config)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_by_id: dict[str, np.ndarray] = {}
    for name, path in tqdm(inputs.items(), desc="predict", disable=args.quiet):
        try:
            image = read_image(path)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        labels = predict_instances(variables, model, image, post_cfg, tile_size=args.tile_size,
                                   overlap=args.overlap, pad_mode=args.pad_mode)
        write_labels(out_dir / f"{name}.{args.format}", labels)
        if args.csv:
            labels_by_id[name] = labels
        if not args.quiet:
            tqdm.write(f"{path} -> {out_dir / f'{name}.{args.format}'}: {int(labels.max())} objects")
    if args.csv:
        from dng_jax.rle import write_submission_csv

        write_submission_csv(args.csv, labels_by_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
