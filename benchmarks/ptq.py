"""Post-training quantization recovery: min-max vs +equalization vs +bias correction vs +AdaRound.

    PYTHONPATH=$PWD python benchmarks/ptq.py                                  # ~65 min
    PYTHONPATH=$PWD python benchmarks/ptq.py --models=digits_cnn --seeds=0    # one part
    PYTHONPATH=$PWD python benchmarks/ptq.py --models=digits_conv1d,digits_transpose \
        --out=benchmarks/results/ptq_conv1d.json                                # ~4 min
    PYTHONPATH=$PWD python benchmarks/ptq.py --modes=int8 \
        --out=benchmarks/results/ptq_int8_ceiling.json                          # ~27 min

For the digits CNN, the mini-Xception and MobileNetV2 (alpha 0.35, digits resized to 32x32 RGB;
``mobilenet_v2`` trained with random shifts and cosine decay, ``mobilenet_v2_plain`` without,
as in the first round) and, on request, ``digits_conv1d`` (Conv1D + BN over the image's 8 rows as
a sequence of 8 pixels) and ``digits_transpose`` (a strided Conv2D down to 4x4, a Conv2DTranspose
+ BN back up to 8x8, a Conv2D), each trained with ``--seeds`` on the bundled digits' training split
less a stratified validation split (20%, ``data.split_validation`` seed 0): full int8 (the
TFLite converter's ``int8``, calibrated on the same images as the recovery), int8 weights with
int16 activations (``int16x8``) and int4 weights (the LiteRT Quantizer's ``dynamic_wi4``), for

  min_max                  the trained model as it is (round to nearest, min-max scales)
  equalize                 + cross-layer equalization (BN folded)
  equalize+bias            + empirical bias correction
  equalize+bias+adaround   + AdaRound (run before the bias correction, see recovery.py)

(int8 rows of min-max and full recovery also give the test agreement of the same int8 weights
with int16 activations (``int16x8``): the part of the int8 loss that is activation rounding.
``int8_activation_ceiling``: the agreement of float weights with int8 activations, simulated at
the calibration min-max, the most learned rounding and bias correction could reach; beside it
the same simulation with round-to-nearest weights, to compare with the converter's min-max.)

test accuracy, agreement with the float Keras model on test images, bytes, seconds per step, and
paired differences to float and to min-max (``stats.paired_difference``), and how many test
images the float model decides by a top-2 probability margin below 0.01/0.05/0.1. Agreement
needs no labels, so it is also measured on ``--shifted_copies`` (10) randomly translated copies
of each test image (``test_shifted``: intervals narrow enough to tell variants apart; none of
these images is seen by training, calibration or any decision). Decisions
are taken on the validation split: calibration size and AdaRound steps (a sweep of int4 recovery
on the digits CNN and the mini-Xception; MobileNetV2 takes the mini-Xception's), ``relu6``
("keep" or "relu", only where the model has ReLU6 pairs) for the recovery, and ``chosen``: the
variant with the best validation agreement (int8) or accuracy (int4), ties broken by the lower
validation output error (mean squared probability difference to float), min-max included: what
a user of ``recover`` would deploy.
Writes benchmarks/results/ptq.json after each (model, seed); a rerun with the same settings
skips the parts already there.
"""

import json
import os
import platform
import time

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import tfcompress
import tfcompress.graph as graphs
from tfcompress import _io, data, keras, models, tasks
from tfcompress.ptq import layerwise
from tfcompress.pipeline import stats
from tfcompress.ptq.equalization import find_pairs, fold_batchnorm
from tfcompress.ptq.grids import kernels, round_to_nearest
from tfcompress.export.modes import recovery_settings as for_mode
from tfcompress.ptq.recovery import recover
from tfcompress.export.validation import predict

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["digits_cnn", "mini_xception", "mobilenet_v2", "mobilenet_v2_plain"],
                  "Models to run (in this order: a model's sweep serves those after it).")
flags.DEFINE_list("modes", ["int8", "int16x8", "dynamic_wi4"], "Conversion modes.")
flags.DEFINE_integer("calibration", 512, "Calibration images (without --sweep).")
flags.DEFINE_integer("iterations", 300, "AdaRound steps per layer (without --sweep).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_bool("sweep", True, "Choose calibration size and iterations on validation.")
flags.DEFINE_integer("shifted_copies", 10,
                     "Randomly shifted copies of each test image for a larger, label-free "
                     "agreement set (split 'test_shifted'; 0: none).")
flags.DEFINE_string("out", "benchmarks/results/ptq.json", "Output JSON.")

# Calibration size and AdaRound steps are chosen on validation accuracy of int4 recovery for
# the two small models; MobileNetV2 (too slow to sweep in the time budget) takes the
# mini-Xception's choice (BN-folded, depthwise-separable like it).
SWEEP_CALIBRATION = (256, 512, 1024)
SWEEP_ITERATIONS = (100, 300)
SWEEP_FOR = {"mobilenet_v2": "mini_xception", "mobilenet_v2_plain": "mini_xception"}
DECIDED: dict = {}  # (model, seed) -> (calibration, iterations)
LIMITS = {"digits_cnn": 1.0, "mini_xception": 1.0, "mobilenet_v2": 1.5, "mobilenet_v2_plain": 1.5,
          "digits_conv1d": 1.0, "digits_transpose": 1.0}
# Training recipes. MobileNetV2 overfits ~1,150 images without augmentation: "mobilenet_v2_plain"
# (the first round's recipe) reaches 0.90-0.94 test accuracy and amplifies noise so much that
# int8 activations alone flip 2-3% of its decisions; "mobilenet_v2" is trained as one would
# train it (random shifts, cosine decay: 0.95-0.97).
TRAINING = {
    "digits_cnn": {"epochs": 15},
    "mini_xception": {"epochs": 30},
    "mobilenet_v2": {"epochs": 60, "shift": 0.1, "cosine": True},
    "mobilenet_v2_plain": {"epochs": 30},
    "digits_conv1d": {"epochs": 30},
    "digits_transpose": {"epochs": 30},
}
AGREEMENT_MODES = ("int8", "int16x8")  # judged by agreement with float (int4: by accuracy)
VARIANTS = {
    "min_max": (),
    "equalize": ("equalize",),
    "equalize+bias": ("equalize", "correct_bias"),
    "equalize+bias+adaround": ("equalize", "correct_bias", "adaround"),
}


def _agrees(split_row: dict, n: int) -> np.ndarray:
    """Per-image agreement with the float model, from a row's list of disagreements."""
    agrees = np.ones(n, bool)
    agrees[split_row["disagree"]] = False
    return agrees


def _intervals(rows: list, min_max: dict, float_correct) -> None:
    """Replaces each row's per-image correctness by paired differences (accuracy to float and
    to min-max, agreement to min-max's; on the shifted test copies agreement only)."""
    base = min_max["test"]["correct"]
    for row in rows:
        for split in list(row):
            if not isinstance(row[split], dict) or "disagree" not in row[split]:
                continue
            c = row[split].pop("correct", None)
            if split == "validation" or c is None:
                continue
            n = len(c)
            row[split]["agreement_vs_min_max"] = stats.paired_difference(
                _agrees(min_max[split], n), _agrees(row[split], n))
            if split == "test":
                row["test"]["vs_float"] = stats.paired_difference(float_correct, c)
                row["test"]["vs_min_max"] = stats.paired_difference(base, c)


def _augmented(x, y, shift: float, seed: int):
    """Shuffled batches of 32 with random translations of up to ``shift`` of the image."""
    layer = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    return ds.batch(32).map(lambda a, b: (layer(a, training=True), b))


def train(name: str, xf, yf, seed: int):
    """The model ``name`` trained on (xf, yf) with its recipe (``TRAINING``)."""
    recipe = TRAINING[name]
    keras.utils.set_random_seed(seed)
    model = build(name)
    lr = 1e-3
    if recipe.get("cosine"):
        lr = keras.optimizers.schedules.CosineDecay(
            1e-3, recipe["epochs"] * int(np.ceil(len(xf) / 32)))
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    if recipe.get("shift"):
        model.fit(_augmented(xf, yf, recipe["shift"], seed), epochs=recipe["epochs"], verbose=0)
    else:
        model.fit(xf, yf, batch_size=32, epochs=recipe["epochs"], verbose=0)
    return model


def _shifted(x, copies: int, shift: float = 0.05, seed: int = 1000):
    """``copies`` randomly translated copies of every image (up to ``shift`` of its size)."""
    layer = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
    return np.concatenate([layer(x, training=True).numpy() for _ in range(copies)])


def _margins(probabilities: np.ndarray) -> np.ndarray:
    top = np.sort(probabilities, axis=-1)
    return top[:, -1] - top[:, -2]


def build(name):
    if name.startswith("mobilenet_v2"):
        return models.build("mobilenet_v2", (32, 32, 3), 10, 0.35)
    if name == "digits_conv1d":
        return _digits_conv1d()
    if name == "digits_transpose":
        return _digits_transpose()
    return getattr(models, name)()


def _digits_transpose():
    """Conv2D stride 2 (8x8 -> 4x4), Conv2DTranspose stride 2 (back to 8x8), Conv2D, each with
    BN and ReLU, global pooling, a Dense softmax: the down/up path of a decoder."""
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i, (layer, filters, strides) in enumerate(((L.Conv2D, 32, 2), (L.Conv2DTranspose, 32, 2),
                                                  (L.Conv2D, 64, 1))):
        x = layer(filters, 3, strides=strides, padding="same", use_bias=False, name=f"c{i}")(x)
        x = L.ReLU(name=f"relu_{i}")(L.BatchNormalization(name=f"bn_{i}")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x),
                       name="digits_transpose")


def _digits_conv1d():
    """Three Conv1D+BN+ReLU over the 8 image rows (8 pixels each), pooling, a Dense softmax."""
    L = keras.layers
    inputs = keras.Input((8, 8))
    x = inputs
    for i, filters in enumerate((32, 32, 64)):
        x = L.Conv1D(filters, 3, padding="same", use_bias=False, name=f"conv1d_{i}")(x)
        x = L.ReLU(name=f"relu_{i}")(L.BatchNormalization(name=f"bn_{i}")(x))
        if i == 1:
            x = L.MaxPooling1D(name="pool")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x),
                       name="digits_conv1d")


def evaluate(flatbuffer, splits, reference):
    """Accuracy, agreement (argmax) and output error (mean squared probability difference) of
    the flatbuffer against the float model's probabilities ``reference``, per split, and its
    ties: disagreements where the flatbuffer's top two outputs are equal (int8 probabilities
    are multiples of 1/256, so the float model's closest calls tie)."""
    out = {}
    for split, (x, y) in splits.items():
        p = predict(flatbuffer, x)
        pred, want = p.argmax(-1), reference[split].argmax(-1)
        top = np.sort(p, axis=-1)
        out[split] = {"accuracy": float(np.mean(pred == y)),
                      "agreement": float(np.mean(pred == want)),
                      "output_error": float(np.mean(np.square(p - reference[split]))),
                      "ties": int(np.sum((pred != want) & (top[:, -1] == top[:, -2]))),
                      "disagree": np.flatnonzero(pred != want).tolist(), "correct": pred == y}
    return out


def simulated_int8(model, calibration, x, batch_size: int = 512) -> np.ndarray:
    """Outputs of the BN-folded ``model`` on ``x`` with its weights as they are and every tensor
    the full-integer conversion quantizes (``layerwise.quantized_tensors``) fake-quantized to
    int8 at the min/max it has on ``calibration``; a tensor read only by an Add takes the Add's
    range, as the converter's calibrator records it. The model's output is not quantized."""
    names = layerwise.quantized_tensors(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    ranges = {n: (min(0.0, float(v.min())), max(0.0, float(v.max())))
              for n, v in zip(names, probe.predict(calibration, verbose=0))}
    graph = graphs.read(model)
    readers = {k: [r for r in v if r is not None] for k, v in graphs.consumers(graph).items()}
    for node in graph.nodes:
        if node.cls == "Add" and node.name in ranges:
            for key in node.inputs:
                if readers[key[0]] == [node.name] and key[0] in ranges:
                    ranges[key[0]] = ranges[node.name]
    last = graph.outputs[0][0]
    outputs = []

    def fake(name: str, outs: list) -> list:
        if name in ranges:
            lo, hi = ranges[name]
            outs = [tf.quantization.fake_quant_with_min_max_vars(outs[0], lo, max(hi, lo + 1e-6))]
        if name == last:
            outputs.append(outs[0].numpy())
        return outs

    for i in range(0, len(x), batch_size):
        for _ in graphs.walk([model], x[i:i + batch_size], after=fake):
            pass
    return np.concatenate(outputs)


def int8_activation_ceiling(model, calibration, splits, reference) -> dict:
    """Per split, the agreement of int8 activations (simulated, min-max ranges) with float
    weights: the most any weight-side recovery can reach at those ranges; next to it the same
    simulation with round-to-nearest int8 weights, to compare with the converter's min-max."""
    folded = fold_batchnorm(model)
    nearest = fold_batchnorm(folded)
    for layer in nearest.layers:
        for k in kernels(layer, 8):
            var = getattr(layer, k.attr)
            var.assign(round_to_nearest(var.numpy(), 8, k.reduce_axes))
    out = {}
    for split in ("test", "test_shifted"):
        if split in splits:
            out[split] = {
                label: tasks.agreement(simulated_int8(m, calibration, splits[split][0]),
                                       reference[split])
                for label, m in (("float_weights", folded), ("nearest_weights", nearest))}
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


def part(name, seed):
    train_split, (xt, yt) = data.load_digits()
    (xf, yf), (xv, yv) = data.split_validation(train_split, fraction=0.2, seed=0)
    if name.startswith("mobilenet_v2"):
        xf, xv, xt = (data.resize_images(a, (32, 32), "rgb") for a in (xf, xv, xt))
    sequences = name == "digits_conv1d"  # (n, 8, 8, 1) images -> (n, 8, 8) row sequences
    images_t = xt
    if sequences:
        xf, xv, xt = (a[..., 0] for a in (xf, xv, xt))
    start = time.perf_counter()
    model = train(name, xf, yf, seed)
    train_seconds = time.perf_counter() - start
    order = np.random.default_rng(0).permutation(len(xf))
    splits = {"validation": (xv, yv), "test": (xt, yt)}
    if FLAGS.shifted_copies:
        shifted = _shifted(images_t, FLAGS.shifted_copies)
        splits["test_shifted"] = (shifted[..., 0] if sequences else shifted,
                                  np.tile(yt, FLAGS.shifted_copies))
    reference = {s: model.predict(v[0], verbose=0) for s, v in splits.items()}
    float_correct = {s: tasks.correct(reference[s], splits[s][1]) for s in splits}
    margins = _margins(reference["test"])
    result = {"train_seconds": train_seconds, "training": TRAINING[name], "test_images": len(yt),
              "float": {s: float(np.mean(c)) for s, c in float_correct.items()},
              "test_margin_below": {str(t): int(np.sum(margins < t)) for t in (0.01, 0.05, 0.1)},
              "modes": {}}
    calibration, iterations = DECIDED.get((SWEEP_FOR.get(name, name), seed),
                                          (FLAGS.calibration, FLAGS.iterations))
    if FLAGS.sweep and name not in SWEEP_FOR:
        result["sweep"] = sweep(model, xf[order], xv, yv)
        best = max(result["sweep"], key=lambda r: (r["validation_accuracy"],
                                                   -r["calibration"] * r["iterations"]))
        calibration, iterations = DECIDED[name, seed] = (best["calibration"], best["iterations"])
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
                row["int16x8_test_agreement"] = float(np.mean(pred == reference["test"].argmax(-1)))
            logging.info("%s %s %s relu6=%s: val agreement %.4f, test accuracy %.4f "
                         "agreement %.4f, %.1f s", name, mode, "+".join(steps) or "min_max",
                         relu6, row["validation"]["agreement"], row["test"]["accuracy"],
                         row["test"]["agreement"], seconds)
            return row

        key = "agreement" if mode in AGREEMENT_MODES else "accuracy"
        full = VARIANTS["equalize+bias+adaround"]
        candidates = {r: run(full, r) for r in relu6_options}
        def score(row):  # validation agreement (int8) or accuracy (int4), then output error
            return row["validation"][key], -row["validation"]["output_error"]

        relu6 = max(relu6_options, key=lambda r: score(candidates[r]))
        for variant, steps in VARIANTS.items():
            rows[variant] = candidates[relu6] if steps == full else run(steps, relu6)
        chosen = max(VARIANTS, key=lambda v: score(rows[v]))
        _intervals(list(rows.values()) + list(candidates.values()), rows["min_max"],
                   float_correct["test"])
        if mode == "int8":
            result["int8_activation_ceiling"] = int8_activation_ceiling(model, cal, splits,
                                                                        reference)
        result["modes"][mode] = {"relu6": relu6, "relu6_candidates": {
            r: {"validation": c["validation"], "test": c["test"]} for r, c in candidates.items()},
            "variants": rows, "chosen": chosen}
    return result


def acceptance_of(name: str, r: dict) -> dict:
    """The issue's bars for one model and training seed."""
    a = {}
    for mode in AGREEMENT_MODES:
        if mode not in r["modes"]:
            continue
        m = r["modes"][mode]
        chosen = m["variants"][m["chosen"]]["test"]["agreement"]
        plain = m["variants"]["min_max"]["test"]["agreement"]
        full = m["variants"]["equalize+bias+adaround"]["test"]["agreement"]
        a.update({f"{mode}_agreement_full": full, f"{mode}_agreement_chosen": chosen,
                  f"{mode}_agreement_min_max": plain})
        if mode == "int8":  # the bar is on full int8
            a["int8_ok"] = chosen >= 0.995 and chosen >= plain
        if "test_shifted" in m["variants"]["min_max"]:
            a[f"{mode}_shifted_agreement"] = {v: row["test_shifted"]["agreement"]
                                              for v, row in m["variants"].items()}
    if "dynamic_wi4" in r["modes"]:
        m = r["modes"]["dynamic_wi4"]
        drop = 100 * (r["float"]["test"]
                      - m["variants"]["equalize+bias+adaround"]["test"]["accuracy"])
        a["int4_drop_points_full"] = drop
        a["int4_drop_points_min_max"] = 100 * (r["float"]["test"]
                                               - m["variants"]["min_max"]["test"]["accuracy"])
        a["int4_ok"] = drop <= LIMITS[name]
    secs = [v["recovery_seconds"] for m in r["modes"].values() for v in m["variants"].values()]
    a["max_recovery_seconds"] = max(secs)
    a["recovery_ok"] = max(secs) <= 120
    return a


def summarize(results: dict, seeds: list) -> dict:
    """Per model, over the training seeds: mean int8 (int16x8) agreement of each variant and the
    chosen one, the pooled paired difference of agreement to min-max (every seed's test
    images), the int4 drops, and every seed's acceptance."""
    out = {}
    for name in FLAGS.models:
        runs = [results[name][s] for s in seeds if s in results.get(name, {})]
        if not runs:
            continue
        summary = {"seeds": len(runs), "float_test_accuracy": [r["float"]["test"] for r in runs],
                   "all_ok": {k: all(r["acceptance"].get(k, True) for r in runs)
                              for k in ("int8_ok", "int4_ok", "recovery_ok")}}
        for mode in AGREEMENT_MODES:
            if not all(mode in r["modes"] for r in runs):
                continue
            modes = [r["modes"][mode] for r in runs]
            n = runs[0]["test_images"]
            summary[f"{mode}_mean_agreement"] = {
                v: float(np.mean([m["variants"][v]["test"]["agreement"] for m in modes]))
                for v in VARIANTS}
            summary[f"{mode}_mean_agreement"]["chosen"] = float(np.mean(
                [m["variants"][m["chosen"]]["test"]["agreement"] for m in modes]))
            if "test_shifted" in modes[0]["variants"]["min_max"]:
                summary[f"{mode}_mean_agreement_shifted"] = {
                    v: float(np.mean([m["variants"][v]["test_shifted"]["agreement"]
                                      for m in modes])) for v in VARIANTS}
                summary[f"{mode}_mean_agreement_shifted"]["chosen"] = float(np.mean(
                    [m["variants"][m["chosen"]]["test_shifted"]["agreement"] for m in modes]))
            for label, pick in (("full", lambda m: "equalize+bias+adaround"),
                                ("chosen", lambda m: m["chosen"])):
                for split in ("test", "test_shifted"):
                    if split not in modes[0]["variants"]["min_max"]:
                        continue
                    size = n * (FLAGS.shifted_copies if split == "test_shifted" else 1)
                    base = np.concatenate([_agrees(m["variants"]["min_max"][split], size)
                                           for m in modes])
                    new = np.concatenate([_agrees(m["variants"][pick(m)][split], size)
                                          for m in modes])
                    suffix = "" if split == "test" else "_shifted"
                    summary[f"{mode}_{label}_agreement_vs_min_max_pooled{suffix}"] = (
                        stats.paired_difference(base, new))
        if all("int8_activation_ceiling" in r for r in runs):
            ceilings = [r["int8_activation_ceiling"] for r in runs]
            summary["int8_activation_ceiling_mean"] = {
                split: {label: float(np.mean([c[split][label] for c in ceilings]))
                        for label in ceilings[0][split]} for split in ceilings[0]}
        summary["int4_drop_points_full"] = [r["acceptance"].get("int4_drop_points_full")
                                            for r in runs]
        summary["max_recovery_seconds"] = max(r["acceptance"]["max_recovery_seconds"]
                                              for r in runs)
        out[name] = summary
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    settings = {"modes": FLAGS.modes, "calibration": FLAGS.calibration,
                "iterations": FLAGS.iterations, "sweep": FLAGS.sweep,
                "shifted_copies": FLAGS.shifted_copies}
    results = {}
    if os.path.exists(FLAGS.out):  # a rerun keeps (and skips) the parts already measured
        with open(FLAGS.out) as f:
            results = json.load(f)
        if results.get("settings") != settings:
            results = {}
    results.update({"cpu": platform.processor(), "settings": settings})
    for name in FLAGS.models:
        for seed in FLAGS.seeds:
            r = results.setdefault(name, {}).get(seed)
            if r is None:
                begin = time.perf_counter()
                r = part(name, int(seed))
                r["seconds"] = time.perf_counter() - begin
                r["acceptance"] = acceptance_of(name, r)
                results[name][seed] = r
                _io.write_text(FLAGS.out, json.dumps(results, indent=2, default=str))
            elif r.get("settings_from") == name:  # its sweep's choice serves the models after it
                DECIDED[name, int(seed)] = (r["calibration"], r["iterations"])
            print(name, seed, json.dumps(r["acceptance"]))
    results["summary"] = summarize(results, FLAGS.seeds)
    _io.write_text(FLAGS.out, json.dumps(results, indent=2, default=str))
    print(json.dumps(results["summary"], indent=1))
    print("wrote", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
