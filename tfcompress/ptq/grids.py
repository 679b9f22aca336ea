"""The weight grids the deployed flatbuffers use, so rounding chosen in Keras deploys exactly.

Two conversions quantize weights per output channel, symmetrically, with the scale taken from
the channel's largest magnitude:

- the TFLite converter's ``int8`` (and ``dynamic``): ``scale = max|w| / 127``, integers in
  ``[-127, 127]`` (narrow range);
- the LiteRT (AI Edge) Quantizer's int4 modes (``dynamic_wi4``, ``weight_only_wi4``,
  ``static_wi4_*`` of ``tfcompress.export.lowbit``): ``scale = max|w| / 7``
  (``litert_quantizer.algorithms.uniform_quantize.uniform_quantize_tensor
  .tensor_zp_scale_from_min_max``, symmetric, signed) and ``rint(w / scale)`` clipped to
  ``[-8, 7]`` (no narrow range below 8 bits). A weight on ``-8`` would raise the channel's
  ``max|w|`` to ``8 * scale`` and change the scale, so the grid used here is ``[-7, 7]``:
  every weight set on it comes back as the same integer.

A weight set exactly on ``q * scale`` with the channel's largest ``|q|`` equal to ``qmax``
gives back the same scale and the same integers ``q`` after conversion (checked by
``tests/test_rounding.py`` against the flatbuffers' integer tensors).

Which kernels each grid applies to follows what the conversion quantizes: at 8 bits every
Conv2D, Conv1D (converted to CONV_2D), Conv2DTranspose (TRANSPOSE_CONV, per output channel),
DepthwiseConv2D, SeparableConv2D (both kernels) and Dense kernel; at 4 bits the quantizer's int4
policy takes CONV_2D and FULLY_CONNECTED but leaves DEPTHWISE_CONV_2D and TRANSPOSE_CONV in
float, so the depthwise kernels (also those inside a SeparableConv2D) and the transposed
convolutions' kernels are not on a grid.

The quantizer's block-wise int4 modes (``dynamic_wi4_block{32,64,128}``) take FULLY_CONNECTED
and EMBEDDING_LOOKUP only: each block of ``block`` consecutive inputs of an output channel (a
Dense kernel's axis 0) or of a table's row (an Embedding's axis 1) gets its own scale
``max|w| / 7`` rounded to a 7-bit mantissa (bfloat16 held as float16:
``uniform_quantize_tensor.tensor_zp_scale_from_min_max``); a layer whose width the block does
not divide gets one scale per channel (per row for a table) as ``lowbit.make_recipe`` asks.
``block_kernels`` and ``round_to_nearest(..., block=)`` follow that grid.
"""

import dataclasses
from typing import Optional

import ml_dtypes
import numpy as np

from tfcompress import errors
from tfcompress._compat.keras import keras

BITS = (8, 4)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A symmetric per-output-channel grid: integers in ``[-qmax, qmax]``."""

    bits: int
    qmax: int

    def scale(self, w: np.ndarray, reduce_axes: tuple) -> np.ndarray:
        """Per-channel scales (broadcastable to ``w``): the channel's ``max|w| / qmax``.

        A channel of zeros gets the quantizer's smallest bound (1e-9), so its weights stay 0.
        """
        bound = np.max(np.abs(w), axis=reduce_axes, keepdims=True)
        return (np.maximum(bound, 1e-9) / np.float32(self.qmax)).astype(np.float32)

    def integers(self, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Round-to-nearest integers of ``w`` on this grid (what the conversion would store)."""
        return np.clip(np.rint(w / scale), -self.qmax, self.qmax).astype(np.int32)

    def dequantize(self, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) * scale).astype(np.float32)


GRIDS = {8: Grid(8, 127), 4: Grid(4, 7)}


def grid(bits: int) -> Grid:
    """The grid for ``bits`` (8: the converter's int8, 4: the quantizer's int4).

    Raises:
        ConfigError: ``bits`` is not 8 or 4.
    """
    if bits not in GRIDS:
        raise errors.ConfigError(errors.unknown("weight bits", bits, BITS))
    return GRIDS[bits]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One quantized kernel of a layer: the variable's attribute and the per-channel axes.

    ``reduce_axes`` are the axes a channel's ``max|w|`` spans (every axis but the deployed
    output channel: the last for Conv2D/Conv1D/Dense/pointwise kernels, the third of four for
    Conv2DTranspose kernels (height, width, out, in), the last two (input channel times
    multiplier) for depthwise kernels).
    """

    attr: str
    reduce_axes: tuple
    block: int = 0  # block-wise grid: blocks of this many along the one axis of reduce_axes


_CONV = (keras.layers.Conv2D,)
_CONV1D = (keras.layers.Conv1D,)
_DEPTHWISE = (keras.layers.DepthwiseConv2D,)
_SEPARABLE = (keras.layers.SeparableConv2D,)
_DENSE = (keras.layers.Dense,)


def layer_kind(layer) -> Optional[str]:
    """``"conv"``, ``"conv1d"``, ``"transpose"``, ``"depthwise"``, ``"separable"``, ``"dense"``,
    or None for other layers (grouped convolutions, dilated transposed ones, causal or
    channels-first Conv1D)."""
    if isinstance(layer, _DEPTHWISE):  # a DepthwiseConv2D is a Conv2D subclass: test first
        return "depthwise"
    if isinstance(layer, _SEPARABLE):
        return "separable"
    if isinstance(layer, keras.layers.Conv2DTranspose):  # also a Conv2D subclass
        plain = (tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last")
        return "transpose" if plain else None
    if isinstance(layer, _CONV):
        return "conv" if getattr(layer, "groups", 1) == 1 else None
    if isinstance(layer, _CONV1D) and not isinstance(layer, keras.layers.Conv1DTranspose):
        plain = (getattr(layer, "groups", 1) == 1 and layer.padding != "causal"
                 and layer.data_format == "channels_last")
        return "conv1d" if plain else None
    if isinstance(layer, _DENSE) and len(layer.input_shape) == 2:
        return "dense"
    return None


def kernels(layer, bits: int) -> tuple:
    """The layer's kernels the conversion at ``bits`` quantizes (see the module docstring)."""
    kind = layer_kind(layer)
    if kind in ("conv", "conv1d", "dense"):
        return (Kernel("kernel", {"conv": (0, 1, 2), "conv1d": (0, 1), "dense": (0,)}[kind]),)
    if kind == "transpose":
        return (Kernel("kernel", (0, 1, 3)),) if bits == 8 else ()
    if kind == "depthwise":
        return (Kernel("depthwise_kernel", (0, 1)),) if bits == 8 else ()
    if kind == "separable":
        pointwise = Kernel("pointwise_kernel", (0, 1, 2))
        return (Kernel("depthwise_kernel", (0, 1)), pointwise) if bits == 8 else (pointwise,)
    return ()


def on_grid(w: np.ndarray, bits: int, reduce_axes: tuple, tolerance: float = 1e-3) -> bool:
    """Whether ``w`` lies on the grid its own scale defines (so the conversion keeps it).

    ``w / scale`` must be within ``tolerance`` of an integer in ``[-qmax, qmax]``; float32
    products ``q * scale`` are off by an ulp or so, which the conversion's ``rint`` absorbs.
    """
    g = grid(bits)
    s = g.scale(w, reduce_axes)
    r = w.astype(np.float64) / s
    return bool(np.all(np.abs(r - np.rint(r)) <= tolerance)
                and np.all(np.abs(r) <= g.qmax + tolerance))


def round_to_nearest(w: np.ndarray, bits: int, reduce_axes: tuple, block: int = 0) -> np.ndarray:
    """``w`` rounded to the nearest point of its grid (min-max scale), as float32; ``block``:
    the block-wise grid (``block_scale``) along the one axis of ``reduce_axes``."""
    g = grid(bits)
    if block:
        s = block_scale(w, bits, reduce_axes[0], block)
        return g.dequantize(g.integers(w, s), s)
    s = g.scale(w, reduce_axes)
    return g.dequantize(g.integers(w, s), s)


def block_scale(w: np.ndarray, bits: int, axis: int, block: int) -> np.ndarray:
    """The block-wise scales of ``w`` (broadcast to its shape): each run of ``block`` elements
    along ``axis`` gets ``max|w| / qmax`` (at least 1e-9 / qmax) rounded to a 7-bit mantissa.

    Raises:
        ConfigError: a block that does not divide the axis, or bits without a grid.
    """
    g = grid(bits)
    w = np.asarray(w, np.float32)
    if block < 1 or w.shape[axis] % block:
        raise errors.ConfigError(f"block {block} does not divide the {w.shape[axis]} weights "
                                 f"along axis {axis}; accepted: a divisor of {w.shape[axis]}")
    moved = np.moveaxis(w, axis, -1)
    blocks = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // block, block))
    bound = np.maximum(np.max(np.abs(blocks), axis=-1, keepdims=True), 1e-9)
    scale = (bound / g.qmax).astype(ml_dtypes.bfloat16).astype(np.float16).astype(np.float32)
    scale = np.broadcast_to(scale, blocks.shape).reshape(moved.shape)
    return np.ascontiguousarray(np.moveaxis(scale, -1, axis))


def block_kernels(layer, block: int) -> tuple:
    """The weights of ``layer`` a block-wise int4 conversion quantizes, with their grid: a Dense
    kernel (2-D input) in blocks along its input axis, an Embedding table in blocks along a
    row; one scale per output channel (per row) where ``block`` does not divide the width."""
    if layer_kind(layer) == "dense":
        width = layer.kernel.shape[0]
        return (Kernel("kernel", (0,), block if width % block == 0 else 0),)
    if isinstance(layer, keras.layers.Embedding):
        width = layer.embeddings.shape[1]
        return (Kernel("embeddings", (1,), block if width % block == 0 else 0),)
    return ()
