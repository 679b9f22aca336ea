"""The ``tfcompress`` console command as a user runs it (subprocesses), and its pieces."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tfcompress
from tfcompress import cli, models
from tfcompress.export import validation
from tfcompress._native import NATIVE_LINE, LineFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = shutil.which("tfcompress", path=os.path.dirname(sys.executable))
XNNPACK_LINE = "Created TensorFlow Lite XNNPACK delegate"


def _tfcompress(*args, cwd=None):
    """The installed console script where there is one (pip install), else the same entry point
    run from this checkout as the command (``TFCOMPRESS_COMMAND=1``)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TFCOMPRESS_COMMAND": "1"}
    command = [SCRIPT] if SCRIPT else [sys.executable, "-m", "tfcompress"]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained digits CNN: its .keras, its int8 .tflite and an .npz of the digits."""
    out = tmp_path_factory.mktemp("cli")
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    tfcompress.keras.utils.set_random_seed(0)
    model = models.digits_cnn(width=0.25)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    model.save(out / "model.keras")
    fb = tfcompress.convert(model, "int8", representative_data=x[:64])
    (out / "int8.tflite").write_bytes(fb)
    np.savez(out / "data.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    return out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tfcompress", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.COMMANDS)


@pytest.mark.parametrize("args, message", [
    ([], "error: missing command; accepted: compress, search, inspect, validate, android"),
    (["frob"], "error: unknown command 'frob'; accepted: compress, search, inspect"),
    (["compress", "--config=digits:smoek"],
     "error: unknown config variant 'smoek'; accepted: (none), smoke"),
    (["search", "--config", "digits_pcqta"],
     "error: config 'digits_pcqta' is neither a bundled recipe nor an existing file; accepted: "
     "default, digits"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:  # caught before any flag is defined: in-process
        cli.main(["tfcompress", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--config.train.nosuch=1"], "error: unknown recipe field train.nosuch (in "
     "--config.train.nosuch=1); accepted in train: batch_size, epochs, from_logits, "
     "learning_rate"),
    (["--config.nosuch=1"], "error: unknown recipe field nosuch (in --config.nosuch=1); "
     "accepted in the recipe: adaround, cluster, convert,"),
])
def test_an_unknown_override_names_its_path_and_the_fields_accepted_there(capsys, args,
                                                                          message):
    with pytest.raises(SystemExit) as exit_:
        cli.fail(cli._unknown_override(["tfcompress", *args], KeyError("nosuch")))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("source, message", [
    ("x = 1\n", "error: the config file defines no get_config (module"),
    ("from tfcompress.pipeline.recipe import default_config\n"
     "def get_config():\n    c = default_config(); c.train.epochs = 'many'; return c\n",
     "error: the config file raised TypeError: Could not override field 'epochs'"),
])
def test_a_broken_config_file_is_one_line_naming_the_cause(tmp_path, source, message):
    (tmp_path / "recipe.py").write_text(source)
    result = _tfcompress("compress", f"--config={tmp_path / 'recipe.py'}",
                         f"--workdir={tmp_path / 'w'}")
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_model_path_is_checked(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli._positional(["tfcompress inspect", str(tmp_path / "none.tflite")], "inspect")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: model file '{tmp_path / 'none.tflite'}' does not exist; accepted: a .tflite file")
    with pytest.raises(SystemExit):
        cli._positional(["tfcompress inspect", str(tmp_path)], "inspect")
    assert capsys.readouterr().err.strip() == (
        f"error: model file '{tmp_path}' is a folder; accepted: a .tflite file")
    with pytest.raises(SystemExit):
        cli.fail(ValueError("flag --config.train.epochs=1.5: invalid literal for int() with "
                            "base 10: '1.5'"))
    assert capsys.readouterr().err.strip().endswith("'1.5'; accepted: a whole number")
    with pytest.raises(SystemExit):
        cli._positional(["tfcompress compress", "extra"], "compress")
    assert "unexpected arguments: ['extra']" in capsys.readouterr().err


def test_inspect_prints_layers_quietly(files):
    result = _tfcompress("inspect", str(files / "int8.tflite"))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    conv = [r for r in rows if "| CONV_2D |" in r]
    assert len(conv) == 2 and all("| int8 | conv" in r and "| 8 |" in r for r in conv)
    assert "XNNPACK: 6/7 nodes" in result.stdout and "fell back: SOFTMAX x1" in result.stdout
    assert XNNPACK_LINE not in result.stdout + result.stderr  # the native line is filtered
    loud = _tfcompress("inspect", str(files / "int8.tflite"), "--json", "--verbosity=1")
    assert XNNPACK_LINE in loud.stdout + loud.stderr  # ... and shown when asked for
    report = json.loads(loud.stdout)
    assert report["mode"] == "int8" and report["op_counts"]["FULLY_CONNECTED"] == 2
    assert report["bytes"] == os.path.getsize(files / "int8.tflite")


def test_validate_and_android(files, tmp_path):
    (_, _), (xt, yt) = tfcompress.data.load_digits()
    np.savez(tmp_path / "test_only.npz", x_test=xt, y_test=yt)  # as --help says: no x_train
    result = _tfcompress("validate", str(files / "int8.tflite"),
                         f"--data={tmp_path / 'test_only.npz'}",
                         f"--reference={files / 'model.keras'}", "--latency_runs=0", "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    expected = validation.validate(str(files / "int8.tflite"), xt, yt, latency_runs=0)
    assert got["accuracy"] == pytest.approx(expected.accuracy) and got["num_samples"] == len(yt)
    assert 0.9 <= got["agreement"] <= 1.0
    runs = got["compiled_model"]["runs"]  # issue 29: CompiledModel against the Interpreter
    assert [r["kernel_mode"] for r in runs] == ["xnnpack"] and runs[0]["error"] is None
    assert got["compiled_model"]["max_abs_diff"] == runs[0]["max_abs_diff"] <= 2 / 256
    result = _tfcompress("android", str(files / "int8.tflite"), f"--out={tmp_path / 'a'}",
                         "--std=16")
    assert result.returncode == 0, result.stderr
    assert json.load(open(tmp_path / "a" / "model.json"))["input_normalization"]["std"] == 16
    assert sorted(os.listdir(tmp_path / "a")) == ["README.md", "labels.txt", "model.json",
                                                  "model.tflite"]


def test_inspect_model_matches_conversion_info(files):
    r = cli.inspect_model(str(files / "int8.tflite"))
    weights = [row for row in r["layers"] if row["weight_bits"]]
    assert [row["layer"] for row in weights] == ["conv1", "conv2", "dense", "logits"]
    assert r["xnnpack"]["delegated"] == 6 and r["gpu"]["compatible"] is True
    assert "| FULLY_CONNECTED | int8 | logits | int8 | 8 | 10x" in cli.inspect_text(r)


def test_line_filter_drops_native_lines_only(tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            with LineFilter(2) as f:
                os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                            b"I0000 00:00:1796115592.694992   17140 port.cc:153] oneDNN on\n"
                            b"I1201 09:00:10.422817 139839916284800 cli.py:34] outputs in x\n"
                            b"fully_quantize: 0, inference_type: 6\nour result\n")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    assert open(out).read().splitlines() == [
        "I1201 09:00:10.422817 139839916284800 cli.py:34] outputs in x", "our result"]
    assert f.dropped == 3 and NATIVE_LINE.match(b"E0000 00:00:1.2  1 cuda_platform.cc:52] x")


@pytest.mark.slow
def test_compress_bundled_recipe_by_name(tmp_path):
    result = _tfcompress("compress", "--config=digits:smoke", "--workdir=out",
                         "--config.convert.modes=('float32','int8')", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]  # the console's table
    # the int8 row: its gzip ratio to float32 (the fourth column) is about 0.27
    assert any(r and r[0] == "int8" and 0.2 < float(r[3]) < 0.35 for r in rows), result.stdout
    assert (tmp_path / "out" / "int8.tflite").exists()
    noisy = [line for line in (result.stdout + result.stderr).splitlines()
             if NATIVE_LINE.match(line.encode())]
    assert noisy == []
    node_data = json.load(open(tmp_path / "out" / "int8.quant_error.json"))
    assert len(node_data["results"]) >= 4  # the int8 error of each quantized op


@pytest.mark.skipif(SCRIPT is None, reason="tfcompress is not installed in this environment "
                    "(scripts/test.sh installs it; the other tests run the same entry point)")
def test_console_script_is_the_cli():
    text = open(SCRIPT).read()
    assert "tfcompress.cli" in text and "main" in text
