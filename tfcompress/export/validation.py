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
import os
import re
import time
from typing import Optional, Sequence, Union

import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate

from tfcompress import errors, profiling
import tfcompress._compat.litert as _litert
import tfcompress.export.runtime as runtime
import tfcompress.tasks as tasks_lib
from tfcompress import data as data_lib
from tfcompress._compat.litert import (Verifier, interpreter, io_details,  # noqa: F401  (re-exported)
                                load_flatbuffer, verify)

# ---------------------------------------------------------------- running

def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """``x`` as the input tensor takes it: quantized only where the flatbuffer declares the
    input quantized (an integer tensor with a scale); token ids and masks (integer or bool
    tensors without a scale) are cast, their values checked to fit, never divided by a scale."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f":
        return data_lib.as_input_dtype(x, np.float32, "data").astype(dtype)
    if not scale:
        return data_lib.as_input_dtype(x, dtype, "data")
    info = np.iinfo(dtype)
    x = np.asarray(x, np.float32)
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
        raise errors.DataError(f"data has dtype {np.asarray(x).dtype}; accepted: numbers")
    want = tuple(int(d) for d in inputs[0]["shape_signature"][1:])
    got = tuple(np.shape(x)[1:])
    if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
        raise errors.DataError(f"data has sample shape {got} but the flatbuffer expects {want}")


def _batches(interp: Interpreter, x: np.ndarray, batch_size: int):
    """(input array as the interpreter takes it, real rows, whether to resize) per batch.

    A fixed-batch flatbuffer (a recurrent model is converted at batch 1) runs its own batch
    size; the last batch is padded with the first sample."""
    inp = interp.get_input_details()[0]
    fixed_batch = int(inp["shape_signature"][0]) != -1
    step = int(inp["shape"][0]) if fixed_batch else batch_size
    x = np.asarray(x)
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        n = len(chunk)
        if fixed_batch and n < step:  # pad the last batch of a fixed-batch model
            chunk = np.concatenate([chunk, np.repeat(x[:1], step - n, axis=0)])
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


def output_names(interp: Interpreter) -> list:
    """The Keras name of each of the interpreter's outputs (in ``get_output_details`` order),
    read from its serving signature; the tensor names where it has none."""
    details = interp.get_output_details()
    names = {d["index"]: d["name"] for d in details}
    with contextlib.suppress(ValueError, KeyError, RuntimeError):
        signatures = interp.get_signature_list()
        if len(signatures) == 1:
            runner = interp.get_signature_runner(next(iter(signatures)))
            for name, d in runner.get_output_details().items():
                names[d["index"]] = name
    return [names[d["index"]] for d in details]


def _run(interp: Interpreter, x: np.ndarray, batch_size: int) -> list:
    """Every output (float, dequantized, in ``get_output_details`` order) for samples ``x``.

    The interpreter's variables (a recurrent op's state) are reset before each batch: the
    samples are independent.
    """
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    results = [[] for _ in outs]
    for chunk, n, resize in _batches(interp, x, batch_size):
        if resize and tuple(interp.get_input_details()[0]["shape"]) != chunk.shape:
            interp.resize_tensor_input(inp["index"], chunk.shape)
            interp.allocate_tensors()
        interp.reset_all_variables()
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        for out, d in zip(results, outs):
            out.append(_dequantize(interp.get_tensor(d["index"]), d)[:n])
    return [np.concatenate(out) for out in results]


def _allocated(interp: Interpreter, shape: tuple) -> Interpreter:
    """``interp`` with its first input resized to ``shape`` (where it differs) and allocated:
    a model with dynamic sample dimensions runs at the caller's shape, never at its default."""
    inp = interp.get_input_details()[0]
    if tuple(int(d) for d in inp["shape"]) != tuple(shape):
        interp.resize_tensor_input(inp["index"], list(shape))
    try:
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise errors.InvalidTFLiteError(
            f"the LiteRT interpreter cannot allocate the flatbuffer at input shape "
            f"{tuple(shape)}: {' '.join(str(e).split())}") from None
    return interp


def _checked_interpreter(content: bytes, x: np.ndarray, num_threads: int = 1,
                         batch_size: int = 256) -> Interpreter:
    """The interpreter for ``content``, allocated at the first batch of ``x`` after the child
    ran that batch (a crash there is an error here)."""
    interp = interpreter(content, num_threads=num_threads, allocate=False)
    check_signature(interp, x)
    verify_run(content, interp, x, batch_size)
    return _allocated(interp, next(_batches(interp, x, batch_size))[0].shape)


def _prepared(tflite, x, batch_size: int):
    """(interpreter, x) checked; a flatbuffer (bytes or path) verified in a child at the shape
    of the first batch of ``x``."""
    if batch_size < 1:
        raise errors.DataError(f"batch_size={batch_size!r}; accepted: an integer >= 1")
    x = data_lib.check_images(x, "data")
    if isinstance(tflite, Interpreter):
        interp = tflite
        check_signature(interp, x)
    else:
        interp = _checked_interpreter(load_flatbuffer(tflite), x, batch_size=batch_size)
    return interp, x


def predict(tflite: Union[bytes, str, Interpreter], x: np.ndarray, batch_size: int = 256):
    """Float outputs of the flatbuffer's first output for samples ``x`` (batch first).

    ``x`` keeps its dtype where the input is not quantized (int32 token ids, bool masks); float
    data is quantized only for an input the flatbuffer declares quantized. The interpreter's
    variables (recurrent state) are reset between batches. A flatbuffer given as bytes or a
    path runs in a child process first (on the first batch of ``x``); an ``Interpreter`` is
    the caller's, already checked.

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded or run (checked in a child).
        DataError: ``x`` does not fit its input, or holds NaN/Inf or no samples.
    """
    return predict_outputs(tflite, x, batch_size)[0]


def predict_outputs(tflite: Union[bytes, str, Interpreter], x: np.ndarray,
                    batch_size: int = 256) -> list:
    """Every output of the flatbuffer (``get_output_details`` order; ``output_names`` names
    them), as ``predict`` computes the first."""
    interp, x = _prepared(tflite, x, batch_size)
    return _run(interp, x, batch_size)


def predict_by_name(tflite: Union[bytes, str, Interpreter], x: np.ndarray,
                    batch_size: int = 256) -> dict:
    """{output name (``output_names``): its float outputs} for every output of the flatbuffer,
    as ``predict`` computes the first."""
    interp, x = _prepared(tflite, x, batch_size)
    return dict(zip(output_names(interp), _run(interp, x, batch_size)))


def latency(tflite: Union[bytes, str], sample: np.ndarray, runs: int = 50, num_threads: int = 1,
            *, delegates: bool = True) -> dict:
    """{'median_ms', 'p90_ms'} of single-sample invokes, after two warm-up runs (the
    interpreter's variables reset before each, outside the timed call)."""
    interp = interpreter(tflite, num_threads=num_threads, delegates=delegates, allocate=False)
    inp = interp.get_input_details()[0]
    batch = np.asarray(sample)[None]
    if int(inp["shape_signature"][0]) > 1:
        batch = np.repeat(batch, int(inp["shape_signature"][0]), axis=0)
    _allocated(interp, batch.shape)
    interp.set_tensor(inp["index"], _quantize(batch, inp))
    times = []
    for i in range(max(1, runs) + 2):
        interp.reset_all_variables()
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

def xnnpack_coverage(tflite: Union[bytes, str], shape: Optional[Sequence[int]] = None) -> dict:
    """How many of the model's nodes the default XNNPACK delegate took, and which fell back.

    After ``allocate_tensors`` the interpreter lists the original nodes and then one
    ``DELEGATE`` node per partition the delegate took; a partition's nodes are those reached
    backwards from its outputs without crossing its inputs.

    Args:
        tflite: the flatbuffer.
        shape: the input shape to allocate at (batch first); the default shape when None (a
            model with dynamic sample dimensions needs the caller's).

    Returns:
        {"nodes", "delegated", "partitions", "all_delegated", "fallback_ops": {op: count},
        "delegated_nodes": [indices of the nodes XNNPACK took]}.
    """
    interp = interpreter(tflite, allocate=shape is None)
    if shape is not None:
        _allocated(interp, tuple(shape))
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
            "all_delegated": len(taken) == len(originals), "fallback_ops": fallback,
            "delegated_nodes": sorted(taken)}


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
                       cpu_outputs: Optional[np.ndarray] = None,
                       task: str = "classification") -> dict:
    """Runs the flatbuffer with a GPU delegate library and compares with the CPU outputs.

    Returns:
        {"available": False, "reason": ...} when no library is given or it does not load;
        else {"available": True, "library", "agreement" (not for a regression ``task``),
        "max_abs_diff"}.
    """
    if not library:
        return {"available": False, "reason": "not available: no GPU delegate library given"}
    try:
        delegate = load_delegate(library)
    except (ValueError, OSError, RuntimeError) as e:
        return {"available": False, "library": library,
                "reason": f"not available: {' '.join(str(e).split())}"}
    try:
        gpu_interp = interpreter(tflite, experimental_delegates=[delegate], allocate=False)
        gpu_out = predict(_allocated(gpu_interp, next(_batches(gpu_interp, x, 256))[0].shape), x)
    except (errors.InvalidTFLiteError, ValueError, RuntimeError) as e:
        return {"available": True, "library": library, "error": " ".join(str(e).split())}
    ref = cpu_outputs if cpu_outputs is not None else predict(tflite, x)
    found = {"available": True, "library": library,
             "max_abs_diff": float(np.abs(gpu_out - ref).max())}
    if task != "regression":
        found["agreement"] = tasks_lib.agreement(gpu_out, ref, task)
    return found


# ---------------------------------------------------------------- the report

# The report's task-specific keys: those of the other tasks are left out of ``to_dict``.
_TASK_KEYS = {"classification": ("accuracy", "agreement"), "binary": ("accuracy", "agreement"),
              "regression": ("mse", "mae", "r2", "reference_r2", "r2_drop")}


@dataclasses.dataclass
class ValidationReport:
    """What ``validate`` measured; ``to_dict()`` for JSON.

    ``task`` names the output's task (``tfcompress.tasks``): classification and binary report
    ``accuracy`` (against labels) and ``agreement`` (against the reference); regression
    reports ``mse``, ``mae``, ``r2`` (and, with a reference, ``reference_r2`` and ``r2_drop``)
    and never accuracy or agreement. ``max_abs_diff``/``mean_abs_diff`` are the output error
    against the reference. A model with several outputs has ``task`` "multi-output" and one
    entry per output in ``outputs`` ({"name", "task", ...its metrics}).
    ``latency_ms``/``latency_p90_ms`` are for ``num_threads`` with the default delegate;
    ``latency`` holds {"xnnpack"|"builtin": {"threads_N": {"median_ms", "p90_ms"}}}.
    """

    bytes: int
    gzip_bytes: int
    num_samples: int
    task: str = ""
    accuracy: Optional[float] = None
    agreement: Optional[float] = None
    mse: Optional[float] = None
    mae: Optional[float] = None
    r2: Optional[float] = None
    reference_r2: Optional[float] = None
    r2_drop: Optional[float] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_p90_ms: Optional[float] = None
    input_dtype: str = ""
    output_dtype: str = ""
    ratio: Optional[float] = None
    gzip_ratio: Optional[float] = None
    outputs: list = dataclasses.field(default_factory=list)
    signature: dict = dataclasses.field(default_factory=dict)
    latency: dict = dataclasses.field(default_factory=dict)
    xnnpack: dict = dataclasses.field(default_factory=dict)
    gpu: dict = dataclasses.field(default_factory=dict)
    compiled_model: dict = dataclasses.field(default_factory=dict)  # runtime.parity's result
    litert_benchmark: dict = dataclasses.field(default_factory=dict)  # LiteRT's own tool

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        own = _TASK_KEYS.get(self.task, ())
        for keys in _TASK_KEYS.values():
            for key in keys:
                if key not in own:
                    out.pop(key, None)
        if len(self.outputs) <= 1:
            out.pop("outputs")
        return out


def _as_list(value, names: list, what: str) -> list:
    """One entry per output from a list/tuple (in order) or a dict (by output name)."""
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        if missing:
            raise errors.DataError(
                f"{what} has no entry for output {missing[0]!r}; accepted: a dict with keys "
                f"{', '.join(names)}, or a list in that order")
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        if len(value) != len(names):
            raise errors.DataError(
                f"{what} has {len(value)} entries for {len(names)} outputs ({', '.join(names)}); "
                "accepted: one per output")
        return list(value)
    if len(names) > 1:
        raise errors.DataError(
            f"{what} is one array for {len(names)} outputs ({', '.join(names)}); accepted: a "
            "list (in that order) or a dict by output name")
    return [value]


def _checked_targets(y, out: np.ndarray, task: Optional[str], name: str, ref=None):
    """(targets, task) of one output: labels checked against the output's shape; the task is
    inferred from the reference's float outputs when given (a quantized softmax's rows do not
    sum to 1 exactly)."""
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise errors.DataError(
                f"labels of output {name!r} have dtype {y.dtype}; accepted: class indices, "
                "one-hot rows or float targets")
        if len(y) != len(out):
            raise errors.DataError(
                f"y has {len(y)} labels but x has {len(out)} samples (output {name!r}); "
                "accepted: one each")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise errors.DataError(f"labels of output {name!r} hold NaN or Inf; accepted: "
                                   "finite numbers")
    inferred = task is None
    task = tasks_lib.infer(y, out if ref is None else ref, task)
    if y is None:
        return None, task
    per_row = y.size == out.size // max(1, out.shape[-1]) if out.ndim > 1 else y.size == out.size
    if task == "classification":
        if out.ndim <= 2:
            y = data_lib.labels(y, "labels")
            classes = max(2, out.shape[-1]) if out.ndim == 2 else 2
            if y.ndim == 1 and len(y) and (y.min() < 0 or y.max() >= classes):
                raise errors.DataError(
                    f"labels of output {name!r} hold {int(y.min() if y.min() < 0 else y.max())}"
                    f"; accepted: class indices 0..{classes - 1} (the output has {classes} "
                    "classes)")
        elif not per_row and y.shape != out.shape:
            raise errors.DataError(
                f"output {name!r} has shape {out.shape[1:]} per sample but its labels "
                f"{y.shape[1:]}; accepted: one class index per position {out.shape[1:-1]} or "
                "one-hot rows of the output's shape")
    elif y.size != out.size:
        raise errors.DataError(
            f"output {name!r} has shape {out.shape[1:]} per sample but its {task} targets "
            f"{y.shape[1:]}; accepted: targets of the output's shape"
            + (" (labels that are not whole numbers are read as regression targets; class "
               "labels are whole numbers)" if inferred and task == "regression" else ""))
    return y, task


def validate(
    tflite: Union[bytes, str],
    x: np.ndarray,
    y=None,
    *,
    reference=None,
    task=None,
    latency_runs: int = 50,
    num_threads: int = 1,
    threads: Sequence[int] = (1, 2),
    baseline: Union[bytes, str, dict, None] = None,
    delegate_checks: bool = True,
    gpu_delegate: Optional[str] = None,
    compiled_model: Sequence[str] = (),
    ynnpack: bool = False,
    litert_benchmark: bool = False,
) -> ValidationReport:
    """Measures a flatbuffer on the LiteRT interpreter: the task's metrics, sizes, latency.

    Args:
        tflite: flatbuffer bytes or a path to a ``.tflite`` file.
        x: samples (N, ...) as the Keras model takes them: float images, int32 token ids
            (kept integer; only inputs the flatbuffer declares quantized are quantized).
        y: labels or targets: class indices or one-hot rows (classification), 0/1 labels
            (binary), float targets (regression); for several outputs a list in the model's
            output order or a dict by output name.
        reference: the Keras model (or its precomputed outputs: an array, or a list/dict for
            several outputs) to compare with.
        task: ``"classification"``, ``"binary"`` or ``"regression"`` (a list for several
            outputs); inferred from ``y`` and the outputs when None (``tasks.infer``).
        latency_runs: single-sample invokes timed per setting; 0 skips timing.
        num_threads: threads of the headline ``latency_ms``.
        threads: thread counts timed with and without the default delegate.
        baseline: the float32 flatbuffer (bytes, path or ``profiling.tflite_sizes`` dict) for the
            size ratios.
        delegate_checks: measure XNNPACK coverage and the GPU verdict.
        gpu_delegate: path of a GPU delegate library to run the parity check with; without
            one the report says the GPU delegate is not available.
        compiled_model: CPU kernel modes (``runtime.KERNEL_MODES``: "xnnpack", "reference",
            "builtin") to run the file with on LiteRT's ``CompiledModel`` (in a child process)
            and compare with the Interpreter on the same 32 inputs (``compiled_model`` in the
            report: the max difference per mode; a failure is reported, not raised).
        ynnpack: also run each of those modes with ``enable_ynnpack``.
        litert_benchmark: run LiteRT's ``benchmark_litert_model`` on the file
            (``litert_benchmark``; its ``latency.median_ms`` beside our ``latency_ms``).

    Returns:
        A ValidationReport: classification/binary report accuracy and agreement; regression
        mse, mae, r2 (and the R^2 drop against the reference), never accuracy or agreement;
        several outputs one entry each in ``outputs``.

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded or run on ``x`` (checked in a
            child process, at the shape of the first batch of ``x``).
        DataError: ``x`` does not fit the flatbuffer's input or holds NaN/Inf, ``y`` does not
            fit the outputs, the reference's outputs do not match the flatbuffer's.
        ConfigError: an unknown task.
    """
    if latency_runs < 0:
        raise errors.DataError(f"latency_runs={latency_runs!r}; accepted: an integer >= 0")
    x = data_lib.check_images(x, "data")
    data_lib.check_token_ids(x, reference, "x")  # by the Keras reference's Embedding, if any
    content = load_flatbuffer(tflite)
    if len(content) < 8 or content[4:8] != b"TFL3":
        verify(content)  # the clear "not a TFLite flatbuffer" error
    interp = _checked_interpreter(content, x, num_threads)
    outs = _run(interp, x, 256)
    names = output_names(interp)
    order = _keras_order(names, reference)
    outs, names = [outs[i] for i in order], [names[i] for i in order]
    details = [interp.get_output_details()[i] for i in order]
    report = ValidationReport(
        **profiling.tflite_sizes(content),
        num_samples=len(x),
        input_dtype=np.dtype(interp.get_input_details()[0]["dtype"]).name,
        output_dtype=np.dtype(details[0]["dtype"]).name,
        signature={"inputs": io_details(interp.get_input_details()),
                   "outputs": io_details(details)},
    )
    if baseline is not None:
        base = baseline if isinstance(baseline, dict) else profiling.tflite_sizes(
            load_flatbuffer(baseline))
        report.ratio = report.bytes / base["bytes"]
        report.gzip_ratio = report.gzip_bytes / base["gzip_bytes"]
    ys = _as_list(y, names, "y") if y is not None else [None] * len(names)
    refs = _reference_outputs(reference, x, outs, names)
    for i, (name, out, task_i) in enumerate(zip(names, outs, tasks_lib.per_output(task,
                                                                                  len(names)))):
        target, task_i = _checked_targets(ys[i], out, task_i, name,
                                          None if refs is None else refs[i])
        found = tasks_lib.metrics(out, task_i, target, None if refs is None else refs[i])
        report.outputs.append({"name": name, "task": task_i, **found})
    if len(names) == 1:
        first = dict(report.outputs[0])
        report.task = first.pop("task")
        first.pop("name")
        for key, value in first.items():
            setattr(report, key, value)
    else:
        report.task = "multi-output"
    if latency_runs:
        for name, delegates in (("xnnpack", True), ("builtin", False)):
            report.latency[name] = {
                f"threads_{n}": latency(content, x[0], latency_runs, n, delegates=delegates)
                for n in sorted(set(threads) | {num_threads})}
        headline = report.latency["xnnpack"][f"threads_{num_threads}"]
        report.latency_ms, report.latency_p90_ms = headline["median_ms"], headline["p90_ms"]
    if compiled_model:
        report.compiled_model = runtime.parity(
            interp, content, x, _quantize, _dequantize,
            lambda xs: _run(interp, xs, 256)[order[0]], kernel_modes=tuple(compiled_model),
            ynnpack=ynnpack, num_threads=num_threads)
    if litert_benchmark:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="tfcompress_bench_") as folder:
            path = os.path.join(folder, "model.tflite")
            with open(path, "wb") as f:
                f.write(content)
            report.litert_benchmark = runtime.benchmark(path, num_threads=num_threads)
    if delegate_checks:
        report.xnnpack = xnnpack_coverage(content, next(_batches(interp, x[:1], 1))[0].shape)
        report.gpu = {"analyzer": gpu_compatibility(content),
                      "delegate": gpu_delegate_check(content, x, gpu_delegate, outs[0],
                                                     report.outputs[0]["task"])}
    return report


def _keras_order(names: list, reference) -> list:
    """Indices of the flatbuffer's outputs in the reference Keras model's output order (the
    flatbuffer's own order where the names do not all match)."""
    keras_names = list(getattr(reference, "output_names", None) or [])
    if sorted(keras_names) == sorted(names) and len(names) > 1:
        return [names.index(n) for n in keras_names]
    return list(range(len(names)))


def _reference_outputs(reference, x, outs: list, names: list) -> Optional[list]:
    """The reference's outputs as float arrays shaped like the flatbuffer's, one per output."""
    if reference is None:
        return None
    if hasattr(reference, "predict"):
        if not isinstance(x, (list, tuple, dict)) and len(getattr(reference, "inputs", ())) == 1:
            data_lib.check_fits(x, reference.input_shape,
                                "x (the reference's input; a reference of another model?)")
        ref = reference.predict(x, verbose=0)
        if isinstance(ref, dict):
            ref = [ref[n] for n in names] if all(n in ref for n in names) else list(ref.values())
    else:
        ref = reference
    ref = _as_list(ref, names, "reference") if len(names) > 1 or isinstance(ref, dict) else (
        ref if isinstance(ref, (list, tuple)) else [ref])
    if len(ref) != len(outs) or any(np.size(r) != o.size for r, o in zip(ref, outs)):
        got = [tuple(np.shape(r)) for r in ref]
        raise errors.DataError(
            f"the reference gives {len(got)} outputs {got} that do not match the flatbuffer's "
            f"{[o.shape for o in outs]}; accepted: a Keras model with the same outputs")
    return [np.asarray(r, np.float32).reshape(o.shape) for r, o in zip(ref, outs)]
