"""The grids match the quantizer's own int4 rule and keep integers placed on them."""

import numpy as np
import pytest
from litert_quantizer import qtyping
from litert_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uq

from tfcompress import errors
from tfcompress.ptq import grids


def _quantizer_int4(w: np.ndarray) -> tuple:
    """The AI Edge Quantizer's channelwise symmetric int4 (scale, integers) of a (out, in) array."""
    lo = np.min(w, axis=1, keepdims=True)
    hi = np.max(w, axis=1, keepdims=True)
    zp, scale = uq.tensor_zp_scale_from_min_max(lo, hi, 4, True,
                                                qtyping.QuantGranularity.CHANNELWISE)
    params = qtyping.UniformQuantParams(num_bits=4, quantized_dimension=0, scale=scale,
                                        zero_point=zp, symmetric=True)
    return scale, uq.uniform_quantize(w, params).astype(np.int32)


def test_int4_scale_rule_is_the_quantizers():
    w = np.random.default_rng(0).normal(size=(6, 20)).astype(np.float32)
    scale, _ = _quantizer_int4(w)
    np.testing.assert_allclose(grids.grid(4).scale(w, (1,)), scale, rtol=1e-6)


def test_weights_on_the_int4_grid_come_back_as_the_same_integers():
    g = grids.grid(4)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 20)).astype(np.float32)
    s = g.scale(w, (1,))
    q = np.clip(np.rint(w / s) + rng.integers(-1, 2, w.shape), -7, 7)  # any rounding
    q[np.arange(6), np.argmax(np.abs(w), axis=1)] = np.sign(
        w[np.arange(6), np.argmax(np.abs(w), axis=1)]) * 7  # the channel maxima stay on +-7
    placed = g.dequantize(q, s)
    assert grids.on_grid(placed, 4, (1,))
    _, back = _quantizer_int4(placed)
    np.testing.assert_array_equal(back, q)
    # A -8 would move the scale: the quantizer then stores other integers.
    q8 = q.copy()
    q8[0, np.argmin(q[0])] = -8
    _, back8 = _quantizer_int4(g.dequantize(q8, s))
    assert not np.array_equal(back8, q8)


def test_round_to_nearest_is_on_grid_and_unknown_bits_are_an_error():
    w = np.random.default_rng(2).normal(size=(3, 3, 4, 5)).astype(np.float32)
    assert not grids.on_grid(w, 8, (0, 1, 2))
    assert grids.on_grid(grids.round_to_nearest(w, 8, (0, 1, 2)), 8, (0, 1, 2))
    with pytest.raises(errors.ConfigError, match="weight bits 2"):
        grids.grid(2)


def test_block_scale_is_the_quantizers_blockwise_rule_and_keeps_its_integers():
    """Per block of 32 along the axis: the quantizer's bfloat16-rounded scale; weights rounded
    onto it come back as the same integers; a block that does not divide is one line."""
    rng = np.random.default_rng(3)
    w = (rng.normal(size=(5, 64)) * rng.uniform(0.01, 3.0, (5, 1))).astype(np.float32)
    blocks = w.reshape(5, 2, 32)
    _, want = uq.tensor_zp_scale_from_min_max(blocks.min(-1), blocks.max(-1), 4, True,
                                              qtyping.QuantGranularity.BLOCKWISE_32)
    got = grids.block_scale(w, 4, 1, 32)
    np.testing.assert_array_equal(got.reshape(5, 2, 32)[..., 0], want)
    assert np.unique(got.reshape(5, 2, 32), axis=-1).shape[-1] == 1  # one scale per block
    placed = grids.round_to_nearest(w, 4, (1,), block=32)
    q = np.rint(placed / got)
    assert np.abs(placed / got - q).max() < 1e-4 and np.abs(q).max() == 7
    np.testing.assert_array_equal(grids.block_scale(placed, 4, 1, 32), got)  # stable
    np.testing.assert_array_equal(grids.round_to_nearest(w.T, 4, (0,), block=32), placed.T)
    with pytest.raises(errors.ConfigError, match="block 32 does not divide the 5 weights") as e:
        grids.block_scale(w, 4, 0, 32)
    assert "\n" not in str(e.value)
