"""Runs a flatbuffer on LiteRT's ``CompiledModel`` (ai-edge-litert 2.3) and compares it with
the ``Interpreter`` on the same inputs.

``CompiledModel`` is how LiteRT runs models today (``ai_edge_litert.compiled_model``), with
``CpuOptions(kernel_mode=...)``: XNNPACK (``DELEGATE``), the reference kernels or the builtin
kernels, and ``enable_ynnpack``. It runs in a child process (``python -c`` with numpy and
ai_edge_litert only): a flatbuffer that crashes the native runtime is a finding in the result,
never the end of the caller's process. Checked here: XNNPACK, REFERENCE and BUILTIN run the
digits CNN's float32, int8 and dynamic_wi4 files; ``enable_ynnpack=True`` fails with a
RuntimeError on every file (this wheel's YNNPACK is not usable on this CPU), which is reported.
"""

import os
import re
import subprocess
import sys
import tempfile
from typing import Optional

import numpy as np

from tfcompress import errors

KERNEL_MODES = {"xnnpack": "DELEGATE", "reference": "REFERENCE", "builtin": "BUILTIN"}

# The child: reads model.tflite and inputs.npy (one raw input row per sample, as the
# interpreter takes it), runs each sample, writes outputs.npy (raw first output per sample).
_CHILD = r"""
import sys
import time
import numpy as np
from ai_edge_litert import compiled_model as cm
folder, mode, ynnpack, threads = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
x = np.load(folder + "/inputs.npy")
out_dtype = np.dtype(sys.argv[5])
options = cm.Options(cpu_options=cm.CpuOptions(
    num_threads=threads, kernel_mode=getattr(cm.CpuKernelMode, mode), enable_ynnpack=ynnpack))
model = cm.CompiledModel.from_file(folder + "/model.tflite", options=options)
ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
size = int(sys.argv[6])
rows, seconds = [], []
for sample in x:
    ins[0].write(np.ascontiguousarray(sample))
    start = time.perf_counter()
    model.run_by_index(0, ins, outs)
    seconds.append(time.perf_counter() - start)
    rows.append(outs[0].read(size, out_dtype))
np.save(folder + "/outputs.npy", np.stack(rows))
np.save(folder + "/seconds.npy", np.array(seconds))
print("fully_accelerated", int(model.is_fully_accelerated()))
"""


def run_compiled(content: bytes, inputs: np.ndarray, output_shape, output_dtype, *,
                 kernel_mode: str = "xnnpack", ynnpack: bool = False, num_threads: int = 1,
                 timeout: float = 120.0) -> dict:
    """Runs each row of ``inputs`` (raw, as the model's input tensor takes one call) through
    ``CompiledModel`` in a child process.

    Returns:
        {"outputs": raw first outputs (len(inputs), *output_shape) or None, "error": None or
        one line saying why the runtime failed, "fully_accelerated": bool or None,
        "latency_ms": median ``run`` time over the calls after the first (warm-up), if it ran}.

    Raises:
        ConfigError: an unknown ``kernel_mode``.
    """
    if kernel_mode not in KERNEL_MODES:
        raise errors.ConfigError(errors.unknown("kernel_mode", kernel_mode, list(KERNEL_MODES)))
    size = int(np.prod(output_shape))
    with tempfile.TemporaryDirectory(prefix="tfcompress_cm_") as folder:
        with open(os.path.join(folder, "model.tflite"), "wb") as f:
            f.write(content)
        np.save(os.path.join(folder, "inputs.npy"), inputs)
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, folder, KERNEL_MODES[kernel_mode],
                 "1" if ynnpack else "0", str(num_threads), np.dtype(output_dtype).name,
                 str(size)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"outputs": None, "error": f"CompiledModel hung (over {timeout:g} s)",
                    "fully_accelerated": None}
        if done.returncode != 0:
            why = _why(done.stderr, done.returncode)
            return {"outputs": None, "fully_accelerated": None,
                    "error": f"CompiledModel failed ({kernel_mode}, ynnpack={ynnpack}): "
                             f"{' '.join(why.split())[:300]}"}
        outputs = np.load(os.path.join(folder, "outputs.npy"))
        seconds = np.load(os.path.join(folder, "seconds.npy"))
    accelerated = "fully_accelerated 1" in done.stdout
    return {"outputs": outputs.reshape((len(inputs),) + tuple(output_shape)), "error": None,
            "fully_accelerated": accelerated,
            "latency_ms": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)) * 1e3}


def _why(stderr: str, returncode: int) -> str:
    """The child's failure in one line: the Python exception it raised (with LiteRT's own
    ``ERROR: [...]`` line under it, if any), or the signal that killed it."""
    if returncode < 0:
        return f"the runtime crashed (signal {-returncode})"
    lines = [l.strip(" \u2514") for l in stderr.splitlines() if l.strip()]
    raised = [l for l in lines if re.match(r"^\w+(Error|Exception): ", l)]
    native = [l for l in lines if l.startswith("ERROR: [")]
    why = raised[-1] if raised else f"exit status {returncode}"
    return why + (f" ({native[-1]})" if native and native[-1] not in why else "")


def compare(content: bytes, inputs: np.ndarray, reference: np.ndarray, dequantize,
            output_shape, output_dtype, *, kernel_mode: str = "xnnpack", ynnpack: bool = False,
            num_threads: int = 1) -> dict:
    """``CompiledModel`` against the Interpreter's outputs ``reference`` (dequantized, one row
    per input row) on the same raw ``inputs``: the largest and mean absolute difference and
    the argmax agreement, the median ``run`` latency; a failure is reported in ``error``, not
    raised."""
    run = run_compiled(content, inputs, output_shape, output_dtype, kernel_mode=kernel_mode,
                       ynnpack=ynnpack, num_threads=num_threads)
    found = {"kernel_mode": kernel_mode, "ynnpack": ynnpack, "samples": int(len(inputs)),
             "error": run["error"], "fully_accelerated": run["fully_accelerated"],
             "latency_ms": run.get("latency_ms")}
    if run["outputs"] is None:
        return found
    ours = dequantize(run["outputs"]).reshape(len(inputs), -1)
    theirs = np.asarray(reference, np.float32).reshape(len(inputs), -1)
    diff = np.abs(ours - theirs)
    found.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                 argmax_agreement=float(np.mean(ours.argmax(-1) == theirs.argmax(-1))))
    return found


def parity(interp, content: bytes, x: np.ndarray, quantize, dequantize, run_interpreter, *,
           samples: int = 32, kernel_modes=("xnnpack",), ynnpack: bool = False,
           num_threads: int = 1) -> dict:
    """Each kernel mode's comparison on the first ``samples`` of ``x`` (single-input,
    single-output models; others are reported as not compared)."""
    inp, outs = interp.get_input_details(), interp.get_output_details()
    if len(inp) != 1 or len(outs) != 1:
        return {"compared": False, "reason": f"{len(inp)} inputs, {len(outs)} outputs; "
                "CompiledModel parity covers one input and one output"}
    shape = (1,) + tuple(int(d) for d in inp[0]["shape"][1:])  # one sample per call
    x = np.asarray(x)[:samples]
    rows = np.stack([quantize(x[i:i + 1], inp[0]).reshape(shape) for i in range(len(x))])
    reference = run_interpreter(x)
    out_shape = (1,) + tuple(int(d) for d in outs[0]["shape"][1:])
    found = {"compared": True, "runs": []}
    for mode in kernel_modes:
        for yn in ((False, True) if ynnpack else (False,)):
            found["runs"].append(compare(
                content, rows, reference, lambda y: dequantize(y, outs[0]), out_shape,
                outs[0]["dtype"], kernel_mode=mode, ynnpack=yn, num_threads=num_threads))
    done = [r for r in found["runs"] if r["error"] is None]
    found["max_abs_diff"] = max((r["max_abs_diff"] for r in done), default=None)
    return found


def benchmark(path: str, *, num_threads: int = 1, timeout: float = 300.0,
              extra: Optional[list] = None) -> dict:
    """LiteRT's own latency tool on a ``.tflite`` file (``python -m
    ai_edge_litert.tools.benchmark_litert_model --model=... --result_json=...``): its JSON, or
    {"error": one line} when it cannot run."""
    import json

    with tempfile.TemporaryDirectory(prefix="tfcompress_bench_") as folder:
        result = os.path.join(folder, "result.json")
        cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
               f"--model={os.path.abspath(path)}", f"--result_json={result}",
               f"--num_threads={num_threads}", *(extra or [])]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"benchmark_litert_model ran over {timeout:g} s"}
        if done.returncode != 0 or not os.path.exists(result):
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"benchmark_litert_model failed: {' '.join(tail[0].split())[:300]}"}
        with open(result) as f:
            return json.load(f)
