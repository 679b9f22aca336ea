"""Running the LiteRT Quantizer on a recipe, and the calibration it needs.

- ``run_quantizer``: the quantizer on a float32 flatbuffer and a recipe, silenced (its summary
  and progress bars), calibrating where the recipe needs it (static activations, GPTQ), or with
  statistics measured before (``qsvs``);
- ``calibrate``: those statistics (``{tensor: min/max}``), measured once and reused by every
  recipe over the same float model that quantizes no more tensors;
- ``calibration_data``: the quantizer's calibration data from our representative data;
- ``chosen_ranges``: int8 activation ranges chosen by error (``activation_ranges=``, see
  ``tfcompress.ptq.activation_ranges``) written into the calibration statistics.

``tfcompress.export.lowbit.quantize`` and the mixed-precision searches run the quantizer here.
"""

import contextlib
import io
import os
import warnings
from typing import Optional

import numpy as np
from tfcompress import errors
import tfcompress._compat.litert as _litert
import tfcompress._compat.quantizer as _quantizer
import tfcompress.ptq.activation_ranges as activation_ranges_lib
from tfcompress.export.conversion import representative


@contextlib.contextmanager
def _quiet():
    """The quantizer prints a summary and tqdm bars; the library stays silent."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the calibrator's "preserve_all_tensors" warning
        yield


def run_quantizer(float32_flatbuffer: bytes, recipe: list, calibration=None, *,
                  qsvs: Optional[dict] = None) -> bytes:
    """Runs the quantizer on a recipe (calibrating when it needs to); returns the bytes.

    ``calibration`` is the quantizer's calibration data, ``{signature: [{input: batch}]}``, or
    a function that makes it (called only when the recipe needs calibration). ``qsvs``: the
    statistics ``calibrate`` measured on the same float model, used instead of calibrating.

    Raises:
        ConversionError: the quantizer rejected the recipe, or it needs calibration data.
    """
    try:
        with _quiet():
            qt = _quantizer.Quantizer(float32_flatbuffer)
            qt.load_quantization_recipe(recipe)
            result = None
            if qt.need_calibration and qsvs is not None:
                result = qsvs
            elif qt.need_calibration:
                if calibration is None:
                    raise errors.ConversionError(
                        "this recipe quantizes activations (static) or uses GPTQ, and needs "
                        "representative_data (calibration images); accepted: a numpy array, "
                        "a tf.data.Dataset or the splits returned by tfcompress.data loaders")
                data = calibration() if callable(calibration) else calibration
                result = _quantizer.calibrate(qt, data, num_threads=os.cpu_count() or 1)
            out = qt.quantize(result, enable_progress_bar=False,
                              enable_progress_report=False).quantized_model
    except errors.TfcompressError:
        raise
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise errors.ConversionError(
            f"the LiteRT Quantizer rejected the recipe: {type(e).__name__}: {e}") from e
    return _quantizer.dynamic_batch_rotations(bytes(out))


def calibrate(float32_flatbuffer: bytes, recipe: list, representative_data,
              num_samples: int = 200) -> dict:
    """The quantizer's calibration statistics (``{tensor: min/max}``) of a static recipe.

    Calibrating once and passing the result to ``run_quantizer(..., qsvs=...)`` serves every
    recipe over the same float model that quantizes no more tensors: a tensor's range does not
    depend on the width (int8 or int16) it is then quantized to.

    Raises:
        ConversionError: the quantizer rejected the recipe or the data.
    """
    data = calibration_data(float32_flatbuffer, representative_data, num_samples)
    try:
        with _quiet():
            qt = _quantizer.Quantizer(float32_flatbuffer)
            qt.load_quantization_recipe(recipe)
            return _quantizer.calibrate(qt, data, num_threads=os.cpu_count() or 1)
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise errors.ConversionError(
            f"the LiteRT Quantizer could not calibrate: {type(e).__name__}: {e}") from e


def calibration_data(float32_flatbuffer: bytes, data, num_samples: int) -> dict:
    """The quantizer's calibration data from our representative data (checked like convert's)."""
    interp = _litert.interpreter(float32_flatbuffer, delegates=False, allocate=False)
    signatures = interp.get_signature_list()
    if len(signatures) != 1 or len(next(iter(signatures.values()))["inputs"]) != 1:
        raise errors.ConversionError(
            f"calibration needs a model with one signature and one input, got {signatures}")
    key, signature = next(iter(signatures.items()))
    shape = tuple(None if d < 0 else int(d)
                  for d in interp.get_input_details()[0]["shape_signature"])
    generate = data if callable(data) else representative(data, shape, num_samples)
    return {key: [{signature["inputs"][0]: sample[0]} for sample in generate()]}


def chosen_ranges(content: bytes, recipe: list, data, num_samples: int, method: str) -> dict:
    """The quantizer's calibration statistics with each activation's range chosen by
    ``method`` (``activation_ranges.chosen``) on the same samples.

    Raises:
        ConversionError: a recipe without int8 activations, or no representative data.
    """
    bits = {(e.get("op_config") or {}).get("activation_tensor_config", {}).get("num_bits")
            for e in recipe if isinstance(e, dict)} - {None}
    if bits != {8} or data is None:
        got = "no representative_data" if bits == {8} else f"activation bits {sorted(bits)}"
        raise errors.ConversionError(
            f"activation_ranges={method!r} chooses int8 activation ranges from calibration "
            f"images; got {got}; accepted: a static_*_ai8 mode with representative_data, or "
            "'min_max'")
    qsvs = calibrate(content, recipe, data, num_samples)
    index = {d["name"]: d["index"] for d in _litert.interpreter(
        content, delegates=False, allocate=False).get_tensor_details()}
    ranges = {index[name]: (float(np.min(q["min"])), float(np.max(q["max"])))
              for name, q in qsvs.items() if name in index and "min" in q and "max" in q
              and np.size(q["min"]) == 1 and np.size(q["max"]) == 1}
    samples = calibration_data(content, data, num_samples)
    batches = [list(inputs.values()) for inputs in next(iter(samples.values()))]
    chosen = activation_ranges_lib.chosen(content, lambda: iter(batches), ranges, method)
    by_index = {i: name for name, i in index.items()}
    out = {name: dict(q) for name, q in qsvs.items()}
    for i, (low, high) in chosen.items():
        q = out[by_index[i]]
        q["min"] = np.full_like(np.asarray(q["min"]), low)
        q["max"] = np.full_like(np.asarray(q["max"]), high)
    return out
