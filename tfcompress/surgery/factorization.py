"""Low-rank factorization by truncated SVD: one layer becomes two thinner ones.

Dense: Dense(r, no bias, linear) -> Dense(units). Conv2D, ``conv="channel"``: a k x k Conv2D with
r filters -> a 1 x 1 Conv2D (the kernel as a (k*k*in, out) matrix). Conv2D, ``conv="spatial"``
(spatial SVD): a k x 1 Conv2D with r filters -> a 1 x k Conv2D (the kernel as a (k*in, k*out)
matrix: rows are the vertical taps and input channels, columns the horizontal taps and output
channels), which keeps the receptive field and costs (k*in + k*out) * r per position instead of
k*k*in*out. Both convolution splits are exact at full rank (strides, dilation and padding are
split by axis). Conv1D: the channel split (a k-tap Conv1D with r filters -> a 1-tap Conv1D).
Embedding (V x d, the ALBERT factorization): an Embedding(V, r) -> Dense(d, no bias). EinsumDense
whose equation is a plain matmul over the last axis (``...b,bc->...c``): two EinsumDense of the
same equation, the first r wide. Called as ``tfcompress.factorize`` (also
``tfcompress.surgery.channels.factorize``).
"""

import copy
from typing import Optional, Sequence

import numpy as np
from absl import logging

import tfcompress.graph as graphs
import tfcompress.surgery.channel_graph as cg
from tfcompress import errors, wrappers
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2
from tfcompress._surgery_report import SurgeryReport, attach

CONV_MODES = ("channel", "spatial", "none")

# What a search may vary (the integrator maps these onto the study's parameters).
SEARCH_SPACE = {"conv": ("channel", "spatial"), "energy": (0.5, 0.99)}


def _rank(s: np.ndarray, energy: Optional[float], rank: Optional[int]) -> int:
    if rank is not None:
        return int(min(rank, len(s)))
    share = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-30)
    return int(min(np.searchsorted(share, energy - 1e-9) + 1, len(s)))


def _check(energy, rank, conv) -> None:
    if (energy is None) == (rank is None):
        raise errors.ConfigError(
            f"energy={energy!r}, rank={rank!r}; accepted: exactly one of them")
    if energy is not None and not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise errors.ConfigError(f"energy={energy!r}; accepted: a number in (0, 1]")
    if rank is not None and not (isinstance(rank, (int, np.integer)) and rank >= 1):
        raise errors.ConfigError(f"rank={rank!r}; accepted: an integer >= 1")
    if conv not in CONV_MODES:
        raise errors.ConfigError(errors.unknown("conv", conv, CONV_MODES))


FACTORIZED = ("Dense", "Conv1D", "Conv2D", "Embedding", "EinsumDense")
CONVS = ("Conv1D", "Conv2D")


def plain_matmul(equation: str) -> bool:
    """Whether an EinsumDense equation multiplies the input's last axis by a 2-D kernel and
    keeps every other axis (``ab,bc->ac``, ``abc,cd->abd``, ``...b,bc->...c``)."""
    try:
        inputs, out = equation.replace(" ", "").split("->")
        x, w = inputs.split(",")
    except ValueError:
        return False
    return (len(w) == 2 and len(x) >= 2 and x[-1] == w[0] and out == x[:-1] + w[1]
            and len(set(x.replace("...", "")) | {w[1]}) == len(x.replace("...", "")) + 1)


def _considered(node, conv: str) -> bool:
    if node.cls in CONVS:
        return conv != "none"
    if node.cls == "EinsumDense":
        return plain_matmul(node.config.get("equation", "")) and node.config.get(
            "bias_axes") in (None, "", node.config["equation"][-1])
    return node.cls in ("Dense", "Embedding")


def _kernel(layer) -> np.ndarray:
    return layer.embeddings.numpy() if type(layer).__name__ == "Embedding" else \
        layer.kernel.numpy()


def _spatial(kernel: np.ndarray) -> bool:
    return kernel.ndim == 4 and kernel.shape[0] > 1 and kernel.shape[1] > 1


def _factors(kernel: np.ndarray, spatial: bool, energy, rank):
    """(rank, first kernel, second kernel, params before, params after)."""
    if spatial:  # W[i, j, c, o] ~ sum_r A[i, c, r] B[r, j, o]
        kh, kw, cin, cout = kernel.shape
        matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
    else:
        matrix = kernel.reshape(-1, kernel.shape[-1])
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    r = _rank(s, energy, rank)
    root = np.sqrt(s[:r])
    a, b = u[:, :r] * root, root[:, None] * vt[:r]
    if spatial:
        first = a.reshape(kh, 1, cin, r)
        second = b.reshape(r, 1, kw, cout).transpose(1, 2, 0, 3)
        after = kh * cin * r + kw * r * cout
    else:
        first = a.reshape(kernel.shape[:-1] + (r,))
        second = b.reshape((1,) * (kernel.ndim - 2) + (r, kernel.shape[-1]))
        after = r * sum(matrix.shape)
    return r, first, second, int(kernel.size), int(after)


def factorize(
    model: keras.Model,
    *,
    energy: Optional[float] = None,
    rank: Optional[int] = None,
    layers: Optional[Sequence[str]] = None,
    conv: str = "channel",
) -> keras.Model:
    """Replaces Dense, Conv1D/2D, Embedding and EinsumDense kernels by a truncated SVD: two
    thinner layers each.

    A Dense layer becomes Dense(r, no bias, linear) -> Dense(units) with the original bias and
    activation. An Embedding (V x d) becomes Embedding(V, r) -> Dense(d, no bias, linear) (the
    ALBERT factorization; ``mask_zero`` stays on the Embedding and the Dense passes the mask
    on). A Conv1D becomes a Conv1D with r filters (same kernel size, strides, padding,
    dilation; no bias, linear) -> a 1-tap Conv1D with the original filters, bias and activation
    (``conv="spatial"`` splits a Conv1D by channels too). An EinsumDense whose equation is a
    plain matmul over the last axis (``...b,bc->...c``, bias on ``c`` or none) becomes two of
    the same equation, the first r wide (no bias, linear). A Conv2D becomes, with
    ``conv="channel"``, a k x k Conv2D with r filters (same strides, padding, dilation; no
    bias, linear) -> a 1 x 1 Conv2D with the original filters, bias and activation; with
    ``conv="spatial"``, a k x 1 Conv2D with r filters (vertical strides, dilation and padding)
    -> a 1 x k Conv2D (horizontal ones, original bias and activation); 1 x 1 and k x 1
    kernels use the channel split. The second layer keeps the original name; the first is
    named ``<name>_lowrank``. A layer is factorized only when the two kernels hold fewer
    parameters than the original.

    Args:
        model: a built Sequential or Functional tf_keras model.
        energy: keep the smallest rank whose singular values hold this share of the squared
            singular-value sum, in (0, 1].
        rank: or this rank for every layer (capped by the kernel's shape).
        layers: names of the layers to consider (default: all that can be factorized).
        conv: ``"channel"``, ``"spatial"`` or ``"none"`` (convolutions kept).

    Returns:
        A new, uncompiled Keras model with the same inputs and outputs and a ``surgery_report``
        attribute (saved with the model too): ``changed`` maps each factorized layer to its
        rank and parameters before and after (and a Conv2D's ``split``); layers kept as they
        were are in ``notes``, and one note names the layers holding weights that it did not
        consider (other kinds, such as LSTM or MultiHeadAttention, and EinsumDense that is not
        a plain matmul); ``left_alone`` lists (layer, share of the parameters) for the
        layers left as they were (other classes such as LSTM, kept or not selected) that
        each hold more than 10% of the weights, also logged as a warning.

    Raises:
        ConfigError: neither or both of energy and rank, out-of-range values, unknown layers or
            conv mode.
        ModelError: a subclassed, unbuilt or Keras 3 model.
    """
    model = ensure_keras2(model)
    _check(energy, rank, conv)
    config, entries, nodes, _ = graphs.read(model)
    classes = tuple(c for c in FACTORIZED if conv != "none" or c not in CONVS)
    names = [n.name for n in nodes if n.cls in classes and _considered(n, conv)]
    if layers is not None:
        bad = [n for n in layers if n not in names]
        if bad:
            raise errors.ConfigError(
                errors.unknown("layer to factorize", bad[0], names or ["none"]))
    taken = {e["config"]["name"] for e in entries}
    factors, changed, notes = {}, {}, []
    for node in nodes:
        if node.name not in names or (layers is not None and node.name not in layers):
            continue
        cfg = node.config
        if node.shared or cfg.get("groups", 1) != 1 or not cg.channels_last(cfg):
            notes.append(f"{node.name}: shared, grouped or channels_first: kept")
            continue
        kernel = _kernel(model.get_layer(node.name))
        spatial = conv == "spatial" and node.cls == "Conv2D" and _spatial(kernel)
        r, first, second, before, after = _factors(kernel, spatial, energy, rank)
        if after >= before:
            notes.append(f"{node.name}: rank {r} would not save parameters: kept")
            continue
        low = f"{node.name}_lowrank"
        while low in taken:
            low += "_"
        taken.add(low)
        factors[node.name] = (low, first, second)
        changed[node.name] = {"rank": r, "before": before, "after": after}
        if node.cls in CONVS:
            changed[node.name]["split"] = "spatial" if spatial else "channel"
        _split_entry(entries, node, low, r, spatial)
    new = graphs.rebuild(model, config)
    firsts = {low: first for low, first, _ in factors.values()}
    for layer in new.layers:
        if layer.name in firsts:
            layer.set_weights([firsts[layer.name]])
        elif layer.name in factors:
            second = factors[layer.name][2]
            layer.set_weights([second] + model.get_layer(layer.name).get_weights()[1:])
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    skipped = [f"{n.name} ({n.cls})" for n in nodes if n.name not in names
               and n.cls != "InputLayer" and model.get_layer(n.name).weights]
    if skipped:
        notes.append("not considered (kinds it does not factorize): " + ", ".join(
            dict.fromkeys(skipped)))
    untouched = [l.name for l in model.layers if l.weights and l.name not in changed]
    left = wrappers.left_alone(model, untouched)
    if left:
        logging.warning("factorize left alone layers holding more than %.0f%% of the weights "
                        "each: %s (it factorizes %s only)", 100 * wrappers.LEFT_ALONE_SHARE,
                        ", ".join(f"{n} ({type(model.get_layer(n)).__name__}) {share:.1%}"
                                  for n, share in left), ", ".join(classes))
    return attach(new, SurgeryReport("factorize", changed, (), {}, tuple(notes), tuple(left)))


def _pair(value, n: int = 2) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def _split_entry(entries: list, node: graphs.Node, low: str, r: int, spatial: bool) -> None:
    """Inserts the rank-r first layer before ``node`` and turns ``node`` into the second."""
    index = next(i for i, e in enumerate(entries) if e["config"]["name"] == node.name)
    entry = entries[index]
    first = copy.deepcopy(entry)
    cfg = first["config"]
    cfg.update(name=low, activity_regularizer=None)
    if node.cls == "EinsumDense":
        cfg.update(output_shape=list(cfg["output_shape"])[:-1] + [r], bias_axes=None,
                   activation="linear")
    elif node.cls == "Embedding":
        cfg["output_dim"] = r
    else:
        cfg.update(use_bias=False, activation="linear")
        cfg["units" if node.cls == "Dense" else "filters"] = r
    if "name" in first:
        first["name"] = low
    if "inbound_nodes" in entry:
        entry["inbound_nodes"] = [[[low, 0, 0, {}]]]
    if node.cls == "Conv2D" and spatial:
        (kh, kw), (sh, sw), (dh, dw) = (_pair(node.config[k]) for k in (
            "kernel_size", "strides", "dilation_rate"))
        cfg.update(kernel_size=(kh, 1), strides=(sh, 1), dilation_rate=(dh, 1))
        node.config.update(kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw))
    elif node.cls == "Conv2D":
        node.config.update(kernel_size=(1, 1), strides=(1, 1), padding="valid",
                           dilation_rate=(1, 1))
    elif node.cls == "Conv1D":
        node.config.update(kernel_size=(1,), strides=(1,), padding="valid", dilation_rate=(1,))
    elif node.cls == "Embedding":  # the second layer: Dense(d) without bias on the r codes
        entry["class_name"], entry["module"] = "Dense", "keras.layers"
        entry["registered_name"] = None
        entry["config"] = {"name": node.name, "trainable": node.config.get("trainable", True),
                           "dtype": node.config.get("dtype", "float32"),
                           "units": node.config["output_dim"], "activation": "linear",
                           "use_bias": False,
                           "activity_regularizer": node.config.get("activity_regularizer")}
    entries.insert(index, first)
