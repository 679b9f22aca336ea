"""Label-free quantization-aware fine-tuning: the learned integers are the deployed integers
(int8 and int4, read back from the flatbuffer), agreement with the float model does not fall
below plain PTQ, and bad input is one clear line."""

import numpy as np
import pytest

import helpers
import tfcompress
from tfcompress import errors, keras
from tfcompress.export.validation import predict
from tfcompress.training import finetune, qat_int4


@pytest.fixture(scope="module")
def tiny(digits):
    """A small digits CNN, trained briefly: Conv2D + a separate ReLU layer, BatchNormalization,
    a pointwise Conv2D, Dense logits and softmax."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(12, 1, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(h))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model


def _layout(q: np.ndarray) -> np.ndarray:
    """Keras kernel integers in the flatbuffer's layout (HWIO -> OHWI, dense IO -> OI)."""
    return q.T if q.ndim == 2 else q.transpose(3, 0, 1, 2)


def test_int8_learned_integers_are_deployed(tiny, digits):
    (x, _), _ = digits
    student = finetune.finetune_quantized(tiny, x[:64], "int8", start=tfcompress.equalize(tiny),
                                          epochs=2)
    assert tfcompress.wrappers.is_quantize_aware(student)
    learned = {}
    for layer in student.layers:
        inner = getattr(layer, "layer", None)
        if not isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
            continue
        w = layer.weights[0].numpy()  # the kernel the student trained (the wrapper lists it first)
        axes = tuple(range(w.ndim - 1)) if w.ndim == 4 else None  # tfmot: conv per channel
        scale = np.max(np.abs(w), axis=axes, keepdims=True) / 127.0
        learned[inner.name] = _layout(np.rint(w / scale).astype(np.int32))
    assert len(learned) == 3  # both convolutions (the ReLU layer fused) and the dense layer
    flatbuffer = tfcompress.convert(student, "int8")
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(flatbuffer))


@pytest.mark.parametrize("mode", ["dynamic_wi4", "static_wi4_ai8"])
def test_int4_learned_integers_are_deployed(tiny, digits, mode):
    (x, _), _ = digits
    model = finetune.finetune_quantized(tiny, x[:64], mode, start=tfcompress.equalize(tiny),
                                        epochs=2)
    assert not tfcompress.wrappers.is_quantize_aware(model)
    learned = {}
    for layer in model.layers:
        for name in qat_int4.kernel_names(layer):
            w = getattr(layer, name).numpy()
            np.testing.assert_array_equal(qat_int4.on_grid(w), w)  # on the grid already
            q = qat_int4.integers(w)
            assert np.abs(q).max() == 7  # the largest weight of each kernel sets its scale
            learned[layer.name] = _layout(q)
    assert len(learned) == 3
    flatbuffer = tfcompress.convert(model, mode, representative_data=x[:64])
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(flatbuffer))


def test_agreement_not_below_plain_ptq(tiny, digits):
    """On held-out digits, int4 weights: the fine-tuned flatbuffer agrees with the float model at
    least as often as round-to-nearest min-max, and its outputs are closer."""
    (x, _), (x_test, _) = digits
    reference = tiny.predict(x_test, verbose=0)
    plain = predict(tfcompress.convert(tiny, "dynamic_wi4"), x_test)
    tuned = finetune.finetune_quantized(tiny, x[:200], "dynamic_wi4",
                                        start=tfcompress.equalize(tiny), epochs=6,
                                        learning_rate=1e-3)
    ours = predict(tfcompress.convert(tuned, "dynamic_wi4"), x_test)
    agree = [float(np.mean(o.argmax(1) == reference.argmax(1))) for o in (plain, ours)]
    error = [float(np.mean(np.square(o - reference))) for o in (plain, ours)]
    assert tuned.finetune["after"]["loss"] <= tuned.finetune["before"]["loss"]
    assert agree[1] >= agree[0], agree
    assert error[1] < error[0], error


def test_bad_input_is_one_clear_line(tiny, digits):
    (x, y), _ = digits
    cases = [
        (lambda: finetune.finetune_quantized(tiny, x[:8], "int4"), "int4"),
        (lambda: finetune.finetune_quantized(tiny, x[:0], "int8"), "no samples"),
        (lambda: finetune.finetune_quantized(tiny, y[:32], "int8"), "labels"),
        (lambda: finetune.finetune_quantized(tiny, x[:8], "int8", epochs=-1), "epochs"),
    ]
    for call, words in cases:
        with pytest.raises(errors.TfcompressError) as info:
            call()
        message = str(info.value)
        assert words in message and "\n" not in message, message


def test_a_batchnorm_tfmot_cannot_quantize_points_to_equalize():
    """Conv1D + BatchNormalization: tfmot refuses the BatchNormalization; the line says what
    works (start=tfcompress.equalize(model), which folds it), and that does work."""
    inputs = keras.Input((12, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv1D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(h)))
    x = np.random.default_rng(0).normal(size=(40, 12, 3)).astype(np.float32)
    with pytest.raises(errors.ModelError, match=r"start=tfcompress\.equalize\(model\)"):
        finetune.finetune_quantized(model, x, "int8", epochs=1)
    tuned = finetune.finetune_quantized(model, x, "int8", start=tfcompress.equalize(model),
                                        epochs=1)
    assert tuned.finetune["epochs"] == 1


def test_relu_after_separable_conv_is_quantized_once(digits):
    """A ReLU layer after a linear SeparableConv2D (mini-Xception's blocks) becomes the layer's
    activation in the student: one fake quantization after the ReLU, as the converter fuses it
    (tfmot would otherwise quantize the convolution's output before the ReLU too), same outputs."""
    (x, _), _ = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.SeparableConv2D(6, 3, padding="same")(inputs)
    h = keras.layers.Activation("relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
    fused = finetune._fuse_relu(model)
    kinds = [type(l).__name__ for l in fused.layers]
    assert "Activation" not in kinds and fused.layers[1].activation.__name__ == "relu", kinds
    np.testing.assert_allclose(fused.predict(x[:16], verbose=0), model.predict(x[:16], verbose=0),
                               atol=1e-6)


def test_prelu_model_finetunes_to_int8_prelu(digits):
    """A PReLU after a convolution and after a Dense (MTCNN's RNet/ONet): label-free QAT runs,
    the held-out loss does not rise, and the int8 flatbuffer's PRELUs are int8 with the slopes'
    trained integers (one scale, max|alpha| on 127)."""
    (x, y), (x_test, _) = digits
    L = keras.layers
    keras.utils.set_random_seed(0)
    slopes = keras.initializers.RandomUniform(0.05, 0.6, seed=0)
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same")(inputs)
    h = L.PReLU(shared_axes=[1, 2], alpha_initializer=slopes)(h)
    h = L.PReLU(alpha_initializer=slopes)(L.Dense(16)(L.Flatten()(L.MaxPooling2D()(h))))
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    student = finetune.finetune_quantized(model, x[:128], "int8", epochs=2)
    assert student.finetune["after"]["loss"] <= student.finetune["before"]["loss"]
    learned = sorted(np.rint(a / (np.abs(a).max() / 127)).astype(np.int32).tolist()
                     for l in student.layers for w in l.weights if w.name.endswith("alpha:0")
                     for a in [w.numpy().ravel()])
    flatbuffer = tfcompress.convert(student, "int8")
    deployed = sorted(t.tolist() for t in helpers.int8_prelu_slopes(flatbuffer))
    assert len(learned) == 2 and deployed == learned
    agree = np.mean(predict(flatbuffer, x_test).argmax(-1)
                    == model.predict(x_test, verbose=0).argmax(-1))
    assert agree >= 0.95
