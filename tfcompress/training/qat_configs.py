"""QuantizeConfigs for the layers tfmot's default 8-bit scheme leaves out of QAT.

tfmot's default 8-bit registry has Conv1D, Embedding and the recurrent cells commented out and
nothing for LayerNormalization or attention, so no Transformer or 1-D model could be trained
quantize-aware. These configs use only tfmot's public API (``QuantizeConfig``, the
``quantizers``, ``QuantizeWrapperV2``) with the quantizers and settings of its own default
8-bit configs (weights: symmetric, narrow range, last value; activations: asymmetric, moving
average), so the TFLite converter reads their ranges as it reads tfmot's:

- ``Conv1D``: the kernel with one scale, its activation after the op (per output channel, as
  tfmot's Conv2D, fails twice: tfmot learns per-channel ranges of rank-2 and rank-4 tensors
  only, and the TFLite converter refuses a per-channel fake quant before the ExpandDims that
  makes a Conv1D a CONV_2D);
- ``Embedding``: the table, one scale (the int8 ``GATHER`` keeps its table's scale);
- ``LayerNormalization``: its output;
- ``DepthwiseConv2D``: the depthwise kernel per channel (``in_channels * depth_multiplier``
  scales, the converter's layout). tfmot's own config learns ranges over the kernel's last axis,
  the depth multiplier, so it trains one scale for the whole kernel where the converter deploys
  one per channel: the student learned coarser weights than the min-max conversion it should
  beat. This config is not annotated on layers (an annotation stops tfmot folding a following
  BatchNormalization and splitting a SeparableConv2D); ``DepthwisePerChannelScheme`` returns
  it from the registry instead, and ``PrunePreservePerChannelScheme`` /
  ``ClusterPreservePerChannelScheme`` (tfmot's PQAT, CQAT and PCQAT schemes, whose registries
  keep tfmot's per-kernel depthwise config and preserve nothing there) return it with the
  kernel's zeros and shared values kept;
- ``PReLU``: its slopes (one scale: the converter's int8 ``PRELU`` keeps one for alpha) and
  its output (MTCNN's RNet and ONet, a PReLU after each convolution and Dense);
- ``MultiHeadAttention``: the four projections' kernels (one scale each) and outputs, and the
  attention softmax before and after (as tfmot quantizes a softmax activation). The layer is
  called with several inputs (query, value, ...), which tfmot's wrapper cannot pass on, so
  it is wrapped by ``AttentionQuantizeWrapper`` (a ``QuantizeWrapperV2`` that passes them).

Every class is registered as a Keras serializable (package ``tfcompress``), so a QAT model
saves and loads back (``tfcompress.models.load_model``, ``custom_objects_scope``).
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import tfcompress._compat.attention as _attention
import tfcompress._compat.tfmot as _tfmot
from tfcompress._compat.keras import keras

_q = tfmot.quantization.keras
_register = keras.utils.register_keras_serializable(package="tfcompress")


class _Prefixed:
    """A quantizer whose range variables' names start with ``prefix`` (a layer with several
    kernels or activations would otherwise hold several ``kernel_min``: an .h5 file refuses
    two weights of one name in a layer)."""

    def __init__(self, prefix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, f"{self.prefix}_{name}" if self.prefix else name,
                             layer)


class _LastValue(_Prefixed, _q.quantizers.LastValueQuantizer):
    pass


class _MovingAverage(_Prefixed, _q.quantizers.MovingAverageQuantizer):
    pass


def _weights(prefix: str = ""):
    return _LastValue(prefix, num_bits=8, per_axis=False, symmetric=True, narrow_range=True)


def _activations(prefix: str = ""):
    return _MovingAverage(prefix, num_bits=8, per_axis=False, symmetric=False,
                          narrow_range=False)


@_register
class DepthwiseKernelQuantizer(_q.quantizers.LastValueQuantizer):
    """tfmot's 8-bit conv weight quantizer (symmetric, narrow range, last value) with one range
    per channel of a depthwise kernel ``(h, w, in, multiplier)``: the kernel is fake-quantized
    as ``(h, w, 1, in * multiplier)``, the layout of the converter's DEPTHWISE_CONV_2D filter,
    so the converter folds it into per-channel int8 weights.

    With ``sparsity`` / ``clusters`` (the collaborative schemes) it keeps what the kernel holds
    when the quantizer is built, through the gradients only (the forward pass, and so the
    converted graph, stays the plain per-channel one): the gradient of the kernel's zeros is
    zeroed, so they stay exactly zero; the gradient is averaged over each set of equal weights,
    so a set takes one update and stays equal (the shared values train, as CQAT's centroids).
    tfmot's own preserving registries keep nothing in a depthwise kernel, and the clustering
    variables of theirs would stay in the model (``strip_clustering_cqat`` passes depthwise
    layers by). A kernel with no zeros, or no shared values (all distinct, one value, or more
    than tfmot's 1024 centroids), keeps nothing. The settings are not saved (tfmot's are not
    either): a model loaded back trains as plain per-channel QAT.
    """

    def __init__(self, sparsity: bool = False, clusters: bool = False):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)
        self.sparsity, self.clusters = sparsity, clusters

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[-2]) * int(tensor_shape[-1])
        weights = {key: layer.add_weight(f"{name}_{key[:3]}", shape=(channels,),
                                         initializer=keras.initializers.Constant(bound),
                                         trainable=False)
                   for key, bound in (("min_var", -6.0), ("max_var", 6.0))}
        if self.sparsity or self.clusters:
            kernel = keras.backend.get_value(getattr(layer.layer, name))
            weights.update(_kept(kernel, self.sparsity, self.clusters))
        return weights

    def __call__(self, inputs, training, weights, **kwargs):
        if training and ("sparsity_mask" in weights or "cluster_index" in weights):
            inputs = _keep(inputs, weights.get("sparsity_mask"), weights.get("cluster_index"),
                           weights.get("cluster_count"))
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, tf.concat([shape[:2], [1, shape[2] * shape[3]]], 0))
        return tf.reshape(super().__call__(flat, training, weights, **kwargs), shape)

    def get_config(self) -> dict:
        return {}


MAX_CENTROIDS = 1024
"""tfmot's CQAT keeps no clusters in a kernel of more distinct values (tfmot 0.8.1)."""


def _kept(kernel: np.ndarray, sparsity: bool, clusters: bool) -> dict:
    """What ``DepthwiseKernelQuantizer`` keeps of ``kernel``: its zeros (``sparsity_mask``, 0
    where the kernel is 0) and its sets of equal weights (``cluster_index``, each weight's set,
    and ``cluster_count``); only what the kernel holds."""
    kept = {}
    zeros = kernel == 0
    if sparsity and 0 < zeros.sum() < kernel.size:
        kept["sparsity_mask"] = tf.constant((~zeros).astype(kernel.dtype))
    if clusters:
        values, index = np.unique(kernel, return_inverse=True)
        if 1 < len(values) < kernel.size and len(values) <= MAX_CENTROIDS:
            kept["cluster_index"] = tf.constant(index.reshape(-1).astype(np.int32))
            kept["cluster_count"] = len(values)
    return kept


def _keep(kernel, mask, index, count):
    """``kernel`` as it is, its gradient zero where ``mask`` is 0, then averaged over each
    set of ``index`` (None: not)."""

    @tf.custom_gradient
    def keep(x):
        def grad(upstream):
            if mask is not None:
                upstream = upstream * mask
            if index is None:
                return upstream
            flat = tf.reshape(upstream, [-1])
            shared = tf.math.unsorted_segment_mean(flat, index, count)
            return tf.reshape(tf.gather(shared, index), tf.shape(upstream))

        return tf.identity(x), grad

    return keep(kernel)


class _Stateless(_q.QuantizeConfig):
    """A config with no settings: ``get_config`` is ``{}``; equal configs are equal."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(type(self))

    def get_output_quantizers(self, layer) -> list:
        return []


class _OneWeight(_Stateless):
    """A layer's one weight (attribute ``WEIGHT``, quantized by ``_quantizer``), no activation."""

    WEIGHT = "kernel"

    def _quantizer(self):
        return _weights()

    def get_weights_and_quantizers(self, layer) -> list:
        return [(getattr(layer, self.WEIGHT), self._quantizer())]

    def get_activations_and_quantizers(self, layer) -> list:
        return []

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        setattr(layer, self.WEIGHT, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        pass


class _KernelThenActivation(_OneWeight):
    """A layer's one kernel and the activation after the op."""

    def get_activations_and_quantizers(self, layer) -> list:
        return [(layer.activation, _activations())]

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        layer.activation = quantize_activations[0]


@_register
class Conv1DQuantizeConfig(_KernelThenActivation):
    """Conv1D: the kernel (one scale), the activation after the convolution."""


@_register
class DepthwiseConv2DQuantizeConfig(_KernelThenActivation):
    """DepthwiseConv2D: the kernel per channel, the activation after the convolution; with
    ``sparsity`` / ``clusters`` its zeros / shared values kept (``DepthwiseKernelQuantizer``;
    not saved, as tfmot's preserving quantizers are not)."""

    WEIGHT = "depthwise_kernel"

    def __init__(self, sparsity: bool = False, clusters: bool = False):
        self.sparsity, self.clusters = sparsity, clusters

    def _quantizer(self):
        return DepthwiseKernelQuantizer(self.sparsity, self.clusters)


class _DepthwisePerChannelRegistry(_q.QuantizeRegistry):
    """A tfmot 8-bit registry (default, prune- or cluster-preserving), except DepthwiseConv2D
    (``DepthwiseConv2DQuantizeConfig``, keeping zeros / shared values as told)."""

    def __init__(self, inner, sparsity: bool = False, clusters: bool = False):
        self.inner, self.sparsity, self.clusters = inner, sparsity, clusters

    def supports(self, layer) -> bool:
        return self.inner.supports(layer)

    def get_quantize_config(self, layer):
        if type(layer) is keras.layers.DepthwiseConv2D:
            return DepthwiseConv2DQuantizeConfig(self.sparsity, self.clusters)
        return _tfmot.own_weight_quantizer(self.inner.get_quantize_config(layer))


class DepthwisePerChannelScheme(_q.default_8bit.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme (its layout transforms: BatchNormalization folding, the
    SeparableConv2D split) with depthwise kernels quantized per channel."""

    def get_quantize_registry(self):
        return _DepthwisePerChannelRegistry(super().get_quantize_registry())


class PrunePreservePerChannelScheme(
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
    """tfmot's PQAT scheme with depthwise kernels per channel, their zeros kept (tfmot's
    leaves depthwise kernels per kernel, their zeros free to move)."""

    def get_quantize_registry(self):
        return _DepthwisePerChannelRegistry(super().get_quantize_registry(), sparsity=True)


class ClusterPreservePerChannelScheme(
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme):
    """tfmot's CQAT (``preserve_sparsity=False``) or PCQAT scheme with depthwise kernels per
    channel, their shared values (and with ``preserve_sparsity``, their zeros) kept."""

    def __init__(self, preserve_sparsity: bool = True):
        super().__init__(preserve_sparsity=preserve_sparsity)
        self.keep_zeros = preserve_sparsity

    def get_quantize_registry(self):
        return _DepthwisePerChannelRegistry(super().get_quantize_registry(),
                                            sparsity=self.keep_zeros, clusters=True)


@_register
class EmbeddingQuantizeConfig(_OneWeight):
    """Embedding: the table with one scale (its lookups are table rows: no output range)."""

    WEIGHT = "embeddings"


@_register
class LayerNormalizationQuantizeConfig(_Stateless):
    """LayerNormalization: its output (the converter decomposes it into float-free ops)."""

    def get_weights_and_quantizers(self, layer) -> list:
        return []

    def get_activations_and_quantizers(self, layer) -> list:
        return []

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        pass

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        pass

    def get_output_quantizers(self, layer) -> list:
        return [_activations()]


@_register
class PReLUAlphaQuantizer(_q.quantizers.Quantizer):
    """PReLU's slopes on the int8 grid the converter deploys: ``round(alpha / scale) * scale``
    with one ``scale = max|alpha| / 127`` (straight-through gradient).

    Written with plain ops, not tfmot's fake-quant op: the converter fuses PReLU's graph
    (``relu(x) - alpha * relu(-x)``) into a ``PRELU`` only around a constant alpha, and after
    a fake-quant op it left the ``PRELU`` float (TF 2.21). These ops fold into a constant on the
    grid, which the converter quantizes with the same scale: the same integers.
    """

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        def snapped():
            scale = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(inputs)), 1e-9) / 127.0)
            grid = tf.clip_by_value(tf.round(inputs / scale), -127.0, 127.0) * scale
            return inputs + tf.stop_gradient(grid - inputs)

        # Outside training the slopes pass as they are: the converter rounds them onto this same
        # grid (the same integers), and with the rounding ops in the inference graph it writes
        # the flatbuffer without its signature (TF 2.21).
        if training is None or isinstance(training, bool):
            return snapped() if training else inputs
        return tf.cond(tf.cast(training, tf.bool), snapped, lambda: tf.identity(inputs))

    def get_config(self) -> dict:
        return {}

    def __eq__(self, other) -> bool:
        return isinstance(other, PReLUAlphaQuantizer)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)


@_register
class PReLUQuantizeConfig(_OneWeight):
    """PReLU: its slopes ``alpha`` (``PReLUAlphaQuantizer``) and its output.

    What the converter deploys for an int8 ``PRELU`` (read back from its flatbuffer, TF 2.21):
    the alpha tensor int8 with one scale ``max|alpha| / 127`` and zero point 0, whatever
    ``shared_axes`` (MTCNN's ``(1, 1, channels)`` after a convolution, ``(units,)`` after a
    Dense), and the output its own asymmetric int8 range; its input is the preceding layer's
    output, quantized there.
    """

    WEIGHT = "alpha"

    def _quantizer(self):
        return PReLUAlphaQuantizer()

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        # Set past Keras' attribute tracking: set the usual way, a tensor (training) drops
        # ``alpha`` from the PReLU's own weights and the variable (inference, see
        # ``PReLUAlphaQuantizer``) puts it back, so the weights a ``.keras`` file saves by
        # position would depend on the last call. Here ``alpha`` stays among them.
        object.__setattr__(layer, self.WEIGHT, quantize_weights[0])

    def get_output_quantizers(self, layer) -> list:
        return [_activations()]


@_register
class AttentionQuantizeConfig(_Stateless):
    """MultiHeadAttention: the four projections (kernels, outputs) and the attention softmax."""

    def get_weights_and_quantizers(self, layer) -> list:
        _attention.build_projections(layer)
        return [(dense.kernel, _weights(dense.name)) for dense in _attention.projections(layer)]

    def get_activations_and_quantizers(self, layer) -> list:
        original = _attention.softmax(layer)

        def softmax(scores, mask=None):  # named so tfmot quantizes before and after it
            return original(scores, mask)

        return ([(dense.activation, _activations(dense.name))
                 for dense in _attention.projections(layer)] + [(softmax, _activations("softmax"))])

    def set_quantize_weights(self, layer, quantize_weights) -> None:
        for dense, weight in zip(_attention.projections(layer), quantize_weights):
            dense.kernel = weight

    def set_quantize_activations(self, layer, quantize_activations) -> None:
        *projected, softmax = quantize_activations
        for dense, activation in zip(_attention.projections(layer), projected):
            dense.activation = activation
        _attention.set_softmax(layer, softmax)


@_register
class AttentionQuantizeWrapper(_q.QuantizeWrapperV2):
    """A ``QuantizeWrapperV2`` for ``MultiHeadAttention``: passes value, key and the mask on.

    tfmot's wrapper calls ``layer.call(inputs, training=..., **kwargs)``, so a second positional
    input (``attention(x, x)``) would arrive as ``training``.
    """

    def build(self, input_shape):
        # Before tfmot's build lists the layer's weights: the same order as the float layer's.
        _attention.build_projections(self.layer)
        super().build(input_shape)

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
             training=None, use_causal_mask=False):
        return super().call(query, training=training, value=value, key=key,
                            attention_mask=attention_mask,
                            return_attention_scores=return_attention_scores,
                            use_causal_mask=use_causal_mask)


CONFIGS = {
    keras.layers.Conv1D: Conv1DQuantizeConfig,
    keras.layers.Embedding: EmbeddingQuantizeConfig,
    keras.layers.LayerNormalization: LayerNormalizationQuantizeConfig,
    keras.layers.MultiHeadAttention: AttentionQuantizeConfig,
    keras.layers.PReLU: PReLUQuantizeConfig,
}
"""Layer class (exactly: a subclass may hold other weights) -> its QuantizeConfig class."""

CUSTOM_OBJECTS = {cls.__name__: cls for cls in (
    *CONFIGS.values(), AttentionQuantizeWrapper, DepthwiseConv2DQuantizeConfig,
    DepthwiseKernelQuantizer, PReLUAlphaQuantizer)}
"""The classes here by name, for ``custom_object_scope`` (also registered as serializables)."""


def config_for(layer) -> Optional[_q.QuantizeConfig]:
    """A new QuantizeConfig of this module for ``layer``, or None."""
    config = CONFIGS.get(type(layer))
    return config() if config is not None else None


def wrap(layer):
    """``layer`` annotated for ``quantize_apply`` with its config, or already wrapped (which
    ``quantize_apply`` keeps as it is): attention by ``AttentionQuantizeWrapper``; an Embedding
    by ``QuantizeWrapperV2``, since an annotated first layer makes tfmot fake-quantize the
    model's input, here integer token ids."""
    config = config_for(layer)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        if not _attention.built(layer):
            raise ValueError(f"attention layer {layer.name!r} has no weights yet (call it once)")
        return AttentionQuantizeWrapper(layer, config)
    if isinstance(layer, keras.layers.Embedding):
        return _q.QuantizeWrapperV2(layer, config)
    return _q.quantize_annotate_layer(layer, config)
