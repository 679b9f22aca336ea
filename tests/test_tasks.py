"""tfcompress.tasks: the task inferred from labels and outputs, and the one metric helper."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, tasks

RNG = np.random.default_rng(0)
SOFTMAX = RNG.dirichlet(np.ones(4), 50).astype(np.float32)
SIGMOID = RNG.uniform(0, 1, (50, 3)).astype(np.float32)


@pytest.mark.parametrize("y, outputs, expected", [
    (RNG.integers(0, 4, 50), SOFTMAX, "classification"),              # integer labels
    (np.eye(4)[RNG.integers(0, 4, 50)], SOFTMAX, "classification"),   # one-hot rows
    (RNG.integers(0, 2, (50, 3)), SIGMOID, "binary"),                 # multi-label
    (RNG.integers(0, 2, 50), SIGMOID[:, :1], "binary"),               # one sigmoid
    (RNG.normal(size=(50, 1)), RNG.normal(size=(50, 1)), "regression"),
    (RNG.integers(3, 9, (50, 1)).astype(np.float32), RNG.normal(size=(50, 1)), "regression"),
    (RNG.integers(0, 4, (50, 7)), RNG.dirichlet(np.ones(4), (50, 7)), "classification"),  # 3-D
    (None, SOFTMAX, "classification"),
    (None, RNG.normal(size=(50, 4)), "classification"),               # logits
    (None, SIGMOID, "binary"),
    (None, RNG.normal(size=(50, 1)) * 5, "regression"),
])
def test_infer(y, outputs, expected):
    assert tasks.infer(y, outputs) == expected


def test_infer_is_overridable_and_checked():
    assert tasks.infer(RNG.integers(0, 4, 50), SOFTMAX, task="regression") == "regression"
    with pytest.raises(errors.ConfigError, match=r"unknown task 'detection'|task 'detection'"):
        tasks.infer(None, SOFTMAX, task="detection")
    with pytest.raises(errors.DataError, match="without labels or outputs"):
        tasks.infer()


def test_top1_and_agreement_match_the_argmax_they_replace():
    y = RNG.integers(0, 4, 50)
    assert tasks.top1(SOFTMAX, y) == float(np.mean(SOFTMAX.argmax(-1) == y))
    assert tasks.top1(SOFTMAX, np.eye(4)[y]) == tasks.top1(SOFTMAX, y)
    assert tasks.top1(SOFTMAX, y[:, None]) == tasks.top1(SOFTMAX, y)
    other = SOFTMAX[::-1]
    assert tasks.agreement(SOFTMAX, other) == float(
        np.mean(SOFTMAX.argmax(-1) == other.argmax(-1)))
    with pytest.raises(errors.DataError, match=r"labels of shape \(50, 3\)"):
        tasks.top1(SOFTMAX, RNG.integers(0, 4, (50, 3)))
    with pytest.raises(errors.DataError, match="not defined for task 'regression'"):
        tasks.agreement(SOFTMAX, other, "regression")


def test_regression_metrics_are_mse_mae_r2_and_never_accuracy():
    y = RNG.normal(size=(200, 1))
    pred = y + RNG.normal(scale=0.1, size=y.shape)
    found = tasks.metrics(pred, "regression", y, reference=y)
    assert found["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)))
    assert found["mae"] == pytest.approx(float(np.mean(np.abs(pred - y))))
    assert found["r2"] == pytest.approx(1 - found["mse"] / float(np.var(y)))
    assert found["reference_r2"] == 1.0 and found["r2_drop"] == pytest.approx(1 - found["r2"])
    assert "accuracy" not in found and "agreement" not in found
    assert tasks.score(pred, y, "regression") == found["r2"]


def test_classification_metrics_and_binary_thresholds():
    y = RNG.integers(0, 4, 50)
    found = tasks.metrics(SOFTMAX, "classification", y, reference=SOFTMAX)
    assert found["agreement"] == 1.0 and found["max_abs_diff"] == 0.0
    assert found["accuracy"] == tasks.top1(SOFTMAX, y) and "r2" not in found
    labels = (SIGMOID > 0.5).astype(int)
    labels[0] = 1 - labels[0]  # three wrong labels of 150
    assert tasks.metrics(SIGMOID, "binary", labels)["accuracy"] == pytest.approx(147 / 150)


def test_decided_alike_is_per_sample_or_per_label():
    ref = SOFTMAX
    flipped = ref.copy()
    flipped[:10] = flipped[:10, ::-1]
    alike = tasks.decided_alike(flipped, ref, "classification")
    assert alike.shape == (len(ref),)
    assert tasks.agreement(flipped, ref) == pytest.approx(np.mean(alike))
    assert tasks.decided_alike(SIGMOID, SIGMOID, "binary").shape == np.shape(SIGMOID)
    with pytest.raises(errors.DataError, match="regression"):
        tasks.decided_alike(ref, ref, "regression")


def test_per_output():
    assert tasks.per_output(None, 2) == [None, None]
    assert tasks.per_output("regression", 2) == ["regression", "regression"]
    assert tasks.per_output(["classification", None], 2) == ["classification", None]
    with pytest.raises(errors.ConfigError, match="names 1 tasks for 2 outputs"):
        tasks.per_output(["classification"], 2)


def test_the_distiller_distills_a_regression_student_by_mse():
    import os
    import sys

    import tfcompress
    from tfcompress import keras

    sys.path.insert(0, os.path.dirname(__file__))
    import model_kinds

    teacher, (x, y), (x_test, y_test) = model_kinds.trained("regression")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 1))
    h = keras.layers.Conv1D(4, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling1D()(h)
    student = keras.Model(inputs, keras.layers.Dense(1)(h))
    distiller = tfcompress.Distiller(student, teacher, alpha=0.5)
    assert distiller.task == "regression"
    distiller.compile(keras.optimizers.Adam(1e-2), metrics=["mae"])
    history = distiller.fit(x, y, epochs=20, batch_size=32, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0] / 5
    r2 = tasks.regression(student.predict(x_test, verbose=0), y_test)["r2"]
    assert r2 > 0.8, r2
    assert tfcompress.Distiller.from_config(distiller.get_config()).task == "regression"


def test_an_int8_softmax_without_labels_is_judged_as_classification(trained_cnn, digits):
    """An int8 softmax's rows do not sum to 1 exactly: the task comes from the reference's float
    outputs, so agreement is top-1 (not a per-class 0.5 threshold, as for binary outputs)."""
    (x, _), (x_test, _) = digits
    fb = tfcompress.convert(trained_cnn, "int8", representative_data=x[:200])
    quantized = tfcompress.export.validation.predict(fb, x_test[:100])
    assert not np.allclose(quantized.sum(-1), 1.0, atol=1e-3)  # the case this test is about
    report = tfcompress.validate(fb, x_test[:100], reference=trained_cnn).to_dict()
    assert report["task"] == "classification"
    top1 = np.mean(quantized.argmax(-1) == trained_cnn.predict(x_test[:100], verbose=0).argmax(-1))
    assert report["agreement"] == pytest.approx(top1)
