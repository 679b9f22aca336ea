"""scripts/compress.py (a thin wrapper of ``tfcompress compress``) as a user runs it: bad input
ends with one clear line, no traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "compress.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--config.convert.modes=('int3',)"], "error: unknown conversion mode 'int3'"),
    (["--config.data.name=npz", "--config.data.path=/nonexistent.npz"],
     "error: data file '/nonexistent.npz' does not exist"),
])
def test_bad_input_exits_with_one_line(tmp_path, args, message):
    result = _run(f"--workdir={tmp_path}", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]


@pytest.mark.parametrize("args, message", [
    (["--config.train.epochz=3"], "error: unknown recipe field train.epochz (in "
     "--config.train.epochz=3); did you mean epochs?; accepted in train: batch_size, epochs,"),
    (["--config.train.epochs=many"], "error: flag --config.train.epochs=many"),
    (["--config=/nonexistent/recipe.py"],
     "error: config '/nonexistent/recipe.py' is neither a bundled recipe nor an existing file"),
])
def test_bad_flags_exit_with_one_line(tmp_path, args, message):
    result = _run(f"--workdir={tmp_path}", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # native start-up lines filtered too
    assert not os.listdir(tmp_path)
