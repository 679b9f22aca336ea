"""Bad input of every kind: refused with one TfcompressError naming the value, before training or
native code (the API, milliseconds each), or exit status 2 with one line (a few CLI runs).

Each case records how long its error took (``ERROR_SECONDS``, printed at the end with -s).
"""

import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from ml_collections import ConfigDict

import tfcompress
from tfcompress import _io, data, errors, keras, models
from tfcompress.pipeline import preflight
from tfcompress.pipeline import recipe
from tfcompress.pipeline import search as study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRASH = os.path.join(ROOT, "tests", "data", "crash.tflite")
ERROR_SECONDS = {}


def _raises(case, error, match, fn):
    start = time.perf_counter()
    with pytest.raises(error, match=match) as info:
        fn()
    ERROR_SECONDS[case] = time.perf_counter() - start
    assert isinstance(info.value, errors.TfcompressError)
    assert "\n" not in str(info.value)  # one line
    return info.value


@pytest.fixture(scope="module")
def xy():
    (x, y), _ = data.load_digits()
    return x[:60], y[:60]


def _splits(xy, **change):
    x, y = xy
    parts = {"train": (x[:40], y[:40]), "validation": (x[40:50], y[40:50]),
             "test": (x[50:], y[50:])}
    for name, fn in change.items():
        parts[name] = fn(*parts[name])
    return data.DataSplits(**parts)


def _with(x, index, value):
    x = np.array(x, copy=True)
    x.reshape(-1)[index] = value
    return x


DATA_CASES = {
    "nan images": (dict(train=lambda x, y: (_with(x, 5, np.nan), y)), "train images holds 1 NaN"),
    "inf images": (dict(test=lambda x, y: (_with(x, 0, np.inf), y)), "test images holds 0 NaN and 1 Inf"),
    "float labels": (dict(train=lambda x, y: (x, y / 10)), r"train labels: \d+ labels are not whole"),
    "negative label": (dict(validation=lambda x, y: (x, _with(y, 2, -1))), "validation split has label -1"),
    "string labels": (dict(train=lambda x, y: (x, y.astype(str))), "train labels: labels have dtype <U"),
    "object images": (dict(train=lambda x, y: (x.astype(object), y)), "train images has dtype object"),
    "empty split": (dict(test=lambda x, y: (x[:0], y[:0])), r"test images has shape \(0, 8, 8, 1\)"),
    "length mismatch": (dict(train=lambda x, y: (x, y[:-3])), "train split has 40 images but 37 labels"),
    "shape mismatch": (dict(test=lambda x, y: (x[:, :7], y)), r"test split has sample shape \(7, 8, 1\)"),
    "one class": (dict(train=lambda x, y: (x, np.zeros_like(y))), "train labels hold one class"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_is_refused(xy, case):
    change, match = DATA_CASES[case]
    _raises(case, errors.DataError, match, lambda: data.check_data(_splits(xy, **change)))


def test_labels_beyond_the_model_and_model_shape(xy):
    _raises("label >= classes", errors.DataError, r"label 9; accepted: class indices 0\.\.4",
            lambda: data.check_data(_splits(xy), num_classes=5))
    _raises("model input shape", errors.DataError, r"sample shape \(8, 8, 1\).*expects \(9, 9, 1\)",
            lambda: data.check_data(_splits(xy), input_shape=(None, 9, 9, 1)))
    good = data.check_data(_splits(xy), num_classes=10, input_shape=(None, 8, 8, 1))
    assert [len(y) for _, y in good] == [40, 10, 10] and good.train[1].dtype == np.int32


def test_whole_float_labels_and_pixel_warning(xy):
    x, y = xy
    splits = data.check_data([(x, y.astype(np.float64))], names=("train",))
    np.testing.assert_array_equal(splits[0][1], y)  # 3.0 -> 3: accepted, nothing truncated
    with pytest.warns(UserWarning, match=r"images range 0\.\.255 \(pixels\?\)"):
        data.check_data([(np.round(x * 255), y)], names=("train",))
    with pytest.warns(UserWarning, match=r"images range 0\.\.255 \(pixels\?\)"):
        data.check_data([(np.round(x * 255).astype(np.uint8), y)], names=("train",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.check_data([(x, y)], names=("train",))  # [0, 1] images: no warning


def test_bad_npz_files(tmp_path, xy):
    x, y = xy
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive at all" * 10)
    _raises("garbage npz", errors.DataError, "is not an .npz archive", lambda: data.load_npz(str(garbage)))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([x[0], "a"], dtype=object), y_train=y[:2],
             x_test=x[:2], y_test=y[:2])
    _raises("object npz", errors.DataError, "object arrays are refused",
            lambda: data.load_npz(str(objects)))
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=x, y_train=y / 10, x_test=x, y_test=y)
    _raises("float labels npz", errors.DataError, "not whole numbers", lambda: data.load_npz(str(floats)))
    half = tmp_path / "half.npz"
    np.savez(half, x_train=x, y_train=y, x_test=x, y_test=y, x_val=x[:10])
    _raises("x_val without y_val", errors.DataError, "holds x_val without y_val; accepted: both",
            lambda: data.npz_validation(str(half)))


def test_data_checked_in_float32_and_labels_before_any_conversion(xy):
    """float64 1e300 is Inf in float32 (the converter's calibration crashed on it); labels are
    checked before they are converted: no argmax of non-one-hot rows, no int32 wrap-around."""
    x, y = xy
    huge = _with(x.astype(np.float64), 7, 1e300)
    _raises("float64 1e300", errors.DataError, r"train images holds 0 NaN and 0 Inf values and 1 "
            r"beyond float32's range \(e.g. 1e\+300",
            lambda: data.check_data(_splits((huge, y))))
    model = models.digits_cnn(width=0.25)
    _raises("float64 1e300 int8", errors.DataError, r"representative_data holds .*(1 Inf|1 beyond)",
            lambda: tfcompress.convert(model, "int8", representative_data=huge))
    one_hot = np.eye(10, dtype=np.float32)[y]
    np.testing.assert_array_equal(data.labels(one_hot), y)  # real one-hot rows: their index
    _raises("all-zero one-hot", errors.DataError, r"1 one-hot rows are all zero \(e.g. row 3\)",
            lambda: data.labels(_with(one_hot, slice(30, 40), 0)))
    multi = one_hot.copy()
    multi[5, (y[5] + 1) % 10] = 1
    _raises("multi-label rows", errors.DataError, r"shape \(60, 10\) are not one-hot rows \(row 5",
            lambda: data.labels(multi))
    _raises("two-column targets", errors.DataError, "are not one-hot rows",
            lambda: data.labels(np.stack([y + 2, y + 2], axis=1)))
    wrapped = y.astype(np.uint64)
    wrapped[0] = 2**32 + 3
    _raises("label 2**32+3", errors.DataError, "label 4294967299 is beyond what int32 holds",
            lambda: data.labels(wrapped))
    _raises("one-class validation", errors.DataError,
            r"validation labels hold one class \(0\) in 10 samples",
            lambda: data.check_data(_splits(xy, validation=lambda x, y: (x, np.zeros_like(y)))))
    _raises("validation fraction '0.2'", errors.DataError, r"validation_fraction='0.2'; accepted: a number",
            lambda: data.split_validation((x, y), "0.2"))
    train, val = data.split_validation((x, y), 0.2)
    assert len(val[1]) + len(train[1]) == 60 and len(np.unique(val[1])) > 1


def _image_folder(root, extra):
    import tensorflow as tf

    png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    files = {f"{c}/{i}.png": png for c in "ab" for i in range(4)} if extra is not None else {}
    files.update(extra or {})
    for rel, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(content)
    return str(root)


@pytest.mark.parametrize("case, files, size, match", [
    ("corrupt jpeg", {"a/bad.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 20}, (4, 4),
     r"'a/bad.jpg' is not a readable image \(.*JPEG"),
    ("text named png", {"b/notes.png": b"not an image"}, (4, 4),
     r"'b/notes.png' is not a readable image \(Unknown image file format"),
    ("one image", None, (4, 4), r"holds 1 image .*accepted: at least 5 images"),
    ("no images", {"a/readme.txt": b"x"}, (4, 4), r"holds 0 images"),
    ("image_size (0, 0)", {}, (0, 0), r"image_size=\(0, 0\); accepted: \(height, width\)"),
])
def test_image_folder_problems_are_one_line(tmp_path, case, files, size, match):
    import tensorflow as tf

    if case == "one image":
        files = {"a/0.png": tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()}
        folder = _image_folder(tmp_path / "f", None)
        for rel, content in files.items():
            os.makedirs(tmp_path / "f" / "a", exist_ok=True)
            (tmp_path / "f" / rel).write_bytes(content)
    elif case == "no images":
        folder = str(tmp_path / "f")
        os.makedirs(tmp_path / "f" / "a")
        (tmp_path / "f" / "a" / "readme.txt").write_bytes(b"x")
    else:
        folder = _image_folder(tmp_path / "f", files)
    _raises(case, errors.DataError, match, lambda: data.load_image_folder(folder, size))


@pytest.mark.parametrize("field, value, match", [
    ("train.epochs", -1, r"train.epochs=-1; accepted: a number >= 0"),
    ("train.epochs", 0, r"train.epochs=0; accepted: >= 1 \(the reference model"),
    ("train.batch_size", 0, r"train.batch_size=0; accepted: a number >= 1"),
    ("train.learning_rate", 0.0, r"train.learning_rate=0.0; accepted: a number > 0"),
    ("data.limit", -5, r"data.limit=-5; accepted: a number >= 0"),
    ("validate.latency_runs", -1, r"validate.latency_runs=-1; accepted: a number >= 0"),
    ("validate.num_threads", 0, r"validate.num_threads=0"),
    ("convert.modes", (), r"convert.modes is empty"),
    ("convert.representative_samples", 0, r"convert.representative_samples=0"),
    ("prune.epochs", -2, r"prune.epochs=-2; accepted: a number >= 0"),
    ("data.validation_fraction", 1.5, r"data.validation_fraction=1.5"),
    ("model.width", 0.0, r"model.width=0.0"),
    # each stage's technique refuses these before a model is seen (its check_values)
    ("prune.target_sparsity", 1.5, r"prune section: target_sparsity=1.5; accepted: a number in"),
    ("prune.schedule", "bogus", r"prune section: unknown pruning schedule 'bogus'; accepted: "),
    ("prune.m_by_n", "bogus", r"prune section: m_by_n='bogus'; accepted: \(m, n\)"),
    ("cluster.init", "bogus", r"cluster section: unknown cluster init 'bogus'; accepted: kmeans"),
    ("cluster.number_of_clusters", 0,
     r"cluster section: number_of_clusters=0; accepted: an integer >= 3 with preserve_sparsity"),
    ("validate.compiled_model", ("bogus",),
     r"unknown validate.compiled_model kernel mode 'bogus'; accepted: xnnpack, reference"),
])
def test_config_values_out_of_range(field, value, match):
    section, key = field.split(".")
    override = {section: {key: value}}
    if section in recipe.STAGES:
        override["stages"] = (section,)
    _raises(field, errors.ConfigError, match, lambda: recipe.check_config(ConfigDict(override)))


def test_stage_epochs_zero_and_user_model_without_training_are_accepted():
    config = recipe.check_config(ConfigDict({"stages": ("prune",), "prune": {"epochs": 0}}))
    assert config.prune.epochs == 0
    config = recipe.check_config(ConfigDict({"model": {"path": "m.keras"}, "train": {"epochs": 0}}))
    assert config.train.epochs == 0


def test_run_recipe_takes_a_recipe_file_or_says_what_it_accepts(tmp_path):
    config = tfcompress.configs.load(os.path.join(tfcompress.configs.HERE, "digits.py:smoke"))
    assert config.train.epochs == 1 and config.data.limit == 256
    _raises("recipe of type int", errors.ConfigError, "recipe of type int; accepted: a ConfigDict",
            lambda: tfcompress.run_recipe(123, str(tmp_path)))
    _raises("recipe not a file", errors.ConfigError, "is neither a bundled recipe nor",
            lambda: tfcompress.run_recipe("configs/nope.py", str(tmp_path)))
    # A recipe path is loaded: the run gets as far as its workdir (a file here), before training.
    blocker = tmp_path / "file"
    blocker.write_text("")
    _raises("workdir is a file", errors.ConfigError, "is not a writable folder",
            lambda: tfcompress.run_recipe("digits", str(blocker)))


def test_user_model_problems_come_before_training(tmp_path, monkeypatch, xy):
    monkeypatch.setattr(tfcompress.pipeline.stages.Context, "fit", _no_training)
    config = ConfigDict({"data": {"limit": 200}, "model": {"path": str(tmp_path / "none.keras")}})
    _raises("model.path missing", errors.ModelError, "none.keras' does not exist",
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))
    five = models.digits_cnn(num_classes=5, width=0.25)
    models.save_model(five, str(tmp_path / "five.keras"))
    config.model.path = str(tmp_path / "five.keras")
    _raises("labels beyond the user model", errors.DataError, r"label \d; accepted: class indices 0\.\.4 "
            r"\(the model has 5 outputs\)", lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))


def test_user_text_model_data_problems_come_before_training(tmp_path, monkeypatch):
    """A token id beyond the user's Embedding (TensorFlow failed deep in its lookup, a traceback),
    and a model where keep_first_last leaves nothing to prune (a KeyError after training): one
    line each, before anything trains."""
    monkeypatch.setattr(tfcompress.pipeline.stages.Context, "fit", _no_training)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, (120, 6)).astype(np.int32), rng.integers(0, 3, 120)
    x[7, 2] = 50
    np.savez(tmp_path / "ids.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:])
    inputs = keras.Input((6,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 4, name="embedding")(
            inputs))))
    models.save_model(model, str(tmp_path / "text.keras"))
    config = ConfigDict({"data": {"name": "npz", "path": str(tmp_path / "ids.npz")},
                         "model": {"path": str(tmp_path / "text.keras")}})
    _raises("token id", errors.DataError, r"token id 50 is outside Embedding 'embedding'",
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))
    x[7, 2] = 5
    np.savez(tmp_path / "ids.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:])
    config.stages, config.prune = ("prune",), {"keep_first_last": True}  # both layers are edges
    _raises("nothing to prune", errors.ConfigError, r"prune section: no layer of model .* can "
            r"be pruned: .*first or last layer kept dense.*accepted: keep_first_last=False",
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))
    assert not (tmp_path / "run" / "stages").exists()


@pytest.mark.parametrize("override, match", [
    ({"prune": {"layers": "nosuchlayer"}},
     r"^prune section: layers='nosuchlayer' selects no layer that can be pruned; layers with "),
    ({"prune": {"layers": "("}}, r"^prune section: layers='\(' is not a regex"),
    ({"prune": {"epochs": 0}}, r"^prune section: the fine-tuning plan has 0 steps"),
    # the dense kernel: 2048 x 64 weights, 20% of them left by prune (+1: the zeros' cluster)
    ({"cluster": {"number_of_clusters": 100000}},
     r"^cluster section: number_of_clusters=100000 is more than layer 'dense' holds \(26215: .*"
     r"accepted: an integer from 3 to 26215, the fewest among the layers clustered$"),
    ({"cluster": {"number_of_clusters": 200000, "preserve_sparsity": False}},
     r"number_of_clusters=200000 is more than layer 'dense' holds \(131072: the weights"),
])
def test_stage_sections_are_checked_on_the_model_before_the_baseline_trains(
        tmp_path, monkeypatch, override, match):
    """What needs the model (layer names, kernel sizes, the plan's steps) is refused once the
    baseline is built, before it trains; a cluster count is checked against the zeros the
    prune stage before it leaves (tfmot's kmeans++ crashed on it after both had trained)."""
    monkeypatch.setattr(tfcompress.pipeline.stages.Context, "fit", _no_training)
    config = tfcompress.configs.load("default:smoke")
    for section, fields in override.items():
        config[section].update(fields)
    _raises(str(override), errors.ConfigError, match,
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))
    assert not (tmp_path / "run" / "baseline.keras").exists()


def test_resumed_baseline_checks_the_stages_before_they_train(tmp_path, monkeypatch):
    """A cached baseline is checked too: the prune stage would train before cluster failed."""
    config = tfcompress.configs.load("default:smoke")
    config.stages, config.convert.modes, config.convert.baseline_modes = (), ("float32",), ()
    config.validate.update(latency_runs=0, compiled_model=())
    tfcompress.run_recipe(config, str(tmp_path))  # caches the baseline (one epoch)
    monkeypatch.setattr(tfcompress.pipeline.stages.Context, "fit", _no_training)
    config = tfcompress.configs.load("default:smoke")
    config.cluster.number_of_clusters = 100000
    _raises("resumed", errors.ConfigError, "cluster section: number_of_clusters=100000",
            lambda: tfcompress.run_recipe(config, str(tmp_path)))
    assert not os.path.exists(tmp_path / "stages")


def test_android_dir_of_the_user_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(tfcompress.pipeline.stages.Context, "fit", _no_training)
    app = tmp_path / "app"
    app.mkdir()
    (app / "model.tflite").write_text("mine")
    error = _raises("android_dir", errors.ConfigError,
                    r"^android output folder '.*app' is not empty \(model.tflite\); accepted: a "
                    r"new or empty folder, or one holding an earlier bundle of ours$",
                    lambda: tfcompress.run_recipe("default:smoke", str(tmp_path / "run"),
                                                  android_dir=str(app)))
    assert "overwrite" not in str(error)  # run_recipe and compress have no such switch
    assert not (tmp_path / "run").exists() and (app / "model.tflite").read_text() == "mine"


def test_a_damaged_cached_model_says_how_to_remake_it(tmp_path):
    (tmp_path / "baseline.keras").write_bytes(b"PK\x03\x04 cut short")
    _raises("damaged .keras", errors.ModelError, r"not a \.keras zip .*; accepted: a \.keras "
            r"file written by model.save \(a damaged one in a workdir: delete it, the next run "
            r"remakes it\)$", lambda: models.load_model(str(tmp_path / "baseline.keras")))


def _no_training(*args, **kwargs):
    raise AssertionError("trained before the error")


MARKER_CODE = "lambda x: (open({marker!r}, 'w').write('ran'), x)[1]"


def _lambda_model(marker):
    fn = eval(MARKER_CODE.format(marker=marker))  # noqa: S307  (the code a file would carry)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(fn, name="code"),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.mark.parametrize("kind", ["h5", "savedmodel"])
def test_lambda_model_files_are_refused_and_run_no_code(tmp_path, kind):
    marker = str(tmp_path / "ran.txt")
    model = _lambda_model(marker)
    path = str(tmp_path / ("m.h5" if kind == "h5" else "m_savedmodel"))
    if kind == "h5":
        model.save(path)
    else:
        model.save(path, save_format="tf")
    if os.path.exists(marker):
        os.remove(marker)  # saving traced the function once
    _raises(f"lambda {kind}", errors.ModelError, r"holds a Lambda layer 'code'.*safe_mode=False",
            lambda: models.load_model(path))
    assert not os.path.exists(marker)
    config = ConfigDict({"model": {"path": path}, "data": {"limit": 100}})
    _raises(f"lambda {kind} recipe", errors.ModelError, "holds a Lambda layer",
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))
    assert not os.path.exists(marker)
    if kind == "savedmodel":  # converted from its graph: no Python runs
        flatbuffer = tfcompress.convert(path, "float32")
        assert flatbuffer[4:8] == b"TFL3" and not os.path.exists(marker)
    loaded = models.load_model(path, safe_mode=False)  # the explicit opt-in loads it
    assert [type(layer).__name__ for layer in loaded.layers][0] == "Lambda"
    # model.unsafe=True is the recipe's opt-in: the model loads and is checked against the data
    # (here it stops there: its 10 outputs, the labels 0..9 pass; a 1-pixel input does not fit).
    config = ConfigDict({"model": {"path": path, "unsafe": True}, "data": {"limit": 100,
                                                                         "resize": True,
                                                                         "image_size": (1, 1)}})
    _raises(f"lambda {kind} unsafe", errors.DataError, r"expects \(8, 8, 1\)",
            lambda: tfcompress.run_recipe(config, str(tmp_path / "run")))


def test_unknown_class_and_savedmodel_without_keras_metadata(tmp_path):
    @keras.utils.register_keras_serializable("reliab_test")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    model = keras.Sequential([keras.Input((4,)), Scale(name="scale"), keras.layers.Dense(2)])
    model.save(str(tmp_path / "scale.h5"))
    assert type(models.load_model(str(tmp_path / "scale.h5")).layers[0]).__name__ == "Scale"
    keras.utils.get_custom_objects().pop("reliab_test>Scale")  # unknown in a fresh process
    _raises("unknown class", errors.ModelError, r"unknown class 'reliab_test>Scale' \(layer 'scale'\)",
            lambda: models.load_model(str(tmp_path / "scale.h5")))
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None, 4])])
    tf.saved_model.save(module, str(tmp_path / "plain"))
    _raises("savedmodel without keras metadata", errors.ModelError,
            r"has no Keras metadata.*tfcompress.convert\(path\)",
            lambda: models.load_model(str(tmp_path / "plain")))


def test_technique_and_conversion_inputs(xy):
    x, _ = xy
    _raises("prune 'abc'", errors.ConfigError, "target_sparsity='abc'",
            lambda: tfcompress.prune(models.digits_cnn(width=0.25), "abc", epochs=1,
                                     steps_per_epoch=10))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    _raises("subclassed never called", errors.ModelError, "model 'sub' has no input shape",
            lambda: tfcompress.convert(Sub(), "float32"))
    small = models.digits_cnn(width=0.25)
    # Inf used to segfault the converter's int8 quantizer (native, in this process).
    _raises("inf representative", errors.DataError, "representative_data holds 0 NaN and 1 Inf",
            lambda: tfcompress.convert(small, "int8", representative_data=_with(x, 3, np.inf)))
    _raises("nan representative", errors.DataError, "representative_data holds 1 NaN",
            lambda: tfcompress.convert(small, "int8", representative_data=_with(x, 3, np.nan)))


@pytest.fixture(scope="module")
def float32_fb():
    return tfcompress.convert(models.digits_cnn(width=0.25), "float32")


def test_validate_inputs(float32_fb, xy):
    x, y = xy
    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    two = keras.Model(inp, [keras.layers.Dense(10)(flat), keras.layers.Dense(3)(flat)])
    quick = dict(latency_runs=0, delegate_checks=False)
    _raises("two-output flatbuffer, one label array", errors.DataError,
            "y is one array for 2 outputs",
            lambda: tfcompress.validate(tfcompress.convert(two, "float32"), x, y, **quick))
    _raises("two-output reference", errors.DataError, "the reference gives 2 outputs",
            lambda: tfcompress.validate(float32_fb, x, y, reference=two, **quick))
    _raises("y wrong length", errors.DataError, "y has 5 labels but x has 60 samples",
            lambda: tfcompress.validate(float32_fb, x, y[:5], **quick))
    _raises("nan x", errors.DataError, "data holds 1 NaN",
            lambda: tfcompress.validate(float32_fb, _with(x, 0, np.nan), y, **quick))
    _raises("latency_runs -1", errors.DataError, "latency_runs=-1",
            lambda: tfcompress.validate(float32_fb, x, y, latency_runs=-1))


def test_a_flatbuffer_that_crashes_the_interpreter_is_an_error_here():
    content = open(CRASH, "rb").read()
    assert len(content) < 200_000
    # It really kills a process that runs it in-process (rc -11, SIGSEGV):
    run = subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
        "it = Interpreter(model_content=open(sys.argv[1], 'rb').read())\nit.allocate_tensors()\n"
        "[it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])) "
        "for d in it.get_input_details()]\nit.invoke()\n"), CRASH], capture_output=True, timeout=60)
    assert run.returncode < 0
    _raises("crashing flatbuffer", errors.InvalidTFLiteError, r"crashed \(SIG",
            lambda: tfcompress.export.validation.predict(content, np.zeros((3, 4, 4, 1), np.float32)))
    _raises("crashing flatbuffer validate", errors.InvalidTFLiteError, r"crashed \(SIG",
            lambda: tfcompress.validate(CRASH, np.zeros((3, 4, 4, 1), np.float32)))


@pytest.mark.parametrize("url, match", [
    ("postgresql+psycopg2://user:secret@localhost/db", r"needs the database driver psycopg2"),
    ("mysql+pymysql://user:secret@localhost/db", r"needs the database driver pymysql"),
    ("postgresql+psycopg://user:secret@127.0.0.1:1/db", r"cannot be reached"),
    ("not a url", r"storage URL 'not a url' is malformed"),
    ("nosuchdb://host/db", r"unknown database dialect"),
])
def test_storage_is_checked_before_the_baseline_trains(tmp_path, monkeypatch, url, match):
    monkeypatch.setattr(study, "_baseline", _no_training)
    error = _raises(f"storage {url.split(':')[0]}", errors.ConfigError, match,
                    lambda: tfcompress.search(None, str(tmp_path), storage=url))
    assert "secret" not in str(error)


def test_sqlite_storage_passes(tmp_path):
    preflight.check_storage("sqlite:///" + str(tmp_path / "s.db"))
    assert (tmp_path / "s.db").exists()


def test_stale_temporary_of_a_killed_save_is_removed(tmp_path):
    """kill -9 in the middle of a save leaves ``.<name>.*.tmp*``; the next writer removes it."""
    target = tmp_path / "baseline.keras"
    child = (f"import importlib.util, os, signal\n"
             f"spec = importlib.util.spec_from_file_location('_io', {os.path.join(ROOT, 'tfcompress', '_io.py')!r})\n"
             f"io = importlib.util.module_from_spec(spec); spec.loader.exec_module(io)\n"
             f"with io.atomic_path({str(target)!r}) as tmp:\n"
             f"    open(tmp, 'wb').write(b'half a model')\n"
             f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert run.returncode == -9
    left = [n for n in os.listdir(tmp_path) if _io.is_temporary(n)]
    assert len(left) == 1 and left[0].startswith(".baseline.keras.") and not target.exists()
    (tmp_path / "sub").mkdir()
    live = tmp_path / "sub" / ".x.json.abcdefgh.tmp.json"
    live.write_text("a live writer's")
    os.utime(live, (time.time() + 60, time.time() + 60))  # newer than the cut-off: kept
    removed = _io.remove_stale(str(tmp_path), before=time.time())
    assert [os.path.basename(p) for p in removed] == left and live.exists()
    assert not any(_io.is_temporary(n) for n in os.listdir(tmp_path))
    # atomic_path removes its own name's stale temporaries (another killed run's) first.
    stale = tmp_path / ".report.json.k1ll3d_x.tmp.json"
    stale.write_text("{")
    os.utime(stale, (_io.PROCESS_START - 60, _io.PROCESS_START - 60))
    _io.write_text(str(tmp_path / "report.json"), "{}")
    assert not stale.exists() and (tmp_path / "report.json").read_text() == "{}"


# ---------------------------------------------------------------- the command line (a few)

def _cli(tmp_path, *args):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "compress.py"),
         f"--workdir={tmp_path / 'run'}", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    return result, time.perf_counter() - start


def test_cli_bad_input_one_line_exit_2_before_training(tmp_path):
    x, y = data.load_digits()[0]
    inf = x.copy()
    inf[0, 0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", x_train=inf, y_train=y, x_test=x[:50], y_test=y[:50])
    marker = str(tmp_path / "ran.txt")
    _lambda_model(marker).save(str(tmp_path / "lambda.h5"))
    if os.path.exists(marker):
        os.remove(marker)
    app = tmp_path / "app"
    app.mkdir()
    (app / "mine.txt").write_text("mine")
    cases = [
        (["--config.train.epochs=-1"], "error: train.epochs=-1; accepted"),
        (["--config.data.name=npz", f"--config.data.path={tmp_path / 'inf.npz'}"],
         "train images holds 0 NaN and 1 Inf"),
        ([f"--config.model.path={tmp_path / 'lambda.h5'}"], "holds a Lambda layer 'code'"),
        # needs the built model: refused before it trains (was a kmeans++ traceback after
        # the baseline and prune had trained)
        (["--config=default:smoke", "--config.cluster.number_of_clusters=100000"],
         "error: cluster section: number_of_clusters=100000 is more than layer 'dense' holds"),
        (["--config=default:smoke", f"--android_dir={app}"],
         f"error: android output folder '{app}' is not empty (mine.txt); accepted: a new or "
         "empty folder, or one holding an earlier bundle of ours"),
    ]
    for args, message in cases:
        result, seconds = _cli(tmp_path, *args)
        ERROR_SECONDS["cli " + args[-1].split("=")[0]] = seconds
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr[-2000:]
        assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
        assert seconds < 30, (args, seconds)
        assert not (tmp_path / "run" / "baseline.keras").exists()
    assert not os.path.exists(marker)


def teardown_module(module):
    if ERROR_SECONDS:
        print("\nseconds to each error:", {k: round(v, 3) for k, v in sorted(ERROR_SECONDS.items())})


def test_finish_rewrites_the_front_folder_from_scratch(tmp_path):
    """A killed search's stale ``front/trial_N.py`` does not survive the next finish()."""
    import optuna

    (tmp_path / "front").mkdir()
    (tmp_path / "front" / "trial_7.py").write_text("# a point of an older front")
    config = study.check_config({})
    baseline = {"accuracy": 0.95, "test_accuracy": 0.94, "gzip_bytes": 1000, "bytes": 2000,
                "latency_ms": 0.1, "macs": 10, "tflite": str(tmp_path / "none.tflite")}
    empty = optuna.create_study(directions=["maximize", "minimize"])
    summary = study.finish(config, str(tmp_path), baseline, empty)
    assert summary["front"] == [] and os.listdir(tmp_path / "front") == []


def _command(*args, **kw):
    """``tfcompress ARGS`` as a user runs it: (exit status, stderr lines)."""
    result = subprocess.run([sys.executable, "-m", "tfcompress", *args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT}, **kw)
    return result.returncode, result.stderr.strip().splitlines()


def _native_log(line: str) -> bool:  # TensorFlow's C++ start-up lines (before our code runs)
    return line[:1] in "IWE" and line[1:5].isdigit() or line.startswith(("WARNING: All log",
                                                                         "To enable the"))


@pytest.mark.slow  # two runs of the command: 43 s on this shared 2-core machine
def test_command_user_files_config_files_repeated_flags_one_line(tmp_path, float32_fb, capsys):
    """Two runs of the command (android into a user's folder; a --config file that raises,
    with a flag given twice), and the one-line pieces in-process."""
    from tfcompress import cli

    fb = tmp_path / "m.tflite"
    fb.write_bytes(float32_fb)
    app = tmp_path / "app"
    app.mkdir()
    (app / "README.md").write_text("my readme\n")
    rc, lines = _command("android", str(fb), f"--out={app}")
    lines = [line for line in lines if not _native_log(line)]
    assert rc == 2 and len(lines) == 1 and "is not empty (README.md)" in lines[0], lines
    assert "--overwrite" in lines[0] and os.listdir(app) == ["README.md"]
    assert (app / "README.md").read_text() == "my readme\n"
    (tmp_path / "raises.py").write_text("def get_config():\n    return 1 / 0\n")
    rc, lines = _command("compress", f"--config={tmp_path / 'raises.py'}",
                         "--config.train.epochs=1", "--config.train.epochs", "2",
                         f"--workdir={tmp_path / 'w'}")
    lines = [line for line in lines if not _native_log(line)]
    assert rc == 2 and len(lines) == 2, lines
    assert lines[0] == "warning: --config.train.epochs given twice (1, then 2); the last is used"
    assert re.search(r"^error: --config file raised ZeroDivisionError: division by zero "
                     r"\(.*raises.py:2\); accepted: a Python file", lines[1]), lines
    assert not (tmp_path / "w").exists()
    try:
        compile("def get_config(:\n", str(tmp_path / "syntax.py"), "exec")
    except SyntaxError as e:
        assert cli._config_file_error(e) == (
            f"--config file {tmp_path / 'syntax.py'}:1: SyntaxError: invalid syntax; accepted: "
            "a Python file defining get_config()")
    with pytest.raises(SystemExit) as exit_:
        cli.fail(cli.INTERRUPTED)
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_ctrl_c_is_one_line(tmp_path):
    import signal

    workdir = tmp_path / "w"
    process = subprocess.Popen(
        [sys.executable, "-m", "tfcompress", "compress", "--config=digits:smoke",
         "--config.train.epochs=500", f"--workdir={workdir}"],  # long enough to interrupt
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": ROOT})
    deadline = time.time() + 120
    while not workdir.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    lines = [line for line in stderr.strip().splitlines() if not _native_log(line)]
    assert process.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr and lines[-1].startswith("error: interrupted (Ctrl-C); "
                                                              "rerun the same command to resume")


def test_report_keeps_no_absolute_data_path(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "mine.npz", x_train=np.concatenate([x] * 3), y_train=np.concatenate([y] * 3),
             x_test=x, y_test=y)
    from tfcompress.configs import digits as digits_config

    config = digits_config.get_config("smoke")
    config.data.name, config.data.path = "npz", str(tmp_path / "mine.npz")
    config.convert.modes = ("float32",)
    tfcompress.run_recipe(config, str(tmp_path / "w"))
    import json

    text = open(tmp_path / "w" / "report.json").read()
    assert json.loads(text)["config"]["data"]["path"] == "mine.npz"
    assert str(tmp_path) not in text
