"""Tasks in recipes and the search: float targets for regression, integer inputs kept integer.

A tiny Conv1D regression model (tests/model_kinds.py) with its data in an ``.npz`` runs as a
recipe (prune -> convert -> validate) and as the search smoke: rows report R^2/MSE, never
accuracy or agreement, and the difference to the baseline is in R^2 points.
"""

import json
import os

import numpy as np
import pytest

import tfcompress
from tfcompress import data, errors, models
import tfcompress.pipeline.recipe as recipe
import tfcompress.pipeline.search as search_lib
import tfcompress.pipeline.stats as stats
from tfcompress.configs import common
from tests import model_kinds


@pytest.fixture(scope="module")
def regression_files(tmp_path_factory):
    """(model path, npz path) of the trained tiny Conv1D regression model and its data."""
    folder = tmp_path_factory.mktemp("regression")
    model, (x, y), (x_test, y_test) = model_kinds.trained("regression")
    path = os.path.join(folder, "regression.keras")
    models.save_model(model, path)
    npz = os.path.join(folder, "signals.npz")
    np.savez(npz, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    return path, npz


def _recipe(model_path: str, npz: str, stages=("prune",)):
    config = recipe.default_config()
    config.data.name, config.data.path = "npz", npz
    config.model.path = model_path
    config.stages = stages
    config.convert.modes = ("float32", "int8")
    common.smoke(config)
    config.data.limit = 0  # 450 training signals: R^2 on a validation split of 68
    config.validate.latency_runs = 0
    config.validate.compiled_model = ()
    config.prune.target_sparsity, config.prune.epochs = 0.5, 3
    config.prune.learning_rate = 1e-3
    return config


def test_check_data_takes_float_targets_only_for_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.normal(size=40)
    splits = [(x, y), (x[:10], y[:10])]
    with pytest.raises(errors.DataError, match="not whole numbers"):
        data.check_data(splits, names=("train", "test"))
    (_, got), _ = data.check_data(splits, names=("train", "test"), task="regression")
    assert got.dtype == np.float32 and np.allclose(got, y)
    with pytest.raises(errors.DataError, match="NaN, Inf"):
        data.check_data([(x, np.where(y > 1, np.inf, y))], names=("train",), task="regression")
    # A regression validation split is a random share, not one sample per distinct value.
    train, val = data.split_validation((x, y.astype(np.float32)), 0.25)
    assert (len(train[0]), len(val[0])) == (30, 10)


def test_integer_inputs_stay_integers():
    ids = np.random.default_rng(0).integers(0, 300, (30, 8)).astype(np.int64)
    y = np.arange(30) % 3
    (x, _), = data.check_data([(ids, y)], names=("train",))
    assert x.dtype == np.int32 and np.array_equal(x, ids)
    config = recipe.default_config()
    config.data.name, config.data.limit = "text", 64
    splits = recipe.load_data(recipe.check_config(config))
    assert {x.dtype for x, _ in splits} == {np.dtype(np.int32)}


def test_task_is_inferred_and_checked(regression_files):
    path, npz = regression_files
    config = recipe.check_config(_recipe(path, npz))
    assert recipe.resolve_task(config) == "regression"
    config.data.task = "classification"  # float targets as class labels: refused
    with pytest.raises(errors.DataError, match="not whole numbers"):
        recipe.load_data(config)
    # Whole-number targets of a one-output model: regression, also without data.task.
    whole = os.path.join(os.path.dirname(npz), "whole.npz")
    with np.load(npz) as f:
        np.savez(whole, **{k: (np.round(f[k] * 4) if k.startswith("y") else f[k]) for k in f})
    config.data.path, config.data.task = whole, ""
    assert recipe.resolve_task(config) == "classification"  # labels alone: class indices
    assert recipe.resolve_task(config, models.load_model(path)) == "regression"
    _, y = recipe.load_data(config, "regression").train
    assert y.dtype == np.float32 and len(np.unique(y)) > 2
    bad = _recipe("", npz)
    bad.data.task = "regression"
    with pytest.raises(errors.ConfigError, match="model.path is empty"):
        recipe.check_config(bad)
    bad.data.task = "ranking"
    with pytest.raises(errors.ConfigError, match="ranking"):
        recipe.check_config(bad)


def test_paired_regression_difference_is_the_r2_difference():
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    a = t + rng.normal(0, 0.1, 200)
    b = t + rng.normal(0, 0.3, 200)
    d = stats.paired_regression_difference(a, b, t)
    r2 = lambda o: 1 - np.mean((o - t) ** 2) / np.var(t)  # noqa: E731
    assert d["difference_points"] == pytest.approx((r2(b) - r2(a)) * 100)
    assert d["low_points"] < d["difference_points"] < d["high_points"] < 0
    assert d["mse_difference"] == pytest.approx(np.mean((b - t) ** 2) - np.mean((a - t) ** 2))
    assert stats.drop_upper_bound(d, 0.9) > -d["difference_points"]


def test_regression_recipe_reports_r2_not_accuracy(regression_files, tmp_path):
    path, npz = regression_files
    result = recipe.run(_recipe(path, npz), str(tmp_path))
    report = result.to_dict()
    assert report["task"] == "regression" and "keras_accuracy" not in report
    assert report["keras_r2"]["baseline"] > 0.8, report["keras_r2"]
    stage = report["stages"]["prune"]
    assert "r2_after" in stage and not any("accuracy" in k for k in stage)
    for row in report["formats"]:
        assert "accuracy" not in row and "agreement" not in row, row["format"]
        assert "accuracy" not in row["validation"]
        assert row["r2"] > 0.5 and row["mse"] > 0, (row["format"], row["r2"], stage)
        assert set(row["validation"]) >= {"r2", "mse", "mae", "r2_drop"}
        vs = row["vs_baseline"]
        assert vs["metric"] == "r2" and vs["low_points"] <= vs["difference_points"] <= vs[
            "high_points"]
    # The float32 row of the pruned model against the baseline: its R^2 difference.
    base, pruned = result.row("baseline float32"), result.row("float32")
    assert pruned.vs_baseline["difference_points"] == pytest.approx(
        (pruned.test["r2"] - base.test["r2"]) * 100, abs=1e-6)
    text = open(tmp_path / "report.md").read()
    assert "test R^2" in text and "test accuracy" not in text and "R^2 points" in text


def test_regression_search_smoke_reports_r2(regression_files, tmp_path):
    path, npz = regression_files
    config = tfcompress.configs.load("digits_search:smoke")
    config.recipe = _recipe(path, npz, stages=())
    config.max_drop = 5.0
    summary = search_lib.search(config, str(tmp_path))
    assert summary["metric"] == "r2" and "accuracy_floor" not in summary
    assert summary["baseline"]["r2"] > 0.8 and "accuracy" not in summary["baseline"]
    assert summary["states"].get("COMPLETE", 0) >= 1, summary["states"]
    for r in summary["front"]:
        assert r["r2"] is not None and "accuracy" not in r, r
    with open(tmp_path / "trials.jsonl") as f:
        records = [json.loads(line) for line in f]
    done = [r for r in records if r["state"] == "COMPLETE"]
    assert done and all(0.5 < r["r2"] <= 1 for r in done)
    text = open(tmp_path / "report.md").read()
    assert "R^2 points" in text and "accuracy" not in text.replace("accuracy_", "")


def test_android_bundle_of_a_token_id_model(tmp_path):
    import tfcompress.export.android as android
    from tfcompress.export.conversion import convert

    model, (x, _), _ = model_kinds.trained("text")
    flatbuffer = convert(model, "int8", representative_data=x, representative_samples=16)
    sidecar = android.export_android(flatbuffer, str(tmp_path / "app"), labels=("a", "b", "c"))
    with open(tmp_path / "app" / "model.json") as f:
        saved = json.load(f)
    assert saved["inputs"][0]["dtype"] == "int32" == sidecar["inputs"][0]["dtype"]
    assert "not normalized" in saved["input_normalization"]["formula"]
    readme = open(tmp_path / "app" / "README.md").read()
    assert "inputBuffers[0].writeInt(tokens)" in readme  # CompiledModel
    assert "input.putInt(tokens[i])" in readme  # the Interpreter fallback
    assert f"allocateDirect({model_kinds.SEQ_LEN * 4})" in readme


def _binary_files(folder):
    """(model path, npz path): a tiny Conv1D with one sigmoid unit, trained on 0/1 labels
    (whether a sine's amplitude is above 0.6)."""
    from tfcompress import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    amp, freq = rng.uniform(0.2, 1.0, 600), rng.uniform(1.0, 3.0, 600)
    t = np.linspace(0, 2 * np.pi, 16)
    x = (amp[:, None] * np.sin(freq[:, None] * t))[..., None].astype(np.float32)
    y = (amp > 0.6).astype(np.int32)
    L = keras.layers
    inputs = keras.Input((16, 1), name="signal")
    h = L.Conv1D(8, 3, activation="relu", name="conv1d")(inputs)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    model = keras.Model(inputs, L.Dense(1, activation="sigmoid", name="positive")(h))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", ["accuracy"])
    model.fit(x[:450], y[:450], epochs=30, batch_size=32, verbose=0)
    path, npz = os.path.join(folder, "binary.keras"), os.path.join(folder, "binary.npz")
    models.save_model(model, path)
    np.savez(npz, x_train=x[:450], y_train=y[:450], x_test=x[450:], y_test=y[450:])
    return path, npz


def test_binary_recipe_reports_accuracy_at_the_threshold(tmp_path):
    path, npz = _binary_files(str(tmp_path))
    config = _recipe(path, npz)
    checked = recipe.check_config(config)
    assert recipe.resolve_task(checked) == "classification"  # 0/1 labels alone
    assert recipe.resolve_task(checked, models.load_model(path)) == "binary"  # + one sigmoid
    result = recipe.run(config, str(tmp_path / "work"))
    report = result.to_dict()
    assert report["task"] == "binary" and report["keras_accuracy"]["baseline"] > 0.8
    assert "accuracy_after" in report["stages"]["prune"]
    with np.load(npz) as f:
        x_test, y_test = f["x_test"], f["y_test"]
    base = models.load_model(path).predict(x_test, verbose=0)[:, 0] > 0.5
    for mode in ("float32", "int8"):  # the pruned model's flatbuffers
        row = result.row(mode)
        with open(row.path, "rb") as f:
            out = tfcompress.export.validation.predict(f.read(), x_test)[:, 0]
        # measured at the 0.5 threshold (an argmax of one column would call every sample 0)
        assert row.test["accuracy"] == pytest.approx(np.mean((out > 0.5) == y_test)), mode
        assert row.test["accuracy"] > 0.8 and row.test["agreement"] > 0.8, mode
        assert row.vs_baseline["difference_points"] == pytest.approx(
            (np.mean((out > 0.5) == y_test) - np.mean(base == y_test)) * 100, abs=1e-6)


def test_recipe_refuses_a_two_output_model_in_one_line(regression_files, tmp_path):
    model = model_kinds.two_output()[0]
    path = str(tmp_path / "two.keras")
    models.save_model(model, path)
    with pytest.raises(errors.ConfigError, match="2 outputs .class, value.") as e:
        recipe.run(_recipe(path, regression_files[1]), str(tmp_path / "work"))
    assert len(str(e.value).splitlines()) == 1 and "task=" in str(e.value)
