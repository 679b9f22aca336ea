"""Structured channel pruning and low-rank factorization, measured; writes benchmarks/results/surgery.json.

    python benchmarks/surgery.py                 # everything (a few minutes on 2 cores)
    python benchmarks/surgery.py --parts=mobilenet --repeats=7

Parts:
  mobilenet  MobileNetV2 (weights=None, 128x128, 1000 classes) and prune_channels(ratio=0.5):
             MACs, float32 .tflite XNNPACK latency of both measured side by side (interleaved,
             medians over repeats), and XNNPACK coverage of the int8 conversions
             (validate.xnnpack_coverage), also with a logits head (int8 SOFTMAX is no XNNPACK op).

  digits     digits CNN trained, 50% channel pruning + fine-tuning, accuracy per seed.
  mlp        Flatten -> Dense 512 -> Dense 512 -> Dense 10 on digits, factorized + fine-tuned.

The architecture parts follow one protocol (benchmarks/_protocol.py): a stratified validation
split (20%, seed 0) carved from the digits' training split; baseline and fine-tuning keep the
epoch with the best validation accuracy; surgery decisions (block ranking) on validation; test
accuracy measured once per model, the difference paired on the same images with a bootstrap 95%
interval; float32 XNNPACK latency (1 thread) of baseline and result interleaved, per-round ratio
medians; the result also runs on the LiteRT interpreter (output shape, accuracy).
  xception   mini-Xception, prune_channels(0.5) + fine-tuning.
  conv1d     Conv1D over the digits' rows (input (8, 8)), prune_channels(0.5) + fine-tuning.
  unet       U-Net-style (Conv2DTranspose + Concatenate), prune_channels(0.5) + fine-tuning.
  se         MobileNetV3-style squeeze-excite model (Dense + Reshape SE) pruned by half and
             fine-tuned; keras MobileNetV3Small (32x32, structure only) pruned by half.
  spatial    digits CNN, factorize(conv="spatial", rank=--svd_rank) of its convolutions.
  blocks     MobileNetV2 (alpha 0.5, 32x32 digits), prune_blocks(--block_fraction) + fine-tuning,
             ranked by validation loss alone and under --block_max_macs_ratio.
  round_to   MobileNetV2 (alpha 1, 96x96, structure only) prune_channels(--round_ratio) at
             round_to 1, 4, 8, 16: MACs and paired float32 XNNPACK latency.

A rerun of some parts keeps the other parts already in the output file.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _parts  # noqa: E402  (benchmarks/, first on sys.path)
import _protocol as P  # noqa: E402
import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import keras, models  # noqa: E402
from tfcompress.export.conversion import convert  # noqa: E402
from tfcompress.profiling import profile  # noqa: E402
from tfcompress.surgery.channels import factorize, prune_channels  # noqa: E402
from tfcompress.export.validation import latency_ms, predict, xnnpack_coverage  # noqa: E402

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
flags.DEFINE_integer("arch_seeds", 3, "Seeds for the architecture parts (blocks: at most 2).")
flags.DEFINE_integer("arch_epochs", 40, "Baseline epochs of the architecture parts.")
flags.DEFINE_integer("arch_finetune_epochs", 40, "Fine-tuning epochs of the architecture parts.")
flags.DEFINE_integer("latency_runs", 200, "Invokes per latency round (architecture parts).")
flags.DEFINE_integer("svd_rank", 16, "Rank of the spatial SVD of the digits CNN's convolutions.")
flags.DEFINE_float("block_fraction", 0.25, "Share of MobileNetV2's residual blocks to remove.")
flags.DEFINE_float("block_max_macs_ratio", 0.8,
                   "prune_blocks max_macs_ratio of the second variant.")
flags.DEFINE_float("round_ratio", 0.3, "Channel ratio of the round_to part.")
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
    return tasks.top1(model.predict(x, verbose=0), y)


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


# ----------------------------------------------------------------------------- architectures


def _digits(transform=None):
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    if transform is not None:
        x, xt = transform(x), transform(xt)
    train, val = P.validation_split(x, y, 0.2, seed=0)
    return train, val, (xt, yt)


def _run(build, operate, data, seeds, lr=2e-3, finetune_lr=1e-3, epochs=None):
    """Trains ``build()`` per seed, applies ``operate(model, val)`` (or each of a dict of
    them, named variants, to the same baseline), fine-tunes, measures."""
    train, val, (xt, yt) = data
    variants = operate if isinstance(operate, dict) else {"": operate}
    rows = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        base = build()
        base_val = P.fit(base, train, val, epochs or FLAGS.arch_epochs, lr)
        for variant, op in variants.items():
            rows.append(_measure(base, op(base, val), seed, base_val, train, val, (xt, yt),
                                 finetune_lr))
            rows[-1]["variant"] = variant
            logging.info("seed %d %s: %s", seed, variant, {k: rows[-1][k] for k in (
                "test_baseline", "test_surgery", "macs_ratio", "latency_ratio", "not_followed")})
    out = {}
    for variant in variants:
        sel = [r for r in rows if r["variant"] == variant]
        out[variant or "all"] = {
            "test_points": P.summary([r["test_difference"]["points"] for r in sel]),
            "macs_ratio": P.summary([r["macs_ratio"] for r in sel]),
            "latency_ratio": P.summary([r["latency_ratio"] for r in sel]),
            "not_followed": sorted({n for r in sel for n in r["not_followed"]})}
    return {"per_seed": rows, **(out if len(out) > 1 else out["all"])}


def _measure(base, new, seed, base_val, train, val, test, finetune_lr) -> dict:
    """One surgery result fine-tuned and measured against its baseline."""
    xt, yt = test
    report = new.surgery_report
    no_ft = float(P.correct(new, *val).mean())
    keras.utils.set_random_seed(seed)
    new_val = P.fit(new, train, val, FLAGS.arch_finetune_epochs, finetune_lr)
    cb, cn = P.correct(base, xt, yt), P.correct(new, xt, yt)
    fb = {"baseline": convert(base, "float32"), "surgery": convert(new, "float32")}
    lite = predict(fb["surgery"], xt)
    lat = P.paired_latency(fb, xt[0], FLAGS.repeats, FLAGS.latency_runs)
    pb, pn = profile(base), profile(new)
    return {"seed": seed, "val_baseline": base_val, "val_surgery_no_finetune": no_ft,
            "val_surgery_finetuned": new_val, "test_baseline": float(cb.mean()),
            "test_surgery": float(cn.mean()), "test_difference": P.paired_difference(cb, cn),
            "litert_test_accuracy": tasks.top1(lite, yt),
            "litert_output_shape": list(lite.shape),
            "keras_output_shape": [len(xt)] + list(new.output_shape[1:]),
            "params": [pb["params"], pn["params"]], "macs": [pb["macs"], pn["macs"]],
            "macs_ratio": pn["macs"] / pb["macs"], "latency_float32_xnnpack_1_thread": lat,
            "latency_ratio": lat["surgery"]["paired_ratio_median"],
            "not_followed": list(report.not_followed), "changed": report.changed}


def _halve(model, val):
    del val
    return prune_channels(model, 0.5)


def xception() -> dict:
    return _run(models.mini_xception, _halve, _digits(), FLAGS.arch_seeds)


def conv1d() -> dict:
    return _run(models.digits_conv1d, _halve, _digits(lambda x: x[..., 0]), FLAGS.arch_seeds)


def unet() -> dict:
    return _run(models.digits_unet, _halve, _digits(), FLAGS.arch_seeds)


def se() -> dict:
    out = _run(models.se_mobilenet, _halve, _digits(), FLAGS.arch_seeds)
    small = models.build("mobilenet_v3_small", (32, 32, 3), 10, 0.75)
    half = prune_channels(small, 0.5)
    out["keras_mobilenet_v3_small_32"] = {
        "not_followed": list(half.surgery_report.not_followed),
        "macs_ratio": profile(half)["macs"] / profile(small)["macs"],
        "output_shape": list(predict(convert(half, "float32"),
                                     np.zeros((2, 32, 32, 3), np.float32)).shape)}
    return out


def spatial() -> dict:
    def operate(model, val):
        del val
        return factorize(model, rank=FLAGS.svd_rank, conv="spatial", layers=["conv1", "conv2"])

    return _run(models.digits_cnn, operate, _digits(), FLAGS.arch_seeds, lr=1e-3,
                finetune_lr=5e-4)


def blocks() -> dict:
    def by(ratio):
        return lambda model, val: tfcompress.prune_blocks(model, FLAGS.block_fraction, *val,
                                                          max_macs_ratio=ratio)

    def build():
        return models.build("mobilenet_v2", (32, 32, 3), 10, 0.5)

    data = _digits(lambda x: tfcompress.data.resize_images(x, (32, 32)))
    variants = {"loss": by(None), f"loss_max_macs_{FLAGS.block_max_macs_ratio}": by(
        FLAGS.block_max_macs_ratio)}
    return _run(build, variants, data, min(FLAGS.arch_seeds, 2), lr=1e-3)


def round_to() -> dict:
    base = models.build("mobilenet_v2", (96, 96, 3), 1000)
    fb, macs, widths = {}, {}, {}
    for k in (1, 4, 8, 16):
        pruned = prune_channels(base, FLAGS.round_ratio, round_to=k)
        fb[f"round_to_{k}"] = convert(pruned, "float32")
        macs[f"round_to_{k}"] = profile(pruned)["macs"]
        widths[f"round_to_{k}"] = sorted({v["after"] for v in
                                          pruned.surgery_report.changed.values()})
    sample = np.random.default_rng(0).random((96, 96, 3), np.float32)
    lat = P.paired_latency(fb, sample, FLAGS.repeats, FLAGS.runs)
    first = macs["round_to_1"]
    return {"ratio": FLAGS.round_ratio, "macs": macs, "widths": widths, "latency": lat,
            "latency_ratio_per_macs_ratio": {
                k: lat[k]["paired_ratio_median"] / (macs[k] / first) for k in macs},
            "cpu_flags": _cpu_flags()}


def _cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            line = next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in line.split()[2:] if f.startswith(("avx", "amx", "fma", "sse4")))


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    _parts.run({"mobilenet": mobilenet, "digits": digits, "mlp": mlp, "xception": xception,
                "conv1d": conv1d, "unet": unet, "se": se, "spatial": spatial, "blocks": blocks,
                "round_to": round_to}, FLAGS.parts, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
