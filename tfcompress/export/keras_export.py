"""A tf_keras model -> a ``TFLiteConverter`` over a lean SavedModel of its inference function.

``TFLiteConverter.from_keras_model`` first saves the model as a Keras SavedModel, which traces
every layer's call functions for Keras's own reloading: most of the 16-23 s that converting a
MobileNetV2 takes here. The converter needs only the serving signature. So this saves what
tf_keras's ``Model.save_spec`` documents for serving: one ``tf.function`` calling the model with
``training=False``, outputs named by ``model.output_names`` as Keras's own signature names them,
and the model's variables, nothing else; ``from_saved_model`` converts it (MobileNetV2: about
5 s, the same outputs; ``benchmarks/convert_modes.py --parts=export_seconds``). A model that
cannot be saved so (no input spec yet, a resource other than its variables, a stateful
recurrent layer) goes through ``from_keras_model`` as before. A model holding a layer of
``FIXED_BATCH_LAYERS`` is saved at batch 1 (one sample per invoke, as a recurrent model's).
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
    if _fixed_batch(model):
        args, kwargs = tf.nest.map_structure(
            lambda s: tf.TensorSpec([1, *s.shape[1:]], s.dtype, s.name)
            if isinstance(s, tf.TensorSpec) else s, (args, kwargs))

    @tf.function
    def serve(*args, **kwargs):
        outputs = tf.nest.flatten(model(*args, training=False, **kwargs))
        return dict(zip(model.output_names, outputs))

    root = tf.Module()
    root.weights = list(model.variables)  # tracked, so the function's captures are saved
    tf.saved_model.save(root, path, signatures=serve.get_concrete_function(*args, **kwargs))


# Layers whose graph at a dynamic batch LiteRT cannot prepare (checked with TF 2.21 / LiteRT
# 2.3, from_keras_model alike): GroupNormalization's reshapes become a BROADCAST_TO that fails
# ("Output shape must be broadcastable from input shape") on the first invoke, and the
# converter's int8 calibration with it. At batch 1 they convert and agree with Keras.
FIXED_BATCH_LAYERS = ("GroupNormalization",)


def _fixed_batch(model) -> bool:
    """Whether ``model`` (nested models included) holds a layer of ``FIXED_BATCH_LAYERS``."""
    return any(type(layer).__name__ in FIXED_BATCH_LAYERS
               or (isinstance(layer, keras.Model) and _fixed_batch(layer))
               for layer in model.layers)
