"""A tf_keras model -> a ``TFLiteConverter`` over a lean SavedModel of its inference function.

``TFLiteConverter.from_keras_model`` first saves the model as a Keras SavedModel, which traces
every layer's call functions for Keras's own reloading: most of the 16-23 s that converting a
MobileNetV2 takes here. The converter needs only the serving signature. So this saves what
tf_keras's ``Model.save_spec`` documents for serving: one ``tf.function`` calling the model with
``training=False``, outputs named by ``model.output_names`` as Keras's own signature names them,
and the model's variables, nothing else; ``from_saved_model`` converts it (MobileNetV2: about
5 s, the same outputs; ``benchmarks/convert_modes.py --parts=export_seconds``). A model that
cannot be saved so (no input spec yet, a resource other than its variables, a stateful
recurrent layer) goes through ``from_keras_model`` as before.
"""

import tempfile

import tensorflow as tf

from tfcompress._compat.keras import keras


def converter(model: keras.Model) -> tf.lite.TFLiteConverter:
    """A fresh converter for ``model``; its SavedModel folder lives as long as the converter."""
    folder = tempfile.TemporaryDirectory(prefix="tfcompress-export-")
    try:
        _save(model, folder.name)
    except (ValueError, TypeError, AssertionError, AttributeError, KeyError):
        folder.cleanup()
        return tf.lite.TFLiteConverter.from_keras_model(model)
    c = tf.lite.TFLiteConverter.from_saved_model(folder.name)
    c.tfcompress_folder = folder  # removed when the converter is collected
    return c


def _save(model: keras.Model, path: str) -> None:
    if getattr(model, "stateful", False) or not isinstance(model, keras.Model):
        raise ValueError("a stateful or non-Keras model keeps from_keras_model")
    spec = model.save_spec(dynamic_batch=True)
    if spec is None:
        raise ValueError("the model has no input spec yet")
    args, kwargs = spec

    @tf.function
    def serve(*args, **kwargs):
        outputs = tf.nest.flatten(model(*args, training=False, **kwargs))
        return dict(zip(model.output_names, outputs))

    root = tf.Module()
    root.weights = list(model.variables)  # tracked, so the function's captures are saved
    tf.saved_model.save(root, path, signatures=serve.get_concrete_function(*args, **kwargs))
