"""Runs a TFLite flatbuffer on the LiteRT interpreter and measures it.

Accuracy (with labels), argmax agreement with a reference Keras model, sizes and latency.
Inputs and outputs are quantized/dequantized with the model's own scale and zero point, so
float, int8 and int16 models are compared on the same float data.
"""

import dataclasses
import os
import time
from typing import Optional, Union

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfcompress import errors
from tfcompress import profile


@dataclasses.dataclass
class ValidationReport:
    """What ``validate`` measured; ``to_dict()`` for JSON."""

    bytes: int
    gzip_bytes: int
    num_samples: int
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    latency_ms: Optional[float] = None
    input_dtype: str = ""
    output_dtype: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_flatbuffer(tflite: Union[bytes, str]) -> bytes:
    if isinstance(tflite, (bytes, bytearray)):
        return bytes(tflite)
    path = os.fspath(tflite)
    if not os.path.isfile(path):
        raise errors.InvalidTFLiteError(f"TFLite file {path!r} does not exist")
    with open(path, "rb") as f:
        return f.read()


def interpreter(tflite: Union[bytes, str], num_threads: int = 1) -> Interpreter:
    """A LiteRT interpreter with tensors allocated; a bad flatbuffer is a clear error."""
    content = load_flatbuffer(tflite)
    try:
        interp = Interpreter(model_content=content, num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise errors.InvalidTFLiteError(f"the LiteRT interpreter rejected the flatbuffer: {e}")
    return interp


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.floating) or scale == 0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def predict(tflite: Union[bytes, str, Interpreter], x: np.ndarray, batch_size: int = 256):
    """Float outputs of the flatbuffer's first output for images ``x`` (batch first)."""
    interp = tflite if isinstance(tflite, Interpreter) else interpreter(tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    want = tuple(int(d) for d in inp["shape_signature"][1:])
    got = tuple(np.shape(x)[1:])
    if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
        raise errors.DataError(
            f"data has sample shape {got} but the flatbuffer expects {want}")
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start:start + batch_size], np.float32)
        interp.resize_tensor_input(inp["index"], (len(chunk),) + got)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], _quantize(chunk, inp))
        interp.invoke()
        outputs.append(_dequantize(interp.get_tensor(out["index"]), out))
    return np.concatenate(outputs)


def latency_ms(tflite: Union[bytes, str], sample: np.ndarray, runs: int = 50,
               num_threads: int = 1) -> float:
    """Median wall time of one single-sample invoke, after two warm-up runs."""
    interp = interpreter(tflite, num_threads=num_threads)
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], _quantize(np.asarray(sample, np.float32)[None], inp))
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        interp.invoke()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def validate(
    tflite: Union[bytes, str],
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    *,
    reference=None,
    latency_runs: int = 50,
    num_threads: int = 1,
) -> ValidationReport:
    """Measures a flatbuffer on the LiteRT interpreter.

    Args:
        tflite: flatbuffer bytes or a path to a ``.tflite`` file.
        x: float images (N, ...) as the Keras model takes them.
        y: integer labels, for accuracy.
        reference: the Keras model (or its precomputed outputs as an array) to compare with.
        latency_runs: single-sample invokes timed for the median latency; 0 skips timing.

    Returns:
        A ValidationReport.

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded.
        DataError: ``x`` does not fit the flatbuffer's input.
    """
    content = load_flatbuffer(tflite)
    interp = interpreter(content, num_threads=num_threads)
    out = predict(interp, x)
    report = ValidationReport(
        **profile.tflite_sizes(content),
        num_samples=len(x),
        input_dtype=np.dtype(interp.get_input_details()[0]["dtype"]).name,
        output_dtype=np.dtype(interp.get_output_details()[0]["dtype"]).name,
    )
    if y is not None:
        report.accuracy = float(np.mean(out.argmax(-1) == np.asarray(y).reshape(-1)))
    if reference is not None:
        ref = reference if isinstance(reference, np.ndarray) else reference.predict(x, verbose=0)
        ref = np.asarray(ref, np.float32).reshape(out.shape)
        report.agreement = float(np.mean(out.argmax(-1) == ref.argmax(-1)))
        diff = np.abs(out - ref)
        report.max_abs_diff, report.mean_abs_diff = float(diff.max()), float(diff.mean())
    if latency_runs:
        report.latency_ms = latency_ms(content, x[0], latency_runs, num_threads)
    return report
