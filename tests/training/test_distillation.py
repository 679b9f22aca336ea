"""Distiller: loss formula, logits/probabilities, training, hints, pseudo-labels, precomputed
teacher outputs, pruning, config round trip, MirroredStrategy, the recipe stage."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import tfcompress
from tfcompress import errors, keras
from tfcompress.export.conversion import convert
from tfcompress.training.distillation import Distiller, pseudo_labels
from tfcompress.export.validation import validate

from helpers import keras_accuracy

KINDS = ("softmax_layer", "dense_softmax", "logits")


def mlp(kind: str, hidden: int = 16, seed: int = 0) -> keras.Model:
    """A tiny MLP on the 8x8 digits whose output is probabilities or logits, by ``kind``."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(),
              keras.layers.Dense(hidden, activation="relu", name="hidden")]
    if kind == "softmax_layer":
        layers += [keras.layers.Dense(10, name="logits"), keras.layers.Activation("softmax")]
    elif kind == "dense_softmax":
        layers += [keras.layers.Dense(10, activation="softmax", name="logits")]
    else:
        layers += [keras.layers.Dense(10, name="logits")]
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def student_init():
    keras.utils.set_random_seed(1)
    return tfcompress.models.digits_cnn(width=0.25).get_weights()


def _student(weights):
    model = tfcompress.models.digits_cnn(width=0.25)
    model.set_weights(weights)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_detects_output_kind_and_takes_logits(kind, digits):
    (x, _), _ = digits
    model = mlp(kind)
    d = Distiller(model, model)
    assert d.teacher_from_logits == d.student_from_logits == (kind == "logits")
    out, logits = d._views["teacher"].predict(x[:50], verbose=0)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(),
                               tf.nn.softmax(out).numpy() if kind == "logits" else out,
                               atol=1e-5)
    if kind == "softmax_layer":  # the pre-softmax tensor itself, not a reconstruction
        pre = keras.Model(model.inputs, model.get_layer("logits").output)
        np.testing.assert_allclose(logits, pre.predict(x[:50], verbose=0), atol=1e-5)


@pytest.mark.parametrize("teacher_kind,student_kind", [
    ("softmax_layer", "logits"), ("logits", "dense_softmax"), ("dense_softmax", "softmax_layer")])
def test_same_function_gives_zero_distillation_loss(teacher_kind, student_kind, digits):
    """Teacher and student compute the same function in different output kinds: KL is 0.
    A double softmax (probabilities taken as logits) would make it clearly positive."""
    (x, y), _ = digits
    teacher, student = mlp(teacher_kind), mlp(student_kind)
    student.set_weights(teacher.get_weights())
    d = Distiller(student, teacher, alpha=0.0)
    d.compile("adam")
    same = d.evaluate(x[:256], y[:256], verbose=0, return_dict=True)["distillation_loss"]
    student.set_weights([w + 0.3 * np.sign(w) for w in teacher.get_weights()])
    other = d.evaluate(x[:256], y[:256], verbose=0, return_dict=True)["distillation_loss"]
    assert same < 1e-5 < 1e-2 < other
    # An explicit flag wins over detection: a probability-output student declared to give
    # logits is softmaxed twice, and the same function no longer gives zero loss.
    student.set_weights(teacher.get_weights())
    forced = Distiller(student, teacher, alpha=0.0, teacher_from_logits=teacher_kind == "logits",
                       student_from_logits=True)
    forced.compile("adam")
    loss = forced.evaluate(x[:256], y[:256], verbose=0, return_dict=True)["distillation_loss"]
    if student_kind == "logits":
        assert loss < 1e-5  # the flag agrees with detection
    else:
        assert loss > 1e-2, loss


def test_loss_matches_hinton_formula(digits, trained_cnn, student_init):
    (x, y), _ = digits
    x, y = x[:200], y[:200]
    alpha, temp = 0.3, 3.0
    student = _student(student_init)
    d = Distiller(student, trained_cnn, alpha=alpha, temperature=temp)
    d.compile("adam")
    got = d.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)

    def logits(m):
        return keras.Model(m.inputs, m.get_layer("logits").output).predict(x, verbose=0)

    t, s = logits(trained_cnn).astype(np.float64), logits(student).astype(np.float64)
    softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(  # noqa: E731
        z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
    ce = -np.log(softmax(s)[np.arange(len(y)), y]).mean()
    pt, ps = softmax(t / temp), softmax(s / temp)
    kl = (pt * np.log(pt / ps)).sum(-1).mean()
    np.testing.assert_allclose(got["student_loss"], ce, rtol=1e-3)
    np.testing.assert_allclose(got["distillation_loss"], temp ** 2 * kl, rtol=1e-3)
    np.testing.assert_allclose(got["loss"], alpha * ce + (1 - alpha) * temp ** 2 * kl, rtol=1e-3)


class _Logs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def test_distills_a_student_that_saves_converts_and_validates(digits, trained_cnn, student_init,
                                                              tmp_path):
    (x, y), (xt, yt) = digits
    teacher_before = [w.copy() for w in trained_cnn.get_weights()]
    student = _student(student_init)
    d = Distiller(student, trained_cnn)
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    logs = _Logs()
    stop = keras.callbacks.EarlyStopping("val_loss", patience=50)
    history = d.fit(x, y, batch_size=32, epochs=6, validation_data=(xt, yt),
                    callbacks=[logs, stop], verbose=0)
    assert len(logs.epochs) == 6 and {"loss", "student_loss", "distillation_loss", "accuracy",
                                      "val_loss", "val_accuracy"} <= set(logs.epochs[-1])
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, after in zip(teacher_before, trained_cnn.get_weights()):
        np.testing.assert_array_equal(before, after)  # the teacher is frozen
    # Metrics report the student's quality; .student is the trained student.
    evaluated = d.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    accuracy = keras_accuracy(d.student, xt, yt)
    assert d.student is student and abs(evaluated - accuracy) < 1e-6 and accuracy > 0.85
    np.testing.assert_allclose(d.predict(xt[:20], verbose=0), student.predict(xt[:20], verbose=0))
    path = str(tmp_path / "student.keras")
    tfcompress.models.save_model(d.student, path)
    loaded = tfcompress.models.load_model(path)
    assert keras_accuracy(loaded, xt, yt) == accuracy
    report = validate(convert(loaded, "int8", representative_data=x), xt, yt, latency_runs=0)
    assert abs(report.accuracy - accuracy) <= 0.02


def test_hints_learn_a_projection_and_shrink_the_feature_gap(digits, trained_cnn, student_init):
    (x, y), _ = digits
    d = Distiller(_student(student_init), trained_cnn, hints={"dense": "dense"}, hint_weight=1.0)
    assert d.projections[0] is not None and d.projections[0].kernel.shape == (32, 128)
    d.compile(keras.optimizers.Adam(2e-3))
    projection = d.projections[0].kernel.numpy().copy()
    history = d.fit(x, y, epochs=3, verbose=0)
    hint = history.history["hint_loss"]
    assert hint[-1] < 0.7 * hint[0]
    assert not np.allclose(projection, d.projections[0].kernel.numpy())  # it learned
    same = Distiller(_student(student_init), trained_cnn, hints=[("logits", "logits")])
    assert same.projections == [None]  # equal widths: no projection


@pytest.mark.parametrize("hints,message", [
    ({"nope": "dense"}, "unknown teacher layer 'nope'"),
    ({"conv2": "dense"}, "accepted: layers whose outputs differ at most in the last"),
    ("conv1", "accepted: pairs (teacher_layer, student_layer)"),
])
def test_bad_hints_are_clear_errors(hints, message, trained_cnn, student_init):
    with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Distiller(_student(student_init), trained_cnn, hints=hints)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(alpha=1.5), errors.ConfigError, "alpha=1.5"),
    (dict(temperature=0), errors.ConfigError, "temperature=0"),
    (dict(pseudo_labels="fuzzy"), errors.ConfigError, "unknown pseudo_labels 'fuzzy'"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, message, trained_cnn, student_init):
    with pytest.raises(error, match=message):
        Distiller(_student(student_init), trained_cnn, **kwargs)


def test_rejects_subclassed_models_and_class_mismatch(trained_cnn):
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.ModelError, match="subclassed or unbuilt"):
        Distiller(Sub(), trained_cnn)
    with pytest.raises(errors.ModelError, match="student has 3 outputs but teacher has 10"):
        Distiller(tfcompress.models.digits_cnn(num_classes=3), trained_cnn)


def test_two_regression_targets_need_the_task_said_and_train_with_it():
    """Two linear outputs read as logits (classification): float targets are refused in one
    line before fit runs; with task="regression" the student learns them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = np.stack([x[:, 0] + x[:, 1], x[:, 2] - x[:, 3]], 1).astype(np.float32)

    def dense(units):
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(units)(inputs)))

    teacher = dense(16)
    teacher.compile("adam", "mse")
    teacher.fit(x, y, epochs=20, verbose=0)
    distiller = Distiller(dense(4), teacher)
    distiller.compile(keras.optimizers.Adam(1e-2))
    with pytest.raises(errors.DataError, match="not whole numbers.*task='regression'") as info:
        distiller.fit(x, y, epochs=1, verbose=0)
    assert "\n" not in str(info.value)
    distiller = Distiller(dense(4), teacher, task="regression")
    distiller.compile(keras.optimizers.Adam(1e-2))
    start = np.mean(np.square(distiller.student.predict(x, verbose=0) - y))
    distiller.fit(x, y, epochs=20, verbose=0)
    assert np.mean(np.square(distiller.student.predict(x, verbose=0) - y)) < start / 2


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_pseudo_labels_train_on_unlabeled_data(soft, digits, trained_cnn, student_init):
    (x, _), (xt, _) = digits
    labels = pseudo_labels(trained_cnn, x[:100], soft=soft)
    probs = trained_cnn.predict(x[:100], verbose=0)
    if soft:
        np.testing.assert_allclose(labels, probs, atol=1e-5)
    else:
        np.testing.assert_array_equal(labels, probs.argmax(-1))
    d = Distiller(_student(student_init), trained_cnn, alpha=0.5,
                  pseudo_labels="soft" if soft else "hard")
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    d.fit(x, epochs=5, batch_size=32, verbose=0)  # no labels at all
    teacher_says = trained_cnn.predict(xt, verbose=0).argmax(-1)
    assert keras_accuracy(d.student, xt, teacher_says) > 0.85
    # Metrics on unlabeled data measure agreement with the teacher's labels.
    agreement = d.evaluate(xt, verbose=0, return_dict=True)["accuracy"]
    assert abs(agreement - keras_accuracy(d.student, xt, teacher_says)) < 1e-6


def test_precomputed_teacher_outputs_give_the_same_training(digits, trained_cnn, student_init):
    (x, y), _ = digits
    x, y = x[:320], y[:320]
    runs = []
    for precompute in (False, True):
        d = Distiller(_student(student_init), trained_cnn, hints={"dense": "dense"})
        d.projections[0].set_weights([np.full_like(w, 0.01) for w in
                                      d.projections[0].get_weights()])
        d.compile(keras.optimizers.SGD(0.05))
        targets = d.precompute(x, y) if precompute else y
        if precompute:
            assert set(targets) == {"labels", "teacher_logits", "teacher_hint_0"}
            assert targets["teacher_hint_0"].shape == (len(x), 128)
        history = d.fit(x, targets, epochs=2, batch_size=32, shuffle=False, verbose=0)
        runs.append((history.history["loss"], d.student.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_distilling_while_pruning(digits, trained_cnn, student_init):
    (x, y), (xt, yt) = digits
    prune = tfmot.sparsity.keras
    schedule = prune.ConstantSparsity(0.5, begin_step=0, frequency=1)
    student = prune.prune_low_magnitude(_student(student_init), pruning_schedule=schedule)
    d = Distiller(student, trained_cnn, hints={"dense": "dense"})  # found inside its wrapper
    assert d.student_from_logits is False  # the softmax is found behind the wrappers
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    d.fit(x, d.precompute(x, y), epochs=4, verbose=0, callbacks=[prune.UpdatePruningStep()])
    stripped = prune.strip_pruning(d.student)
    for name in ("conv2", "dense"):
        kernel = stripped.get_layer(name).kernel.numpy()
        assert abs(np.mean(kernel == 0) - 0.5) < 0.02, name
    assert keras_accuracy(stripped, xt, yt) > 0.8


@pytest.mark.slow
def test_distilling_a_quantization_aware_student(digits, trained_cnn, student_init):
    (x, y), (xt, yt) = digits
    x, y = x[:768], y[:768]
    student = tfmot.quantization.keras.quantize_model(_student(student_init))
    d = Distiller(student, trained_cnn)
    assert d.student_from_logits is False  # the softmax inside its QuantizeWrapper is found
    d.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    d.fit(x, d.precompute(x, y), epochs=3, verbose=0)
    accuracy = keras_accuracy(d.student, xt, yt)
    report = validate(convert(d.student, "int8", representative_data=x), xt, yt, latency_runs=0)
    assert accuracy > 0.8 and abs(report.accuracy - accuracy) <= 0.02


def test_config_round_trip_keeps_arguments_and_outputs(digits, trained_cnn, student_init,
                                                       tmp_path):
    (_, _), (xt, _) = digits
    d = Distiller(_student(student_init), trained_cnn, alpha=0.25, temperature=6.0,
                  hints=[("dense", "dense")], hint_weight=0.5, pseudo_labels="soft",
                  student_loss=keras.losses.SparseCategoricalCrossentropy())
    config = d.get_config()
    json.dumps(config)  # plain data
    with keras.utils.custom_object_scope({"Distiller": Distiller}):
        again = Distiller.from_config(config)
    assert (again.alpha, again.temperature, again.hints, again.hint_weight,
            again.pseudo_labels) == (0.25, 6.0, [("dense", "dense")], 0.5, "soft")
    again_config = again.get_config()
    for key, value in config.items():
        if key.endswith("_loss"):
            assert again_config[key]["class_name"] == value["class_name"], key
        else:
            assert again_config[key] == value, key
    again.set_weights(d.get_weights())
    np.testing.assert_allclose(again.predict(xt, verbose=0), d.predict(xt, verbose=0),
                               atol=1e-6)
    path = str(tmp_path / "distiller.keras")
    d.save(path)
    with keras.utils.custom_object_scope({"Distiller": Distiller}):
        loaded = keras.models.load_model(path)
    assert loaded.alpha == 0.25 and loaded.temperature == 6.0
    np.testing.assert_allclose(loaded.predict(xt, verbose=0), d.predict(xt, verbose=0),
                               atol=1e-6)


_MIRRORED = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    import tfcompress
    from tfcompress import keras
    from tfcompress.training.distillation import Distiller
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    (x, y), _ = tfcompress.data.load_digits()
    x, y = x[:512], y[:512]
    keras.utils.set_random_seed(0)
    weights = [tfcompress.models.digits_cnn(width=w).get_weights() for w in (0.5, 0.25)]

    def run(strategy):
        with strategy.scope():
            teacher = tfcompress.models.digits_cnn(width=0.5)
            student = tfcompress.models.digits_cnn(width=0.25)
            teacher.set_weights(weights[0])
            student.set_weights(weights[1])
            d = Distiller(student, teacher, hints={"dense": "dense"})
            d.projections[0].set_weights([np.full_like(w, 0.02)
                                          for w in d.projections[0].get_weights()])
            d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
        h = d.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
        return strategy.num_replicas_in_sync, h.history["loss"], d.student.get_weights()

    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    single = run(tf.distribute.get_strategy())
    diff = max(float(np.abs(a - b).max()) for a, b in zip(mirrored[2], single[2]))
    print("RESULT " + json.dumps({"replicas": mirrored[0], "loss": mirrored[1],
                                  "single_loss": single[1], "max_weight_diff": diff}))
""")


@pytest.mark.slow
def test_runs_under_mirrored_strategy_on_two_cpus():
    """Two logical CPUs (set before TF starts, so in a child process): the same training as on
    one device, i.e. losses and gradients are scaled right across replicas."""
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", ".."))
    done = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True,
                          timeout=300, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    assert np.all(np.isfinite(result["loss"])) and result["loss"][-1] < result["loss"][0]
    np.testing.assert_allclose(result["loss"], result["single_loss"], rtol=1e-4)
    assert result["max_weight_diff"] < 1e-4


@pytest.mark.slow
def test_recipe_stage_reports_teacher_scratch_and_distilled(tmp_path):
    config = tfcompress.default_config()
    config.data.limit = 300
    config.train.epochs = 2
    config.stages = ("distill",)
    config.distill.epochs = 2
    config.distill.scratch = True
    config.convert.modes = ("int8",)
    config.convert.representative_samples = 16
    config.validate.latency_runs = 0
    report = tfcompress.run_recipe(config, str(tmp_path))
    stats = report["stages"]["distill"]
    assert stats["teacher_params"] == 151306 and stats["param_ratio"] >= 8
    n_val = report["splits"]["validation"]
    for key in ("teacher_accuracy", "scratch_accuracy", "distilled_accuracy"):
        # an accuracy on the validation split: a whole number of its images
        assert stats[key] * n_val == pytest.approx(round(stats[key] * n_val), abs=1e-6)
    assert stats["teacher_accuracy"] == pytest.approx(report["keras_accuracy"]["baseline"])
    assert abs(stats["distilled_accuracy"] - report["keras_accuracy"]["final"]) < 1e-9
    text = (tmp_path / "report.md").read_text()
    for row in stats["models"]:  # the three models side by side
        assert f"| {row['model']} | {row['parameters']:,} | {row['validation accuracy']:.4f} |" in text
    assert [r["model"] for r in stats["models"]] == [
        "teacher", "student from scratch (labels only)", "distilled student"]


def _fixed_logits_model(classes: int, bias) -> keras.Model:
    """x (4 features) -> Dense ``logits`` with a zero kernel and ``bias`` -> softmax."""
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(classes, kernel_initializer="zeros", name="logits")
    outputs = keras.layers.Activation("softmax")(dense(inputs))
    model = keras.Model(inputs, outputs)
    dense.bias.assign(np.asarray(bias, np.float32))
    return model


@pytest.mark.parametrize("classes", [6, 12])
@pytest.mark.parametrize("settings", [{}, dict(alpha=0.1, temperature=4.0)],
                         ids=["defaults", "former_defaults"])
def test_gradient_composition_and_the_label_against_a_wrong_teacher(classes, settings):
    """One SGD step from a uniform student, on examples a confident teacher (logit gap 9)
    gets wrong: the step on the student's logits is alpha * (p - onehot(y)) + (1 - alpha) * T
    * (softmax(s / T) - softmax(t / T)) (the T^2-scaled KL's gradient), and with the defaults
    the label outweighs the teacher (the true class's logit rises); with the former (0.1, 4)
    the teacher won, which is how a keyword student learned its teacher's mistakes."""
    teacher = _fixed_logits_model(classes, [9.0] + [0.0] * (classes - 1))
    student = _fixed_logits_model(classes, [0.0] * classes)
    d = Distiller(student, teacher, **settings)
    d.compile(keras.optimizers.SGD(0.1))
    x, y = np.ones((8, 4), np.float32), np.full(8, 1, np.int32)  # the teacher says class 0
    d.train_on_batch(x, y)
    step = student.get_layer("logits").bias.numpy() / -0.1  # the gradient on the logits
    alpha, temp = d.alpha, d.temperature
    uniform = np.full(classes, 1.0 / classes)
    soft_teacher = np.exp(np.r_[9.0, np.zeros(classes - 1)] / temp)
    soft_teacher /= soft_teacher.sum()
    expected = alpha * (uniform - np.eye(classes)[1]) + (1 - alpha) * temp * (
        uniform - soft_teacher)
    np.testing.assert_allclose(step, expected, rtol=1e-3, atol=1e-6)
    label_wins = step[1] < 0
    assert label_wins == (not settings), (step[1], alpha, temp)
