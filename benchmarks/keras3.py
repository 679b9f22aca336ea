"""Keras 3 models through tfcompress, measured; writes benchmarks/results/keras3.json.

    python benchmarks/keras3.py                     # everything (about 10 minutes on 2 cores)
    python benchmarks/keras3.py --parts=apps --size=128

Parts:
  apps    Keras 3 MobileNetV2, MobileNetV3Small (include_preprocessing=False) and ResNet50
          (weights=None, 1000 classes, --size input), BatchNorm statistics set from one random
          batch so outputs are not ~0: max abs output difference of from_keras3's tf_keras model
          (and of to_keras3 back) on random input, and the int8 .tflite size of the rebuilt model
          against the same architecture built directly with tf_keras (tfcompress.models /
          tf_keras.applications), given the same weights and the same random calibration data.
  digits  The digits CNN built in tf_keras and in Keras 3 from the same initial weights, trained
          the same way (same seed, unshuffled batches) in its own Keras, then each through
          prune(80%) -> fine-tune -> strip -> int8 -> validate: sparsity and int8 accuracy side
          by side, per seed.

A rerun of some parts keeps the other parts already in the output file.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _parts  # noqa: E402  (benchmarks/, first on sys.path)
import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import keras, models  # noqa: E402

flags.DEFINE_list("parts", ["apps", "digits"], "Which measurements to run.")
flags.DEFINE_list("apps", ["MobileNetV2", "MobileNetV3Small", "ResNet50"], "Applications.")
flags.DEFINE_integer("size", 224, "Input height and width of the applications.")
flags.DEFINE_integer("calibration_samples", 4, "Random samples calibrating the int8 ranges.")
flags.DEFINE_integer("seeds", 3, "Seeds for the digits figures.")
flags.DEFINE_integer("epochs", 15, "Baseline training epochs (digits).")
flags.DEFINE_integer("finetune_epochs", 4, "Pruning fine-tune epochs (digits).")
flags.DEFINE_float("target_sparsity", 0.8, "Pruning target (digits).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "keras3.json"), "Output JSON.")
FLAGS = flags.FLAGS


def _k3():
    import keras as keras3  # Keras 3

    return keras3


def _calibrate_bn(model, x):
    """Moving BatchNorm statistics := those of batch ``x`` (random weights otherwise give ~0)."""
    bns = [l for l in model._flatten_layers() if isinstance(l, _k3().layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in bns:
        layer.momentum = 0.99


def _direct(name: str, size: int):
    """The same architecture built with tf_keras."""
    shape = (size, size, 3)
    if name == "MobileNetV2":
        return models.build("mobilenet_v2", shape, 1000)
    if name == "MobileNetV3Small":
        return models.build("mobilenet_v3_small", shape, 1000)
    return getattr(keras.applications, name)(input_shape=shape, weights=None)


def apps() -> dict:
    k3 = _k3()
    rng = np.random.default_rng(0)
    size = FLAGS.size
    calib = rng.random((FLAGS.calibration_samples, size, size, 3), np.float32)
    x = rng.random((4, size, size, 3), np.float32)
    out = {"input_size": size}
    for name in FLAGS.apps:
        kwargs = {"include_preprocessing": False} if name == "MobileNetV3Small" else {}
        src = getattr(k3.applications, name)(input_shape=(size, size, 3), weights=None, **kwargs)
        _calibrate_bn(src, rng.random((8, size, size, 3), np.float32))
        start = time.time()
        rebuilt = tfcompress.from_keras3(src)
        rebuild_s = time.time() - start
        y = np.asarray(src(x))
        diff = tfcompress.keras3.max_abs_diff(src, rebuilt, x)
        # The softmax outputs of random weights are all ~1/1000: compare the features too.
        feature = src.layers[-2].name  # global pooling (MobileNetV2, ResNet50) or logits (V3)
        src_f = k3.Model(src.inputs, src.get_layer(feature).output)
        new_f = keras.Model(rebuilt.inputs, rebuilt.get_layer(feature).output)
        features = np.asarray(src_f(x))
        back_diff = tfcompress.keras3.max_abs_diff(src, tfcompress.to_keras3(rebuilt), x)
        direct = _direct(name, size)
        same_weights = [w.shape for w in direct.get_weights()] == [
            w.shape for w in rebuilt.get_weights()]
        if same_weights:
            direct.set_weights(rebuilt.get_weights())
        row = {"params": src.count_params(), "rebuild_seconds": rebuild_s,
               "max_abs_diff": diff, "max_abs_diff_back_to_keras3": back_diff,
               "output_max_abs": float(np.abs(y).max()),
               "output_std": float(y.std()),
               "feature_layer": feature,
               "max_abs_diff_features": tfcompress.keras3.max_abs_diff(src_f, new_f, x),
               "features_max_abs": float(np.abs(features).max()),
               "features_std": float(features.std()),
               "passes_1e-5": diff <= 1e-5, "direct_same_weights": same_weights}
        for label, model in (("rebuilt", rebuilt), ("direct_tf_keras", direct)):
            row[f"int8_bytes_{label}"] = len(tfcompress.convert(
                model, "int8", representative_data=calib,
                representative_samples=FLAGS.calibration_samples))
            row[f"float32_bytes_{label}"] = len(tfcompress.convert(model, "float32"))
        row["int8_size_ratio"] = row["int8_bytes_rebuilt"] / row["int8_bytes_direct_tf_keras"]
        row["within_1_percent"] = abs(row["int8_size_ratio"] - 1) <= 0.01
        out[name] = row
        logging.info("%s: %s", name, row)
    return out


def _accuracy_of(tflite, xt, yt) -> float:
    return tfcompress.validate(tflite, xt, yt, latency_runs=0, delegate_checks=False).accuracy


def _compress(model, x, y, xt, yt, seed: int) -> dict:
    """prune -> fine-tune -> strip -> int8 -> validate, with tf_keras doing the training."""
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(x) / 32))
    pruned = tfcompress.prune(model, FLAGS.target_sparsity, epochs=FLAGS.finetune_epochs,
                              steps_per_epoch=steps)
    pruned.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", ["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=FLAGS.finetune_epochs, verbose=0,
               callbacks=[tfcompress.callbacks.Pruning()])
    stripped = tfcompress.strip(pruned)
    tflite = tfcompress.convert(stripped, "int8", representative_data=x)
    return {"sparsity": tfcompress.sparsity_report(stripped)["global"],
            "int8_accuracy": _accuracy_of(tflite, xt, yt), "int8_bytes": len(tflite)}


def digits() -> dict:
    k3 = _k3()
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    rows = []
    for seed in range(FLAGS.seeds):
        keras.utils.set_random_seed(seed)
        k2_model = models.digits_cnn()
        L = k3.layers
        k3_model = k3.Sequential([
            k3.Input((8, 8, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            L.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool"), L.Flatten(name="flatten"),
            L.Dense(128, activation="relu", name="dense"), L.Dense(10, name="logits"),
            L.Activation("softmax", name="probs")], name="digits_cnn")
        k3_model.set_weights(k2_model.get_weights())  # the same initial weights
        for lib, model in ((keras, k2_model), (k3, k3_model)):
            lib.utils.set_random_seed(seed)
            model.compile(optimizer=lib.optimizers.Adam(1e-3),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(x, y, batch_size=32, epochs=FLAGS.epochs, shuffle=False, verbose=0)
        row = {"seed": seed,
               "baseline_accuracy": {
                   "tf_keras": tasks.top1(k2_model.predict(xt, verbose=0), yt),
                   "keras3": float(np.mean(np.asarray(k3_model.predict(xt, verbose=0)).argmax(-1)
                                           == yt))},
               "trained_weights_max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(
                   k2_model.get_weights(), k3_model.get_weights())),
               "tf_keras": _compress(k2_model, x, y, xt, yt, seed),
               "keras3": _compress(k3_model, x, y, xt, yt, seed)}  # from_keras3 inside prune
        row["accuracy_gap_points"] = 100 * abs(row["tf_keras"]["int8_accuracy"]
                                               - row["keras3"]["int8_accuracy"])
        row["sparsity_gap"] = abs(row["tf_keras"]["sparsity"] - row["keras3"]["sparsity"])
        rows.append(row)
        logging.info("digits seed %d: %s", seed, row)
    return {"per_seed": rows,
            "max_accuracy_gap_points": max(r["accuracy_gap_points"] for r in rows),
            "mean_accuracy_gap_points": float(np.mean([r["accuracy_gap_points"] for r in rows])),
            "max_sparsity_gap": max(r["sparsity_gap"] for r in rows)}


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    _parts.run({"apps": apps, "digits": digits}, FLAGS.parts, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
