"""Runs a TFLite flatbuffer on the LiteRT interpreter and measures it.

Accuracy (with labels), argmax agreement and output differences against a reference Keras
model, sizes and ratios to a float32 baseline, latency (median and p90, 1 and 2 threads, with
and without the default XNNPACK delegate), how much of the graph XNNPACK takes, and the GPU
delegate's verdict. Inputs and outputs are quantized/dequantized with the model's own scale and
zero point, so float, int8 and int16 models are compared on the same float data.

A flatbuffer is first run in a child process (``_litert.verify``): a corrupt or truncated file
can crash the native interpreter, and that must not take the caller's process down.
"""

import contextlib
import dataclasses
import io
import re
import time
from typing import Optional, Sequence, Union

import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate

from tfcompress import errors, profiling
import tfcompress._compat.litert as _litert
from tfcompress import data as data_lib
from tfcompress._compat.litert import (Verifier, interpreter, io_details,  # noqa: F401  (re-exported)
                                load_flatbuffer, verify)

# ---------------------------------------------------------------- running

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


def check_signature(interp: Interpreter, x) -> None:
    """Raises DataError unless ``x`` (batch first) fits the flatbuffer's single input."""
    inputs = interp.get_input_details()
    if len(inputs) != 1:
        raise errors.DataError(
            f"the flatbuffer has {len(inputs)} inputs "
            f"({', '.join(d['name'] for d in inputs)}); accepted: models with one input")
    if np.asarray(x).dtype.kind not in "biuf":
        raise errors.DataError(f"data has dtype {np.asarray(x).dtype}; accepted: numeric images")
    want = tuple(int(d) for d in inputs[0]["shape_signature"][1:])
    got = tuple(np.shape(x)[1:])
    if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
        raise errors.DataError(f"data has sample shape {got} but the flatbuffer expects {want}")


def _batches(interp: Interpreter, x: np.ndarray, batch_size: int):
    """(input array as the interpreter takes it, real rows, whether to resize) per batch."""
    inp = interp.get_input_details()[0]
    fixed_batch = int(inp["shape_signature"][0]) != -1
    step = int(inp["shape"][0]) if fixed_batch else batch_size
    for start in range(0, len(x), step):
        chunk = np.asarray(x[start:start + step], np.float32)
        n = len(chunk)
        if fixed_batch and n < step:  # pad the last batch of a fixed-batch model
            chunk = np.concatenate([chunk, np.zeros((step - n,) + chunk.shape[1:], np.float32)])
        yield _quantize(chunk, inp), n, not fixed_batch


def verify_run(tflite: Union[bytes, str], interp: Interpreter, x: np.ndarray,
               batch_size: int = 256) -> None:
    """Runs the first batch ``predict`` will run (shape, dtype, values) in the child process
    first: a flatbuffer that crashes the interpreter only at that shape is an error here.

    Raises:
        InvalidTFLiteError: the interpreter rejected, crashed on or hung on that batch.
    """
    first = next(_batches(interp, x, batch_size), None)
    if first is not None:
        verify(tflite, sample=first[0])


def predict(tflite: Union[bytes, str, Interpreter], x: np.ndarray, batch_size: int = 256):
    """Float outputs of the flatbuffer's first output for images ``x`` (batch first).

    A flatbuffer given as bytes or a path runs in a child process first (at its default shape,
    then on the first batch of ``x``); an ``Interpreter`` is the caller's, already checked.

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded or run (checked in a child).
        DataError: ``x`` does not fit its input, or holds NaN/Inf or no samples.
    """
    if batch_size < 1:
        raise errors.DataError(f"batch_size={batch_size!r}; accepted: an integer >= 1")
    x = data_lib.check_images(x, "data")
    if isinstance(tflite, Interpreter):
        interp = tflite
        check_signature(interp, x)
    else:
        content = load_flatbuffer(tflite)
        interp = interpreter(content)
        check_signature(interp, x)
        verify_run(content, interp, x, batch_size)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for chunk, n, resize in _batches(interp, x, batch_size):
        if resize:
            interp.resize_tensor_input(inp["index"], chunk.shape)
            interp.allocate_tensors()
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        outputs.append(_dequantize(interp.get_tensor(out["index"]), out)[:n])
    return np.concatenate(outputs)


def latency(tflite: Union[bytes, str], sample: np.ndarray, runs: int = 50, num_threads: int = 1,
            *, delegates: bool = True) -> dict:
    """{'median_ms', 'p90_ms'} of single-sample invokes, after two warm-up runs."""
    interp = interpreter(tflite, num_threads=num_threads, delegates=delegates)
    inp = interp.get_input_details()[0]
    batch = np.asarray(sample, np.float32)[None]
    if int(inp["shape"][0]) > 1:
        batch = np.repeat(batch, int(inp["shape"][0]), axis=0)
    interp.set_tensor(inp["index"], _quantize(batch, inp))
    times = []
    for i in range(max(1, runs) + 2):
        start = time.perf_counter()
        interp.invoke()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return {"median_ms": float(np.median(times) * 1e3),
            "p90_ms": float(np.percentile(times, 90) * 1e3)}


def latency_ms(tflite: Union[bytes, str], sample: np.ndarray, runs: int = 50,
               num_threads: int = 1) -> float:
    """Median wall time (ms) of one single-sample invoke, after two warm-up runs."""
    return latency(tflite, sample, runs, num_threads)["median_ms"]


# ---------------------------------------------------------------- delegates

def xnnpack_coverage(tflite: Union[bytes, str]) -> dict:
    """How many of the model's nodes the default XNNPACK delegate took, and which fell back.

    After ``allocate_tensors`` the interpreter lists the original nodes and then one
    ``DELEGATE`` node per partition the delegate took; a partition's nodes are those reached
    backwards from its outputs without crossing its inputs.

    Returns:
        {"nodes", "delegated", "partitions", "all_delegated", "fallback_ops": {op: count}}.
    """
    interp = interpreter(tflite)
    ops = _litert.ops(interp)  # the only view of the delegated graph
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in originals for t in op["outputs"]}
    taken = set()
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    for node in partitions:
        boundary = {int(t) for t in node["inputs"]}
        stack, seen = [int(t) for t in node["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            taken.add(producer[t])
            stack.extend(int(i) for i in ops[producer[t]]["inputs"] if i >= 0)
    fallback = {}
    for op in originals:
        if op["index"] not in taken:
            fallback[op["op_name"]] = fallback.get(op["op_name"], 0) + 1
    return {"nodes": len(originals), "delegated": len(taken), "partitions": len(partitions),
            "all_delegated": len(taken) == len(originals), "fallback_ops": fallback}


_OP_LINE = re.compile(r"^\s*Op#(\d+)\s+(\w+)\(")
_COMPATIBLE = "looks compatible with GPU delegate"


def parse_gpu_analysis(text: str) -> dict:
    """The Analyzer's GPU verdict from its printed report.

    Returns:
        {"compatible": bool, "incompatible_ops": [{"node", "op", "reason"}], "warnings": [...]}.
    """
    incompatible, warnings, last_op = [], [], None
    for line in text.splitlines():
        match = _OP_LINE.match(line)
        if match:
            last_op = (int(match.group(1)), match.group(2))
            continue
        if "GPU COMPATIBILITY WARNING" in line:
            reason = line.split("GPU COMPATIBILITY WARNING:", 1)[-1].strip()
            warnings.append(reason)
            if last_op is not None and "compatibility issues at nodes" not in reason:
                incompatible.append({"node": last_op[0], "op": last_op[1], "reason": reason})
    compatible = _COMPATIBLE in text and not warnings
    return {"compatible": compatible, "incompatible_ops": incompatible, "warnings": warnings}


def gpu_compatibility(tflite: Union[bytes, str]) -> dict:
    """``tf.lite.experimental.Analyzer``'s GPU-delegate verdict as structured data (no GPU needed).

    Note: the verdict covers op support as the analyzer sees it; runtime limits remain.
    """
    import tensorflow as tf

    content = verify(tflite)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    return {"source": "tf.lite.experimental.Analyzer", **parse_gpu_analysis(text.getvalue())}


def gpu_delegate_check(tflite: Union[bytes, str], x: np.ndarray, library: Optional[str],
                       cpu_outputs: Optional[np.ndarray] = None) -> dict:
    """Runs the flatbuffer with a GPU delegate library and compares with the CPU outputs.

    Returns:
        {"available": False, "reason": ...} when no library is given or it does not load;
        else {"available": True, "library", "agreement", "max_abs_diff"}.
    """
    if not library:
        return {"available": False, "reason": "not available: no GPU delegate library given"}
    try:
        delegate = load_delegate(library)
    except (ValueError, OSError, RuntimeError) as e:
        return {"available": False, "library": library,
                "reason": f"not available: {' '.join(str(e).split())}"}
    try:
        gpu_out = predict(interpreter(tflite, experimental_delegates=[delegate]), x)
    except (errors.InvalidTFLiteError, ValueError, RuntimeError) as e:
        return {"available": True, "library": library, "error": " ".join(str(e).split())}
    ref = cpu_outputs if cpu_outputs is not None else predict(tflite, x)
    return {"available": True, "library": library,
            "agreement": float(np.mean(gpu_out.argmax(-1) == ref.argmax(-1))),
            "max_abs_diff": float(np.abs(gpu_out - ref).max())}


# ---------------------------------------------------------------- the report

@dataclasses.dataclass
class ValidationReport:
    """What ``validate`` measured; ``to_dict()`` for JSON.

    ``latency_ms``/``latency_p90_ms`` are for ``num_threads`` with the default delegate;
    ``latency`` holds {"xnnpack"|"builtin": {"threads_N": {"median_ms", "p90_ms"}}}.
    """

    bytes: int
    gzip_bytes: int
    num_samples: int
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_p90_ms: Optional[float] = None
    input_dtype: str = ""
    output_dtype: str = ""
    ratio: Optional[float] = None
    gzip_ratio: Optional[float] = None
    signature: dict = dataclasses.field(default_factory=dict)
    latency: dict = dataclasses.field(default_factory=dict)
    xnnpack: dict = dataclasses.field(default_factory=dict)
    gpu: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _checked_inputs(x, y, latency_runs: int):
    """(x, y) checked for ``validate``: finite numeric images, one integer label each."""
    x = data_lib.check_images(x, "data")
    if y is not None:
        y = data_lib.labels(y, "labels")
        if len(y) != len(x):
            raise errors.DataError(
                f"y has {len(y)} labels but x has {len(x)} samples; accepted: one label each")
    if latency_runs < 0:
        raise errors.DataError(f"latency_runs={latency_runs!r}; accepted: an integer >= 0")
    return x, y


def validate(
    tflite: Union[bytes, str],
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    *,
    reference=None,
    latency_runs: int = 50,
    num_threads: int = 1,
    threads: Sequence[int] = (1, 2),
    baseline: Union[bytes, str, dict, None] = None,
    delegate_checks: bool = True,
    gpu_delegate: Optional[str] = None,
) -> ValidationReport:
    """Measures a flatbuffer on the LiteRT interpreter.

    Args:
        tflite: flatbuffer bytes or a path to a ``.tflite`` file.
        x: float images (N, ...) as the Keras model takes them.
        y: integer labels, for accuracy.
        reference: the Keras model (or its precomputed outputs as an array) to compare with.
        latency_runs: single-sample invokes timed per setting; 0 skips timing.
        num_threads: threads of the headline ``latency_ms``.
        threads: thread counts timed with and without the default delegate.
        baseline: the float32 flatbuffer (bytes, path or ``profiling.tflite_sizes`` dict) for the
            size ratios.
        delegate_checks: measure XNNPACK coverage and the GPU verdict.
        gpu_delegate: path of a GPU delegate library to run the parity check with; without
            one the report says the GPU delegate is not available.

    Returns:
        A ValidationReport.

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded or run on ``x`` (checked in a
            child process, at its default shape and on the first batch of ``x``).
        DataError: ``x`` does not fit the flatbuffer's input or holds NaN/Inf, ``y`` is not
            one integer label per sample, the flatbuffer or the reference has several outputs.
    """
    x, y = _checked_inputs(x, y, latency_runs)
    content = verify(tflite)
    interp = interpreter(content, num_threads=num_threads)
    check_signature(interp, x)
    outputs = interp.get_output_details()
    if len(outputs) != 1:
        raise errors.DataError(
            f"the flatbuffer has {len(outputs)} outputs "
            f"({', '.join(d['name'] for d in outputs)}); accepted: models with one output")
    verify_run(content, interp, x)
    out = predict(interp, x)
    report = ValidationReport(
        **profiling.tflite_sizes(content),
        num_samples=len(x),
        input_dtype=np.dtype(interp.get_input_details()[0]["dtype"]).name,
        output_dtype=np.dtype(interp.get_output_details()[0]["dtype"]).name,
        signature={"inputs": io_details(interp.get_input_details()),
                   "outputs": io_details(interp.get_output_details())},
    )
    if baseline is not None:
        base = baseline if isinstance(baseline, dict) else profiling.tflite_sizes(
            load_flatbuffer(baseline))
        report.ratio = report.bytes / base["bytes"]
        report.gzip_ratio = report.gzip_bytes / base["gzip_bytes"]
    if y is not None:
        report.accuracy = float(np.mean(out.argmax(-1) == y))
    if reference is not None:
        ref = reference if isinstance(reference, np.ndarray) else reference.predict(x, verbose=0)
        if isinstance(ref, (list, tuple, dict)) or np.size(ref) != out.size:
            count = len(ref) if isinstance(ref, (list, tuple, dict)) else np.shape(ref)
            raise errors.DataError(
                f"the reference gives outputs {count} that do not match the flatbuffer's "
                f"{out.shape}; accepted: a Keras model with one output of the same shape")
        ref = np.asarray(ref, np.float32).reshape(out.shape)
        report.agreement = float(np.mean(out.argmax(-1) == ref.argmax(-1)))
        diff = np.abs(out - ref)
        report.max_abs_diff, report.mean_abs_diff = float(diff.max()), float(diff.mean())
    if latency_runs:
        for name, delegates in (("xnnpack", True), ("builtin", False)):
            report.latency[name] = {
                f"threads_{n}": latency(content, x[0], latency_runs, n, delegates=delegates)
                for n in sorted(set(threads) | {num_threads})}
        headline = report.latency["xnnpack"][f"threads_{num_threads}"]
        report.latency_ms, report.latency_p90_ms = headline["median_ms"], headline["p90_ms"]
    if delegate_checks:
        report.xnnpack = xnnpack_coverage(content)
        report.gpu = {"analyzer": gpu_compatibility(content),
                      "delegate": gpu_delegate_check(content, x, gpu_delegate, out)}
    return report
