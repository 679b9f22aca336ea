"""Attention heads for ``prune_channels``: which heads of a MultiHeadAttention to keep, and its
weights with only the kept heads and channels.

A tf_keras MultiHeadAttention holds query, key and value projections (input channels, heads,
key or value dim) with biases (heads, dim), and an output projection (heads, value dim, output
channels) with a bias (output channels). Its output is the sum over heads of each head's weighted
values through its slice of the output projection, plus the bias: removing a head is exactly
zeroing that slice.
"""

from typing import Optional

import numpy as np

import tfcompress.surgery.channel_graph as cg
from tfcompress import errors
from tfcompress._compat.keras import keras

CALIBRATION_SAMPLES = 512  # at most this many samples of ``x`` rank the heads


def _kernels(weights: list, use_bias: bool) -> list:
    """(query, key, value, output) kernels of a MultiHeadAttention's weight list."""
    return weights[0::2][:4] if use_bias else weights[:4]


def _norm_scores(layer, criterion: str) -> np.ndarray:
    cfg = layer.get_config()
    q, k, v, o = _kernels(layer.get_weights(), cfg["use_bias"])
    norm = (lambda w: np.sqrt((w ** 2).sum())) if criterion == "l2" else (  # noqa: E731
        lambda w: np.abs(w).sum())
    return np.array([norm(q[:, h]) + norm(k[:, h]) + norm(v[:, h]) + norm(o[h])
                     for h in range(cfg["num_heads"])])


def _tensor(model, key):
    out = model.get_layer(key[0]).get_output_at(key[1])
    return out[key[2]] if isinstance(out, (list, tuple)) else out


def _data_scores(model, node, x) -> Optional[np.ndarray]:
    """Mean L2 norm (over samples and positions) of each head's contribution on ``x``; None when
    the call has tensor arguments other than query, key and value (a mask)."""
    layer = model.get_layer(node.name)
    keys = cg.attention_inputs(node)
    kwargs = node.call[0][3] if len(node.call[0]) > 3 and isinstance(node.call[0][3], dict) else {}
    extra = {k: v for k, v in kwargs.items() if k not in ("value", "key")}
    if len(node.call) > 3 or any(
            isinstance(v, (list, tuple, dict)) for v in extra.values()):
        return None
    extra = {k: v for k, v in extra.items() if k == "use_causal_mask"}
    probe = keras.Model(model.inputs, [_tensor(model, k) for k in keys])
    x = [a[:CALIBRATION_SAMPLES] for a in x] if isinstance(x, (list, tuple)) else \
        x[:CALIBRATION_SAMPLES]
    q, k, v = probe.predict(x, verbose=0, batch_size=64)
    copy = type(layer).from_config(layer.get_config())
    copy(q[:1], v[:1], key=k[:1], **extra)
    weights = layer.get_weights()
    copy.set_weights(weights)
    full = copy(q, v, key=k, **extra).numpy()
    o = len(weights) - (2 if layer.get_config()["use_bias"] else 1)  # the output kernel
    scores = []
    for h in range(layer.get_config()["num_heads"]):
        silenced = [w.copy() for w in weights]
        silenced[o][h] = 0
        copy.set_weights(silenced)
        scores.append(float(np.linalg.norm(full - copy(q, v, key=k, **extra).numpy(),
                                           axis=-1).mean()))
    return np.array(scores)


def check_data(model, x) -> None:
    """Raises ConfigError unless ``x`` is None or inputs for ``model`` (an array with at least
    one sample, or a list of them for a model of several inputs)."""
    if x is None:
        return
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(arrays) != len(model.inputs) or not all(
            isinstance(a, np.ndarray) and a.ndim >= 1 and len(a) >= 1 for a in arrays):
        raise errors.ConfigError(
            f"x={type(x).__name__} of {len(arrays)} part(s); accepted: None or calibration inputs "
            f"for the model's {len(model.inputs)} input(s) (numpy arrays, a list for several)")


def head_keep(model, nodes, name: str, ratio: float, criterion: str,
              x: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Sorted indices of the heads of attention layer ``name`` to keep at ``ratio`` (None when
    every head stays): ``num_heads - floor(num_heads * ratio)`` of them, at least one, ranked by
    their contribution on ``x`` (see ``_data_scores``) or, without data, by weight norm."""
    layer = model.get_layer(name)
    heads = layer.get_config()["num_heads"]
    n_keep = max(1, heads - int(heads * ratio))
    if n_keep == heads:
        return None
    scores = None
    if x is not None:
        scores = _data_scores(model, next(n for n in nodes if n.name == name), x)
    if scores is None:
        scores = _norm_scores(layer, criterion)
    return np.sort(np.argsort(-scores, kind="stable")[:n_keep])


def slice_weights(weights: list, query, key, value, out, heads) -> list:
    """A MultiHeadAttention's weights with only the kept input channels of query, key and value,
    the kept output channels and the kept heads (each None: all kept)."""
    take = lambda w, idx, axis: w if idx is None else np.take(w, idx, axis)  # noqa: E731
    use_bias = len(weights) == 8
    step = 2 if use_bias else 1
    new = []
    for i, rows in enumerate((query, key, value)):
        new.append(take(take(weights[i * step], rows, 0), heads, 1))
        if use_bias:
            new.append(take(weights[i * step + 1], heads, 0))
    new.append(take(take(weights[3 * step], heads, 0), out, -1))
    if use_bias:
        new.append(take(weights[-1], out, -1))
    return new
