"""The LiteRT Quantizer's static modes calibrate each range on all representative samples.

Its calibrator merges one step's range into the last by a moving average (made for large
batches); fed one sample per step, a regression output's range followed the last samples and
larger outputs saturated (R^2 0.15 where the converter's int8 gave 0.945).
"""

import numpy as np
import pytest

import tfcompress
from tfcompress.export.validation import predict
from tests import model_kinds


@pytest.mark.parametrize("mode", ["static_wi8_ai8", "static_wi4_ai16"])
def test_static_modes_keep_a_regression_outputs_range(mode):
    model, (x, _), (x_test, y_test) = model_kinds.trained("regression")
    flatbuffer = tfcompress.convert(model, mode, representative_data=x,
                                    representative_samples=64)
    reference = model.predict(x[:64], verbose=0)
    out = predict(flatbuffer, x_test)
    # The largest calibration output is representable (it saturated at ~60% of it before).
    assert predict(flatbuffer, x[:64]).max() == pytest.approx(reference.max(), rel=0.03)
    report = tfcompress.validate(flatbuffer, x_test, y_test, reference=model, latency_runs=0,
                                 delegate_checks=False)
    assert report.task == "regression" and report.r2 > 0.9, report.to_dict()
    assert np.abs(out - model.predict(x_test, verbose=0)).mean() < 0.05  # int4 weights: 0.03
