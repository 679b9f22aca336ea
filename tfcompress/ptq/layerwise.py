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

import tfcompress.graph as graphs
from tfcompress._compat.keras import keras
from tfcompress.ptq.grids import layer_kind

_FUSABLE = ("relu", "relu6")


def _is_fused_activation(cls: str, cfg: dict) -> bool:
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


def quantized_tensors(model: keras.Model) -> list:
    """Names of the layers whose outputs a full-integer conversion quantizes, in graph order:
    the model input and every layer output that is read, except an output of a kernel layer
    (not a Conv2DTranspose) or an Add whose only reader is a ReLU/ReLU6 (the converter fuses
    that activation into it). Not included: tensors inside one Keras layer (the depthwise
    output of a SeparableConv2D, the pre-activation output of a layer whose own activation the
    converter does not fuse, such as a sigmoid)."""
    graph = graphs.read(model)
    users = graphs.consumers(graph)
    nodes = {n.name: n for n in graph.nodes}
    names = []
    for e in graph.entries:
        name = e["config"]["name"]
        readers = [nodes[r] for r in users.get(name, []) if r is not None]
        if not readers:
            continue
        fused = (len(readers) == 1 and _is_fused_activation(readers[0].cls, readers[0].config)
                 and (layer_kind(model.get_layer(name)) not in (None, "transpose")
                      or e["class_name"] == "Add"))
        if not fused:
            names.append(name)
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
    quantized = set(quantized_tensors(quant)) if activation_bits else set()

    def fake(name: str, outs: list) -> list:
        return [outs[0], fake_quantize(outs[1], activation_bits)] if name in quantized else outs

    for name, (in_f, in_q) in graphs.walk([reference, quant], x, after=fake):
        yield name, in_f, in_q
