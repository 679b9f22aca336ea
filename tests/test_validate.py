import numpy as np
import pytest

import tfcompress
from tfcompress import errors


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
    assert report.bytes == len(float32_fb) and 0 < report.gzip_bytes < report.bytes
    assert report.latency_ms > 0 and report.num_samples == len(x)
    assert set(report.to_dict()) >= {"accuracy", "agreement", "bytes", "gzip_bytes", "latency_ms"}


def test_reference_may_be_precomputed(float32_fb, trained_cnn, digits):
    _, (x, _) = digits
    report = tfcompress.validate(float32_fb, x[:10], reference=trained_cnn.predict(x[:10], verbose=0),
                                 latency_runs=0)
    assert report.agreement == 1.0 and report.accuracy is None and report.latency_ms is None


def test_bad_inputs(float32_fb, digits):
    _, (x, _) = digits
    with pytest.raises(errors.DataError, match=r"sample shape \(4, 4, 1\).*expects \(8, 8, 1\)"):
        tfcompress.validate(float32_fb, np.zeros((3, 4, 4, 1), np.float32))
    with pytest.raises(errors.InvalidTFLiteError):
        tfcompress.validate(float32_fb[: len(float32_fb) // 3], x)
    with pytest.raises(errors.InvalidTFLiteError, match="does not exist"):
        tfcompress.validate("/nonexistent.tflite", x)
