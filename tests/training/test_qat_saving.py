"""Quantize-aware models saved as ``.keras`` load back through ``tfcompress.models.load_model``
(the loader of ``tfcompress.convert(path)`` and of the command): same outputs, same int8
integers; a QuantizeConfig nobody registered is refused in one line before anything runs."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfcompress
from tfcompress import errors, keras, models, wrappers
from tfcompress.training import qat_int4

import helpers

L = keras.layers
_q = tfmot.quantization.keras


def _image_model():
    """Conv2D + BatchNormalization (folded by tfmot), DepthwiseConv2D (per-channel scheme),
    PReLU (our QuantizeConfig), Dense."""
    inputs = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inputs)))
    x = L.PReLU(shared_axes=(1, 2))(L.DepthwiseConv2D(3, padding="same")(x))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)))


def _token_model():
    """Embedding and Conv1D (our QuantizeConfigs) on int32 token ids."""
    inputs = keras.Input((6,), dtype="int32")
    x = L.GlobalAveragePooling1D()(L.Conv1D(4, 3)(L.Embedding(20, 4)(inputs)))
    return keras.Model(inputs, L.Dense(3)(x))


def _int4_student(model):
    chosen = [l.name for l in model.layers if qat_int4.kernel_names(l)]
    annotated = wrappers.wrap_layers(model, chosen, lambda l: qat_int4.annotate(l, 8))
    with _q.quantize_scope(qat_int4.CUSTOM_OBJECTS):
        return _q.quantize_apply(annotated, qat_int4.Int4QuantizeScheme(8))


_RNG = np.random.default_rng(0)
_IMAGES = _RNG.random((16, 8, 8, 1), dtype=np.float32)
_TOKENS = _RNG.integers(0, 20, (16, 6)).astype(np.int32)
CASES = {
    "quantize_aware_depthwise_prelu": (lambda: tfcompress.quantize_aware(_image_model()), _IMAGES),
    "quantize_aware_embedding_conv1d": (lambda: tfcompress.quantize_aware(_token_model()),
                                        _TOKENS),
    "finetune_quantized_int8": (lambda: tfcompress.finetune_quantized(
        _image_model(), _IMAGES, "int8", epochs=0), _IMAGES),
    "int4_student": (lambda: _int4_student(_image_model()), _IMAGES),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_qat_model_saved_as_keras_loads_back_with_its_outputs_and_int8_integers(case, tmp_path):
    build, x = CASES[case]
    qat = build()
    qat.compile("adam", "mse")  # moves weights and ranges off their initial values
    qat.fit(x, qat.predict(x, verbose=0) + 0.1, epochs=2, batch_size=8, verbose=0)
    path = str(tmp_path / "qat.keras")
    qat.save(path)

    loaded = models.load_model(path)

    assert wrappers.is_quantize_aware(loaded)
    assert [type(l) for l in loaded.layers] == [type(l) for l in qat.layers]  # tfmot's classes
    assert np.max(np.abs(loaded.predict(x, verbose=0) - qat.predict(x, verbose=0))) < 1e-6
    for mine, theirs in zip(loaded.weights, qat.weights):  # ranges and steps too
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    want = helpers.flatbuffer_integers(tfcompress.convert(qat, "int8", representative_data=x))
    got = helpers.flatbuffer_integers(tfcompress.convert(loaded, "int8", representative_data=x))
    assert len(got) == len(want) >= 3  # conv / embedding, depthwise or conv1d, dense kernels
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # Saved again from the loaded model (wrappers rebuilt from their config list no copy of
    # the wrapped layer's weights) and read back once more.
    loaded.save(str(tmp_path / "again.keras"))
    again = models.load_model(str(tmp_path / "again.keras"))
    assert np.max(np.abs(again.predict(x, verbose=0) - qat.predict(x, verbose=0))) < 1e-6


class UnregisteredConfig(_q.QuantizeConfig):
    """A user's QuantizeConfig, not registered with Keras: nothing may import it from a file."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def _unregistered_config():
    inputs = keras.Input((6,))
    x = _q.quantize_annotate_layer(L.Dense(4, name="custom"), UnregisteredConfig())(inputs)
    with _q.quantize_scope({"UnregisteredConfig": UnregisteredConfig}):
        return _q.quantize_apply(keras.Model(inputs, x))


def _cluster_preserving():
    """tfmot's CQAT quantizer saves cluster variables its config does not rebuild."""
    model = keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu", name="hidden"),
                              L.Dense(2, name="out")])
    return tfcompress.quantize_aware(model, preserve="clusters")


@pytest.mark.parametrize("build, named", [
    (_unregistered_config, ["unknown class 'UnregisteredConfig'", "register_keras_serializable"]),
    (_cluster_preserving, ["layer 'quant_hidden' (QuantizeWrapperV2 of ", ") saved 11 variables",
                           "its config rebuilds 6", "convert a CQAT or PCQAT model"]),
], ids=["unregistered_config", "cluster_preserving"])
def test_qat_model_that_cannot_load_back_is_refused_in_one_line(build, named, tmp_path):
    """Refused before anything of an unknown class runs, or rather than loaded with variables
    out of place; the line names the class and what is accepted."""
    path = str(tmp_path / "qat.keras")
    build().save(path)

    with pytest.raises(errors.ModelError) as e:
        models.load_model(path)

    message = str(e.value)
    assert "\n" not in message and "accepted:" in message
    for part in named:
        assert part in message, message
