"""Distillation: the same student from scratch vs. distilled (same epochs), over seeds.

Text and keyword-spotting students (the default, ``--models=lstm,transformer,keywords``):

    python benchmarks/distillation.py --seeds=0,1,2   # results/distillation_sequence.json
    python benchmarks/distillation.py --models=keywords --seeds=0 --alphas=0.1,0.5,0.9 \
        --hint_weights=1 --out=/tmp/grid.json             # a wider validation grid, with hints

Models: ``lstm`` (``lstm_text``, an Embedding -> LSTM(32) classifier on the bundled fortunes,
pre-padded), ``transformer`` (``models.text_transformer``, same data) and ``keywords``
(``models.kws_dscnn`` on the bundled keyword MFCCs). Data: the bundled training split, 20% of
each class held out for validation (``_protocol.validation_split``, seed 0), the bundled test
split measured once. The teacher (width 1, seed 0) is fitted once per model, keeping its best
validation epoch. Per seed the half-width student is built once and trained twice from the SAME
initial weights, with the same epochs, Adam learning rate, batch size and shuffling seed, each
keeping its best validation epoch: on the labels alone (scratch) and with the Distiller
(precomputed teacher logits). On the first seed, alpha x temperature (``--alphas``,
``--temperatures``) and then pooled-feature hints with the best of them (``--hint_weights``: MSE
between the teacher's pooled feature and a learned projection of the student's) are tried and
the best VALIDATION accuracy picks the settings every seed uses (``--select_on_all_seeds``: the
grid runs on every seed and the best mean validation accuracy picks them). Reports test accuracy (min /
median / max over seeds), distilled - scratch per seed with a paired bootstrap 95% interval on
the test clips, and the same pooled over seeds.

The digits CNN (``--models=digits``):

    python benchmarks/distillation.py --models=digits      # 3 seeds, width-0.25 student, 30 epochs
    python benchmarks/distillation.py --models=digits --epochs=15 --out=benchmarks/results/distillation_15.json
    python benchmarks/distillation.py --models=digits --augment --out=benchmarks/results/distillation_augment.json

Per seed: a teacher digits CNN (width 1) is trained on the labels; a student (same builder,
``--width``) is trained twice from the SAME initial weights, with the same epochs, batch size,
learning rate and shuffling seed: once on the labels alone (scratch), once with the Distiller
(labels + teacher, ``--alpha``, ``--temperature``). Reports test accuracies, their means, the
share of the teacher-to-scratch gap that distillation recovered, the distilled student's int8
TFLite accuracy on the LiteRT interpreter, and the time per training epoch with a live vs. a
precomputed teacher. Writes benchmarks/results/distillation.json.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress import tasks  # noqa: E402
from tfcompress import _io, keras  # noqa: E402
from tfcompress.export.conversion import convert  # noqa: E402
from tfcompress.training.distillation import Distiller  # noqa: E402
from tfcompress.export.validation import validate  # noqa: E402

import _protocol  # noqa: E402

FLAGS = flags.FLAGS
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Model seeds (the data split stays seed 0).")
flags.DEFINE_list("models", ["lstm", "transformer", "keywords"],
                  "Which benchmark: digits (the digits CNN) or any of the text/keyword-spotting "
                  "students lstm, transformer, keywords.")
flags.DEFINE_integer("teacher_epochs", 0, "Teacher training epochs (0: digits 20, text 10, "
                     "keywords 40).")
flags.DEFINE_integer("epochs", 0, "Student epochs, the same for scratch and distilled (0: digits "
                     "30, text 8, keywords 24).")
flags.DEFINE_float("student_width", 0.5, "Width of the text/keyword students.")
flags.DEFINE_list("alphas", ["0.5", "0.9"], "Label-loss weights tried on validation "
                  "(text/keyword students).")
flags.DEFINE_list("temperatures", ["1", "2", "4"], "Temperatures tried on validation "
                  "(text/keyword students).")
flags.DEFINE_bool("select_on_all_seeds", False, "Run the alpha x temperature grid on every seed "
                  "and choose by the mean validation accuracy (no hints; slower, steadier).")
flags.DEFINE_list("hint_weights", [], "Hint (pooled-feature MSE) weights tried with the best "
                  "alpha and temperature (text/keyword students).")
flags.DEFINE_float("width", 0.25, "Student width multiplier of the digits CNN.")
flags.DEFINE_float("alpha", 0.1, "Weight of the label loss.")
flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (all runs).")
flags.DEFINE_integer("batch_size", 32, "Batch size (all runs).")
flags.DEFINE_bool("augment", False, "Random 1-pixel translations for both students (the "
                  "teacher then runs live on the augmented batches; no precomputed outputs).")
flags.DEFINE_string("out", "", "Output JSON (default: benchmarks/results/distillation.json for "
                    "digits, distillation_sequence.json for the others).")


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
    teacher = _fit_labels(tfcompress.models.digits_cnn(), x, y, FLAGS.teacher_epochs or 20, seed)
    keras.utils.set_random_seed(seed)
    student = tfcompress.models.digits_cnn(width=FLAGS.width)
    initial = student.get_weights()
    scratch = keras.models.clone_model(student)
    scratch.set_weights(initial)
    _fit_labels(scratch, x, y, FLAGS.epochs or 30, seed, FLAGS.augment)

    distiller = Distiller(student, teacher, alpha=FLAGS.alpha, temperature=FLAGS.temperature)
    distiller.compile(keras.optimizers.Adam(FLAGS.learning_rate), metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    if FLAGS.augment:
        distiller.fit(_augmented(x, y, seed), epochs=FLAGS.epochs or 30, verbose=0)
    else:
        distiller.fit(x, distiller.precompute(x, y), batch_size=FLAGS.batch_size,
                      epochs=FLAGS.epochs or 30, verbose=0)
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


# -- text and keyword-spotting students -----------------------------------------------------

def lstm_text(width: float = 1.0, num_classes: int = 6) -> keras.Model:
    """A text LSTM on ``_pre_padded_text``: Embedding(2000, 32) -> LSTM(32) -> ``logits`` ->
    softmax (73k parameters at width 1)."""
    L, dim = keras.layers, max(1, int(round(32 * width)))
    inputs = keras.Input((64,), dtype="int32", name="token_ids")
    x = L.Embedding(tfcompress.models.TEXT_VOCABULARY, dim, name="embedding")(inputs)
    x = L.LSTM(dim, name="lstm")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="lstm_text")


def _pre_padded_text(seed: int = 0):
    """``data.load_text`` with the padding ids (0) moved before the words, as Keras'
    ``pad_sequences`` pads by default: an LSTM's last state then follows the last word (padded
    after the words, the LSTM reached 0.40 validation accuracy; masking them ran 2x slower)."""
    def pre(x):
        order = np.argsort(x != 0, axis=1, kind="stable")  # zeros first, words in order
        return np.take_along_axis(x, order, axis=1)
    (x, y), (xt, yt) = tfcompress.data.load_text(seed=seed)
    return (pre(x), y), (pre(xt), yt)


# name: (loader, builder(width), hint layer (the pooled feature before the logits),
#        teacher epochs, student epochs, Adam learning rate). The DS-CNNs' BatchNormalization
# statistics lag their weights (validation accuracy at chance for the first 4 epochs at 3e-3,
# then climbing steeply), so the keyword models need more epochs than the text ones: after 20
# epochs the teacher was still climbing (validation 0.9375, test 0.88, no better than its
# half-width students from scratch: 0.857-0.902 after 12 epochs, and nothing to distil); after
# 40, validation 0.973, test 0.945. Students get 24 epochs (scratch and distilled alike).
SEQUENCE_MODELS = {
    "lstm": (_pre_padded_text, lstm_text, "lstm", 10, 8, 3e-3),
    "transformer": (tfcompress.data.load_text,
                    lambda w: tfcompress.models.text_transformer(width=w), "gap", 10, 8, 3e-3),
    "keywords": (tfcompress.data.load_keywords,
                 lambda w: tfcompress.models.kws_dscnn(width=w), "gap", 40, 24, 3e-3),
}


def _grid():
    """[(alpha, temperature, hint_weight)]: every alpha x temperature without hints."""
    return [(float(a), float(t), 0.0) for a in FLAGS.alphas for t in FLAGS.temperatures]


def _fit_student(model, train, val, epochs, lr, seed, config=None, teacher=None, hint=None):
    """Fits ``model`` (from its current weights) for ``epochs`` with Adam(lr), the batch size
    and shuffling seed shared by all runs, keeping the weights of its best validation epoch:
    on the labels alone, or distilled with ``config`` (alpha, temperature, hint_weight)."""
    x, y = train
    keras.utils.set_random_seed(seed)
    if config is None:
        _protocol.fit(model, train, val, epochs, lr, FLAGS.batch_size)
        return model
    alpha, temperature, hint_weight = config
    hints = [(hint, hint)] if hint_weight > 0 else None
    distiller = Distiller(model, teacher, alpha=alpha, temperature=temperature, hints=hints,
                          hint_weight=hint_weight)
    distiller.compile(keras.optimizers.Adam(lr), metrics=["accuracy"])
    targets = distiller.precompute(x, y)
    best = keras.callbacks.EarlyStopping("val_accuracy", patience=epochs, mode="max",
                                         restore_best_weights=True)
    keras.utils.set_random_seed(seed)
    distiller.fit(x, targets, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0,
                  validation_data=val, callbacks=[best])
    return model


def run_sequence_model(name: str) -> dict:
    """Teacher once (seed 0, best validation epoch); per seed the half-width student from the
    same initial weights, from scratch and distilled with the same epochs and optimizer. The
    distillation settings are chosen on the validation split of the first seed."""
    loader, build, hint, teacher_epochs, epochs, lr = SEQUENCE_MODELS[name]
    teacher_epochs = FLAGS.teacher_epochs or teacher_epochs
    epochs = FLAGS.epochs or epochs
    (x, y), (xt, yt) = loader(seed=0)
    train, val = _protocol.validation_split(x, y, seed=0)
    xv, yv = val
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    teacher = build(1.0)
    _protocol.fit(teacher, train, val, teacher_epochs, lr, FLAGS.batch_size)
    result = {"teacher": {"params": int(teacher.count_params()),
                          "validation_accuracy": float(_protocol.correct(teacher, xv, yv).mean()),
                          "test_accuracy": float(_protocol.correct(teacher, xt, yt).mean())}}
    print(name, json.dumps(result["teacher"]), flush=True)
    grid, chosen, rows = _grid(), None, []
    for seed in map(int, FLAGS.seeds):
        keras.utils.set_random_seed(seed)
        student = build(FLAGS.student_width)
        initial = student.get_weights()

        def fresh():
            model = keras.models.clone_model(student)
            model.set_weights(initial)
            return model

        scratch = _fit_student(fresh(), train, val, epochs, lr, seed)
        row = {"seed": seed, "student_params": int(student.count_params()),
               "scratch": _protocol.correct(scratch, xt, yt),
               "scratch_validation": float(_protocol.correct(scratch, xv, yv).mean())}
        if FLAGS.select_on_all_seeds:  # the grid on every seed; chosen after the loop
            row["grid"], row["trials"] = [], {}
            for config in grid:
                model = _fit_student(fresh(), train, val, epochs, lr, seed, config, teacher, hint)
                row["trials"][config] = (_protocol.correct(model, xv, yv),
                                         _protocol.correct(model, xt, yt))
                row["grid"].append({"alpha": config[0], "temperature": config[1],
                                    "hint_weight": config[2],
                                    "validation_accuracy": float(row["trials"][config][0].mean()),
                                    "test_accuracy": float(row["trials"][config][1].mean())})
                print(name, seed, json.dumps(row["grid"][-1]), flush=True)
            rows.append(row)
            continue
        if chosen is None:  # the first seed: the grid on validation
            row["grid"], best = [], None

            def trial(config):
                model = _fit_student(fresh(), train, val, epochs, lr, seed, config, teacher, hint)
                score = float(_protocol.correct(model, xv, yv).mean())
                row["grid"].append({"alpha": config[0], "temperature": config[1],
                                    "hint_weight": config[2], "validation_accuracy": score,
                                    "test_accuracy": float(
                                        _protocol.correct(model, xt, yt).mean())})
                print(name, seed, json.dumps(row["grid"][-1]), flush=True)
                return score, config, model

            for config in grid:
                best = max(best or (-1.0,), trial(config), key=lambda b: b[0])
            for weight in map(float, FLAGS.hint_weights):  # hints on the best soft settings
                best = max(best, trial(best[1][:2] + (weight,)), key=lambda b: b[0])
            chosen, distilled = best[1], best[2]
        else:
            distilled = _fit_student(fresh(), train, val, epochs, lr, seed, chosen, teacher, hint)
        row["distilled"] = _protocol.correct(distilled, xt, yt)
        row["distilled_validation"] = float(_protocol.correct(distilled, xv, yv).mean())
        rows.append(row)
    if FLAGS.select_on_all_seeds:  # the best mean validation accuracy over the seeds
        chosen = max(grid, key=lambda c: np.mean([r["trials"][c][0].mean() for r in rows]))
        for r in rows:
            valid, r["distilled"] = r.pop("trials")[chosen]
            r["distilled_validation"] = float(valid.mean())
    scratch = [r["scratch"].mean() for r in rows]
    distilled = [r["distilled"].mean() for r in rows]
    result.update(
        settings={"teacher_epochs": teacher_epochs, "epochs": epochs, "learning_rate": lr,
                  "batch_size": FLAGS.batch_size, "student_width": FLAGS.student_width,
                  "hint": hint, "grid": [list(c) for c in grid],
                  "hint_weights": list(map(float, FLAGS.hint_weights))},
        chosen={"alpha": chosen[0], "temperature": chosen[1], "hint_weight": chosen[2],
                "chosen_on": ("validation split, mean over the seeds" if FLAGS.select_on_all_seeds
                              else f"validation split, seed {rows[0]['seed']}")},
        runs=[{"seed": r["seed"], "student_params": r["student_params"],
               "scratch_test_accuracy": float(r["scratch"].mean()),
               "distilled_test_accuracy": float(r["distilled"].mean()),
               "scratch_validation_accuracy": r["scratch_validation"],
               "distilled_validation_accuracy": r["distilled_validation"],
               "distilled_minus_scratch": _protocol.paired_difference(r["scratch"],
                                                                      r["distilled"]),
               **({"grid": r["grid"]} if "grid" in r else {})} for r in rows],
        summary={"scratch_test_accuracy": _protocol.summary(scratch),
                 "distilled_test_accuracy": _protocol.summary(distilled),
                 "distilled_minus_scratch_points": _protocol.summary(
                     100 * (np.asarray(distilled) - np.asarray(scratch))),
                 "distilled_minus_scratch_pooled": _protocol.paired_difference(
                     np.concatenate([r["scratch"] for r in rows]),
                     np.concatenate([r["distilled"] for r in rows])),
                 "distilled_at_least_scratch": int(sum(d >= s for d, s in
                                                       zip(distilled, scratch))),
                 "seeds": len(rows),
                 "seconds": time.perf_counter() - start})
    print(name, json.dumps(result["summary"]), flush=True)
    return result


def main(argv):
    del argv
    tfcompress.quiet_tensorflow()
    unknown = sorted(set(FLAGS.models) - set(SEQUENCE_MODELS) - {"digits"})
    if unknown:
        raise SystemExit(f"--models={','.join(unknown)}; accepted: digits or "
                         f"{', '.join(SEQUENCE_MODELS)}")
    if FLAGS.models != ["digits"]:
        if "digits" in FLAGS.models:
            raise SystemExit("--models: run digits on its own (its flags differ)")
        main_sequence()
        return
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
    _io.write_text(FLAGS.out or os.path.join(RESULTS, "distillation.json"),
                   json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


def main_sequence():
    start = time.perf_counter()
    results = {name: run_sequence_model(name) for name in FLAGS.models}
    table = {name: {"teacher_test": r["teacher"]["test_accuracy"],
                    "scratch_test": r["summary"]["scratch_test_accuracy"],
                    "distilled_test": r["summary"]["distilled_test_accuracy"],
                    "distilled_minus_scratch_points": r["summary"][
                        "distilled_minus_scratch_points"],
                    "pooled": r["summary"]["distilled_minus_scratch_pooled"],
                    "chosen": r["chosen"],
                    "at_least_scratch": f"{r['summary']['distilled_at_least_scratch']}/"
                                        f"{r['summary']['seeds']}"}
             for name, r in results.items()}
    output = {"command": " ".join(sys.argv), "seeds": FLAGS.seeds, "table": table,
              "models": results, "seconds": time.perf_counter() - start}
    _io.write_text(FLAGS.out or os.path.join(RESULTS, "distillation_sequence.json"),
                   json.dumps(output, indent=2))
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    app.run(main)
