"""Convolutions that stay dense matrix products when ``vmap``-ed over runs (``model.conv``, ``retrain.conv``).

The sweep retrains many encoders at once, ``vmap``-ed over a leading runs axis. A ``lax.conv`` whose kernel
differs per run then lowers to a *grouped* convolution (``feature_group_count`` = runs) and its filter
gradient to a ``batch_group_count`` one, which XLA runs far below a dense convolution's speed
(jax-ml/jax#13800, #26568). The same arithmetic written as ``dot_general`` on the channel axis vmaps into a
*batched* GEMM instead:

- ``"xla"``: ``lax.conv_general_dilated`` (flax's default; the paper's numbers came from this path);
- ``"gemm_1x1"``: 1x1 convolutions (stride 2 by strided slicing) as one matmul, the others as ``"xla"``;
- ``"gemm"``: every convolution as the sum of its k x k shifted matmuls (a 3x3 is 9, the 7x7 stem 49);
- ``"im2col"``: every convolution as one matmul over the k x k x C_in patches laid side by side.

Each is a drop-in for ``nn.Conv(conv_general_dilated=...)``: the parameters keep their names and shapes, so
checkpoints move freely between paths. Results differ from ``"xla"`` only by float reassociation
(tests/models/test_conv_gemm.py: 1e-5 relative in float32). Cases the matmul paths do not cover (dilation, feature
groups, other layouts) fall back to ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("xla", "gemm_1x1", "gemm", "im2col")
#: ``retrain.conv = "auto"``: the path measured fastest for the vmapped retraining step, per backend
#: (docs/benchmarks.md, "Retraining at the chip's speed"); a backend not listed keeps ``model.conv``.
AUTO_RETRAIN_CONV = {"cpu": "gemm"}

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pads(lhs_shape, rhs_shape, strides, padding) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        return list(lax.padtype_to_pads(lhs_shape[1:3], rhs_shape[:2], strides, padding))
    return [tuple(p) for p in padding]


def _plain(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count) -> bool:
    """Whether the matmul paths cover this call: 2-D, NHWC x HWIO, no dilation, no feature groups."""
    if lhs.ndim != 4 or rhs.ndim != 4 or feature_group_count != 1 or len(window_strides) != 2:
        return False
    if any(d != 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())):
        return False
    if dimension_numbers is None:
        return False
    return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == \
        lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)


def _shifted_patches(x, kh: int, kw: int, strides: Sequence[int]):
    """The ``kh * kw`` strided views of the padded input that each kernel tap sees (row-major taps)."""
    n, h, w, c = x.shape
    sh, sw = strides
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    return [lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def _matmul_conv(lhs, rhs, window_strides, padding, *, one_by_one_only: bool, im2col: bool,
                 lhs_dilation=None, rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                 precision=None, preferred_element_type=None, **kwargs):
    plain = _plain(lhs, rhs, window_strides, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
    kh, kw = rhs.shape[:2] if plain else (0, 0)
    if not plain or kwargs or (one_by_one_only and (kh, kw) != (1, 1)):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count, precision=precision,
                                        preferred_element_type=preferred_element_type, **kwargs)
    pads = _pads(lhs.shape, rhs.shape, window_strides, padding)
    x = lhs if all(p == (0, 0) for p in pads) else jnp.pad(lhs, [(0, 0), *pads, (0, 0)])
    patches = _shifted_patches(x, kh, kw, window_strides)
    dot = lambda a, b: jnp.einsum("nhwc,cd->nhwd", a, b, precision=precision,  # noqa: E731
                                  preferred_element_type=preferred_element_type)
    if len(patches) == 1:
        return dot(patches[0], rhs[0, 0])
    if im2col:
        return dot(jnp.concatenate(patches, axis=-1), rhs.reshape(kh * kw * rhs.shape[2], rhs.shape[3]))
    taps = rhs.reshape(kh * kw, rhs.shape[2], rhs.shape[3])
    out = dot(patches[0], taps[0])
    for t in range(1, len(patches)):
        out = out + dot(patches[t], taps[t])
    return out


# Module-level functions (not partials) so that two modules with the same path compare and hash equal:
# the retraining step is cached on its model.
def gemm_1x1_conv(lhs, rhs, window_strides, padding, **kw):
    """``lax.conv_general_dilated`` with 1x1 kernels as one matmul on channels (strides by slicing)."""
    return _matmul_conv(lhs, rhs, window_strides, padding, one_by_one_only=True, im2col=False, **kw)


def gemm_conv(lhs, rhs, window_strides, padding, **kw):
    """``lax.conv_general_dilated`` as the sum of its k x k shifted matmuls."""
    return _matmul_conv(lhs, rhs, window_strides, padding, one_by_one_only=False, im2col=False, **kw)


def im2col_conv(lhs, rhs, window_strides, padding, **kw):
    """``lax.conv_general_dilated`` as one matmul over the concatenated k x k patches."""
    return _matmul_conv(lhs, rhs, window_strides, padding, one_by_one_only=False, im2col=True, **kw)


_FUNCTIONS = {"xla": None, "gemm_1x1": gemm_1x1_conv, "gemm": gemm_conv, "im2col": im2col_conv}


def conv_function(impl: str):
    """What ``nn.Conv(conv_general_dilated=...)`` takes for ``impl`` (``None``: flax's own ``lax`` conv)."""
    try:
        return _FUNCTIONS[impl]
    except KeyError:
        raise ValueError(f"conv must be one of {CONV_IMPLS}, got {impl!r}") from None


def resolve_retrain_conv(retrain_conv: str, model_conv: str, backend: str | None = None) -> str:
    """``retrain.conv``'s path on ``backend`` (default: JAX's): ``"auto"`` -> :data:`AUTO_RETRAIN_CONV`."""
    if retrain_conv != "auto":
        return retrain_conv
    return AUTO_RETRAIN_CONV.get(backend or jax.default_backend(), model_conv)


_GROUPED = re.compile(r"(feature_group_count|batch_group_count)=(\d+)")


def grouped_convolutions(hlo_text: str) -> int:
    """How many convolutions of an HLO module (``compiled.as_text()``) are grouped (a count above 1)."""
    return sum(1 for line in hlo_text.splitlines() if (" convolution(" in line or "cudnn$conv" in line)
               and any(int(n) > 1 for _, n in _GROUPED.findall(line)))
