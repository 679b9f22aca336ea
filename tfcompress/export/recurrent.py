"""Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional) made convertible, the user's untouched.

The TFLite converter lowers a Keras recurrent layer to its fused ops
(``UNIDIRECTIONAL_SEQUENCE_LSTM``, ``BIDIRECTIONAL_SEQUENCE_LSTM``, ...) only with a static batch:
with the dynamic batch every model is built with, it fails (``TensorListReserve ...
element_shape to be static``). ``for_converter`` gives the converter a copy of the model rebuilt
at batch 1 with the same weights; the flatbuffer then runs one sample per invoke, and whoever
runs it resets the interpreter's variables (the recurrent state) between independent samples
(``tfcompress.export.validation`` does). Modes that cannot take recurrent layers are refused
here, before the converter runs: it kills the process on them (int16x8 on recurrent models;
int8 on GRU and SimpleRNN, which it lowers to a ``WHILE`` loop and crashes calibrating). The
LiteRT Quantizer's static modes (integer activations, ``mixed_a16w8`` too) take the fused LSTM
(and a Bidirectional one) but cannot calibrate a GRU or SimpleRNN: the raw
``Tensor data is null`` is refused here in one line that names the modes that work.
"""

from typing import Optional

from tfcompress import errors, models
import tfcompress.export.modes as modes
from tfcompress._compat.keras import keras

# Conversion modes refused for some recurrent layers: mode -> (refused(core layer), why).
# Checked here (TF 2.21): int16x8 fails on UNIDIRECTIONAL_SEQUENCE_LSTM and aborts on others;
# int8 converts an LSTM (fused) but segfaults calibrating a GRU's or SimpleRNN's WHILE loop.
REFUSED = {
    "int16x8": (lambda layer: True,
                "the converter has no int16x8 recurrent kernels and can abort the process"),
    "int8": (lambda layer: not isinstance(layer, keras.layers.LSTM) and not layer.unroll,
             "the converter lowers it to a WHILE loop and crashes (SIGSEGV) calibrating it"),
}
# The LiteRT Quantizer's modes with integer activations (checked with litert-quantizer 0.11 /
# LiteRT 2.3): a GRU's or SimpleRNN's WHILE loop (and, unrolled, an unused SPLIT output) leaves
# tensors its calibration reads unallocated; the fused LSTM calibrates.
_STATIC = (lambda layer: not isinstance(layer, keras.layers.LSTM),
           "the LiteRT Quantizer cannot calibrate its integer activations (LiteRT leaves tensors "
           "of the loop it is lowered to unallocated: 'Tensor data is null')")


def _refusal(mode: str):
    """``(refused(core layer), why)`` for ``mode``, or None where it takes every recurrent layer."""
    if mode in REFUSED:
        return REFUSED[mode]
    spec = modes.get(mode) if mode in modes.names() else None
    if spec is not None and ((spec.quantizer is not None and spec.quantizer.activation_bits)
                             or spec.backend == "mixed_activations"):
        return _STATIC
    return None


def _core(layer):
    """The recurrent layer inside a Bidirectional or another wrapper, or None."""
    while layer is not None and not isinstance(layer, keras.layers.RNN):
        if isinstance(layer, keras.layers.Bidirectional):
            layer = layer.forward_layer
        else:
            layer = getattr(layer, "layer", None)
    return layer


def _recurrent(model) -> list:
    """[(layer name, its core RNN layer)] in ``model``, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            found.extend(_recurrent(layer))
        elif _core(layer) is not None:
            found.append((layer.name, _core(layer)))
    return found


def recurrent_layers(model) -> list:
    """The names of the recurrent layers (LSTM, GRU, SimpleRNN, any RNN, Bidirectional, and
    wrappers around them) in ``model``, nested models included."""
    return [name for name, _ in _recurrent(model)]


def check_mode(model, mode: str) -> None:
    """Refuses a mode that cannot take the model's recurrent layers, before the converter runs.

    Raises:
        ConversionError: ``mode`` is in ``REFUSED`` for one of the model's recurrent layers, or
            has integer activations through the LiteRT Quantizer and the model a GRU/SimpleRNN.
    """
    if _refusal(mode) is None or isinstance(model, str):
        return
    refused, why = _refusal(mode)
    layers = [core for _, core in _recurrent(model)]
    bad = [f"{name} ({type(core).__name__})" for name, core in _recurrent(model) if refused(core)]
    if bad:
        accepted = [m for m in modes.names() if _refusal(m) is None
                    or not any(_refusal(m)[0](core) for core in layers)]
        raise errors.ConversionError(
            f"mode {mode!r} cannot convert the recurrent layer {', '.join(bad)}: {why}; "
            f"accepted for this model: {', '.join(accepted)}")


def _dynamic_batch(model) -> bool:
    return any(shape[0] is None for shape in _input_shapes(model))


def _input_shapes(model) -> list:
    return [tuple(t.shape) for t in model.inputs]


def for_converter(model, mode: Optional[str] = None):
    """The model the converter gets: ``model`` itself, or, for a recurrent model with a
    dynamic batch, a copy rebuilt at batch 1 with the same weights (``model`` untouched).

    Raises:
        ConversionError: ``mode`` cannot take recurrent layers, or the copy cannot be built.
    """
    if isinstance(model, str) or not recurrent_layers(model):
        return model
    if mode is not None:
        check_mode(model, mode)
    if not _dynamic_batch(model):
        return model
    inputs = [keras.Input(batch_shape=(1,) + tuple(t.shape[1:]), dtype=t.dtype,
                          name=t.name.split(":")[0]) for t in model.inputs]
    try:
        with models.custom_objects_scope():  # a QAT model (its LSTM kept float) clones too
            copy = keras.models.clone_model(model, input_tensors=inputs if len(inputs) > 1
                                            else inputs[0])
        copy.set_weights(model.get_weights())
    except (ValueError, TypeError, KeyError) as e:
        raise errors.ConversionError(
            f"the recurrent model {model.name!r} has a dynamic batch and could not be rebuilt "
            f"at batch 1 for the converter ({' '.join(str(e).split())[:200]}); accepted: a "
            "model built with keras.Input(..., batch_size=1)") from None
    return copy
