"""The channel-dependency analysis behind ``prune_channels``.

On the nodes ``tfcompress.graph.read`` gives (topological order), ``analyse`` follows every
tensor's channels back to the producer layers that create them (a union-find of channel groups:
channels joined by Add / Multiply / ... must be kept or removed together) and names the layers it
cannot follow; sequence layers too: Embedding (its width is a group), LSTM/GRU/SimpleRNN and their
Bidirectional wrapper (units), MultiHeadAttention (reads query/key/value channels through its
projections; its output, when ``output_shape`` is None, is the query's group: see
``ATTENTION``); ``indices`` maps the kept channels of each group to the channel indices of any
tensor. Nothing here changes a model; ``channels.py`` slices weights.
"""

from typing import Optional

import numpy as np

import tfcompress.graph as graphs

# Layers whose output channel i depends only on input channel i (any tensor rank).
ELEMENTWISE = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Rescaling",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "Identity",
}
# Channels-last spatial layers that keep channel i as channel i.
SPATIAL = {
    f"{kind}{d}D" for d in (1, 2, 3) for kind in (
        "MaxPooling", "AveragePooling", "GlobalAveragePooling", "GlobalMaxPooling",
        "ZeroPadding", "Cropping", "UpSampling")
}
# TFOpLambda functions that act element-wise when their other arguments are numbers.
ELEMENTWISE_OPS = {
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.maximum", "math.minimum", "nn.relu", "nn.relu6", "math.sigmoid", "math.tanh",
    "nn.silu", "nn.swish", "math.abs", "math.square", "nn.gelu", "nn.elu", "nn.leaky_relu",
}
MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
CONVS = {"Conv1D", "Conv2D", "Conv3D"}
TRANSPOSED = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}
RECURRENT = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}  # gates per unit, concatenated on the columns
PRODUCERS = CONVS | TRANSPOSED | SEPARABLE | {"Dense", "Embedding"} | set(RECURRENT)
ATTENTION = "MultiHeadAttention"
TENSOR_ADD = {"__operators__.add", "math.add", "math.subtract"}  # x + position embedding
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
NORMS = {"BatchNormalization", "LayerNormalization"}  # per-channel weights on the last axis
_MIXING = {"softmax", "log_softmax"}  # activations over the channel axis: channels stay whole


# ----------------------------------------------------------------------------- channel groups


class Flat:
    """Layout of a Flatten output: ``spatial`` positions, each holding the ``segments``."""

    def __init__(self, spatial: int, segments: tuple):
        self.spatial, self.segments = spatial, segments


class Expanded:
    """Layout of a DepthwiseConv output with ``multiplier`` m > 1: input channel c becomes
    output channels c*m .. c*m + m - 1, for the input's ``segments``."""

    def __init__(self, segments: tuple, multiplier: int):
        self.segments, self.multiplier = segments, multiplier


class Groups:
    """Union-find over channel groups: channels that must be kept or removed together."""

    def __init__(self):
        self.parent, self.size, self.fixed = [], [], []
        self.producers, self.bns = [], []
        self.attention = {}  # MultiHeadAttention followed: name -> (query, key, value) layouts

    def new(self, size: int, fixed: bool = False, producer: Optional[str] = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.fixed.append(fixed)
        self.producers.append([producer] if producer else [])
        self.bns.append([])
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        self.parent[b] = a
        self.fixed[a] = self.fixed[a] or self.fixed[b] or self.size[a] != self.size[b]
        self.producers[a] += self.producers[b]
        self.bns[a] += self.bns[b]

    def fix(self, layout) -> None:
        for g in segments(layout):
            self.fixed[self.find(g)] = True


def segments(layout) -> tuple:
    return layout.segments if isinstance(layout, (Flat, Expanded)) else layout


def _multiplier(layout) -> int:
    return layout.multiplier if isinstance(layout, Expanded) else 1


def channels_last(cfg: dict) -> bool:
    return cfg.get("data_format") in (None, "channels_last")


def _last_axis(axis, rank: int) -> bool:
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis in (-1, rank - 1)


def _output_channels(layer, index: int) -> list:
    shapes = layer.get_output_shape_at(index) if hasattr(layer, "get_output_shape_at") else None
    several = isinstance(shapes, (list, tuple)) and shapes and hasattr(shapes[0], "__len__")
    shapes = list(shapes) if several else [shapes]  # a tuple of shapes: several outputs
    return [int(s[-1]) if s is not None and len(s) > 1 and s[-1] else 1 for s in shapes]


def _width(cfg: dict) -> int:
    if "layer" in cfg:  # Bidirectional
        return cfg["layer"]["config"]["units"]
    return cfg.get("filters", cfg.get("units", cfg.get("output_dim")))


def _recurrent(cfg: dict) -> bool:
    """A plain LSTM/GRU/SimpleRNN config (one output: no states returned)."""
    return not cfg.get("return_state") and not cfg.get("time_major")


def bidirectional(cfg: dict) -> Optional[str]:
    """The merge mode of a Bidirectional LSTM/GRU/SimpleRNN that can be followed, else None."""
    inner = cfg.get("layer", {})
    if inner.get("class_name") not in RECURRENT or not _recurrent(inner["config"]) \
            or cfg.get("backward_layer") is not None:
        return None
    return cfg.get("merge_mode") if cfg.get("merge_mode") in (
        "concat", "sum", "ave", "mul") else None


def attention_inputs(node) -> Optional[tuple]:
    """(query, key, value) tensor keys of a MultiHeadAttention call, None if not all found."""
    if len(node.call) < 1:
        return None
    query = tuple(node.call[0][:3])
    kwargs = node.call[0][3] if len(node.call[0]) > 3 and isinstance(node.call[0][3], dict) else {}
    rest = [tuple(t[:3]) for t in node.call[1:]]
    value = rest[0] if rest else kwargs.get("value")
    key = rest[1] if len(rest) > 1 else kwargs.get("key", value)
    if value is None or key is None or not isinstance(value, (list, tuple)) \
            or not isinstance(key, (list, tuple)):
        return None
    return query, tuple(key[:3]), tuple(value[:3])


def _produces(node, cfg, ins, flat_in) -> bool:
    """A layer that creates new channels from all of its input channels (a group of its own)."""
    cls = node.cls
    if cls in RECURRENT and not _recurrent(cfg):
        return False
    return (cls in PRODUCERS and len(ins) == 1 and channels_last(cfg)
            and cfg.get("groups", 1) == 1 and (not flat_in or cls in ("Dense", "Embedding")))


def _passes(node, layer, cfg, ins, flat_in, rank) -> bool:
    """A layer whose output channel i is its input channel i (weights, if any, per channel)."""
    cls = node.cls
    if len(ins) != 1:
        return False
    if cls in DEPTHWISE:
        return not flat_in and cfg.get("depth_multiplier", 1) == 1 and channels_last(cfg)
    if isinstance(ins[0], Expanded) and cls not in NORMS | ELEMENTWISE | SPATIAL | {
            "PReLU", "TFOpLambda", "Softmax"}:
        return False
    if cls in NORMS:  # after Flatten too: its weights follow the flat indices
        return _last_axis(cfg.get("axis", -1), rank)
    if cls in ELEMENTWISE or cls == "Softmax":
        return True
    if cls == "PReLU":
        return not flat_in
    if cls == "TFOpLambda":
        return cfg.get("function") in ELEMENTWISE_OPS and node.numeric_args
    if cls in SPATIAL:
        return not flat_in and channels_last(cfg)
    if cls == "Reshape":  # the channel axis stays last and whole: position-major order kept
        before = layer.get_input_shape_at(node.key_index)
        after = layer.get_output_shape_at(node.key_index)
        return not flat_in and before[-1] is not None and before[-1] == after[-1]
    return False


def analyse(model, nodes, outputs):
    """Follows channels through the graph: {tensor key: layout}, groups, layers not followed."""
    groups, layouts, not_followed = Groups(), {}, []
    for node in nodes:
        cfg, cls = node.config, node.cls
        ins = [layouts[k] for k in node.inputs]
        key = (node.name, node.key_index, 0)
        flat_in = any(isinstance(x, Flat) for x in ins)
        if node.name == graphs.INPUT:
            layouts[key] = (groups.new(model.input_shape[-1], fixed=True),)
            continue
        if cls == "InputLayer":
            layouts[key] = (groups.new(cfg["batch_input_shape"][-1], fixed=True),)
            continue
        layer = model.get_layer(node.name)
        rank = len(layer.get_input_shape_at(node.key_index)) if ins else 0
        mixing = cfg.get("activation") in _MIXING or cls == "Softmax"
        ok = not node.shared and len(ins) >= 1
        if ok and _produces(node, cfg, ins, flat_in):
            layouts[key] = (groups.new(_width(cfg), fixed=mixing, producer=node.name),)
        elif ok and cls == "Bidirectional" and len(ins) == 1 and bidirectional(cfg) \
                and not flat_in:
            g = groups.new(_width(cfg), producer=node.name)  # both directions keep the same units
            layouts[key] = (g, g) if cfg["merge_mode"] == "concat" else (g,)
        elif ok and cls == ATTENTION and _attention(node, cfg, layouts, groups):
            layouts[key] = groups.attention[node.name][3]
        elif ok and cls == "TFOpLambda" and cfg.get("function") in TENSOR_ADD and len(ins) == 2 \
                and not flat_in and all(isinstance(x, tuple) for x in ins) \
                and [groups.size[g] for g in ins[0]] == [groups.size[g] for g in ins[1]]:
            for a, b in zip(ins[0], ins[1]):  # x + position embedding: one group per channel
                groups.union(a, b)
            layouts[key] = ins[0]
        elif ok and cls in DEPTHWISE and len(ins) == 1 and not flat_in and channels_last(cfg) \
                and cfg.get("depth_multiplier", 1) > 1 and isinstance(ins[0], tuple):
            layouts[key] = Expanded(ins[0], int(cfg["depth_multiplier"]))
        elif ok and _passes(node, layer, cfg, ins, flat_in, rank):
            layouts[key] = ins[0]
            if mixing:
                groups.fix(ins[0])
            if cls == "BatchNormalization" and isinstance(ins[0], tuple):
                for g in ins[0]:
                    groups.bns[groups.find(g)].append(node.name)
        elif ok and cls == "Flatten" and len(ins) == 1 and isinstance(ins[0], tuple) \
                and channels_last(cfg):
            spatial = int(np.prod(layer.get_input_shape_at(node.key_index)[1:-1], dtype=np.int64))
            layouts[key] = Flat(spatial, ins[0])
        elif ok and cls in MERGE and not flat_in and len(
                {(_multiplier(x), tuple(groups.size[g] for g in segments(x))) for x in ins}) == 1:
            for x in ins[1:]:
                for a, b in zip(segments(ins[0]), segments(x)):
                    groups.union(a, b)
            layouts[key] = ins[0]
        elif ok and cls == "Concatenate" and not flat_in and _last_axis(cfg.get("axis", -1), rank) \
                and all(isinstance(x, tuple) for x in ins):
            layouts[key] = tuple(g for x in ins for g in x)  # each input at its channel offset
        else:  # not followed: its inputs and outputs keep every channel
            for x in ins:
                groups.fix(x)
            for i, c in enumerate(_output_channels(layer, node.key_index)):
                layouts[(node.name, node.key_index, i)] = (groups.new(c, fixed=True),)
            if node.name not in not_followed:
                not_followed.append(node.name)
    for key in outputs:
        groups.fix(layouts[key])
    return layouts, groups, not_followed


def _attention(node, cfg, layouts, groups) -> bool:
    """Records a MultiHeadAttention call that can be followed in ``groups.attention``: name ->
    (query, key, value, output layout). Its output is the query's group when ``output_shape``
    is None (Keras sizes the output projection by the query), else a group of its own."""
    keys = attention_inputs(node)
    kwargs = node.call[0][3] if node.call and len(node.call[0]) > 3 else {}
    if node.shared or keys is None or any(k not in layouts for k in keys) or (
            isinstance(kwargs, dict) and kwargs.get("return_attention_scores")):
        return False  # the scores are a second output
    query, key, value = (layouts[k] for k in keys)
    if not all(isinstance(x, tuple) for x in (query, key, value)):
        return False
    shape = cfg.get("output_shape")
    if shape is None:
        if len(query) != 1:
            return False
        out = query
        groups.producers[groups.find(query[0])].append(node.name)
    elif isinstance(shape, int) or (isinstance(shape, (list, tuple)) and len(shape) == 1):
        width = shape if isinstance(shape, int) else shape[0]
        out = (groups.new(int(width), producer=node.name),)
    else:
        return False
    groups.attention[node.name] = (query, key, value, out)
    return True


def indices(layout, keep: dict, groups: Groups):
    """Kept indices of a tensor with ``layout`` (None when every channel is kept)."""
    segs = segments(layout)
    if all(keep.get(groups.find(g)) is None for g in segs):
        return None
    parts, offset = [], 0
    for g in segs:
        k = keep.get(groups.find(g))
        parts.append(offset + (np.arange(groups.size[g]) if k is None else k))
        offset += groups.size[g]
    idx = np.concatenate(parts)
    if isinstance(layout, Expanded):
        m = layout.multiplier
        idx = (idx[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    if isinstance(layout, Flat):
        idx = (np.arange(layout.spatial)[:, None] * offset + idx[None, :]).reshape(-1)
    return idx


def output_kernel(layer) -> np.ndarray:
    """A producer's kernel as a (fan-in, output channels) matrix, for ranking its channels."""
    cls = type(layer).__name__
    if cls == "Embedding":
        return layer.embeddings.numpy()
    if cls == ATTENTION:  # the output projection (heads, value_dim, out)
        w = layer.get_weights()[-2 if layer.get_config()["use_bias"] else -1]
        return w.reshape(-1, w.shape[-1])
    if cls == "Bidirectional":
        return np.concatenate([_unit_matrix(layer.forward_layer), _unit_matrix(
            layer.backward_layer)])
    if cls in RECURRENT:
        return _unit_matrix(layer)
    if cls in SEPARABLE:
        w = layer.pointwise_kernel.numpy()
    elif cls in TRANSPOSED:
        w = np.moveaxis(layer.kernel.numpy(), -2, -1)  # (..., filters, in) -> (..., in, filters)
    else:
        w = layer.kernel.numpy()
    return w.reshape(-1, w.shape[-1])


def _unit_matrix(layer) -> np.ndarray:
    """An RNN's kernel and recurrent kernel as a (rows x gates, units) matrix: every gate's
    weights of a unit in that unit's column."""
    gates, units = RECURRENT[type(layer).__name__], layer.cell.units
    w = np.concatenate([layer.cell.kernel.numpy(), layer.cell.recurrent_kernel.numpy()])
    return w.reshape(len(w), gates, units).reshape(-1, units)
