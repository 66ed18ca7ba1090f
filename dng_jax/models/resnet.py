"""Bottleneck ResNet encoder (He et al. 2016, "v1.5" as in torchvision: stride on the 3x3 conv).

With ``stage_sizes=(3, 4, 6, 3)`` and ``width=64`` this is ResNet-50 without its classifier: the
trainable parameters (conv kernels, BatchNorm scale/bias) number 23,508,032, the same as torchvision's
``resnet50`` minus its ``fc`` layer. BatchNorm running statistics live in the ``batch_stats``
collection, not in ``params``.

``ResNetEncoder.__call__(x, train)`` returns ``(latent, skips)``: ``latent`` is the output of the last
stage (stride 32; a 256x256x3 input gives 8x8x(width*8*expansion) = 8x8x2048 for ResNet-50) and
``skips`` the features at strides 2 (stem conv), 4, 8 and 16 (stages 1-3), finest first, for a U-Net
decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dng_jax.models.conv import conv_function
from dng_jax.models.polarity import POLARITY_THRESHOLD, apply_polarity

Dtype = Any

# He et al. initialise conv kernels with fan-out variance scaling (as torchvision does).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x expansion), BatchNorm after each, projection shortcut when needed."""

    features: int
    strides: int = 1
    expansion: int = 4
    dtype: Dtype = jnp.float32
    conv: str = "xla"  # how convolutions are computed (dng_jax.models.conv); the parameters are the same

    @nn.compact
    def __call__(self, x, train: bool):
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init,
                       conv_general_dilated=conv_function(self.conv))
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
        out_features = self.features * self.expansion
        residual = x
        y = conv(self.features, (1, 1), name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, (3, 3), strides=self.strides, padding=((1, 1), (1, 1)), name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = conv(out_features, (1, 1), name="conv3")(y)
        # Zero-init of the last BN scale (Goyal et al.) helps deep ResNets start as identities.
        y = norm(name="bn3", scale_init=nn.initializers.zeros)(y)
        if residual.shape[-1] != out_features or self.strides != 1:
            residual = conv(out_features, (1, 1), strides=self.strides, name="proj_conv")(residual)
            residual = norm(name="proj_bn")(residual)
        return nn.relu(residual + y)


INPUT_NORMS = ("none", "per_image")


def normalize_input(x, mode: str = "none", polarity: str = "none", threshold: float = POLARITY_THRESHOLD):
    """Float images ``[B, H, W, C]`` in [0, 1] -> the encoder's input, in float32.

    ``polarity`` first (``model.input_polarity``, :mod:`dng_jax.models.polarity`): ``"none"`` keeps the
    image, ``"grey_bright_nuclei"`` makes it grey with bright nuclei (inverted where its median grey level is
    above ``threshold``).
    Then ``mode``: ``"none"`` (paper): centred, ``x - 0.5``; the stem BatchNorm does the scaling, with one
    scale for every image. ``"per_image"`` (extension): each image standardised over its pixels and channels,
    so a dim fluorescence image and a bright one reach the first convolution at the same contrast (the
    statistics a single batch-wide BatchNorm cannot give each image)."""
    x = apply_polarity(jnp.asarray(x, jnp.float32), polarity, threshold)
    if mode == "none":
        return x - 0.5
    if mode == "per_image":
        mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
        std = jnp.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / (std + 1e-2)
    raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {mode!r}")


class ResNetEncoder(nn.Module):
    """ResNet trunk without pooling/classifier. Input: float images [B, H, W, C] in [0, 1]."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    expansion: int = 4
    dtype: Dtype = jnp.float32
    input_polarity: str = "none"  # "grey_bright_nuclei": grey, inverted where the background is bright
    polarity_threshold: float = POLARITY_THRESHOLD  # median grey level above it: a bright background
    input_norm: str = "none"  # "none": x - 0.5 (paper); "per_image": zero mean, unit variance per image
    conv: str = "xla"  # "xla" | "gemm_1x1" | "gemm" | "im2col" (dng_jax.models.conv): same parameters

    @property
    def latent_features(self) -> int:
        return self.width * 2 ** (len(self.stage_sizes) - 1) * self.expansion

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = normalize_input(x, self.input_norm, self.input_polarity, self.polarity_threshold).astype(self.dtype)
        skips = []
        x = nn.Conv(self.width, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                    dtype=self.dtype, kernel_init=conv_init, conv_general_dilated=conv_function(self.conv),
                    name="stem_conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                         name="stem_bn")(x)
        x = nn.relu(x)
        skips.append(x)  # stride 2
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                x = BottleneckBlock(self.width * 2**i, strides=strides, expansion=self.expansion,
                                    dtype=self.dtype, conv=self.conv, name=f"stage{i + 1}_block{j + 1}")(x, train)
            if i < len(self.stage_sizes) - 1:
                skips.append(x)  # strides 4, 8, 16
        return x, tuple(skips)
