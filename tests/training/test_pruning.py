"""Pruning: schedules derived from the plan, layer selection, m-by-n, policy, reports."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.training import pruning
from tfcompress.export.conversion import convert

from tfmot_helpers import accuracy, fit, small_cnn, steps_per_epoch

STEPS = steps_per_epoch()


@pytest.fixture(scope="module")
def cnn(digits):
    return small_cnn(digits)


@pytest.mark.parametrize("total", [6, 20, 90, 450, 20000])
def test_polynomial_schedule_reaches_target_inside_plan(total):
    plan = pruning.schedule_for(0.8, end_step=total)
    assert 1 <= plan.frequency <= pruning.MAX_FREQUENCY
    assert plan.end_step % plan.frequency == 0, "last update must land on end_step"
    assert plan.end_step <= total and plan.end_step // plan.frequency >= pruning.MIN_UPDATES
    sched = plan.tfmot()
    _, sparsity = sched(plan.end_step)
    should, _ = sched(plan.end_step)
    assert bool(should) and float(sparsity) == pytest.approx(0.8)


def test_default_tfmot_frequency_would_not_prune_a_short_plan():
    """The pitfall we avoid: tfmot's frequency=100 never updates the mask in 90 steps."""
    default = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 90)
    assert not any(bool(default(s)[0]) for s in range(1, 91))
    plan = pruning.schedule_for(0.8, epochs=2, steps_per_epoch=45).tfmot()
    assert any(bool(plan(s)[0]) for s in range(1, 91))


@pytest.mark.parametrize("kwargs, match", [
    (dict(end_step=4), "too short"),
    (dict(), "fine-tuning plan"),
    (dict(end_step=100, schedule="cubic"), "unknown pruning schedule 'cubic'"),
    (dict(epochs=0, steps_per_epoch=10), "0 steps"),
])
def test_bad_plans_are_clear_errors(kwargs, match):
    with pytest.raises(errors.ConfigError, match=match):
        pruning.schedule_for(0.8, **kwargs)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.5])
def test_bad_target_is_an_error(target):
    with pytest.raises(errors.ConfigError, match="target_sparsity"):
        pruning.schedule_for(target, end_step=100)


@pytest.mark.parametrize("schedule", ["polynomial", "constant"])
def test_prune_reaches_target_per_layer_and_leaves_input_untouched(cnn, digits, schedule):
    before = [w.copy() for w in cnn.get_weights()]
    pruned = tfcompress.prune(cnn, 0.8, epochs=2, steps_per_epoch=STEPS, schedule=schedule)
    fit(pruned, digits, 2, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfcompress.strip(pruned)
    report = tfcompress.sparsity_report(stripped)
    assert set(report["layers"]) == {"conv1", "conv2", "dense", "logits"}
    for name, s in report["layers"].items():
        assert abs(s - 0.8) <= 0.01, (name, s)
    assert not pruning.is_pruned(stripped)
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert accuracy(stripped, digits) > 0.5


@pytest.mark.parametrize("layers, expected", [
    ("conv.*", {"conv1", "conv2"}),
    (["dense", "logits"], {"dense", "logits"}),
    (keras.layers.Conv2D, {"conv1", "conv2"}),
    (lambda layer: layer.name == "dense", {"dense"}),
])
def test_layer_selection(cnn, layers, expected):
    pruned = tfcompress.prune(cnn, 0.5, end_step=100, layers=layers)
    wrapped = {l.name for l in pruned.layers if isinstance(l, tfcompress._compat.tfmot.PruneWrapper)}
    assert {n.replace("prune_low_magnitude_", "") for n in wrapped} == expected
    assert set(pruning.pruning_info(pruned)["pruned"]) == expected


def test_keep_first_last_dense(cnn):
    pruned = tfcompress.prune(cnn, 0.5, end_step=100, keep_first_last=True)
    info = pruning.pruning_info(pruned)
    assert info["pruned"] == ["conv2", "dense"]
    assert set(info["skipped"]) == {"conv1", "logits"}


def test_selection_matching_nothing_is_an_error(cnn):
    with pytest.raises(errors.ConfigError, match="selects no layer.*conv1 \\(Conv2D\\)"):
        tfcompress.prune(cnn, 0.5, end_step=100, layers="nope")


class Scale(keras.layers.Layer):
    """A layer with weights that tfmot does not know."""

    def build(self, shape):
        self.w = self.add_weight("w", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unprunable_layers_are_skipped_and_listed():
    inp = keras.Input((8,))
    out = keras.layers.Dense(4, name="d2")(Scale(name="scale")(keras.layers.Dense(8)(inp)))
    model = keras.Model(inp, out)
    pruned = tfcompress.prune(model, 0.5, end_step=100)
    info = pruning.pruning_info(pruned)
    assert "scale" in info["skipped"] and "Scale" in info["skipped"]["scale"]
    assert "d2" in info["pruned"]


def test_m_by_n_gives_2_of_4_structure(cnn, digits):
    pruned = tfcompress.prune(cnn, 0.5, end_step=20, m_by_n="2:4", layers=["dense", "logits"])
    fit(pruned, digits, 1, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfcompress.strip(pruned)
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    for name in ("dense", "logits"):
        kernel = stripped.get_layer(name).kernel
        assert bool(pruning_utils.is_pruned_m_by_n(kernel, (2, 4))), name
        assert tfcompress.sparsity_report(stripped)["layers"][name] == pytest.approx(0.5)


@pytest.mark.parametrize("m_by_n", ["4:2", (0, 4), "x"])
def test_bad_m_by_n(cnn, m_by_n):
    with pytest.raises(errors.ConfigError, match="m_by_n"):
        tfcompress.prune(cnn, 0.5, end_step=100, m_by_n=m_by_n)


def test_xnnpack_policy(cnn):
    with pytest.raises(errors.ModelError, match="XNNPACK"):
        tfcompress.prune(cnn, 0.5, end_step=100, policy="xnnpack")
    with pytest.raises(errors.ConfigError, match="pruning policy"):
        tfcompress.prune(cnn, 0.5, end_step=100, policy="gpu")
    layers = keras.layers
    inp = keras.Input((16, 16, 3))  # the stem XNNPACK's sparse inference wants
    x = layers.Conv2D(8, 3, strides=2, padding="valid", name="stem")(layers.ZeroPadding2D(1)(inp))
    x = layers.Conv2D(16, 1, activation="relu", name="pw1")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(16, 1, activation="relu", name="pw2")(x)
    out = layers.Dense(10, name="head")(layers.GlobalAveragePooling2D()(x))
    pruned = tfcompress.prune(keras.Model(inp, out), 0.5, end_step=100, policy="xnnpack")
    assert pruning.pruning_info(pruned)["pruned"] == ["pw1", "pw2"]


class Sub(keras.Model):
    def __init__(self, wrap=None):
        super().__init__()
        self.flat = keras.layers.Flatten()
        dense = keras.layers.Dense(32, activation="relu")
        self.dense = wrap(dense) if wrap else dense
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.out(self.dense(self.flat(x)))


def test_subclassed_model_error_and_layer_level_route(digits):
    with pytest.raises(errors.ModelError, match="subclassed.*prune_layer"):
        tfcompress.prune(Sub(), 0.5, end_step=100)
    model = Sub(lambda layer: pruning.prune_layer(layer, 0.7, epochs=2, steps_per_epoch=STEPS))
    with pytest.raises(errors.ModelError, match="not built yet"):
        fit(model, digits, 1, [tfcompress.callbacks.Pruning()])
    model(digits[0][0][:1])
    fit(model, digits, 2, [tfcompress.callbacks.Pruning()])
    kernel = model.dense.layer.kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.7, abs=0.01)


def test_sparsity_report_is_measured():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"),
                              keras.layers.Dense(2, name="b")])
    k = np.ones((4, 5), np.float32)
    k[0, :] = 0  # 5 of 20
    model.get_layer("a").kernel.assign(k)
    model.get_layer("b").kernel.assign(np.zeros((5, 2), np.float32))
    report = tfcompress.sparsity_report(model)
    assert report["layers"] == {"a": 0.25, "b": 1.0}
    assert report["global"] == pytest.approx(15 / 30) and report["zeros"] == 15


def test_sparsity_survives_int8_flatbuffer_and_stripped_model_reloads(cnn, digits, tmp_path):
    pruned = tfcompress.prune(cnn, 0.75, epochs=1, steps_per_epoch=STEPS)
    fit(pruned, digits, 1, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfcompress.strip(pruned)
    (x, _), (xt, _) = digits
    for ext in ("keras", "h5"):
        path = str(tmp_path / f"m.{ext}")
        models.save_model(stripped, path)
        loaded = models.load_model(path)
        np.testing.assert_allclose(loaded.predict(xt[:16], verbose=0),
                                   stripped.predict(xt[:16], verbose=0), atol=1e-6)
    tensors = pruning.flatbuffer_sparsity(convert(stripped, "int8", representative_data=x,
                                                  representative_samples=16))
    assert len(tensors) == 4
    for name, t in tensors.items():
        assert t["dtype"] == "int8" and t["zeros"] >= 0.74, (name, t)
