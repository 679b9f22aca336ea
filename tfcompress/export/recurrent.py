"""Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional) made convertible, the user's untouched.

The TFLite converter lowers a Keras recurrent layer to its fused ops
(``UNIDIRECTIONAL_SEQUENCE_LSTM``, ``BIDIRECTIONAL_SEQUENCE_LSTM``, ...) only with a static batch:
with the dynamic batch every model is built with, it fails (``TensorListReserve ...
element_shape to be static``). ``for_converter`` gives the converter a copy of the model rebuilt
at batch 1 with the same weights; the flatbuffer then runs one sample per invoke, and whoever
runs it resets the interpreter's variables (the recurrent state) between independent samples
(``tfcompress.export.validation`` does).

A GRU or SimpleRNN has no fused op, nor has an LSTM given a mask (``Embedding(mask_zero=True)``,
``Masking``): the converter lowers it to a ``WHILE`` loop, which neither integer path can
calibrate (checked with TF 2.21, litert-quantizer 0.11, LiteRT 2.3):

- the converter's ``int8`` crashes the process (SIGSEGV) calibrating the loop;
- the LiteRT Quantizer's static modes (``static_*``, ``mixed_a16w8``) stop with ``Tensor data is
  null``: the ``WHILE`` op passes the input sequence through the loop as a loop-invariant
  operand, its matching output (``while4``, shape ``(steps, 1, features)``) is read by no op, so
  LiteRT never allocates it, and the calibrator reads every named tensor of the subgraph
  (``calibrator._PreserveAllTensorsCalibrator._calibrate_step`` ->
  ``tfl_interpreter_utils.get_tensor_name_to_content_map`` -> ``Interpreter.get_tensor``).
  The quantizer has no ``WHILE`` op either, and would see only the body's last step.

So for the static modes ``for_converter`` unrolls such a layer in the copy (Keras' own
``unroll=True``: one cell per time step, the weights shared, nothing approximated): the graph
is then plain ``FULLY_CONNECTED``/``SPLIT``/``LOGISTIC``/``TANH``/``MUL``/``ADD`` ops that both
calibrate on every time step and quantize to integers (each ``SPLIT_V`` of the GRU cell is
written as a ``SPLIT`` for the quantizer: ``_compat.quantizer.splits_for_quantizer``). That needs a
fixed number of time steps; with none, the mode is refused here in one line naming the layer
and the modes that convert it. The converter's ``int8`` gets the same unrolled copy (its
calibration then runs plain ops); ``mixed_activations`` given a Keras model
refuses it too (``convert(model, "mixed_a16w8", ...)`` unrolls it), and int16x8 has no
recurrent kernels and is refused for every recurrent layer.
"""

from typing import Optional

from tfcompress import errors, models
import tfcompress.export.modes as modes
from tfcompress._compat.keras import gets_mask, keras

def _looped(layer, core) -> bool:
    """Whether the converter lowers ``layer`` (core RNN ``core``) to a ``WHILE`` loop: not
    unrolled, and a GRU, SimpleRNN or any other RNN, or an LSTM given a mask (checked with TF
    2.21: the fused LSTM ops take no mask)."""
    return not core.unroll and (not isinstance(core, keras.layers.LSTM) or gets_mask(layer))


# Conversion modes refused for some recurrent layers: mode -> (refused(core layer), why).
# Checked here (TF 2.21): int16x8 fails on UNIDIRECTIONAL_SEQUENCE_LSTM and aborts on others;
# int8 converts an LSTM (fused) but segfaults calibrating the WHILE loop of a GRU, a SimpleRNN
# or a masked LSTM.
REFUSED = {
    "int16x8": (lambda layer, core: True,
                "the converter has no int16x8 recurrent kernels and can abort the process"),
    "int8": (_looped, "the converter lowers it to a WHILE loop and crashes (SIGSEGV) calibrating "
                      "it, and without a fixed number of time steps it cannot be unrolled"),
}
# The LiteRT Quantizer's modes with integer activations (litert-quantizer 0.11 / LiteRT 2.3):
# see the module's docstring. There, a layer with a fixed number of time steps is unrolled in
# the converter's copy (``for_converter``); the others are refused.
_LOOP = ("the LiteRT Quantizer cannot calibrate the WHILE loop it is lowered to "
         "('Tensor data is null')")
_STATIC = (_looped, f"{_LOOP}, and without a fixed number of time steps it cannot be unrolled")


def _refusal(mode: str):
    """``(refused(core layer), why)`` for ``mode``, or None where it takes every recurrent layer."""
    if mode in REFUSED:
        return REFUSED[mode]
    spec = modes.get(mode) if mode in modes.names() else None
    if spec is not None and ((spec.quantizer is not None and spec.quantizer.activation_bits)
                             or spec.backend == "mixed_activations"):
        return _STATIC
    return None


def _steps(layer) -> Optional[int]:
    """The number of time steps ``layer`` (a recurrent layer or its wrapper) is built for, or
    None where it has none (a variable length, or a layer used more than once)."""
    try:
        shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return None
    if isinstance(shape, list):  # (inputs, initial states or constants)
        shape = shape[0]
    core = _core(layer)
    return shape[0 if getattr(core, "time_major", False) else 1] if len(shape) > 2 else None


def _to_unroll(model, mode: str) -> list:
    """The names of the layers ``mode`` refuses looped that a fixed length lets us unroll."""
    if _refusal(mode) not in (_STATIC, REFUSED["int8"]):
        return []
    return [name for name, layer, core in _recurrent_layers(model)
            if _looped(layer, core) and _steps(layer) is not None]


def _core(layer):
    """The recurrent layer inside a Bidirectional or another wrapper, or None."""
    while layer is not None and not isinstance(layer, keras.layers.RNN):
        if isinstance(layer, keras.layers.Bidirectional):
            layer = layer.forward_layer
        else:
            layer = getattr(layer, "layer", None)
    return layer


def _recurrent_layers(model) -> list:
    """[(layer name, the layer, its core RNN layer)] in ``model``, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            found.extend(_recurrent_layers(layer))
        elif _core(layer) is not None:
            found.append((layer.name, layer, _core(layer)))
    return found


def recurrent_layers(model) -> list:
    """The names of the recurrent layers (LSTM, GRU, SimpleRNN, any RNN, Bidirectional, and
    wrappers around them) in ``model``, nested models included."""
    return [name for name, _, _ in _recurrent_layers(model)]


def _refused_layers(model, mode: str, unrolls: bool) -> list:
    """The (name, core) of the recurrent layers ``mode`` cannot take (``unrolls``: those that
    ``for_converter`` unrolls for it are taken)."""
    refusal = _refusal(mode)
    if refusal is None:
        return []
    unrolled = set(_to_unroll(model, mode)) if unrolls else set()
    return [(name, core) for name, layer, core in _recurrent_layers(model)
            if refusal[0](layer, core) and name not in unrolled]


def check_mode(model, mode: str, unrolls: bool = False) -> None:
    """Refuses a mode that cannot take the model's recurrent layers, before the converter runs.

    Args:
        model: a Keras model (a path or flatbuffer is not checked).
        mode: a conversion mode.
        unrolls: whether the caller converts ``for_converter(model, mode)``, which unrolls a
            GRU/SimpleRNN or masked LSTM with a fixed number of time steps for int8 and the
            static modes.

    Raises:
        ConversionError: ``mode`` is in ``REFUSED`` for one of the model's recurrent layers, or
            has integer activations through the LiteRT Quantizer and the model a GRU/SimpleRNN or
            masked LSTM (that is not unrolled).
    """
    if _refusal(mode) is None or isinstance(model, (str, bytes, bytearray, memoryview)):
        return
    bad = [f"{name} ({type(core).__name__})" for name, core in
           _refused_layers(model, mode, unrolls)]
    if bad:
        accepted = [m for m in modes.names() if not _refused_layers(model, m, True)]
        why = _refusal(mode)[1] if unrolls or not _to_unroll(model, mode) else (
            f"{_LOOP}; convert(model, {mode!r}, ...) unrolls it")
        raise errors.ConversionError(
            f"mode {mode!r} cannot convert the recurrent layer {', '.join(bad)}: {why}; "
            f"accepted for this model: {', '.join(accepted)}")


def _dynamic_batch(model) -> bool:
    return any(shape[0] is None for shape in _input_shapes(model))


def _input_shapes(model) -> list:
    return [tuple(t.shape) for t in model.inputs]


def _set_unroll(config: dict) -> dict:
    """``config``, a layer's, with ``unroll=True`` for it and the RNNs wrapped inside it."""
    if "unroll" in config:
        config["unroll"] = True
    for key in ("layer", "backward_layer"):  # Bidirectional (both directions), wrappers
        inner = config.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            _set_unroll(inner["config"])
    return config


def _unrolled(layer, names: set):
    """A fresh copy of ``layer`` from its config (what ``clone_model`` does), unrolled where
    it is named in ``names``; nested models are copied layer by layer the same way."""
    if isinstance(layer, keras.Model):
        return keras.models.clone_model(layer, clone_function=lambda l: _unrolled(l, names))
    config = layer.get_config()
    return layer.__class__.from_config(_set_unroll(config) if layer.name in names else config)


def for_converter(model, mode: Optional[str] = None):
    """The model the converter gets: ``model`` itself, or a copy with the same weights
    (``model`` untouched): rebuilt at batch 1 for a recurrent model with a dynamic batch, and
    with a GRU/SimpleRNN/masked LSTM unrolled where ``mode`` cannot take its ``WHILE`` loop (``int8``, the
    LiteRT Quantizer's static modes and ``mixed_a16w8``; see the module's docstring).

    Raises:
        ConversionError: ``mode`` cannot take a recurrent layer (not even unrolled), or the
            copy cannot be built.
    """
    if isinstance(model, str) or not recurrent_layers(model):
        return model
    unroll = set()
    if mode is not None:
        check_mode(model, mode, unrolls=True)
        unroll = set(_to_unroll(model, mode))
    if not _dynamic_batch(model) and not unroll:
        return model
    inputs = [keras.Input(batch_shape=(t.shape[0] or 1,) + tuple(t.shape[1:]), dtype=t.dtype,
                          name=t.name.split(":")[0]) for t in model.inputs]
    try:
        with models.custom_objects_scope():  # a QAT model (its LSTM kept float) clones too
            copy = keras.models.clone_model(model, input_tensors=inputs if len(inputs) > 1
                                            else inputs[0],
                                            clone_function=lambda l: _unrolled(l, unroll))
        copy.set_weights(model.get_weights())
    except (ValueError, TypeError, KeyError) as e:
        raise errors.ConversionError(
            f"the recurrent model {model.name!r} could not be rebuilt for the converter "
            f"({'unrolled, ' if unroll else ''}at batch 1; {' '.join(str(e).split())[:200]}); "
            "accepted: a model built with keras.Input(..., batch_size=1)"
            + (" and its recurrent layers with unroll=True" if unroll else "")) from None
    return copy
