import os

import pytest
import tensorflow as tf

import tfcompress
from tfcompress import errors


def test_keras_is_tf_keras_everywhere():
    import tf_keras

    assert tfcompress.keras is tf_keras
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.Sequential is tf_keras.Sequential  # tf.keras routes to Keras 2 as well


def _keras3_model():
    import keras  # Keras 3, the package TF 2.21 ships as its default

    assert keras.__version__.startswith("3.")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="k3")


def test_keras3_model_gets_clear_error():
    with pytest.raises(errors.Keras3ModelError, match="Keras 3 model.*tfcompress.keras"):
        tfcompress.convert(_keras3_model(), "float32")


def test_non_model_gets_clear_error():
    with pytest.raises(errors.ModelError, match="expected a Keras model, got int"):
        tfcompress.convert(3, "float32")
