import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import errors, models
from tfcompress.validate import interpreter


@pytest.fixture(scope="module")
def flatbuffers(trained_cnn, digits):
    (x, _), _ = digits
    return {mode: tfcompress.convert(trained_cnn, mode, representative_data=x)
            for mode in ("float32", "float16", "int8")}


def test_sizes_shrink_by_mode(flatbuffers):
    f32 = len(flatbuffers["float32"])
    assert 0.45 < len(flatbuffers["float16"]) / f32 < 0.55
    assert len(flatbuffers["int8"]) / f32 <= 0.30


def test_int8_has_int8_io(flatbuffers):
    interp = interpreter(flatbuffers["int8"])
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8


@pytest.mark.parametrize("mode", ["float32", "float16", "int8"])
def test_converted_model_matches_keras(flatbuffers, trained_cnn, digits, mode):
    _, (x, y) = digits
    report = tfcompress.validate(flatbuffers[mode], x, y, reference=trained_cnn, latency_runs=0)
    assert report.agreement >= (0.98 if mode == "int8" else 0.995)
    keras_acc = float(np.mean(trained_cnn.predict(x, verbose=0).argmax(-1) == y))
    assert abs(report.accuracy - keras_acc) <= 0.01


def test_convert_from_paths(tmp_path, trained_cnn, flatbuffers):
    path = str(tmp_path / "m.keras")
    models.save_model(trained_cnn, path)
    assert len(tfcompress.convert(path, "float32")) == len(flatbuffers["float32"])
    trained_cnn.save(str(tmp_path / "sm"), save_format="tf")
    from_sm = tfcompress.convert(str(tmp_path / "sm"), "float32")
    assert abs(len(from_sm) - len(flatbuffers["float32"])) < 0.05 * len(from_sm)


def test_bad_requests_are_clear(trained_cnn):
    with pytest.raises(errors.ConversionError, match="unknown conversion mode 'int3'; accepted: float32"):
        tfcompress.convert(trained_cnn, "int3")
    with pytest.raises(errors.ConversionError, match="needs representative_data"):
        tfcompress.convert(trained_cnn, "int8")
    with pytest.raises(errors.DataError, match=r"sample shape \(9, 9, 1\).*\(8, 8, 1\)"):
        tfcompress.convert(trained_cnn, "int8", representative_data=np.zeros((4, 9, 9, 1)))
    with pytest.raises(errors.ModelError, match="does not exist"):
        tfcompress.convert("/nonexistent/model.keras", "float32")
