"""Activation ranges chosen by error for the converter's int8 (issue 28, item 2): the range read
back from the flatbuffer shrinks past a rare outlier and the held-out output error falls."""

import numpy as np
import pytest
import tensorflow as tf

from tfcompress import errors
import tfcompress._compat.litert as _litert
from tfcompress._compat.keras import keras
from tfcompress.export.conversion import convert
from tfcompress.export.validation import predict
from tfcompress.ptq import activation_ranges


@pytest.fixture(scope="module")
def spiky():
    """Conv2D(8, relu) over 16x16 images (2048 activations an image, about 4 at most); one
    calibration image in 300 has a pixel at 400, which the conv spreads over its 3x3 window."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="fc")(h))
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(300, 16, 16, 1)).astype(np.float32)
    calibration[123, 8, 8, 0] = 400.0
    held_out = rng.normal(size=(200, 16, 16, 1)).astype(np.float32)
    return model, calibration, held_out


def _hidden_scale(flatbuffer) -> float:
    """The int8 scale of the CONV_2D's output (its ReLU activation)."""
    interp = _litert.interpreter(flatbuffer, delegates=False)
    op = next(o for o in _litert.ops(interp) if o["op_name"] == "CONV_2D")
    detail = next(d for d in interp.get_tensor_details() if d["index"] == op["outputs"][0])
    return float(detail["quantization"][0])


@pytest.fixture(scope="module")
def flatbuffers(spiky):
    model, calibration, _ = spiky
    return {method: convert(model, "int8", representative_data=calibration,
                            representative_samples=300,
                            options={"activation_ranges": method})
            for method in activation_ranges.METHODS}


def test_chosen_ranges_are_smaller_and_the_error_lower(spiky, flatbuffers):
    model, _, held_out = spiky
    reference = model.predict(held_out, verbose=0)
    scale = {m: _hidden_scale(fb) for m, fb in flatbuffers.items()}
    error = {m: float(np.mean((predict(fb, held_out) - reference) ** 2))
             for m, fb in flatbuffers.items()}
    # min-max's range reaches the spike; MSE shrinks it a little (a clipped value costs its
    # squared distance, so a lone large spike is mostly kept), the percentile past it
    assert scale["mse"] < 0.9 * scale["min_max"] and scale["percentile"] < 0.1 * scale["min_max"]
    assert error["mse"] < error["min_max"] and error["percentile"] < 0.2 * error["min_max"]


def test_min_max_through_the_two_steps_is_the_converters_int8(spiky, flatbuffers):
    model, calibration, held_out = spiky

    def samples():
        for row in calibration:
            yield [row[None]]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = samples
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = c.inference_output_type = tf.int8
    two_steps = activation_ranges.quantize(c, samples, "min_max", "int8")
    np.testing.assert_array_equal(predict(two_steps, held_out),
                                  predict(flatbuffers["min_max"], held_out))


def test_choose_on_a_known_histogram():
    low, high = -1.0, 20.0  # a million values in [-1, 1] and one at 20
    values = np.concatenate([np.random.default_rng(0).uniform(-1, 1, 1000000), [20.0]])
    counts = np.bincount(np.clip(((values - low) / (high - low) * activation_ranges.BINS)
                                 .astype(int), 0, activation_ranges.BINS - 1),
                         minlength=activation_ranges.BINS)
    mse = activation_ranges.choose(counts, low, high, "mse")
    pct = activation_ranges.choose(counts, low, high, "percentile")
    # clipping the spike to c costs (20 - c)**2; rounding a million values costs 1e6 step**2/12
    assert -1.0 <= mse[0] < -0.9 and 1.0 < mse[1] < 12.0
    assert -1.0 <= pct[0] < -0.99 and 0.99 < pct[1] < 1.05
    assert activation_ranges.choose(counts, low, high, "min_max") == (low, high)


def test_bad_requests_are_one_line(spiky):
    model, calibration, _ = spiky
    with pytest.raises(errors.ConversionError, match="activation_ranges 'kl'.*min_max, mse"):
        convert(model, "int8", representative_data=calibration,
                options={"activation_ranges": "kl"})
    with pytest.raises(errors.ConversionError, match="keep_float_layers.*accepted: 'min_max'"):
        convert(model, "int8", representative_data=calibration, keep_float_layers=["fc"],
                io_type="float32", options={"activation_ranges": "mse"})
    with pytest.raises(errors.ConversionError, match="option for mode 'dynamic'"):
        convert(model, "dynamic", options={"activation_ranges": "mse"})


def test_the_quantizers_static_int8_modes_take_the_option(spiky):
    model, calibration, held_out = spiky
    reference = model.predict(held_out, verbose=0)
    made = {m: convert(model, "static_wi8_ai8", representative_data=calibration,
                       representative_samples=300, options={"activation_ranges": m})
            for m in ("min_max", "percentile")}
    scale = {m: _hidden_scale(fb) for m, fb in made.items()}
    error = {m: float(np.mean((predict(fb, held_out) - reference) ** 2)) for m, fb in made.items()}
    assert scale["percentile"] < 0.1 * scale["min_max"]
    assert error["percentile"] < 0.2 * error["min_max"]
    with pytest.raises(errors.ConversionError, match="option for mode 'static_wi8_ai16'"):
        convert(model, "static_wi8_ai16", representative_data=calibration,
                options={"activation_ranges": "mse"})
