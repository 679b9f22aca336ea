"""int16 activations only where they pay: a mixed a16w8 / a8w8 full-integer model.

Full int8 (``static_wi8_ai8``) rounds every activation to 256 levels; int16 activations
(``static_wi8_ai16``, or the converter's ``int16x8``) keep the float model's decisions better
but run slower: LiteRT's XNNPACK delegate has no int16 kernels, so those ops fall back to the
builtin ones. ``mixed_activations`` lifts to int16 only the ops whose activations need it,
through the LiteRT Quantizer's per-op recipe entries (the later entry wins: the int8 recipe of
every op, then one ``static`` entry with 16-bit activations per chosen op, selected by its
output names).

The unit of choice is an activation tensor: a tensor is stored in int16 only when the op that
makes it and every op that reads it run with int16 activations (where widths differ the
quantizer inserts a QUANTIZE op that rounds it to int8 again). So each tensor's unit is its
producer and its consumers; lifting one unit alone (the rest int8) measures, on the LiteRT
interpreter, how much output error that tensor's int8 rounding costs (above ``MAX_UNITS``, as in
a recurrent layer unrolled over a long sequence, the units of one set of Keras layers are one
unit: each costs a quantization). Units are added by that
gain per op each adds (the largest first), each step quantized and measured for real, until
the figure against the float model (agreement; R^2 for regression) reaches the goal:
``target``, or the file with every op that can take int16 activations in int16 less
``tolerance``; ``max_ops`` caps the ops lifted. Where int8 already reaches ``target`` (or
``1 - tolerance``, above any goal the all-int16 file can set), no unit is measured. Calibration runs once (a tensor's range does
not depend on its width); activation ranges are by default the extremes over all calibration
samples, as the TFLite converter takes them (``ranges="moving_average"``: the quantizer's own
average of each sample's extremes; only that one is replayed by the saved recipe alone).

Why few: XNNPACK takes no int16 op, and LiteRT's builtin int16 kernels are slow. On fer's
emotion model (benchmarks/fer_trial.py --activations, 1 thread, x86) int8 runs in 0.6 ms with
XNNPACK, all-int16 in ~26 ms, and a mixed file with 9 of 33 ops in int16 in ~6 ms.

Ops whose type the quantizer has no int16-activation config for, or that LiteRT cannot run
with int16 activations (no kernel), are skipped with a one-line reason (``skipped``). The
choice, the int16 ops and the figures travel in the flatbuffer's metadata
(``conversion_info(...)["facts"]["mixed_activations"]``); ``activation_types`` reads the
stored activation type of every op back.
"""

import dataclasses
import json
import math
import os
import re
from typing import Optional, Union

import numpy as np

from tfcompress import _io, errors
import tfcompress._compat.litert as _litert
import tfcompress._compat.quantizer as _quantizer
import tfcompress._compat.schema as _schema
import tfcompress.export.lowbit as lowbit
import tfcompress.export.lowbit_algorithms as lowbit_algorithms
import tfcompress.export.lowbit_calibration as lowbit_calibration
import tfcompress.export.mixed as mixed
import tfcompress.export.modes as modes
import tfcompress.tasks as tasks_lib
from tfcompress._compat.litert import load_flatbuffer
import tfcompress.export.recurrent as recurrent
from tfcompress.export.closeness import output_tasks, outputs_closeness
from tfcompress.export.conversion import (convert, float32_flatbuffer, representative,
                                          section_options)
from tfcompress.export.validation import predict_by_name
from tfcompress.keras3 import ensure_keras2

BASE_MODE, WIDE_MODE = "static_wi8_ai8", "static_wi8_ai16"
_REQUANTIZE = ("QUANTIZE", "DEQUANTIZE")
DEFAULT_TOLERANCE = 0.005
RANGES = ("min_max", "moving_average")
MULTI_OUTPUT = "multi-output"  # the task of a model with several outputs (``_judge``)
_CHUNK = 32  # calibration samples run at once for ``min_max`` ranges
MAX_UNITS = 48
"""Above this many units (a recurrent layer unrolled over a long sequence has a few per step),
units are merged per set of Keras layers they touch (``by_layer``): each costs one quantization
and one run, so a 64-step bidirectional GRU measures a handful of units, not hundreds."""


@dataclasses.dataclass(frozen=True)
class Op:
    """An op of the float graph as recipes select it.

    Attributes:
        index: its position in the main graph.
        op: the TFLite op type (``CONV_2D``...).
        name: a short name (the Keras layer its output comes from).
        scope: its output tensor names as the quantizer matches recipe regexes against them.
    """

    index: int
    op: str
    name: str
    scope: str

    @property
    def regex(self) -> str:
        """A recipe regex that selects this op alone."""
        return "^" + re.escape(self.scope) + "$"

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "scope": self.scope}


def _short_name(scope: str) -> str:
    """The Keras layer an op's output comes from: ``model/layer/op...`` -> ``layer``."""
    comps = scope.split(";")[0].split("/")
    return comps[1] if len(comps) >= 3 else comps[-2] if len(comps) == 2 else comps[0]


def _graph(flatbuffer: bytes):
    model = _quantizer.read_model(flatbuffer)
    return model, model.subgraphs[0]


def graph_ops(flatbuffer: Union[bytes, str]) -> list[Op]:
    """The ops of a flatbuffer's main graph (QUANTIZE and DEQUANTIZE left out), in graph order."""
    model, graph = _graph(load_flatbuffer(flatbuffer))
    out = []
    for i, op in enumerate(graph.operators):
        kind = _quantizer.op_type(model, op)
        if kind not in _REQUANTIZE:
            scope = _quantizer.op_scope(op, graph.tensors)
            out.append(Op(i, kind, _short_name(scope), scope))
    return out


def activation_types(flatbuffer: Union[bytes, str]) -> list[dict]:
    """Per op (QUANTIZE and DEQUANTIZE left out): ``{"name", "op", "scope", "type"}``, the stored
    type of its first output (``int8``, ``int16``, ``float32``), read back from the flatbuffer."""
    model, graph = _graph(load_flatbuffer(flatbuffer))
    rows = []
    for op in graph.operators:
        kind = _quantizer.op_type(model, op)
        if kind in _REQUANTIZE:
            continue
        scope = _quantizer.op_scope(op, graph.tensors)
        rows.append({"name": _short_name(scope), "op": kind, "scope": scope,
                     "type": _schema.type_name(graph.tensors[int(op.outputs[0])].type)})
    return rows


def units(float32: bytes) -> list[tuple]:
    """The activation tensors' units: per tensor, the indices of the ops that must run with int16
    activations for it to be stored in int16 (its producer and its consumers), deduplicated, in
    graph order."""
    model, graph = _graph(float32)
    producer, consumers = {}, {}
    for i, op in enumerate(graph.operators):
        for t in op.outputs:
            producer[int(t)] = i
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(int(t), set()).add(i)
    found = []
    for t in sorted(set(producer) | {int(t) for t in graph.inputs}):
        ops = frozenset(({producer[t]} if t in producer else set()) | consumers.get(t, set()))
        if ops and ops not in found:
            found.append(ops)
    return [tuple(sorted(u)) for u in sorted(found, key=min)]


def by_layer(unit_list: list, by_index: dict) -> list[tuple]:
    """Units merged per set of Keras layers their ops belong to (``Op.name``), in graph order."""
    merged = {}
    for unit in unit_list:
        key = frozenset(by_index[i].name for i in unit if i in by_index)
        merged.setdefault(key, set()).update(unit)
    return [tuple(sorted(u)) for u in sorted(merged.values(), key=min)]


def _wide_entry(op: Op, algorithm: str) -> dict:
    return lowbit.entry(op.regex, 8, execution="static", operation=op.op, activation_bits=16,
                        algorithm=algorithm)


def _quantizable(ops: list, algorithm: str) -> tuple[set, list]:
    """(indices of the ops the quantizer can give int16 activations, lines for the others)."""
    ok, skipped = set(), []
    for op in ops:
        try:
            _wide_entry(op, algorithm)
            ok.add(op.index)
        except ValueError:
            skipped.append(f"{op.name} ({op.op}): the LiteRT Quantizer has no int16-activation "
                           f"config for {op.op}; it keeps the int8 recipe's type")
    return ok, skipped


# ---------------------------------------------------------------- the result

@dataclasses.dataclass
class MixedActivationsResult:
    """What ``mixed_activations`` chose and measured; ``to_dict()`` for JSON.

    Attributes:
        flatbuffer: the mixed a16w8/a8w8 model.
        recipe: the LiteRT Quantizer recipe that makes it from the float32 flatbuffer.
        int16_ops: the ops lifted to int16 activations (``Op.to_dict`` rows), in graph order;
            read back from the flatbuffer.
        figure: the figure judged (``agreement``; ``r2_vs_float`` for regression; for several
            outputs ``closeness``, the mean over outputs of each one's closeness).
        goal: the figure the choice aimed at; meets_goal: whether it reached it.
        measured: ``{"int8", "int16", "mixed"}``: each file's figure, mse and bytes on the
            judging data (``int16``: every op that can take int16 activations in int16).
        units: per unit (its ops, the gain in output mse when it alone is int16), the order tried.
        steps: per greedy step, the ops in int16 and the figure and mse measured.
        skipped: one line per op left at int8 (no quantizer config, no LiteRT int16 kernel).
        ops_total: the ops of the graph (QUANTIZE/DEQUANTIZE left out); task: the task judged.
    """

    flatbuffer: bytes
    recipe: list
    int16_ops: list
    figure: str
    goal: float
    meets_goal: bool
    measured: dict
    units: list
    steps: list
    skipped: list
    ops_total: int
    task: str

    @property
    def bytes(self) -> int:
        return len(self.flatbuffer)

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "flatbuffer"}
        out["bytes"] = self.bytes
        return out

    def facts(self) -> dict:
        """The short form kept in the flatbuffer's metadata (no per-unit measurements)."""
        return {"int16_ops": [o["name"] + ":" + o["op"] for o in self.int16_ops],
                "ops_total": self.ops_total, "figure": self.figure, "goal": self.goal,
                "meets_goal": self.meets_goal,
                "measured": {k: {"figure": v["figure"], "bytes": v["bytes"]}
                             for k, v in self.measured.items()},
                "skipped": self.skipped}

    def save(self, directory: str) -> dict:
        """Writes model.tflite, recipe.json and mixed_activations.json; returns their paths."""
        paths = {name: os.path.join(directory, name)
                 for name in ("model.tflite", "recipe.json", "mixed_activations.json")}
        _io.write_bytes(paths["model.tflite"], self.flatbuffer)
        lowbit.save_recipe(self.recipe, paths["recipe.json"])
        _io.write_text(paths["mixed_activations.json"],
                       json.dumps(self.to_dict(), indent=2, default=str))
        return paths


# ---------------------------------------------------------------- the choice

def check_options(target=None, tolerance=DEFAULT_TOLERANCE, max_ops=None,
                  algorithm: str = "min_max", ranges: str = "min_max") -> None:
    """Raises ConversionError (one line) for a value the mode cannot take."""
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not 0 < target <= 1):
        raise errors.ConversionError(
            f"target={target!r}; accepted: the agreement (R^2 for regression) to reach against "
            "the float model, a number in (0, 1], or None (the all-int16 file less tolerance)")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
            0 <= tolerance < 1):
        raise errors.ConversionError(
            f"tolerance={tolerance!r}; accepted: a number in [0, 1), the agreement the mixed file "
            "may lose against the all-int16 file")
    if max_ops is not None and (isinstance(max_ops, bool) or not isinstance(max_ops, int)
                                or max_ops < 1):
        raise errors.ConversionError(
            f"max_ops={max_ops!r}; accepted: a whole number >= 1 of ops to lift to int16 "
            "activations, or None (no limit)")
    fits = [a for a in lowbit_algorithms.ALGORITHMS
            if BASE_MODE in lowbit_algorithms.algorithm_modes(a)]
    if algorithm not in fits:  # e.g. gptq: the quantizer's static modes have none
        raise errors.ConversionError(
            errors.unknown("quantizer algorithm", algorithm, fits)
            + (" (static modes)" if algorithm in lowbit_algorithms.ALGORITHMS else ""))
    if ranges not in RANGES:
        raise errors.ConversionError(errors.unknown("activation ranges", ranges, RANGES))


def mixed_activations(
    model_or_flatbuffer,
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    *,
    representative_data,
    target: Optional[float] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_ops: Optional[int] = None,
    algorithm: str = "min_max",
    ranges: str = "min_max",
    representative_samples: int = 200,
    task: Optional[str] = None,
) -> MixedActivationsResult:
    """The fewest ops with int16 activations (int8 elsewhere) that keep the float model's outputs.

    Args:
        model_or_flatbuffer: a Keras model (or path) or its float32 flatbuffer.
        x: validation inputs the choice is judged on (held out from the report's test data);
            y: their labels, optional (only the figure against the float model is judged).
        representative_data: calibration inputs (as ``convert`` takes them).
        target: the figure to reach against the float model (agreement; R^2 for regression),
            in (0, 1]; None: the all-int16 file's figure less ``tolerance``.
        tolerance: how far below the all-int16 file the mixed file may stay (without target).
        max_ops: the most ops lifted to int16 (a budget); the goal may then be missed
            (``meets_goal``).
        algorithm: the quantizer's range algorithm for weights (``min_max`` or ``octav``).
        ranges: activation ranges: ``min_max``, the extremes over all calibration samples (as
            the TFLite converter's ``int8``/``int16x8`` take them), or ``moving_average``, the
            quantizer's own (a moving average of each sample's extremes: it clips the tails,
            which can help int8 and costs int16 its headroom).
        representative_samples: how many samples calibrate.
        task: the model's task (``tasks.infer`` from ``y`` and the float outputs when None).
            A model with several outputs (``y`` a list in output order or a dict by name, or
            None) is judged on the mean over its outputs of each one's closeness to the float
            model (agreement, or R^2 for a regression output), each output's task inferred.

    Returns:
        A MixedActivationsResult; its flatbuffer has been run on LiteRT.

    Raises:
        ConversionError: a bad option value, no calibration data, a model the quantizer rejects.
        DataError: ``x`` does not fit the model, or ``y`` holds not one label array per output.
    """
    check_options(target, tolerance, max_ops, algorithm, ranges)
    if representative_data is None:
        raise errors.ConversionError(
            "mixed_a16w8 needs representative_data (calibration inputs); accepted: a numpy "
            "array, a tf.data.Dataset or the splits returned by tfcompress.data loaders")
    f32 = _quantizer.splits_for_quantizer(_float32(model_or_flatbuffer))  # as lowbit.quantize
    task, figure, judge = _judge(f32, x, y, task)
    ops = graph_ops(f32)
    by_index = {op.index: op for op in ops}
    wide, skipped = _quantizable(ops, algorithm)
    base = lowbit.make_recipe(f32, BASE_MODE, algorithm=algorithm)
    qsvs = _ranges(f32, lowbit.make_recipe(f32, WIDE_MODE, algorithm=algorithm),
                   representative_data, representative_samples, ranges)

    def measure(chosen) -> tuple:
        recipe = base + [_wide_entry(by_index[i], algorithm) for i in sorted(chosen)]
        fb = lowbit.with_recipe(lowbit_calibration.run_quantizer(f32, recipe, qsvs=qsvs), recipe)
        row = judge(fb)
        return fb, recipe, {"figure": row[figure], "mse": row["mse"], "bytes": len(fb)}

    int8_fb, _, int8_row = measure(())
    rows, int16_row = [], None
    if wide and int8_row["figure"] >= (1.0 - tolerance if target is None else float(target)):
        try:  # int8 meets any goal this call can set: only the all-int16 figure is reported
            _, _, int16_row = measure(wide)
        except (errors.InvalidTFLiteError, errors.ConversionError):
            pass  # an op LiteRT cannot run in int16: the unit trials below find it
    if int16_row is None:
        unit_list = units(f32)
        if len(unit_list) > MAX_UNITS:
            unit_list = by_layer(unit_list, by_index)
        rows, runnable = _unit_gains(unit_list, by_index, wide, measure, int8_row, skipped)
        _, _, int16_row = measure(runnable) if runnable else (None, None, int8_row)
    goal = float(target) if target is not None else int16_row["figure"] - tolerance
    best, steps = (frozenset(), int8_fb, base, int8_row), []
    if int8_row["figure"] < goal:
        best, steps = _greedy(rows, by_index, measure, goal, max_ops, best)
    chosen, flatbuffer, recipe, row = best
    read_back = {r["scope"]: r["type"] for r in activation_types(flatbuffer)}
    int16_ops = [by_index[i].to_dict() for i in sorted(chosen)
                 if read_back.get(by_index[i].scope) == "int16"]
    result = MixedActivationsResult(
        flatbuffer=flatbuffer, recipe=recipe, int16_ops=int16_ops, figure=figure,
        goal=goal, meets_goal=row["figure"] >= goal,
        measured={"int8": int8_row, "int16": int16_row, "mixed": row}, units=rows,
        steps=steps, skipped=skipped, ops_total=len(ops), task=task)
    result.flatbuffer = _litert.with_facts(flatbuffer, mixed_activations=result.facts())
    return result


def _judge(f32: bytes, x, y, task: Optional[str]) -> tuple:
    """``(task, figure, row(flatbuffer))``: what the choice is judged on, against the float
    model's outputs on ``x``. One output: the task's figure (agreement; R^2 for regression) and
    the mean squared output error (``mixed._metrics``). Several: ``"closeness"``, the mean over
    the outputs of each output's closeness with its own task, and the mean of their squared
    errors (``closeness.outputs_closeness``, as ``convert(recovery=True)`` judges them).

    Raises:
        ConversionError: a single ``task`` for a model with several outputs.
        DataError: labels that are not one per output.
    """
    references = predict_by_name(f32, x)
    if len(references) == 1:
        reference = next(iter(references.values()))
        task = tasks_lib.infer(y, reference, tasks_lib.of_output(task, next(iter(references))))
        return task, mixed._FIGURES[task][1], lambda fb: mixed._metrics(fb, x, reference, y, task)
    if isinstance(task, str):
        raise errors.ConversionError(
            f"task={task!r} for a model with {len(references)} outputs; accepted: None (each "
            "output's task is inferred from its labels and outputs) or {output name: task}")
    tasks = output_tasks(references, y, task)

    def row(fb: bytes) -> dict:
        got = outputs_closeness(fb, x, references, tasks)
        return {"closeness": got["closeness"], "mse": got["output_error"]}
    return MULTI_OUTPUT, "closeness", row


def _ranges(f32: bytes, recipe: list, data, samples: int, ranges: str) -> dict:
    """The quantizer's calibration statistics: its own (``moving_average``), or the extremes
    over every calibration sample (``min_max``: each chunk calibrated alone is one update, so
    its range is the chunk's; chunks merge by min and max). A model with a fixed batch
    (recurrent ones) gets the quantizer's own."""
    interp = _litert.interpreter(f32, delegates=False, allocate=False)
    shape = [int(d) for d in interp.get_input_details()[0]["shape_signature"]]
    if ranges == "moving_average" or shape[0] > 0 or callable(data):
        return lowbit_calibration.calibrate(f32, recipe, data, samples)
    x = np.concatenate([s[0] for s in representative(
        data, tuple(None if d < 0 else d for d in shape), samples)()])
    merged = {}
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK]
        got = lowbit_calibration.calibrate(f32, recipe, lambda chunk=chunk: [[chunk]],
                                           len(chunk))
        for name, qsv in got.items():
            if name not in merged or not merged[name]:
                merged[name] = dict(qsv)
            elif qsv:
                merged[name]["min"] = np.minimum(merged[name]["min"], qsv["min"])
                merged[name]["max"] = np.maximum(merged[name]["max"], qsv["max"])
    return merged


def _float32(model_or_flatbuffer) -> bytes:
    """The float32 flatbuffer the quantizer takes: a Keras model's through
    ``recurrent.for_converter`` (a GRU/SimpleRNN unrolled, as ``convert(model, "mixed_a16w8")``
    does; a recurrent layer it cannot take refused in one line)."""
    if isinstance(model_or_flatbuffer, (bytes, bytearray, memoryview)) or (
            isinstance(model_or_flatbuffer, (str, os.PathLike))
            and str(model_or_flatbuffer).endswith(".tflite")):
        return load_flatbuffer(model_or_flatbuffer)
    if not isinstance(model_or_flatbuffer, (str, os.PathLike)):  # a Keras 2 or 3 model
        model_or_flatbuffer = recurrent.for_converter(ensure_keras2(model_or_flatbuffer),
                                                      "mixed_a16w8")
    return convert(model_or_flatbuffer, "float32")


def _unit_gains(unit_list, by_index, wide, measure, int8_row, skipped) -> tuple:
    """Each unit alone in int16: its gain in output mse over the int8 file, largest first; and
    the set of ops that LiteRT ran in int16 (lines in ``skipped`` for those it could not)."""
    rows, runnable, refused, tried = [], set(), set(), set()
    for unit in unit_list:
        unit = tuple(i for i in unit if i in by_index and i in wide)
        if not unit or unit in tried or any(i in refused for i in unit):
            continue
        tried.add(unit)
        try:
            fb, _, row = measure(unit)
        except (errors.InvalidTFLiteError, errors.ConversionError):
            # find the op LiteRT (or the quantizer) refuses: try each op of the unit alone
            for i in unit:
                if i in runnable or i in refused:
                    continue
                try:
                    measure((i,))
                    runnable.add(i)
                except (errors.InvalidTFLiteError, errors.ConversionError) as one:
                    refused.add(i)
                    skipped.append(f"{by_index[i].name} ({by_index[i].op}): LiteRT cannot run it "
                                   f"with int16 activations ({str(one).splitlines()[0][:160]}); "
                                   "it stays int8")
            continue
        types = {r["scope"]: r["type"] for r in activation_types(fb)}
        if any(types.get(by_index[i].scope) != "int16" for i in unit):
            continue  # the quantizer kept some op of it at int8: nothing to choose
        runnable.update(unit)
        gain = int8_row["mse"] - row["mse"] if math.isfinite(row["mse"]) else -math.inf
        rows.append({"ops": [by_index[i].name + ":" + by_index[i].op for i in unit],
                     "indices": list(unit), "gain_mse": gain, "figure": row["figure"]})
    rows.sort(key=lambda r: -r["gain_mse"])
    return rows, runnable - refused


def _next_unit(rows: list, chosen: frozenset, max_ops: Optional[int]) -> Optional[dict]:
    """The unit with the most gain per op it adds to ``chosen`` (positive gains only; units that
    add nothing, or more than ``max_ops`` allows, left out), or None."""
    best, best_rate = None, 0.0
    for row in rows:
        added = set(row["indices"]) - chosen
        if row["gain_mse"] <= 0 or not added or (
                max_ops is not None and len(chosen) + len(added) > max_ops):
            continue
        rate = row["gain_mse"] / len(added)
        if rate > best_rate:
            best, best_rate = row, rate
    return best


def _greedy(rows, by_index, measure, goal, max_ops, best) -> tuple:
    """Adds units by gain per added op, measuring each step; the first step that reaches the
    goal, else the best step (or ``best``, the int8 file)."""
    chosen, steps, candidates = frozenset(), [], []
    while (row := _next_unit(rows, chosen, max_ops)) is not None:
        chosen = chosen | frozenset(row["indices"])
        fb, recipe, measured = measure(chosen)
        steps.append({"int16_ops": [by_index[i].name + ":" + by_index[i].op
                                    for i in sorted(chosen)], **measured})
        candidates.append((chosen, fb, recipe, measured))
        if measured["figure"] >= goal:
            return candidates[-1], steps
    for made in candidates:
        if (made[3]["figure"], -made[3]["mse"]) > (best[3]["figure"], -best[3]["mse"]):
            best = made
    return best, steps


# ---------------------------------------------------------------- conversion mode

OPTIONS = ("target", "tolerance", "max_ops", "algorithm", "ranges")


def _mode(req, mode: modes.Mode) -> bytes:
    """``convert(model, "mixed_a16w8", representative_data=x, options={...})``: judged on
    ``validation_data`` (else on the representative data)."""
    options = {k: req.options[k] for k in OPTIONS if k in req.options}
    check_options(**options)
    if req.validation is not None:
        x, y = req.validation
    else:
        x, y = np.concatenate([s[0] for s in req.representative()]), None
    calibration = np.concatenate([s[0] for s in req.representative()])
    result = mixed_activations(float32_flatbuffer(req), x, y, task=req.task,
                               representative_data=calibration,
                               representative_samples=len(calibration), **options)
    return result.flatbuffer


def _section_options(mode: modes.Mode, section) -> None:
    """Checks a recipe's ``convert.options.algorithm`` for this mode (before any work)."""
    check_options(algorithm=section_options(section).get("algorithm") or "min_max")


modes.register_backend(modes.Backend("mixed_activations", _mode, section_options=_section_options,
                                     describe=lowbit.layer_rows))
