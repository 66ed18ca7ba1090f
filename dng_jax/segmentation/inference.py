"""Whole-image prediction: softmax of the U-Net -> the paper's watershed -> instance labels.

Images of any size are padded at the bottom/right to a multiple of 32 (the network's total stride); the
padding is cut off the result. Padded images larger than ``tile_size`` in either dimension are predicted
in overlapping tiles; overlapping softmax outputs are blended with a window that fades out over
``overlap`` px towards the tile edges, so no tile seams reach the watershed. Each distinct padded/tile
shape compiles once (``jax.jit`` cache). ``tta=True`` (test-time augmentation, not in the paper) averages
the softmax over the 8 flips and 90-degree rotations of the image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dng_jax.data.dsb2018 import to_rgb_uint8
from dng_jax.errors import DataError
from dng_jax.io.images import read_image
from dng_jax.io.labels import write_labels
from dng_jax.io.rle import write_submission_csv
from dng_jax.io.workdir import prepare_dir
from dng_jax.models import STRIDE
from dng_jax.segmentation.postprocess import WatershedConfig, probs_to_instances

__all__ = ["pad_to_multiple", "tile_starts", "dihedral", "undo_dihedral", "softmax_forward", "predict_probs",
           "predict_instances", "make_predictor", "segment_files"]


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


@partial(jax.jit, static_argnums=(0, 3))
def softmax_forward(model, variables, images, adabn: bool = False):
    """Softmax ``float32 [B, H, W, 3]`` of ``uint8 [B, H, W, 3]`` images (H, W multiples of the stride),
    compiled once per shape; ``adabn``: the encoder normalises with the images' own statistics. Prediction
    and the planner's timings share this one forward pass."""
    x = images.astype(jnp.float32) / 255.0
    if adabn:  # the encoder's BatchNorm uses this input's own statistics (the updates are dropped)
        logits, _ = model.apply(variables, x, train=False, encoder_train=True, mutable=["batch_stats"])
    else:
        logits = model.apply(variables, x, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _as_variables(state_or_variables) -> dict:
    if hasattr(state_or_variables, "params"):
        return {"params": state_or_variables.params, "batch_stats": state_or_variables.batch_stats}
    v = dict(state_or_variables)
    return {k: v[k] for k in ("params", "batch_stats") if k in v}


def dihedral(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``array`` (first two axes) rotated by ``k`` x 90 degrees, then mirrored left-right if ``flip``."""
    out = np.rot90(array, k)
    return out[:, ::-1] if flip else out


def undo_dihedral(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The inverse of :func:`dihedral`."""
    return np.rot90(array[:, ::-1] if flip else array, -k)


def predict_probs(state_or_variables, model, image: np.ndarray, *, tile_size: int = 1024, overlap: int = 64,
                  pad_mode: str = "constant", tta: bool = False, adabn: bool = False) -> np.ndarray:
    """Softmax ``float32 H x W x 3`` (background, cell, border) for one ``uint8 H x W x 3`` image; with
    ``tta`` the mean softmax of the 8 flipped / rotated copies, each mapped back; with ``adabn`` the
    encoder's BatchNorm normalises with the statistics of the image (of each tile) instead of its running
    averages (``retrain.batch_norm = "adabn"``, not in the paper)."""
    image = to_rgb_uint8(np.asarray(image), "image")
    if tta:
        acc = np.zeros(image.shape[:2] + (3,), np.float32)
        for k in range(4):
            for flip in (False, True):
                view = np.ascontiguousarray(dihedral(image, k, flip))
                acc += undo_dihedral(predict_probs(state_or_variables, model, view, tile_size=tile_size,
                                                   overlap=overlap, pad_mode=pad_mode, adabn=adabn), k, flip)
        return acc / 8.0
    if tile_size < STRIDE or tile_size % STRIDE:
        raise ValueError(f"tile_size must be a positive multiple of {STRIDE}, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must lie in [0, tile_size), got {overlap}")
    variables = _as_variables(state_or_variables)
    h, w = image.shape[:2]
    padded = pad_to_multiple(image, STRIDE, pad_mode)
    ph, pw = padded.shape[:2]
    if ph <= tile_size and pw <= tile_size:
        probs = np.asarray(softmax_forward(model, variables, jnp.asarray(padded[None]), adabn))[0]
        return np.ascontiguousarray(probs[:h, :w])

    th, tw = min(tile_size, ph), min(tile_size, pw)
    acc = np.zeros((ph, pw, 3), np.float32)
    wsum = np.zeros((ph, pw, 1), np.float32)
    win = _window(th, overlap)[:, None, None] * _window(tw, overlap)[None, :, None]
    for y in tile_starts(ph, th, overlap):
        for x in tile_starts(pw, tw, overlap):
            tile = padded[y : y + th, x : x + tw]
            p = np.asarray(softmax_forward(model, variables, jnp.asarray(tile[None]), adabn))[0]
            acc[y : y + th, x : x + tw] += p * win
            wsum[y : y + th, x : x + tw] += win
    probs = acc / wsum
    return np.ascontiguousarray(probs[:h, :w])


def predict_instances(state_or_variables, model, image: np.ndarray, post_cfg: WatershedConfig | None = None,
                      **kwargs) -> np.ndarray:
    """Instance labels ``uint16 H x W`` (0 = background) for one image: softmax -> paper watershed."""
    probs = predict_probs(state_or_variables, model, image, **kwargs)
    return probs_to_instances(probs, post_cfg or WatershedConfig())


def make_predictor(state_or_variables, model, post_cfg: WatershedConfig | None = None,
                   **kwargs) -> Callable[[np.ndarray], np.ndarray]:
    """``image -> instance labels`` of one network: what an evaluator calls per image."""
    return lambda image: predict_instances(state_or_variables, model, image, post_cfg, **kwargs)


def segment_files(segment: Callable[[np.ndarray], np.ndarray], inputs: Mapping[str, Path], output: str | os.PathLike,
                  *, fmt: str = "png", csv: str | os.PathLike | None = None, progress: bool = True,
                  verbose: bool = True) -> dict[str, str]:
    """``segment(image) -> labels`` for every ``{name: image file}`` into ``output/<name>.<fmt>`` (16-bit
    labels) and optionally a Kaggle run-length ``csv``. An image that cannot be read is skipped and the
    others go on; returns ``{file: why}`` of the skipped ones. ``output`` is made when the first image is
    written: when none can be read, nothing is written. (:func:`make_predictor` makes ``segment`` of a
    network; the classical reference is one too.)"""
    out_dir = Path(output)
    labels_by_id: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}
    for name, path in tqdm(inputs.items(), desc="segment", disable=not progress):
        try:
            image = read_image(path)
        except DataError as e:
            bad[str(path)] = str(e)
            if verbose:
                tqdm.write(f"{path}: skipped, not readable (listed at the end)")
            continue
        labels = segment(image)
        prepare_dir(out_dir, "--output")
        write_labels(out_dir / f"{name}.{fmt}", labels)
        if csv:
            labels_by_id[name] = labels
        if verbose:
            tqdm.write(f"{path} -> {out_dir / f'{name}.{fmt}'}: {int(labels.max())} objects")
    if csv and len(bad) < len(inputs):
        write_submission_csv(csv, labels_by_id)
        if verbose:
            n = len(labels_by_id)
            print(f"Kaggle run-length CSV of {n} image{'s' * (n != 1)} -> {csv}")
    return bad
