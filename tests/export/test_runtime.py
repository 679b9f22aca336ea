"""LiteRT's CompiledModel against the Interpreter, and LiteRT's own latency tool (issue 29)."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, models
from tfcompress.export import runtime, validation


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = tfcompress.data.load_digits()
    tfcompress.keras.utils.set_random_seed(0)
    model = models.digits_cnn(width=0.25)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    return model, x, xt[:64], yt[:64]


# int8: the builtin kernels round differently from XNNPACK by up to 2 output steps (1/256 each)
@pytest.mark.parametrize("mode, tolerance", [("float32", 1e-5), ("int8", 2 / 256 + 1e-6)])
def test_compiled_model_agrees_with_the_interpreter(digits, mode, tolerance):
    model, x, xt, yt = digits
    fb = tfcompress.convert(model, mode, representative_data=x[:64])
    report = validation.validate(fb, xt, yt, latency_runs=0, delegate_checks=False,
                                 compiled_model=("xnnpack", "builtin"), litert_benchmark=True)
    cm = report.compiled_model
    assert cm["compared"] and [r["kernel_mode"] for r in cm["runs"]] == ["xnnpack", "builtin"]
    assert all(r["error"] is None and r["samples"] == 32 for r in cm["runs"])
    assert cm["max_abs_diff"] <= tolerance
    assert all(r["argmax_agreement"] == 1.0 for r in cm["runs"])
    median = report.litert_benchmark["latency"]["median_ms"]
    assert median >= 0 and report.litert_benchmark["num_threads"] == 1
    assert "compiled_model" in report.to_dict()


def test_a_failing_runtime_is_a_finding_not_a_crash():
    rows = np.zeros((2, 1, 8, 8, 1), np.float32)
    found = runtime.run_compiled(b"\0" * 64 + b"TFL3" * 8, rows, (1, 10), np.float32)
    assert found["outputs"] is None and found["error"].startswith("CompiledModel failed")


def test_unknown_kernel_mode_is_refused():
    with pytest.raises(errors.ConfigError, match="kernel_mode 'xnn'.*xnnpack, reference, builtin"):
        runtime.run_compiled(b"", np.zeros((1, 1)), (1,), np.float32, kernel_mode="xnn")
