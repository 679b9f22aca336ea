"""int16 activations only where they pay (tfcompress.export.mixed_activations, mode mixed_a16w8):
the activation types read back from the flatbuffer, agreement on held-out inputs, option errors."""

import numpy as np
import pytest

from tfcompress import errors, keras
import tfcompress.export.mixed_activations as ma
from tfcompress.export.conversion import conversion_info, convert
from tfcompress.export.validation import predict


def _outlier_model() -> keras.Model:
    """One channel of ``wide`` spans ~300x the others' range (and ``mid`` ignores it): at int8
    its output tensor keeps ~1 level for the channels that decide; int16 keeps them."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", name="wide")(inp)
    h = keras.layers.Dense(16, activation="relu", name="mid")(h)
    out = keras.layers.Dense(10, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    w, b = model.get_layer("wide").get_weights()
    w[:, 0] *= 300.0
    model.get_layer("wide").set_weights([w, b])
    w, b = model.get_layer("mid").get_weights()
    w[0, :] = 0.0
    model.get_layer("mid").set_weights([w, b])
    w, b = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([w * 3.0, b])  # clearer decisions
    return model


@pytest.fixture(scope="module")
def case():
    model = _outlier_model()
    x = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    return model, x[:200], x[200:400], x[400:]  # calibration, validation, held-out


@pytest.fixture(scope="module")
def result(case):
    model, calibration, validation, _ = case
    return ma.mixed_activations(model, validation, representative_data=calibration)


def _agreement(flatbuffer, model, x) -> float:
    return float(np.mean(predict(flatbuffer, x).argmax(-1) == model.predict(x, verbose=0)
                         .argmax(-1)))


def test_int16_exactly_on_the_chosen_ops_and_int8_elsewhere(result):
    chosen = {op["scope"] for op in result.int16_ops}
    assert chosen, result.to_dict()["measured"]
    types = {row["scope"]: row["type"] for row in ma.activation_types(result.flatbuffer)}
    assert {s for s, t in types.items() if t == "int16"} == chosen
    assert {t for s, t in types.items() if s not in chosen} == {"int8"}
    assert {op["name"] for op in result.int16_ops} <= {"wide", "mid", "head"}
    assert result.meets_goal and len(chosen) < result.ops_total


def test_the_mixed_file_agrees_at_least_as_well_as_int8_on_held_out_inputs(case, result):
    model, calibration, _, held_out = case
    int8 = convert(model, "static_wi8_ai8", representative_data=calibration)
    mixed, plain = _agreement(result.flatbuffer, model, held_out), _agreement(int8, model, held_out)
    assert mixed >= plain and mixed > 0.9, (mixed, plain)


def test_the_mode_lists_its_int16_ops_in_the_facts_and_keeps_max_ops(case):
    model, calibration, validation, _ = case
    fb = convert(model, "mixed_a16w8", representative_data=calibration,
                 validation_data=(validation, None), options={"max_ops": 1})
    facts = conversion_info(fb)["facts"]
    assert facts["mode"] == "mixed_a16w8"
    listed = facts["mixed_activations"]["int16_ops"]
    read_back = [f"{r['name']}:{r['op']}" for r in ma.activation_types(fb) if r["type"] == "int16"]
    assert listed == read_back and len(read_back) <= 1


@pytest.mark.parametrize("options, match", [
    ({"target": 1.5}, r"target=1\.5; accepted: .* in \(0, 1\]"),
    ({"tolerance": -0.1}, r"tolerance=-0\.1; accepted: a number in \[0, 1\)"),
    ({"max_ops": 0}, r"max_ops=0; accepted: a whole number >= 1"),
    ({"algorithm": "nope"}, r"unknown quantizer algorithm 'nope'; accepted: min_max"),
    ({"ranges": "ema"}, r"unknown activation ranges 'ema'; accepted: min_max, moving_average"),
    ({"budget": 3}, r"option for mode 'mixed_a16w8' 'budget'; accepted: target, tolerance"),
])
def test_bad_options_are_one_line_errors(case, options, match):
    model, calibration, _, _ = case
    with pytest.raises(errors.ConversionError, match=match) as e:
        convert(model, "mixed_a16w8", representative_data=calibration[:20], options=options)
    assert "\n" not in str(e.value)


def test_an_op_litert_cannot_run_in_int16_is_skipped_with_a_line(case, monkeypatch):
    """A LiteRT without an int16 kernel for ``mid``'s FULLY_CONNECTED (simulated: every file
    with ``mid`` in int16 is refused as LiteRT refuses it): ``mid`` stays int8, one line says so."""
    model, calibration, validation, _ = case
    measure = ma.mixed._metrics

    def refusing(flatbuffer, *args, **kwargs):
        if any(r["name"] == "mid" and r["type"] == "int16"
               for r in ma.activation_types(flatbuffer)):
            raise errors.InvalidTFLiteError("Node number 1 (FULLY_CONNECTED) failed to prepare")
        return measure(flatbuffer, *args, **kwargs)

    monkeypatch.setattr(ma.mixed, "_metrics", refusing)
    got = ma.mixed_activations(model, validation, representative_data=calibration)
    types = {r["name"]: r["type"] for r in ma.activation_types(got.flatbuffer)}
    assert types["mid"] == "int8" and "mid" not in {o["name"] for o in got.int16_ops}
    lines = [line for line in got.skipped if line.startswith("mid (FULLY_CONNECTED)")]
    assert len(lines) == 1 and "LiteRT cannot run it with int16 activations" in lines[0]
    assert "\n" not in lines[0]


def test_units_are_taken_by_gain_per_added_op_within_max_ops():
    rows = [{"indices": [0, 1, 2], "gain_mse": 3.0}, {"indices": [3], "gain_mse": 2.0},
            {"indices": [1, 2], "gain_mse": 2.5}, {"indices": [4], "gain_mse": -1.0}]
    chosen, order = frozenset(), []
    while (row := ma._next_unit(rows, chosen, None)) is not None:
        order.append(row["indices"])
        chosen |= frozenset(row["indices"])
    assert order == [[3], [1, 2], [0, 1, 2]] and 4 not in chosen  # no gain: never lifted
    assert ma._next_unit(rows, frozenset(), 1)["indices"] == [3]
    assert ma._next_unit(rows, frozenset({3}), 2) is None  # every unit left needs 2+ more ops


def test_a_two_output_model_is_judged_on_the_mean_closeness_of_its_outputs():
    """MTCNN-like: a class head and a value head. One calibration image with a bright band
    widens the int8 ranges; the choice lifts the ops whose int16 pays on the mean over outputs
    of agreement (class) and R^2 (value) against Keras, which the facts report and the
    flatbuffer's tensor types confirm."""
    import model_kinds

    model, (x, _), (x_val, y_val) = model_kinds.trained("two_output")
    calibration = x[:200].copy()
    calibration[7, 2:5, :, 0] = 30.0
    fb = convert(model, "mixed_a16w8", representative_data=calibration,
                 validation_data=(x_val[:100], [y[:100] for y in y_val]))
    facts = conversion_info(fb)["facts"]["mixed_activations"]
    read_back = [f"{r['name']}:{r['op']}" for r in ma.activation_types(fb) if r["type"] == "int16"]
    assert facts["figure"] == "closeness" and facts["int16_ops"] == read_back
    assert 0 < len(read_back) < facts["ops_total"]
    got = ma.predict_by_name(fb, x_val[:100])  # the outputs keep the Keras names
    probs, value = model.predict(x_val[:100], verbose=0)
    agreement = np.mean(got["class"].argmax(-1) == probs.argmax(-1))
    val = got["value"].reshape(value.shape)
    r2 = 1 - np.sum((val - value) ** 2) / np.sum((value - value.mean()) ** 2)
    measured = facts["measured"]
    assert measured["mixed"]["figure"] == pytest.approx((agreement + r2) / 2, abs=1e-6)
    assert measured["mixed"]["figure"] > measured["int8"]["figure"] + 0.005
    assert facts["meets_goal"]


def test_a_graph_with_many_units_measures_one_per_set_of_keras_layers(monkeypatch):
    """An unrolled GRU has several units per step; above ``MAX_UNITS`` they merge per set of
    Keras layers their ops belong to, so fewer files are measured, and the choice reads back."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(
        keras.layers.GRU(6, name="gru")(inputs)))
    rng = np.random.default_rng(0)
    x, xv = (rng.normal(0, 1, (n, 3, 4)).astype(np.float32) for n in (50, 50))
    merged = ma.mixed_activations(model, xv, representative_data=x)  # 52 units here
    monkeypatch.setattr(ma, "MAX_UNITS", 1000)
    per_tensor = ma.mixed_activations(model, xv, representative_data=x)
    layer_sets = [frozenset(op.split(":")[0] for op in row["ops"]) for row in merged.units]
    assert len(set(layer_sets)) == len(layer_sets) < len(per_tensor.units)
    assert max(len(row["ops"]) for row in merged.units) > max(
        len(row["ops"]) for row in per_tensor.units)
    types = {row["scope"]: row["type"] for row in ma.activation_types(merged.flatbuffer)}
    assert {types[op["scope"]] for op in merged.int16_ops} <= {"int16"}
    assert merged.measured["int16"] == per_tensor.measured["int16"]  # the same ops, all int16


def test_no_unit_is_measured_where_int8_already_reaches_the_goal(case, result):
    model, calibration, validation, _ = case
    int8 = result.measured["int8"]["figure"]
    quick = ma.mixed_activations(model, validation, representative_data=calibration, target=int8)
    assert quick.units == [] and quick.int16_ops == [] and quick.meets_goal and result.units
    assert quick.measured["int8"] == result.measured["int8"]
    assert quick.measured["int16"] == result.measured["int16"]  # every op int16, reported
    assert {row["type"] for row in ma.activation_types(quick.flatbuffer)} == {"int8"}
