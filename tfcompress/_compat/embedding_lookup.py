"""Embedding tables of a float32 flatbuffer as ``EMBEDDING_LOOKUP`` ops, for the LiteRT Quantizer.

Checked against ai-edge-litert 2.3.0 (its ``schema_py_generated`` object API: ``ModelT``,
``OperatorT``, ``TensorT``, ``OperatorCodeT``) and litert-quantizer 0.11.0. The TFLite
converter turns a Keras ``Embedding`` (``tf.gather`` on a constant table) into ``GATHER``; the
quantizer quantizes ``GATHER`` only with int8 activations (static), while its weight-only and
dynamic int8/int4/int2 recipes (per row or block-wise, those of its own LLM embedders) take
``EMBEDDING_LOOKUP``. ``EMBEDDING_LOOKUP`` looks up a 1-D int32 id vector, so each such
``GATHER`` becomes ``RESHAPE(ids, [-1])`` -> ``EMBEDDING_LOOKUP(ids, table)`` -> ``RESHAPE`` back
to the gather's output shape: the same outputs, with the table's name kept.
"""

from typing import Union

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as _schema


def _code(code) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode(model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if _code(code) == builtin:
            return i
    code = _schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _tensor(graph, name: str, shape, signature, dtype: int, buffer: int = 0) -> int:
    tensor = _schema.TensorT()
    tensor.name, tensor.type, tensor.buffer = name.encode(), dtype, buffer
    tensor.shape = np.asarray(shape, np.int32)
    tensor.shapeSignature = np.asarray(signature, np.int32)
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _int32_constant(model, graph, name: str, values) -> int:
    buffer = _schema.BufferT()
    buffer.data = np.frombuffer(np.asarray(values, "<i4").tobytes(), np.uint8).copy()
    model.buffers.append(buffer)
    return _tensor(graph, name, [len(values)], [len(values)], _schema.TensorType.INT32,
                   len(model.buffers) - 1)


def _op(model, builtin: int, inputs, outputs):
    op = _schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = _opcode(model, builtin), list(inputs), list(outputs)
    return op


def _signature(tensor) -> list:
    sig = tensor.shapeSignature
    return [int(d) for d in (sig if sig is not None and len(sig) else tensor.shape)]


def _table_gather(model, graph, op) -> bool:
    """A GATHER of rows (axis 0) of a constant float32 2-D table by int32 ids."""
    if _code(model.operatorCodes[op.opcodeIndex]) != _schema.BuiltinOperator.GATHER:
        return False
    table, ids = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    data = model.buffers[table.buffer].data
    options = op.builtinOptions
    return (data is not None and len(data) > 0 and len(table.shape) == 2
            and table.type == _schema.TensorType.FLOAT32 and ids.type == _schema.TensorType.INT32
            and (options is None or (options.axis == 0 and options.batchDims == 0))
            and _signature(ids).count(-1) <= 1)


def gathers_as_embedding_lookups(flatbuffer: Union[bytes, bytearray]) -> tuple[bytes, int]:
    """``(flatbuffer, n)``: the model with its ``n`` table GATHERs as EMBEDDING_LOOKUPs.

    Only gathers of rows of a constant float32 2-D table by int32 ids (at most one dynamic
    dimension) change; with none, the bytes come back as they are.
    """
    model = _schema.ModelT.InitFromPackedBuf(bytes(flatbuffer), 0)
    count = 0
    for graph in model.subgraphs:
        operators = []
        for op in graph.operators:
            if not _table_gather(model, graph, op):
                operators.append(op)
                continue
            table, ids, out = int(op.inputs[0]), int(op.inputs[1]), int(op.outputs[0])
            width = int(graph.tensors[table].shape[1])
            name = graph.tensors[out].name.decode()
            ids_sig = _signature(graph.tensors[ids])
            rows = int(np.prod(graph.tensors[ids].shape))
            flat_sig = -1 if -1 in ids_sig else rows
            flat_ids = _tensor(graph, f"{name}/ids", [rows], [flat_sig], _schema.TensorType.INT32)
            looked_up = _tensor(graph, f"{name}/lookup", [rows, width], [flat_sig, width],
                                graph.tensors[out].type)
            operators += [
                _op(model, _schema.BuiltinOperator.RESHAPE,
                    [ids, _int32_constant(model, graph, f"{name}/ids_shape", [-1])], [flat_ids]),
                _op(model, _schema.BuiltinOperator.EMBEDDING_LOOKUP, [flat_ids, table],
                    [looked_up]),
                _op(model, _schema.BuiltinOperator.RESHAPE,
                    [looked_up, _int32_constant(model, graph, f"{name}/shape", ids_sig + [width])],
                    [out]),
            ]
            count += 1
        graph.operators = operators
    if not count:
        return bytes(flatbuffer), 0
    for buffer in model.buffers:  # data stored after the flatbuffer (offset, size): inline it
        if buffer.offset > 1:
            buffer.data = np.frombuffer(
                flatbuffer, np.uint8, count=buffer.size, offset=buffer.offset).copy()
            buffer.offset = buffer.size = 0
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), count
