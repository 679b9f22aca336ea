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
