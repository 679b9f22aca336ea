import sys

import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.wrappers import is_quantize_aware
from tfcompress.export.conversion import (MODES, available_modes, conversion_info, convert,
                                layer_of, quantization_report, register_mode, representative)
from tfcompress.export.validation import interpreter, predict
import tfcompress.export.closeness as closeness

ALL = ("float32", "float16", "dynamic", "int8", "int16x8")


@pytest.fixture(scope="module")
def flatbuffers(trained_cnn, digits):
    (x, _), _ = digits
    return {mode: tfcompress.convert(trained_cnn, mode, representative_data=x,
                                     representative_samples=100)
            for mode in ALL}


def test_modes_are_listed():
    assert MODES == ALL and available_modes()[: len(ALL)] == ALL


def test_sizes_shrink_by_mode(flatbuffers):
    f32 = len(flatbuffers["float32"])
    assert 0.45 < len(flatbuffers["float16"]) / f32 < 0.55
    assert len(flatbuffers["int8"]) / f32 <= 0.30
    assert len(flatbuffers["dynamic"]) / f32 <= 0.30
    assert len(flatbuffers["int16x8"]) / f32 <= 0.30


def test_int8_has_int8_io(flatbuffers):
    interp = interpreter(flatbuffers["int8"])
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8


@pytest.mark.parametrize("mode,io_type,dtype", [
    ("int8", "uint8", np.uint8), ("int8", "float32", np.float32), ("int16x8", "int16", np.int16)])
def test_io_type_on_request(trained_cnn, digits, mode, io_type, dtype):
    (x, _), (xt, yt) = digits
    fb = convert(trained_cnn, mode, representative_data=x, representative_samples=20,
                 io_type=io_type)
    interp = interpreter(fb)
    assert interp.get_input_details()[0]["dtype"] == dtype
    assert interp.get_output_details()[0]["dtype"] == dtype
    report = tfcompress.validate(fb, xt, yt, reference=trained_cnn, latency_runs=0,
                                 delegate_checks=False)
    assert report.agreement >= 0.98


@pytest.mark.parametrize("mode", ALL)
def test_converted_model_matches_keras(flatbuffers, trained_cnn, digits, mode):
    _, (x, y) = digits
    report = tfcompress.validate(flatbuffers[mode], x, y, reference=trained_cnn, latency_runs=0,
                                 delegate_checks=False)
    assert report.agreement >= (0.98 if mode == "int8" else 0.995)
    keras_acc = float(np.mean(trained_cnn.predict(x, verbose=0).argmax(-1) == y))
    assert abs(report.accuracy - keras_acc) <= 0.01


@pytest.mark.parametrize("mode", ALL)
def test_conversion_info_records_what_was_done(flatbuffers, mode):
    info = conversion_info(flatbuffers[mode])
    assert info["mode"] == mode  # inferred from the tensor types
    interp = interpreter(flatbuffers[mode])
    inp = interp.get_input_details()[0]
    assert info["inputs"][0]["dtype"] == np.dtype(inp["dtype"]).name
    assert info["inputs"][0]["scale"] == pytest.approx(inp["quantization"][0])
    assert info["inputs"][0]["zero_point"] == inp["quantization"][1]
    assert info["ops"]["CONV_2D"] == 2
    expected_act = {"int8": "int8", "int16x8": "int16"}.get(mode, "float32")
    assert info["activation_dtype"] == expected_act
    assert conversion_info(flatbuffers[mode], "named")["mode"] == "named"


def test_convert_from_paths(tmp_path, trained_cnn, flatbuffers, digits):
    (x, _), _ = digits
    path = str(tmp_path / "m.keras")
    models.save_model(trained_cnn, path)
    # The same weights: the same outputs (two differently seeded models have the same length).
    x_test = digits[1][0][:64]
    from_keras = tfcompress.convert(path, "float32")
    np.testing.assert_array_equal(predict(from_keras, x_test),
                                  predict(flatbuffers["float32"], x_test))
    models.save_model(trained_cnn, str(tmp_path / "m.h5"))
    from_h5 = tfcompress.convert(str(tmp_path / "m.h5"), "dynamic")
    np.testing.assert_array_equal(predict(from_h5, x_test),
                                  predict(flatbuffers["dynamic"], x_test))
    trained_cnn.save(str(tmp_path / "sm"), save_format="tf")
    from_sm = tfcompress.convert(str(tmp_path / "sm"), "float32")
    np.testing.assert_allclose(predict(from_sm, x_test), trained_cnn.predict(x_test, verbose=0),
                               atol=1e-5)
    # The SavedModel's input shape is read from its signature and checked too.
    with pytest.raises(errors.DataError, match=r"\(8, 8, 1\)"):
        tfcompress.convert(str(tmp_path / "sm"), "int8", representative_data=np.zeros((4, 5, 5, 1)))
    from_sm8 = tfcompress.convert(str(tmp_path / "sm"), "int8", representative_data=x[:20])
    assert interpreter(from_sm8).get_input_details()[0]["dtype"] == np.int8


def test_representative_data_kinds(trained_cnn, digits, flatbuffers):
    (x, y), _ = digits
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    for source in (dataset, digits, list(x[:100])):
        samples = [s[0] for s in representative(source, (None, 8, 8, 1), 100)()]
        assert len(samples) == 100 and np.array_equal(np.concatenate(samples), x[:100])
    # Same first 100 training images: the same calibration, the same bytes.
    from_ds = convert(trained_cnn, "int8", representative_data=dataset, representative_samples=100)
    assert from_ds == flatbuffers["int8"]


def test_bad_requests_are_clear(trained_cnn):
    with pytest.raises(errors.ConversionError, match="unknown conversion mode 'int3'; accepted: float32"):
        tfcompress.convert(trained_cnn, "int3")
    with pytest.raises(errors.ConversionError, match="needs representative_data"):
        tfcompress.convert(trained_cnn, "int8")
    with pytest.raises(errors.ConversionError, match="needs representative_data"):
        tfcompress.convert(trained_cnn, "int16x8")
    with pytest.raises(errors.DataError, match=r"sample shape \(9, 9, 1\).*\(8, 8, 1\)"):
        tfcompress.convert(trained_cnn, "int8", representative_data=np.zeros((4, 9, 9, 1)))
    with pytest.raises(errors.DataError, match=r"dtype <U1.*\(8, 8, 1\)"):
        tfcompress.convert(trained_cnn, "int8", representative_data=np.full((4, 8, 8, 1), "a"))
    with pytest.raises(errors.ModelError, match="does not exist"):
        tfcompress.convert("/nonexistent/model.keras", "float32")
    with pytest.raises(errors.ConversionError, match="io_type 'int16'.*'int8'; accepted: int8, uint8"):
        tfcompress.convert(trained_cnn, "int8", representative_data=np.zeros((4, 8, 8, 1)),
                           io_type="int16")
    with pytest.raises(errors.ConversionError, match="need mode 'int8'"):
        tfcompress.convert(trained_cnn, "float16", keep_float_layers=["dense"])


@pytest.mark.slow
def test_qat_model_converts_to_int8_without_data(digits):
    import tensorflow_model_optimization as tfmot

    (x, y), (xt, yt) = digits
    keras.utils.set_random_seed(1)
    base = models.digits_cnn()
    qat = tfmot.quantization.keras.quantize_model(base)
    assert is_quantize_aware(qat) and not is_quantize_aware(base)
    qat.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    qat.fit(x, y, epochs=2, batch_size=128, verbose=0)  # QAT from scratch, briefly
    fb = convert(qat, "int8")
    assert conversion_info(fb)["inputs"][0]["dtype"] == "int8"
    report = tfcompress.validate(fb, xt, yt, reference=qat, latency_runs=0, delegate_checks=False)
    assert report.agreement >= 0.97 and report.accuracy > 0.8


def _fc_output_dtypes(fb):
    interp = interpreter(fb, delegates=False, allocate=False)
    return {layer_of(interp._get_tensor_details(op["outputs"][0], 0)["name"], ["dense", "logits"]):
            np.dtype(interp._get_tensor_details(op["outputs"][0], 0)["dtype"]).name
            for op in interp._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"}


def test_selective_quantization(trained_cnn, digits, flatbuffers):
    (x, _), (xt, yt) = digits
    assert _fc_output_dtypes(flatbuffers["int8"]) == {"dense": "int8", "logits": "int8"}
    keep_dense = convert(trained_cnn, "int8", representative_data=x, representative_samples=20,
                         keep_float_layers=["dense"])
    assert _fc_output_dtypes(keep_dense) == {"dense": "float32", "logits": "int8"}
    assert len(keep_dense) > len(flatbuffers["int8"]) * 2  # dense holds most weights, in float
    keep_fc = convert(trained_cnn, "int8", representative_data=x, representative_samples=20,
                      keep_float_ops=["FULLY_CONNECTED"])
    assert _fc_output_dtypes(keep_fc) == {"dense": "float32", "logits": "float32"}
    report = tfcompress.validate(keep_dense, xt, yt, reference=trained_cnn, latency_runs=0,
                                 delegate_checks=False)
    assert report.agreement >= 0.98
    with pytest.raises(errors.ConversionError, match="unknown layer 'nope'; accepted: conv1"):
        convert(trained_cnn, "int8", representative_data=x[:20], keep_float_layers=["nope"])
    with pytest.raises(errors.ConversionError, match="unknown op type 'LSTM'; accepted: CONV_2D"):
        convert(trained_cnn, "int8", representative_data=x[:20], keep_float_ops=["LSTM"])


def test_quantization_report_ranks_layers(trained_cnn, digits):
    (x, _), _ = digits
    rows = quantization_report(trained_cnn, x, representative_samples=20)
    errs = [r["rmse_over_scale"] for r in rows]
    assert errs == sorted(errs, reverse=True) and len(rows) >= 6
    layers = {r["layer"] for r in rows}
    assert {"conv1", "conv2", "dense", "logits"} <= layers
    # Weighted layers carry real rounding error; pooling and reshapes copy values exactly.
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["conv1"]["rmse_over_scale"] > 0.05
    assert by_layer["pool"]["rmse_over_scale"] < 0.01
    assert all(r["scale"] > 0 and r["max_abs_error"] >= r["mean_abs_error"] >= 0 for r in rows)


def test_register_mode_adds_a_mode(trained_cnn, flatbuffers):
    @register_mode("float32_copy")
    def _copy(req):
        return req.converter().convert()

    try:
        assert "float32_copy" in available_modes()
        copy = convert(trained_cnn, "float32_copy")
        assert conversion_info(copy)["mode"] == "float32_copy"  # the fact travels in the file
        x = np.random.default_rng(0).random((8, 8, 8, 1), np.float32)
        np.testing.assert_array_equal(predict(copy, x), predict(flatbuffers["float32"], x))
    finally:
        tfcompress.export.modes.unregister("float32_copy")
    assert "float32_copy" not in available_modes()


def _kernels(flatbuffer: bytes) -> dict:
    """{kernel tensor name: (integers, per-channel scales)} of the CNN's Conv2D/MatMul weights,
    read back from the flatbuffer."""
    interp = interpreter(flatbuffer, delegates=False)
    return {t["name"]: (interp.get_tensor(t["index"]), t["quantization_parameters"]["scales"])
            for t in interp.get_tensor_details()
            if t["name"].endswith(("Conv2D", "MatMul")) and ";" not in t["name"]}


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_recovery_option_deploys_on_the_grid_and_says_so(trained_cnn, digits, mode):
    (x, _), _ = digits
    fb = convert(trained_cnn, mode, representative_data=x[:64], representative_samples=64,
                 recovery=("adaround",))
    info = conversion_info(fb)
    assert info["facts"]["recovery"] == ["adaround"] and info["mode"] == mode
    plain_fb = convert(trained_cnn, mode, representative_data=x[:64])
    assert "recovery" not in conversion_info(plain_fb)["facts"]
    # On the grid: the integers read back share min-max's scales and each lies within one step
    # of min-max's nearest integer; learned rounding flips some (measured: 2-7% per kernel).
    ours, plain = _kernels(fb), _kernels(plain_fb)
    assert sorted(ours) == sorted(plain) and len(ours) == 4, sorted(ours)
    for name, (q, scales) in ours.items():
        np.testing.assert_allclose(scales, plain[name][1], rtol=1e-6)
        steps = np.abs(q.astype(np.int64) - plain[name][0])
        assert steps.max() == 1 and 0 < np.mean(steps) < 0.25, (name, np.mean(steps))
    with pytest.raises(errors.ConversionError, match="recovery=True does not apply to mode .float16."):
        convert(trained_cnn, "float16", representative_data=x[:8], recovery=True)
    with pytest.raises(errors.ConversionError, match="recovery step 'round'"):
        convert(trained_cnn, "int8", representative_data=x[:8], recovery=("round",))


def test_recovery_is_kept_only_where_validation_agrees(trained_cnn, digits):
    """With validation data, the kept flatbuffer must not agree with the float model less
    often than plain min-max beyond chance, and must be the closer by output error unless
    min-max agrees less beyond chance; the facts give both figures, and the kept flatbuffer
    measures so."""
    (x, _), (xv, yv) = digits
    reference = trained_cnn.predict(xv, verbose=0).argmax(-1)
    plain = convert(trained_cnn, "dynamic_wi4", representative_data=x[:128],
                    representative_samples=128)
    fb = convert(trained_cnn, "dynamic_wi4", representative_data=x[:128],
                 representative_samples=128, recovery=("adaround",), validation_data=(xv, yv))
    check = conversion_info(fb)["facts"]["recovery_check"]
    scores = check["validation"]
    kept_alike = predict(fb, xv).argmax(-1) == reference
    plain_alike = predict(plain, xv).argmax(-1) == reference
    assert scores["min_max"]["agreement"] == pytest.approx(np.mean(plain_alike))
    assert scores[check["kept"]]["agreement"] == pytest.approx(np.mean(kept_alike))
    assert not closeness.decides_worse(kept_alike, plain_alike)
    assert (scores[check["kept"]]["output_error"] <= scores["min_max"]["output_error"]
            or closeness.decides_worse(plain_alike, kept_alike))
    recovered = conversion_info(fb)["facts"].get("recovery")
    assert (recovered == ["adaround"]) == (check["kept"] == "recovered")


def test_recovery_true_without_fine_tuning_is_still_checked_against_min_max(trained_cnn, digits):
    """int16x8 has no label-free QAT: recovery=True still holds out a quarter of the
    representative images and keeps min-max where the recovered weights are not closer there
    (a GRU model's recovery, without the check, had kept a worse file)."""
    (x, _), _ = digits
    fb = convert(trained_cnn, "int16x8", representative_data=x[:64],
                 representative_samples=64, recovery=True)
    facts = conversion_info(fb)["facts"]
    check = facts["recovery_check"]
    assert set(check["validation"]) == {"recovered", "min_max"}
    assert (check["kept"] == "recovered") == ("recovery" in facts)


def test_recovery_true_skips_label_free_qat_where_tfmot_cannot_train_a_layer():
    """A scaling written as ``h * 0.5`` (a TFOpLambda multiply, which tfmot cannot quantize):
    recovery=True still recovers and converts, and its facts say the fine-tuning candidate was
    skipped and why; asking for the fine-tuning explicitly stays an error."""
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="conv")(inputs) * 0.5
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="probs")(
        L.GlobalAveragePooling2D()(x)))
    x_cal = np.random.default_rng(0).random((32, 8, 8, 1), np.float32)
    facts = conversion_info(convert(model, "int8", representative_data=x_cal,
                                    recovery=True))["facts"]
    assert "math.multiply" in facts["recovery_skipped"]
    assert set(facts["recovery_check"]["validation"]) == {"min_max", "recovered"}
    with pytest.raises(errors.ModelError, match="math.multiply"):
        convert(model, "int8", representative_data=x_cal, recovery=("finetune",))


@pytest.mark.parametrize("changed", [False, True])
def test_fine_tuning_that_kept_its_start_is_not_converted_again(monkeypatch, trained_cnn, digits,
                                                                changed):
    """Label-free QAT that no epoch improved returns its start's weights (the int4 modes): its
    candidate is then the recovered flatbuffer, converted once; weights that moved are
    converted on their own. Counted by the converters built, read from the candidates' bytes.
    The fine-tuning's time budget is what is left of ``RECOVERY_SECONDS`` (at most 60 s, at
    least 1 s)."""
    import tfcompress.export.conversion as conversion
    import tfcompress.wrappers as wrappers

    budgets = []

    def tuned(model, x, mode, start, **kwargs):
        budgets.append(kwargs["max_seconds"])
        out = wrappers.copy_model(start)
        if changed:  # one logit of the last layer with a bias moves
            bias = [l for l in out.layers if getattr(l, "bias", None) is not None][-1].bias
            bias.assign(bias.numpy() + np.eye(bias.shape[0], dtype=np.float32)[0] * 0.5)
        return out

    built = []
    make = conversion.Request.converter
    monkeypatch.setattr(conversion.finetune_lib, "finetune_quantized", tuned)
    if changed:
        monkeypatch.setattr(conversion, "RECOVERY_SECONDS", 1e-3)  # spent by the PTQ steps
    monkeypatch.setattr(conversion.Request, "converter",
                        lambda req: built.append(req.source) or make(req))
    (x, _), _ = digits
    fb = convert(trained_cnn, "int8", representative_data=x[:32],
                 recovery=("correct_bias", "finetune"))
    assert len(built) == (2 if changed else 1)
    assert (budgets == [1.0]) if changed else (30.0 < budgets[0] <= 60.0), budgets
    assert conversion_info(fb)["facts"]["recovery"] == ["correct_bias", "finetune"]
    out, reference = predict(fb, x[:32]), trained_cnn.predict(x[:32], verbose=0)
    assert np.mean(out.argmax(-1) == reference.argmax(-1)) > 0.8
