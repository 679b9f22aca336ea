"""Every conversion mode, measured; writes benchmarks/results/convert_modes.json.

    python benchmarks/convert_modes.py                        # everything (~10 min on 2 cores)
    python benchmarks/convert_modes.py --parts=digits,mutants --mutants=500
    python benchmarks/convert_modes.py --parts=int8_digits,int8_mnv2   # converter vs quantizer int8
    python benchmarks/convert_modes.py --parts=export_seconds  # convert() against from_keras_model

Parts:
  digits     the digits CNN trained on the bundled digits; per mode: bytes, gzip bytes, ratios to
             float32, latency median/p90 with 1 and 2 threads (XNNPACK and builtin kernels),
             XNNPACK coverage, GPU analyzer verdict, test accuracy and argmax agreement with Keras.
  mnv2_96    MobileNetV2 (weights=None, 96x96x3, 1000 classes), the same figures; agreement with
             Keras on random images (the model is untrained: parity, not accuracy).
  mnv2_224   MobileNetV2 (weights=None, 224x224x3, 1000 classes), the same.
  kernels_digits  LiteRT's CompiledModel on each mode of the digits CNN with each CPU kernel
             mode (CpuOptions kernel_mode XNNPACK, BUILTIN, REFERENCE; runtime.KERNEL_MODES) and
             with enable_ynnpack=True: median run latency (ms, the calls after the first, pooled
             over --kernel_rounds rounds that take the kernel modes in rotating order, each in
             its own child process), max output difference and argmax agreement against the
             Interpreter on the same 32 test inputs, or the one-line failure (YNNPACK fails here);
             /proc/cpuinfo's SIMD flags.
  int8_digits  the two full-int8 paths side by side on the digits CNN over --seeds seeds: the
             TFLite converter's ``int8`` (int8 and float32 IO) against the LiteRT Quantizer's
             ``static_wi8_ai8`` (and ``static_wi8_ai16``) quantizing the float32 flatbuffer; bytes,
             gzip bytes, test accuracy, agreement with Keras, XNNPACK coverage, latency ratio to
             float32 (min, median, max over seeds).
  int8_mnv2    the same on MobileNetV2 (alpha --mnv2_alpha, --mnv2_size square RGB) trained on the
             digits resized to that size for --mnv2_epochs epochs (test accuracy on the resized
             test split).
  mutants    --mutants randomly mutated copies (byte flips, overwritten runs, flips in the op
             tables, truncation, table words set to extreme values) of the digits float32 and
             int8 flatbuffers, and --structural more of the last kind (the one that finds
             interpreter crashes), loaded through validate.predict: how many ran, how many were
             rejected with InvalidTFLiteError, how many of those crashed or hung the child
             interpreter, and the exit code of the process that called ``predict`` on all of
             them (a child of the benchmark: 0 when it survived, minus the signal otherwise).

  export_seconds  seconds to a float32 flatbuffer, ``tf.lite.TFLiteConverter.from_keras_model``
             (a Keras SavedModel first) against ``convert(model, "float32")`` (a lean SavedModel
             of the serving function, ``tfcompress.export.keras_export``), each in a fresh
             process per round (--seeds rounds, alternating which goes first), on the digits CNN,
             MobileNetV2 (alpha 0.35, 32x32x3) and MobileNetV2 (224x224x3, 1000 classes);
             median, min and max, and whether the two flatbuffers give equal outputs.

The variant ``int8_float_softmax`` is ``int8`` with ``keep_float_ops=["SOFTMAX"]``: XNNPACK has no
int8 softmax, so this is the int8 classifier XNNPACK takes whole (float32 input/output).

Each mode's size is also compared with what the plain ``tf.lite.TFLiteConverter`` makes from the
same model with the same settings (hand-written here, as a user would) to show that
tfcompress adds nothing to the flatbuffer. Latency on a shared machine is noisy.
"""

import json
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import _io, errors, keras, models, profiling  # noqa: E402
from tfcompress.export import runtime  # noqa: E402
from tfcompress.export.conversion import MODES, conversion_info, convert  # noqa: E402
from tfcompress.export.validation import predict, validate, verify  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["digits", "mnv2_96", "mnv2_224", "mutants"], "Parts to run.")
flags.DEFINE_list("modes", list(MODES) + ["int8_float_softmax"],
                  "Conversion modes, and variants (see VARIANTS).")
flags.DEFINE_bool("plain", True, "Also convert with the plain TFLiteConverter, for sizes.")
flags.DEFINE_integer("mutants", 500, "Mutated flatbuffers (all kinds) in part 'mutants'.")
flags.DEFINE_integer("structural", 2000, "Extra structural mutants in part 'mutants'.")
flags.DEFINE_integer("epochs", 15, "Digits CNN training epochs.")
flags.DEFINE_integer("calibration", 100, "Representative samples.")
flags.DEFINE_integer("seeds", 3, "Seeds of part int8_digits.")
flags.DEFINE_integer("kernel_rounds", 3, "Interleaved rounds of part kernels_digits.")
flags.DEFINE_integer("mnv2_size", 96, "Input size of part int8_mnv2.")
flags.DEFINE_float("mnv2_alpha", 0.35, "MobileNetV2 width of part int8_mnv2.")
flags.DEFINE_integer("mnv2_epochs", 6, "Training epochs of part int8_mnv2.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "convert_modes.json"), "Output JSON.")


# Variants: name -> (mode, convert options). XNNPACK has no int8 SOFTMAX: keeping the final
# softmax in float (selective quantization) lets it take every node of an int8 classifier.
VARIANTS = {"int8_float_softmax": ("int8", {"keep_float_ops": ["SOFTMAX"]}),
            "int8_io_float32": ("int8", {"io_type": "float32"})}
# The two full-integer paths: the TFLite converter's int8 and the LiteRT Quantizer's static modes.
INT8_PATHS = ("int8", "int8_io_float32", "static_wi8_ai8", "static_wi8_ai16")


def plain_converter(model, mode, x_cal):
    """The same conversion written directly against tf.lite.TFLiteConverter."""
    c = tf.lite.TFLiteConverter.from_keras_model(model)

    def rep():
        for s in x_cal:
            yield [s[None].astype(np.float32)]

    if mode != "float32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        c.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
    elif mode == "int16x8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return c.convert()


def measure_model(label, model, x_cal, x_eval, y_eval, latency_runs):
    keras_out = model.predict(x_eval, verbose=0)
    rows = {}
    f32 = convert(model, "float32")
    for name in FLAGS.modes:
        mode, options = VARIANTS.get(name, (name, {}))
        start = time.perf_counter()
        fb = convert(model, mode, representative_data=x_cal,
                     representative_samples=len(x_cal), **options)
        seconds = time.perf_counter() - start
        plain = plain_converter(model, mode, x_cal) if mode in MODES and FLAGS.plain else None
        try:
            report = validate(fb, x_eval, y_eval, reference=keras_out,
                              latency_runs=latency_runs, baseline=f32)
        except errors.TfcompressError as e:  # recorded: the flatbuffer exists but does not run
            rows[name] = {"bytes": len(fb), "ratio": len(fb) / len(f32), "error": str(e),
                          "conversion_seconds": time.perf_counter() - start}
            logging.info("%s %s: %s", label, name, e)
            continue
        row = report.to_dict()
        row["conversion_seconds"] = seconds
        row["conversion"] = conversion_info(fb, mode)
        row["options"] = options
        if plain is not None:
            row["plain_converter"] = {**profiling.tflite_sizes(plain),
                                      "ratio": len(plain) / len(f32)}
            row["not_larger_than_plain"] = len(fb) <= len(plain)
        rows[name] = row
        logging.info("%s %s: %d bytes (%.3fx), plain %s, agreement %.4f, %.2f ms, XNNPACK %d/%d",
                     label, name, len(fb), row["ratio"], len(plain) if plain else None,
                     row["agreement"], row["latency_ms"], row["xnnpack"]["delegated"],
                     row["xnnpack"]["nodes"])
    return {"keras_accuracy": None if y_eval is None else
            tasks.top1(keras_out, y_eval), "modes": rows}


def trained_digits():
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    keras.utils.set_random_seed(0)
    model = models.digits_cnn()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=FLAGS.epochs, batch_size=32, verbose=0)
    return model, x, xt, yt


def part_digits():
    model, x, xt, yt = trained_digits()
    return measure_model("digits", model, x[: FLAGS.calibration], xt, yt, latency_runs=200)


def part_kernels_digits():
    """Each mode on CompiledModel with each CPU kernel mode and with YNNPACK, against the
    Interpreter (validate's compiled_model parity); latency pooled over interleaved rounds."""
    model, x, xt, yt = trained_digits()
    kernels = list(runtime.KERNEL_MODES)
    rows = {}
    for name in FLAGS.modes:
        mode, options = VARIANTS.get(name, (name, {}))
        fb = convert(model, mode, representative_data=x[: FLAGS.calibration],
                     representative_samples=FLAGS.calibration, **options)
        found, latencies = {}, {}
        for r in range(FLAGS.kernel_rounds):
            order = kernels[r % len(kernels):] + kernels[:r % len(kernels)]
            report = validate(fb, xt, yt, latency_runs=0, delegate_checks=False,
                              compiled_model=order, ynnpack=r == 0)  # YNNPACK fails: once
            for run in report.compiled_model.get("runs", []):
                key = run["kernel_mode"] + ("+ynnpack" if run["ynnpack"] else "")
                found.setdefault(key, run)
                if run.get("latency_ms") is not None:
                    latencies.setdefault(key, []).append(run["latency_ms"])
        rows[name] = {"bytes": len(fb), "kernels": {
            key: {k: run.get(k) for k in ("error", "max_abs_diff", "argmax_agreement",
                                          "fully_accelerated", "samples")}
            | {"latency_ms": float(np.median(latencies[key])) if key in latencies else None,
               "latency_ms_rounds": latencies.get(key, [])}
            for key, run in found.items()}}
        if "compared" in report.compiled_model and not report.compiled_model["compared"]:
            rows[name]["not_compared"] = report.compiled_model["reason"]
        logging.info("kernels %s: %s", name, rows[name])
    return {"modes": rows, "rounds": FLAGS.kernel_rounds, "cpu_flags": _cpu_flags()}


def _cpu_flags() -> list:
    """The SIMD flags of /proc/cpuinfo (what XNNPACK and YNNPACK pick their kernels by)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in line.split()[2:] if f.startswith(("avx", "amx", "fma", "sse4")))


def kernels_table(part: dict) -> str:
    """Part kernels_digits as Markdown: one row per mode and kernel."""
    lines = ["| mode | kernel | median ms | max abs diff vs Interpreter | argmax agreement |",
             "|---|---|---|---|---|"]
    for name, row in part["modes"].items():
        for key, k in row["kernels"].items():
            if k["error"]:
                lines.append(f"| {name} | {key} | failed: {k['error']} | | |")
            else:
                lines.append(f"| {name} | {key} | {k['latency_ms']:.3f} | "
                             f"{k['max_abs_diff']:.3g} | {k['argmax_agreement']:.4f} |")
    return "\n".join(lines)


def part_mnv2(size, latency_runs):
    keras.utils.set_random_seed(0)
    model = models.build("mobilenet_v2", (size, size, 3), 1000)
    rng = np.random.default_rng(0)
    x_cal = rng.uniform(-1, 1, (FLAGS.calibration, size, size, 3)).astype(np.float32)
    x_eval = rng.uniform(-1, 1, (32, size, size, 3)).astype(np.float32)
    out = measure_model(f"mnv2_{size}", model, x_cal, x_eval, None, latency_runs)
    out["params"] = int(model.count_params())
    return out


EXPORT_MODELS = {"digits_cnn": lambda: models.digits_cnn(),
                 "mobilenet_v2_a035_32": lambda: models.build("mobilenet_v2", (32, 32, 3), 10,
                                                              width=0.35),
                 "mobilenet_v2_224": lambda: models.build("mobilenet_v2", (224, 224, 3), 1000)}


def _export_child(name: str, how: str, path: str, queue) -> None:
    keras.utils.set_random_seed(0)
    model = EXPORT_MODELS[name]()
    start = time.perf_counter()
    fb = (tf.lite.TFLiteConverter.from_keras_model(model).convert() if how == "from_keras_model"
          else convert(model, "float32"))
    queue.put(time.perf_counter() - start)
    with open(path, "wb") as f:
        f.write(fb)


def part_export_seconds():
    ctx = multiprocessing.get_context("spawn")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in EXPORT_MODELS:
            seconds = {"from_keras_model": [], "convert": []}
            for r in range(FLAGS.seeds):
                order = list(seconds) if r % 2 == 0 else list(seconds)[::-1]
                for how in order:
                    queue = ctx.Queue()
                    child = ctx.Process(target=_export_child,
                                        args=(name, how, os.path.join(folder, how), queue))
                    child.start()
                    seconds[how].append(queue.get())
                    child.join()
            x = np.random.default_rng(0).random(
                (4,) + EXPORT_MODELS[name]().input_shape[1:], np.float32)
            outs = [predict(open(os.path.join(folder, how), "rb").read(), x) for how in seconds]
            out[name] = {how: {"median": float(np.median(s)), "min": min(s), "max": max(s)}
                         for how, s in seconds.items()}
            out[name]["equal_outputs"] = bool(np.array_equal(outs[0], outs[1]))
            logging.info("%s: %s", name, out[name])
    return out


def measure_int8_paths(model, x_cal, x_test, y_test, latency_runs):
    """Each full-integer path on one trained model: sizes, test accuracy, agreement, XNNPACK,
    latency as a ratio to float32 (float32 timed right before each, so drift cancels)."""
    keras_out = model.predict(x_test, verbose=0)
    f32 = convert(model, "float32")
    rows = {"keras_accuracy": tasks.top1(keras_out, y_test)}
    for name in INT8_PATHS:
        mode, options = VARIANTS.get(name, (name, {}))
        start = time.perf_counter()
        fb = convert(model, mode, representative_data=x_cal, representative_samples=len(x_cal),
                     **options)
        seconds = time.perf_counter() - start
        base = validate(f32, x_test[:1], latency_runs=latency_runs, delegate_checks=False)
        r = validate(fb, x_test, y_test, reference=keras_out, latency_runs=latency_runs,
                     baseline=f32)
        info = conversion_info(fb)
        rows[name] = {"bytes": r.bytes, "gzip_bytes": r.gzip_bytes, "gzip_ratio": r.gzip_ratio,
                      "accuracy": r.accuracy, "agreement": r.agreement,
                      "max_abs_diff": r.max_abs_diff,
                      "xnnpack": f"{r.xnnpack['delegated']}/{r.xnnpack['nodes']}",
                      "xnnpack_fallback": r.xnnpack["fallback_ops"],
                      "latency_ms": r.latency_ms, "latency_vs_float32": r.latency_ms / base.latency_ms,
                      "io": f"{info['inputs'][0]['dtype']}/{info['outputs'][0]['dtype']}",
                      "activation_dtype": info["activation_dtype"], "conversion_seconds": seconds}
        logging.info("%s: %s", name, rows[name])
    return rows


def spread(runs, name, key):
    values = sorted(r[name][key] for r in runs)
    return {"min": values[0], "median": float(np.median(values)), "max": values[-1]}


def part_int8_digits():
    runs = []
    for seed in range(FLAGS.seeds):
        (x, y), (xt, yt) = tfcompress.data.load_digits(seed=seed)
        keras.utils.set_random_seed(seed)
        model = models.digits_cnn()
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, epochs=FLAGS.epochs, batch_size=32, verbose=0)
        runs.append(measure_int8_paths(model, x[: FLAGS.calibration], xt, yt, 100))
    return {"runs": runs, "summary": {
        name: {key: spread(runs, name, key) for key in
               ("bytes", "gzip_bytes", "accuracy", "agreement", "latency_vs_float32")}
        | {"xnnpack": runs[0][name]["xnnpack"], "io": runs[0][name]["io"]}
        for name in INT8_PATHS}}


def part_int8_mnv2():
    size = FLAGS.mnv2_size
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    x, xt = (tfcompress.data.resize_images(a, (size, size), "rgb") for a in (x, xt))
    keras.utils.set_random_seed(0)
    model = models.build("mobilenet_v2", (size, size, 3), 10, FLAGS.mnv2_alpha)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=FLAGS.mnv2_epochs, batch_size=32, verbose=2)
    out = measure_int8_paths(model, x[: FLAGS.calibration], xt, yt, 30)
    out["train_seconds"] = time.perf_counter() - start
    out["params"] = int(model.count_params())
    return out


def mutate(content: bytes, rng, kind: int) -> bytes:
    data = bytearray(content)
    if kind == 0:  # flip 1-8 bytes anywhere
        for pos in rng.integers(0, len(data), rng.integers(1, 9)):
            data[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # overwrite 8 bytes inside the first 4 KiB (tables, offsets, header)
        start = int(rng.integers(8, min(4096, len(data) - 16)))
        data[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    elif kind == 2:  # flip bytes in the last 4 KiB (where the converter puts the op tables)
        for pos in rng.integers(max(0, len(data) - 4096), len(data), rng.integers(1, 5)):
            data[pos] ^= int(rng.integers(1, 256))
    elif kind == 3:  # truncate
        data = data[: int(rng.integers(8, len(data)))]
    else:  # structural: 1-3 aligned 32-bit words of the tables set to extreme values
        region = (len(data) - 6000, len(data)) if rng.integers(3) else (0, 3000)
        for _ in range(rng.integers(1, 4)):
            pos = int(rng.integers(max(0, region[0]), region[1] - 4)) & ~3
            value = int(rng.choice([0, 1, 255, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
                                    int(rng.integers(0, 2**32))]))
            data[pos:pos + 4] = value.to_bytes(4, "little")
    return bytes(data)


def part_mutants():
    """The mutants run in a child process, so a crash of the process calling ``predict`` (what
    the crash isolation must prevent) shows as its exit code instead of ending the benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mutants.json")
        child = multiprocessing.get_context("spawn").Process(
            target=_mutants_child, args=(path, FLAGS.mutants, FLAGS.structural))
        child.start()
        child.join()
        out = {}
        if os.path.exists(path):
            with open(path) as f:
                out = json.load(f)
    out["calling_process_exit_code"] = child.exitcode
    return out


def _mutants_child(path: str, mutants: int, structural: int) -> None:
    (x, y), (xt, _) = tfcompress.data.load_digits()
    keras.utils.set_random_seed(0)
    model = models.digits_cnn()
    sources = {"float32": convert(model, "float32"),
               "int8": convert(model, "int8", representative_data=x[:50])}
    rng = np.random.default_rng(0)
    out = {}
    for name, count, kinds in (("mixed", mutants, 5), ("structural", structural, 0)):
        out[name] = run_mutants(sources, rng, count, kinds, xt[:8])
    _io.write_text(path, json.dumps(out))


def run_mutants(sources, rng, count, kinds, x):
    """kinds=5: all five kinds in turn; 0: structural only."""
    counts = {"total": 0, "ran": 0, "rejected": 0, "child_crashed": 0, "child_timeout": 0,
              "other_exception": 0}
    examples, start = [], time.perf_counter()
    for i in range(count):
        fb = mutate(sources["float32" if i % 2 else "int8"], rng, i % kinds if kinds else 4)
        counts["total"] += 1
        try:
            verify(fb, timeout=20)  # a hang costs 20 s, not the default 120 s
            predict(fb, x)
            counts["ran"] += 1
        except (errors.InvalidTFLiteError, errors.DataError) as e:
            counts["rejected"] += 1
            counts["child_crashed"] += "crashed" in str(e) or "ended its process" in str(e)
            counts["child_timeout"] += "did not finish" in str(e)
            if len(examples) < 12 or "crashed" in str(e) or "did not finish" in str(e):
                examples.append(str(e)[:200])
        except Exception as e:  # noqa: BLE001  (a non-clear error is what we count here)
            counts["other_exception"] += 1
            examples.append(f"UNCLEAR {type(e).__name__}: {e}"[:200])
    counts["seconds"] = time.perf_counter() - start
    return {"counts": counts, "examples": examples}


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    results = {"calibration_samples": FLAGS.calibration}
    if os.path.exists(FLAGS.out):  # keep parts measured earlier
        with open(FLAGS.out) as f:
            results = {**json.load(f), **results}
    parts = {"digits": part_digits, "mnv2_96": lambda: part_mnv2(96, 50),
             "mnv2_224": lambda: part_mnv2(224, 20), "mutants": part_mutants,
             "int8_digits": part_int8_digits, "int8_mnv2": part_int8_mnv2,
             "kernels_digits": part_kernels_digits, "export_seconds": part_export_seconds}
    for part in FLAGS.parts:
        start = time.perf_counter()
        old_modes = (results.get(part) or {}).get("modes", {})
        results[part] = parts[part]()
        results[part]["part_seconds"] = time.perf_counter() - start
        if "modes" in results[part]:  # modes measured in an earlier run stay
            results[part]["modes"] = {**old_modes, **results[part]["modes"]}
        _io.write_text(FLAGS.out, json.dumps(results, indent=2, default=str))
    print(json.dumps(summary(results), indent=2))
    if "kernels_digits" in FLAGS.parts:
        print(kernels_table(results["kernels_digits"]))
    print(f"wrote {FLAGS.out}")


def summary(results) -> dict:
    out = {}
    for part in ("digits", "mnv2_96", "mnv2_224"):
        if part not in results:
            continue
        out[part] = {
            mode: {k: r.get(k) for k in ("bytes", "ratio", "gzip_ratio", "accuracy", "agreement",
                                         "latency_ms", "not_larger_than_plain")}
            | ({"error": r["error"]} if "error" in r else {
                "plain_ratio": (r.get("plain_converter") or {}).get("ratio"),
                "xnnpack": f"{r['xnnpack']['delegated']}/{r['xnnpack']['nodes']}",
                "xnnpack_fallback": r["xnnpack"]["fallback_ops"],
                "gpu_compatible": r["gpu"]["analyzer"]["compatible"]})
            for mode, r in results[part]["modes"].items()}
        out[part]["keras_accuracy"] = results[part]["keras_accuracy"]
    if "int8_digits" in results:
        out["int8_digits"] = results["int8_digits"]["summary"]
    if "int8_mnv2" in results:
        out["int8_mnv2"] = {k: v for k, v in results["int8_mnv2"].items() if k in INT8_PATHS
                            or k == "keras_accuracy"}
    if "mutants" in results:
        out["mutants"] = {k: v["counts"] for k, v in results["mutants"].items()
                          if isinstance(v, dict) and "counts" in v}
    if "export_seconds" in results:
        out["export_seconds"] = {k: v for k, v in results["export_seconds"].items()
                                 if k != "part_seconds"}
    return out


if __name__ == "__main__":
    app.run(main)
