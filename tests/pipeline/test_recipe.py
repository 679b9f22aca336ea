import json
import os

import pytest
from ml_collections import ConfigDict

import tfcompress
from tfcompress import errors
from tfcompress.pipeline import recipe


def _smoke():
    config = recipe.default_config()
    config.data.limit = 200
    config.train.epochs = 1
    config.convert.modes = ("float32", "int8")
    config.convert.representative_samples = 8
    config.validate.latency_runs = 2
    return config


@pytest.mark.parametrize("override, message", [
    ({"trian": {}}, "unknown recipe field 'trian'; accepted: .*data.*train"),
    ({"train": {"epoch": 3}}, "unknown recipe field 'train.epoch'; accepted: batch_size, epochs"),
    ({"train": {"epochs": "many"}}, "'train.epochs'='many' has the wrong type"),
    ({"convert": {"modes": ("float32", "int3")}}, "unknown conversion mode 'int3'"),
    ({"stages": ("prune_everything",)}, "unknown stage 'prune_everything'"),
    ({"data": {"name": "mnist"}},
     "unknown data.name 'mnist'; accepted: digits, text, keywords, npz, image_folder"),
    ({"convert": {"options": {"activation_ranges": "widest"}}},
     "unknown convert.options.activation_ranges 'widest'; accepted: min_max, mse, percentile"),
    ({"convert": {"modes": ("static_wi8_ai8",), "options": {"algorithm": "gptq"}}},
     "mode 'static_wi8_ai8': quantizer algorithm 'gptq' does not apply to mode 'static_wi8_ai8'"),
    ({"convert": {"options": {"ranges": "mse"}}},
     "unknown recipe field 'convert.options.ranges'; accepted: activation_ranges, algorithm"),
])
def test_bad_recipes_name_the_field(override, message):
    with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        recipe.check_config(ConfigDict(override))
    assert "\n" not in str(e.value)


def _activation_scales(flatbuffer) -> dict:
    """{tensor name: scale} of every op's quantized output (the activations), read back."""
    import tfcompress._compat.litert as _litert

    interp = _litert.interpreter(flatbuffer, delegates=False)
    outputs = {t for op in _litert.ops(interp) for t in op["outputs"]}
    return {d["name"]: float(d["quantization"][0]) for d in interp.get_tensor_details()
            if d["index"] in outputs and d["quantization"][0] > 0}


def test_recipe_convert_options_reach_the_converter(tmp_path):
    """``convert.options.activation_ranges: "mse"`` in a recipe gives the int8 file the ranges
    ``convert(..., options=...)`` chooses, read back: not min-max's."""
    from tfcompress.export.conversion import convert

    keras_model = tfcompress.models.digits_cnn(width=0.25)
    path = str(tmp_path / "user.keras")
    tfcompress.models.save_model(keras_model, path)
    config = _smoke()
    config.model.path = path
    config.convert.modes = ("int8",)
    config.convert.representative_samples = 64
    config.convert.options = {"activation_ranges": "mse"}
    config.validate.latency_runs = 0
    config.validate.compiled_model = ()
    tfcompress.run_recipe(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "int8.tflite", "rb") as f:
        got = _activation_scales(f.read())
    x = recipe.load_data(recipe.check_config(config)).train[0]
    model = tfcompress.models.load_model(path)
    by = {m: _activation_scales(convert(model, "int8", representative_data=x,
                                        representative_samples=64,
                                        options={"activation_ranges": m}))
          for m in ("mse", "min_max")}
    assert got == pytest.approx(by["mse"])
    assert any(got[k] < 0.99 * by["min_max"][k] for k in got)  # a range shrunk by the choice


def test_run_recipe_writes_outputs_and_resumes(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    report = tfcompress.run_recipe(_smoke(), workdir)
    names = sorted(os.listdir(workdir))
    assert names == ["baseline.keras", "baseline.keras.fingerprint", "float32.tflite",
                     "int8.tflite", "report.json", "report.md",
                     "size_accuracy.png"]  # and no temporary files
    rows = {r["format"]: r for r in report["formats"]}
    # Ratios against the float32 file's bytes, read from disk (int8: about a quarter).
    sizes = {f: os.path.getsize(os.path.join(workdir, f"{f}.tflite")) for f in rows}
    for f, row in rows.items():
        assert row["ratio"] == pytest.approx(sizes[f] / sizes["float32"], rel=1e-9), f
    assert 0.2 < rows["int8"]["ratio"] < 0.3
    assert rows["float32"]["bytes"] == os.path.getsize(os.path.join(workdir, "float32.tflite"))
    assert json.load(open(os.path.join(workdir, "report.json")))["formats"][1]["format"] == "int8"
    assert "| int8 |" in open(os.path.join(workdir, "report.md")).read()

    # Resume: the baseline is reused, not trained again.
    def no_training(*a, **k):
        raise AssertionError("baseline trained again")
    monkeypatch.setattr(tfcompress.models, "build", no_training)
    again = tfcompress.run_recipe(_smoke(), workdir)
    assert again["keras_accuracy"] == report["keras_accuracy"]
    # A changed training plan invalidates the saved baseline.
    changed = _smoke()
    changed.train.epochs = 2
    with pytest.raises(AssertionError, match="trained again"):
        tfcompress.run_recipe(changed, workdir)


def test_user_model_and_data_that_does_not_fit(tmp_path):
    model = tfcompress.models.digits_cnn(input_shape=(9, 9, 1), width=0.25)
    path = str(tmp_path / "user.keras")
    tfcompress.models.save_model(model, path)
    config = _smoke()
    config.model.path = path
    with pytest.raises(errors.DataError, match=r"sample shape \(8, 8, 1\).*expects \(9, 9, 1\)"):
        tfcompress.run_recipe(config, str(tmp_path / "run"))
    assert not any(n.endswith(".tflite") for n in os.listdir(tmp_path / "run"))


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    from tfcompress import _io

    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with _io.atomic_path(str(target)) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


