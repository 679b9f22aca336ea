"""The TFLite converter's failures, as one line; its full-integer quantizer in two steps.

Private API, isolated here: ``tensorflow.lite.python.convert_phase.ConverterError`` is the class
the converter raises (not exported under ``tf.lite``); checked against TensorFlow 2.21. Its
message is the MLIR diagnostics dump: ``one_line`` keeps the first ``error:`` line and adds a
hint where the cause is known.

``calibrated_model`` / ``quantize_calibrated`` split the converter's post-training integer
quantization where its calibration ends (checked against TensorFlow 2.21's
``TFLiteConverter._quantize``): the converter's ``_experimental_calibrate_only`` flag (the one
``tf.lite.experimental.QuantizationDebugger`` sets) returns the float model with each tensor's
calibrated ``min``/``max`` in its quantization table, and ``tensorflow.lite.python.convert.
mlir_quantize`` is the call the converter then makes with them. ``tensor_ranges`` and
``with_ranges`` read and set those tables (the LiteRT schema's object API, ai-edge-litert 2.3).
"""

import contextlib
import re

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as _convert  # TF 2.21
from tensorflow.lite.python.convert_phase import ConverterError  # TF 2.21

import tfcompress._compat.schema as _schema_lib
from tfcompress import errors

# (pattern in the converter's message, hint)
HINTS = (
    (re.compile(r"TensorListReserve|element_shape to be static|TensorList", re.I),
     "a recurrent layer with a dynamic batch: build the model with keras.Input(..., "
     "batch_size=1) (tfcompress.convert does this for Keras LSTM/GRU/SimpleRNN/Bidirectional)"),
    (re.compile(r"SELECT_TF_OPS|Select TF|neither a custom op nor a flex op|Flex", re.I),
     "the model uses TensorFlow ops that have no TFLite builtin kernel; tfcompress converts "
     "with the builtin op sets only (SELECT_TF_OPS would need the Flex delegate on the device): "
     "replace those ops"),
    (re.compile(r"Max and min for dynamic tensors should be recorded during calibration"),
     "int16x8 found no range for a tensor its calibration did not record, such as integer "
     "token ids that an op other than the embedding lookup reads (Embedding(mask_zero=True) "
     "compares them with 0): convert with int8, mixed_a16w8 or dynamic"),
)
_ERROR_LINE = re.compile(r"error:\s*(.*)")


def _without_location(text: str) -> str:
    """``text`` without a leading MLIR location ``loc(...): `` (parentheses nest)."""
    if not text.startswith("loc("):
        return text
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char == ")":
            return text[i + 1:].lstrip(": ").strip() or text
    return text


def one_line(message: str) -> str:
    """The converter's first error line (without its MLIR location), plus a known hint."""
    text = str(message)
    first = None
    for line in text.splitlines():
        match = _ERROR_LINE.search(line)
        if match and match.group(1).strip():
            first = _without_location(match.group(1).strip())
            break
    if first is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first = lines[0] if lines else "(no message)"
    first = " ".join(first.split())[:300]
    for pattern, hint in HINTS:
        if pattern.search(text):
            return f"{first} (hint: {hint})"
    return first


@contextlib.contextmanager
def one_line_errors(what: str = "the TFLite converter failed"):
    """Turns a ``ConverterError`` (or the ``RuntimeError`` its quantizer raises) raised inside
    into a one-line ``ConversionError``."""
    try:
        yield
    except (ConverterError, RuntimeError) as e:
        raise errors.ConversionError(f"{what}: {one_line(str(e))}") from None


# ---------------------------------------------------------------- integer quantization in two steps

def calibrated_model(converter) -> bytes:
    """The float flatbuffer with calibrated ``min``/``max`` per tensor, from a converter set up
    for post-training integer quantization (optimizations and representative data)."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001  (as QuantizationDebugger)
    return converter.convert()


def quantize_calibrated(calibrated: bytes, io_type: str = "float32") -> bytes:
    """The full-integer flatbuffer the converter makes from a calibrated model (its
    ``mlir_quantize`` call, per-channel weights), with ``io_type`` inputs and outputs."""
    dtype = tf.as_dtype(io_type)
    return _convert.mlir_quantize(calibrated, input_data_type=dtype, output_data_type=dtype)


def tensor_ranges(calibrated: bytes) -> dict:
    """{tensor index: (min, max)} of the main graph's calibrated tensors (one range each)."""
    graph = _schema_lib.unpacked(calibrated).subgraphs[0]
    out = {}
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            out[index] = (float(q.min[0]), float(q.max[0]))
    return out


def with_ranges(calibrated: bytes, ranges: dict) -> bytes:
    """The calibrated model with ``{tensor index: (min, max)}`` as those tensors' ranges."""
    model = _schema_lib.unpacked(calibrated)
    graph = model.subgraphs[0]
    for index, (low, high) in ranges.items():
        q = graph.tensors[index].quantization
        q.min = np.array([low], np.float32)
        q.max = np.array([high], np.float32)
    return _schema_lib.packed(model, len(calibrated))
