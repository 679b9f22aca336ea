"""The channel-dependency analysis behind ``prune_channels``.

On the nodes ``tfcompress.graph.read`` gives (topological order), ``analyse`` follows every
tensor's channels back to the producer layers that create them (a union-find of channel groups: channels joined by Add / Multiply / ... must be kept or removed
together) and names the layers it cannot follow; ``indices`` maps the kept channels of each group
to the channel indices of any tensor. Nothing here changes a model; ``channels.py`` slices weights.
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
PRODUCERS = CONVS | TRANSPOSED | SEPARABLE | {"Dense"}
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
    shapes = shapes if isinstance(shapes, list) else [shapes]
    return [int(s[-1]) if s is not None and len(s) > 1 and s[-1] else 1 for s in shapes]


def _width(cfg: dict) -> int:
    return cfg.get("filters", cfg.get("units"))


def _produces(node, cfg, ins, flat_in) -> bool:
    """A layer that creates new channels from all of its input channels (a group of its own)."""
    cls = node.cls
    return (cls in PRODUCERS and len(ins) == 1 and channels_last(cfg)
            and cfg.get("groups", 1) == 1 and (not flat_in or cls == "Dense"))


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
    if cls in SEPARABLE:
        w = layer.pointwise_kernel.numpy()
    elif cls in TRANSPOSED:
        w = np.moveaxis(layer.kernel.numpy(), -2, -1)  # (..., filters, in) -> (..., in, filters)
    else:
        w = layer.kernel.numpy()
    return w.reshape(-1, w.shape[-1])
