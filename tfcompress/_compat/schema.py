"""The TFLite flatbuffer schema ai-edge-litert ships (``ai_edge_litert.schema_py_generated``).

Checked against ai-edge-litert 2.3.0. The module is generated code, not a documented API: its
enums (``TensorType``, ``BuiltinOperator``), the blockwise quantization details class and the
reader ``Model.GetRootAsModel`` are reached only here, as small functions.
"""

import functools
from typing import Optional

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as _schema


@functools.lru_cache(maxsize=None)
def _enum_names(enum) -> dict:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def type_name(code: int) -> str:
    """The lower-case name of a tensor type code (``int8``, ``int4``, ``float16``...)."""
    name = _enum_names(_schema.TensorType).get(code)
    return name.lower() if name is not None else str(code)


def op_name(code: int) -> str:
    """The name of a builtin operator code (``FULLY_CONNECTED``...), or the code as text."""
    return _enum_names(_schema.BuiltinOperator).get(code, str(code))


def blockwise(quantization) -> Optional[tuple]:
    """``(block size, index of the scales tensor)`` of a tensor's blockwise quantization (object
    API ``QuantizationParametersT``), or None for channelwise/tensorwise or no quantization."""
    details = getattr(quantization, "details", None)
    if isinstance(details, _schema.BlockwiseQuantizationT):
        return int(details.blockSize), int(details.scales)
    return None


def tensor_type_of(flatbuffer: bytes, tensor_name: str) -> Optional[str]:
    """The type name of the main graph's tensor called ``tensor_name`` (a quick look without
    unpacking the model), or None when no tensor has that name."""
    graph = _schema.Model.GetRootAsModel(flatbuffer, 0).Subgraphs(0)
    name = tensor_name.encode()
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        if tensor.Name() == name:
            return type_name(tensor.Type())
    return None


def state_tensors(flatbuffer: bytes) -> int:
    """How many variable tensors (a recurrent layer's state, kept between invokes) the
    flatbuffer's subgraphs hold (a quick look without unpacking the model)."""
    model = _schema.Model.GetRootAsModel(flatbuffer, 0)
    return sum(graph.Tensors(i).IsVariable()
               for graph in (model.Subgraphs(g) for g in range(model.SubgraphsLength()))
               for i in range(graph.TensorsLength()))


def unpacked(content: bytes):
    """The flatbuffer as the schema's object API (``ModelT``), buffers stored after it inline."""
    model = _schema.ModelT.InitFromPackedBuf(content, 0)
    for buffer in model.buffers:  # data stored after the flatbuffer (offset, size): inline it
        if buffer.offset > 1:
            buffer.data = np.frombuffer(content, np.uint8, count=buffer.size,
                                        offset=buffer.offset).copy()
            buffer.offset = buffer.size = 0
    return model


def packed(model, size_hint: int = 0) -> bytes:
    """A ``ModelT`` (from ``unpacked``) written back as a TFLite flatbuffer."""
    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
