"""Ensembles of trained networks: their softmax averaged before the watershed (not in the paper).

Several trainings of one recipe make different mistakes on images unlike their training data; the mean of
their softmax (background, cell, border) is one smoother probability map, turned into instances by the
paper's watershed once. With test-time augmentation each network first averages its 8 flipped / rotated
views, then the networks are averaged (both means are linear, so the order only moves float rounding).
Each network's forward pass is the jitted :func:`~dng_jax.segmentation.inference.softmax_forward`.

The networks must read an image the same way (``model.input_polarity``, ``polarity_threshold``,
``input_norm``) and share the watershed (``postprocess``): averaging the softmax of networks that were
trained on differently prepared inputs, or thresholding it for one of them, is a mix this module refuses
(``python -m dng_jax.predict --checkpoint A --checkpoint B``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from dng_jax.config import ExperimentConfig
from dng_jax.errors import InputError
from dng_jax.models import UNet
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.inference import predict_probs
from dng_jax.segmentation.postprocess import probs_to_instances

__all__ = ["INPUT_FIELDS", "Network", "check_same_input", "load_networks", "mean_softmax", "ensemble_probs",
           "make_ensemble_predictor"]

#: The ``model`` fields that decide what the encoder sees of an image: members must agree on them.
INPUT_FIELDS = ("input_polarity", "polarity_threshold", "input_norm")


class Network(NamedTuple):
    """One trained network and where it came from (a checkpoint path, a ``.npz`` or ``bundled:<name>``)."""

    source: str
    variables: dict
    model: UNet
    config: ExperimentConfig


def _differences(first: ExperimentConfig, other: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    fields = [(f"model.{f}", getattr(first.model, f), getattr(other.model, f)) for f in INPUT_FIELDS]
    fields.append(("postprocess", first.postprocess, other.postprocess))
    return [(name, a, b) for name, a, b in fields if a != b]


def check_same_input(networks: Sequence[Network]) -> None:
    """Raise :class:`InputError` (one line naming both sources and the field) unless every network reads
    its input as the first does and shares its watershed thresholds."""
    if not networks:
        raise InputError("an ensemble needs at least one network")
    first = networks[0]
    for other in networks[1:]:
        diff = _differences(first.config, other.config)
        if diff:
            name, a, b = diff[0]
            raise InputError(f"{first.source} and {other.source} cannot be averaged: {name} is {a!r} in the first, "
                             f"{b!r} in the second (an ensemble's networks must read the image the same way and "
                             f"share the watershed)")


def load_networks(sources: Sequence[str | os.PathLike]) -> list[Network]:
    """The networks of ``sources`` (checkpoint paths, ``NAME.npz`` exports, ``bundled:<name>``), checked to
    agree on their input handling and watershed (:func:`check_same_input`)."""
    networks = [Network(str(s), *load_variables(s)) for s in sources]
    check_same_input(networks)
    return networks


def mean_softmax(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of several networks' softmax of one image (``H x W x 3`` each), float32. One network's
    softmax comes back unchanged."""
    if not len(probs):
        raise ValueError("an ensemble needs at least one softmax")
    return np.mean(np.stack(probs), axis=0, dtype=np.float32)


def ensemble_probs(networks: Sequence[Network], image: np.ndarray, **kwargs) -> np.ndarray:
    """The ensemble's softmax ``float32 H x W x 3`` of one ``uint8`` image: each network's
    :func:`~dng_jax.segmentation.inference.predict_probs` (``kwargs``: tiling, ``tta``), then their mean."""
    return mean_softmax([predict_probs(n.variables, n.model, image, **kwargs) for n in networks])


def make_ensemble_predictor(networks: Sequence[Network], **kwargs) -> Callable[[np.ndarray], np.ndarray]:
    """``image -> instance labels`` of the ensemble: the mean softmax through the first network's watershed
    (every member shares it, :func:`check_same_input`)."""
    check_same_input(networks)
    post = networks[0].config.postprocess
    return lambda image: probs_to_instances(ensemble_probs(networks, image, **kwargs), post)
