"""The LiteRT Quantizer's algorithms as ``algorithm=`` of the low-bit modes (issue 28, item 4):
each converts and runs, and shows the property it is for, read back from the flatbuffer."""

import numpy as np
import pytest

from tfcompress import errors
import tfcompress._compat.quantizer as _quantizer
from tfcompress._compat.keras import keras
from tfcompress.export import lowbit
import tfcompress.export.lowbit_algorithms as lowbit_algorithms
from tfcompress.export.conversion import convert
from tfcompress.export.validation import predict


def _mlp(seed=0, width=32):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((width,))
    h = keras.layers.Dense(64, activation="relu", name="fc1")(inp)
    return keras.Model(inp, keras.layers.Dense(16, name="fc2")(h))


def _data(n, seed):
    """Correlated inputs (GPTQ's Hessian is not diagonal)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(7).normal(size=(32, 32)).astype(np.float32) / 4
    return (rng.normal(size=(n, 32)).astype(np.float32) @ mix + rng.normal(size=(n, 32)) * 0.3
            ).astype(np.float32)


def _weight(flatbuffer, layer_name):
    """(integers as stored, scales) of a layer's weight tensor, read from the flatbuffer."""
    layer = next(l for l in lowbit.weight_layers(flatbuffer) if l.name == layer_name)
    model = _quantizer.read_model(flatbuffer)
    graph = model.subgraphs[0]
    tensor = next(t for t in graph.tensors if _quantizer.tensor_name(t) == layer.tensor)
    data = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8).reshape(layer.shape)
    return data, np.asarray(tensor.quantization.scale)


def _scales(flatbuffer, layer_name):
    layer = next(l for l in lowbit.weight_layers(flatbuffer) if l.name == layer_name)
    graph = _quantizer.read_model(flatbuffer).subgraphs[0]
    tensor = next(t for t in graph.tensors if _quantizer.tensor_name(t) == layer.tensor)
    return np.asarray(tensor.quantization.scale)


def _error(flatbuffer, model, x):
    return float(np.mean((predict(flatbuffer, x) - model.predict(x, verbose=0)) ** 2))


@pytest.fixture(scope="module")
def outlier_model():
    """fc1 (256 inputs) with one weight 8x the largest other in every output channel."""
    model = _mlp(width=256)
    kernel, bias = model.get_layer("fc1").get_weights()
    kernel[3] = 8.0 * np.abs(kernel).max()
    model.get_layer("fc1").set_weights([kernel, bias])
    return model, convert(model, "float32")


@pytest.mark.parametrize("algorithm", ["mse", "octav"])
def test_clipping_algorithms_give_smaller_scales_on_an_outlier(outlier_model, algorithm):
    model, f32 = outlier_model
    plain = lowbit.quantize(f32, "dynamic_wi4")
    clipped = lowbit.quantize(f32, "dynamic_wi4", algorithm=algorithm)
    plain_scales, scales = _scales(plain, "fc1"), _scales(clipped, "fc1")
    assert plain_scales.shape == scales.shape == (64,)
    assert np.median(scales / plain_scales) < 0.9  # the outlier is clipped
    assert lowbit.recipe_of(clipped)[-1]["algorithm_key"] == algorithm.upper()
    x = np.random.default_rng(1).normal(size=(64, 256)).astype(np.float32)
    assert np.isfinite(predict(clipped, x)).all()


def test_gptq_changes_the_integers_and_lowers_the_output_error():
    model = _mlp(seed=1)
    f32 = convert(model, "float32")
    calibration, held_out = _data(256, 2), _data(128, 3)
    rtn = convert(model, "dynamic_wi8")
    gptq = convert(model, "dynamic_wi8", representative_data=calibration,
                   options={"algorithm": "gptq"})
    for name in ("fc1", "fc2"):
        q_rtn, s_rtn = _weight(rtn, name)
        q_gptq, s_gptq = _weight(gptq, name)
        np.testing.assert_allclose(s_gptq, s_rtn, rtol=1e-6)  # same grid, other roundings
        assert 0.01 < np.mean(q_rtn != q_gptq) and np.abs(q_rtn.astype(int) - q_gptq).max() <= 3
    assert _error(gptq, model, held_out) < _error(rtn, model, held_out)
    static = {a: convert(model, "static_wi8_ai8", representative_data=calibration,
                         options={"algorithm": a}) for a in ("min_max", "oscar")}
    # static: ranges over all samples, OSCAR's second moments merged by sample count
    assert _error(static["oscar"], model, held_out) < 1.1 * _error(static["min_max"], model,
                                                                   held_out)
    with pytest.raises(errors.ConversionError, match="representative_data"):
        lowbit.quantize(f32, "dynamic_wi8", algorithm="gptq")


@pytest.mark.parametrize("algorithm,op", [("oscar", "MUL"), ("hadamard", "FULLY_CONNECTED")])
def test_oscar_and_hadamard_insert_their_ops_and_run_in_batches(algorithm, op):
    model = _mlp(seed=2)
    x = _data(64, 4)
    f32 = convert(model, "float32")
    plain = lowbit.quantize(f32, "dynamic_wi4")
    made = lowbit.quantize(f32, "dynamic_wi4", algorithm=algorithm)
    ops = [l.op for l in lowbit.weight_layers(made)]
    counts = {o: ops.count(o) for o in set(ops)}
    from tfcompress.export.conversion import conversion_info
    info = conversion_info(made)
    assert info["ops"].get(op, 0) > conversion_info(plain)["ops"].get(op, 0)
    assert all(not name.startswith("aeq.") for name in info["ops"])  # builtin ops only
    assert counts["FULLY_CONNECTED"] >= 2
    error, plain_error = _error(made, model, x), _error(plain, model, x)  # 64 at once
    assert np.isfinite(error) and error < 3 * plain_error


def test_algorithms_refuse_modes_and_models_they_do_not_apply_to(outlier_model):
    _, f32 = outlier_model
    with pytest.raises(errors.ConversionError, match=r"'mse' does not apply to mode "
                                                     r"'dynamic_wi4_block32'.*accepted for mse"):
        lowbit.quantize(f32, "dynamic_wi4_block32", algorithm="mse")
    with pytest.raises(errors.ConversionError, match=r"'hadamard' does not apply to mode "
                                                     r"'static_wi8_ai8'"):
        lowbit.quantize(f32, "static_wi8_ai8", algorithm="hadamard", representative_data=_data(8, 0))
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    conv = keras.Model(inp, keras.layers.Conv2D(4, 3, name="conv")(inp))
    with pytest.raises(errors.ConversionError,
                       match=r"'gptq' quantizes FULLY_CONNECTED layers and the model has none "
                             r"\(its weight layers: CONV_2D\); accepted.*min_max, octav, mse"):
        convert(conv, "dynamic_wi8", options={"algorithm": "gptq"},
                representative_data=np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(errors.ConversionError, match="quantizer algorithm 'adaround'"):
        lowbit.quantize(f32, "dynamic_wi8", algorithm="adaround")
    assert "static_wi8_ai8" in lowbit_algorithms.algorithm_modes("oscar")
    assert lowbit_algorithms.algorithm_ops("gptq") == ("FULLY_CONNECTED",)
