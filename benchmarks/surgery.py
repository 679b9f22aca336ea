"""Structured channel pruning and low-rank factorization, measured; writes benchmarks/results/surgery.json.

    python benchmarks/surgery.py                 # everything (a few minutes on 2 cores)
    python benchmarks/surgery.py --parts=mobilenet --repeats=7

Parts:
  mobilenet  MobileNetV2 (weights=None, 128x128, 1000 classes) and prune_channels(ratio=0.5):
             MACs, float32 .tflite XNNPACK latency of both measured side by side (interleaved,
             medians over repeats), and XNNPACK coverage of the int8 conversions
             (validate.xnnpack_coverage), also with a logits head (int8 SOFTMAX is no XNNPACK op).

A rerun of some parts keeps the other parts already in the output file.
  digits     digits CNN trained, 50% channel pruning + fine-tuning, accuracy per seed.
  mlp        Flatten -> Dense 512 -> Dense 512 -> Dense 10 on digits, factorized + fine-tuned.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _parts  # noqa: E402  (benchmarks/, first on sys.path)
import tfcompress  # noqa: E402
from tfcompress import keras, models  # noqa: E402
from tfcompress.conversion import convert  # noqa: E402
from tfcompress.profiling import profile  # noqa: E402
from tfcompress.surgery import factorize, prune_channels  # noqa: E402
from tfcompress.validation import latency_ms, xnnpack_coverage  # noqa: E402

flags.DEFINE_list("parts", ["mobilenet", "digits", "mlp"], "Which measurements to run.")
flags.DEFINE_integer("repeats", 15, "Interleaved latency rounds per model (median taken).")
flags.DEFINE_integer("runs", 10, "Timed invokes per latency round.")
flags.DEFINE_integer("seeds", 3, "Seeds for the digits accuracy figures.")
flags.DEFINE_integer("epochs", 15, "Baseline training epochs (digits and MLP).")
flags.DEFINE_integer("finetune_epochs", 10, "Fine-tuning epochs after surgery.")
flags.DEFINE_integer("mlp_rank", 48, "Rank for the MLP factorization.")
flags.DEFINE_float("mlp_energy", 0.7, "Energy share for the MLP's second factorization row.")
flags.DEFINE_float("finetune_lr", 5e-4, "Fine-tuning learning rate after channel pruning.")
flags.DEFINE_float("mlp_finetune_lr", 1e-4, "Fine-tuning learning rate after factorization.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "surgery.json"), "Output JSON.")
FLAGS = flags.FLAGS


def _side_by_side(flatbuffers: dict, sample) -> dict:
    """Median latency per model over interleaved rounds (order alternates every round)."""
    names, rounds = list(flatbuffers), {n: [] for n in flatbuffers}
    for r in range(FLAGS.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            rounds[name].append(latency_ms(flatbuffers[name], sample, FLAGS.runs, num_threads=1))
    out = {n: {"median_ms": float(np.median(v)), "rounds_ms": v} for n, v in rounds.items()}
    if len(names) == 2:  # each round's pair ran back to back: their ratio shares the machine load
        a, b = (np.asarray(rounds[n]) for n in names)
        out["paired_ratio_median"] = float(np.median(b / a))
    return out


def mobilenet() -> dict:
    base = models.build("mobilenet_v2", (128, 128, 3), 1000)
    pruned = prune_channels(base, 0.5)
    pb, pp = profile(base), profile(pruned)
    fb = {"baseline": convert(base, "float32"), "pruned_0.5": convert(pruned, "float32")}
    rng = np.random.default_rng(0)
    sample = rng.random((128, 128, 3), np.float32)
    lat = _side_by_side(fb, sample)
    calib = rng.random((32, 128, 128, 3), np.float32)
    int8 = {}
    for name, model in (("baseline", base), ("pruned_0.5", pruned)):
        int8[name] = xnnpack_coverage(convert(model, "int8", representative_data=calib,
                                              representative_samples=32))
    # The same networks with a logits head (no softmax): int8 SOFTMAX is not an XNNPACK op.
    logits = keras.applications.MobileNetV2(input_shape=(128, 128, 3), classes=1000, weights=None,
                                            classifier_activation=None)
    logits.set_weights(base.get_weights())
    logits_pruned = prune_channels(logits, 0.5)
    for name, model in (("baseline_logits_head", logits), ("pruned_0.5_logits_head",
                                                          logits_pruned)):
        int8[name] = xnnpack_coverage(convert(model, "int8", representative_data=calib,
                                              representative_samples=32))
    return {
        "params": {"baseline": pb["params"], "pruned": pp["params"]},
        "macs": {"baseline": pb["macs"], "pruned": pp["macs"],
                 "ratio": pp["macs"] / pb["macs"]},
        "float32_bytes": {k: len(v) for k, v in fb.items()},
        "latency_ms_float32_xnnpack_1_thread": lat,
        "latency_ratio": lat["pruned_0.5"]["median_ms"] / lat["baseline"]["median_ms"],
        "int8_xnnpack": int8,
        "not_followed": list(pruned.surgery_report.not_followed),
    }


def _accuracy(model, x, y) -> float:
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


def _fit(model, x, y, epochs, lr):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def digits() -> dict:
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    rows = []
    for seed in range(FLAGS.seeds):
        keras.utils.set_random_seed(seed)
        base = _fit(models.digits_cnn(), x, y, FLAGS.epochs, 1e-3)
        pruned = prune_channels(base, 0.5)
        row = {"seed": seed, "baseline": _accuracy(base, xt, yt),
               "pruned_no_finetune": _accuracy(pruned, xt, yt)}
        _fit(pruned, x, y, FLAGS.finetune_epochs, FLAGS.finetune_lr)
        row["pruned_finetuned"] = _accuracy(pruned, xt, yt)
        row["loss_points"] = 100 * (row["baseline"] - row["pruned_finetuned"])
        row["params"] = [base.count_params(), pruned.count_params()]
        row["macs"] = [profile(base)["macs"], profile(pruned)["macs"]]
        rows.append(row)
        logging.info("digits seed %d: %s", seed, row)
    return {"per_seed": rows, "mean_loss_points": float(np.mean([r["loss_points"] for r in rows])),
            "max_loss_points": float(np.max([r["loss_points"] for r in rows]))}


def _mlp():
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)), L.Flatten(), L.Dense(512, activation="relu", name="fc1"),
        L.Dense(512, activation="relu", name="fc2"), L.Dense(10, activation="softmax",
                                                             name="out")], name="digits_mlp")


def mlp() -> dict:
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    rows = []
    for seed in range(FLAGS.seeds):
        keras.utils.set_random_seed(seed)
        base = _fit(_mlp(), x, y, FLAGS.epochs, 1e-3)
        for setting in ({"rank": FLAGS.mlp_rank}, {"energy": FLAGS.mlp_energy}):
            new = factorize(base, **setting)
            row = {"seed": seed, **setting, "baseline": _accuracy(base, xt, yt),
                   "factorized_no_finetune": _accuracy(new, xt, yt)}
            _fit(new, x, y, FLAGS.finetune_epochs, FLAGS.mlp_finetune_lr)
            row["factorized_finetuned"] = _accuracy(new, xt, yt)
            row["loss_points"] = 100 * (row["baseline"] - row["factorized_finetuned"])
            row["params"] = [base.count_params(), new.count_params()]
            row["params_ratio"] = new.count_params() / base.count_params()
            row["changed"] = new.surgery_report.changed
            rows.append(row)
            logging.info("mlp seed %d: %s", seed, row)
    summary = {}
    for key in ("rank", "energy"):
        sel = [r for r in rows if key in r]
        summary[key] = {"max_loss_points": max(r["loss_points"] for r in sel),
                        "mean_loss_points": float(np.mean([r["loss_points"] for r in sel])),
                        "params_ratio": max(r["params_ratio"] for r in sel)}
    return {"per_seed": rows, "summary": summary}


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    _parts.run({"mobilenet": mobilenet, "digits": digits, "mlp": mlp}, FLAGS.parts, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
