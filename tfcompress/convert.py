"""Keras model / .keras / .h5 / SavedModel -> TFLite flatbuffer, in every quantization mode.

A thin wrapper over ``tf.lite.TFLiteConverter``: it adds mode names, input checks with clear
errors, and representative data from our loaders.
"""

import os
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from tfcompress import data as data_lib
from tfcompress import errors
from tfcompress._keras import ensure_keras2, keras

MODES = ("float32", "float16", "int8")


def convert(
    model_or_path: Union[keras.Model, str],
    mode: str = "float32",
    *,
    representative_data=None,
    representative_samples: int = 200,
) -> bytes:
    """Converts a model to a TFLite flatbuffer.

    Args:
        model_or_path: a tf_keras model, or a path to a ``.keras``/``.h5`` file or a SavedModel
            directory.
        mode: ``float32``; ``float16`` (float16 weights); ``int8`` (full integer, int8 input and
            output; needs ``representative_data``).
        representative_data: images for calibration: numpy array, ``tf.data.Dataset`` or the
            splits our loaders return (see ``data.representative_dataset``).
        representative_samples: how many samples calibrate the int8 ranges.

    Returns:
        The flatbuffer bytes.

    Raises:
        ConversionError: unknown mode, or int8 without representative data.
        DataError: representative data that does not fit the model's input.
        ModelError: a path that cannot be loaded.
    """
    if mode not in MODES:
        raise errors.ConversionError(errors.unknown("conversion mode", mode, MODES))
    converter, input_shape = _converter(model_or_path)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative_data is None:
            raise errors.ConversionError(
                "mode 'int8' needs representative_data (calibration images); accepted: a numpy "
                "array, a tf.data.Dataset or the splits returned by tfcompress.data loaders")
        generate = data_lib.representative_dataset(representative_data, representative_samples)
        if input_shape is not None:
            data_lib.check_fits(np.concatenate([s[0] for s in generate()]), input_shape,
                                "representative_data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = generate
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _converter(model_or_path):
    """(TFLiteConverter, input shape or None) for a model or a path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
            return tf.lite.TFLiteConverter.from_saved_model(path), None
        from tfcompress.models import load_model

        model_or_path = load_model(path)
    model = ensure_keras2(model_or_path)
    return tf.lite.TFLiteConverter.from_keras_model(model), model.input_shape
