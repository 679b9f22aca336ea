import json
import os

import numpy as np
import pytest

import tfcompress
from tfcompress import errors
from tfcompress.export.android import export_android
from tfcompress.export.conversion import conversion_info
from tfcompress.export.validation import interpreter, predict


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_export_android_bundle(trained_cnn, digits, tmp_path, mode):
    (x, _), (xt, _) = digits
    fb = tfcompress.convert(trained_cnn, mode, representative_data=x[:50])
    out = str(tmp_path / mode)
    sidecar = export_android(fb, out, labels=[f"digit {i}" for i in range(10)],
                             normalization={"mean": 0.0, "std": 16.0},
                             conversion=conversion_info(fb, mode))
    assert sorted(os.listdir(out)) == ["README.md", "labels.txt", "model.json", "model.tflite"]
    assert open(os.path.join(out, "model.tflite"), "rb").read() == fb
    assert open(os.path.join(out, "labels.txt")).read().splitlines()[3] == "digit 3"
    on_disk = json.load(open(os.path.join(out, "model.json")))
    assert on_disk == json.loads(json.dumps(sidecar))
    interp = interpreter(os.path.join(out, "model.tflite"))
    inp = interp.get_input_details()[0]
    assert on_disk["inputs"][0]["name"] == inp["name"]
    assert on_disk["inputs"][0]["dtype"] == np.dtype(inp["dtype"]).name
    assert on_disk["inputs"][0]["scale"] == pytest.approx(inp["quantization"][0])
    assert on_disk["inputs"][0]["zero_point"] == inp["quantization"][1]
    assert on_disk["outputs"][0]["shape"] == [-1, 10]
    assert on_disk["input_normalization"]["std"] == 16.0
    assert on_disk["conversion"]["mode"] == mode
    readme = open(os.path.join(out, "README.md")).read()
    assert "import org.tensorflow.lite.Interpreter" in readme
    assert "interpreter.run(input, output)" in readme
    assert "com.google.ai.edge.litert:litert" in readme
    assert on_disk["state_tensors"] == 0 and "resetVariableTensors" not in readme
    assert "CompiledModel.create" in readme
    if mode == "int8":  # the Kotlin lines quantize with the model's own scale and zero point
        scale, zero_point = inp["quantization"]
        assert zero_point == -128  # digits in [0, 1] use the whole int8 range
        assert f"/ {scale}f - 128).roundToInt().coerceIn(-128, 127).toByte()" in readme
        assert "(output[0][i].toInt() + 128) * " in readme
        assert "ByteArray(10)" in readme and "allocateDirect(64)" in readme
    else:
        assert "putFloat" in readme and "FloatArray(10)" in readme and "allocateDirect(256)" in readme
    assert predict(os.path.join(out, "model.tflite"), xt[:5]).shape == (5, 10)


def test_a_recurrent_bundle_resets_the_state_before_each_input(tmp_path):
    """A fused LSTM keeps its state in variable tensors between invokes: the sidecar counts them
    (read back from the flatbuffer), the Kotlin resets them before each run, and the
    CompiledModel lines, an API with no reset, are left out."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    import model_kinds
    model, (x, _), _ = model_kinds.trained("lstm")
    fb = tfcompress.convert(model, "float32")
    sidecar = export_android(fb, str(tmp_path / "lstm"))
    assert sidecar["state_tensors"] == 2  # the LSTM's hidden and cell state
    readme = open(tmp_path / "lstm" / "README.md").read()
    assert readme.index("interpreter.resetVariableTensors()") < readme.index(
        "interpreter.run(input, output)")
    assert "CompiledModel" not in readme and "tokens[i]" in readme


def test_a_feature_model_with_two_outputs_gets_values_not_pixels_or_labels(tmp_path):
    """Not an image (rank 2): the input is fed as it is (std 1, not 255); a one-value output is
    printed as a value (no argmax, no label); a second output is named in the README."""
    inputs = tfcompress.keras.Input((5,))
    h = tfcompress.keras.layers.Dense(8, activation="relu")(inputs)
    model = tfcompress.keras.Model(inputs, [tfcompress.keras.layers.Dense(1, name="value")(h),
                                            tfcompress.keras.layers.Dense(3, name="cls")(h)])
    fb = tfcompress.convert(model, "float32")
    for outputs, mine in ((2, model), (1, tfcompress.keras.Model(inputs, model.outputs[0]))):
        out = str(tmp_path / f"b{outputs}")
        sidecar = export_android(fb if outputs == 2 else tfcompress.convert(mine, "float32"), out)
        assert sidecar["input_normalization"]["std"] == 1.0
        readme = open(os.path.join(out, "README.md")).read()
        assert "raw feature values" in readme and "pixel values" not in readme
        assert ("This model has 2 outputs" in readme) == (outputs == 2)
        if outputs == 1:
            assert 'println("output: ${scores[0]}")' in readme and "maxByOrNull" not in readme


def test_export_android_checks(trained_cnn, tmp_path):
    fb = tfcompress.convert(trained_cnn, "float32")
    with pytest.raises(errors.DataError, match="3 labels for a model with 10 outputs"):
        export_android(fb, str(tmp_path / "a"), labels=["a", "b", "c"])
    with pytest.raises(errors.DataError, match="normalization"):
        export_android(fb, str(tmp_path / "b"), normalization={"mean": 0, "std": 0})
    with pytest.raises(errors.InvalidTFLiteError):
        export_android(fb[:100], str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "c" / "model.tflite")
    sidecar = export_android(fb, str(tmp_path / "d"))
    assert open(tmp_path / "d" / "labels.txt").read().split() == [str(i) for i in range(10)]
    assert sidecar["input_normalization"]["std"] == 255.0


def test_recipe_writes_android_bundle(tmp_path):
    from tfcompress.configs import digits as digits_config

    config = digits_config.get_config("smoke")
    config.convert.modes = ("int8",)
    out = str(tmp_path / "android")
    report = tfcompress.run_recipe(config, str(tmp_path / "work"), android_dir=out)
    assert report["android"]["mode"] == "int8" and report["android"]["dir"] == out
    sidecar = json.load(open(os.path.join(out, "model.json")))
    assert sidecar["inputs"][0]["dtype"] == "int8" and sidecar["input_normalization"]["std"] == 16.0
    assert open(os.path.join(out, "model.tflite"), "rb").read() == open(
        tmp_path / "work" / "int8.tflite", "rb").read()
    # The report records what each conversion did.
    int8_row = [r for r in report["formats"] if r["format"] == "int8"][0]
    assert int8_row["conversion"]["mode"] == "int8"
    assert int8_row["conversion"]["inputs"][0]["zero_point"] == sidecar["inputs"][0]["zero_point"]
    assert int8_row["xnnpack"]["nodes"] == 7
    with pytest.raises(errors.ConfigError, match="unknown android mode 'float16'"):
        tfcompress.run_recipe(config, str(tmp_path / "work"), android_dir=out,
                              android_mode="float16")
    md = open(tmp_path / "work" / "report.md").read()
    assert "- `int8`: input int8 (scale 0.0" in md and "XNNPACK 6/7 nodes (fell back: SOFTMAX x1)" in md
    assert "GPU delegate: not available" in md


def test_export_android_keeps_the_users_files(trained_cnn, tmp_path):
    """A non-empty folder that is not our bundle is refused; overwrite=True replaces only the
    bundle's four files; an earlier bundle of ours is replaced (a rerun resumes)."""
    fb = tfcompress.convert(trained_cnn, "float32")
    out = tmp_path / "app"
    out.mkdir()
    users = {"README.md": "my app's readme\n", "labels.txt": "cat\ndog\n",
             "model.json": '{"mine": true}\n', "notes.txt": "keep me\n"}
    for name, text in users.items():
        (out / name).write_text(text)
    with pytest.raises(errors.ConfigError, match=r"'.*app' is not empty \(README.md, labels.txt, "
                       r"model.json, notes.txt\); accepted: a new or empty folder, or overwrite=True"):
        export_android(fb, str(out))
    assert {p.name: p.read_text() for p in out.iterdir()} == users  # nothing changed
    same_names = tmp_path / "same_names"  # only our file names, but not our bundle
    same_names.mkdir()
    (same_names / "model.json").write_text('{"mine": true}\n')
    with pytest.raises(errors.ConfigError, match="is not empty"):
        export_android(fb, str(same_names))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(errors.ConfigError, match="is a file"):
        export_android(fb, str(tmp_path / "afile"))
    export_android(fb, str(out), overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([*users, "model.tflite"])
    assert (out / "model.tflite").read_bytes() == fb
    assert json.loads((out / "model.json").read_text())["model_file"] == "model.tflite"
    ours = tmp_path / "ours"
    export_android(fb, str(ours))
    before = (ours / "model.json").read_text()
    export_android(fb, str(ours), labels=[f"d{i}" for i in range(10)])  # a rerun: our bundle
    assert (ours / "labels.txt").read_text().split()[0] == "d0"
    assert (ours / "model.json").read_text() == before


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_bundle_runs_on_compiled_model_and_lists_each_ops_accelerators(trained_cnn, digits,
                                                                         tmp_path, mode):
    """Issue 29: README/Kotlin on CompiledModel with a CPU/GPU choice, the Interpreter kept as
    the fallback; model.json names each op's accelerators as our checks measured them."""
    import tfcompress._compat.litert as _litert
    from tfcompress.export import validation

    (x, _), _ = digits
    fb = tfcompress.convert(trained_cnn, mode, representative_data=x[:50])
    out = str(tmp_path / mode)
    export_android(fb, out)
    on_disk = json.load(open(os.path.join(out, "model.json")))
    ops = on_disk["ops"]
    interp = interpreter(fb, allocate=False)
    assert [o["op"] for o in ops] == [op["op_name"] for op in _litert.ops(interp)]
    coverage = validation.xnnpack_coverage(fb)
    fell = [o["op"] for o in ops if "CPU/XNNPACK" not in o["accelerators"]]
    assert {op: fell.count(op) for op in set(fell)} == coverage["fallback_ops"]
    assert all(o["accelerators"][0] == "CPU" for o in ops)
    gpu = validation.gpu_compatibility(fb)
    assert all(("GPU" in o["accelerators"]) == gpu["compatible"] for o in ops)
    assert on_disk["accelerators"]["xnnpack_ops"] == coverage["delegated"]
    if mode == "int8":
        assert "SOFTMAX" in fell  # int8 SOFTMAX stays on the builtin CPU kernel
    readme = open(os.path.join(out, "README.md")).read()
    compiled, _, fallback = readme.partition("## Fallback: the Interpreter API")
    assert "CompiledModel.create(context.assets, \"model.tflite\", " in compiled
    assert "load(Accelerator.GPU)" in compiled and "load(Accelerator.CPU)" in compiled
    assert "model.run(inputBuffers, outputBuffers)" in compiled
    write = {"float32": "writeFloat(FloatArray(64)", "int8": "writeInt8(ByteArray(64)"}[mode]
    assert write in compiled and "litert:2.3.0" in compiled
    assert "interpreter.run(input, output)" in fallback
