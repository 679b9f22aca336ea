"""Layer-by-layer passes over a float model and its quantized copy, side by side.

``walk(reference, quant, x)`` runs both functional models on the calibration images one layer at
a time, in graph order, and stops before each layer to hand over the input that layer receives in
the float model and in the quantized one; whatever the caller changes in the quantized layer (its
rounded kernels, its bias) is used for that layer's output and everything after it. One pass
serves a whole model, so layer-wise reconstruction (AdaRound) and bias correction cost one
forward pass plus their own work, not one pass per layer.

With ``activation_bits=8`` the quantized path also simulates the full-integer conversion's
activations: every tensor the converter quantizes (``quantized_tensors``: each layer's output,
except an output that a following ReLU/ReLU6 is fused into, and the model input; a test checks
the rule against the converter's flatbuffer) is fake-quantized per tensor,
asymmetrically, with the min/max it has on the calibration images (the converter's own
calibration rule). Inputs the quantized layers see then carry the activation error too, and the
rounding and bias learned downstream compensate for it.
"""

from typing import Iterator, Optional

import numpy as np
import tensorflow as tf

from tfcompress import errors
from tfcompress._compat.keras import keras
from tfcompress.ptq.grids import layer_kind

_FUSABLE = ("relu", "relu6")


def _inbound(entry: dict) -> list:
    return [item for node in entry.get("inbound_nodes", []) for item in node]


def _is_fused_activation(entry: dict) -> bool:
    cls, cfg = entry["class_name"], entry["config"]
    if cls == "Activation":
        return cfg.get("activation") in _FUSABLE
    if cls == "ReLU":
        mv = cfg.get("max_value")
        return (not cfg.get("negative_slope") and not cfg.get("threshold")
                and (mv is None or float(mv) == 6.0))
    return False


def fake_quantize(x: tf.Tensor, bits: int = 8) -> tf.Tensor:
    """``x`` on the per-tensor asymmetric grid its own min/max (0 included) define."""
    lo = tf.minimum(tf.reduce_min(x), 0.0)
    hi = tf.maximum(tf.reduce_max(x), 0.0)
    hi = tf.maximum(hi, lo + 1e-6)
    return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=bits)


def _users(config: dict) -> dict:
    """Layer name -> the layer entries that read its output."""
    users: dict = {}
    for e in config["layers"]:
        for item in _inbound(e):
            users.setdefault(item[0], []).append(e)
    return users


def quantized_tensors(model: keras.Model) -> list:
    """Names of the layers whose outputs a full-integer conversion quantizes, in graph order:
    the model input and every layer output that is read, except an output of a kernel layer
    (not a Conv2DTranspose) or an Add whose only reader is a ReLU/ReLU6 (the converter fuses
    that activation into it). Not included: tensors inside one Keras layer (the depthwise
    output of a SeparableConv2D, the pre-activation output of a layer whose own activation the
    converter does not fuse, such as a sigmoid)."""
    config = model.get_config()
    users = _users(config)
    names = []
    for e in config["layers"]:
        readers = users.get(e["name"])
        if not readers:
            continue
        fused = (len(readers) == 1 and _is_fused_activation(readers[0])
                 and (layer_kind(model.get_layer(e["name"])) not in (None, "transpose")
                      or e["class_name"] == "Add"))
        if not fused:
            names.append(e["name"])
    return names


def walk(reference: keras.Model, quant: keras.Model, x: np.ndarray, *,
         activation_bits: Optional[int] = None) -> Iterator[tuple]:
    """Yields ``(name, float_input, quantized_input)`` before each layer's output is computed.

    Args:
        reference, quant: functional models with the same layer names and graph (``quant`` a
            copy of ``reference`` being quantized); each layer called once.
        x: calibration images.
        activation_bits: 8 to fake-quantize the quantized path's activations as a full-integer
            conversion would; None for float activations.

    The calibration set runs as one batch (a few hundred images).

    Raises:
        ModelError: a layer used more than once or a layer with several outputs.
    """
    config = quant.get_config()
    for e in config["layers"]:
        if len(e.get("inbound_nodes", [])) > 1:
            raise errors.ModelError(
                f"layer {e['name']!r} is called more than once; accepted: models where each "
                "layer is used once")
        for item in _inbound(e):
            if item[2] != 0:
                raise errors.ModelError(
                    f"layer {item[0]!r} has several outputs; accepted: single-output layers")
    users = _users(config)
    quantized = set(quantized_tensors(quant)) if activation_bits else set()
    vals_f: dict = {}
    vals_q: dict = {}
    left = {name: len(v) for name, v in users.items()}
    for e in config["layers"]:
        name = e["name"]
        if e["class_name"] == "InputLayer":
            out_f = out_q = tf.constant(x)
        else:
            items = _inbound(e)
            kwargs = dict(items[0][3]) if len(items) == 1 and len(items[0]) > 3 else {}
            in_f = [vals_f[i[0]] for i in items]
            in_q = [vals_q[i[0]] for i in items]
            in_f, in_q = (in_f[0], in_q[0]) if len(items) == 1 else (in_f, in_q)
            yield name, in_f, in_q
            out_f = reference.get_layer(name)(in_f, training=False, **kwargs)
            out_q = quant.get_layer(name)(in_q, training=False, **kwargs)
            for i in items:
                left[i[0]] -= 1
                if left[i[0]] == 0:
                    del vals_f[i[0]], vals_q[i[0]]
        if name in quantized:
            out_q = fake_quantize(out_q, activation_bits)
        if name in users:
            vals_f[name], vals_q[name] = out_f, out_q
