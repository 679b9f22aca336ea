"""Low-bit modes, overrides, sensitivity and mixed precision (tfcompress.export.lowbit / .mixed)."""

import json

import numpy as np
import pytest

import tfcompress
from tfcompress import errors
from tfcompress.export import lowbit
from tfcompress.export import mixed
from tfcompress.export.conversion import (available_modes, conversion_info, convert, mode_options,
                                   options_from_section)
from tfcompress.export.validation import interpreter, predict

EXPECTED_MODES = {
    "dynamic_wi8", "dynamic_wi4", "dynamic_wi2", "dynamic_wi4_block32", "dynamic_wi4_block64",
    "dynamic_wi4_block128", "weight_only_wi8", "weight_only_wi4", "static_wi8_ai8",
    "static_wi8_ai16", "static_wi4_ai8", "static_wi4_ai16"}


@pytest.fixture(scope="module")
def f32(trained_cnn):
    return convert(trained_cnn, "float32")


@pytest.fixture(scope="module")
def float_accuracy(f32, digits):
    _, (xt, yt) = digits
    return tfcompress.validate(f32, xt, yt, latency_runs=0, delegate_checks=False).accuracy


def _report(fb, digits, f32, **kw):
    _, (xt, yt) = digits
    return tfcompress.validate(fb, xt, yt, reference=kw.pop("reference", None), latency_runs=0,
                               baseline=f32, **kw)


def test_modes_come_from_the_table_and_are_registered():
    assert set(lowbit.MODES) == EXPECTED_MODES
    assert all(m in available_modes() for m in EXPECTED_MODES) and "mixed" in available_modes()
    assert mode_options("dynamic_wi4") == ("overrides", "algorithm")
    assert mode_options("mixed") == ("size_budget", "widths", "max_layers")
    spec = lowbit.MODES["static_wi4_ai16"]
    assert (spec.execution, spec.bits, spec.block, spec.activation_bits) == ("static", 4, 0, 16)


@pytest.mark.parametrize("mode", ["dynamic_wi4", "weight_only_wi4"])
def test_int4_is_small_and_accurate(trained_cnn, digits, f32, float_accuracy, mode):
    fb = convert(trained_cnn, mode)
    report = _report(fb, digits, f32, reference=trained_cnn)
    assert report.ratio <= 0.14
    assert report.accuracy >= float_accuracy - 0.01 and report.agreement >= 0.98
    assert lowbit.layer_bits(fb) == {"conv1": 4, "conv2": 4, "dense": 4, "logits": 4}
    # The interpreter shows int4 tensors as int8; conversion_info reads the real type.
    assert conversion_info(fb, mode)["weight_dtypes"]["int4"] == 4
    assert report.xnnpack["nodes"] >= 7  # validate ran the delegate check on it
    dequantized = {layer.dequantized for layer in lowbit.weight_layers(fb)}
    assert dequantized == {mode == "weight_only_wi4"}


@pytest.mark.parametrize("mode", sorted(EXPECTED_MODES))
def test_every_mode_quantizes_what_it_says_and_runs(f32, digits, mode):
    (x, _), (xt, yt) = digits
    spec = lowbit.MODES[mode]
    fb = lowbit.quantize(f32, mode, representative_data=x, representative_samples=50)
    layers = {layer.name: layer for layer in lowbit.weight_layers(fb)}
    if spec.block:  # blockwise: fully connected only; the convolutions stay float32
        assert [layers[n].bits for n in ("conv1", "conv2")] == [32, 32]
        assert layers["dense"].bits == 4 and layers["dense"].block_size == spec.block
    else:
        assert {layer.bits for layer in layers.values()} == {spec.bits}
    report = _report(fb, digits, f32, delegate_checks=False)
    assert report.ratio < (0.08 if spec.bits == 2 else 0.27 if spec.block else 0.28)
    inp = interpreter(fb).get_input_details()[0]["dtype"]
    assert np.dtype(inp).name == {0: "float32", 8: "int8", 16: "int16"}[spec.activation_bits]
    if spec.bits == 2:  # int2 everywhere breaks it: measured, the report's figure is its own
        out = predict(fb, xt)
        assert np.all(np.isfinite(out)) and report.accuracy == float(np.mean(out.argmax(-1) == yt))
    else:
        assert report.accuracy > 0.93


def test_overrides_by_op_type_and_regex(f32, digits, trained_cnn):
    fb = lowbit.quantize(f32, "dynamic_wi4", overrides={"FULLY_CONNECTED": 8, "conv1": 16})
    assert lowbit.layer_bits(fb) == {"conv1": 16, "conv2": 4, "dense": 8, "logits": 8}
    conv1 = next(l for l in lowbit.weight_layers(fb) if l.name == "conv1")
    assert conv1.dtype == "float16" and conv1.dequantized
    # A regex wins over an op type, whatever the order given; the three forms agree.
    forms = [{"dense": 2, "FULLY_CONNECTED": 8}, [("FULLY_CONNECTED", 8), ("dense", 2)],
             ("FULLY_CONNECTED=8", "dense=2")]
    made = [lowbit.quantize(f32, "dynamic_wi4", overrides=o) for o in forms]
    assert lowbit.layer_bits(made[0]) == {"conv1": 4, "conv2": 4, "dense": 2, "logits": 8}
    assert made[0] == made[1] == made[2]
    # 32 keeps a layer float; convert passes overrides through options.
    fb = convert(trained_cnn, "dynamic_wi8", options={"overrides": {"conv.*": 32}})
    assert lowbit.layer_bits(fb) == {"conv1": 32, "conv2": 32, "dense": 8, "logits": 8}
    assert _report(fb, digits, f32, reference=trained_cnn).agreement >= 0.99


def test_override_reaches_a_last_layer_named_after_the_output():
    # The last op's output is named after the signature ("StatefulPartitionedCall:0"), which is
    # all the quantizer's regexes see; a Keras layer name still selects it.
    from tfcompress import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(10, name="out")])
    f32 = convert(model, "float32")
    out = next(l for l in lowbit.weight_layers(f32) if l.name == "out")
    assert "out/" not in out.scope and out.regex.startswith("^")
    fb = lowbit.quantize(f32, "dynamic_wi4", overrides={"out": 8})
    assert lowbit.layer_bits(fb) == {"conv": 4, "out": 8}


def test_recipe_json_replays_the_same_bytes(f32, tmp_path, digits):
    (x, _), _ = digits
    for mode, data in (("dynamic_wi4", None), ("static_wi8_ai8", x)):
        fb = lowbit.quantize(f32, mode, overrides={"logits": 8}, representative_data=data,
                             representative_samples=40)
        path = lowbit.save_recipe(lowbit.recipe_of(fb), str(tmp_path / f"{mode}.json"))
        assert json.load(open(path))[-1]["regex"] == "logits"
        assert lowbit.quantize(f32, path, representative_data=data,
                               representative_samples=40) == fb


def test_the_quantizer_prints_nothing(f32, digits, capsys):
    (x, _), _ = digits
    lowbit.quantize(f32, "dynamic_wi4")
    lowbit.quantize(f32, "static_wi8_ai8", representative_data=x[:20])
    out = capsys.readouterr()
    assert out.out == "" and "Quantiz" not in out.err and "Calibration" not in out.err


def test_sensitivity_measures_each_layer_alone(f32, digits):
    _, (xt, yt) = digits
    s = mixed.sensitivity(f32, xt[:200], yt[:200], widths=(2, 4, 8, 16))
    rows = {row["name"]: row for row in s["layers"]}
    assert list(rows) == ["conv1", "conv2", "dense", "logits"]
    dense = rows["dense"]
    assert dense["float_bytes"] == dense["elements"] * 4 == 128 * 1024 * 4
    w = dense["widths"]
    # The layer's bytes follow its width (plus one scale per channel).
    assert [round(w[b]["weight_bytes"] / dense["float_bytes"], 2) for b in (16, 8, 4, 2)] == [
        0.5, 0.25, 0.13, 0.07]
    assert w[2]["mse"] > w[4]["mse"] > w[8]["mse"] > w[16]["mse"] > 0 == w[32]["mse"]
    assert all(row["widths"][8]["agreement"] >= 0.99 for row in rows.values())
    assert all(row["widths"][b]["algorithm"] in ("min_max", "octav") for row in rows.values()
               for b in (4, 8))
    # conv1 (9 weights per filter) at int2 gives non-finite outputs on LiteRT: flagged.
    assert rows["conv1"]["widths"][2] == {
        **rows["conv1"]["widths"][2], "supported": False, "reason": "the outputs are not finite"}
    assert rows["conv2"]["widths"][2]["drop_points"] > 20  # conv2 at int2 alone breaks it


def test_mixed_precision_meets_the_budget(f32, digits, tmp_path, float_accuracy):
    (x, y), (xt, yt) = digits
    result = mixed.mixed_precision(f32, x[:300], y[:300], size_budget=0.10)
    assert result.budget_bytes == int(0.10 * len(f32))
    assert result.meets_budget and result.bytes <= result.budget_bytes
    bits = {layer["name"]: layer["bits"] for layer in result.layers}
    assert bits == {layer["name"]: layer["bits_read_back"] for layer in result.layers}
    assert bits == lowbit.layer_bits(result.flatbuffer) and bits["dense"] == 2
    report = _report(result.flatbuffer, digits, f32)
    assert report.ratio <= 0.10 and report.accuracy >= float_accuracy - 0.015
    # Plain int2 is smaller still but breaks the model.
    int2 = _report(lowbit.quantize(f32, "dynamic_wi2"), digits, f32, delegate_checks=False)
    assert int2.ratio < 0.08 and int2.accuracy < 0.5
    paths = result.save(str(tmp_path))
    assert lowbit.quantize(f32, paths["recipe.json"]) == result.flatbuffer
    saved = json.load(open(paths["mixed_precision.json"]))
    assert saved["bytes"] == result.bytes and saved["ratio"] <= 0.10
    # Saved sensitivities are reused; a budget the float model meets keeps it float.
    saved_sensitivity = json.loads(json.dumps(result.sensitivity))
    again = mixed.mixed_precision(f32, x[:300], y[:300], size_budget=0.10,
                                   sensitivities=saved_sensitivity)
    assert again.flatbuffer == result.flatbuffer
    assert mixed.mixed_precision(f32, x[:100], size_budget=1.0,
                                  sensitivities=saved_sensitivity).bytes == len(f32)


def test_mixed_mode_in_convert_and_max_drop(trained_cnn, digits, f32):
    (x, _), _ = digits
    fb = convert(trained_cnn, "mixed", representative_data=x, representative_samples=100,
                 options={"size_budget": 0.12})
    assert len(fb) <= 0.12 * len(f32)
    described = lowbit.describe(fb)
    assert described["mixed"]["meets_budget"] and described["recipe"] == lowbit.recipe_of(fb)
    assert [l["bits"] for l in described["layers"]] == list(lowbit.layer_bits(fb).values())
    # max_drop rules out widths that alone lose more; then 0.08x cannot be reached.
    with pytest.raises(errors.ConversionError, match=r"cannot be met .* max_drop=1.0.*accepted"):
        mixed.mixed_precision(f32, x[:100], size_budget=0.08, max_drop=1.0)


def test_bad_requests_are_clear(f32, trained_cnn, digits):
    (x, _), _ = digits
    with pytest.raises(errors.ConversionError,
                       match="low-bit mode or recipe file 'dynamic_wi3'; accepted: dynamic_wi8"):
        lowbit.quantize(f32, "dynamic_wi3")
    with pytest.raises(errors.ConversionError, match="'nope' selects no layer .* conv1, conv2"):
        lowbit.quantize(f32, "dynamic_wi4", overrides={"nope": 8})
    with pytest.raises(errors.ConversionError, match="width 3; accepted: 2, 4, 8, 16, 32"):
        lowbit.quantize(f32, "dynamic_wi4", overrides={"dense": 3})
    with pytest.raises(errors.ConversionError, match="regex '\\[' is not a valid"):
        lowbit.quantize(f32, "dynamic_wi4", overrides=["[=8"])
    with pytest.raises(errors.ConversionError,
                       match="op type with weights 'EMBEDDING_LOOKUP'; accepted: CONV_2D, FULLY"):
        lowbit.quantize(f32, "dynamic_wi4", overrides={"EMBEDDING_LOOKUP": 8})
    with pytest.raises(errors.ConversionError,
                       match=r"'dense'=2: layer 'dense' \(FULLY_CONNECTED\) cannot take 2-bit.*"
                             r"accepted for FULLY_CONNECTED: 4, 8, 16, 32"):
        lowbit.quantize(f32, "static_wi8_ai8", overrides={"dense": 2}, representative_data=x)
    with pytest.raises(errors.ConversionError, match="needs representative_data"):
        lowbit.quantize(f32, "static_wi8_ai8")
    with pytest.raises(errors.ConversionError, match="needs representative_data"):
        convert(trained_cnn, "static_wi8_ai16")
    with pytest.raises(errors.ConversionError, match="'conv1' already holds int4 weights"):
        lowbit.quantize(lowbit.quantize(f32, "dynamic_wi4"), "dynamic_wi8")
    with pytest.raises(errors.ConversionError,
                       match="option for mode 'dynamic_wi4' 'budget'; accepted: overrides"):
        convert(trained_cnn, "dynamic_wi4", options={"budget": 1})
    with pytest.raises(errors.ConversionError,
                       match=r"option for mode 'int8' 'overrides'; accepted: activation_ranges"):
        convert(trained_cnn, "int8", options={"overrides": {"dense": 8}})
    with pytest.raises(errors.ConversionError, match="mode 'mixed' needs options"):
        convert(trained_cnn, "mixed", representative_data=x[:20])
    with pytest.raises(errors.ConversionError, match=r"size_budget=-1; accepted: a ratio"):
        mixed.mixed_precision(f32, x[:20], size_budget=-1)
    with pytest.raises(errors.ConversionError, match=r"smallest choice is \d+ bytes \(0\.07\dx\)"):
        mixed.mixed_precision(f32, x[:50], size_budget=0.02)
    with pytest.raises(errors.ConversionError, match="unknown width 3; accepted: 2, 4, 8, 16, 32"):
        mixed.sensitivity(f32, x[:20], widths=(3,))
    with pytest.raises(errors.DataError, match=r"sample shape \(9, 9, 1\)"):
        mixed.sensitivity(f32, np.zeros((4, 9, 9, 1), np.float32))


def test_recipes_and_search_accept_lowbit_modes():
    from tfcompress.pipeline.recipe import check_config
    from tfcompress.pipeline.search import check_config as check_search
    from tfcompress.pipeline.search_space import trial_recipe

    config = check_config({"convert": {"modes": ("dynamic_wi4", "mixed"), "size_budget": 0.1,
                                       "overrides": ("FULLY_CONNECTED=8",)}})
    assert options_from_section("dynamic_wi4", config.convert) == {
        "overrides": ("FULLY_CONNECTED=8",)}
    assert options_from_section("mixed", config.convert)["size_budget"] == 0.1
    assert options_from_section("int8", config.convert) is None
    with pytest.raises(errors.ConfigError, match="mode 'mixed' needs convert.size_budget > 0"):
        check_config({"convert": {"modes": ("mixed",)}})
    with pytest.raises(errors.ConfigError, match="mode 'dynamic_wi4'.*width 5"):
        check_config({"convert": {"modes": ("dynamic_wi4",), "overrides": ("dense=5",)}})
    search = check_search({"space": {"mode": ("dynamic_wi4", "int8")}})
    trial = trial_recipe(search, {"mode": "dynamic_wi4"}, "/tmp/model.keras")
    assert tuple(trial.convert.modes) == ("dynamic_wi4",)


def test_supported_widths_follow_the_quantizer_policy():
    # float16 (the quantizer's float casting) exists per layer for every weight op here.
    assert lowbit.supported_widths("DEPTHWISE_CONV_2D") == (8, 16, 32)  # no int4/int2
    assert lowbit.supported_widths("CONV_2D") == (2, 4, 8, 16, 32)
    assert lowbit.supported_widths("FULLY_CONNECTED", block=32) == (4, 16, 32)  # no int2 blocks
    assert lowbit.supported_widths("FULLY_CONNECTED", execution="weight_only") == (4, 8, 16, 32)
    assert lowbit.supported_widths("CONV_2D", execution="static", activation_bits=16) == (
        4, 8, 16, 32)


def test_recipe_data_resize_feeds_mobilenet():
    # configs/mobilenetv2_lowbit.py trains MobileNetV2 on the digits as 32x32 RGB.
    from tfcompress.pipeline.recipe import check_config, load_data

    splits = load_data(check_config({"data": {"resize": True, "limit": 20}}))
    (x, y), (xv, _), (xt, _) = splits.train, splits.validation, splits.test
    assert x.shape[1:] == xv.shape[1:] == xt.shape[1:] == (32, 32, 3)
    assert len(xt) == 20 and len(x) + len(xv) == 20 and len(y) == len(x)
    assert np.array_equal(x[..., 0], x[..., 2]) and 0.0 <= x.min() and x.max() <= 1.0 + 1e-6


def test_float32_conversion_is_reused_until_the_weights_change(monkeypatch):
    from tfcompress import keras
    from tfcompress.export.conversion import Request

    calls = []
    made = Request.converter
    monkeypatch.setattr(Request, "converter", lambda self: calls.append(1) or made(self))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    first = convert(model, "float32")
    assert convert(model, "float32") == first and len(calls) == 1  # low-bit modes reuse it
    convert(model, "dynamic_wi8")
    assert len(calls) == 1
    model.get_layer("d").kernel.assign(model.get_layer("d").kernel * 2.0)
    assert convert(model, "float32") != first and len(calls) == 2
