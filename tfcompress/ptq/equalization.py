"""BatchNormalization folding and cross-layer equalization (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction").

``fold_batchnorm(model)`` returns a new plain Keras model where every BatchNormalization that
follows a Conv2D, Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D (into its pointwise
kernel) or Dense alone is folded into that layer's kernel and bias; the layer is rebuilt from the
model's config, so the result is an ordinary functional model that saves, converts and quantizes
like the original. The folded kernels are what the conversion quantizes, so learned rounding
(``tfcompress.ptq.rounding``) must start from them.

``equalize(model)`` folds, then rescales the output channels of one layer and the matching input
channels of the next, for every pair joined by a path that commutes with a positive per-channel
scale (ReLU, identity, max pooling, zero padding, global average pooling, dropout, 2-D or 1-D,
a Flatten in front of a Dense) and for the depthwise/pointwise pair inside each SeparableConv2D.
With ranges ``r1`` (per output channel of the first layer) and ``r2`` (per input channel of the
second), ``s = sqrt(r1 / r2)`` makes both ``sqrt(r1 r2)``: per-tensor activation ranges and
per-channel weight ranges become more equal, and the float outputs do not change. ReLU6 does not
commute with a scale; pairs across it are left alone unless ``relu6="relu"`` (AIMET's choice:
ReLU6 becomes ReLU, which changes the outputs wherever an activation exceeded 6).
"""

from typing import Optional

import numpy as np
from absl import logging

import tfcompress.graph as graphs
from tfcompress import errors
from tfcompress._compat.keras import keras
from tfcompress.ptq.grids import layer_kind

RELU6 = ("keep", "relu")
# Kinds never paired: other layers, and transposed convolutions (not equalized, only folded).
_UNPAIRED = (None, "transpose")
# Layers between a pair that commute with a positive per-channel scale.
_PASS = ("MaxPooling2D", "ZeroPadding2D", "GlobalAveragePooling2D", "SpatialDropout2D",
         "MaxPooling1D", "ZeroPadding1D", "GlobalAveragePooling1D", "SpatialDropout1D", "Dropout")


# ---------------------------------------------------------------- BatchNormalization folding

def _bn_factors(bn) -> tuple:
    """(a, c) of the BatchNormalization's per-channel map ``y = a x + c`` at inference."""
    var = bn.moving_variance.numpy().astype(np.float64)
    mean = bn.moving_mean.numpy().astype(np.float64)
    gamma = bn.gamma.numpy().astype(np.float64) if bn.gamma is not None else 1.0
    beta = bn.beta.numpy().astype(np.float64) if bn.beta is not None else 0.0
    a = gamma / np.sqrt(var + bn.epsilon)
    return a, beta - a * mean


def _folded_weights(layer, a: np.ndarray, c: np.ndarray) -> list:
    """[kernel(s)..., bias] of ``layer`` followed by the map ``y = a x + c``."""
    kind = layer_kind(layer)
    bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else 0.0
    new_bias = (a * bias + c).astype(np.float32)
    if kind == "separable":
        pw = layer.pointwise_kernel.numpy() * a
        return [layer.depthwise_kernel.numpy(), pw.astype(np.float32), new_bias]
    if kind == "depthwise":
        k = layer.depthwise_kernel.numpy()
        return [(k * a.reshape(k.shape[2], k.shape[3])).astype(np.float32), new_bias]
    if kind == "transpose":  # (height, width, out, in)
        return [(layer.kernel.numpy() * a.reshape(-1, 1)).astype(np.float32), new_bias]
    return [(layer.kernel.numpy() * a).astype(np.float32), new_bias]


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A new model with each BatchNormalization folded into the layer it follows.

    A BatchNormalization is folded when it normalizes the last axis and reads the output of a
    Conv2D, Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D or Dense that has a linear
    activation and no other reader; the layer gets ``use_bias=True`` and the folded kernel and
    bias (float64 maths). Other BatchNormalization layers stay. A model without any to fold comes
    back as a copy.

    Raises:
        ModelError: a subclassed model.
    """
    model = graphs.functional(model)
    graph = graphs.read(model)
    users = graphs.consumers(graph)
    nodes = {n.name: n for n in graph.nodes}
    weights, moves = {}, {}
    for node in graph.nodes:
        if node.cls != "BatchNormalization" or node.shared or len(node.inputs) != 1:
            continue
        bn = model.get_layer(node.name)
        axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
        rank = len(bn.input_shape)
        if list(axis) not in ([rank - 1], [-1]):
            continue
        src = node.inputs[0][0]
        prev = model.get_layer(src)
        if (layer_kind(prev) is None or users[src] != [node.name]
                or nodes[src].config.get("activation", "linear") != "linear"):
            continue
        a, c = _bn_factors(bn)
        weights[src] = _folded_weights(prev, a, c)
        nodes[src].config["use_bias"] = True
        moves[(node.name, 0, 0)] = node.inputs[0]
    dropped = {key[0] for key in moves}
    graph.config["layers"] = [e for e in graph.entries if e["config"]["name"] not in dropped]
    graphs.rewire(graph.config, moves)
    logging.info("fold_batchnorm: %d BatchNormalization layers folded", len(dropped))
    return graphs.rebuild(model, graph.config, weights)


# ---------------------------------------------------------------- pairs

def _is_relu(cls: str, cfg: dict) -> Optional[str]:
    """"relu" / "relu6" / "identity" for an activation layer that may sit between a pair."""
    if cls == "Activation":
        act = cfg.get("activation")
        return {"relu": "relu", "linear": "identity", "relu6": "relu6"}.get(act)
    if cls == "ReLU":
        if cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            return None
        mv = cfg.get("max_value")
        if mv is None:
            return "relu"
        return "relu6" if float(mv) == 6.0 else None
    return None


def find_pairs(model: keras.Model, relu6: str = "keep") -> list:
    """Equalizable pairs ``(first, second, flatten_groups, relu6_layers)`` of ``model``.

    ``flatten_groups`` is the number of spatial positions a Flatten between them repeats each
    channel over (1 without one); ``relu6_layers`` names ReLU6 layers on the path (only with
    ``relu6="relu"``).
    """
    graph = graphs.read(model)
    users = graphs.consumers(graph)
    nodes = {n.name: n for n in graph.nodes}
    pairs = []
    for e in graph.entries:
        if e["config"]["name"] not in nodes:
            continue
        first = model.get_layer(e["config"]["name"])
        if layer_kind(first) in _UNPAIRED:
            continue
        act = e["config"].get("activation", "linear")
        if act not in ("linear", "relu"):
            continue
        name, groups, relu6s = first.name, 1, []
        while True:
            if len(users[name]) != 1 or users[name][0] is None:
                break
            nxt = nodes[users[name][0]]
            if len(nxt.inputs) != 1 or nxt.shared:
                break
            nxt_layer = model.get_layer(nxt.name)
            kind = _is_relu(nxt.cls, nxt.config)
            if kind == "relu6":
                if relu6 != "relu":
                    break
                relu6s.append(nxt.name)
            elif kind is None and nxt.cls == "Flatten":
                shape = nxt_layer.input_shape
                groups *= int(np.prod(shape[1:-1]))
            elif kind is None and nxt.cls not in _PASS:
                if layer_kind(nxt_layer) not in _UNPAIRED and (
                        groups == 1 or layer_kind(nxt_layer) == "dense"):
                    pairs.append((first.name, nxt.name, groups, tuple(relu6s)))
                break
            name = nxt.name
    return pairs


# ---------------------------------------------------------------- ranges and scales

def _out_range(layer) -> np.ndarray:
    kind = layer_kind(layer)
    if kind == "separable":
        return np.max(np.abs(layer.pointwise_kernel.numpy()), axis=(0, 1, 2))
    if kind == "depthwise":
        k = layer.depthwise_kernel.numpy()
        return np.max(np.abs(k), axis=(0, 1)).reshape(-1)
    return np.max(np.abs(layer.kernel.numpy()), axis=tuple(range(layer.kernel.shape.rank - 1)))


def _scale_out(layer, s: np.ndarray) -> None:
    """Divides the layer's output channels (kernel and bias) by ``s``."""
    kind = layer_kind(layer)
    if kind == "separable":
        layer.pointwise_kernel.assign(layer.pointwise_kernel.numpy() / s)
    elif kind == "depthwise":
        k = layer.depthwise_kernel.numpy()
        layer.depthwise_kernel.assign(k / s.reshape(k.shape[2], k.shape[3]))
    else:
        layer.kernel.assign(layer.kernel.numpy() / s)
    if layer.use_bias:
        layer.bias.assign(layer.bias.numpy() / s)


def _in_kernel(layer):
    kind = layer_kind(layer)
    return layer.depthwise_kernel if kind in ("separable", "depthwise") else layer.kernel


def _in_range(layer, groups: int) -> np.ndarray:
    k = _in_kernel(layer).numpy()
    if layer_kind(layer) == "dense":
        return np.max(np.abs(k.reshape(groups, -1, k.shape[-1])), axis=(0, 2))
    return np.max(np.abs(k), axis=tuple(a for a in range(k.ndim) if a != k.ndim - 2))


def _scale_in(layer, s: np.ndarray, groups: int) -> None:
    """Multiplies the weights reading each input channel by ``s``."""
    var = _in_kernel(layer)
    k = var.numpy()
    if layer_kind(layer) == "dense":
        var.assign((k.reshape(groups, -1, k.shape[-1]) * s[None, :, None]).reshape(k.shape))
    else:  # (..., in, out) kernels: Conv2D/Conv1D (HWIO/WIO), depthwise (HW, in, multiplier)
        var.assign(k * s.reshape(-1, 1))


def _separable_step(layer) -> float:
    """Equalizes a SeparableConv2D's depthwise output channels with its pointwise inputs."""
    dw, pw = layer.depthwise_kernel.numpy(), layer.pointwise_kernel.numpy()
    r1 = np.max(np.abs(dw), axis=(0, 1)).reshape(-1)
    r2 = np.max(np.abs(pw), axis=(0, 1, 3))
    s = _scales(r1, r2)
    layer.depthwise_kernel.assign(dw / s.reshape(dw.shape[2], dw.shape[3]))
    layer.pointwise_kernel.assign(pw * s[None, None, :, None])
    return float(np.max(np.abs(np.log(s))))


def _scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    ok = (r1 > 0) & (r2 > 0)
    s = np.ones_like(r1, dtype=np.float64)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    return s.astype(np.float32)


def equalize(model: keras.Model, *, relu6: str = "keep", iterations: int = 20,
             tolerance: float = 1e-3) -> keras.Model:
    """Cross-layer equalization after BatchNormalization folding; a new model.

    Args:
        model: a Sequential or functional tf_keras (or Keras 3) model.
        relu6: ``"keep"`` leaves pairs across a ReLU6 alone (outputs unchanged);
            ``"relu"`` turns those ReLU6 into ReLU and equalizes them too (outputs change where
            an activation exceeded 6).
        iterations: passes over all pairs at most (each pass changes the next pair's ranges).
        tolerance: stop when no channel scale of a pass differs from 1 by more than this
            (in log).

    Returns:
        A new plain Keras model, BatchNormalization folded, ranges equalized. Its attribute
        ``equalization`` holds the pairs and passes.

    Raises:
        ConfigError: ``relu6`` not in ``RELU6``.
        ModelError: a subclassed model.
    """
    if relu6 not in RELU6:
        raise errors.ConfigError(errors.unknown("relu6", relu6, RELU6))
    folded = fold_batchnorm(model)
    pairs = find_pairs(folded, relu6)
    if relu6 == "relu" and any(p[3] for p in pairs):
        graph = graphs.read(folded)
        names = {n for p in pairs for n in p[3]}
        for node in graph.nodes:
            if node.name in names:
                node.config["max_value"] = None
        folded = graphs.rebuild(folded, graph.config, {})
    separables = [layer for layer in folded.layers if layer_kind(layer) == "separable"]
    passes = 0
    for passes in range(1, iterations + 1):
        change = 0.0
        for layer in separables:
            change = max(change, _separable_step(layer))
        for first, second, groups, _ in pairs:
            l1, l2 = folded.get_layer(first), folded.get_layer(second)
            s = _scales(_out_range(l1), _in_range(l2, groups))
            _scale_out(l1, s)
            _scale_in(l2, s, groups)
            change = max(change, float(np.max(np.abs(np.log(s)))))
        if change <= tolerance:
            break
    logging.info("equalize: %d pairs and %d separable convolutions, %d passes",
                 len(pairs), len(separables), passes)
    folded.equalization = {"pairs": [p[:2] for p in pairs],
                           "separable": [layer.name for layer in separables], "passes": passes}
    return folded
