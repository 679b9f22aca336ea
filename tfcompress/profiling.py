"""Model size and cost figures: parameters and multiply-accumulates of a Keras model, raw and gzip
bytes of a flatbuffer.

``profile(model)`` is ``tfcompress.profile`` (also ``tfcompress.profile_model``).
"""

import gzip

import numpy as np

from tfcompress import errors
import tfcompress._compat.functional as _functional
from tfcompress._compat.keras import keras, unwrap
from tfcompress.keras3 import ensure_keras2


def tflite_sizes(flatbuffer: bytes) -> dict:
    """{'bytes': raw size, 'gzip_bytes': size after gzip -9}: gzip shows what sparsity and
    clustering save, since the flatbuffer stores zeros and shared values densely."""
    return {"bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, 9, mtime=0))}


def _prod(shape) -> int:
    return int(np.prod([int(d) for d in shape], dtype=np.int64))


def _macs(layer, in_shape, out_shape) -> int:
    """Multiply-accumulates of one call of ``layer`` for one sample (0 for layers without any)."""
    layer = unwrap(layer)  # tfmot wrappers (pruning, clustering, QAT): the inner layer works
    cls = type(layer).__name__
    if cls == "Dense":
        return _prod(in_shape[1:-1]) * _prod(layer.kernel.shape)
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        return _prod(out_shape[1:-1]) * _prod(layer.kernel.shape)
    if cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return _prod(in_shape[1:-1]) * _prod(layer.kernel.shape)
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        return _prod(out_shape[1:-1]) * _prod(layer.depthwise_kernel.shape)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        spatial = _prod(out_shape[1:-1])
        return spatial * (_prod(layer.depthwise_kernel.shape) + _prod(layer.pointwise_kernel.shape))
    return 0


def _shapes(layer, index: int):
    ins, outs = layer.get_input_shape_at(index), layer.get_output_shape_at(index)
    first = lambda s: s[0] if isinstance(s, list) else s  # noqa: E731
    return tuple(first(ins) or ()), tuple(first(outs) or ())


def profile(model: keras.Model) -> dict:
    """Parameters and multiply-accumulates (MACs) per layer and in total, for one sample.

    MACs count the multiply-accumulates of Dense, Conv, transposed Conv, DepthwiseConv and
    SeparableConv layers (what dominates inference time); element-wise layers (activations,
    BatchNormalization, pooling, Add) count as 0. Nested models are profiled layer by layer.

    Args:
        model: a built tf_keras model with fixed input dimensions (batch aside).

    Returns:
        {"layers": [{"name", "class", "params", "macs"}, ...], "params": total parameters,
        "trainable_params": trainable ones, "macs": total MACs}.

    Raises:
        ModelError: an unbuilt model or one with unknown (None) spatial input dimensions.
    """
    model = ensure_keras2(model)
    if not model.built:
        raise errors.ModelError(f"model {model.name!r} is not built; give it an Input first")
    rows = []
    _profile_layers(model, rows, prefix="")
    trainable = sum(_prod(w.shape) for w in model.trainable_weights)
    return {"layers": rows, "params": int(model.count_params()), "trainable_params": trainable,
            "macs": int(sum(r["macs"] for r in rows))}


def _calls(model, layer) -> list:
    """Indices of ``layer``'s call nodes that belong to ``model``'s graph.

    A layer keeps a node for every call in every graph it was ever called in: a model cloned
    with its layers (``strip``) or a layer reused across models holds nodes of other graphs.
    Only the model's own nodes count; a layer shared inside the model counts once per call.
    The model's own node keys (``"<layer name>_ib-<node index>"``) are private tf_keras state,
    read by ``_compat.functional.own_node_keys``.
    """
    nodes = _functional.call_count(layer)
    own = _functional.own_node_keys(model)
    if own is None:  # a subclassed model: no graph, one call each
        return list(range(min(nodes, 1))) or [0]
    calls = [i for i in range(nodes) if f"{layer.name}_ib-{i}" in own]
    return calls or [0]


def _profile_layers(model, rows: list, prefix: str) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _profile_layers(layer, rows, prefix=f"{prefix}{layer.name}/")
            continue
        macs = 0
        if type(layer).__name__ != "InputLayer":
            for i in _calls(model, layer):
                try:
                    in_shape, out_shape = _shapes(layer, i)
                except (AttributeError, RuntimeError, ValueError):
                    in_shape, out_shape = layer.input_shape, layer.output_shape
                if any(d is None for d in tuple(in_shape[1:]) + tuple(out_shape[1:])):
                    raise errors.ModelError(
                        f"layer {layer.name!r} has unknown dimensions {in_shape} -> {out_shape}; "
                        "accepted: a model built with a fixed input shape")
                macs += _macs(layer, in_shape, out_shape)
        rows.append({"name": prefix + layer.name, "class": type(layer).__name__,
                     "params": int(layer.count_params()), "macs": int(macs)})
