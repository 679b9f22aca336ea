"""Quantization-aware training on the LiteRT Quantizer's int4 weight grid (tfmot public API).

The LiteRT Quantizer's channelwise int4 modes (``dynamic_wi4``, ``weight_only_wi4``,
``static_wi4_ai8``) store each output channel's weights as ``rint(w / scale)`` with
``scale = max|w| / 7`` (``litert_quantizer.algorithms.uniform_quantize.uniform_quantize_tensor
.tensor_zp_scale_from_min_max``: symmetric, signed, ``qmax = 2**(4-1) - 1``), clipped to
``[-8, 7]``; since ``|w| / scale <= 7``, the integers are in ``[-7, 7]``. ``Int4WeightQuantizer``
fake-quantizes a kernel onto exactly that grid (straight-through gradient), so the integers a
student learns are the ones the quantizer deploys once the kernel is set to ``q * scale``
(``on_grid``): the channel's largest ``|q|`` is 7, the quantizer finds the same scale again.

Which kernels: what the quantizer's int4 policy takes, CONV_2D and FULLY_CONNECTED (Keras
Conv2D, Conv1D, Dense on 2-D inputs, the pointwise half of SeparableConv2D); depthwise and
transposed convolutions stay float there, so they stay float here.

``Int4QuantizeScheme`` is a tfmot ``QuantizeScheme`` with no layout transforms (tfmot's 8-bit
transforms move activation quantizers and fold BatchNormalization for the converter, which the
quantizer does not use): only the layers annotated by ``annotate`` are wrapped, with the weight
quantizer above and, for ``activation_bits=8`` (``static_wi4_ai8``), tfmot's 8-bit moving-average
quantizer after the layer's activation.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tfcompress._compat.keras import keras

_q = tfmot.quantization.keras
_register = keras.utils.register_keras_serializable(package="tfcompress")
QMAX = 7


def grid_scale(w):
    """Per-output-channel scales ``max|w| / 7`` (the last axis is the channel), broadcastable;
    a channel of zeros gets the quantizer's bound 1e-9."""
    axes = list(range(len(w.shape) - 1))
    bound = tf.reduce_max(tf.abs(w), axis=axes, keepdims=True)
    return tf.maximum(bound, 1e-9) / float(QMAX)


def integers(w: np.ndarray) -> np.ndarray:
    """The int4 integers the quantizer stores for kernel ``w`` (Keras layout, channel last)."""
    w = np.asarray(w, np.float32)
    scale = np.maximum(np.max(np.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True),
                       1e-9) / np.float32(QMAX)
    return np.clip(np.rint(w / scale), -QMAX - 1, QMAX).astype(np.int32)


def on_grid(w: np.ndarray) -> np.ndarray:
    """``w`` set to ``q * scale``: its own int4 integers and scales, as float32."""
    w = np.asarray(w, np.float32)
    scale = np.maximum(np.max(np.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True),
                       1e-9) / np.float32(QMAX)
    return (integers(w).astype(np.float32) * scale).astype(np.float32)


@_register
class Int4WeightQuantizer(_q.quantizers.Quantizer):
    """Fake int4 quantization of a kernel on the LiteRT Quantizer's channelwise grid."""

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        scale = tf.stop_gradient(grid_scale(inputs))
        q = tf.clip_by_value(tf.round(inputs / scale), -QMAX, QMAX) * scale
        return inputs + tf.stop_gradient(q - inputs)

    def get_config(self) -> dict:
        return {}

    def __eq__(self, other) -> bool:
        return isinstance(other, Int4WeightQuantizer)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)


def _activations():
    return _q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                narrow_range=False)


def kernel_names(layer) -> tuple:
    """The attributes of ``layer``'s kernels the int4 modes quantize (empty: none)."""
    if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose,
                          keras.layers.Conv1DTranspose)):
        return ()
    if isinstance(layer, keras.layers.SeparableConv2D):
        return ("pointwise_kernel",)
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv1D)):
        plain = getattr(layer, "groups", 1) == 1 and layer.data_format == "channels_last"
        return ("kernel",) if plain else ()
    if isinstance(layer, keras.layers.Dense) and len(layer.input_shape) == 2:
        return ("kernel",)
    return ()


@_register
class Int4QuantizeConfig(_q.QuantizeConfig):
    """A layer's int4 kernels (``kernel_names``); with ``activation_bits=8`` its activation
    through tfmot's 8-bit moving-average quantizer."""

    def __init__(self, kernels=("kernel",), activation_bits: Optional[int] = None):
        self.kernels = tuple(kernels)
        self.activation_bits = activation_bits

    def get_weights_and_quantizers(self, layer) -> list:
        return [(getattr(layer, name), Int4WeightQuantizer()) for name in self.kernels]

    def get_activations_and_quantizers(self, layer) -> list:
        return [(layer.activation, _activations())] if self.activation_bits else []

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        for name, weight in zip(self.kernels, quantize_weights):
            setattr(layer, name, weight)

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        if self.activation_bits:
            layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer) -> list:
        return []

    def get_config(self) -> dict:
        return {"kernels": list(self.kernels), "activation_bits": self.activation_bits}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


class _Registry(_q.QuantizeRegistry):
    def __init__(self, activation_bits: Optional[int]):
        self.activation_bits = activation_bits

    def supports(self, layer) -> bool:
        return bool(kernel_names(layer))

    def get_quantize_config(self, layer):
        return Int4QuantizeConfig(kernel_names(layer), self.activation_bits)


class _NoTransforms(_q.QuantizeLayoutTransform):
    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class Int4QuantizeScheme(_q.QuantizeScheme):
    """int4 weights on the quantizer's grid, optional 8-bit activations, no layout transforms."""

    def __init__(self, activation_bits: Optional[int] = None):
        self.activation_bits = activation_bits

    def get_layout_transformer(self):
        return _NoTransforms()

    def get_quantize_registry(self):
        return _Registry(self.activation_bits)


CUSTOM_OBJECTS = {"Int4WeightQuantizer": Int4WeightQuantizer,
                  "Int4QuantizeConfig": Int4QuantizeConfig}


def annotate(layer, activation_bits: Optional[int] = None):
    """``layer`` annotated with its int4 config, or ``layer`` itself when it has no int4 kernel."""
    names = kernel_names(layer)
    if not names:
        return layer
    return _q.quantize_annotate_layer(layer, Int4QuantizeConfig(names, activation_bits))
