"""The LiteRT Quantizer's (``litert_quantizer``) modules beyond its public ``Quantizer``, isolated.

Checked against litert-quantizer 0.11.0 (the maintained successor of ai-edge-quantizer 0.10,
same modules). Its package exports only ``Quantizer``; building recipe entries per layer and
op (``recipe_manager.RecipeManager``, ``qtyping.QuantGranularity``/``TFLOperationName``,
``algorithm_manager.AlgorithmName``) and reading a flatbuffer the way its recipes match op names
(``utils.tfl_flatbuffer_utils``: ``read_model``, ``TFL_OP_CODE_TO_NAME``, ``get_tensor_name``,
``get_op_scope``) have no public equivalent: the documented ``litert_quantizer.recipe`` helpers
build whole-model recipes only. Only the functions below reach them.
"""

import functools
import json
import types

import tfcompress._compat.schema as _schema

# Algorithms offered, by our name -> the quantizer's ``AlgorithmName`` value: min-max scales
# (its default), OCTAV (clipping chosen for the least squared error), MSE (a clip set from the
# weights' RMS), GPTQ (Hessian-guided rounding from calibration inputs), OSCAR (clipping
# weighted by the inputs' second moments) and Hadamard rotation, the decomposed form (RESHAPE
# and FULLY_CONNECTED builtins; the ``aeq.hadamard_rotation`` custom op corrupted the LiteRT
# 2.3 interpreter's heap at batch > 1: "free(): invalid next size").
ALGORITHMS = ("min_max", "octav", "mse", "gptq", "oscar", "hadamard")
_KEYS = {"min_max": "MIN_MAX_UNIFORM_QUANT", "octav": "OCTAV", "mse": "MSE", "gptq": "GPTQ",
         "oscar": "OSCAR", "hadamard": "DECOMPOSED_HADAMARD_ROTATION"}


@functools.lru_cache(maxsize=None)
def _lq() -> types.SimpleNamespace:
    """The quantizer's modules, imported on first use: ``litert_quantizer`` imports scipy (its
    GPTQ), which ``import tfcompress`` does not load."""
    from litert_quantizer import Quantizer as quantizer
    from litert_quantizer import algorithm_manager, qtyping, recipe_manager
    from litert_quantizer.utils import tfl_flatbuffer_utils

    names = algorithm_manager.AlgorithmName
    return types.SimpleNamespace(
        Quantizer=quantizer, qtyping=qtyping, recipe_manager=recipe_manager,
        tfl_utils=tfl_flatbuffer_utils, names=names, manager=algorithm_manager,
        algorithms={ours: names[key] for ours, key in _KEYS.items()})


def Quantizer(*args, **kwargs):  # noqa: N802  (the public class's name)
    """``litert_quantizer.Quantizer(*args, **kwargs)`` (the public API)."""
    return _lq().Quantizer(*args, **kwargs)


def calibrate(quantizer, data: dict, num_threads: int = 1) -> dict:
    """``quantizer.calibrate(data)``, each tensor's range the min and max over all samples.

    The quantizer merges the ranges of successive calibration steps by a moving average
    (``qsv_utils.moving_average_update``, smoothing 0.95), made for large batches. Fed one
    sample per step, as representative data is, a range follows the last ~20 samples: a
    regression model's output (one value per sample) was calibrated to [0, 2.06] while its
    targets reach 3.5, and every larger output saturated (R^2 0.15 where the converter's int8
    gave 0.945). The min and max over all samples is the converter's statistic and is used
    here; GPTQ's Hessians and OSCAR's input second moments (statistics besides min/max) are
    merged by their own sample-weighted rules (with the moving-average ranges GPTQ and OSCAR
    recipes in static modes had 75-85x min-max's output error on a test MLP).

    Private, checked against litert-quantizer 0.11: ``Quantizer._float_model_buffer`` and
    ``._recipe_manager`` (what its ``calibrate`` passes on), ``calibrator.Calibrator``'s
    ``qsv_update_func``, ``utils.qsv_utils.min_max_update``, ``_gptq_merge_hessian`` and
    ``_oscar_merge_mu2``.
    """
    if not quantizer.need_calibration:
        return {}
    from litert_quantizer import calibrator
    from litert_quantizer.utils import qsv_utils

    def update(qsv, new_qsv):
        if not qsv:
            return new_qsv
        merged = qsv_utils.min_max_update(qsv, new_qsv)
        if "hessian" in qsv and "hessian" in new_qsv:  # GPTQ
            merged["hessian"], merged["num_samples"] = qsv_utils._gptq_merge_hessian(
                qsv, new_qsv)
        if "mu2" in qsv or "mu2" in new_qsv:  # OSCAR
            merged["mu2"], merged["num_samples"] = qsv_utils._oscar_merge_mu2(qsv, new_qsv)
        return merged

    calib = calibrator.Calibrator(quantizer._float_model_buffer, num_threads=num_threads,
                                  qsv_update_func=update)
    calib.calibrate(data, quantizer._recipe_manager)
    return calib.get_model_qsvs()


@functools.lru_cache(maxsize=None)
def op_types() -> tuple:
    """The op type names a recipe entry may name (``FULLY_CONNECTED``...), without the
    quantizer's wildcard and IO keys."""
    return tuple(o.value for o in _lq().qtyping.TFLOperationName
                 if o.value not in ("*", "INPUT", "OUTPUT"))


def algorithm_ops(algorithm: str) -> tuple:
    """The op types the quantizer's algorithm ``algorithm`` (one of ``ALGORITHMS``) quantizes
    (``algorithm_manager.get_supported_ops``), without its INPUT/OUTPUT keys."""
    ops = _lq().manager.get_supported_ops(_lq().algorithms[algorithm])
    return tuple(o.value for o in ops if o.value not in ("INPUT", "OUTPUT"))


def algorithm_of(entry: dict) -> str:
    """Our name of a recipe entry's algorithm (``algorithm_key``), or the key itself."""
    key = str(entry.get("algorithm_key", ""))
    return next((ours for ours, k in _KEYS.items() if k == key), key)


def dynamic_batch_rotations(content: bytes) -> bytes:
    """The quantizer's output with its decomposed Hadamard rotations taking any batch.

    The decomposed rotation reshapes an FC input to ``(blocks, size)`` and back with shapes
    fixed at the float model's batch (1): another batch fails in RESHAPE ("num_input_elements
    != num_output_elements"). Their constant shape tensors (named ``*_prerotate_shape`` and
    ``*_postrotate_shape`` by ``transformations/insert_decomposed_hadamard_rotation.py``) get
    -1 as their first dimension. Other flatbuffers come back unchanged.
    """
    import numpy as np

    import tfcompress._compat.schema as schema

    model = schema.unpacked(content)
    changed = False
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            name = bytes(tensor.name or b"")
            if not name.endswith((b"_prerotate_shape", b"_postrotate_shape")):
                continue
            buffer = model.buffers[tensor.buffer]
            shape = np.frombuffer(bytes(buffer.data), np.int32).copy()
            if len(shape) and shape[0] != -1:
                shape[0] = -1
                buffer.data = np.frombuffer(shape.tobytes(), np.uint8).copy()
                changed = True
    if not changed:
        return content
    return schema.packed(model, len(content))


def splits_for_quantizer(content: bytes) -> bytes:
    """The float flatbuffer with its SPLIT/SPLIT_V ops written as ops the quantizer's static
    modes calibrate and quantize; other flatbuffers come back unchanged.

    - A ``SPLIT_V`` into equal parts (constant sizes and axis) becomes a ``SPLIT``, the same
      computation: the quantizer has no ``SPLIT_V`` (litert-quantizer 0.11, not in
      ``qtyping.TFLOperationName``) and left it float between QUANTIZE and DEQUANTIZE ops.
      Keras' GRU cell splits its recurrent product with one (``tf.split(inner, [units, units,
      -1])``): an unrolled GRU(8) over 12 steps had 11 such float islands (44 extra ops).
    - A split with an output no op reads (an unrolled GRU whose first step multiplies a zero
      state: the converter folds that product away and leaves the reset gate's part of the
      first ``SPLIT`` unused) becomes one ``SLICE`` per output that is read, and the unused
      tensor (made by no op any more) is removed. XNNPACK, which the
      calibrator's interpreter uses, does not write an unused output of a node it takes, so
      the calibrator stopped on it: ``Tensor data is null`` (``calibrator.
      _PreserveAllTensorsCalibrator._calibrate_step`` -> ``tfl_interpreter_utils.
      get_tensor_name_to_content_map`` -> ``Interpreter.get_tensor``).

    Reached through ``ai_edge_litert.schema_py_generated`` (ai-edge-litert 2.3).
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    import tfcompress._compat.schema as schema

    ops = fb.BuiltinOperator
    model = schema.unpacked(content)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    if ops.SPLIT not in codes and ops.SPLIT_V not in codes:
        return content

    def opcode(builtin: int) -> int:
        if builtin not in codes:
            code = fb.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = builtin
            code.version = 1
            model.operatorCodes.append(code)
            codes.append(builtin)
        return codes.index(builtin)

    def constant(graph, index):
        data = model.buffers[graph.tensors[index].buffer].data
        return None if data is None or not len(data) else np.frombuffer(bytes(data), np.int32)

    def int32_tensor(graph, values, name: bytes) -> int:
        buffer = fb.BufferT()
        buffer.data = np.frombuffer(np.asarray(values, np.int32).tobytes(), np.uint8).copy()
        model.buffers.append(buffer)
        tensor = fb.TensorT()
        tensor.shape, tensor.type = np.array([len(values)], np.int32), fb.TensorType.INT32
        tensor.buffer, tensor.name = len(model.buffers) - 1, name
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    def parts(graph, op):  # (source, axis, [size of each output]) of a constant split, or None
        if codes[op.opcodeIndex] == ops.SPLIT and len(op.inputs) == 2:
            source, sizes, axis = op.inputs[1], None, constant(graph, op.inputs[0])
        elif codes[op.opcodeIndex] == ops.SPLIT_V and len(op.inputs) == 3:
            source, sizes, axis = op.inputs[0], constant(graph, op.inputs[1]), \
                constant(graph, op.inputs[2])
        else:
            return None
        shape = graph.tensors[source].shape
        if axis is None or axis.size != 1 or shape is None or shape[int(axis[0])] < 0:
            return None
        axis, length = int(axis[0]) % len(shape), int(shape[int(axis[0])])
        if sizes is None:
            sizes = [length // len(op.outputs)] * len(op.outputs)
        else:
            sizes = [length - (int(sizes.sum()) + 1) if v == -1 else int(v) for v in sizes]
        return source, axis, sizes

    changed = False
    for graph in model.subgraphs:
        read = {i for op in graph.operators for i in op.inputs} | set(graph.outputs)
        rewritten, dropped = [], set()
        for op in graph.operators:
            found = parts(graph, op)
            if found is None:
                rewritten.append(op)
                continue
            source, axis, sizes = found
            if all(i in read for i in op.outputs):
                if codes[op.opcodeIndex] == ops.SPLIT_V and len(set(sizes)) == 1:
                    op.opcodeIndex, op.inputs = opcode(ops.SPLIT), [op.inputs[2], op.inputs[0]]
                    op.builtinOptionsType = fb.BuiltinOptions.SplitOptions
                    op.builtinOptions = fb.SplitOptionsT()
                    op.builtinOptions.numSplits = len(sizes)
                    changed = True
                rewritten.append(op)
                continue
            rank = len(graph.tensors[source].shape)
            for j, out in enumerate(op.outputs):
                if out not in read:
                    continue
                begin, size = [0] * rank, [-1] * rank
                begin[axis], size[axis] = sum(sizes[:j]), sizes[j]
                name = bytes(graph.tensors[out].name or b"")
                piece = fb.OperatorT()
                piece.opcodeIndex, piece.outputs = opcode(ops.SLICE), [out]
                piece.inputs = [source, int32_tensor(graph, begin, name + b"/begin"),
                                int32_tensor(graph, size, name + b"/size")]
                piece.builtinOptionsType = fb.BuiltinOptions.SliceOptions
                piece.builtinOptions = fb.SliceOptionsT()
                rewritten.append(piece)
            dropped |= {out for out in op.outputs if out not in read}
            changed = True
        graph.operators = rewritten
        _drop_tensors(model, model.subgraphs.index(graph), dropped)
    return schema.packed(model, len(content)) if changed else content


def _drop_tensors(model, subgraph: int, drop: set) -> None:
    """Removes the tensors ``drop`` (made and read by no op) from ``model.subgraphs[subgraph]``,
    every index into that subgraph's tensors renumbered (ops, its inputs and outputs, the
    signatures)."""
    if not drop:
        return
    graph = model.subgraphs[subgraph]
    keep = [i for i in range(len(graph.tensors)) if i not in drop]
    new = {old: index for index, old in enumerate(keep)}

    def remap(indices):
        return None if indices is None else [new[i] if i >= 0 else int(i) for i in indices]

    graph.tensors = [graph.tensors[i] for i in keep]
    for op in graph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        op.intermediates = remap(op.intermediates)
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == subgraph:
            for entry in list(signature.inputs or []) + list(signature.outputs or []):
                entry.tensorIndex = new[entry.tensorIndex]


def recipe_entry(regex: str, operation: str, bits: int, *, execution: str, block: int,
                 activation_bits: int, algorithm: str) -> dict:
    """One recipe entry as the quantizer's ``RecipeManager`` builds it (plain JSON types).

    ``bits`` 32 keeps the ops float, 16 casts weights to float16; 2/4/8 are integer weights run
    as ``execution`` (``dynamic``, ``weight_only`` or ``static`` with ``activation_bits``), one
    scale per output channel or per ``block`` inputs.

    Raises:
        ValueError: the quantizer's policy has no such config for ``operation``.
    """
    rm = _lq().recipe_manager.RecipeManager()
    granularity = (_lq().qtyping.QuantGranularity(f"BLOCKWISE_{block}") if block
                   else _lq().qtyping.QuantGranularity.CHANNELWISE)
    key = _lq().algorithms[algorithm]
    if bits == 32:
        rm.add_quantization_config(regex, operation, None, _lq().names.NO_QUANTIZE)
    elif bits == 16:
        rm.add_weight_only_config(regex, operation, 16, algorithm_key=_lq().names.FLOAT_CASTING)
    elif execution == "dynamic":
        rm.add_dynamic_config(regex, operation, bits, granularity, key)
    elif execution == "weight_only":
        rm.add_weight_only_config(regex, operation, bits, granularity, key)
    else:
        rm.add_static_config(regex, operation, activation_bits, bits, granularity, key)
    return json.loads(json.dumps(rm.get_quantization_recipe()[0]))


def read_model(content: bytes):
    """The flatbuffer unpacked as the quantizer reads it (the schema's object API ``ModelT``:
    ``subgraphs``, ``buffers``, ``operatorCodes``...)."""
    return _lq().tfl_utils.read_model(content)


def op_type(model, op) -> str:
    """The op type name of operator ``op`` of an unpacked ``model`` (``FULLY_CONNECTED``...), as
    the quantizer names it, else the schema's name."""
    code = model.operatorCodes[op.opcodeIndex]
    code = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _lq().tfl_utils.TFL_OP_CODE_TO_NAME.get(code)
    return name.value if name is not None else _schema.op_name(code)


def tensor_name(tensor) -> str:
    """A tensor's name as text."""
    return _lq().tfl_utils.get_tensor_name(tensor)


def op_scope(op, tensors) -> str:
    """The op's output tensor names as the quantizer matches recipe regexes against them."""
    return _lq().tfl_utils.get_op_scope(op, tensors)
