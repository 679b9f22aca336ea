"""Model size and cost figures: parameters and multiply-accumulates of a Keras model, raw and gzip
bytes of a flatbuffer.

``profile(model)`` is ``tfcompress.profile`` (also ``tfcompress.profile_model``).
"""

import gzip

import numpy as np

from tfcompress import errors, wrappers
import tfcompress._compat.litert as _litert
import tfcompress._compat.functional as _functional
from tfcompress._compat.keras import call_input_shapes, keras, unwrap
from tfcompress.keras3 import ensure_keras2


def tflite_sizes(flatbuffer: bytes) -> dict:
    """{'bytes': raw size, 'gzip_bytes': size after gzip -9}: gzip shows what sparsity and
    clustering save, since the flatbuffer stores zeros and shared values densely."""
    return {"bytes": len(flatbuffer), "gzip_bytes": len(gzip.compress(flatbuffer, 9, mtime=0))}


def float_weights(flatbuffer: bytes) -> list:
    """[(tensor name, share), ...] of the float32 constant tensors of a flatbuffer (weights a
    quantizing mode left in float), with their share of the elements of all its constant
    tensors; largest first."""
    interp = _litert.interpreter(flatbuffer, delegates=False, allocate=False)
    produced = {i for op in _litert.ops(interp) for i in op["outputs"]}
    produced |= {d["index"] for d in interp.get_input_details()}
    types = _litert.tensor_types(flatbuffer)  # the interpreter shows int4/int2 as int8
    sizes, floats = 0, []
    for t in interp.get_tensor_details():
        if t["index"] in produced:
            continue
        size = _prod(t["shape"])
        sizes += size
        if (types.get(t["index"]) or np.dtype(t["dtype"]).name) == "float32":
            floats.append((t["name"], size))
    return sorted(((name, size / sizes) for name, size in floats), key=lambda item: -item[1])


def _prod(shape) -> int:
    return int(np.prod([int(d) for d in shape], dtype=np.int64))


_GATES = {"LSTMCell": 4, "GRUCell": 3, "SimpleRNNCell": 1}


def _cell_step_macs(cell, features: int) -> int:
    """MACs of one timestep of a recurrent cell fed ``features`` values.

    Each gate computes ``W x + U h + b``: ``in*u + u*u`` multiply-accumulates plus ``u`` for its
    bias (the formula issue #25 states), so LSTM ``4*(in*u + u*u + u)``, GRU ``3*(in*u + u*u +
    u)``, SimpleRNN ``in*u + u*u + u``. A stack of cells feeds each one the previous width.
    """
    cells = getattr(cell, "cells", None)
    if cells is not None:  # StackedRNNCells
        total = 0
        for inner in cells:
            total += _cell_step_macs(inner, features)
            features = int(inner.units)
        return total
    gates = _GATES.get(type(cell).__name__)
    if gates is None:
        return 0
    u = int(cell.units)
    return gates * (features * u + u * u + u)


def _rnn_macs(layer, in_shape) -> int:
    """An RNN layer (LSTM/GRU/SimpleRNN/RNN) over ``in_shape`` = (batch, timesteps, in): the
    cell's step MACs times the timesteps."""
    return int(in_shape[1]) * _cell_step_macs(layer.cell, int(in_shape[-1]))


def _attention_macs(layer, shapes) -> int:
    """MultiHeadAttention with query (B, Tq, dq) and value (B, Tv, dv) (key = value unless given):
    ``Tq*|Wq| + Tv*|Wk| + Tv*|Wv|`` for the projections, ``H*Tq*Tv*key_dim`` for the scores,
    ``H*Tq*Tv*value_dim`` for the weighted sum of the values and ``Tq*|Wo|`` for the output
    projection (|W|: the kernel's size, ``dq*H*key_dim`` for the query; softmax and biases
    count 0)."""
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    tq, tv = _prod(query[1:-1]), _prod(value[1:-1])
    sizes = {name.rsplit("/", 2)[-2]: k.size for name, k in wrappers.layer_kernels(layer).items()}
    config = layer.get_config()
    heads, key_dim = int(config["num_heads"]), int(config["key_dim"])
    value_dim = int(config.get("value_dim") or key_dim)
    return (tq * sizes.get("query", 0) + tv * sizes.get("key", 0) + tv * sizes.get("value", 0)
            + heads * tq * tv * (key_dim + value_dim) + tq * sizes.get("attention_output", 0))


def _einsum_macs(equation: str, in_shape, kernel_shape) -> int:
    """EinsumDense: the product of the sizes of every index in ``equation`` (each output element
    sums over the contracted indices), the batch index counting 1."""
    lhs = equation.split("->")[0]
    sizes = {}
    for spec, shape in zip(lhs.split(","), ((1,) + tuple(in_shape[1:]), tuple(kernel_shape))):
        if "..." in spec:
            head, tail = spec.split("...")
            extra = len(shape) - len(head) - len(tail)
            spec = head + "".join(chr(0x100 + i) for i in range(extra)) + tail
        for letter, dim in zip(spec, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(dim or 1))
    return _prod(sizes.values())


def _macs(layer, in_shape, out_shape, shapes=()) -> int:
    """Multiply-accumulates of one call of ``layer`` for one sample (0 for layers without any).

    ``shapes``: every input's shape of the call (MultiHeadAttention's query, value, key)."""
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
    if cls == "EinsumDense":
        return _einsum_macs(layer.get_config()["equation"], in_shape, layer.kernel.shape)
    if cls == "MultiHeadAttention":
        return _attention_macs(layer, list(shapes) or [in_shape])
    if cls == "Bidirectional":
        return _rnn_macs(layer.forward_layer, in_shape) + _rnn_macs(layer.backward_layer, in_shape)
    if isinstance(getattr(layer, "cell", None), keras.layers.Layer):  # LSTM, GRU, SimpleRNN, RNN
        return _rnn_macs(layer, in_shape)
    return 0


def _shapes(layer, index: int):
    ins, outs = layer.get_input_shape_at(index), layer.get_output_shape_at(index)
    first = lambda s: s[0] if isinstance(s, list) else s  # noqa: E731
    return tuple(first(ins) or ()), tuple(first(outs) or ())


def profile(model: keras.Model) -> dict:
    """Parameters and multiply-accumulates (MACs) per layer and in total, for one sample.

    MACs count the multiply-accumulates of Dense, Conv1D/2D/3D, transposed Conv,
    DepthwiseConv, SeparableConv, EinsumDense, MultiHeadAttention (projections, scores and
    weighted values) and recurrent layers (LSTM ``4*(in*u + u*u + u)``, GRU ``3*(...)``,
    SimpleRNN ``1*(...)`` per timestep, both directions of a Bidirectional): what dominates
    inference time; embeddings (a lookup) and element-wise layers (activations,
    BatchNormalization, LayerNormalization, pooling, Add) count as 0 MACs, their weights
    (gamma/beta, statistics) as parameters. Nested models are profiled layer by layer.

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
                macs += _macs(layer, in_shape, out_shape, call_input_shapes(layer, i))
        rows.append({"name": prefix + layer.name, "class": type(layer).__name__,
                     "params": int(layer.count_params()), "macs": int(macs)})
