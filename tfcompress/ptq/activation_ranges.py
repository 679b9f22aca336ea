"""Activation ranges chosen by quantization error, for the converter's full-integer int8.

The TFLite converter sets each activation's int8 range to the minimum and maximum it saw in
calibration, so one rare large value (an outlier image, a spike in one channel) stretches
the step of every other value of that tensor. Here each activation's range is chosen on its
calibration histogram instead:

- ``"mse"``: the range (both ends shrunk from min-max's on a grid) with the least expected
  squared error of that tensor's int8 values: clipping error outside, ``step**2 / 12``
  rounding error inside;
- ``"percentile"``: the ``PERCENTILE``-th percentile of the values (and the ``100 - PERCENTILE``-th
  for a tensor with negative values);
- ``"min_max"``: the converter's own ranges, unchanged.

What this module adds to the converter is the choice only: the calibration is the converter's
(``tfcompress._compat.converter.calibrated_model``), the values are read by running that
calibrated float model on the same samples, and the quantization is the converter's own
(``quantize_calibrated``) from the edited ranges. The model inputs' ranges are chosen alike
(an int8 input's scale is then the chosen one: inputs beyond it saturate).
``tfcompress.convert(model, "int8", representative_data=x, options={"activation_ranges":
"mse"})`` applies it; the LiteRT Quantizer's static int8-activation modes take the same option (``tfcompress.export.lowbit``: its public calibration statistics edited
with ``chosen`` before it quantizes).
"""

from typing import Callable, Iterable

import numpy as np

from tfcompress import errors
import tfcompress._compat.converter as _converter
import tfcompress._compat.litert as _litert

METHODS = ("min_max", "mse", "percentile")
PERCENTILE = 99.99  # of each activation's calibration values
BINS = 2048  # histogram bins over each tensor's calibrated min-max range
_LEVELS = 255  # int8 steps
_SHRINK = np.concatenate([np.linspace(0.02, 0.5, 25), np.linspace(0.51, 1.0, 50)])


def check_method(method: str) -> str:
    """``method`` if it is one of ``METHODS``.

    Raises:
        ConversionError: any other value (the message lists ``METHODS``).
    """
    if method not in METHODS:
        raise errors.ConversionError(errors.unknown("activation_ranges", method, METHODS))
    return method


def histograms(calibrated: bytes, samples: Iterable, ranges: dict) -> dict:
    """{tensor index: counts in ``BINS`` bins over its (min, max)} of the calibrated float
    model's tensors ``ranges`` names, over ``samples`` (model input batches, one sample each,
    as the converter's representative dataset yields them)."""
    interp = _litert.interpreter(calibrated, delegates=False, preserve_all_tensors=True)
    inputs = interp.get_input_details()
    counts = {i: np.zeros(BINS, np.int64) for i in ranges}
    for sample in samples:
        for detail, value in zip(inputs, sample):
            value = np.asarray(value)
            if tuple(value.shape) != tuple(detail["shape"]):
                interp.resize_tensor_input(detail["index"], value.shape)
                interp.allocate_tensors()
            interp.set_tensor(detail["index"], value.astype(detail["dtype"]))
        interp.invoke()
        for index, (low, high) in ranges.items():
            values = np.asarray(interp.get_tensor(index), np.float64).ravel()
            if high > low and values.size:
                bins = np.clip(((values - low) / (high - low) * BINS).astype(np.int64), 0, BINS - 1)
                counts[index] += np.bincount(bins, minlength=BINS)
    return counts


def choose(counts: np.ndarray, low: float, high: float, method: str,
           percentile: float = PERCENTILE) -> tuple:
    """The (min, max) ``method`` chooses for a tensor with histogram ``counts`` over
    ``[low, high]`` (its min-max range); it always holds 0, as the int8 grid does."""
    check_method(method)
    low, high = min(low, 0.0), max(high, 0.0)
    total = counts.sum()
    if method == "min_max" or total == 0 or high <= low:
        return low, high
    edges = np.linspace(low, high, BINS + 1)
    if method == "percentile":
        cumulative = np.cumsum(counts) / total
        top = edges[min(np.searchsorted(cumulative, percentile / 100.0) + 1, BINS)]
        bottom = edges[np.searchsorted(cumulative, 1.0 - percentile / 100.0)]
        return (min(bottom, 0.0) if low < 0 else low), max(top, 0.0)
    centers = (edges[:-1] + edges[1:]) / 2
    n = counts.astype(np.float64)
    lows = low * _SHRINK if low < 0 else np.zeros(1)
    highs = high * _SHRINK if high > 0 else np.zeros(1)
    # clipping error below each candidate min and above each candidate max (they add up)
    below = (np.square(np.minimum(centers[None, :] - lows[:, None], 0.0)) * n).sum(1)
    above = (np.square(np.maximum(centers[None, :] - highs[:, None], 0.0)) * n).sum(1)
    outside = ((centers[None, :] < lows[:, None]) * n).sum(1)[:, None] + (
        (centers[None, :] > highs[:, None]) * n).sum(1)[None, :]
    step = np.maximum(highs[None, :] - lows[:, None], 1e-12) / _LEVELS
    error = below[:, None] + above[None, :] + (total - outside) * step ** 2 / 12
    a, b = np.unravel_index(int(np.argmin(error)), error.shape)
    return float(lows[a]), float(highs[b])


def chosen(flatbuffer: bytes, samples: Callable, ranges: dict, method: str) -> dict:
    """{tensor index: (min, max)} ``method`` chooses for the float ``flatbuffer``'s tensors
    whose calibrated (min-max) ranges are ``ranges`` ({tensor index: (min, max)}), on the
    samples ``samples()`` yields."""
    check_method(method)
    if method == "min_max":
        return dict(ranges)
    counts = histograms(flatbuffer, samples(), ranges)
    return {i: choose(counts[i], low, high, method) for i, (low, high) in ranges.items()}


def chosen_ranges(calibrated: bytes, samples: Callable, method: str) -> dict:
    """{tensor index: (min, max)} ``method`` chooses for the converter's calibrated model's
    tensors (the model inputs and every activation), on the samples ``samples()`` yields."""
    return chosen(calibrated, samples, _converter.tensor_ranges(calibrated), method)


def quantize(converter, samples: Callable, method: str, io_type: str = "float32") -> bytes:
    """The converter's full-integer flatbuffer with activation ranges chosen by ``method``.

    Args:
        converter: a ``tf.lite.TFLiteConverter`` set up for int8 (optimizations, ops set and
            ``representative_dataset``).
        samples: the representative dataset (a function yielding ``[batch]`` lists).
        method: one of ``METHODS``.
        io_type: the flatbuffer's input and output type (``int8``, ``uint8`` or ``float32``).

    Raises:
        ConversionError: an unknown method.
    """
    check_method(method)
    calibrated = _converter.calibrated_model(converter)
    ranges = chosen_ranges(calibrated, samples, method)
    return _converter.quantize_calibrated(_converter.with_ranges(calibrated, ranges), io_type)
