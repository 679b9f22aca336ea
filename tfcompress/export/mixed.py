"""Per-layer sensitivity and mixed precision under a size budget, measured on LiteRT.

``sensitivity`` quantizes one layer at a time (the others float) to each candidate width with
the AI Edge Quantizer and measures, on the LiteRT interpreter, the output error against the
float32 flatbuffer, argmax agreement and accuracy, and the bytes the layer then takes.

``mixed_precision`` picks each layer's width from 2, 4, 8 (int), 16 (float16) and 32 (float):
every layer starts at its most accurate width; while the predicted size is over the budget, the
move with the least added output error per byte saved is taken; left-over bytes then buy back
the moves that help most. The chosen recipe is quantized and measured for real (size, accuracy,
agreement, per-layer widths read back from the flatbuffer); if the real size misses the budget
the target shrinks by the miss and the choice is made again. The result carries the recipe
(the quantizer's JSON), which ``lowbit.quantize(float32, "recipe.json")`` replays.

The output error of independent layers adds up roughly (squared errors of independent noise
add), which is what makes single-layer measurements a usable guide; the final verification is
what the result reports.
"""

import dataclasses
import json
import math
import os
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

from tfcompress import _io, errors
import tfcompress._compat.litert as _litert
import tfcompress.export.lowbit as lowbit
import tfcompress.export.lowbit_algorithms as lowbit_algorithms
import tfcompress.export.lowbit_calibration as lowbit_calibration
import tfcompress.export.modes as modes
import tfcompress.tasks as tasks_lib
from tfcompress._compat.litert import load_flatbuffer
from tfcompress.export.conversion import convert, float32_flatbuffer
from tfcompress.export.validation import predict, predict_outputs

# Executions a mixed model's integer layers may use: those of the registry's quantizer modes
# with float activations (``dynamic``, ``weight_only``; static ones need calibrated activations).
SCHEMES = tuple(dict.fromkeys(m.quantizer.execution for m in modes.modes("quantizer")
                              if not m.quantizer.activation_bits))


class Candidate(NamedTuple):
    """A width a layer may take, as measured alone by ``sensitivity``.

    Attributes:
        bits: the width (2, 4, 8 int; 16 float16; 32 float).
        size_delta: the whole model's bytes then, minus the float32 flatbuffer's (<= 0).
        mse: output mean squared error against the float32 model.
        drop_points: accuracy (or agreement) points lost.
        algorithm: the quantizer algorithm that measured best, None for float widths.
    """

    bits: int
    size_delta: int
    mse: float
    drop_points: float
    algorithm: Optional[str]


def _float32(model_or_flatbuffer) -> bytes:
    """The float32 flatbuffer, its embedding tables as EMBEDDING_LOOKUPs: the quantizer then
    quantizes a table like any other layer (``lowbit.embedding_lookups``), so each table's
    width is chosen too."""
    if isinstance(model_or_flatbuffer, (bytes, bytearray, memoryview)) or (
            isinstance(model_or_flatbuffer, (str, os.PathLike))
            and str(model_or_flatbuffer).endswith(".tflite")):
        return lowbit.embedding_lookups(load_flatbuffer(model_or_flatbuffer))
    return lowbit.embedding_lookups(convert(model_or_flatbuffer, "float32"))


# The task's figure against labels and against the float model (``tasks``): accuracy and
# agreement; for regression R^2 against the targets and R^2 against the float model's outputs.
_FIGURES = {"classification": ("accuracy", "agreement"), "binary": ("accuracy", "agreement"),
            "regression": ("r2", "r2_vs_float")}


def _metrics(flatbuffer: bytes, x, reference: np.ndarray, y, task: str) -> dict:
    out = predict(flatbuffer, x)
    mse = float(np.mean((out - reference) ** 2))
    row = {"mse": mse if math.isfinite(mse) else math.inf,
           "max_abs_diff": float(np.nan_to_num(np.abs(out - reference).max(), nan=math.inf))}
    labelled, versus_float = _FIGURES[task]
    if task == "regression":
        row[versus_float] = tasks_lib.regression(out, reference)["r2"]
    else:
        row[versus_float] = tasks_lib.agreement(out, reference, task)
    if y is not None:
        row[labelled] = tasks_lib.score(out, y, task)
    return row


def _drop_points(row: dict, float_score: Optional[float], task: str = "classification") -> float:
    """The task's points lost: accuracy points (R^2 points for regression) against the labels,
    or, without labels, disagreement points (1 - R^2 against the float model's outputs)."""
    labelled, versus_float = _FIGURES[task]
    if float_score is not None and labelled in row:
        return 100.0 * (float_score - row[labelled])
    return 100.0 * (1.0 - row[versus_float])


def _check(widths, execution, algorithms) -> None:
    bad = [w for w in widths if w not in lowbit.WIDTHS]
    if bad or not widths:
        raise errors.ConversionError(errors.unknown("width", bad[0] if bad else (), lowbit.WIDTHS))
    if execution not in SCHEMES:
        raise errors.ConversionError(errors.unknown("mixed-precision execution", execution,
                                                    SCHEMES))
    bad = [a for a in algorithms if a not in lowbit_algorithms.ALGORITHMS]
    if bad or not algorithms:
        raise errors.ConversionError(errors.unknown(
            "quantizer algorithm", bad[0] if bad else (), lowbit_algorithms.ALGORITHMS))


def _selected(layers, max_layers: Optional[int]) -> list:
    """The ``max_layers`` layers with the most weights (all when None), in graph order."""
    if not max_layers or max_layers >= len(layers):
        return list(layers)
    keep = {l.name for l in sorted(layers, key=lambda l: -l.weight_bytes)[:max_layers]}
    return [l for l in layers if l.name in keep]


def sensitivity(
    model_or_flatbuffer,
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    widths: Sequence[int] = (2, 4, 8),
    *,
    execution: str = "dynamic",
    algorithms: Sequence[str] = ("min_max", "octav"),
    max_layers: Optional[int] = None,
    task: Optional[str] = None,
) -> dict:
    """How much each layer alone hurts at each width, measured on the LiteRT interpreter.

    Args:
        model_or_flatbuffer: a Keras model (or model path), or a float32 flatbuffer (bytes or a
            ``.tflite`` path).
        x: validation images; y: their labels (for accuracy), optional.
        widths: candidate widths of ``lowbit.WIDTHS`` (32, float, is the reference).
        execution: ``dynamic`` or ``weight_only`` integer layers.
        algorithms: quantizer algorithms tried per integer width; the one with the least output
            error is kept (OCTAV's clipping matters at 2 bits).
        max_layers: analyze only the layers with the most weight bytes.
        task: ``classification``, ``binary`` or ``regression`` (``tasks.infer`` from ``y`` and
            the float outputs when None): regression rows hold ``r2`` (with ``y``) and
            ``r2_vs_float`` instead of accuracy and agreement, and drop R^2 points.

    Returns:
        {"float32_bytes", "float_accuracy" (with y; "float_r2" for regression), "num_samples",
        "task", "layers": [{"name", "op",
        "regex", "elements", "float_bytes", "widths": {bits: {"supported", "algorithm",
        "bytes" (whole model, this layer quantized), "weight_bytes" (the layer's bytes then),
        "mse", "max_abs_diff", "agreement", "accuracy", "drop_points"}}}]}; a width the quantizer
        or the runtime cannot give a layer has "supported": False and a "reason".

    Raises:
        ConversionError: an unknown width, execution or algorithm.
        DataError: ``x`` does not fit the model.
        ModelError: a model with several outputs.
    """
    _check(widths, execution, algorithms)
    f32 = _float32(model_or_flatbuffer)
    outputs = predict_outputs(f32, x)
    if len(outputs) > 1:  # widths are judged on one output's figure
        raise errors.ModelError(
            f"mixed precision judges one output and the model has {len(outputs)}; accepted: a "
            "model with one output (for several, a single mode: convert(model, 'dynamic'))")
    reference = outputs[0]
    task = tasks_lib.infer(y, reference, task)
    float_row = _metrics(f32, x, reference, y, task)
    float_accuracy = float_row.get(_FIGURES[task][0])  # the float model's score on the labels
    rows = []
    for layer in _selected(lowbit.weight_layers(f32), max_layers):
        allowed = lowbit.supported_widths(layer.op, execution=execution)
        row = {"name": layer.name, "op": layer.op, "regex": layer.regex,
               "elements": layer.elements, "float_bytes": layer.weight_bytes, "widths": {}}
        for bits in sorted(set(widths) | {32}, reverse=True):
            if bits == 32:
                row["widths"][32] = {"supported": True, "algorithm": None, "bytes": len(f32),
                                     "weight_bytes": layer.weight_bytes, **float_row,
                                     "mse": 0.0, "max_abs_diff": 0.0, "drop_points": 0.0}
                continue
            if bits not in allowed:
                row["widths"][bits] = {"supported": False, "reason": (
                    f"the quantizer has no {bits}-bit {execution} config for {layer.op}")}
                continue
            row["widths"][bits] = _best_candidate(f32, layer, bits, execution, algorithms, x,
                                                  reference, y, float_accuracy, task)
        rows.append(row)
    out = {"float32_bytes": len(f32), "num_samples": len(x), "execution": execution,
           "task": task, "layers": rows}
    if float_accuracy is not None:
        out["float_r2" if task == "regression" else "float_accuracy"] = float_accuracy
    return out


def _best_candidate(f32, layer, bits, execution, algorithms, x, reference, y, float_accuracy,
                    task):
    best = None
    for algorithm in (algorithms if bits <= 8 else ("min_max",)):
        fb = lowbit_calibration.run_quantizer(
            f32, [lowbit.entry(layer.regex, bits, execution=execution, algorithm=algorithm)])
        got = lowbit.tensor_bits(fb, layer.tensor)
        if got != bits:
            return {"supported": False, "reason": f"the quantizer left {layer.name} at "
                    f"{got} bits"}
        try:
            row = _metrics(fb, x, reference, y, task)
        except errors.InvalidTFLiteError as e:
            return {"supported": False, "reason": f"LiteRT cannot run it: {e}"}
        row.update(supported=math.isfinite(row["mse"]), algorithm=algorithm if bits <= 8 else None,
                   bytes=len(fb), weight_bytes=layer.weight_bytes + len(fb) - len(f32),
                   drop_points=_drop_points(row, float_accuracy, task))
        if not row["supported"]:
            row["reason"] = "the outputs are not finite"
        if best is None or (row["supported"], -row["mse"]) > (best["supported"], -best["mse"]):
            best = row
    return best


# ---------------------------------------------------------------- mixed precision

@dataclasses.dataclass
class MixedPrecisionResult:
    """What ``mixed_precision`` chose and measured; ``to_dict()`` for JSON.

    Attributes:
        flatbuffer: the quantized model.
        recipe: the AI Edge Quantizer recipe that makes it from the float32 flatbuffer.
        layers: per layer: name, op, bits (chosen), bits_read_back (from the flatbuffer),
            algorithm, float_bytes, weight_bytes (measured alone), mse and drop_points (alone).
        bytes, float32_bytes, budget_bytes: sizes; ratio = bytes / float32_bytes.
        accuracy, float_accuracy (with labels), agreement, mse, drop_points: on the given data;
            for a regression ``task`` r2 and float_r2 (with labels) instead of accuracy, no
            agreement, and drop_points in R^2 points.
        meets_budget, meets_max_drop: the verified verdicts (meets_max_drop None without max_drop).
        iterations: per attempt, the target, predicted and real bytes.
        sensitivity: the single-layer measurements the choice used.
    """

    flatbuffer: bytes
    recipe: list
    layers: list
    bytes: int
    float32_bytes: int
    budget_bytes: int
    agreement: Optional[float]
    mse: float
    drop_points: float
    meets_budget: bool
    accuracy: Optional[float] = None
    float_accuracy: Optional[float] = None
    task: str = "classification"
    r2: Optional[float] = None
    float_r2: Optional[float] = None
    meets_max_drop: Optional[bool] = None
    iterations: list = dataclasses.field(default_factory=list)
    sensitivity: dict = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.bytes / self.float32_bytes

    def to_dict(self) -> dict:
        skip = ({"accuracy", "float_accuracy", "agreement"} if self.task == "regression"
                else {"r2", "float_r2"})
        out = {k: v for k, v in dataclasses.asdict(self).items()
               if k != "flatbuffer" and k not in skip}
        out["ratio"] = self.ratio
        return out

    def save_recipe(self, path: str) -> str:
        """Writes the quantizer recipe JSON; ``lowbit.quantize(float32, path)`` replays it."""
        return lowbit.save_recipe(self.recipe, path)

    def save(self, directory: str) -> dict:
        """Writes model.tflite, recipe.json and mixed_precision.json; returns their paths."""
        paths = {name: os.path.join(directory, name)
                 for name in ("model.tflite", "recipe.json", "mixed_precision.json")}
        _io.write_bytes(paths["model.tflite"], self.flatbuffer)
        self.save_recipe(paths["recipe.json"])
        _io.write_text(paths["mixed_precision.json"],
                       json.dumps(self.to_dict(), indent=2, default=str))
        return paths


def budget_bytes(size_budget: Union[int, float], float32_bytes: int) -> int:
    """A size budget in bytes: a ratio to the float32 bytes in (0, 1], or a byte count > 1."""
    if isinstance(size_budget, bool) or not isinstance(size_budget, (int, float)) or not (
            size_budget > 0 and math.isfinite(size_budget)):
        raise errors.ConversionError(
            f"size_budget={size_budget!r}; accepted: a ratio to the float32 bytes in (0, 1] or "
            "a byte count > 1")
    return int(size_budget * float32_bytes) if size_budget <= 1 else int(size_budget)


def _candidates(row: dict, widths, max_drop: Optional[float], float32_bytes: int) -> list:
    """The ``Candidate`` widths a layer may take, the least output error first."""
    out = []
    for bits, m in row["widths"].items():
        if int(bits) not in widths or not m.get("supported"):
            continue
        if max_drop is not None and int(bits) != 32 and m["drop_points"] > max_drop:
            continue  # this layer alone already loses more than the whole model may
        out.append(Candidate(int(bits), m["bytes"] - float32_bytes, m["mse"], m["drop_points"],
                             m["algorithm"]))
    return sorted(out, key=lambda c: (c.mse, c.size_delta))


def _greedy(cands: dict, allowed: int) -> dict:
    """{layer: candidate index}: least summed error with summed size deltas within ``allowed``."""
    state = {name: 0 for name in cands}  # most accurate first
    size = sum(cands[n][0].size_delta for n in cands)
    while size > allowed:
        best = None
        for name, options in cands.items():
            cur = options[state[name]]
            for i, c in enumerate(options):
                saved = cur.size_delta - c.size_delta
                if saved > 0:
                    cost = (c.mse - cur.mse) / saved
                    if best is None or cost < best[0]:
                        best = (cost, name, i, saved)
        if best is None:
            return {}
        _, name, i, saved = best
        state[name], size = i, size - saved
    while True:  # spend what is left on the moves that take the most error away per byte
        best = None
        for name, options in cands.items():
            cur = options[state[name]]
            for i, c in enumerate(options):
                extra = c.size_delta - cur.size_delta
                if c.mse < cur.mse and size + extra <= allowed:
                    gain = (cur.mse - c.mse) / max(extra, 1)
                    if best is None or gain > best[0]:
                        best = (gain, name, i, extra)
        if best is None:
            return state
        _, name, i, extra = best
        state[name], size = i, size + extra


def mixed_precision(
    model_or_flatbuffer,
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    *,
    size_budget: Union[int, float],
    max_drop: Optional[float] = None,
    widths: Sequence[int] = lowbit.WIDTHS,
    execution: str = "dynamic",
    algorithms: Sequence[str] = ("min_max", "octav"),
    max_layers: Optional[int] = None,
    rest_bits: int = 8,
    max_iterations: int = 5,
    sensitivities: Optional[dict] = None,
    task: Optional[str] = None,
) -> MixedPrecisionResult:
    """Per-layer widths that meet a size budget with the least output error, verified on LiteRT.

    Args:
        model_or_flatbuffer: a Keras model (or path) or its float32 flatbuffer.
        x: validation images; y: their labels (accuracy), optional.
        size_budget: a ratio to the float32 flatbuffer's bytes in (0, 1], or bytes (> 1).
        max_drop: accuracy points (disagreement points without labels; R^2 points for a
            regression task) the model may lose; widths that alone lose more are not
            considered; the result says whether the final model keeps within it.
        widths: candidate widths (2, 4, 8 int; 16 float16; 32 float).
        execution: ``dynamic`` or ``weight_only`` integer layers.
        algorithms: quantizer algorithms tried per width (the better one is kept per layer).
        max_layers: choose widths for the layers with the most weights only; the others get
            ``rest_bits`` (quick on models with many small layers).
        rest_bits: the width of layers left out by ``max_layers``.
        max_iterations: attempts when the real size misses the budget.
        sensitivities: a ``sensitivity`` result to reuse (same model, data and execution).
        task: the model's task (``sensitivity``); inferred when None.

    Returns:
        A MixedPrecisionResult.

    Raises:
        ConversionError: a budget no choice of widths reaches (the message gives the smallest
            reachable size), or an unknown width, execution or algorithm.
        DataError: ``x`` does not fit the model.
        ModelError: a model with several outputs.
    """
    _check(widths, execution, algorithms)
    f32 = _float32(model_or_flatbuffer)
    budget = budget_bytes(size_budget, len(f32))
    sens = sensitivities or sensitivity(
        f32, x, y, [w for w in widths if w != 32], execution=execution,
        algorithms=algorithms, max_layers=max_layers, task=task)
    task = sens.get("task", "classification")
    analyzed = {row["name"]: {**row, "widths": {int(b): m for b, m in row["widths"].items()}}
                for row in sens["layers"]}  # (widths keyed by str after a JSON round trip)
    cands = _all_candidates(analyzed, widths, max_drop, len(f32))
    layers = lowbit.weight_layers(f32)
    rest = [l for l in layers if l.name not in analyzed]
    rest_recipe = [lowbit.entry(l.regex, rest_bits, execution=execution) for l in rest
                   if rest_bits in lowbit.supported_widths(l.op, execution=execution)]
    fixed = len(lowbit_calibration.run_quantizer(f32, rest_recipe)) if rest_recipe else len(f32)
    smallest = fixed + sum(min(c.size_delta for c in options) for options in cands.values())
    if smallest > budget:
        raise errors.ConversionError(
            f"size_budget {size_budget!r} ({budget} bytes, {budget / len(f32):.3f}x float32) "
            f"cannot be met with widths {tuple(widths)}"
            + (f" and max_drop={max_drop}" if max_drop is not None else "")
            + f": the smallest choice is {smallest} bytes ({smallest / len(f32):.3f}x); "
            f"accepted: a budget >= {smallest / len(f32):.3f} (ratio) or {smallest} bytes")
    state, recipe, flatbuffer, iterations = _fit_budget(
        f32, cands, analyzed, rest_recipe, fixed, budget, execution, max_iterations)
    final = _metrics(flatbuffer, x, predict(f32, x), y, task)
    float_score = sens.get("float_r2" if task == "regression" else "float_accuracy")
    drop = _drop_points(final, float_score, task)
    return MixedPrecisionResult(
        flatbuffer=flatbuffer, recipe=recipe,
        layers=_chosen(layers, flatbuffer, state, cands, analyzed, rest_bits),
        bytes=len(flatbuffer), float32_bytes=len(f32), budget_bytes=budget,
        agreement=final.get("agreement"), mse=final["mse"], drop_points=drop,
        meets_budget=len(flatbuffer) <= budget, accuracy=final.get("accuracy"),
        float_accuracy=sens.get("float_accuracy"), task=task, r2=final.get("r2"),
        float_r2=sens.get("float_r2"),
        meets_max_drop=None if max_drop is None else drop <= max_drop,
        iterations=iterations, sensitivity=sens)


def _all_candidates(analyzed: dict, widths, max_drop, float32_bytes: int) -> dict:
    """{layer: its usable ``Candidate`` widths}; an error if a layer has none."""
    if not analyzed:
        raise errors.ConversionError("the model has no layers with weights to quantize")
    cands = {}
    for name, row in analyzed.items():
        cands[name] = _candidates(row, widths, max_drop, float32_bytes)
        if not cands[name]:
            raise errors.ConversionError(
                f"layer {name!r} has no usable width among {tuple(widths)}"
                + (f" within max_drop={max_drop}" if max_drop is not None else "")
                + "; accepted: add 32 (float) or 8 to widths, or a larger max_drop")
    return cands


def _fit_budget(f32, cands, analyzed, rest_recipe, fixed, budget, execution, max_iterations):
    """Chooses widths for a target, quantizes for real, aims lower by the miss; (state, recipe,
    flatbuffer, iterations) of the last attempt."""
    target, iterations, made = budget, [], None
    for _ in range(max(1, max_iterations)):
        state = _greedy(cands, target - fixed)
        if not state:
            break
        recipe = rest_recipe + [
            lowbit.entry(analyzed[n]["regex"], cands[n][i].bits, execution=execution,
                         algorithm=cands[n][i].algorithm or "min_max")
            for n, i in state.items() if cands[n][i].bits != 32]
        # The deployed bytes: the recipe travels in the flatbuffer and counts in its size.
        flatbuffer = lowbit.with_recipe(
            lowbit_calibration.run_quantizer(f32, recipe) if recipe else f32, recipe)
        predicted = fixed + sum(cands[n][i].size_delta for n, i in state.items())
        iterations.append({"target": target, "predicted": predicted, "real": len(flatbuffer)})
        unchanged = made is not None and made[0] == state
        made = (state, recipe, flatbuffer)
        if len(flatbuffer) <= budget:
            break
        # Aim lower by the miss, or by how far the prediction was off if that is more (per-layer
        # sizes do not add up exactly: each quantized layer also adds ops and tensors).
        miss = len(flatbuffer) - budget
        target = min(target - miss, budget - (len(flatbuffer) - predicted))
        if unchanged:  # the same choice again: aim lower still
            target -= 2 * max(miss, 64) * len(iterations)
    return (*made, iterations)


def _chosen(layers, flatbuffer, state, cands, analyzed, rest_bits) -> list:
    """Per layer: the width chosen, the width read back from the flatbuffer, its figures."""
    read_back = {l.tensor: l for l in lowbit.weight_layers(flatbuffer)}
    chosen = []
    for layer in layers:
        got = read_back.get(layer.tensor)
        if layer.name in state:
            bits, _, mse, drop, algorithm = cands[layer.name][state[layer.name]]  # a Candidate
            measured = analyzed[layer.name]["widths"][bits]
        else:
            bits, mse, drop, algorithm = rest_bits, None, None, "min_max"
            measured = {}
        chosen.append({"name": layer.name, "op": layer.op, "bits": bits,
                       "bits_read_back": got.bits if got else None, "algorithm": algorithm,
                       "float_bytes": layer.weight_bytes,
                       "weight_bytes": measured.get("weight_bytes",
                                                    got.weight_bytes if got else None),
                       "mse": mse, "drop_points": drop})
    return chosen


def _section_options(mode: modes.Mode, section) -> dict:
    """A recipe's ``convert`` section for mode ``mixed``: its budget, widths and layers."""
    if not section.size_budget > 0:
        raise errors.ConversionError(
            f"mode 'mixed' needs convert.size_budget > 0, got {section.size_budget!r}; "
            "accepted: a ratio to the float32 bytes in (0, 1] or a byte count > 1")
    return {"size_budget": section.size_budget, "widths": tuple(section.mixed_widths),
            "max_layers": section.mixed_max_layers or None}


def _mixed_mode(req, mode: modes.Mode) -> bytes:
    """Mixed precision under ``options["size_budget"]``, judged on ``validation_data`` (else on
    the representative data, by agreement with the float model)."""
    if not req.options.get("size_budget"):
        raise errors.ConversionError(
            "mode 'mixed' needs options={'size_budget': ...}; accepted: a ratio to the float32 "
            "bytes in (0, 1] or a byte count > 1 (recipes: convert.size_budget)")
    if req.validation is not None:  # decide on held-out data with labels
        x, y = req.validation
    else:
        x, y = np.concatenate([s[0] for s in req.representative()]), None
    result = mixed_precision(
        float32_flatbuffer(req), x, y, size_budget=req.options["size_budget"],
        task=req.task if not isinstance(req.task, dict) else next(iter(req.task.values()), None),
        widths=tuple(req.options.get("widths") or lowbit.WIDTHS),
        max_layers=req.options.get("max_layers"))
    choice = {k: v for k, v in result.to_dict().items() if k != "sensitivity"}
    return _litert.with_facts(result.flatbuffer, mixed=choice)


modes.register_backend(modes.Backend("mixed", _mixed_mode, section_options=_section_options,
                                     describe=lowbit.layer_rows))
