import gzip
import os

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras
from tfcompress.export.validation import (Verifier, gpu_compatibility, parse_gpu_analysis,
                                 predict, verify, xnnpack_coverage)


@pytest.fixture(scope="module")
def float32_fb(trained_cnn):
    return tfcompress.convert(trained_cnn, "float32")


def test_float32_report_measures_parity_and_speed(float32_fb, trained_cnn, digits, tmp_path):
    _, (x, y) = digits
    path = tmp_path / "m.tflite"
    path.write_bytes(float32_fb)
    report = tfcompress.validate(str(path), x, y, reference=trained_cnn, latency_runs=5)
    keras_out = trained_cnn.predict(x, verbose=0)
    assert report.agreement == 1.0 and report.max_abs_diff < 1e-4
    assert report.accuracy == pytest.approx(float(np.mean(keras_out.argmax(-1) == y)))
    assert report.bytes == len(float32_fb) and report.num_samples == len(x)
    assert report.gzip_bytes == len(gzip.compress(float32_fb, 9, mtime=0))
    assert report.gzip_ratio is None and report.ratio is None  # no baseline given
    assert set(report.to_dict()) >= {"accuracy", "agreement", "bytes", "gzip_bytes", "latency_ms"}
    # Latency: median and p90 for 1 and 2 threads, with and without the default delegate.
    for kind in ("xnnpack", "builtin"):
        for n in (1, 2):
            t = report.latency[kind][f"threads_{n}"]
            # a 151k-parameter CNN on one 8x8 image: microseconds to a few milliseconds
            assert 1e-4 < t["median_ms"] < 50 and t["p90_ms"] < 200
    assert report.latency_ms == report.latency["xnnpack"]["threads_1"]["median_ms"]
    assert report.signature["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert report.signature["outputs"][0]["dtype"] == "float32"
    assert {k: report.xnnpack[k] for k in ("nodes", "delegated", "partitions", "all_delegated",
                                           "fallback_ops")} == {
        "nodes": 7, "delegated": 7, "partitions": 1, "all_delegated": True, "fallback_ops": {}}
    assert report.gpu["analyzer"]["compatible"] is True
    assert report.gpu["delegate"]["available"] is False
    assert "not available" in report.gpu["delegate"]["reason"]


def test_reference_may_be_precomputed(float32_fb, trained_cnn, digits):
    _, (x, _) = digits
    report = tfcompress.validate(float32_fb, x[:10], reference=trained_cnn.predict(x[:10], verbose=0),
                                 latency_runs=0)
    assert report.agreement == 1.0 and report.accuracy is None and report.latency_ms is None


def test_ratios_to_baseline(float32_fb, trained_cnn, digits):
    (xtr, _), (x, y) = digits
    fb16 = tfcompress.convert(trained_cnn, "float16")
    report = tfcompress.validate(fb16, x, y, baseline=float32_fb, latency_runs=0,
                                 delegate_checks=False)
    assert report.ratio == pytest.approx(len(fb16) / len(float32_fb))
    assert 0.45 < report.ratio < 0.55 and 0 < report.gzip_ratio < 1


def test_int16x8_falls_back_from_xnnpack(trained_cnn, digits):
    (x, _), _ = digits
    fb = tfcompress.convert(trained_cnn, "int16x8", representative_data=x[:50])
    cov = xnnpack_coverage(fb)
    assert cov["delegated"] == 0 and cov["nodes"] == sum(cov["fallback_ops"].values())
    assert cov["fallback_ops"]["CONV_2D"] == 2 and not cov["all_delegated"]


def test_int8_softmax_falls_back(trained_cnn, digits):
    (x, _), _ = digits
    cov = xnnpack_coverage(tfcompress.convert(trained_cnn, "int8", representative_data=x[:50]))
    assert cov["nodes"] == 7 and cov["delegated"] == 6 and cov["fallback_ops"] == {"SOFTMAX": 1}


def test_gpu_delegate_library_that_does_not_load(float32_fb, digits, tmp_path):
    _, (x, _) = digits
    bogus = tmp_path / "libnot_a_delegate.so"
    bogus.write_bytes(b"not a shared library")
    report = tfcompress.validate(float32_fb, x[:20], latency_runs=0, gpu_delegate=str(bogus))
    delegate = report.gpu["delegate"]
    assert delegate["available"] is False and delegate["library"] == str(bogus)
    assert delegate["reason"].startswith("not available:")


def test_gpu_analyzer_text_is_parsed(float32_fb):
    assert gpu_compatibility(float32_fb)["incompatible_ops"] == []
    text = """Subgraph#0 main(T#0) -> [T#3]
  Op#0 CUMSUM(T#0, T#1) -> [T#2]
GPU COMPATIBILITY WARNING: Not supported op CUMSUM
  Op#1 FULLY_CONNECTED(T#2, T#4, T#-1) -> [T#3]

GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 0 with TFLite runtime version 2.21.0
"""
    verdict = parse_gpu_analysis(text)
    assert verdict["compatible"] is False
    assert verdict["incompatible_ops"] == [
        {"node": 0, "op": "CUMSUM", "reason": "Not supported op CUMSUM"}]
    assert len(verdict["warnings"]) == 2


def test_bad_inputs(float32_fb, digits):
    _, (x, _) = digits
    with pytest.raises(errors.DataError, match=r"sample shape \(4, 4, 1\).*expects \(8, 8, 1\)"):
        tfcompress.validate(float32_fb, np.zeros((3, 4, 4, 1), np.float32))
    with pytest.raises(errors.InvalidTFLiteError):
        tfcompress.validate(float32_fb[: len(float32_fb) // 3], x)
    with pytest.raises(errors.InvalidTFLiteError, match="does not exist"):
        tfcompress.validate("/nonexistent.tflite", x)
    with pytest.raises(errors.InvalidTFLiteError, match="not a TFLite flatbuffer"):
        tfcompress.validate(b"\x00" * 64, x)
    with pytest.raises(errors.DataError, match="dtype"):
        tfcompress.validate(float32_fb, np.full((3, 8, 8, 1), "a"))
    with pytest.raises(errors.InvalidTFLiteError, match="is a folder; accepted: a .tflite"):
        tfcompress.validate(os.path.dirname(__file__), x)


def test_labels_and_reference_that_do_not_fit_the_model_are_one_line(float32_fb, digits):
    """Labels outside the output's classes, fractional labels on a classifier and a reference of
    another input shape are refused before anything runs, each naming the bad value."""
    _, (x, y) = digits
    for bad, value in ((y + 5, int(y.max()) + 5), (y - 3, -3)):
        with pytest.raises(errors.DataError, match=rf"hold {value}; accepted: class indices "
                                                   r"0\.\.9 \(the output has 10 classes\)"):
            tfcompress.validate(float32_fb, x, bad, latency_runs=0, delegate_checks=False)
    with pytest.raises(errors.DataError, match="not whole numbers are read as regression"):
        tfcompress.validate(float32_fb, x, y / 10, latency_runs=0, delegate_checks=False)
    inputs = tfcompress.keras.Input((16, 16, 1))
    other = tfcompress.keras.Model(inputs, tfcompress.keras.layers.Dense(10)(
        tfcompress.keras.layers.Flatten()(inputs)))
    with pytest.raises(errors.DataError, match=r"reference.*sample shape \(8, 8, 1\) but the "
                                               r"model expects \(16, 16, 1\)"):
        tfcompress.validate(float32_fb, x, y, reference=other, latency_runs=0,
                            delegate_checks=False)


def mutants(content: bytes, count: int, seed: int = 0):
    """Flatbuffers with random byte flips, overwritten runs, or truncation."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        data = bytearray(content)
        kind = i % 3
        if kind == 0:  # flip a few bytes anywhere
            for pos in rng.integers(0, len(data), rng.integers(1, 9)):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:  # overwrite a run inside the header/tables (first 4 KiB)
            start = int(rng.integers(8, min(4096, len(data) - 16)))
            data[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        else:  # truncate
            data = data[: int(rng.integers(8, len(data)))]
        out.append(bytes(data))
    return out


def test_mutated_flatbuffers_never_crash_the_process(trained_cnn, digits):
    _, (x, _) = digits
    small = tfcompress.convert(keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
         keras.layers.Dense(10)]), "float32")
    ran, rejected = 0, []
    for fb in mutants(small, 100):
        try:
            out = predict(fb, x[:4])  # each is verified in the child first
            assert out.shape[0] == 4
            ran += 1
        except (errors.InvalidTFLiteError, errors.DataError) as e:
            rejected.append(str(e))
    assert ran >= 10 and len(rejected) >= 30  # both outcomes occur (this seed: 46 ran, 54 refused)
    assert all(m.startswith(("the flatbuffer does not load or run", "not a TFLite",
                             "data has sample shape", "the flatbuffer has")) for m in rejected)


def test_verifier_reports_a_crash_without_dying():
    # A child that dies on its own is reported as a crash, and the next check starts a new one.
    with Verifier(timeout=30) as v:
        v._proc = __import__("subprocess").Popen(
            ["python3", "-c", "import os, sys; sys.stdin.buffer.read(8); os.kill(os.getpid(), 9)"],
            stdin=-1, stdout=-1)
        assert "crashed (SIGKILL)" in v.check(b"12345678")
        assert v.check(b"\x00" * 32) is not None  # a fresh child answers with an error
        good = tfcompress.convert(keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(2)]), "float32")
        assert v.check(good) is None  # ... and runs a good flatbuffer
        # the same child runs the batch predict is about to run, at that shape
        assert v.check(good, np.ones((5, 4), np.float32)) is None
        assert v.check(good, np.ones((5, 3), np.float32)).startswith("RuntimeError")
    assert verify(good) == good


def test_a_crashing_flatbuffer_is_an_error_and_the_process_lives():
    """tests/data/crash.tflite kills any process that runs it (SIGSEGV; made by
    tests/crash_fixture.py): predict and validate refuse it after their child died."""
    crash = os.path.join(os.path.dirname(__file__), "..", "data", "crash.tflite")
    with pytest.raises(errors.InvalidTFLiteError, match=r"interpreter crashed \(SIGSEGV\)"):
        predict(crash, np.zeros((2, 4, 4, 1), np.float32))
    fb = tfcompress.convert(keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2)]), "float32")
    np.testing.assert_allclose(predict(fb, np.zeros((3, 4), np.float32)), 0.0)  # still here
