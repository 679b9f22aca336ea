"""Quantization-aware training over tfmot, and its collaborative schemes (PQAT, CQAT, PCQAT).

What this adds to ``tfmot.quantization.keras``: one call for the whole model or chosen layers
(annotate, then apply), unsupported layers listed in one clear error that says how to leave
them out, the collaborative scheme picked by name, and the input stripped of pruning and
clustering wrappers first (the collaborative schemes work on the stripped model: that is how
tfmot's collaborative optimization is meant to be chained), and QuantizeConfigs for the layers
tfmot's 8-bit registry lacks (``qat_configs``: Conv1D, Embedding, LayerNormalization,
MultiHeadAttention, PReLU), so Transformer, 1-D and MTCNN-style models train quantize-aware end
to end; a residual written as an operator (``h + a``, a TFOpLambda tfmot cannot quantize) is
rewritten as a ``keras.layers.Add`` first (``adds_as_layers``: same outputs). Recurrent
layers (LSTM, GRU, SimpleRNN, Bidirectional: tfmot has no QAT for them) stay float with one
warning naming them; ``convert(qat_model, "int8", representative_data=...)`` then quantizes
them post-training.
"""

import re
from typing import Optional

import tensorflow_model_optimization as tfmot
from absl import logging

from tfcompress import errors, wrappers
import tfcompress.graph as graphs
import tfcompress._compat.tfmot as _tfmot
import tfcompress.training.qat_configs as qat_configs
from tfcompress._compat.keras import keras
from tfcompress.wrappers import is_quantize_aware  # noqa: F401  (re-exported)

PRESERVE = (None, "sparsity", "clusters", "sparsity_and_clusters")
_q = tfmot.quantization.keras


def scheme(preserve: Optional[str] = None):
    """tfmot's quantize scheme for ``preserve``: default 8-bit, PQAT, CQAT or PCQAT, each with
    depthwise kernels per channel, as the converter deploys them (and with the collaborative
    schemes, their zeros and shared values kept: ``qat_configs.DepthwiseKernelQuantizer``)."""
    if preserve is None:
        return qat_configs.DepthwisePerChannelScheme()
    if preserve == "sparsity":
        return qat_configs.PrunePreservePerChannelScheme()
    if preserve == "clusters":
        return qat_configs.ClusterPreservePerChannelScheme(preserve_sparsity=False)
    if preserve == "sparsity_and_clusters":
        return qat_configs.ClusterPreservePerChannelScheme(preserve_sparsity=True)
    raise errors.ConfigError(errors.unknown("preserve", preserve, PRESERVE))


# Not in tfmot's registry but handled by its layout transforms (folded into the Conv2D,
# DepthwiseConv2D or Dense before them); tfmot itself reports a BatchNormalization it cannot fold.
_FOLDED = (keras.layers.BatchNormalization,)

# Not in tfmot's registry either, but split by its layout transforms into a DepthwiseConv2D and
# a Conv2D, which it quantizes (what the converter makes of a SeparableConv2D too).
_TRANSFORMED = (keras.layers.SeparableConv2D,)


# Kept float by quantize_aware (one warning) and quantized post-training at conversion.
_RECURRENT = (keras.layers.RNN, keras.layers.Bidirectional)


def _reserve_names(model) -> None:
    """Moves Keras' default layer names past the model's ``conv2d_N``/``depthwise_conv2d_N``:
    tfmot's SeparableConv2D transform makes its two layers with default names, and one equal
    to a layer of the model breaks the rebuilt graph (``Inputs have incompatible shapes``).
    Unnamed throw-away layers advance the counters (the public way)."""
    for cls in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D):
        prefix = "depthwise_conv2d" if cls is keras.layers.DepthwiseConv2D else "conv2d"
        used = [int(m.group(1) or 0) for l in model.layers
                for m in [re.fullmatch(prefix + r"(?:_(\d+))?", l.name)] if m]
        while used:
            m = re.fullmatch(prefix + r"(?:_(\d+))?", cls(1, 1).name if cls is keras.layers.Conv2D
                             else cls(1).name)
            if m is None or int(m.group(1) or 0) > max(used):
                break


_ADDS = ("__operators__.add", "math.add")  # TFOpLambda functions: ``h + a``, ``tf.add(h, a)``


def _tensor_add(node: graphs.Node) -> bool:
    """Whether a graph node is a TFOpLambda adding two Keras tensors, nothing else passed."""
    if node.cls != "TFOpLambda" or node.config.get("function") not in _ADDS or node.shared \
            or len(node.inputs) != 2 or len(node.call) != 1:
        return False
    kwargs = node.call[0][3] if len(node.call[0]) > 3 else {}
    return isinstance(kwargs, dict) and set(kwargs) <= {"y", "name"} \
        and tuple(kwargs.get("y", ())[:3]) == node.inputs[1]


def adds_as_layers(model: keras.Model) -> keras.Model:
    """A copy where each TFOpLambda that adds two Keras tensors (``h + a``, ``tf.add(h, a)``,
    ``tf.math.add``: a residual written as an operator) is a ``keras.layers.Add`` of the same
    name reading the same tensors: same outputs. tfmot quantizes an ``Add`` (its output, an
    int8 ``ADD`` after conversion) and refuses a TFOpLambda. Other TFOpLambdas stay as they
    are; ``model`` itself is returned when there is nothing to rewrite."""
    if not any(type(l).__name__ == "TFOpLambda" for l in model.layers):
        return model
    graph = graphs.read(model)
    adds = [n for n in graph.nodes if _tensor_add(n)]
    if not adds:
        return model
    for node in adds:
        entry = next(e for e in graph.entries if e["config"]["name"] == node.name)
        entry["class_name"] = "Add"
        entry["config"] = {"name": node.name, "trainable": node.config.get("trainable", True),
                           "dtype": node.config.get("dtype", "float32")}
        entry["inbound_nodes"] = [[[*key, {}] for key in node.inputs]]
    rebuilt = graphs.rebuild(model, graph.config, {})
    logging.info("quantize_aware: TFOpLambda adds %s rewritten as Add layers",
                 [n.name for n in adds])
    return rebuilt


def _covered(layer) -> bool:
    return _tfmot.quantizable(layer) or qat_configs.config_for(layer) is not None


def unsupported_layers(model, layers: wrappers.LayerSelector = None) -> dict:
    """{name: class} of the selected layers neither the 8-bit scheme nor ``qat_configs`` can
    quantize (recurrent layers, which stay float, are not listed)."""
    match = wrappers.layer_matcher(layers)
    return {l.name: _kind(l) for l in model.layers
            if match(l) and not isinstance(l, (keras.layers.InputLayer,) + _FOLDED + _TRANSFORMED
                                           + _RECURRENT)
            and not _covered(l)}


def _kind(layer) -> str:
    """The layer's class name; a TFOpLambda with its function (``TFOpLambda(nn.relu)``)."""
    name = type(layer).__name__
    function = layer.get_config().get("function") if name == "TFOpLambda" else None
    return f"{name}({function})" if isinstance(function, str) else name


def float_layers(model, layers: wrappers.LayerSelector = None) -> list:
    """Names of the selected layers QAT keeps float: recurrent layers (no QAT in tfmot)."""
    match = wrappers.layer_matcher(layers)
    return [l.name for l in model.layers if match(l) and isinstance(l, _RECURRENT)]


def _annotate(layer):
    if qat_configs.config_for(layer) is not None:
        return qat_configs.wrap(layer)
    return _q.quantize_annotate_layer(layer)


def quantize_aware(
    model,
    *,
    preserve: Optional[str] = None,
    layers: wrappers.LayerSelector = None,
) -> keras.Model:
    """Wraps a trained model for quantization-aware training (QAT) with int8 fake quantization.

    Fine-tune the result briefly, then convert it with ``tfcompress.convert(model, "int8", ...)``;
    the QAT wrappers stay for the converter (``strip`` keeps them). The input model is not
    modified.

    Args:
        model: a trained Sequential or Functional tf_keras model. Pruning and clustering
            wrappers are stripped first; TFOpLambda adds of two tensors become ``Add`` layers
            (other TFOpLambdas are refused, named with their function).
        preserve: ``None`` (plain QAT); ``"sparsity"`` (PQAT: zeros stay zero);
            ``"clusters"`` (CQAT: shared weights stay shared); ``"sparsity_and_clusters"``
            (PCQAT). The collaborative schemes are tfmot's ``experimental.combine`` ones,
            except for depthwise kernels (tfmot's quantize them with one range and keep
            nothing there): per channel, their zeros and shared values kept.
        layers: quantize only these layers (see ``tfcompress.prune`` for the forms); the
            others stay float. Use it to leave out layers the scheme cannot handle.

    Returns:
        A QAT model (compile and fit it). Recurrent layers stay float (one warning names
        them); the int8 conversion quantizes them post-training from representative data.

    Raises:
        ConfigError: unknown ``preserve`` or a selection that matches nothing.
        ModelError: a subclassed model, or layers the 8-bit scheme cannot quantize (listed,
            with the ``layers=`` option to leave them out).
    """
    quant_scheme = scheme(preserve)
    model = adds_as_layers(wrappers.check_functional(wrappers.strip(model), "quantize_aware"))
    if layers is None:
        bad = unsupported_layers(model)
        if bad:
            ok = [l.name for l in model.layers if l.name not in bad and l.weights]
            raise errors.ModelError(
                f"the 8-bit quantization scheme cannot handle layers {bad}; leave them out "
                f"with layers=, e.g. layers={ok!r} (the rest stays float), or give them a "
                "tfmot QuantizeConfig with tfmot.quantization.keras.quantize_annotate_layer")
        chosen = [l.name for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    else:
        match = wrappers.layer_matcher(layers)
        chosen = [l.name for l in model.layers
                  if match(l) and not isinstance(l, keras.layers.InputLayer)]
        if not chosen:
            raise errors.ConfigError(
                f"layers={layers!r} selects no layer; layers: "
                + ", ".join(l.name for l in model.layers))
        bad = unsupported_layers(model, layers)
        if bad:
            raise errors.ModelError(
                f"the 8-bit quantization scheme cannot handle the selected layers {bad}; "
                "leave them out of layers=")
    kept = float_layers(model, chosen)
    if kept:
        logging.warning(
            "quantize_aware keeps layers %s float (tfmot has no quantization-aware training for "
            "recurrent layers); convert(model, 'int8', representative_data=...) quantizes them "
            "post-training", kept)
    annotated = wrappers.wrap_layers(model, [n for n in chosen if n not in kept], _annotate)
    if any(isinstance(l, _TRANSFORMED) for l in model.layers):
        _reserve_names(model)
    try:
        # tfmot rebuilds the model from its config: make the model's own layer classes known.
        own = {type(l).__name__: type(l) for l in model.layers}
        with _q.quantize_scope(qat_configs.CUSTOM_OBJECTS), \
                keras.utils.custom_object_scope(own):
            qat = _q.quantize_apply(annotated, quant_scheme)
    except (ValueError, RuntimeError) as e:
        raise errors.ModelError(f"tfmot cannot quantize model {model.name!r}: {e}") from e
    logging.info("quantization-aware model, preserve=%s", preserve)
    return qat
