"""Android export: a folder a mobile developer drops into an app's ``assets/``.

``model.tflite``, ``labels.txt``, ``model.json`` (input/output names, shapes, dtypes,
quantization parameters, the input normalization, and each op's accelerators: CPU always, CPU
XNNPACK where our delegate check saw XNNPACK take it, GPU where the GPU-compatibility analyzer
finds nothing against it) and a ``README.md`` with the Kotlin lines that run the model on
LiteRT's ``CompiledModel`` API (``com.google.ai.edge.litert:litert:2.3.0``) with a CPU or GPU
accelerator choice, written for this model's own input and output types; the legacy
``Interpreter`` lines are kept as the fallback for older apps.
"""

import json
import os
from typing import Optional, Sequence, Union

from tfcompress import _io
from tfcompress import errors
import tfcompress._compat.litert as _litert
import tfcompress.export.validation as validation
from tfcompress._compat.litert import interpreter, io_details, load_flatbuffer
from tfcompress._compat.schema import state_tensors

_KOTLIN_TYPES = {  # dtype -> (bytes per value, ByteBuffer put call, output array, value range)
    "float32": (4, "putFloat", "FloatArray", None),
    "int8": (1, "put", "ByteArray", (-128, 127)),
    "uint8": (1, "put", "ByteArray", (0, 255)),
    "int16": (2, "putShort", "ShortArray", (-32768, 32767)),
}
# Integer inputs (token ids, indices) are fed as they are: dtype -> (bytes, ByteBuffer put
# call, Kotlin array, its conversion from an IntArray element).
_INTEGER_INPUTS = {"int32": (4, "putInt", "IntArray", ""),
                   "int64": (8, "putLong", "LongArray", ".toLong()")}


def export_android(
    tflite: Union[bytes, str],
    directory: str,
    *,
    labels: Optional[Sequence[str]] = None,
    normalization: Optional[dict] = None,
    conversion: Optional[dict] = None,
    overwrite: bool = False,
) -> dict:
    """Writes ``model.tflite``, ``labels.txt``, ``model.json`` and ``README.md`` into ``directory``.

    The user's files are safe: a folder that holds anything but an earlier bundle of ours is
    refused unless ``overwrite=True`` (which replaces these four files and nothing else).
    Nothing outside ``directory`` is written.

    Args:
        tflite: flatbuffer bytes or a ``.tflite`` path (verified before it is written).
        directory: output folder: new, empty, or holding an earlier bundle of ours.
        labels: class names in output order; default ``0 .. N-1``.
        normalization: how raw values become the model's float input,
            ``x = (value - mean) / std``: ``{"mean": m, "std": s}``; default: mean 0, std 255
            for an image input (rank 4: pixels), else mean 0, std 1 (features fed as they are).
        conversion: ``convert.conversion_info`` of the flatbuffer, copied into the sidecar.
        overwrite: write into a folder that holds other files, replacing files of these names.

    Returns:
        The sidecar written to ``model.json``.

    Raises:
        InvalidTFLiteError: the flatbuffer does not load.
        DataError: labels that do not match the output size, or a bad normalization.
        ConfigError: ``directory`` is a file, or a non-empty folder that is not a bundle of
            ours (without ``overwrite``).
    """
    check_directory(directory, overwrite, hint="overwrite=True (tfcompress android --overwrite)")
    content = load_flatbuffer(tflite)
    interp = interpreter(content, allocate=False)
    inputs = io_details(interp.get_input_details())
    outputs = io_details(interp.get_output_details())
    num_classes = int(outputs[0]["shape"][-1])
    labels = [str(i) for i in range(num_classes)] if labels is None else [str(v) for v in labels]
    if len(labels) != num_classes:
        raise errors.DataError(
            f"{len(labels)} labels for a model with {num_classes} outputs; accepted: "
            f"{num_classes} labels in output order")
    image = len(inputs[0]["shape"]) == 4
    normalization = dict(normalization or {"mean": 0.0, "std": 255.0 if image else 1.0})
    if set(normalization) - {"mean", "std", "note"} or float(normalization.get("std", 0)) == 0:
        raise errors.DataError(
            f"normalization {normalization!r}; accepted: {{'mean': number, 'std': nonzero number}}")
    unsupported = [d["dtype"] for d in inputs[:1] if d["dtype"] not in {
        **_KOTLIN_TYPES, **_INTEGER_INPUTS}]
    if unsupported:
        raise errors.DataError(errors.unknown("input dtype", unsupported[0],
                                              sorted({**_KOTLIN_TYPES, **_INTEGER_INPUTS})))
    unsupported = [d["dtype"] for d in outputs[:1] if d["dtype"] not in _KOTLIN_TYPES]
    if unsupported:
        raise errors.DataError(errors.unknown("output dtype", unsupported[0],
                                              sorted(_KOTLIN_TYPES)))
    integer_input = inputs[0]["dtype"] in _INTEGER_INPUTS
    sidecar = {
        "model_file": "model.tflite",
        "labels_file": "labels.txt",
        "inputs": inputs,
        "outputs": outputs,
        "input_normalization": {
            "mean": float(normalization["mean"]), "std": float(normalization["std"]),
            "formula": ("integer input (token ids): fed as they are, not normalized"
                        if integer_input else
                        f"x = ({'pixel' if image else 'value'} - mean) / std; quantized inputs: "
                        "q = round(x / scale) + zero_point"),
        },
        "bytes": len(content),
        # a recurrent layer's state persists between runs: reset it for each independent input
        "state_tensors": int(state_tensors(content)),
    }
    sidecar["ops"], sidecar["accelerators"] = op_accelerators(content)
    if conversion:
        sidecar["conversion"] = conversion
    os.makedirs(directory, exist_ok=True)
    _io.write_bytes(os.path.join(directory, "model.tflite"), content)
    _io.write_text(os.path.join(directory, "labels.txt"), "\n".join(labels) + "\n")
    _io.write_text(os.path.join(directory, "model.json"), json.dumps(sidecar, indent=2) + "\n")
    _io.write_text(os.path.join(directory, "README.md"), readme(sidecar))
    return sidecar


def op_accelerators(content: bytes) -> tuple:
    """([{"index", "op", "accelerators"}] per op, a summary) for ``model.json``.

    Every op runs on the CPU's builtin kernels; "CPU/XNNPACK" where the XNNPACK delegate took
    the node (``validation.xnnpack_coverage``); "GPU" where ``tf.lite.experimental.Analyzer``
    reports no GPU incompatibility for it (a hint, not a run: the analyzer calls some ops
    compatible that the GPU delegate refuses). A check that cannot run is named in the summary.
    """
    interp = interpreter(content, delegates=False, allocate=False)
    ops = [op for op in _litert.ops(interp) if op["op_name"] != "DELEGATE"]
    summary = {"sources": {"CPU/XNNPACK": "XNNPACK delegate partitions (LiteRT Interpreter)",
                           "GPU": "tf.lite.experimental.Analyzer(gpu_compatibility=True), a hint"}}
    try:
        xnnpack = set(validation.xnnpack_coverage(content)["delegated_nodes"])
    except (errors.TfcompressError, ValueError, RuntimeError) as e:
        xnnpack, summary["xnnpack_error"] = set(), " ".join(str(e).split())
    try:
        gpu = validation.gpu_compatibility(content)
        bad = {o["node"] for o in gpu["incompatible_ops"]}
        gpu_known = gpu["compatible"] or bool(bad)  # warnings without nodes: unknown per op
        if not gpu_known:
            summary["gpu_unknown"] = "; ".join(gpu["warnings"][:3])
    except (errors.TfcompressError, ValueError, RuntimeError) as e:
        bad, gpu_known, summary["gpu_unknown"] = set(), False, " ".join(str(e).split())
    rows = []
    for op in ops:
        accelerators = ["CPU"] + (["CPU/XNNPACK"] if op["index"] in xnnpack else []) + (
            ["GPU"] if gpu_known and op["index"] not in bad else [])
        rows.append({"index": int(op["index"]), "op": op["op_name"],
                     "accelerators": accelerators})
    summary.update({
        "ops": len(rows),
        "xnnpack_ops": sum("CPU/XNNPACK" in r["accelerators"] for r in rows),
        "gpu_ops": sum("GPU" in r["accelerators"] for r in rows),
    })
    summary["gpu_whole_model"] = bool(rows) and summary["gpu_ops"] == len(rows)
    return rows, summary


BUNDLE_FILES = ("model.tflite", "labels.txt", "model.json", "README.md")


def check_directory(directory: str, overwrite: bool = False, *, hint: str = "") -> None:
    """Refuses a file, or a non-empty folder other than an earlier bundle (unless ``overwrite``;
    ``hint`` says how the caller's user asks for it, "": they cannot)."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise errors.ConfigError(
            f"android output {directory!r} is a file; accepted: a new or empty folder")
    if overwrite or not os.path.isdir(directory):
        return
    present = sorted(os.listdir(directory))
    if not present or (set(present) <= set(BUNDLE_FILES) and _ours(directory)):
        return
    shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
    raise errors.ConfigError(
        f"android output folder {directory!r} is not empty ({shown}); accepted: a new or empty "
        "folder, or " + (f"{hint} to replace {', '.join(BUNDLE_FILES)} there" if hint else
                         "one holding an earlier bundle of ours"))


def _ours(directory: str) -> bool:
    """Whether ``directory/model.json`` is a sidecar this module wrote."""
    try:
        with open(os.path.join(directory, "model.json")) as f:
            sidecar = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(sidecar, dict) and sidecar.get("model_file") == "model.tflite" and (
        sidecar.get("labels_file") == "labels.txt" and "input_normalization" in sidecar)


# CompiledModel's TensorBuffer calls by dtype (LiteRT 2.3 Kotlin: writeFloat/readFloat,
# writeInt8/readInt8); other dtypes use the Interpreter lines.
_BUFFER_CALLS = {"float32": ("writeFloat", "readFloat", "FloatArray"),
                 "int8": ("writeInt8", "readInt8", "ByteArray")}


def kotlin(sidecar: dict) -> str:
    """Kotlin lines that run ``model.tflite`` on LiteRT's ``CompiledModel`` (GPU where asked
    and available, else CPU) and classify one input; "" where the input or output dtype has no
    TensorBuffer call here, or where the model keeps a recurrent state between runs (the
    Kotlin ``CompiledModel`` of LiteRT 2.3 has no call to reset it; the ``Interpreter`` lines,
    which reset it, then serve)."""
    inp, out = sidecar["inputs"][0], sidecar["outputs"][0]
    ids = inp["dtype"] == "int32"  # token ids: TensorBuffer.writeInt (no writeLong for int64)
    if ((inp["dtype"] not in _BUFFER_CALLS and not ids) or out["dtype"] not in _BUFFER_CALLS
            or sidecar.get("state_tensors")):
        return ""
    size = 1
    for d in inp["shape"][1:]:
        size *= int(d)
    write, _, in_array = _BUFFER_CALLS[inp["dtype"]] if not ids else ("writeInt", "", "IntArray")
    _, read, _ = _BUFFER_CALLS[out["dtype"]]
    n_out = int(out["shape"][-1])
    norm = sidecar["input_normalization"]
    x = f"(pixels[i] - {norm['mean']}f) / {norm['std']}f"
    value = x if inp["dtype"] == "float32" else (
        f"(({x}) / {inp['scale']}f{_plus(inp['zero_point'])}).roundToInt()"
        ".coerceIn(-128, 127).toByte()")
    score = "raw[i]" if out["dtype"] == "float32" else (
        f"(raw[i].toInt(){_plus(-out['zero_point'])}) * {out['scale']}f")
    acc = sidecar.get("accelerators") or {}
    gpu_note = ("the GPU analyzer finds every op GPU-compatible" if acc.get("gpu_whole_model")
                else f"{acc.get('gpu_ops', 0)} of {acc.get('ops', '?')} ops GPU-compatible "
                     "(model.json): the CPU is the safer choice")
    return "\n".join([
        "import com.google.ai.edge.litert.Accelerator",
        "import com.google.ai.edge.litert.CompiledModel",
        "import kotlin.math.roundToInt",
        "",
        f"// Accelerator: Accelerator.GPU or Accelerator.CPU (XNNPACK); {gpu_note}.",
        "fun load(accelerator: Accelerator): CompiledModel =",
        "    CompiledModel.create(context.assets, \"model.tflite\", CompiledModel.Options(accelerator))",
        "val model = try { load(Accelerator.GPU) } catch (e: Exception) { load(Accelerator.CPU) }",
        "val inputBuffers = model.createInputBuffers()",
        "val outputBuffers = model.createOutputBuffers()",
        "val labels = context.assets.open(\"labels.txt\").bufferedReader().readLines()",
        "",
        *([f"// One input: tokens, an IntArray of {size} token ids (shape {inp['shape'][1:]}), "
           "fed as int32 as they are.",
           "inputBuffers[0].writeInt(tokens)"] if ids else [
            f"// One input: pixels, a FloatArray of {size} {_raw(inp)} (shape "
            f"{inp['shape'][1:]}, row-major), fed as {inp['dtype']}.",
            f"inputBuffers[0].{write}({in_array}({size}) {{ i -> {value} }})"]),
        "model.run(inputBuffers, outputBuffers)",
        f"val raw = outputBuffers[0].{read}()",
        f"val scores = FloatArray({n_out}) {{ i -> {score} }}",
        *_print_scores(n_out),
    ])


def kotlin_interpreter(sidecar: dict) -> str:
    """Kotlin lines that load ``model.tflite`` with the legacy ``Interpreter`` (for apps on
    the older TensorFlow Lite API) and classify one image."""
    inp, out = sidecar["inputs"][0], sidecar["outputs"][0]
    size = 1
    for d in inp["shape"][1:]:
        size *= int(d)
    ids = inp["dtype"] in _INTEGER_INPUTS
    in_bytes, put, _, in_range = (_KOTLIN_TYPES[inp["dtype"]] if not ids else
                                  _INTEGER_INPUTS[inp["dtype"]])
    n_out = int(out["shape"][-1])
    _, _, out_array, _ = _KOTLIN_TYPES[out["dtype"]]
    norm = sidecar["input_normalization"]
    x = f"(pixels[i] - {norm['mean']}f) / {norm['std']}f"
    if ids:
        value = f"tokens[i]{in_range}"  # in_range: the IntArray element's conversion
    elif in_range is None:
        value = f"{x}"
    else:
        cast = {"put": "toByte()", "putShort": "toShort()"}[put]
        value = (f"(({x}) / {inp['scale']}f{_plus(inp['zero_point'])}).roundToInt()"
                 f".coerceIn({in_range[0]}, {in_range[1]}).{cast}")
    if out["dtype"] == "float32":
        score = "output[0][i]"
    else:
        raw = "output[0][i].toInt()" if out["dtype"] != "uint8" else "(output[0][i].toInt() and 0xFF)"
        score = f"({raw}{_plus(-out['zero_point'])}) * {out['scale']}f"
    return "\n".join([
        "import org.tensorflow.lite.Interpreter",
        "import java.io.FileInputStream",
        "import java.nio.ByteBuffer",
        "import java.nio.ByteOrder",
        "import java.nio.channels.FileChannel",
        "import kotlin.math.roundToInt",
        "",
        "// Load model.tflite from assets (keep it uncompressed: androidResources { noCompress += \"tflite\" }).",
        "val fd = context.assets.openFd(\"model.tflite\")",
        "val model = FileInputStream(fd.fileDescriptor).channel",
        "    .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)",
        "val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(2))",
        "val labels = context.assets.open(\"labels.txt\").bufferedReader().readLines()",
        "",
        (f"// One input: tokens, an IntArray of {size} token ids (shape {inp['shape'][1:]}), "
         f"fed as {inp['dtype']} as they are." if ids else
         f"// One input: pixels, a FloatArray of {size} {_raw(inp)} (shape "
         f"{inp['shape'][1:]}, row-major), fed as {inp['dtype']}."),
        f"val input = ByteBuffer.allocateDirect({size * in_bytes}).order(ByteOrder.nativeOrder())",
        f"for (i in 0 until {size}) input.{put}({value})",
        "input.rewind()",
        f"val output = Array(1) {{ {out_array}({n_out}) }}",
        *(["// The model keeps its recurrent state (LSTM) between runs: zero it before each "
           "independent input.",
           "interpreter.resetVariableTensors()"] if sidecar.get("state_tensors") else []),
        "interpreter.run(input, output)",
        f"val scores = FloatArray({n_out}) {{ i -> {score} }}",
        *_print_scores(n_out),
    ])


def _raw(inp: dict) -> str:
    """What the app's FloatArray holds: pixels for an image input, else features."""
    return "raw pixel values" if len(inp["shape"]) == 4 else "raw feature values"


def _print_scores(n_out: int) -> list:
    """Kotlin lines that print the result: the top class and its score, or the value itself
    where the output has one (a regression value or a sigmoid's probability: no argmax)."""
    if n_out == 1:
        return ["println(\"output: ${scores[0]}\")"]
    return ["val best = scores.indices.maxByOrNull { scores[it] }!!",
            "println(\"${labels[best]}: ${scores[best]}\")"]


def _plus(value: int) -> str:
    """`` + 3`` / `` - 3`` / nothing, for Kotlin arithmetic."""
    return f" + {value}" if value > 0 else (f" - {-value}" if value < 0 else "")


def readme(sidecar: dict) -> str:
    """The exported folder's README.md."""
    inp, out = sidecar["inputs"][0], sidecar["outputs"][0]
    compiled = kotlin(sidecar)
    return "\n".join([
        "# Android bundle (LiteRT)",
        "",
        "Copy `model.tflite` and `labels.txt` into `app/src/main/assets/` and add the LiteRT "
        "runtime to `app/build.gradle.kts`:",
        "",
        "```kotlin",
        "dependencies {",
        "    implementation(\"com.google.ai.edge.litert:litert:2.3.0\")",
        "    implementation(\"com.google.ai.edge.litert:litert-gpu:2.3.0\")  // for Accelerator.GPU",
        "}",
        "```",
        "",
        f"Input `{inp['name']}`: shape {inp['shape']}, {inp['dtype']} (scale {inp['scale']}, "
        f"zero point {inp['zero_point']}). Output `{out['name']}`: shape {out['shape']}, "
        f"{out['dtype']} (scale {out['scale']}, zero point {out['zero_point']}). "
        f"Normalization: {sidecar['input_normalization']['formula']} with mean "
        f"{sidecar['input_normalization']['mean']} and std "
        f"{sidecar['input_normalization']['std']}. Everything is also in `model.json`.",
        "",
        *([f"This model has {len(sidecar['outputs'])} outputs (`model.json` lists them in the "
           f"file's order); the lines below read the first, `{out['name']}` (shape "
           f"{out['shape']}). Read the others the same way, each with its own shape, scale and "
           "zero point.", ""] if len(sidecar["outputs"]) > 1 else []),
        *(["## Run it with CompiledModel (LiteRT 2.x)", "", "```kotlin", compiled, "```", "",
            f"Accelerators per op are in `model.json` (`ops`): {_accelerator_line(sidecar)}.",
            ""] if compiled else []),
        "## Fallback: the Interpreter API (older apps, "
        "`org.tensorflow.lite.Interpreter`)" if compiled else "## Run it with the Interpreter",
        "",
        "```kotlin",
        kotlin_interpreter(sidecar),
        "```",
        "",
    ])


def _accelerator_line(sidecar: dict) -> str:
    acc = sidecar.get("accelerators") or {}
    return (f"{acc.get('ops', 0)} ops, {acc.get('xnnpack_ops', 0)} taken by XNNPACK on the CPU, "
            f"{acc.get('gpu_ops', 0)} GPU-compatible by the analyzer")
