"""Keras 3 models <-> tf_keras: applications, graph shapes, errors, files, and the whole chain."""

import inspect

import numpy as np
import pytest
import tf_keras

import tfcompress
from tfcompress import errors, keras3
from tfcompress.keras3 import from_keras3, max_abs_diff, to_keras3

from tfmot_helpers import BATCH, SAMPLES, steps_per_epoch

k3 = pytest.importorskip("keras")  # Keras 3, TF 2.21's default Keras
L = k3.layers


def _calibrate(model, size: int, samples: int = 8):
    """BatchNorm statistics from one random batch, so random-weight outputs are not ~0."""
    bns = [l for l in model._flatten_layers() if isinstance(l, L.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    model(np.random.default_rng(1).random((samples, size, size, 3), np.float32), training=True)
    for layer in bns:
        layer.momentum = 0.99
    return model


def _k3_digits_cnn():
    """tfcompress.models.digits_cnn, built with Keras 3."""
    return k3.Sequential([
        k3.Input((8, 8, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
        L.MaxPooling2D(2, name="pool"), L.Flatten(name="flatten"),
        L.Dense(128, activation="relu", name="dense"), L.Dense(10, name="logits"),
        L.Activation("softmax", name="probs")], name="digits_cnn")


@pytest.mark.parametrize("name, size", [
    ("MobileNetV2", 64), ("MobileNetV3Small", 32), ("ResNet50", 32)])
def test_applications_rebuild_with_identical_outputs(name, size):
    model = getattr(k3.applications, name)(input_shape=(size, size, 3), weights=None, classes=10,
                                           classifier_activation=None)
    _calibrate(model, size)
    rebuilt = from_keras3(model)
    assert isinstance(rebuilt, tf_keras.Model)
    assert rebuilt.count_params() == model.count_params()
    x = np.random.default_rng(0).random((4, size, size, 3), np.float32)
    y = np.asarray(model(x))
    assert y.std() > 0.1, "outputs must be non-trivial for the comparison to mean something"
    assert max_abs_diff(model, rebuilt, x) <= 1e-5
    back = to_keras3(rebuilt)
    assert isinstance(back, k3.Model) and max_abs_diff(model, back, x) <= 1e-5


def test_residual_two_inputs_two_outputs_nested_and_shared():
    a, b = k3.Input((6,), name="a"), k3.Input((6,), name="b")
    shared = L.Dense(6, activation="tanh", name="shared")
    inner = k3.Sequential([k3.Input((6,)), L.Dense(8, activation="relu"), L.Dense(6)],
                          name="inner")
    ha, hb = shared(a), shared(b)  # one layer, two calls
    res = L.Add(name="residual")([ha, inner(ha)])
    out1 = L.Dense(3, name="out1")(L.Concatenate()([res, hb]))
    out2 = L.Activation("hard_swish", name="out2")(hb * 2.0 + 1.0)  # keras.ops nodes
    model = k3.Model([a, b], [out1, out2], name="graph")
    rebuilt = from_keras3(model)
    assert [t.name.split(":")[0] for t in rebuilt.inputs] == ["a", "b"]
    assert len(rebuilt.outputs) == 2
    assert isinstance(rebuilt.get_layer("inner"), tf_keras.Sequential)
    assert len(rebuilt.get_layer("shared")._inbound_nodes) == 2
    assert len(rebuilt.weights) == len(model.weights)
    assert max_abs_diff(model, rebuilt) <= 1e-5
    assert max_abs_diff(model, to_keras3(rebuilt)) <= 1e-5


@pytest.fixture(scope="module")
def custom_layer_cls():
    @k3.saving.register_keras_serializable(package="test_keras3")
    class Scale3(L.Layer):
        def __init__(self, factor=3.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    return Scale3


def _custom_model(cls):
    x = k3.Input((4,))
    return k3.Model(x, L.Dense(2)(cls(name="my_scale")(L.Dense(4)(x))), name="custom")


def test_custom_layer_without_twin_names_the_layer(custom_layer_cls):
    with pytest.raises(errors.Keras3ModelError, match="'my_scale'.*Scale3.*no tf_keras twin"):
        from_keras3(_custom_model(custom_layer_cls))


def test_custom_layer_with_twin_is_used_and_a_wrong_twin_is_caught(custom_layer_cls):
    class Scale2(tf_keras.layers.Layer):
        def __init__(self, factor=3.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

    model = _custom_model(custom_layer_cls)
    rebuilt = from_keras3(model, custom_objects={"Scale3": Scale2})
    assert max_abs_diff(model, rebuilt) <= 1e-5

    class Wrong(Scale2):
        def call(self, x):
            return x * (self.factor + 1.0)

    with pytest.raises(errors.ModelError, match="different outputs.*first differing layer "
                                                "'my_scale'"):
        from_keras3(model, custom_objects={"Scale3": Wrong})


def test_subclassed_model_gets_clear_error():
    class Net(k3.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(errors.Keras3ModelError, match="subclassed.*SavedModel.*model.export"):
        from_keras3(net)
    with pytest.raises(errors.Keras3ModelError, match="subclassed"):  # through the stages too
        tfcompress.prune(net, 0.5, end_step=100)


def test_keras_file_saved_by_keras3(tmp_path):
    model = _calibrate(k3.applications.MobileNetV2(
        input_shape=(32, 32, 3), weights=None, classes=5, alpha=0.35), 32)
    path = str(tmp_path / "k3.keras")
    model.save(path)
    rebuilt = from_keras3(path)
    assert isinstance(rebuilt, tf_keras.Model) and max_abs_diff(model, rebuilt) <= 1e-5
    loaded = tfcompress.models.load_model(path)  # what convert(path) and recipes use
    assert isinstance(loaded, tf_keras.Model) and max_abs_diff(model, loaded) <= 1e-5
    x = np.random.default_rng(0).random((4, 32, 32, 3), np.float32)
    tflite = tfcompress.validate(tfcompress.convert(path, "float32"), x, reference=model(x).numpy(),
                                 latency_runs=0, delegate_checks=False)
    assert tflite.max_abs_diff <= 1e-4
    with pytest.raises(errors.ModelError, match="not a .keras file"):
        from_keras3(str(tmp_path / "missing.keras"))


def test_augmentation_layers_are_inactive_in_the_rebuilt_model_and_its_file(tmp_path):
    """Keras 3 records training=True on the call of RandomFlip/RandomContrast: the rebuild used
    to keep them augmenting at inference (outputs off, conversion failing at random). Saved to
    a .keras file, RandomContrast's default value_range reads back as a list, which is the
    default too. Rebuilt model and float32 file equal Keras 3's inference outputs."""
    inputs = k3.Input((16, 16, 3))
    h = L.RandomContrast(0.2)(L.RandomFlip()(inputs))
    model = k3.Model(inputs, L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(h)))
    path = str(tmp_path / "augment.keras")
    model.save(path)
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for source in (model, path):
        rebuilt = from_keras3(source)
        assert np.abs(rebuilt.predict(x, verbose=0) - want).max() <= 1e-5
        report = tfcompress.validate(tfcompress.convert(source, "float32"), x, reference=want,
                                     latency_runs=0, delegate_checks=False)
        assert report.max_abs_diff <= 1e-5


def _fit(model, digits, epochs, callbacks=()):
    (x, y), _ = digits
    model.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  ["accuracy"])
    model.fit(x[:SAMPLES], y[:SAMPLES], batch_size=BATCH, epochs=epochs,
              callbacks=list(callbacks), verbose=0)
    return model


def test_to_keras3_keeps_zeros_and_cluster_values_exactly(digits):
    k3.utils.set_random_seed(0)
    model = _k3_digits_cnn()
    pruned = tfcompress.prune(model, 0.8, epochs=2, steps_per_epoch=steps_per_epoch())
    stripped = tfcompress.strip(_fit(pruned, digits, 2, [tfcompress.callbacks.Pruning()]))
    clustered = tfcompress.strip(tfcompress.cluster(stripped, 8, preserve_sparsity=True))
    back = to_keras3(clustered)
    assert isinstance(back, k3.Model)
    for name in ("conv2", "dense"):
        src = clustered.get_layer(name).get_weights()[0]
        dst = np.asarray(back.get_layer(name).kernel)
        assert np.array_equal(src, dst)
        assert np.mean(dst == 0) >= 0.79 and len(np.unique(dst)) <= 8
    assert max_abs_diff(clustered, back) <= 1e-5


def test_keras3_digits_cnn_prune_finetune_int8_end_to_end(digits, trained_cnn):
    (x, y), (xt, yt) = digits
    model = _k3_digits_cnn()
    model.set_weights(trained_cnn.get_weights())  # the same trained CNN, built in Keras 3
    pruned = tfcompress.prune(model, 0.8, epochs=2, steps_per_epoch=steps_per_epoch())
    stripped = tfcompress.strip(_fit(pruned, digits, 2, [tfcompress.callbacks.Pruning()]))
    assert tfcompress.sparsity_report(stripped)["global"] >= 0.79
    tflite = tfcompress.convert(stripped, "int8", representative_data=x)
    report = tfcompress.validate(tflite, xt, yt, latency_runs=0, delegate_checks=False)
    assert report.accuracy >= 0.9


def test_quantize_aware_accepts_keras3_model(digits):
    (x, _), (xt, _) = digits
    model = _k3_digits_cnn()
    qat = _fit(tfcompress.quantize_aware(model), digits, 1)
    assert any("Quantize" in type(l).__name__ for l in qat.layers)
    tflite = tfcompress.convert(qat, "int8")
    report = tfcompress.validate(tflite, xt[:50], reference=qat, latency_runs=0,
                                 delegate_checks=False)
    assert report.agreement >= 0.9


def test_tf_keras_application_to_keras3_translates_tf_ops():
    model = tfcompress.models.build("mobilenet_v3_small", (32, 32, 3), 10)  # TFOpLambda layers
    assert any(type(l).__name__ == "TFOpLambda" for l in model.layers)
    back = to_keras3(model)
    assert isinstance(back, k3.Model) and max_abs_diff(model, back) <= 1e-5
    assert from_keras3(back).count_params() == model.count_params()


def test_untranslatable_option_names_layer_and_option():
    if "lora_rank" not in inspect.signature(L.Dense).parameters:
        pytest.skip("this Keras 3 has no LoRA")
    x = k3.Input((4,))
    model = k3.Model(x, L.Dense(2, lora_rank=2, name="lora")(x))
    with pytest.raises(errors.Keras3ModelError, match="'lora'.*lora_rank=2.*no tf_keras"):
        from_keras3(model)


def test_non_models_are_clear_errors():
    with pytest.raises(errors.ModelError, match="expected a Keras 3 model"):
        from_keras3(3)
    with pytest.raises(errors.ModelError, match="expected a tf_keras model"):
        to_keras3("model")
    assert keras3.from_keras3(tfcompress.models.digits_cnn()).name == "digits_cnn"
