import os

import pytest
import tensorflow as tf

import tfcompress
from tfcompress import errors
from tfcompress._compat import keras as _keras


def test_keras_is_tf_keras_everywhere():
    import tf_keras

    assert tfcompress.keras is tf_keras
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.Sequential is tf_keras.Sequential  # tf.keras routes to Keras 2 as well


def _keras3_model():
    import keras  # Keras 3, the package TF 2.21 ships as its default

    assert keras.__version__.startswith("3.")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="k3")


def test_keras3_model_is_rebuilt_as_tf_keras_and_converts():
    import numpy as np

    from tfcompress.export.validation import predict

    model = _keras3_model()
    assert _keras.is_keras3_model(model) and not _keras.is_keras3_model(tfcompress.keras.Model())
    rebuilt = tfcompress.keras3.ensure_keras2(model)
    assert isinstance(rebuilt, tfcompress.keras.Model) and rebuilt is not model
    x = np.random.default_rng(0).random((3, 4), np.float32)
    y = predict(tfcompress.convert(model, "float32"), x)
    np.testing.assert_allclose(y, np.asarray(model(x)), atol=1e-5)


def test_keras3_custom_layer_gets_clear_error_naming_it():
    import keras

    class Twice(keras.layers.Layer):  # a custom layer with no Keras 2 twin
        def call(self, x):
            return 2 * x

    x = keras.Input((4,))
    model = keras.Model(x, Twice(name="twice")(keras.layers.Dense(2)(x)))
    with pytest.raises(errors.Keras3ModelError, match="'twice'.*Twice.*no tf_keras twin"):
        tfcompress.convert(model, "float32")


def test_keras3_subclassed_model_gets_clear_error():
    import keras

    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.Keras3ModelError, match="subclassed.*SavedModel"):
        tfcompress.convert(Net(), "float32")


def test_non_model_gets_clear_error():
    with pytest.raises(errors.ModelError, match="expected a Keras model, got int"):
        tfcompress.convert(3, "float32")
