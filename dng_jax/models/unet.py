"""U-Net with a ResNet encoder (as segmentation_models' ``Unet(encoder_name="resnet50")``).

Parameters are two separate subtrees, ``params['encoder']`` and ``params['decoder']`` (and the same for
``batch_stats``), so one can be retrained while the other is frozen (see
``dng_jax.train.make_optimizer(trainable=...)``).

Decoder: five blocks, each ``2x nearest upsample -> concat skip -> (conv3x3-BN-ReLU) x 2``, taking the
stride-32 latent back to input resolution, then a 3x3 conv to ``num_classes`` logits. The skips are the
encoder's stride 16, 8, 4 and 2 features; the last (stride 1) block has none. Input height and width
must be multiples of 32 (``dng_jax.predict`` pads).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dng_jax.models.conv import conv_function
from dng_jax.models.resnet import ResNetEncoder

Dtype = Any


def upsample2x(x):
    """Nearest-neighbour 2x upsampling by broadcast + reshape (no gather, cheap to differentiate)."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


class DecoderBlock(nn.Module):
    features: int
    dtype: Dtype = jnp.float32
    conv: str = "xla"  # how convolutions are computed (dng_jax.models.conv); the parameters are the same

    @nn.compact
    def __call__(self, x, skip, train: bool):
        conv = partial(nn.Conv, kernel_size=(3, 3), use_bias=False, dtype=self.dtype,
                       conv_general_dilated=conv_function(self.conv))
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
        x = upsample2x(x)
        if skip is not None:
            x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        x = nn.relu(norm()(conv(self.features)(x)))
        x = nn.relu(norm()(conv(self.features)(x)))
        return x


class UNetDecoder(nn.Module):
    """Maps ``(latent, skips)`` from the encoder to float32 logits at input resolution."""

    features: Sequence[int] = (256, 128, 64, 32, 16)
    num_classes: int = 3
    dtype: Dtype = jnp.float32
    conv: str = "xla"  # "xla" | "gemm_1x1" | "gemm" | "im2col" (dng_jax.models.conv): same parameters

    @nn.compact
    def __call__(self, latent, skips, train: bool = False):
        skips = list(skips)[::-1]  # coarsest first
        x = latent
        for i, feats in enumerate(self.features):
            skip = skips[i] if i < len(skips) else None
            x = DecoderBlock(feats, dtype=self.dtype, conv=self.conv, name=f"block{i + 1}")(x, skip, train)
        logits = nn.Conv(self.num_classes, (3, 3), dtype=self.dtype, conv_general_dilated=conv_function(self.conv),
                         name="head")(x)
        return logits.astype(jnp.float32)


class UNet(nn.Module):
    """``UNet(x [B,H,W,3] float in [0,1], train) -> logits [B,H,W,num_classes] float32``."""

    encoder: ResNetEncoder
    decoder: UNetDecoder

    def encode(self, x, train: bool = False):
        """Returns ``(latent, skips)``; latent is the last ResNet stage (8x8x2048 for 256x256 ResNet-50)."""
        return self.encoder(x, train=train)

    def __call__(self, x, train: bool = False, encoder_train: bool | None = None):
        """``encoder_train`` (default: ``train``) sets the encoder's BatchNorm mode on its own: ``False`` with
        ``train=True`` trains the decoder on a fixed encoder; ``True`` with ``train=False`` normalises the
        encoder with the statistics of the input itself (AdaBN at test time)."""
        h, w = x.shape[1:3]
        if h % 32 or w % 32:
            raise ValueError(f"UNet input height and width must be multiples of 32, got {h}x{w}")
        latent, skips = self.encoder(x, train=train if encoder_train is None else encoder_train)
        return self.decoder(latent, skips, train=train)
