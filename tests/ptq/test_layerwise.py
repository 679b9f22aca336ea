"""The side-by-side walk: float inputs as Keras computes them, int8 activations simulated."""

import numpy as np
import pytest
from ptq_models import mixed_model, tiny_model

import tfcompress
from tfcompress import errors, keras
from tfcompress.export.conversion import _op_outputs, layer_of
from tfcompress.ptq.equalization import fold_batchnorm
from tfcompress.ptq.layerwise import quantized_tensors, walk


def test_walk_float_path_matches_keras_and_quantized_path_is_on_int8_grids(digits):
    (x, _), _ = digits
    x = x[:64]
    model = fold_batchnorm(tiny_model())
    quant = fold_batchnorm(model)
    seen = {}
    for name, xf, xq in walk(model, quant, x, activation_bits=8):
        seen[name] = (xf, xq)
    assert set(seen) == {l.name for l in model.layers[1:]}
    for name in ("dw", "dense", "logits"):
        want = keras.Model(model.inputs, model.get_layer(name).input).predict(x, verbose=0)
        np.testing.assert_allclose(seen[name][0].numpy(), want, rtol=1e-5, atol=1e-6)
        # the quantized path's input holds at most 256 levels (one int8 tensor) ...
        assert len(np.unique(seen[name][1].numpy())) <= 256
        # ... and differs from the float input (the simulated rounding)
        assert not np.allclose(seen[name][1].numpy(), want)
    # without activation bits both paths are the float model
    for name, xf, xq in walk(model, quant, x):
        np.testing.assert_array_equal(np.asarray(xf), np.asarray(xq))


def test_shared_layer_is_a_clear_error(digits):
    (x, _), _ = digits
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(errors.ModelError, match="more than once"):
        list(walk(model, model, x[:4, 0, :4, 0]))


# ops that round nothing: shape arithmetic, and EXPAND_DIMS (its output keeps its input's grid)
_NO_NEW_GRID = {"SHAPE", "STRIDED_SLICE", "PACK", "EXPAND_DIMS"}


@pytest.mark.parametrize("build", [tiny_model, mixed_model])
def test_quantized_tensors_are_the_converters_int8_tensors(build, digits):
    """The tensors the simulation rounds are the layers whose outputs the int8 flatbuffer holds
    (read back by tensor name), fused ReLUs, Adds, a Conv2DTranspose's unfused ReLU included;
    the converter adds only the separable's inner depthwise output."""
    (x, _), _ = digits
    model = fold_batchnorm(build())
    fb = tfcompress.convert(model, "int8", representative_data=x[:32], representative_samples=32)
    names = [layer.name for layer in model.layers]
    converted = {layer_of(t, names) for op, outputs in _op_outputs(fb)
                 if op not in _NO_NEW_GRID for t in outputs} - {None}
    ours = quantized_tensors(model)
    assert ours[0] == model.layers[0].name  # the input
    separable_inner = {"sep"} if build is tiny_model else set()
    assert set(ours[1:]) == converted - separable_inner
