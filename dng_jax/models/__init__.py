"""Models: ResNet encoder, U-Net decoder, and ``make_model(config.model)``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from dng_jax.models.resnet import BottleneckBlock, ResNetEncoder
from dng_jax.models.unet import DecoderBlock, UNet, UNetDecoder

__all__ = ["BottleneckBlock", "DecoderBlock", "ResNetEncoder", "UNet", "UNetDecoder", "make_model",
           "resolve_dtype", "count_params"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def resolve_dtype(name: Any):
    if name is None:
        return jnp.float32
    if isinstance(name, str):
        try:
            return _DTYPES[name]
        except KeyError:
            raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None
    return name


def make_model(model_cfg) -> UNet:
    """Builds the U-Net from a config with ``stage_sizes``, ``width``, ``decoder_features``,
    ``num_classes`` and ``dtype`` (compute dtype; parameters stay float32). Missing fields take the
    ResNet-50 / paper defaults."""
    get = (lambda k, d: model_cfg.get(k, d)) if hasattr(model_cfg, "get") else (lambda k, d: getattr(model_cfg, k, d))
    dtype = resolve_dtype(get("dtype", "float32"))
    encoder = ResNetEncoder(stage_sizes=tuple(get("stage_sizes", (3, 4, 6, 3))), width=int(get("width", 64)),
                            expansion=int(get("expansion", 4)), dtype=dtype)
    decoder = UNetDecoder(features=tuple(get("decoder_features", (256, 128, 64, 32, 16))),
                          num_classes=int(get("num_classes", 3)), dtype=dtype)
    return UNet(encoder=encoder, decoder=decoder)


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct``s."""
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree_util.tree_leaves(tree)))
