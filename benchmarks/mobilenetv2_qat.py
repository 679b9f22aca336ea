"""MobileNetV2 full int8 past its PTQ activation ceiling: label-free QAT against min-max and
recovery, on images no step has seen.

    python benchmarks/mobilenetv2_qat.py                     # 3 seeds
    python benchmarks/mobilenetv2_qat.py --seeds=0           # one seed
    python benchmarks/mobilenetv2_qat.py --seeds=0,1,2 --merge_only   # summary of rows run

MobileNetV2 (alpha 0.35, the bundled digits as 32x32 RGB) is trained as benchmarks/ptq.py
trained it (60 epochs, random shifts of 10%, cosine decay) on the training split less a
stratified 20% validation split (``data.split_validation``). The trained float model is cached
in ``--cache`` (one ``.keras`` file per seed, loaded when present). Calibration: 512 training
images, no labels. Each int8 file is compared with the float model by agreement (argmax):

  min_max     ``convert(model, "int8", representative_data=cal)``
  recovery    ``convert(..., recovery=True)``: the best recovery the toolkit has for the mode,
              chosen on held-out calibration images (equalize + AdaRound + bias correction,
              or label-free QAT)
  finetune    ``finetune_quantized(model, cal, "int8", start=equalize(model),
              learning_rate=r)`` then ``convert(..., "int8")``

Decisions on validation, figures on test: finetune's learning rate ``r`` is chosen from
``--rates`` by agreement on the validation images and 10 randomly shifted copies of each
(pooled; ties to the smaller rate); only the chosen rate's file is measured on the test split and
on 10 randomly shifted copies of each test image (``test_shifted``, labels not needed; no step
sees them). ``rate_by_mean_validation`` picks one rate for all seeds from the per-seed validation
figures (the library default's evidence, ``finetune.LEARNING_RATE``).

``ceiling`` (the PTQ activation ceiling, per seed): float weights (BatchNormalization folded)
with every tensor the full-int8 conversion quantizes fake-quantized to int8 at its min-max range
on ``cal`` (``ceiling_predictions``: the simulation the first round's benchmarks/ptq.py
``int8_activation_ceiling`` ran, plus the int8 logits and softmax output it left float): the
most a weight-only PTQ method can reach at those ranges.
Measured on every split; each seed's finetune file is compared with its own ceiling on test and
test_shifted (``vs_ceiling``: paired interval, finetune - ceiling, in points). ``CEILING`` is
only the issue's reference figure (that round's test_shifted mean over 3 seeds: 99.29%). The
simulation is not the converter: with round-to-nearest weights it agrees with the float model
on 0.9952 of seed 0's pooled validation images where the converter's min-max file agrees on
0.9924, and with that file on 0.9921. Each seed's row goes to ``--rows`` (one JSON per seed);
the summary of the seeds asked for to ``--out``. ``finetune.seconds`` is the chosen rate's run
(equalize included), ``finetune.grid_seconds`` the whole grid's.

Seeds 0, 1, 2 with the per-seed ceiling (``python benchmarks/mobilenetv2_qat.py``, cached
models): rates chosen 3e-6 / 3e-6 / 1e-4 (validation: finetune 0.9946 / 0.9914 / 0.9949,
ceiling 0.9924 / 0.9908 / 0.9933: above it on every seed). test_shifted: ceiling 0.9955 /
0.9916 / 0.9944 (mean 0.9938), min_max 0.9908 / 0.9903 / 0.9953, recovery 0.9925 / 0.9911 /
0.9953, finetune 0.9933 / 0.9908 / 0.9942; finetune - ceiling -0.22 [-0.53, +0.08], -0.08
[-0.47, +0.28], -0.03 [-0.33, +0.28] points: below its own ceiling on every seed, no interval
excludes 0 (on test, 359 images: +0.28 / -0.28 / +0.28, intervals about +-1 point). min_max
itself is above the simulated ceiling on seed 2 (0.9953 vs 0.9944): at this scale the
ceiling is no bound on a converted file, and the acceptance bar is inside the noise.

Seeds 0, 1, 2 (as of the commit that set ``LEARNING_RATE[8] = 3e-6``; ``recovery`` then ran its
QAT candidate at the former default 1e-5): rates chosen 3e-6 / 3e-6 / 1e-4; test_shifted
agreement min_max 0.9908 / 0.9903 / 0.9953, recovery 0.9925 / 0.9894 / 0.9953, finetune
0.9933 / 0.9908 / 0.9942 (median 0.9933 over 0.9929), finetune - min_max +0.25 [-0.08, +0.58],
+0.06 [-0.25, +0.36], -0.11 [-0.36, +0.14] points: no seed's interval excludes 0.
With the new default alone (``--rates=3e-6``): finetune 0.9933 / 0.9908 / 0.9928 (seed 2:
-0.25 [-0.53, +0.03] against min-max), recovery 0.9925 / 0.9911 / 0.9953.

Other finetune settings, tried on validation only (pooled validation + validation_shifted,
seeds 0 / 1 / 2, mean; rate 3e-6, ``max_seconds`` unbounded): the default (start equalize,
12 epochs, patience 4) 0.9946 / 0.9915 / 0.9921, mean 0.9927; patience 8 and 30 epochs the
same files (best epochs 4 / 5 / 4 either way); start ``recover(model, cal,
activation_bits=8, max_seconds=60)`` (equalize + AdaRound + bias correction) 0.9927 / 0.9918 /
0.9933, mean 0.9926; start ``fold_batchnorm`` (no equalization) 0.9949 / 0.9905 / 0.9918,
mean 0.9924; no augmentation 0.9918 / 0.9908 / 0.9918, mean 0.9914; rate 1e-6 0.9927 /
0.9908 / 0.9940, mean 0.9925. With a trial patch of finetune.py (not kept): KL at temperature
4 mean 0.9923, shifts up to 4 pixels (1/8) mean 0.9919, early stopping on the held-out images
plus 8 augmented copies mean 0.9926. None beat the default on the mean, so the library keeps
it. The per-seed ceiling on the same images: 0.9924 / 0.9908 / 0.9933 (mean 0.9922); min-max
0.9924 / 0.9908 / 0.9921.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import tfcompress
from tfcompress import _io, data, keras, models
import tfcompress.export.conversion as conversion
import tfcompress.graph as graphs
import tfcompress.ptq.layerwise as layerwise
from tfcompress.ptq.equalization import fold_batchnorm
from tfcompress.export.validation import predict
from tfcompress.pipeline import stats

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_integer("epochs", 60, "Training epochs.")
flags.DEFINE_integer("calibration", 512, "Unlabelled calibration images.")
flags.DEFINE_list("rates", ["1e-4", "3e-5", "1e-5", "3e-6"],
                  "finetune_quantized learning rates, chosen on validation.")
flags.DEFINE_string("cache", "benchmarks/results/mnv2_seed{seed}.keras",
                    "Trained float model per seed (loaded when present).")
flags.DEFINE_string("rows", "benchmarks/results/mobilenetv2_qat_seed{seed}.json",
                    "One seed's row.")
flags.DEFINE_bool("merge_only", False, "Summarize the seeds' saved rows; run nothing.")
flags.DEFINE_string("out", "benchmarks/results/mobilenetv2_qat.json", "Output JSON.")

CEILING = 0.9929  # the reference: the first round's test_shifted mean over 3 seeds
METHODS = ("min_max", "recovery", "finetune")


def _shifted(x, copies: int = 10, shift: float = 0.05, seed: int = 1000):
    layer = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
    return np.concatenate([layer(x, training=True).numpy() for _ in range(copies)])


def _train(xf, yf, seed: int):
    keras.utils.set_random_seed(seed)
    model = models.build("mobilenet_v2", (32, 32, 3), 10, 0.35)
    steps = FLAGS.epochs * int(np.ceil(len(xf) / 32))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  "sparse_categorical_crossentropy", ["accuracy"])
    shift = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed)
    ds = tf.data.Dataset.from_tensor_slices((xf, yf)).shuffle(len(xf), seed=seed)
    model.fit(ds.batch(32).map(lambda a, b: (shift(a, training=True), b)),
              epochs=FLAGS.epochs, verbose=0)
    return model


def _float_model(xf, yf, seed: int):
    """(model, train seconds or None when loaded from the cache)."""
    path = FLAGS.cache.format(seed=seed)
    if os.path.exists(path):
        return models.load_model(path), None
    start = time.perf_counter()
    model = _train(xf, yf, seed)
    seconds = round(time.perf_counter() - start, 1)
    models.save_model(model, path)
    return model, seconds


def _agree(fb, splits, want) -> dict:
    return {s: predict(fb, v).argmax(-1) == want[s] for s, v in splits.items()}


def _softmax_dense(model):
    """The model's last layer when it is a Dense with a softmax (its logits are an int8 tensor
    of the converted file, and its output too, on the converter's fixed 1/256 grid)."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        return last
    return None


def _logits(dense, x):
    out = tf.matmul(x, dense.kernel)
    return out + dense.bias if dense.use_bias else out


def _ceiling_ranges(folded, cal) -> dict:
    """Per tensor the converter quantizes (``layerwise.quantized_tensors``, and a softmax
    Dense's logits), the min/max (0 included) it takes on ``cal`` in the float model; a tensor
    read only by an Add takes the Add's range, as the converter's calibrator records it."""
    names = set(layerwise.quantized_tensors(folded))
    dense = _softmax_dense(folded)
    ranges = {}

    def record(name, outs):
        if name in names:
            v = outs[0].numpy()
            ranges[name] = (min(0.0, float(v.min())), max(0.0, float(v.max())))
        return outs

    for name, inputs in graphs.walk([folded], cal, after=record):
        if dense is not None and name == dense.name:
            v = _logits(dense, inputs[0]).numpy()
            ranges["logits"] = (min(0.0, float(v.min())), max(0.0, float(v.max())))
    graph = graphs.read(folded)
    readers = graphs.consumers(graph)
    for node in graph.nodes:
        if node.cls == "Add" and node.name in ranges:
            for key in node.inputs:
                if readers.get(key[0]) == [node.name] and key[0] in ranges:
                    ranges[key[0]] = ranges[node.name]
    return ranges


def _fake(x, lo_hi):
    lo, hi = lo_hi
    return tf.quantization.fake_quant_with_min_max_vars(x, lo, max(hi, lo + 1e-6))


def ceiling_predictions(model, cal, x, batch_size: int = 512) -> np.ndarray:
    """The PTQ activation ceiling's outputs on ``x``: ``model`` with BatchNormalization folded,
    its float weights as they are, and every tensor the full-int8 conversion quantizes
    fake-quantized to int8 at its min-max range on ``cal`` (a softmax Dense's logits too, and
    its probabilities on the converter's fixed grid, steps of 1/256 up to 255/256): the most a
    weight-only PTQ method (rounding, bias correction) can reach at min-max ranges."""
    folded = fold_batchnorm(model)
    ranges = _ceiling_ranges(folded, cal)
    dense = _softmax_dense(folded)
    last = folded.layers[-1].name
    outs = []

    def fake(name, values):
        if name in ranges:
            values = [_fake(values[0], ranges[name])]
        return values

    for i in range(0, len(x), batch_size):
        for name, inputs in graphs.walk([folded], x[i:i + batch_size], after=fake):
            if name == last:
                if dense is None:
                    out = folded.get_layer(last)(inputs[0], training=False)
                else:
                    probs = tf.nn.softmax(_fake(_logits(dense, inputs[0]), ranges["logits"]))
                    out = tf.minimum(tf.round(probs * 256.0), 255.0) / 256.0
                outs.append(np.asarray(out))
    return np.concatenate(outs)


def part(seed: int) -> dict:
    (x, y), (xt, yt) = data.load_digits()
    x, xt = data.resize_images(x, (32, 32)), data.resize_images(xt, (32, 32))
    (xf, yf), (xv, _) = data.split_validation((x, y), 0.2, seed=0)
    model, train_seconds = _float_model(xf, yf, seed)
    row = {"seed": seed, "train_seconds": train_seconds}
    cal = xf[np.random.default_rng(seed).permutation(len(xf))[:FLAGS.calibration]]
    val = {"validation": xv, "validation_shifted": _shifted(xv, seed=2000)}
    test = {"test": xt, "test_shifted": _shifted(xt)}
    want = {s: model.predict(v, batch_size=256, verbose=0).argmax(-1)
            for s, v in {**val, **test}.items()}
    row["float_test_accuracy"] = float(np.mean(want["test"] == yt))
    fbs, seconds = {}, {}
    for method in ("min_max", "recovery"):
        start = time.perf_counter()
        fbs[method] = tfcompress.convert(model, "int8", representative_data=cal,
                                         recovery=method == "recovery")
        seconds[method] = time.perf_counter() - start
    # finetune: one file per rate, the rate chosen on validation (pooled over both splits)
    start = time.perf_counter()
    folded = tfcompress.equalize(model)
    fold_seconds = time.perf_counter() - start
    grid = {}
    for rate in sorted(float(r) for r in FLAGS.rates):
        start = time.perf_counter()
        student = tfcompress.finetune_quantized(model, cal, "int8", start=folded,
                                                learning_rate=rate)
        fb = tfcompress.convert(student, "int8", representative_data=cal)
        took = time.perf_counter() - start + fold_seconds
        agree = _agree(fb, val, want)
        grid[rate] = {"fb": fb, "seconds": took, "pooled": float(np.concatenate(
            list(agree.values())).mean()),
            **{s: float(a.mean()) for s, a in agree.items()},
            "epochs": student.finetune.get("epochs"),
            "best_epoch": student.finetune.get("best_epoch")}
        print(seed, "rate", rate, {k: v for k, v in grid[rate].items() if k != "fb"}, flush=True)
    chosen = max(grid, key=lambda r: (grid[r]["pooled"], -r))
    fbs["finetune"], seconds["finetune"] = grid[chosen]["fb"], grid[chosen]["seconds"]
    row["finetune_rate"] = chosen
    row["finetune_validation"] = {
        f"{r:g}": {k: (round(v, 1) if k == "seconds" else v)
                   for k, v in g.items() if k != "fb"} for r, g in grid.items()}
    row["min_max_validation"] = {s: float(a.mean())
                                 for s, a in _agree(fbs["min_max"], val, want).items()}
    start = time.perf_counter()
    ceiling = {s: ceiling_predictions(model, cal, v).argmax(-1) == want[s]
               for s, v in {**val, **test}.items()}
    row["ceiling_validation"] = {s: float(ceiling[s].mean()) for s in val}
    row["ceiling_validation"]["pooled"] = float(np.concatenate([ceiling[s] for s in val]).mean())
    row["ceiling"] = {s: float(ceiling[s].mean()) for s in test}
    row["ceiling"]["seconds"] = round(time.perf_counter() - start, 1)
    print(seed, "ceiling", row["ceiling_validation"], row["ceiling"], flush=True)
    agrees = {}
    for method in METHODS:
        agrees[method] = _agree(fbs[method], test, want)
        row[method] = {s: float(a.mean()) for s, a in agrees[method].items()}
        row[method]["seconds"] = round(seconds[method], 1)
        if method == "recovery":
            facts = conversion.conversion_info(fbs[method])["facts"]
            row[method]["chosen"] = facts.get("recovery_check", {}).get("kept")
        if method != "min_max":
            row[method]["vs_min_max"] = {
                s: stats.paired_difference(agrees["min_max"][s], agrees[method][s])
                for s in test}
        print(seed, method, row[method], flush=True)
    row["finetune"]["vs_ceiling"] = {
        s: stats.paired_difference(ceiling[s], agrees["finetune"][s]) for s in test}
    row["finetune"]["above_ceiling"] = {s: row["finetune"][s] > row["ceiling"][s] for s in test}
    row["finetune"]["above_reference_ceiling"] = row["finetune"]["test_shifted"] > CEILING
    row["finetune"]["grid_seconds"] = round(sum(g["seconds"] for g in grid.values()), 1)
    return row


def _summary(rows: list) -> dict:
    summary = {m: {s: {"min": min(r[m][s] for r in rows),
                       "median": float(np.median([r[m][s] for r in rows])),
                       "max": max(r[m][s] for r in rows)}
                   for s in ("test", "test_shifted")}
               for m in ("ceiling",) + METHODS}
    rates = sorted({k for r in rows for k in r["finetune_validation"]}, key=float)
    mean = {k: float(np.mean([r["finetune_validation"][k]["pooled"] for r in rows]))
            for k in rates}
    summary["finetune_rates"] = [r["finetune_rate"] for r in rows]
    summary["mean_validation_pooled"] = mean
    summary["rate_by_mean_validation"] = float(max(rates, key=lambda k: (mean[k], -float(k))))
    return summary


def main(_):
    rows = []
    for s in FLAGS.seeds:
        path = FLAGS.rows.format(seed=int(s))
        if FLAGS.merge_only:
            with open(path) as f:
                rows.append(json.load(f))
            continue
        rows.append(part(int(s)))
        _io.write_text(path, json.dumps(rows[-1], indent=1))
    summary = _summary(rows)
    out = {"reference_ceiling_test_shifted": CEILING, "rows": rows, "summary": summary}
    _io.write_text(FLAGS.out, json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    app.run(main)
