"""Model surgery that really shrinks layers: structured channel pruning and low-rank factorization.

Both functions rebuild a smaller plain Keras model from the original's config (Sequential or
Functional), copy the surviving weights in, and return it uncompiled, ready to fine-tune. The
returned model carries a ``surgery_report`` attribute (a :class:`SurgeryReport`) that says what
changed and which layers were left whole. tfmot has no structured pruning for Keras models; this
module is ours, kept small: it follows channels through the graph and slices weights, nothing more.
"""

import copy
import dataclasses
from typing import Optional, Sequence

import numpy as np
from absl import logging

from tfcompress import errors, models
from tfcompress._keras import is_functional, keras, unsafe_deserialization
from tfcompress.keras3 import ensure_keras2

CRITERIA = ("l1", "l2", "bn")

# Layers whose output channel i depends only on input channel i (any tensor rank).
_ELEMENTWISE = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Rescaling",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
}
# Channels-last spatial layers that keep channel i as channel i.
_SPATIAL = {
    f"{kind}{d}D" for d in (1, 2, 3) for kind in (
        "MaxPooling", "AveragePooling", "GlobalAveragePooling", "GlobalMaxPooling",
        "ZeroPadding", "Cropping", "UpSampling")
}
# TFOpLambda functions that act element-wise when their other arguments are numbers.
_ELEMENTWISE_OPS = {
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.maximum", "math.minimum", "nn.relu", "nn.relu6", "math.sigmoid", "math.tanh",
    "nn.silu", "nn.swish", "math.abs", "math.square",
}
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_PRODUCERS = {"Conv1D", "Conv2D", "Conv3D", "Dense"}
_DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
_MIXING = {"softmax", "log_softmax"}  # activations over the channel axis: channels stay whole


@dataclasses.dataclass(frozen=True)
class SurgeryReport:
    """What ``prune_channels`` or ``factorize`` did (the result's ``surgery_report``).

    Attributes:
        kind: ``"prune_channels"`` or ``"factorize"``.
        changed: layer name -> {"before": ..., "after": ...} (channels, or parameters and rank).
        not_followed: layers the surgery could not follow; they and the channels they touch are
            left whole.
        kept: for channel pruning, producer layer name -> indices of the channels kept.
        notes: anything else worth knowing (e.g. a criterion fallback), as text.
    """

    kind: str
    changed: dict
    not_followed: tuple = ()
    kept: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "changed": self.changed, "not_followed": list(self.not_followed),
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- the graph


@dataclasses.dataclass
class _Node:
    name: str
    cls: str
    config: dict  # the layer's config inside our copy of the model config (edited in place)
    inputs: list  # tensor keys (layer name, node index, tensor index)
    key_index: int  # which call of the layer this is
    shared: bool
    numeric_args: bool = True  # every non-tensor call argument is a plain number (or a name)


def _graph(model):
    """(model config copy, entries list, nodes in topological order, output keys)."""
    if not is_functional(model):
        raise errors.ModelError(
            f"model {model.name!r} is a subclassed Keras model; accepted: a Sequential or "
            "Functional model (surgery rebuilds the model from its config)")
    if not model.built:
        raise errors.ModelError(f"model {model.name!r} is not built; give it an Input first")
    config = copy.deepcopy(model.get_config())
    entries = config["layers"]
    for entry in entries:
        entry.pop("build_config", None)
    nodes = []
    if isinstance(model, keras.Sequential):
        prev = None
        if not entries or entries[0]["class_name"] != "InputLayer":
            prev = ("__input__", 0, 0)
            nodes.append(_Node("__input__", "InputLayer", {}, [], 0, False))
        for entry in entries:
            name = entry["config"]["name"]
            nodes.append(_Node(name, entry["class_name"], entry["config"],
                               [prev] if prev else [], 0, False))
            prev = (name, 0, 0)
        return config, entries, nodes, [prev]
    pending, names = [], {e["config"]["name"] for e in entries}
    for entry in entries:
        inbound = entry.get("inbound_nodes") or []
        name = entry["config"]["name"]
        if not inbound:
            pending.append(_Node(name, entry["class_name"], entry["config"], [], 0, False))
        for i, call in enumerate(inbound):
            if isinstance(call, dict):  # another serialization format: not followed
                call = []
            if call and isinstance(call[0], str):  # one tensor: [name, node, index, kwargs]
                call = [call]
            keys = [tuple(t[:3]) for t in call]
            for t in call:  # tensors passed as keyword arguments are inputs too
                keys += [k for k in _tensor_refs(t[3:], names) if k not in keys]
            numeric = all(isinstance(v, (int, float, str, type(None)))
                          for t in call for kw in t[3:4] if isinstance(kw, dict)
                          for v in kw.values())
            pending.append(_Node(name, entry["class_name"], entry["config"], keys, i,
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


def _tensor_refs(value, names) -> list:
    """Keys of the tensors referenced inside serialized call arguments."""
    if isinstance(value, dict):
        return [k for v in value.values() for k in _tensor_refs(v, names)]
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and value[0] in names \
                and isinstance(value[1], int) and isinstance(value[2], int):
            return [tuple(value[:3])]
        return [k for v in value for k in _tensor_refs(v, names)]
    return []


def _rebuild(model, config) -> keras.Model:
    """The model class from our edited config. Lambda layers are allowed: the config comes from
    the caller's model in memory (code already running), not from a file."""
    with models.custom_objects_scope(), unsafe_deserialization():
        return type(model).from_config(config)


# ----------------------------------------------------------------------------- channel groups


class _Flat:
    """Layout of a Flatten output: ``spatial`` positions, each holding the ``segments``."""

    def __init__(self, spatial: int, segments: tuple):
        self.spatial, self.segments = spatial, segments


class _Groups:
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
        for g in _segments(layout):
            self.fixed[self.find(g)] = True


def _segments(layout) -> tuple:
    return layout.segments if isinstance(layout, _Flat) else layout


def _channels_last(cfg: dict) -> bool:
    return cfg.get("data_format") in (None, "channels_last")


def _last_axis(axis, rank: int) -> bool:
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis in (-1, rank - 1)


def _output_channels(layer, index: int) -> list:
    shapes = layer.get_output_shape_at(index) if hasattr(layer, "get_output_shape_at") else None
    shapes = shapes if isinstance(shapes, list) else [shapes]
    return [int(s[-1]) if s is not None and len(s) > 1 and s[-1] else 1 for s in shapes]


def _analyse(model, nodes, outputs):
    """Follows channels through the graph: {tensor key: layout}, groups, layers not followed."""
    groups, layouts, not_followed = _Groups(), {}, []
    for node in nodes:
        cfg, cls = node.config, node.cls
        ins = [layouts[k] for k in node.inputs]
        key = (node.name, node.key_index, 0)
        flat_in = any(isinstance(x, _Flat) for x in ins)
        if node.name == "__input__":
            layouts[key] = (groups.new(model.input_shape[-1], fixed=True),)
            continue
        if cls == "InputLayer":
            layouts[key] = (groups.new(cfg["batch_input_shape"][-1], fixed=True),)
            continue
        layer = model.get_layer(node.name)
        rank = len(layer.get_input_shape_at(node.key_index)) if ins else 0
        mixing = cfg.get("activation") in _MIXING
        ok = not node.shared and len(ins) >= 1
        if ok and cls in _PRODUCERS and len(ins) == 1 and _channels_last(cfg) \
                and cfg.get("groups", 1) == 1 and (not flat_in or cls == "Dense"):
            layouts[key] = (groups.new(cfg.get("filters", cfg.get("units")), fixed=mixing,
                                       producer=node.name),)
        elif ok and cls in _DEPTHWISE and len(ins) == 1 and not flat_in \
                and cfg.get("depth_multiplier", 1) == 1 and _channels_last(cfg):
            layouts[key] = ins[0]
            if mixing:
                groups.fix(ins[0])
        elif ok and cls == "BatchNormalization" and len(ins) == 1 \
                and _last_axis(cfg.get("axis", -1), rank):
            layouts[key] = ins[0]  # after Flatten too: its weights follow the flat indices
            for g in ([] if flat_in else ins[0]):
                groups.bns[groups.find(g)].append(node.name)
        elif ok and len(ins) == 1 and (cls in _ELEMENTWISE or (
                cls == "TFOpLambda" and cfg.get("function") in _ELEMENTWISE_OPS
                and node.numeric_args) or (
                cls in _SPATIAL and not flat_in and _channels_last(cfg))):
            layouts[key] = ins[0]
            if mixing:
                groups.fix(ins[0])
        elif ok and cls == "Flatten" and len(ins) == 1 and not flat_in and _channels_last(cfg):
            spatial = int(np.prod(layer.get_input_shape_at(node.key_index)[1:-1], dtype=np.int64))
            layouts[key] = _Flat(spatial, ins[0])
        elif ok and cls in _MERGE and not flat_in and len(
                {tuple(groups.size[g] for g in x) for x in ins}) == 1:
            for x in ins[1:]:
                for a, b in zip(ins[0], x):
                    groups.union(a, b)
            layouts[key] = ins[0]
        elif ok and cls == "Concatenate" and not flat_in and _last_axis(cfg.get("axis", -1), rank):
            layouts[key] = tuple(g for x in ins for g in x)
        elif ok and cls == "Softmax" and len(ins) == 1:
            groups.fix(ins[0])
            layouts[key] = ins[0]
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


def _scores(model, groups: _Groups, root: int, criterion: str):
    """Per-channel importance of a group, summed over its members; (scores, note or None)."""
    note = None
    if criterion == "bn":
        gammas = [model.get_layer(n).gamma for n in groups.bns[root]
                  if model.get_layer(n).gamma is not None]
        if gammas:
            return sum(np.abs(g.numpy()) for g in gammas), None
        note = f"no BatchNormalization scale after {groups.producers[root]}: ranked by l1"
        criterion = "l1"
    total = 0.0
    for name in groups.producers[root]:
        w = model.get_layer(name).kernel.numpy()
        w = w.reshape(-1, w.shape[-1])
        total = total + (np.abs(w).sum(0) if criterion == "l1" else np.sqrt((w ** 2).sum(0)))
    return total, note


def _indices(layout, keep: dict, groups: _Groups):
    """Kept indices of a tensor with ``layout`` (None when every channel is kept)."""
    segs = _segments(layout)
    if all(keep.get(groups.find(g)) is None for g in segs):
        return None
    parts, offset = [], 0
    for g in segs:
        k = keep.get(groups.find(g))
        parts.append(offset + (np.arange(groups.size[g]) if k is None else k))
        offset += groups.size[g]
    idx = np.concatenate(parts)
    if isinstance(layout, _Flat):
        idx = (np.arange(layout.spatial)[:, None] * offset + idx[None, :]).reshape(-1)
    return idx


def prune_channels(
    model: keras.Model,
    ratio: float,
    *,
    criterion: str = "l1",
    layers: Optional[Sequence[str]] = None,
) -> keras.Model:
    """Removes the least important filters of Conv / Dense layers: a smaller plain model.

    Channels are followed from each Conv1D/2D/3D or Dense layer through BatchNormalization,
    element-wise activations, dropout, pooling, padding, cropping, up-sampling,
    DepthwiseConv (its channels follow its producer), Flatten (spatial x channel index mapping)
    and Concatenate into the input channels of the next Conv / Dense layers. Channels joined by
    Add / Multiply / ... (residual blocks) form one group, ranked by the sum of its members'
    norms and pruned together. The model's outputs (the classifier) and the channels touching a
    layer that cannot be followed keep every channel; those layers are named in
    ``result.surgery_report.not_followed`` and logged.

    Args:
        model: a built Sequential or Functional tf_keras model.
        ratio: share of each prunable group's channels to remove, in [0, 1). 0 gives a model
            with identical outputs.
        criterion: ``"l1"`` or ``"l2"`` norm of the producers' filters, or ``"bn"`` (the
            BatchNormalization scale |gamma| of the group; l1 where a group has none).
        layers: names of the producer layers whose groups to prune (default: all).

    Returns:
        A new, uncompiled Keras model of the same class, inputs and outputs, with the kept
        weights copied in and a ``surgery_report`` attribute (a :class:`SurgeryReport`).

    Raises:
        ConfigError: ratio outside [0, 1), unknown criterion or layer names.
        ModelError: a subclassed, unbuilt or Keras 3 model.
    """
    model = ensure_keras2(model)
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise errors.ConfigError(f"ratio={ratio!r}; accepted: a number in [0, 1)")
    if criterion not in CRITERIA:
        raise errors.ConfigError(errors.unknown("criterion", criterion, CRITERIA))
    config, _, nodes, outputs = _graph(model)
    layouts, groups, not_followed = _analyse(model, nodes, outputs)
    producers = {p for ps in groups.producers for p in ps}
    if layers is not None:
        bad = [n for n in layers if n not in producers]
        if bad:
            raise errors.ConfigError(errors.unknown(
                "layer to prune", bad[0], sorted(producers) or ["none"]))
    selected = set(producers if layers is None else layers)
    keep, notes, kept, changed = {}, [], {}, {}
    for g in range(len(groups.parent)):
        if groups.find(g) != g or groups.fixed[g] or not selected & set(groups.producers[g]):
            continue
        n_keep = groups.size[g] - int(groups.size[g] * ratio)
        if n_keep == groups.size[g]:
            continue
        scores, note = _scores(model, groups, g, criterion)
        if note:
            notes.append(note)
        keep[g] = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        for p in groups.producers[g]:
            kept[p] = keep[g]
    for node in nodes:  # new widths into the config
        if node.name in kept:
            field = "units" if node.cls == "Dense" else "filters"
            changed[node.name] = {"before": node.config[field], "after": len(kept[node.name])}
            node.config[field] = len(kept[node.name])
    new = _rebuild(model, config)
    by_name = {n.name: n for n in nodes}
    for layer in new.layers:
        old = model.get_layer(layer.name)
        node = by_name.get(layer.name)
        weights = old.get_weights()
        if node is not None and node.inputs and not node.shared and weights:
            in_idx = _indices(layouts[node.inputs[0]], keep, groups)
            out_idx = _indices(layouts[(node.name, 0, 0)], keep, groups)
            weights = _slice(node.cls, weights, in_idx, out_idx)
        layer.set_weights(weights)
    if not_followed:
        logging.warning("prune_channels left these layers whole (not followed): %s",
                        ", ".join(not_followed))
    new.surgery_report = SurgeryReport("prune_channels", changed, tuple(not_followed), kept,
                                       tuple(notes))
    return new


def _slice(cls: str, weights: list, in_idx, out_idx) -> list:
    """The weights of a layer of class ``cls`` with only the kept channels."""
    take = lambda w, idx, axis: w if idx is None else np.take(w, idx, axis)  # noqa: E731
    if cls in _PRODUCERS:
        kernel = take(take(weights[0], in_idx, -2), out_idx, -1)
        return [kernel] + [take(w, out_idx, 0) for w in weights[1:]]
    if cls in _DEPTHWISE:
        return [take(weights[0], in_idx, -2)] + [take(w, in_idx, 0) for w in weights[1:]]
    if cls == "BatchNormalization":
        return [take(w, in_idx, 0) for w in weights]
    return weights


# ----------------------------------------------------------------------------- factorization


def _rank(s: np.ndarray, energy: Optional[float], rank: Optional[int]) -> int:
    if rank is not None:
        return int(min(rank, len(s)))
    share = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-30)
    return int(min(np.searchsorted(share, energy - 1e-9) + 1, len(s)))


def factorize(
    model: keras.Model,
    *,
    energy: Optional[float] = None,
    rank: Optional[int] = None,
    layers: Optional[Sequence[str]] = None,
) -> keras.Model:
    """Replaces Dense and Conv2D kernels by a truncated SVD: two thinner layers each.

    A Dense layer becomes Dense(r, no bias, linear) -> Dense(units) with the original bias and
    activation; a k x k Conv2D becomes a k x k Conv2D with r filters (same strides, padding,
    dilation; no bias, linear) -> a 1 x 1 Conv2D with the original filters, bias and activation.
    The second layer keeps the original name; the first is named ``<name>_lowrank``. A layer is
    factorized only when the two kernels hold fewer parameters than the original.

    Args:
        model: a built Sequential or Functional tf_keras model.
        energy: keep the smallest rank whose singular values hold this share of the squared
            singular-value sum, in (0, 1].
        rank: or this rank for every layer (capped by the kernel's shape).
        layers: names of the Dense / Conv2D layers to consider (default: all).

    Returns:
        A new, uncompiled Keras model with the same inputs and outputs and a ``surgery_report``
        attribute: ``changed`` maps each factorized layer to its rank and parameters before and
        after; layers kept as they were are in ``notes``.

    Raises:
        ConfigError: neither or both of energy and rank, out-of-range values, unknown layers.
        ModelError: a subclassed, unbuilt or Keras 3 model.
    """
    model = ensure_keras2(model)
    if (energy is None) == (rank is None):
        raise errors.ConfigError(
            f"energy={energy!r}, rank={rank!r}; accepted: exactly one of them")
    if energy is not None and not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise errors.ConfigError(f"energy={energy!r}; accepted: a number in (0, 1]")
    if rank is not None and not (isinstance(rank, (int, np.integer)) and rank >= 1):
        raise errors.ConfigError(f"rank={rank!r}; accepted: an integer >= 1")
    config, entries, nodes, _ = _graph(model)
    names = [n.name for n in nodes if n.cls in ("Dense", "Conv2D")]
    if layers is not None:
        bad = [n for n in layers if n not in names]
        if bad:
            raise errors.ConfigError(errors.unknown("layer to factorize", bad[0], names or ["none"]))
    taken = {e["config"]["name"] for e in entries}
    factors, changed, notes = {}, {}, []
    for node in nodes:
        if node.name not in names or (layers is not None and node.name not in layers):
            continue
        cfg = node.config
        if node.shared or cfg.get("groups", 1) != 1 or not _channels_last(cfg):
            notes.append(f"{node.name}: shared, grouped or channels_first: kept")
            continue
        kernel = model.get_layer(node.name).kernel.numpy()
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        r = _rank(s, energy, rank)
        before, after = matrix.size, r * sum(matrix.shape)
        if after >= before:
            notes.append(f"{node.name}: rank {r} would not save parameters: kept")
            continue
        root = np.sqrt(s[:r])
        first = (u[:, :r] * root).reshape(kernel.shape[:-1] + (r,))
        second = (root[:, None] * vt[:r]).reshape((1,) * (kernel.ndim - 2) + (r, kernel.shape[-1]))
        low = f"{node.name}_lowrank"
        while low in taken:
            low += "_"
        taken.add(low)
        factors[node.name] = (low, first, second)
        changed[node.name] = {"rank": r, "before": before, "after": after}
        _split_entry(entries, node, low, r)
    new = _rebuild(model, config)
    firsts = {low: first for low, first, _ in factors.values()}
    for layer in new.layers:
        if layer.name in firsts:
            layer.set_weights([firsts[layer.name]])
        elif layer.name in factors:
            second = factors[layer.name][2]
            layer.set_weights([second] + model.get_layer(layer.name).get_weights()[1:])
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    new.surgery_report = SurgeryReport("factorize", changed, (), {}, tuple(notes))
    return new


def _split_entry(entries: list, node: _Node, low: str, r: int) -> None:
    """Inserts the rank-r first layer before ``node`` and turns ``node`` into the second."""
    index = next(i for i, e in enumerate(entries) if e["config"]["name"] == node.name)
    entry = entries[index]
    first = copy.deepcopy(entry)
    cfg = first["config"]
    cfg.update(name=low, use_bias=False, activation="linear", activity_regularizer=None)
    cfg["units" if node.cls == "Dense" else "filters"] = r
    if "name" in first:
        first["name"] = low
    if "inbound_nodes" in entry:
        entry["inbound_nodes"] = [[[low, 0, 0, {}]]]
    if node.cls == "Conv2D":
        node.config.update(kernel_size=(1, 1), strides=(1, 1), padding="valid",
                           dilation_rate=(1, 1))
    entries.insert(index, first)
