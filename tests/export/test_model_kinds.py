"""Convert + validate on every kind of model users bring (tiny models of tests/model_kinds.py):
token-id text, LSTM/GRU/SimpleRNN/Bidirectional built with a dynamic batch, Conv1D regression,
two outputs, a 3-D output, dynamic height and width. Each case asserts a measured figure read
back from the flatbuffer, or the one-line refusal."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import errors, keras
from tfcompress.export import conversion, validation

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import model_kinds  # noqa: E402

QUICK = dict(latency_runs=0, delegate_checks=False)


def _ops(flatbuffer) -> dict:
    return conversion.conversion_info(flatbuffer)["ops"]


@pytest.mark.parametrize("mode", ["float32", "dynamic", "int8", "int16x8"])
def test_text_classifier_on_token_ids(mode):
    """int32 token ids stay int32 in calibration and validation; int8 agrees >= 99% with Keras
    on the held-out split."""
    model, (x, _), (x_test, y_test) = model_kinds.trained("text")
    flatbuffer = tfcompress.convert(model, mode, representative_data=x[:200])
    info = conversion.conversion_info(flatbuffer)
    assert info["inputs"][0]["dtype"] == "int32"
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    assert report.task == "classification"
    assert report.agreement >= 0.99
    keras_accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert abs(report.accuracy - keras_accuracy) <= 0.01
    # an int64 copy of the ids is cast to the input's int32, not divided by a scale
    out64 = validation.predict(flatbuffer, x_test.astype(np.int64))
    np.testing.assert_allclose(out64, validation.predict(flatbuffer, x_test))


def test_token_ids_out_of_the_input_range_are_one_line():
    model, (x, _), _ = model_kinds.trained("text")
    flatbuffer = tfcompress.convert(model, "float32")
    bad = x[:4].astype(np.int64)
    bad[0, 0] = 2**40
    with pytest.raises(errors.DataError, match=r"do not fit the model's int32 input") as info:
        validation.predict(flatbuffer, bad)
    assert "\n" not in str(info.value)
    vocab = model.get_layer("embedding").input_dim
    for value in (vocab, -1):  # outside the Embedding's table: named, before any lookup fails
        ids = x[:8].copy()
        ids[3, 2] = value
        for call in (lambda: tfcompress.convert(model, "int8", representative_data=ids),
                     lambda: tfcompress.validate(flatbuffer, ids, reference=model, **QUICK)):
            with pytest.raises(errors.DataError, match=rf"token id {value} is outside Embedding "
                                                       rf"'embedding''s range; accepted: ids "
                                                       rf"0\.\.{vocab - 1}") as info:
                call()
            assert "\n" not in str(info.value)
        with pytest.raises(errors.DataError, match="index outside the embedding table"):
            tfcompress.validate(flatbuffer, ids, **QUICK)  # no Keras model: the file's lookup


@pytest.mark.parametrize("kind, mode, fused", [
    ("lstm", "float32", "UNIDIRECTIONAL_SEQUENCE_LSTM"),
    ("lstm", "int8", "UNIDIRECTIONAL_SEQUENCE_LSTM"),
    ("gru", "float32", "WHILE"),
    ("simple_rnn", "dynamic", "WHILE"),
    pytest.param("bilstm", "float32", "UNIDIRECTIONAL_SEQUENCE_LSTM", marks=pytest.mark.slow),
    pytest.param("bilstm", "int8", "UNIDIRECTIONAL_SEQUENCE_LSTM", marks=pytest.mark.slow),
])
def test_recurrent_model_with_a_dynamic_batch(kind, mode, fused):
    """The converter gets a batch-1 copy (the user's model keeps its dynamic batch); validation
    resets the state between samples, so the flatbuffer agrees with Keras on every sample."""
    model, (x, _), (x_test, y_test) = model_kinds.trained(kind)
    weights = [w.copy() for w in model.get_weights()]
    flatbuffer = tfcompress.convert(model, mode, representative_data=x[:100])
    assert model.input_shape[0] is None
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert fused in _ops(flatbuffer)
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    assert report.agreement >= 0.99, report.agreement
    # the fused LSTM keeps its state between invokes: without a reset, the same sample run
    # again gives another output (what validate measured before it reset them)
    interp = validation.interpreter(flatbuffer)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    sample = validation._quantize(x_test[:1], inp)
    runs = []
    for reset in (True, True, False):
        if reset:
            interp.reset_all_variables()
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
        runs.append(interp.get_tensor(out["index"]).copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    if fused == "UNIDIRECTIONAL_SEQUENCE_LSTM" and mode == "float32":  # (int8 may saturate)
        assert not np.array_equal(runs[1], runs[2])


@pytest.mark.parametrize("kind, mode, match", [
    ("lstm", "int16x8", r"mode 'int16x8' cannot convert the recurrent layer lstm \(LSTM\)"),
    ("bilstm", "int16x8", r"recurrent layer bilstm \(LSTM\)"),
])
def test_modes_that_would_kill_the_process_are_refused_first(kind, mode, match):
    model, (x, _), _ = model_kinds.trained(kind)
    with pytest.raises(errors.ConversionError, match=match) as info:
        tfcompress.convert(model, mode, representative_data=x[:20])
    assert "\n" not in str(info.value)


def _op_types(flatbuffer) -> dict:
    """{op type: sorted set of its output tensors' types} read back from the flatbuffer."""
    import tfcompress._compat.schema as schema
    model = schema.unpacked(flatbuffer)
    graph, found = model.subgraphs[0], {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = schema.op_name(max(code.builtinCode, code.deprecatedBuiltinCode))
        found.setdefault(name, set()).add(schema.type_name(graph.tensors[op.outputs[0]].type))
        if name == "FULLY_CONNECTED":
            found.setdefault("weights", set()).add(
                schema.type_name(graph.tensors[op.inputs[1]].type))
    return {k: sorted(v) for k, v in found.items()}


@pytest.mark.parametrize("kind, mode, weights, activations", [
    ("gru", "static_wi8_ai8", "int8", "int8"),
    ("simple_rnn", "static_wi4_ai16", "int4", "int16"),
])
def test_gru_and_simple_rnn_take_the_quantizers_static_modes_unrolled(kind, mode, weights,
                                                                      activations):
    """The converter's copy unrolls the GRU/SimpleRNN (its WHILE loop cannot be calibrated):
    every op runs on integers (no WHILE, no float SPLIT_V between QUANTIZE/DEQUANTIZE), and the
    flatbuffer agrees with Keras on the held-out split; the user's model is not unrolled."""
    model, (x, _), (x_test, y_test) = model_kinds.trained(kind)
    flatbuffer = tfcompress.convert(model, mode, representative_data=x[:100])
    types = _op_types(flatbuffer)
    assert "WHILE" not in types and "SPLIT_V" not in types and "DEQUANTIZE" not in types
    assert types.pop("weights") == [weights]
    assert types.pop("QUANTIZE", None) in (None, [activations])  # the float input, once
    assert all(found == [activations] for found in types.values()), types
    assert not model.layers[1].unroll and model.input_shape[0] is None
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    assert report.agreement >= 0.99, report.agreement


def test_a_masked_lstm_is_unrolled_for_int8():
    """An LSTM given a mask (Embedding(mask_zero=True)) is a WHILE loop, not the fused op, and
    the converter's int8 calibration crashed the process on it: it is unrolled like a GRU (no
    WHILE, every FULLY_CONNECTED on int8) and agrees with Keras on zero-padded held-out texts;
    with no fixed length, one line."""
    model, (x, _), (x_test, y_test) = model_kinds.trained("masked_lstm")
    assert (x_test == 0).any()
    assert "WHILE" in _ops(tfcompress.convert(model, "float32"))
    flatbuffer = tfcompress.convert(model, "int8", representative_data=x[:100])
    types = _op_types(flatbuffer)
    assert "WHILE" not in types and types["FULLY_CONNECTED"] == ["int8"]
    assert types["weights"] == ["int8"] and not model.layers[2].unroll
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    assert report.agreement >= 0.98, report.agreement
    inputs = keras.Input((None,), dtype="int32")
    varying = keras.Model(inputs, keras.layers.LSTM(4, name="lstm")(
        keras.layers.Embedding(50, 4, mask_zero=True)(inputs)))
    with pytest.raises(errors.ConversionError,
                       match=r"recurrent layer lstm \(LSTM\): .*cannot be unrolled") as info:
        tfcompress.convert(varying, "int8", representative_data=x[:10])
    assert "\n" not in str(info.value)


def test_a_masked_average_of_token_embeddings_takes_int8():
    """Embedding(mask_zero=True) -> GlobalAveragePooling1D divides by the count of real tokens:
    the file's run check used to feed token id 0 everywhere (padding only), a division by zero
    the int8 DIV refuses, and the good file was rejected. It now converts and agrees with Keras
    on padded held-out texts."""
    x, y = model_kinds._tokens(400, seed=0)
    x[np.arange(x.shape[1])[None, :] >= np.random.default_rng(0).integers(
        4, x.shape[1], len(x))[:, None]] = 0
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(
            model_kinds.VOCAB, 8, mask_zero=True)(inputs))))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:300], y[:300], epochs=10, verbose=0)
    flatbuffer = tfcompress.convert(model, "int8", representative_data=x[:100])
    assert "DIV" in _ops(flatbuffer)
    report = tfcompress.validate(flatbuffer, x[300:], y[300:], reference=model, **QUICK)
    assert report.agreement >= 0.97, report.agreement
    with pytest.raises(errors.ConversionError, match=r"hint: int16x8 .* convert with int8") as info:
        tfcompress.convert(model, "int16x8", representative_data=x[:20])  # the ids meet NOT_EQUAL
    assert "\n" not in str(info.value)


def test_untrained_bidirectional_gru_with_unused_split_outputs_calibrates():
    """GRUs with zero biases (untrained), both directions unrolled: the converter folds each
    first step's zero-state product away and leaves a SPLIT output read by no op (XNNPACK
    leaves it unwritten: the quantizer stopped on 'Tensor data is null'); those splits become
    SLICEs, and static_wi8_ai8 agrees with Keras on inputs it was not calibrated on."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5, 4))
    outputs = keras.layers.Dense(4, activation="softmax")(
        keras.layers.Bidirectional(keras.layers.GRU(8))(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x, x_test = (rng.normal(0, 1, (n, 5, 4)).astype(np.float32) for n in (50, 200))
    flatbuffer = tfcompress.convert(model, "static_wi8_ai8", representative_data=x)
    assert _op_types(flatbuffer)["SLICE"] == ["int8"]
    y_keras = model.predict(x_test, verbose=0)
    y_tflite = validation.predict(flatbuffer, x_test)
    assert np.mean(y_tflite.argmax(-1) == y_keras.argmax(-1)) >= 0.9
    assert np.mean(np.abs(y_tflite - y_keras)) < 0.02


@pytest.mark.parametrize("keras_version", [2, 3])
def test_mixed_activations_take_an_untrained_gru_model_directly_and_through_convert(
        keras_version):
    """``mixed_activations(model, ...)`` on a GRU model, tf_keras or Keras 3 (it used to be
    refused: only ``convert(model, "mixed_a16w8")`` unrolled it) and ``convert`` itself on an
    untrained GRU, whose unused SPLIT output the quantizer could not calibrate ('Tensor data is
    null'): both quantize the unrolled copy (no WHILE), the int16 ops chosen are read back as
    int16 from the flatbuffer, every other op runs on int8, and the file agrees with Keras on
    inputs it was neither calibrated nor judged on."""
    from tfcompress.export.mixed_activations import activation_types, mixed_activations
    k = keras if keras_version == 2 else pytest.importorskip("keras")
    k.utils.set_random_seed(3)
    inputs = k.Input((3, 4))
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(k.layers.GRU(6)(inputs)))
    rng = np.random.default_rng(0)
    x, x_val, x_test = (rng.normal(0, 1, (n, 3, 4)).astype(np.float32) for n in (50, 50, 200))
    result = mixed_activations(model, x_val, representative_data=x, max_ops=2)
    flatbuffers = [result.flatbuffer]
    if keras_version == 2:  # convert rebuilds a Keras 3 model before the same path
        flatbuffers.append(tfcompress.convert(model, "mixed_a16w8", representative_data=x,
                                              validation_data=(x_val, None),
                                              options={"max_ops": 2}))
    for flatbuffer in flatbuffers:
        assert "WHILE" not in _op_types(flatbuffer)
        read_back = {a["scope"]: a["type"] for a in activation_types(flatbuffer)}
        assert sorted(s for s, t in read_back.items() if t == "int16") == sorted(
            op["scope"] for op in result.int16_ops)
        assert set(read_back.values()) <= {"int8", "int16"}
        agree = np.mean(validation.predict(flatbuffer, x_test).argmax(-1)
                        == model.predict(x_test, verbose=0).argmax(-1))
        assert agree >= 0.95, agree
    assert len(result.int16_ops) <= 2
    assert result.measured["mixed"]["mse"] <= result.measured["int8"]["mse"]


@pytest.mark.parametrize("mode", ["static_wi8_ai8", "int8"])
def test_recurrent_layer_without_a_fixed_length_is_refused_in_static_modes(mode):
    """No fixed number of time steps: nothing to unroll, so one line naming the layer and the
    modes that convert it (the weight-only ones, not the static ones)."""
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.SimpleRNN(4, name="rnn")(
        inputs)))
    with pytest.raises(errors.ConversionError, match=rf"mode '{mode}' cannot convert the "
                       r"recurrent layer rnn \(SimpleRNN\): .*cannot be unrolled") as info:
        tfcompress.convert(model, mode, representative_data=np.zeros((4, 6, 4)))
    assert "\n" not in str(info.value)
    accepted = str(info.value).split("accepted for this model: ")[1].split(", ")
    assert "dynamic_wi8" in accepted and "weight_only_wi4" in accepted
    assert not any(m.startswith("static_") or m in ("int8", "int16x8", "mixed_a16w8")
                   for m in accepted)


def test_fused_lstm_takes_static_wi8_ai8():
    lstm, (x, _), (x_test, y_test) = model_kinds.trained("lstm")
    flatbuffer = tfcompress.convert(lstm, "static_wi8_ai8", representative_data=x[:100])
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in _ops(flatbuffer)
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=lstm, **QUICK)
    assert report.agreement >= 0.9, report.agreement


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_regression_reports_mse_and_r2_never_accuracy(mode):
    model, (x, _), (x_test, y_test) = model_kinds.trained("regression")
    flatbuffer = tfcompress.convert(model, mode, representative_data=x[:200])
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    found = report.to_dict()
    assert found["task"] == "regression"
    assert "accuracy" not in found and "agreement" not in found
    keras_r2 = 1 - np.mean((model.predict(x_test, verbose=0) - y_test) ** 2) / np.var(y_test)
    assert found["reference_r2"] == pytest.approx(keras_r2, abs=1e-4)
    assert found["r2"] == pytest.approx(found["reference_r2"] - found["r2_drop"])
    assert found["r2_drop"] < (1e-4 if mode == "float32" else 0.05)
    assert found["mse"] > 0 and found["mae"] > 0 and found["max_abs_diff"] >= 0


def test_a_regression_with_two_targets_and_no_labels_is_judged_as_regression_when_said():
    """Without labels, two linear outputs read as classification logits (agreement decides
    recovery's check and mixed's widths); task="regression" makes both judge the outputs by
    their error and R^2, never agreement. An unknown task is one line."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 10)).astype(np.float32)
    y = (np.sin(x[:, :2]) * 2).astype(np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(32, activation="relu")(
        inputs)))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x[:300], y[:300], epochs=10, verbose=0)
    for task, judged in ((None, "classification"), ("regression", "regression")):
        fb = tfcompress.convert(model, "dynamic_wi4", representative_data=x[:300],
                                recovery=True, task=task)
        check = conversion.conversion_info(fb)["facts"]["recovery_check"]
        assert check["task"] == judged
        assert all(("agreement" in row) == (judged != "regression")
                   for row in check["validation"].values())
    fb = tfcompress.convert(model, "mixed", representative_data=x[:300], task="regression",
                            options={"size_budget": 0.8})
    choice = conversion.conversion_info(fb)["facts"]["mixed"]
    assert choice["task"] == "regression"
    with pytest.raises(errors.ConfigError, match="unknown task 'regresion'"):
        tfcompress.convert(model, "float32", task="regresion")


def test_two_outputs_are_reported_per_output():
    model, (x, _), (x_test, y_test) = model_kinds.trained("two_output")
    flatbuffer = tfcompress.convert(model, "int8", representative_data=x[:200])
    report = tfcompress.validate(flatbuffer, x_test, {"value": y_test[1], "class": y_test[0]},
                                 reference=model, **QUICK).to_dict()
    assert report["task"] == "multi-output" and "accuracy" not in report
    by_name = {o["name"]: o for o in report["outputs"]}
    assert by_name["class"]["task"] == "classification"
    assert by_name["class"]["agreement"] >= 0.97
    assert by_name["value"]["task"] == "regression" and "agreement" not in by_name["value"]
    keras_value = model.predict(x_test, verbose=0)[1]
    assert by_name["value"]["reference_r2"] == pytest.approx(
        1 - np.mean((keras_value - y_test[1]) ** 2) / np.var(y_test[1]), abs=1e-4)


def test_two_output_recovery_is_judged_per_output():
    """convert(..., recovery=True) on a class head and a value head: each output judged by its
    task (agreement, R^2 against the float model), the kept flatbuffer the closer on average."""
    model, (x, _), (x_test, y_test) = model_kinds.trained("two_output")
    flatbuffer = tfcompress.convert(model, "int8", representative_data=x[:64], recovery=True,
                                    validation_data=(x_test[:60], [v[:60] for v in y_test]))
    check = conversion.conversion_info(flatbuffer)["facts"]["recovery_check"]
    assert check["task"] == "multi-output"
    scores = check["validation"]
    kept = scores[check["kept"]]
    other = scores["min_max" if check["kept"] == "recovered" else "recovered"]
    assert kept["closeness"] >= other["closeness"]
    outputs = kept["outputs"]
    assert (outputs["class"]["task"], outputs["value"]["task"]) == ("classification",
                                                                     "regression")
    assert kept["closeness"] == pytest.approx(
        (outputs["class"]["closeness"] + outputs["value"]["closeness"]) / 2)
    report = tfcompress.validate(flatbuffer, x_test[:60], reference=model, **QUICK).to_dict()
    by_name = {o["name"]: o for o in report["outputs"]}
    assert outputs["class"]["closeness"] == pytest.approx(by_name["class"]["agreement"])
    assert outputs["class"]["closeness"] >= 0.97 and outputs["value"]["closeness"] >= 0.8


def test_two_output_mixed_precision_and_distillation_refuse_in_one_line():
    model, (x, y), (x_test, y_test) = model_kinds.trained("two_output")
    with pytest.raises(errors.ModelError) as mixed:
        tfcompress.mixed_precision(model, x_test[:60], [v[:60] for v in y_test], size_budget=0.9)
    assert "judges one output and the model has 2" in str(mixed.value)
    student = model_kinds.KINDS["two_output"](seed=1)[0]
    with pytest.raises(errors.ModelError) as distill:
        tfcompress.Distiller(student, model)
    assert "has 2 outputs (class, value); accepted: a model with one output" in str(
        distill.value)
    assert "\n" not in str(mixed.value) + str(distill.value)


def test_a_model_with_a_3d_output_validates_per_position():
    """Sequence tagging: (N, T, C) softmax per position, one label per position."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 3))
    outputs = keras.layers.Conv1D(4, 3, padding="same", activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(30, 10, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 4, (30, 10))
    flatbuffer = tfcompress.convert(model, "float32")
    report = tfcompress.validate(flatbuffer, x, y, reference=model, **QUICK)
    keras_out = model.predict(x, verbose=0)
    assert report.task == "classification"
    assert report.accuracy == pytest.approx(float(np.mean(keras_out.argmax(-1) == y)))
    assert report.agreement == 1.0
    with pytest.raises(errors.DataError, match=r"has shape \(10, 4\) per sample but its") as info:
        tfcompress.validate(flatbuffer, x, y[:, :5], **QUICK)
    assert "\n" not in str(info.value)


def test_a_model_with_dynamic_height_and_width_validates_at_the_callers_shape():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.Conv2D(4, 3)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    x = np.random.default_rng(0).random((12, 9, 7, 1)).astype(np.float32)
    flatbuffer = tfcompress.convert(model, "float32")
    report = tfcompress.validate(flatbuffer, x, reference=model, latency_runs=2)
    assert report.agreement == 1.0 and report.max_abs_diff < 1e-5
    assert report.latency_ms > 0 and report.xnnpack["nodes"] > 0


def test_a_converter_failure_is_one_line_with_a_hint():
    inputs = keras.Input((3, 3))
    outputs = keras.layers.Lambda(lambda t: tf.linalg.inv(t))(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(errors.ConversionError, match=r"converter failed: .*MatrixInverse.*hint:"
                       ) as info:
        tfcompress.convert(model, "float32")
    assert "\n" not in str(info.value) and len(str(info.value)) < 700


@pytest.mark.parametrize("kind", ["regression", "text"])
def test_mixed_precision_follows_the_task(kind):
    """Regression: widths judged in R^2 points, no accuracy or agreement; token ids: int32."""
    model, _, (x_test, y_test) = model_kinds.trained(kind)
    result = tfcompress.mixed_precision(model, x_test, y_test, size_budget=0.95,
                                        widths=(4, 8, 32))
    found = result.to_dict()
    out = validation.predict(result.flatbuffer, x_test)
    if kind == "regression":
        assert found["task"] == "regression" and "accuracy" not in found
        assert "agreement" not in found
        r2 = 1 - np.mean((out - y_test) ** 2) / np.var(y_test)
        assert found["r2"] == pytest.approx(r2, abs=1e-6)
        assert found["drop_points"] == pytest.approx(100 * (found["float_r2"] - r2), abs=1e-4)
    else:
        assert found["task"] == "classification"
        assert found["accuracy"] == pytest.approx(float(np.mean(out.argmax(-1) == y_test)))


def test_static_int8_activations_on_a_regression_model_report_the_r2_drop():
    """The LiteRT Quantizer's static_wi8_ai8 on a regression model: its R^2 drop, measured, is
    what the report shows (never an agreement of 1.0)."""
    model, (x, _), (x_test, y_test) = model_kinds.trained("regression")
    flatbuffer = tfcompress.convert(model, "static_wi8_ai8", representative_data=x[:100])
    found = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK).to_dict()
    out = validation.predict(flatbuffer, x_test)
    r2 = 1 - np.mean((out - y_test) ** 2) / np.var(y_test)
    assert "agreement" not in found and found["r2"] == pytest.approx(r2, abs=1e-6)
    assert found["r2_drop"] == pytest.approx(found["reference_r2"] - r2, abs=1e-6)


@pytest.mark.parametrize("kind", ["text", "regression"])
def test_recovery_keeps_token_ids_and_judges_by_the_task(kind):
    model, (x, _), (x_test, y_test) = model_kinds.trained(kind)
    flatbuffer = tfcompress.convert(model, "int8", representative_data=x[:100], recovery=True,
                                    validation_data=(x_test, y_test))
    check = conversion.conversion_info(flatbuffer)["facts"]["recovery_check"]
    expected = "regression" if kind == "regression" else "classification"
    assert check["task"] == expected
    assert all(("agreement" in s) == (expected != "regression")
               for s in check["validation"].values())
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, **QUICK)
    if kind == "text":
        assert report.agreement >= 0.99
    else:
        assert report.r2_drop < 0.05


def test_calibration_data_keeps_the_inputs_dtype_and_is_checked_after_the_cast():
    from tfcompress import data

    ids = np.arange(24, dtype=np.int64).reshape(2, 12)
    samples = [s[0] for s in data.representative_dataset(ids, dtype=np.int32)()]
    assert [s.dtype.name for s in samples] == ["int32", "int32"] and samples[1][0, -1] == 23
    floats = np.ones((2, 4), np.float64)
    assert next(data.representative_dataset(floats)())[0].dtype == np.float32
    floats[1, 2] = 1e300  # finite in float64, Inf in the float32 the converter gets
    with pytest.raises(errors.DataError, match="holds 0 NaN and 1 Inf"):
        data.representative_dataset(floats)
    with pytest.raises(errors.DataError, match=r"1 values \(e.g. 2.5\) do not fit"):
        data.representative_dataset(np.array([[1.0, 2.5]]), dtype=np.int32)


def test_a_recurrent_savedmodel_with_a_dynamic_batch_is_one_line_naming_the_cause(tmp_path):
    """A SavedModel cannot be rebuilt at batch 1: the converter's first error, with the hint."""
    model, _, _ = model_kinds.lstm()
    tf.saved_model.save(model, str(tmp_path))
    with pytest.raises(errors.ConversionError, match=(
            r"converter failed: 'tf.TensorListReserve' op requires element_shape to be static"
            r".*\(hint: a recurrent layer with a dynamic batch")) as info:
        tfcompress.convert(str(tmp_path), "float32")
    assert "\n" not in str(info.value) and "loc(" not in str(info.value)
