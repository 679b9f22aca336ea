"""The TFLite converter's failures, as one line.

Private API, isolated here: ``tensorflow.lite.python.convert_phase.ConverterError`` is the class
the converter raises (not exported under ``tf.lite``); checked against TensorFlow 2.21. Its
message is the MLIR diagnostics dump: ``one_line`` keeps the first ``error:`` line and adds a
hint where the cause is known.
"""

import contextlib
import re

from tensorflow.lite.python.convert_phase import ConverterError  # TF 2.21

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
