"""Models: ResNet encoder, U-Net decoder, their hyperparameters (``ModelConfig``) and ``make_model``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.models.conv import CONV_IMPLS, conv_function
from dng_jax.models.polarity import INPUT_POLARITIES, POLARITY_THRESHOLD
from dng_jax.models.resnet import INPUT_NORMS, BottleneckBlock, ResNetEncoder, normalize_input
from dng_jax.models.unet import DecoderBlock, UNet, UNetDecoder
from dng_jax.typed_config import TypedConfig, param, require

__all__ = ["BottleneckBlock", "DecoderBlock", "ResNetEncoder", "UNet", "UNetDecoder", "ModelConfig", "make_model",
           "resolve_dtype", "count_params", "normalize_input", "with_conv", "STRIDE"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
STRIDE = 32  # total stride of the U-Net: inputs must be multiples of it (prediction pads)


class ModelConfig(TypedConfig):
    """The ``model`` section: the U-Net with a bottleneck-ResNet encoder (defaults: ResNet-50, paper II-C)."""

    stage_sizes: tuple[int, ...] = param((3, 4, 6, 3), "bottleneck blocks per ResNet stage ((3, 4, 6, 3) = ResNet-50)")
    width: int = param(64, "channels of the first stage (ResNet-50: 64)")
    expansion: int = param(4, "bottleneck expansion: block output = 4 x its width")
    decoder_features: tuple[int, ...] = param((256, 128, 64, 32, 16), "channels of the 5 U-Net decoder blocks")
    num_classes: int = param(3, "output classes: background, cell, cell border")
    dtype: str = param("float32", "compute dtype: float32, bfloat16 or float16 (parameters stay float32)")
    input_polarity: str = param("none", "before input_norm: 'none' = the image as it is (paper), 'grey_bright_nuclei' "
                                "= grey, inverted where the background is bright (not in the paper)")
    polarity_threshold: float = param(POLARITY_THRESHOLD, "grey_bright_nuclei: a median grey level (0-1) above it "
                                      "marks a bright background (chosen on validation images: "
                                      "scripts/studies/check_polarity.py)")
    input_norm: str = param("none", "encoder input: 'none' = x - 0.5 (paper), 'per_image' = standardised per image")
    conv: str = param("xla", "how convolutions are computed: 'xla' (lax.conv), 'gemm_1x1' (1x1 as matmuls), 'gemm' "
                      "(every conv as k x k shifted matmuls), 'im2col'; the same parameters (dng_jax.models.conv)")

    def check(self) -> None:
        require(len(self.stage_sizes) == 4 and min(self.stage_sizes) >= 1, "stage_sizes",
                f"need 4 stages of >= 1 block (the U-Net's stride is {STRIDE}), got {self.stage_sizes}")
        require(len(self.decoder_features) == 5 and min(self.decoder_features) >= 1, "decoder_features",
                f"need 5 positive channel counts (one per 2x upsampling), got {self.decoder_features}")
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.expansion >= 1, "expansion", f"must be >= 1, got {self.expansion}")
        require(self.num_classes == 3, "num_classes", f"the targets have 3 classes, got {self.num_classes}")
        require(self.dtype in _DTYPES, "dtype", f"use one of {sorted(_DTYPES)}, got {self.dtype!r}")
        require(self.input_polarity in INPUT_POLARITIES, "input_polarity",
                f"use one of {INPUT_POLARITIES}, got {self.input_polarity!r}")
        require(0.0 < self.polarity_threshold < 1.0, "polarity_threshold",
                f"must lie in (0, 1) (grey levels are in [0, 1]), got {self.polarity_threshold}")
        require(self.input_norm in INPUT_NORMS, "input_norm", f"use one of {INPUT_NORMS}, got {self.input_norm!r}")
        require(self.conv in CONV_IMPLS, "conv", f"use one of {CONV_IMPLS}, got {self.conv!r}")


def resolve_dtype(name: Any):
    if name is None:
        return jnp.float32
    if isinstance(name, str):
        try:
            return _DTYPES[name]
        except KeyError:
            raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None
    return name


def make_model(cfg: ModelConfig | Mapping[str, Any] | None = None) -> UNet:
    """The U-Net of a :class:`ModelConfig` (a dict or ConfigDict section converts: ``ModelConfig(**d)``)."""
    if cfg is None:
        cfg = ModelConfig()
    elif not isinstance(cfg, ModelConfig):
        cfg = ModelConfig(**(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)))
    dtype = resolve_dtype(cfg.dtype)
    encoder = ResNetEncoder(stage_sizes=cfg.stage_sizes, width=cfg.width, expansion=cfg.expansion, dtype=dtype,
                            input_polarity=cfg.input_polarity,
                            polarity_threshold=cfg.polarity_threshold, input_norm=cfg.input_norm, conv=cfg.conv)
    decoder = UNetDecoder(features=cfg.decoder_features, num_classes=cfg.num_classes, dtype=dtype, conv=cfg.conv)
    return UNet(encoder=encoder, decoder=decoder)


def with_conv(unet: UNet, conv: str) -> UNet:
    """The same U-Net (same parameters) computing its convolutions by ``conv`` (:mod:`dng_jax.models.conv`)."""
    conv_function(conv)  # an unknown path: ValueError now, not at the first call
    return UNet(encoder=unet.encoder.clone(conv=conv), decoder=unet.decoder.clone(conv=conv))


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays or ``jax.ShapeDtypeStruct``s."""
    return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree_util.tree_leaves(tree)))
