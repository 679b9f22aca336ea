"""The channel-dependency analysis behind ``prune_channels`` (and the graph reader of all surgery).

``graph`` reads a Sequential or Functional model's config into nodes in topological order;
``analyse`` follows every tensor's channels back to the producer layers that create them (a
union-find of channel groups: channels joined by Add / Multiply / ... must be kept or removed
together) and names the layers it cannot follow; ``indices`` maps the kept channels of each group
to the channel indices of any tensor. Nothing here changes a model; ``surgery.py`` slices weights.
"""

import copy
import dataclasses
from typing import Optional

import numpy as np

from tfcompress import errors
from tfcompress._compat.keras import is_functional, keras, unsafe_deserialization
from tfcompress._surgery_report import REPORT_KEY

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


@dataclasses.dataclass
class Node:
    """One call of a layer in the model's config."""

    name: str
    cls: str
    config: dict  # the layer's config inside our copy of the model config (edited in place)
    inputs: list  # tensor keys (layer name, node index, tensor index)
    key_index: int  # which call of the layer this is
    shared: bool
    numeric_args: bool = True  # every non-tensor call argument is a plain number (or a name)


def graph(model):
    """(model config copy, entries list, nodes in topological order, output keys)."""
    if not is_functional(model):
        raise errors.ModelError(
            f"model {model.name!r} is a subclassed Keras model; accepted: a Sequential or "
            "Functional model (surgery rebuilds the model from its config)")
    if not model.built:
        raise errors.ModelError(f"model {model.name!r} is not built; give it an Input first")
    config = copy.deepcopy(model.get_config())
    config.pop(REPORT_KEY, None)  # an earlier surgery's report: not this model's
    entries = config["layers"]
    for entry in entries:
        entry.pop("build_config", None)
    nodes = []
    if isinstance(model, keras.Sequential):
        prev = None
        if not entries or entries[0]["class_name"] != "InputLayer":
            prev = ("__input__", 0, 0)
            nodes.append(Node("__input__", "InputLayer", {}, [], 0, False))
        for entry in entries:
            name = entry["config"]["name"]
            nodes.append(Node(name, entry["class_name"], entry["config"],
                              [prev] if prev else [], 0, False))
            prev = (name, 0, 0)
        return config, entries, nodes, [prev]
    pending, names = [], {e["config"]["name"] for e in entries}
    for entry in entries:
        inbound = entry.get("inbound_nodes") or []
        name = entry["config"]["name"]
        if not inbound:
            pending.append(Node(name, entry["class_name"], entry["config"], [], 0, False))
        for i, call in enumerate(inbound):
            if isinstance(call, dict):  # another serialization format: not followed
                call = []
            if call and isinstance(call[0], str):  # one tensor: [name, node, index, kwargs]
                call = [call]
            keys = [tuple(t[:3]) for t in call]
            for t in call:  # tensors passed as keyword arguments are inputs too
                keys += [k for k in tensor_refs(t[3:], names) if k not in keys]
            numeric = all(isinstance(v, (int, float, str, type(None)))
                          for t in call for kw in t[3:4] if isinstance(kw, dict)
                          for v in kw.values())
            pending.append(Node(name, entry["class_name"], entry["config"], keys, i,
                                len(inbound) > 1, numeric))
    done = set()
    while pending:  # topological order
        ready = [n for n in pending if all(k[:2] in done for k in n.inputs)]
        if not ready:
            raise errors.ModelError(f"cannot order the layers of model {model.name!r}")
        for n in ready:
            nodes.append(n)
            done.add((n.name, n.key_index))
            pending.remove(n)
    return config, entries, nodes, [tuple(o[:3]) for o in config["output_layers"]]



def tensor_refs(value, names) -> list:
    """Keys of the tensors referenced inside serialized call arguments."""
    if isinstance(value, dict):
        return [k for v in value.values() for k in tensor_refs(v, names)]
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and value[0] in names \
                and isinstance(value[1], int) and isinstance(value[2], int):
            return [tuple(value[:3])]
        return [k for v in value for k in tensor_refs(v, names)]
    return []


def rebuild(model, config) -> keras.Model:
    """The model class from our edited config. Lambda layers are allowed: the config comes from
    the caller's model in memory (code already running), not from a file."""
    from tfcompress.models import custom_objects_scope  # models imports this module's report

    with custom_objects_scope(), unsafe_deserialization():
        return type(model).from_config(config)


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
        if node.name == "__input__":
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
