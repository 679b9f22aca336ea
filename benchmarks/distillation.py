"""Distillation on the digits: teacher vs. the same student from scratch vs. distilled, over seeds.

    python benchmarks/distillation.py                      # 3 seeds, width-0.25 student, 30 epochs
    python benchmarks/distillation.py --epochs=15 --out=benchmarks/results/distillation_15.json
    python benchmarks/distillation.py --seeds=3,4,5,6,7 --out=benchmarks/results/distillation_seeds3-7.json
    python benchmarks/distillation.py --augment --out=benchmarks/results/distillation_augment.json

Per seed: a teacher digits CNN (width 1) is trained on the labels; a student (same builder,
``--width``) is trained twice from the SAME initial weights, with the same epochs, batch size,
learning rate and shuffling seed: once on the labels alone (scratch), once with the Distiller
(labels + teacher). Reports test accuracies, their means, the share of the teacher-to-scratch
gap that distillation recovered, the distilled student's int8 TFLite accuracy on the LiteRT
interpreter, and the time per training epoch with a live vs. a precomputed teacher.
Writes benchmarks/results/distillation.json.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import _io, keras  # noqa: E402
from tfcompress.export.conversion import convert  # noqa: E402
from tfcompress.training.distillation import Distiller  # noqa: E402
from tfcompress.export.validation import validate  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Model seeds (the data split stays seed 0).")
flags.DEFINE_integer("teacher_epochs", 20, "Teacher training epochs.")
flags.DEFINE_integer("epochs", 30, "Student epochs, the same for scratch and distilled.")
flags.DEFINE_float("width", 0.25, "Student width multiplier of the digits CNN.")
flags.DEFINE_float("alpha", 0.1, "Weight of the label loss.")
flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (all runs).")
flags.DEFINE_integer("batch_size", 32, "Batch size (all runs).")
flags.DEFINE_bool("augment", False, "Random 1-pixel translations for both students (the "
                  "teacher then runs live on the augmented batches; no precomputed outputs).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "distillation.json"), "Output JSON.")


def _accuracy(model, x, y) -> float:
    return tasks.top1(model.predict(x, verbose=0), y)


def _augmented(x, y, seed):
    """Shuffled batches with random translations of up to 1 pixel (8x8 digits)."""
    shift = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", seed=seed)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    return data.batch(FLAGS.batch_size).map(lambda a, b: (shift(a, training=True), b))


def _fit_labels(model, x, y, epochs, seed, augment=False):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                  "sparse_categorical_crossentropy", ["accuracy"])
    if augment:
        model.fit(_augmented(x, y, seed), epochs=epochs, verbose=0)
    else:
        model.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0)
    return model


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def _epoch_seconds(distiller, x, targets, epochs: int = 5) -> float:
    """Median seconds of one training epoch, the first (tracing) epoch left out."""
    timer = _EpochTimer()
    timer.seconds = []
    distiller.fit(x, targets, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0,
                  callbacks=[timer])
    return float(np.median(timer.seconds[1:]))


def run_seed(seed: int, splits) -> dict:
    (x, y), (xt, yt) = splits
    keras.utils.set_random_seed(seed)
    teacher = _fit_labels(tfcompress.models.digits_cnn(), x, y, FLAGS.teacher_epochs, seed)
    keras.utils.set_random_seed(seed)
    student = tfcompress.models.digits_cnn(width=FLAGS.width)
    initial = student.get_weights()
    scratch = keras.models.clone_model(student)
    scratch.set_weights(initial)
    _fit_labels(scratch, x, y, FLAGS.epochs, seed, FLAGS.augment)

    distiller = Distiller(student, teacher, alpha=FLAGS.alpha, temperature=FLAGS.temperature)
    distiller.compile(keras.optimizers.Adam(FLAGS.learning_rate), metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    if FLAGS.augment:
        distiller.fit(_augmented(x, y, seed), epochs=FLAGS.epochs, verbose=0)
    else:
        distiller.fit(x, distiller.precompute(x, y), batch_size=FLAGS.batch_size,
                      epochs=FLAGS.epochs, verbose=0)
    row = {
        "seed": seed,
        "teacher_accuracy": _accuracy(teacher, xt, yt),
        "scratch_accuracy": _accuracy(scratch, xt, yt),
        "distilled_accuracy": _accuracy(student, xt, yt),
        "teacher_params": int(teacher.count_params()),
        "student_params": int(student.count_params()),
    }
    int8 = convert(student, "int8", representative_data=x)
    report = validate(int8, xt, yt, reference=student, latency_runs=20)
    row.update(int8_accuracy=report.accuracy, int8_agreement=report.agreement,
               int8_bytes=report.bytes, int8_latency_ms=report.latency_ms,
               teacher_float32_bytes=len(convert(teacher, "float32")))
    # Speed of precomputed vs. live teacher outputs, on a fresh distiller.
    timing = Distiller(keras.models.clone_model(student), teacher, alpha=FLAGS.alpha,
                       temperature=FLAGS.temperature)
    timing.compile(keras.optimizers.Adam(FLAGS.learning_rate))
    row["epoch_seconds_live_teacher"] = _epoch_seconds(timing, x, y)
    start = time.perf_counter()
    targets = timing.precompute(x, y)
    row["precompute_seconds"] = time.perf_counter() - start
    row["epoch_seconds_precomputed"] = _epoch_seconds(timing, x, targets)
    print(json.dumps(row), flush=True)
    return row


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    splits = tfcompress.data.load_digits(seed=0)
    rows = [run_seed(int(s), splits) for s in FLAGS.seeds]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    gap = mean["teacher_accuracy"] - mean["scratch_accuracy"]
    summary = {
        "mean": mean,
        "distilled_beats_scratch": mean["distilled_accuracy"] > mean["scratch_accuracy"],
        "gap_recovered": ((mean["distilled_accuracy"] - mean["scratch_accuracy"]) / gap
                          if gap > 0 else None),
        "param_ratio": mean["teacher_params"] / mean["student_params"],
        "max_int8_drop": max(r["distilled_accuracy"] - r["int8_accuracy"] for r in rows),
        "distilled_wins": sum(r["distilled_accuracy"] > r["scratch_accuracy"] for r in rows),
    }
    settings = {k: FLAGS[k].value for k in ("seeds", "teacher_epochs", "epochs", "width",
                                            "alpha", "temperature", "learning_rate",
                                            "batch_size", "augment")}
    result = {"settings": settings, "runs": rows, "summary": summary}
    _io.write_text(FLAGS.out, json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
