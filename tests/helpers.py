"""Plain helpers shared by test modules (fixtures live in conftest.py; the tfmot tests' helpers
in tfmot_helpers.py, the PTQ tests' models in ptq_models.py)."""

import numpy as np

from tfcompress import tasks


def keras_accuracy(model, x, y) -> float:
    """Top-1 accuracy of a Keras model's predictions on ``x`` against labels ``y``."""
    return tasks.top1(model.predict(x, verbose=0), y)


_INT_TYPES = {9: "int8", 17: "int4"}  # schema TensorType INT8, INT4


def flatbuffer_integers(flatbuffer: bytes) -> list:
    """Every constant int8/int4 tensor (rank >= 2) of the flatbuffer's main graph as an int array."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as tfl_utils

    model = tfl_utils.read_model(flatbuffer)
    out = []
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        kind = _INT_TYPES.get(tensor.type)
        if kind is None or data is None or len(data) == 0 or len(tensor.shape) < 2:
            continue
        raw = np.frombuffer(bytes(data), np.uint8)
        if kind == "int4":  # two per byte, low nibble first, two's complement
            nibbles = np.stack([raw & 0xF, raw >> 4], axis=-1).reshape(-1).astype(np.int32)
            values = np.where(nibbles >= 8, nibbles - 16, nibbles)[:int(np.prod(tensor.shape))]
        else:
            values = raw.view(np.int8).astype(np.int32)
        out.append(values.reshape(tensor.shape))
    return out


def assert_deployed(learned: dict, deployed: list) -> None:
    """Each learned integer array (by name) is one of the deployed arrays of its shape."""
    for name, q in learned.items():
        same = [d for d in deployed if d.shape == q.shape]
        assert same, (name, q.shape, [d.shape for d in deployed])
        best = max(float(np.mean(d == q)) for d in same)
        assert best == 1.0, f"{name}: {best:.4f} of the integers as learned"


def int8_prelu_slopes(flatbuffer: bytes) -> list:
    """The stored slope integers of each PRELU op, after asserting the op is int8 throughout
    (input, slopes, output) with one scale and zero point 0 for the slopes."""
    import tfcompress._compat.quantizer as _quantizer

    model = _quantizer.read_model(flatbuffer)
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        if _quantizer.op_type(model, op) != "PRELU":
            continue
        tensors = [graph.tensors[i] for i in list(op.inputs) + list(op.outputs)]
        assert [_INT_TYPES.get(t.type) for t in tensors] == ["int8"] * 3, op
        slopes = tensors[1]
        q = slopes.quantization
        assert len(q.scale) == 1 and list(q.zeroPoint) == [0], (q.scale, q.zeroPoint)
        data = bytes(model.buffers[slopes.buffer].data)
        out.append(np.frombuffer(data, np.int8).astype(np.int32))
    return out
