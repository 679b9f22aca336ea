"""Low-bit and mixed-precision quantization, measured; writes benchmarks/results/lowbit.json.

    python benchmarks/lowbit.py                               # everything (~2 min on 2 cores)
    python benchmarks/lowbit.py --parts=digits --budgets=0.08,0.1,0.15

Parts:
  digits    the digits CNN trained as configs/digits.py does (15 epochs, Adam 1e-3, batch 32,
            seed 0). Per low-bit mode (``tfcompress.export.lowbit.MODES``, plus the converter's
            ``float32`` and ``dynamic`` for reference): bytes, gzip bytes, ratios to float32,
            test accuracy, agreement with Keras, latency, XNNPACK coverage, per-layer widths
            read back from the flatbuffer. Then per-layer sensitivity and mixed precision under
            each --budgets size budget (ratio to float32): widths are chosen on validation
            images (the last --val training images, with labels) and the result is measured on
            the test split; the recipe (in the JSON) is exported to a file and replayed, which
            must give the same bytes. Acceptance: dynamic_wi4 <= 0.14x float32 within 0.5
            point of float accuracy; mixed under 0.10x within 1 point (plain int2, 0.073x, is
            shown beside it).
  mnv2_224  MobileNetV2 (weights=None, 224x224x3, 1000 classes), its BatchNorm statistics set
            from the 16 random calibration images (see ``set_batchnorm_statistics``; with the
            initial ones static quantization makes flatbuffers LiteRT refuses, as the
            converter's own int16x8 in convert_modes.json): each low-bit mode quantizes its
            float32 flatbuffer (what ``convert(model, mode)`` does), runs on LiteRT and reports
            XNNPACK coverage, latency, agreement and relative output error against float32 on
            random images (untrained, near-uniform outputs: parity, not accuracy; int8 softmax
            outputs cannot tell such outputs apart); also ``dynamic_wi4`` with
            DEPTHWISE_CONV_2D at 8.

Latency on a shared machine is noisy.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import _io, errors, keras, models  # noqa: E402
from tfcompress.export import lowbit
from tfcompress.export import mixed
from tfcompress.export.conversion import conversion_info, convert  # noqa: E402
from tfcompress.export.validation import predict, validate  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["digits", "mnv2_224"], "Parts to run.")
flags.DEFINE_list("budgets", ["0.08", "0.1", "0.12", "0.15", "0.2"],
                  "Mixed-precision size budgets (ratios to float32) on the digits CNN.")
flags.DEFINE_integer("epochs", 15, "Digits CNN training epochs (configs/digits.py: 15).")
flags.DEFINE_integer("val", 300, "Training images (the last ones) that choose the widths.")
flags.DEFINE_integer("calibration", 100, "Representative samples (static modes).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "lowbit.json"), "Output JSON.")

# Variants: name -> (mode, quantize options).
VARIANTS = {"dynamic_wi4+dw8": ("dynamic_wi4", {"overrides": {"DEPTHWISE_CONV_2D": 8}})}


def measure(fb, f32, x, y, reference, latency_runs, seconds, mode) -> dict:
    try:
        report = validate(fb, x, y, reference=reference, latency_runs=latency_runs, baseline=f32)
    except errors.TfcompressError as e:  # recorded: the flatbuffer exists but does not run
        return {"bytes": len(fb), "ratio": len(fb) / len(f32), "error": str(e)}
    row = report.to_dict()
    row["conversion_seconds"] = seconds
    row["conversion"] = conversion_info(fb, mode)
    row["layer_bits"] = lowbit.layer_bits(fb)
    return row


def part_digits() -> dict:
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    keras.utils.set_random_seed(0)
    model = models.digits_cnn()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=False), ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=FLAGS.epochs, verbose=0)
    keras_out = model.predict(xt, verbose=0)
    f32 = convert(model, "float32")
    rows = {}
    for mode in ("float32", "dynamic", *lowbit.MODES):
        start = time.perf_counter()
        fb = convert(model, mode, representative_data=x, representative_samples=FLAGS.calibration)
        rows[mode] = measure(fb, f32, xt, yt, keras_out, 100, time.perf_counter() - start, mode)
        r = rows[mode]
        logging.info("digits %s: %d bytes (%.3fx), accuracy %s, XNNPACK %s", mode, len(fb),
                     r["ratio"], r.get("accuracy"), r.get("xnnpack", {}).get("delegated"))
    float_accuracy = rows["float32"]["accuracy"]
    x_val, y_val = x[-FLAGS.val:], y[-FLAGS.val:]
    start = time.perf_counter()
    sens = mixed.sensitivity(f32, x_val, y_val, widths=(2, 4, 8, 16))
    sens_seconds = time.perf_counter() - start
    mixed = {}
    for budget in (float(b) for b in FLAGS.budgets):
        start = time.perf_counter()
        try:
            result = mixed.mixed_precision(f32, x_val, y_val, size_budget=budget,
                                            sensitivities=sens)
        except errors.ConversionError as e:
            mixed[str(budget)] = {"error": str(e)}
            continue
        seconds = time.perf_counter() - start
        row = measure(result.flatbuffer, f32, xt, yt, keras_out, 100, seconds, "mixed")
        row["choice"] = {k: v for k, v in result.to_dict().items() if k != "sensitivity"}
        with tempfile.TemporaryDirectory() as tmp:  # the exported recipe JSON, replayed
            path = result.save_recipe(os.path.join(tmp, "recipe.json"))
            row["recipe_replays_same_bytes"] = lowbit.quantize(f32, path) == result.flatbuffer
        row["test_drop_points"] = 100 * (float_accuracy - row["accuracy"])
        mixed[str(budget)] = row
        logging.info("digits mixed %.2f: %.4fx, test accuracy %.4f, widths %s", budget,
                     row["ratio"], row["accuracy"], row["layer_bits"])
    wi4, int2 = rows["dynamic_wi4"], rows["dynamic_wi2"]
    at10 = mixed.get("0.1", {})
    acceptance = {
        "int4_ratio": wi4["ratio"], "int4_drop_points": 100 * (float_accuracy - wi4["accuracy"]),
        "int4_ok": wi4["ratio"] <= 0.14 and float_accuracy - wi4["accuracy"] <= 0.005,
        "mixed_0.1_ratio": at10.get("ratio"),
        "mixed_0.1_drop_points": at10.get("test_drop_points"),
        "mixed_0.1_ok": bool(at10) and "error" not in at10 and at10["ratio"] <= 0.10
        and at10["test_drop_points"] <= 1.0,
        "int2_ratio": int2["ratio"], "int2_drop_points": 100 * (float_accuracy - int2["accuracy"]),
    }
    return {"keras_accuracy": tasks.top1(keras_out, yt),
            "float_accuracy": float_accuracy, "modes": rows, "sensitivity": sens,
            "sensitivity_seconds": sens_seconds, "mixed": mixed, "acceptance": acceptance}


def set_batchnorm_statistics(model, x) -> None:
    """One training-mode pass with momentum 0: BN statistics become those of ``x``.

    weights=None leaves them at their initial values, so the activations of the untrained
    MobileNetV2 shrink to ~1e-8 by block 7 and calibrated (static) quantization gets bias
    scales LiteRT's kernels refuse.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)


def part_mnv2_224() -> dict:
    keras.utils.set_random_seed(0)
    model = models.build("mobilenet_v2", (224, 224, 3), 1000)
    rng = np.random.default_rng(0)
    x_cal = rng.uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32)
    x_eval = rng.uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32)
    try:  # as built: initial BN statistics
        lowbit.quantize(convert(model, "float32"), "static_wi8_ai8", representative_data=x_cal)
        initial_bn_static = "runs"
    except errors.ConversionError as e:
        initial_bn_static = str(e)
    set_batchnorm_statistics(model, x_cal)
    start = time.perf_counter()
    f32 = convert(model, "float32")
    float32_seconds = time.perf_counter() - start
    reference = predict(f32, x_eval)
    rows = {"float32": measure(f32, f32, x_eval, None, reference, 10, float32_seconds,
                               "float32")}
    for name in (*lowbit.MODES, *VARIANTS):
        mode, options = VARIANTS.get(name, (name, {}))
        start = time.perf_counter()
        try:
            fb = lowbit.quantize(f32, mode, representative_data=x_cal, **options)
        except errors.ConversionError as e:
            rows[name] = {"error": str(e), "options": options}
            continue
        rows[name] = measure(fb, f32, x_eval, None, reference, 10, time.perf_counter() - start,
                             mode)
        out = predict(fb, x_eval)
        rows[name].update(options=options, finite=bool(np.isfinite(out).all()),
                          relative_error=float(np.mean(np.abs(out - reference))
                                               / np.mean(np.abs(reference))))
        r = rows[name]
        logging.info("mnv2_224 %s: %.3fx, XNNPACK %s/%s, %s ms", name, r["ratio"],
                     r.get("xnnpack", {}).get("delegated"), r.get("xnnpack", {}).get("nodes"),
                     r.get("latency_ms"))
    return {"params": int(model.count_params()), "float32_seconds": float32_seconds,
            "static_wi8_ai8_with_initial_bn_statistics": initial_bn_static, "modes": rows}


def summary(results) -> dict:
    out = {}
    for part in ("digits", "mnv2_224"):
        if part not in results:
            continue
        out[part] = {
            mode: {k: r.get(k) for k in ("ratio", "gzip_ratio", "accuracy", "agreement",
                                         "relative_error", "latency_ms") if k in r}
            | ({"error": r["error"]} if "error" in r else {
                "xnnpack": f"{r['xnnpack']['delegated']}/{r['xnnpack']['nodes']}",
                "fallback": r["xnnpack"]["fallback_ops"],
                "bits": sorted(set(r["layer_bits"].values()))})
            for mode, r in results[part]["modes"].items()}
    if "digits" in results:
        d = results["digits"]
        out["digits"]["float_accuracy"] = d["float_accuracy"]
        out["digits_mixed"] = {
            budget: r if "error" in r else {
                "ratio": r["ratio"], "accuracy": r["accuracy"],
                "drop_points": r["test_drop_points"], "widths": r["layer_bits"],
                "replays": r["recipe_replays_same_bytes"]}
            for budget, r in d["mixed"].items()}
        out["acceptance"] = d["acceptance"]
    return out


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    results = {}
    if os.path.exists(FLAGS.out):  # keep parts measured earlier
        with open(FLAGS.out) as f:
            results = json.load(f)
    parts = {"digits": part_digits, "mnv2_224": part_mnv2_224}
    for part in FLAGS.parts:
        start = time.perf_counter()
        results[part] = parts[part]()
        results[part]["part_seconds"] = time.perf_counter() - start
        _io.write_text(FLAGS.out, json.dumps(results, indent=2, default=str))
    print(json.dumps(summary(results), indent=2))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
