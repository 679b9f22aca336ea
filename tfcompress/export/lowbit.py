"""Low-bit quantization (int8/int4/int2 weights, int8/int16 activations) with the LiteRT Quantizer.

A thin wrapper over the LiteRT Quantizer (``litert_quantizer``, the maintained successor of
``ai_edge_quantizer``, same API), which quantizes a float32
flatbuffer by a recipe: a list of entries, each with a ``regex`` over op names, an
``operation`` and an ``op_config``; where several match an op, the later entry wins. What this
module adds:

- the code of the registry's ``quantizer`` backend (``tfcompress.export.modes`` lists its
  modes; ``MODES`` here is their settings), so ``tfcompress.convert(model, "dynamic_wi4")``,
  recipes' and search spaces' ``modes`` take them:

  * ``dynamic_wi{8,4,2}``: int weights, float activations quantized at run time;
  * ``dynamic_wi4_block{32,64,128}``: int4 weights with one scale per block of inputs;
  * ``weight_only_wi{8,4}``: int weights dequantized to float before a float op;
  * ``static_wi{8,4}_ai{8,16}``: int weights and int8/int16 activations (calibrated).

  Ops the quantizer cannot quantize at a mode's width stay float32 (as in its own recipes):
  int4/int2 take CONV_2D, FULLY_CONNECTED and EMBEDDING_LOOKUP, not DEPTHWISE_CONV_2D;
  blockwise takes FULLY_CONNECTED and EMBEDDING_LOOKUP only (a layer whose input width the
  block does not divide gets one scale per channel at the mode's width instead).
  ``weight_layers`` reads back what each layer got. Not offered: int2 weight-only (not in the
  quantizer's policy) and blockwise int2 (LiteRT's XNNPACK delegate refuses the flatbuffer:
  "unsupported datatype (INT2)"). Beware ``dynamic_wi2``: LiteRT 2.3's int2 CONV_2D kernel
  often gives non-finite outputs; ``sensitivity`` marks such layer widths unsupported, so
  ``mixed`` never picks them.
- embedding tables: the converter makes a Keras ``Embedding`` a ``GATHER``, which the quantizer
  quantizes only with int8 activations; the weight-only and dynamic modes (and recipes without
  activation quantization) first turn each table gather into an ``EMBEDDING_LOOKUP``
  (``embedding_lookups``), so the table is quantized like any other layer: one scale per row,
  or per block of a row, at the mode's or an override's width (``embedding=8``, or the op type
  ``EMBEDDING_LOOKUP``). Per row, the schema stores a float32 scale and an int64 zero point
  (12 bytes): on narrow tables (16 wide: 8 bytes of int4 data a row) that overhead dominates;
  block-wise scales (a float16 scale per block, no zero points) are smaller.
- per-layer overrides by layer-name regex or op type (``{"FULLY_CONNECTED": 8, "conv1": 16}``,
  widths 2/4/8, 16 for float16 weights, 32 for float), checked against the model's layers
  and the quantizer's policy, with errors that name what is accepted;
- the quantizer's summary and progress bars silenced; the recipe that made a flatbuffer and
  the per-layer widths travel inside it (its metadata: ``recipe_of``, ``describe``), and save as
  the quantizer's own JSON (``save_recipe``), which ``quantize(float32, "recipe.json")``
  replays to the same bytes.

Per-layer sensitivity and mixed precision under a size budget are in ``tfcompress.export.mixed``;
the ``algorithm=`` option's rules in ``lowbit_algorithms``; running the quantizer, its calibration
and activation ranges chosen by error in ``lowbit_calibration``.
"""

import collections
import dataclasses
import functools
import json
import os
import re
from typing import Mapping, Optional, Union

import numpy as np
from tfcompress import _io, errors
import tfcompress._compat.embedding_lookup as _embedding_lookup
import tfcompress._compat.litert as _litert
import tfcompress._compat.quantizer as _quantizer
import tfcompress._compat.schema as _schema
import tfcompress.export.lowbit_algorithms as lowbit_algorithms
import tfcompress.export.lowbit_calibration as lowbit_calibration
import tfcompress.export.modes as modes
import tfcompress.ptq.activation_ranges as activation_ranges_lib
from tfcompress._compat.litert import load_flatbuffer, verify
from tfcompress.export.conversion import Request, float32_flatbuffer, section_options

WIDTHS = (2, 4, 8, 16, 32)  # per-layer widths: int2, int4, int8, float16, float32
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE",
               "EMBEDDING_LOOKUP", "BATCH_MATMUL", "GATHER")
# Op types an override may name (the quantizer's names, without its wildcard and IO keys).
OP_TYPES = _quantizer.op_types  # a function: the quantizer loads on first use
_BITS = {"float32": 32, "float16": 16, "int16": 16, "int8": 8, "uint8": 8, "int4": 4, "uint4": 4,
         "int2": 2}


# The low-bit modes (the registry's quantizer backend, in its order): name -> its settings
# (``modes.Quantizer``: execution, weight bits, block size (0: per channel), activation bits).
MODES: dict = {m.name: m.quantizer for m in modes.modes("quantizer")}


# ---------------------------------------------------------------- recipe entries

def entry(regex: str, bits: int, *, execution: str = "dynamic", operation: str = "*",
          block: int = 0, activation_bits: int = 8, algorithm: str = "min_max") -> dict:
    """One quantizer recipe entry: ``bits``-wide weights for ops matching ``regex``.

    ``bits`` 16 is float16 weights (the quantizer's float casting, dequantized before a float
    op), 32 keeps the ops float; 2/4/8 are integer weights run as ``execution``.

    Raises:
        ValueError: the quantizer's policy has no such config for ``operation`` (a specific op).
    """
    return _quantizer.recipe_entry(regex, operation, bits, execution=execution, block=block,
                                   activation_bits=activation_bits, algorithm=algorithm)


def supported_widths(op: str, *, execution: str = "dynamic", block: int = 0,
                     activation_bits: int = 8) -> tuple:
    """The widths (of ``WIDTHS``) the quantizer's policy allows for op type ``op``.

    Blockwise int2 is left out: the policy has it, but LiteRT's XNNPACK delegate refuses the
    flatbuffer ("unsupported datatype (INT2)"), so nothing could validate it.
    """
    out = []
    for bits in WIDTHS:
        if block and bits == 2:
            continue
        try:
            entry(".*", bits, execution=execution, operation=op, block=block,
                  activation_bits=activation_bits)
            out.append(bits)
        except ValueError:
            pass
    return tuple(out)


# ---------------------------------------------------------------- layers of a flatbuffer

@dataclasses.dataclass
class Layer:
    """An op with a constant weight tensor, as found in a flatbuffer.

    Attributes:
        name: the Keras layer name read from the weight tensor's name (unique here).
        op: the TFLite op type, e.g. ``FULLY_CONNECTED``.
        scope: the op's output tensor names as the quantizer matches recipe regexes against.
        regex: a regex that selects this layer alone among the weight layers.
        tensor: the weight tensor's name; shape, elements: its shape and size.
        dtype, bits: the stored weight type (``int4``...) and its width.
        block_size: the block size of blockwise weights (0 otherwise).
        dequantized: the weights go through a DEQUANTIZE op (weight-only, float16).
        weight_bytes: bytes of the weight data and its quantization scales.
    """

    name: str
    op: str
    scope: str
    regex: str
    tensor: str
    shape: tuple
    elements: int
    dtype: str
    bits: int
    block_size: int
    dequantized: bool
    weight_bytes: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Last path components of weight tensor names, by which the Keras layer name is found.
_WEIGHT_SUFFIX = re.compile(
    r"^(Conv2D|depthwise|MatMul|BatchMatMul\w*|conv2d_transpose|Conv2DBackpropInput|"
    r"embedding_lookup|Tensordot|kernel|weights?)\d*$")


def _layer_name(tensor_name: str) -> str:
    parts = [p.split("/") for p in tensor_name.split(";") if p]
    for comps in parts:  # the part that names the weight op (not a fused BN or activation)
        if len(comps) >= 2 and _WEIGHT_SUFFIX.match(comps[-1]):
            return comps[-2]
    comps = parts[0] if parts else [tensor_name]
    return comps[-2] if len(comps) >= 2 else comps[-1]


def weight_layers(flatbuffer: Union[bytes, str]) -> list[Layer]:
    """The ops with constant weights of a flatbuffer's main graph, in graph order.

    Works on float32 and quantized flatbuffers alike: the per-layer widths read back here are
    the stored tensor types (int4 and int2 included), not what a recipe asked for.
    """
    content = load_flatbuffer(flatbuffer)
    model = _quantizer.read_model(content)
    graph = model.subgraphs[0]

    def op_type(op) -> str:
        return _quantizer.op_type(model, op)

    def constant(index: int) -> bool:
        buffer = model.buffers[graph.tensors[index].buffer]
        data = buffer.data
        return (data is not None and len(data) > 0) or bool(getattr(buffer, "size", 0))

    def nbytes(index: int) -> int:
        buffer = model.buffers[graph.tensors[index].buffer]
        return len(buffer.data) if buffer.data is not None else int(getattr(buffer, "size", 0))

    producer = {int(t): op for op in graph.operators for t in op.outputs}
    found = []
    for op in graph.operators:
        kind = op_type(op)
        if kind not in _WEIGHT_OPS:
            continue
        weights = []  # (elements, tensor index, through a DEQUANTIZE op)
        for i in (int(i) for i in op.inputs if i >= 0):
            dequantized = False
            if i in producer and op_type(producer[i]) == "DEQUANTIZE":
                i, dequantized = int(producer[i].inputs[0]), True
            tensor = graph.tensors[i]
            if i not in producer and constant(i) and len(tensor.shape) >= 2:
                weights.append((int(np.prod(tensor.shape)), i, dequantized))
        if not weights:
            continue
        elements, index, dequantized = max(weights)
        tensor = graph.tensors[index]
        dtype = _schema.type_name(tensor.type)
        size, block = nbytes(index), 0
        q = tensor.quantization
        if q is not None:
            size += 4 * len(q.scale if q.scale is not None else ()) + 8 * len(
                q.zeroPoint if q.zeroPoint is not None else ())
            blockwise = _schema.blockwise(q)
            if blockwise is not None:
                block = blockwise[0]
                size += nbytes(blockwise[1])
        name = _quantizer.tensor_name(tensor)
        found.append(Layer(_layer_name(name), kind, _quantizer.op_scope(op, graph.tensors), "",
                           name, tuple(int(d) for d in tensor.shape), elements, dtype,
                           _BITS.get(dtype, 0), block, dequantized, size))
    seen = collections.Counter()
    for layer in found:  # unique names, then a regex that selects each layer alone
        seen[layer.name] += 1
        if seen[layer.name] > 1:
            layer.name = f"{layer.name}:{seen[layer.name] - 1}"
    for layer in found:
        pattern = r"(?:^|[/;])" + re.escape(layer.name) + "/"
        hits = [other for other in found if re.search(pattern, other.scope)]
        layer.regex = pattern if hits == [layer] else "^" + re.escape(layer.scope) + "$"
    return found


def embedding_lookups(float32_flatbuffer: Union[bytes, str]) -> bytes:
    """The float32 flatbuffer with its embedding-table GATHERs as EMBEDDING_LOOKUPs (same outputs).

    The quantizer's weight-only and dynamic configs (int8/int4/int2, per row or block-wise)
    take ``EMBEDDING_LOOKUP`` and not ``GATHER``; ``quantize`` and ``mixed_precision`` call this
    first. Gathers of rows of a constant 2-D float32 table by int32 ids change; others stay.
    """
    return _embedding_lookup.gathers_as_embedding_lookups(load_flatbuffer(float32_flatbuffer))[0]


def _quantizes_activations(recipe: list) -> bool:
    return any((e.get("op_config") or {}).get("activation_tensor_config") for e in recipe
               if isinstance(e, dict))


def tensor_bits(flatbuffer: bytes, tensor_name: str) -> Optional[int]:
    """The stored width of the tensor named ``tensor_name`` (a quick look, no full parse)."""
    dtype = _schema.tensor_type_of(flatbuffer, tensor_name)
    return None if dtype is None else _BITS.get(dtype, 0)


def layer_bits(flatbuffer: Union[bytes, str]) -> dict:
    """{layer name: stored weight width} read back from a flatbuffer (32 for float32)."""
    return {layer.name: layer.bits for layer in weight_layers(flatbuffer)}


# ---------------------------------------------------------------- overrides

def parse_overrides(overrides) -> list[tuple[str, int]]:
    """Overrides as ``[(op type or regex, bits)]``, checked for form only.

    Accepted: a mapping ``{"FULLY_CONNECTED": 8, "dense": 4}``, a sequence of pairs, or of
    ``"key=bits"`` strings (the recipe form). A key that is a TFLite op type (``OP_TYPES``)
    selects by op type; any other key is a regex searched in the op names (``Layer.scope``) and
    the weight names (``Layer.tensor``), so a Keras layer name selects its layer.

    Raises:
        ConversionError: a malformed entry, a width outside ``WIDTHS``, a bad regex.
    """
    if not overrides:
        return []
    items = list(overrides.items()) if isinstance(overrides, Mapping) else (
        [overrides] if isinstance(overrides, str) else list(overrides))
    out = []
    for item in items:
        if isinstance(item, str):
            key, sep, value = item.rpartition("=")
            if not sep or not key:
                raise errors.ConversionError(
                    f"override {item!r} is not 'regex_or_op_type=bits'; accepted e.g. "
                    "'dense=8' or 'FULLY_CONNECTED=4'")
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            key, value = item
        else:
            raise errors.ConversionError(
                f"override {item!r}; accepted: (regex_or_op_type, bits) pairs, a mapping or "
                "'regex_or_op_type=bits' strings")
        try:
            bits = int(value)
        except (TypeError, ValueError):
            bits = None
        if bits not in WIDTHS or str(value).strip() != str(bits):
            raise errors.ConversionError(
                f"override {key!r} has width {value}; accepted: "
                + ", ".join(map(str, WIDTHS)) + " (16: float16 weights, 32: float)")
        if key not in OP_TYPES():
            try:
                re.compile(key)
            except re.error as e:
                raise errors.ConversionError(
                    f"override regex {key!r} is not a valid regular expression ({e}); accepted: "
                    "a TFLite op type such as FULLY_CONNECTED or a regex over op names") from e
        out.append((key, bits))
    return out


def make_recipe(float32_flatbuffer: Union[bytes, str], mode: str, overrides=None, *,
                algorithm: str = "min_max") -> list:
    """The quantizer recipe of a low-bit mode with per-layer overrides, checked on the model.

    Entries: the mode for every op, then (block-wise modes) one scale per channel for the
    layers whose input width the block does not divide, then one per op-type override, then
    one per regex override (the later wins where several match; a regex wins over an op type).
    Embedding tables count as layers (``EMBEDDING_LOOKUP``) unless the mode is static (see
    ``embedding_lookups``).

    Args:
        float32_flatbuffer: the float model the recipe is for (its layers check the overrides).
        mode: a ``MODES`` name.
        overrides: see ``parse_overrides``.
        algorithm: one of ``lowbit_algorithms.ALGORITHMS`` (the quantizer's algorithms), for
            the ops it covers (``algorithm_ops``); the model's other weight ops get min-max
            scales.

    Raises:
        ConversionError: unknown mode or algorithm, an algorithm that does not apply to the
            mode or to any layer of the model (``lowbit_algorithms.ALGORITHM_RULES``); an
            override op type the model lacks, a regex that selects no weight layer, or a width
            the quantizer has no config for.
    """
    if mode not in MODES:
        raise errors.ConversionError(errors.unknown("low-bit mode", mode, MODES))
    if algorithm not in lowbit_algorithms.ALGORITHMS:
        raise errors.ConversionError(errors.unknown("quantizer algorithm", algorithm,
                                                    lowbit_algorithms.ALGORITHMS))
    spec = MODES[mode]
    options = dict(execution=spec.execution, block=spec.block,
                   activation_bits=spec.activation_bits or 8, algorithm=algorithm)
    parsed = parse_overrides(overrides)
    if not spec.activation_bits:
        float32_flatbuffer = embedding_lookups(float32_flatbuffer)
    partial = (set(lowbit_algorithms.algorithm_ops(algorithm))
               != set(lowbit_algorithms.algorithm_ops("min_max")))
    layers = weight_layers(float32_flatbuffer) if parsed or spec.block or partial else []
    lowbit_algorithms.check_applies(algorithm, mode, layers)

    def using(ops, bits):  # the entry options for layers of ``ops`` at ``bits``
        return {**options, "algorithm": lowbit_algorithms.algorithm_for(algorithm, ops, bits)}

    def checked(key, bits, targets, operation="*"):
        for layer in targets:
            widths = supported_widths(layer.op, execution=spec.execution, block=spec.block,
                                      activation_bits=spec.activation_bits or 8)
            if bits not in widths:
                raise errors.ConversionError(
                    f"override {key!r}={bits}: layer {layer.name!r} ({layer.op}) cannot take "
                    f"{bits}-bit weights in mode {mode!r}; accepted for {layer.op}: "
                    + ", ".join(map(str, widths)))
        return entry(".*" if operation != "*" else key, bits, operation=operation,
                     **using({layer.op for layer in targets}, bits))

    if not partial:
        recipe = [entry(".*", spec.bits, **options)]
    else:  # min-max for every op, then the algorithm for each op type of the model it covers
        recipe = [entry(".*", spec.bits, **{**options, "algorithm": "min_max"})]
        recipe += [entry(".*", spec.bits, operation=op, **options)
                   for op in sorted({layer.op for layer in layers}
                                    & set(lowbit_algorithms.algorithm_ops(algorithm)))
                   if spec.bits in supported_widths(op, execution=spec.execution,
                                                    block=spec.block,
                                                    activation_bits=spec.activation_bits or 8)]
    if spec.block:  # the quantizer refuses a block that does not divide the input width
        recipe += [entry(layer.regex, spec.bits, **{**using([layer.op], spec.bits), "block": 0})
                   for layer in layers
                   if layer.bits == 32 and layer.shape[-1] % spec.block
                   and spec.bits in supported_widths(layer.op, execution=spec.execution,
                                                     block=spec.block)]
    for key, bits in parsed:
        if key in OP_TYPES():
            present = sorted({layer.op for layer in layers})
            if key not in present:
                raise errors.ConversionError(errors.unknown("op type with weights", key, present))
            recipe.append(checked(key, bits, [l for l in layers if l.op == key], operation=key))
    for key, bits in parsed:
        if key not in OP_TYPES():
            targets = [layer for layer in layers
                       if re.search(key, layer.scope) or re.search(key, layer.tensor)]
            if not targets:
                raise errors.ConversionError(
                    f"override regex {key!r} selects no layer with weights; accepted: a regex "
                    "over op or weight names, e.g. a layer name of "
                    + ", ".join(l.name for l in layers[:8]) + ("..." if len(layers) > 8 else ""))
            made = checked(key, bits, targets)
            if all(re.search(key, layer.scope) for layer in targets):
                recipe.append(made)
            else:  # the quantizer matches op output names only, and a model's last op is named
                for layer in targets:  # after the signature output: select those by name
                    recipe.append(entry(layer.regex, bits, **using([layer.op], bits)))
    return recipe


# ---------------------------------------------------------------- quantizing

def with_recipe(flatbuffer: bytes, recipe: list) -> bytes:
    """The quantizer's output with the recipe that made it in its metadata (``recipe_of``);
    an empty recipe (nothing quantized) leaves the flatbuffer as it is."""
    return _litert.with_facts(flatbuffer, recipe=recipe) if recipe else flatbuffer


def recipe_of(flatbuffer: Union[bytes, str]) -> Optional[list]:
    """The quantizer recipe that made ``flatbuffer`` (read from its metadata), or None."""
    return _litert.read_facts(flatbuffer).get("recipe")


def save_recipe(recipe: list, path: str) -> str:
    """Writes a quantizer recipe as JSON (the quantizer's own format); returns the path."""
    _io.write_text(path, json.dumps(recipe, indent=2))
    return path


def quantize(float32_flatbuffer: Union[bytes, str], recipe_or_mode: Union[str, list], *,
             overrides=None, algorithm: str = "min_max", representative_data=None,
             representative_samples: int = 200, activation_ranges: str = "min_max") -> bytes:
    """Quantizes a float32 flatbuffer by a low-bit mode or a quantizer recipe.

    Args:
        float32_flatbuffer: bytes or a ``.tflite`` path (``convert(model, "float32")``).
        recipe_or_mode: a ``MODES`` name, a recipe (list of entries) or a ``.json`` recipe
            file, e.g. the one ``save_recipe`` or ``MixedPrecisionResult.save`` wrote.
        overrides: per-layer widths for a mode (see ``parse_overrides``).
        algorithm: the quantizer's algorithm for a mode, one of ``ALGORITHMS`` of
            ``tfcompress.export.lowbit_algorithms`` (where it applies: its ``ALGORITHM_RULES``,
            ``algorithm_modes``, ``algorithm_ops``).
        representative_data: calibration images (static modes and recipes; ``gptq`` needs
            them, ``oscar`` uses them where given).
        representative_samples: how many calibrate.
        activation_ranges: for int8 activations (the ``static_*_ai8`` modes): ``min_max`` (the
            calibrated ranges), ``mse`` or ``percentile``: each activation's range chosen on its
            calibration histogram (``tfcompress.ptq.activation_ranges``), set in the quantizer's
            calibration statistics before it quantizes.

    Returns:
        The quantized flatbuffer, checked to load and run on LiteRT; its metadata holds the
        recipe that made it (``recipe_of``) and the widths each layer got (``describe``).

    Raises:
        ConversionError: unknown mode or recipe file, a recipe the quantizer rejects, a model
            that is not float32, overrides with a recipe, missing calibration data, a result
            LiteRT refuses to run; ``activation_ranges`` unknown or without int8 activations.
        InvalidTFLiteError: the flatbuffer cannot be loaded.
    """
    activation_ranges_lib.check_method(activation_ranges)
    content = load_flatbuffer(float32_flatbuffer)
    if isinstance(recipe_or_mode, (str, os.PathLike)) and str(recipe_or_mode) in MODES:
        recipe = make_recipe(content, str(recipe_or_mode), overrides, algorithm=algorithm)
    else:
        if overrides:
            raise errors.ConversionError(
                "overrides apply to a low-bit mode; a recipe carries its own entries (add "
                "entries with their own regex to it instead)")
        recipe = _load_recipe(recipe_or_mode)
    if not _quantizes_activations(recipe):
        content = embedding_lookups(content)
    else:  # an unrolled GRU's splits, as ops the quantizer calibrates and quantizes
        content = _quantizer.splits_for_quantizer(content)
    quantized = [layer for layer in weight_layers(content) if layer.dtype != "float32"]
    if quantized:
        raise errors.ConversionError(
            f"quantize needs a float32 flatbuffer; layer {quantized[0].name!r} already holds "
            f"{quantized[0].dtype} weights; accepted: convert(model, 'float32') output")
    calibration = None
    if representative_data is not None:
        calibration = functools.partial(lowbit_calibration.calibration_data, content,
                                        representative_data, representative_samples)
    qsvs = None
    if activation_ranges != "min_max":
        qsvs = lowbit_calibration.chosen_ranges(content, recipe, representative_data,
                                                representative_samples, activation_ranges)
    out = with_recipe(lowbit_calibration.run_quantizer(content, recipe, calibration, qsvs=qsvs),
                      recipe)
    try:
        verify(out)  # runs it once in a child process (remembered: validate() will not redo it)
    except errors.InvalidTFLiteError as e:
        what = repr(str(recipe_or_mode)) if isinstance(recipe_or_mode, str) else "the recipe"
        raise errors.ConversionError(f"{what} gave a flatbuffer LiteRT does not run: {e}") from e
    return out


def _load_recipe(recipe) -> list:
    if isinstance(recipe, list):
        return recipe
    if isinstance(recipe, (str, os.PathLike)) and os.path.isfile(recipe):
        try:
            with open(recipe) as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            raise errors.ConversionError(f"recipe file {str(recipe)!r} is not JSON: {e}") from e
        if not isinstance(loaded, list):
            raise errors.ConversionError(
                f"recipe file {str(recipe)!r} holds a {type(loaded).__name__}; accepted: a list "
                "of quantizer recipe entries")
        return loaded
    raise errors.ConversionError(errors.unknown(
        "low-bit mode or recipe file", recipe,
        list(MODES) + ["a .json recipe file", "a recipe list"]))


def layer_rows(flatbuffer: bytes) -> list:
    """Per-layer weight widths read back, as JSON-ready rows (for reports)."""
    return [{"layer": l.name, "op": l.op, "bits": l.bits, "dtype": l.dtype,
             "block_size": l.block_size, "weight_bytes": l.weight_bytes}
            for l in weight_layers(flatbuffer)]


def describe(flatbuffer: Union[bytes, str]) -> dict:
    """Per-layer widths read back, and what its metadata says made it (recipe, mixed choice)."""
    content = load_flatbuffer(flatbuffer)
    facts = _litert.read_facts(content)
    return {**{k: facts[k] for k in ("recipe", "mixed") if k in facts},
            "layers": layer_rows(content)}


# ---------------------------------------------------------------- conversion modes

def _convert_mode(req: Request, mode: modes.Mode) -> bytes:
    return quantize(float32_flatbuffer(req), mode.name, overrides=req.options.get("overrides"),
                    algorithm=req.options.get("algorithm", "min_max"),
                    representative_data=req.representative,
                    activation_ranges=req.options.get("activation_ranges", "min_max"))


def _section_options(mode: modes.Mode, section) -> Optional[dict]:
    """A recipe's ``convert.overrides`` for a low-bit mode, and whether its
    ``convert.options.algorithm`` applies to the mode (checked here, before any work)."""
    algorithm = section_options(section).get("algorithm")
    if algorithm:
        lowbit_algorithms.check_applies(algorithm, mode.name, [])
    parse_overrides(section.overrides)
    return {"overrides": tuple(section.overrides)} if section.overrides else None


modes.register_backend(modes.Backend("quantizer", _convert_mode, section_options=_section_options,
                                     describe=layer_rows))
