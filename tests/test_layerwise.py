"""The side-by-side walk: float inputs as Keras computes them, int8 activations simulated."""

import numpy as np
import pytest
from ptq_models import tiny_model

from tfcompress import errors, keras
from tfcompress.equalization import fold_batchnorm
from tfcompress.layerwise import walk


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
