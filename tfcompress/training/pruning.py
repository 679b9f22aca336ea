"""Magnitude pruning over tfmot, with schedules derived from the training plan.

What this adds to ``tfmot.sparsity.keras.prune_low_magnitude``:

- the schedule comes from the fine-tuning plan (``epochs * steps_per_epoch`` or ``end_step``):
  the sparsity ramps up over the first ``RAMP_FRACTION`` of the steps with an update
  frequency that fits the plan (tfmot's default ``frequency=100`` silently leaves a short
  fine-tune at 0% sparsity), the target is reached exactly at the end of the ramp, and the
  remaining steps recover accuracy at the target; a plan too short to do that is an error;
- layer selection by name, regex, class or predicate, optionally leaving the first and last
  prunable layers dense; layers tfmot cannot prune are skipped and listed, not a crash;
- the input model is copied, never modified (tfmot wraps the caller's own layer objects);
- ``sparsity_report`` measures what was achieved from the weights, and
  ``flatbuffer_sparsity`` measures it again inside a converted ``.tflite``.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from tfcompress import errors, wrappers
import tfcompress._compat.litert as _litert
import tfcompress._compat.tfmot as _tfmot
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2
from tfcompress.wrappers import LayerSelector, is_pruned, kernels  # noqa: F401  (re-exported)

SCHEDULES = ("polynomial", "constant")
RAMP_FRACTION = 0.7  # share of the fine-tuning steps over which sparsity ramps up
MIN_UPDATES = 4  # a polynomial ramp needs at least this many mask updates
MAX_FREQUENCY = 100  # tfmot's default; never update less often than this

_sparsity = tfmot.sparsity.keras


@dataclasses.dataclass
class Schedule:
    """The schedule ``prune`` picked, with the plan it was derived from."""

    kind: str
    target_sparsity: float
    begin_step: int
    end_step: int
    frequency: int
    total_steps: int

    def tfmot(self) -> "_sparsity.PruningSchedule":
        """The tfmot ``PruningSchedule`` object."""
        if self.kind == "constant":
            return _sparsity.ConstantSparsity(
                self.target_sparsity, begin_step=self.begin_step, end_step=self.end_step,
                frequency=self.frequency)
        return _sparsity.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=self.target_sparsity,
            begin_step=self.begin_step, end_step=self.end_step, frequency=self.frequency)


def schedule_for(target_sparsity: float, *, epochs: Optional[int] = None,
                 steps_per_epoch: Optional[int] = None, end_step: Optional[int] = None,
                 schedule: str = "polynomial") -> Schedule:
    """Derives a pruning schedule that reaches ``target_sparsity`` within the training plan.

    The plan is ``epochs * steps_per_epoch`` optimizer steps, or ``end_step`` steps. tfmot
    counts steps from 1 in the first ``fit``; the mask is updated every ``frequency`` steps.

    - ``polynomial``: sparsity ramps from 0 to the target over the first ``RAMP_FRACTION`` of
      the steps in at least ``MIN_UPDATES`` updates, and holds there for the rest.
    - ``constant``: the target from the first step, re-applied every ``frequency`` steps.

    Raises:
        ConfigError: a bad target, an unknown schedule, no plan, or a plan too short.
    """
    check_options(target_sparsity, schedule)
    if end_step is not None:
        total = int(end_step)
    elif epochs is not None and steps_per_epoch is not None:
        total = int(epochs) * int(steps_per_epoch)
    else:
        raise errors.ConfigError(
            "prune needs the fine-tuning plan to derive its schedule; accepted: epochs= and "
            "steps_per_epoch= (optimizer steps per epoch: ceil(samples / batch_size)), or "
            "end_step= (total optimizer steps)")
    if total < 1:
        raise errors.ConfigError(f"the fine-tuning plan has {total} steps; accepted: >= 1")
    if schedule == "constant":
        frequency = max(1, min(MAX_FREQUENCY, total // 10))
        return Schedule("constant", float(target_sparsity), 0, total, frequency, total)
    ramp = int(total * RAMP_FRACTION)
    if ramp < MIN_UPDATES:
        raise errors.ConfigError(
            f"a {total}-step fine-tune is too short for a polynomial pruning schedule: it "
            f"ramps over {RAMP_FRACTION:.0%} of the steps in at least {MIN_UPDATES} updates, "
            f"so it needs >= {int(np.ceil(MIN_UPDATES / RAMP_FRACTION))} steps; accepted: "
            "more epochs or steps, or schedule='constant'")
    frequency = max(1, min(MAX_FREQUENCY, ramp // 16))
    end = (ramp // frequency) * frequency  # the last update lands exactly on end_step
    return Schedule("polynomial", float(target_sparsity), 0, end, frequency, total)


def check_options(target_sparsity, schedule: str = "polynomial", m_by_n=None) -> None:
    """Refuses what ``prune`` would refuse before it sees a model or a plan (a recipe checks
    its values so before anything trains).

    Raises:
        ConfigError: a target outside (0, 1), an unknown schedule, or a bad ``m_by_n``.
    """
    try:  # a string such as "0.5" or "abc" is refused, not parsed
        ok = not isinstance(target_sparsity, (str, bytes)) and 0.0 < float(target_sparsity) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise errors.ConfigError(
            f"target_sparsity={target_sparsity!r}; accepted: a number in (0, 1)")
    if schedule not in SCHEDULES:
        raise errors.ConfigError(errors.unknown("pruning schedule", schedule, SCHEDULES))
    _parse_m_by_n(m_by_n)


def _m_by_n_supported(layer) -> bool:
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not isinstance(
        layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose))


def _parse_m_by_n(m_by_n) -> Optional[tuple]:
    if m_by_n in (None, "", ()):
        return None
    if isinstance(m_by_n, str):
        parts = m_by_n.split(":")
    else:
        parts = list(m_by_n)
    try:
        m, n = (int(p) for p in parts)
    except (TypeError, ValueError):
        m = n = -1
    if not 0 < m < n:
        raise errors.ConfigError(
            f"m_by_n={m_by_n!r}; accepted: (m, n) or 'm:n' with 0 < m < n, e.g. (2, 4)")
    return (m, n)


def prune_layer(layer, target_sparsity: float, *, epochs: Optional[int] = None,
                steps_per_epoch: Optional[int] = None, end_step: Optional[int] = None,
                schedule: str = "polynomial", m_by_n=None):
    """Wraps one layer for pruning with a schedule derived from the plan (see ``prune``).

    The layer-level route for subclassed models: wrap layers in the model's ``__init__``.
    """
    plan = schedule_for(target_sparsity, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        end_step=end_step, schedule=schedule)
    return _sparsity.prune_low_magnitude(layer, pruning_schedule=plan.tfmot(),
                                         sparsity_m_by_n=_parse_m_by_n(m_by_n))


def prune(
    model,
    target_sparsity: float,
    *,
    epochs: Optional[int] = None,
    steps_per_epoch: Optional[int] = None,
    end_step: Optional[int] = None,
    schedule: str = "polynomial",
    layers: LayerSelector = None,
    m_by_n=None,
    keep_first_last: bool = False,
    policy: Optional[str] = None,
) -> keras.Model:
    """Wraps a trained model for magnitude pruning during its fine-tuning.

    Fit the result with ``tfcompress.callbacks.Pruning()`` (or tfmot's ``UpdatePruningStep``)
    for the plan given here, then ``tfcompress.strip`` it. The input model is not modified.

    Args:
        model: a trained Sequential or Functional tf_keras model.
        target_sparsity: share of zeros per pruned kernel at the end, in (0, 1).
        epochs, steps_per_epoch: the fine-tuning plan; or ``end_step``: its total steps.
        schedule: ``polynomial`` (ramp up, then hold) or ``constant``; see ``schedule_for``.
        layers: which layers to prune: None (all prunable), a regex matched against full
            layer names, a list of names and/or layer classes, or a function layer -> bool.
        m_by_n: structured sparsity, e.g. ``(2, 4)`` or ``"2:4"``: m zeros in every n
            consecutive weights (Conv2D and Dense only; others are skipped). The sparsity is
            then m/n, set at the first step; ``target_sparsity`` is ignored.
        keep_first_last: leave the first and last layers with weights dense.
        policy: ``"xnnpack"``: tfmot's ``PruneForLatencyOnXNNPack`` (only the 1x1 convolutions
            XNNPACK's sparse kernels can use; the model must fit that policy).

    Returns:
        A copy of the model with pruning wrappers. ``pruning_info(result)`` tells which
        layers were pruned and skipped and the schedule used.

    Raises:
        ConfigError: bad target, schedule, plan, m_by_n, policy or layer selection.
        ModelError: a subclassed model (the message explains the layer-level route).
    """
    model = wrappers.check_functional(model, "prune")
    plan, pair, chosen = check(model, target_sparsity, epochs=epochs,
                               steps_per_epoch=steps_per_epoch, end_step=end_step,
                               schedule=schedule, layers=layers, m_by_n=m_by_n,
                               keep_first_last=keep_first_last, policy=policy, warn=True)
    pruning_schedule = plan.tfmot()
    pruned = wrappers.wrap_layers(model, chosen, lambda layer: _sparsity.prune_low_magnitude(
        layer, pruning_schedule=pruning_schedule, sparsity_m_by_n=pair))
    logging.info("pruning %s with %s", chosen, plan)
    wrappers.warn_left_alone(pruning_info(pruned)["left_alone"], "pruned")
    return pruned


def check(model, target_sparsity: float, *, epochs: Optional[int] = None,
          steps_per_epoch: Optional[int] = None, end_step: Optional[int] = None,
          schedule: str = "polynomial", layers: LayerSelector = None, m_by_n=None,
          keep_first_last: bool = False, policy: Optional[str] = None,
          warn: bool = False) -> tuple:
    """Everything ``prune`` refuses (same arguments), wrapping nothing: a recipe calls it on
    its baseline before that trains. ``warn``: log the layers left unpruned.

    Returns:
        (the ``Schedule``, the ``m_by_n`` pair or None, the names of the layers to prune).
    """
    plan = schedule_for(target_sparsity, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        end_step=end_step, schedule=schedule)
    pair = _parse_m_by_n(m_by_n)
    supports = _tfmot.prunable
    if pair:
        supports = lambda l: _tfmot.prunable(l) and _m_by_n_supported(l)  # noqa: E731
    if policy is not None:
        if policy != "xnnpack":
            raise errors.ConfigError(errors.unknown("pruning policy", policy, ["xnnpack"]))
        xnn = _sparsity.PruneForLatencyOnXNNPack()
        try:
            xnn.ensure_model_supports_pruning(model)
        except ValueError as e:
            raise errors.ModelError(
                f"model {model.name!r} does not fit the XNNPACK latency policy: {e}") from e
        base = supports
        supports = lambda l: base(l) and xnn.allow_pruning(l)  # noqa: E731
    chosen, _ = wrappers.select_layers(model, layers, supports, keep_first_last=keep_first_last,
                                       warn=warn)
    return plan, pair, chosen


def pruning_info(model) -> dict:
    """What pruning wrappers ``model`` holds, read from the wrappers themselves (so it holds
    for a model saved and loaded again): ``{"pruned": [names of the layers whose weights are
    pruned], "skipped": {name: why} (also the layers tfmot wraps but never prunes, such as
    DepthwiseConv2D and BatchNormalization),
    "left_alone": [(name, share of the parameters), ...] for skipped layers holding more than
    ``wrappers.LEFT_ALONE_SHARE`` each, "schedule": {"kind", "final_sparsity", "begin_step",
    "end_step", "frequency", ...}, "m_by_n": (m, n) or None}``; {} for a model without
    pruning wrappers."""
    wrapped, skipped = wrappers.wrapped_layers(model, _tfmot.PruneWrapper, _tfmot.prunable,
                                               "pruned")
    if not is_pruned(model):
        return {}
    first = next(l for l in model.layers if isinstance(l, _tfmot.PruneWrapper))
    schedule = first.pruning_schedule.get_config()
    kind = "constant" if schedule["class_name"] == "ConstantSparsity" else "polynomial"
    pair = first.sparsity_m_by_n
    return {"pruned": [l.layer.name for l in wrapped], "skipped": skipped,
            "left_alone": wrappers.left_alone(model, skipped) if skipped else [],
            "schedule": {"kind": kind, **schedule["config"]},
            "m_by_n": tuple(pair) if pair else None}


def sparsity_report(model) -> dict:
    """Share of exact zeros per kernel, per layer and over all kernels, measured from the weights.

    Every kernel counts (see ``wrappers.layer_kernels``): Dense/Conv1D/2D/3D/EinsumDense kernels,
    Embedding tables, both kernels of LSTM/GRU/SimpleRNN cells (both directions of a
    Bidirectional), MultiHeadAttention's query/key/value/output kernels. Biases and
    normalization parameters are never pruned and never count. A model still holding pruning
    wrappers is measured through them (tfmot applies the masks to the kernels during training
    and at each epoch end).

    Returns:
        ``{"layers": {layer name: zeros / weights over its kernels}, "kernels": {weight name:
        sparsity}, "global": sparsity, "zeros": n, "weights": n}``.
    """
    model = ensure_keras2(model)
    per_layer, per_kernel, zeros, total = {}, {}, 0, 0
    for layer_name, found in kernels(model).items():
        layer_zeros = layer_total = 0
        for name, kernel in found.items():
            z = int(np.count_nonzero(kernel == 0))
            per_kernel[name] = z / kernel.size
            layer_zeros, layer_total = layer_zeros + z, layer_total + kernel.size
        per_layer[layer_name] = layer_zeros / layer_total
        zeros, total = zeros + layer_zeros, total + layer_total
    return {"layers": per_layer, "kernels": per_kernel,
            "global": zeros / total if total else 0.0, "zeros": zeros, "weights": total}


def flatbuffer_sparsity(tflite, *, min_size: int = 16) -> dict:
    """Zeros and distinct values of each constant weight tensor inside a ``.tflite``.

    Reads the constant tensors (2-D or more, at least ``min_size`` elements: kernels, not
    biases or shapes) with the LiteRT interpreter, so it shows what really reached the
    flatbuffer, int8 or float. For int8 a zero is the zero point (0 for weights). With
    per-channel quantization (convolutions) each output channel has its own scale, so a
    shared float value gets a different int8 code per channel: ``distinct_per_channel`` is
    then the figure that shows clustering (the largest count over the channels).

    Returns:
        ``{tensor name: {"dtype", "shape", "zeros", "distinct", "distinct_per_channel"}}``.
    """
    interp = _litert.interpreter(tflite)
    ops = _litert.ops(interp)  # no public listing of which tensors are constants
    produced = {i for op in ops for i in op["outputs"]}
    produced |= {d["index"] for d in interp.get_input_details()}
    constants = {i for op in ops for i in op["inputs"] if i >= 0 and i not in produced}
    out = {}
    for detail in interp.get_tensor_details():
        if detail["index"] not in constants or len(detail["shape"]) < 2 \
                or int(np.prod(detail["shape"])) < min_size:
            continue
        try:
            value = interp.get_tensor(detail["index"])
        except ValueError:
            continue
        params = detail.get("quantization_parameters", {})
        zero_points = np.asarray(params.get("zero_points", []))
        axis = int(params.get("quantized_dimension", 0))
        if len(zero_points) > 1:  # per channel
            channels = np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)
            zeros = np.count_nonzero(channels == zero_points.reshape(-1, 1))
            per_channel = max(len(np.unique(c)) for c in channels)
        else:
            zero = int(zero_points[0]) if len(zero_points) else 0
            zeros = np.count_nonzero(value == zero)
            per_channel = int(len(np.unique(value)))
        out[detail["name"]] = {
            "dtype": str(value.dtype), "shape": [int(d) for d in value.shape],
            "zeros": float(zeros / value.size),
            "distinct": int(len(np.unique(value))),
            "distinct_per_channel": int(per_channel),
        }
    return out
