"""Post-training quantization recovery: min-max vs +equalization vs +bias correction vs +AdaRound.

    PYTHONPATH=$PWD python benchmarks/ptq.py                      # all three models, ~10 min
    PYTHONPATH=$PWD python benchmarks/ptq.py --models=digits_cnn  # one

For the digits CNN, the mini-Xception and MobileNetV2 (alpha 0.35, digits resized to 32x32 RGB),
each trained on the bundled digits' training split less a stratified validation split (20%,
seed 0): full int8 (the TFLite converter's ``int8``, calibrated on the same images as the
recovery) and int4 weights (the LiteRT Quantizer's ``dynamic_wi4``), for

  min_max                  the trained model as it is (round to nearest, min-max scales)
  equalize                 + cross-layer equalization (BN folded)
  equalize+bias            + empirical bias correction
  equalize+bias+adaround   + AdaRound (run before the bias correction, see recovery.py)

(int8 rows of min-max and full recovery also give the test agreement of the same int8 weights
with int16 activations (``int16x8``): the part of the int8 loss that is activation rounding.)

test accuracy, agreement with the float Keras model on test images, bytes, seconds per step, and
a paired bootstrap 95% interval of the accuracy difference to float and to min-max. Decisions
are taken on the validation split: calibration size and AdaRound steps (a sweep of int4 recovery
on the digits CNN and the mini-Xception; MobileNetV2 takes the mini-Xception's), ``relu6``
("keep" or "relu", only where the model has ReLU6 pairs) for the recovery, and ``chosen``: the
variant with the best validation agreement (int8) or accuracy (int4), min-max included, which is
what a user of ``recover`` would deploy.
Writes benchmarks/results/ptq.json.
"""

import json
import os
import platform
import time

import numpy as np
from absl import app, flags, logging

import tfcompress
from tfcompress import _io, data, keras, models
from tfcompress.equalization import find_pairs, fold_batchnorm
from tfcompress.recovery import for_mode, recover
from tfcompress.validation import predict

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["digits_cnn", "mini_xception", "mobilenet_v2"], "Models to run.")
flags.DEFINE_list("modes", ["int8", "dynamic_wi4"], "Conversion modes.")
flags.DEFINE_integer("calibration", 512, "Calibration images (without --sweep).")
flags.DEFINE_integer("iterations", 300, "AdaRound steps per layer (without --sweep).")
flags.DEFINE_integer("seed", 0, "Training seed.")
flags.DEFINE_bool("sweep", True, "Choose calibration size and iterations on validation.")
flags.DEFINE_string("out", "benchmarks/results/ptq.json", "Output JSON.")

# Calibration size and AdaRound steps are chosen on validation accuracy of int4 recovery for
# the two small models; MobileNetV2 (too slow to sweep in the time budget) takes the
# mini-Xception's choice (BN-folded, depthwise-separable like it).
SWEEP_CALIBRATION = (256, 512, 1024)
SWEEP_ITERATIONS = (100, 300)
SWEEP_FOR = {"mobilenet_v2": "mini_xception"}
DECIDED: dict = {}
EPOCHS = {"digits_cnn": 15, "mini_xception": 30, "mobilenet_v2": 30}
VARIANTS = {
    "min_max": (),
    "equalize": ("equalize",),
    "equalize+bias": ("equalize", "correct_bias"),
    "equalize+bias+adaround": ("equalize", "correct_bias", "adaround"),
}


def split_validation(x, y, fraction=0.2, seed=0):
    """Stratified (x_fit, y_fit), (x_val, y_val) with a fixed seed (numpy only)."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        val.extend(idx[:int(round(fraction * len(idx)))])
    mask = np.zeros(len(y), bool)
    mask[val] = True
    return (x[~mask], y[~mask]), (x[mask], y[mask])


def paired_interval(a_correct, b_correct, n=2000, seed=0):
    """Bootstrap 95% interval of mean(a) - mean(b) on the same images, in points."""
    rng = np.random.default_rng(seed)
    d = a_correct.astype(float) - b_correct.astype(float)
    idx = rng.integers(0, len(d), (n, len(d)))
    means = d[idx].mean(axis=1) * 100
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _intervals(rows: list, min_max: dict, float_correct) -> None:
    """Replaces each row's per-image correctness by paired intervals to float and min-max."""
    base = min_max["test"]["correct"]
    for row in rows:
        for split in ("validation", "test"):
            c = row[split].pop("correct", None)
            if c is not None and split == "test":
                row["test"]["minus_float_points_ci95"] = paired_interval(c, float_correct)
                row["test"]["minus_min_max_points_ci95"] = paired_interval(c, base)


def build(name):
    if name == "mobilenet_v2":
        return models.build("mobilenet_v2", (32, 32, 3), 10, 0.35)
    return getattr(models, name)()


def evaluate(flatbuffer, splits, reference):
    out = {}
    for split, (x, y) in splits.items():
        pred = predict(flatbuffer, x).argmax(-1)
        out[split] = {"accuracy": float(np.mean(pred == y)),
                      "agreement": float(np.mean(pred == reference[split])),
                      "correct": pred == y}
    return out


def sweep(model, x_fit, x_val, y_val) -> list:
    """Validation accuracy of int4 (``dynamic_wi4``) recovery per (calibration, iterations)."""
    rows = []
    for calibration in SWEEP_CALIBRATION:
        for iterations in SWEEP_ITERATIONS:
            start = time.perf_counter()
            recovered = recover(model, x_fit[:calibration], iterations=iterations,
                                samples=calibration, **for_mode("dynamic_wi4"))
            seconds = time.perf_counter() - start
            pred = predict(tfcompress.convert(recovered, "dynamic_wi4"), x_val).argmax(-1)
            rows.append({"calibration": calibration, "iterations": iterations,
                         "validation_accuracy": float(np.mean(pred == y_val)),
                         "recovery_seconds": seconds})
            logging.info("sweep: calibration %d, iterations %d: validation accuracy %.4f, %.1f s",
                         calibration, iterations, rows[-1]["validation_accuracy"], seconds)
    return rows


def part(name):
    (x, y), (xt, yt) = data.load_digits()
    (xf, yf), (xv, yv) = split_validation(x, y)
    if name == "mobilenet_v2":
        xf, xv, xt = (data.resize_images(a, (32, 32), "rgb") for a in (xf, xv, xt))
    keras.utils.set_random_seed(FLAGS.seed)
    model = build(name)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    start = time.perf_counter()
    model.fit(xf, yf, batch_size=32, epochs=EPOCHS[name], verbose=0)
    train_seconds = time.perf_counter() - start
    order = np.random.default_rng(0).permutation(len(xf))
    splits = {"validation": (xv, yv), "test": (xt, yt)}
    reference = {s: model.predict(v[0], verbose=0).argmax(-1) for s, v in splits.items()}
    float_correct = {s: reference[s] == splits[s][1] for s in splits}
    result = {"train_seconds": train_seconds, "epochs": EPOCHS[name],
              "float": {s: float(np.mean(c)) for s, c in float_correct.items()}, "modes": {}}
    calibration, iterations = DECIDED.get(SWEEP_FOR.get(name, name),
                                          (FLAGS.calibration, FLAGS.iterations))
    if FLAGS.sweep and name not in SWEEP_FOR:
        result["sweep"] = sweep(model, xf[order], xv, yv)
        best = max(result["sweep"], key=lambda r: (r["validation_accuracy"],
                                                   -r["calibration"] * r["iterations"]))
        calibration, iterations = DECIDED[name] = (best["calibration"], best["iterations"])
    cal = xf[order[:calibration]]
    result.update(calibration=calibration, iterations=iterations,
                  settings_from=SWEEP_FOR.get(name, name) if FLAGS.sweep else "flags")
    relu6_options = ["keep"]
    if len(find_pairs(fold_batchnorm(model), "relu")) > len(find_pairs(fold_batchnorm(model))):
        relu6_options.append("relu")
    for mode in FLAGS.modes:
        settings = for_mode(mode)
        rows = {}

        def run(steps, relu6):
            start = time.perf_counter()
            recovered = model if not steps else recover(
                model, cal, steps=steps, relu6=relu6, iterations=iterations,
                samples=len(cal), **settings)
            seconds = time.perf_counter() - start
            fb = tfcompress.convert(recovered, mode, representative_data=cal,
                                    representative_samples=len(cal))
            row = {"steps": list(steps), "relu6": relu6, "recovery_seconds": seconds,
                   "bytes": len(fb), **evaluate(fb, splits, reference)}
            if steps:
                row["step_seconds"] = {k: v["seconds"] for k, v in recovered.recovery.items()}
            if mode == "int8" and (not steps or "adaround" in steps):
                # Diagnostic: the same int8 weights with int16 activations. What int8 still
                # loses beyond this is activation rounding, which weights cannot remove.
                fb16 = tfcompress.convert(recovered, "int16x8", representative_data=cal,
                                          representative_samples=len(cal))
                pred = predict(fb16, xt).argmax(-1)
                row["int16x8_test_agreement"] = float(np.mean(pred == reference["test"]))
            logging.info("%s %s %s relu6=%s: val agreement %.4f, test accuracy %.4f "
                         "agreement %.4f, %.1f s", name, mode, "+".join(steps) or "min_max",
                         relu6, row["validation"]["agreement"], row["test"]["accuracy"],
                         row["test"]["agreement"], seconds)
            return row

        key = "agreement" if mode == "int8" else "accuracy"
        full = VARIANTS["equalize+bias+adaround"]
        candidates = {r: run(full, r) for r in relu6_options}
        relu6 = max(relu6_options, key=lambda r: candidates[r]["validation"][key])
        for variant, steps in VARIANTS.items():
            rows[variant] = candidates[relu6] if steps == full else run(steps, relu6)
        chosen = max(VARIANTS, key=lambda v: (rows[v]["validation"][key], v == "min_max"))
        _intervals(list(rows.values()) + list(candidates.values()), rows["min_max"],
                   float_correct["test"])
        result["modes"][mode] = {"relu6": relu6, "relu6_candidates": {
            r: {"validation": c["validation"], "test": c["test"]} for r, c in candidates.items()},
            "variants": rows, "chosen": chosen}
    return result


def acceptance(results):
    out = {}
    limits = {"digits_cnn": 1.0, "mini_xception": 1.0, "mobilenet_v2": 1.5}
    for name, r in results.items():
        if name not in limits or "modes" not in r:
            continue
        a = {}
        if "int8" in r["modes"]:
            m = r["modes"]["int8"]
            full = m["variants"]["equalize+bias+adaround"]["test"]["agreement"]
            chosen = m["variants"][m["chosen"]]["test"]["agreement"]
            plain = m["variants"]["min_max"]["test"]["agreement"]
            a["int8_agreement_full"] = full
            a["int8_agreement_chosen"] = chosen
            a["int8_agreement_min_max"] = plain
            a["int8_ok"] = chosen >= 0.995 and chosen >= plain
        if "dynamic_wi4" in r["modes"]:
            m = r["modes"]["dynamic_wi4"]
            drop = 100 * (r["float"]["test"]
                          - m["variants"]["equalize+bias+adaround"]["test"]["accuracy"])
            drop_plain = 100 * (r["float"]["test"] - m["variants"]["min_max"]["test"]["accuracy"])
            a["int4_drop_points_full"] = drop
            a["int4_drop_points_min_max"] = drop_plain
            a["int4_ok"] = drop <= limits[name]
        secs = [v["recovery_seconds"] for m in r["modes"].values() for v in m["variants"].values()]
        a["max_recovery_seconds"] = max(secs)
        a["recovery_ok"] = max(secs) <= 120
        out[name] = a
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    results = {}
    if os.path.exists(FLAGS.out):  # models not run this time keep their results
        with open(FLAGS.out) as f:
            results = json.load(f)
        for name, r in results.items():  # earlier sweeps' choices serve the models that take them
            if isinstance(r, dict) and r.get("settings_from") == name and "calibration" in r:
                DECIDED[name] = (r["calibration"], r["iterations"])
    results.update({"cpu": platform.processor(), "flags": {
        "models": FLAGS.models, "modes": FLAGS.modes, "calibration": FLAGS.calibration,
        "iterations": FLAGS.iterations, "seed": FLAGS.seed, "sweep": FLAGS.sweep}})
    try:
        with open("/proc/cpuinfo") as f:
            flags_line = next((line for line in f if line.startswith("flags")), "")
        results["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8")
                                if f in flags_line.split()]
    except OSError:
        pass
    start = time.perf_counter()
    for name in FLAGS.models:
        begin = time.perf_counter()
        results[name] = part(name)
        results[name]["seconds"] = time.perf_counter() - begin
    results["acceptance"] = acceptance(results)
    results["seconds"] = time.perf_counter() - start
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    _io.write_text(FLAGS.out, json.dumps(results, indent=2, default=str))
    print(json.dumps(results["acceptance"], indent=1))
    print("wrote", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
