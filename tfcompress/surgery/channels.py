"""Model surgery that really shrinks layers: structured channel pruning, low-rank factorization
and residual-block removal.

Each function rebuilds a smaller plain Keras model from the original's config (Sequential or
Functional), copies the surviving weights in, and returns it uncompiled, ready to fine-tune. The
returned model carries a ``surgery_report`` attribute (a :class:`SurgeryReport`) that says what
changed and which layers were left whole; the report is also stored in the model's config, so it
survives ``model.save`` (``.keras`` and ``.h5``): ``report_of(path_or_model)`` reads it back and
``tfcompress.models.load_model`` re-attaches it. tfmot has no structured pruning for Keras models;
this is ours, kept small: ``channel_graph`` follows channels through the graph, this module
slices weights, ``factorization`` splits kernels, ``blocks`` removes residual blocks.
"""

from typing import Optional, Sequence

import numpy as np
from absl import logging

import tfcompress.graph as graphs
import tfcompress.surgery.attention as attention
import tfcompress.surgery.channel_graph as cg
from tfcompress import errors
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2
from tfcompress._surgery_report import SurgeryReport, attach, report_of  # noqa: F401

CRITERIA = ("l1", "l2", "bn")
# MobileNetV2 (96x96) pruned by 0.3, float32 XNNPACK on one AVX-512 core, paired interleaved runs
# (benchmarks/surgery.py --parts=round_to): latency per MAC 0.91x at round_to=8 and 0.90x at 16
# against round_to=1 (4: 0.97x). 8 takes most of the gain and still prunes 12..15-channel groups.
DEFAULT_ROUND_TO = 8


def _scores(model, groups, root: int, criterion: str):
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
        w = cg.output_kernel(model.get_layer(name))
        total = total + (np.abs(w).sum(0) if criterion == "l1" else np.sqrt((w ** 2).sum(0)))
    return total, note


def kept_count(size: int, ratio: float, round_to: int = 1) -> int:
    """Channels a group of ``size`` keeps at ``ratio``: ``size - floor(size * ratio)``, moved to
    the nearest multiple of ``round_to`` (at least ``round_to``, at most ``size``)."""
    n = size - int(size * ratio)
    if round_to > 1:
        n = max(round_to, int(np.floor(n / round_to + 0.5)) * round_to)
    return int(min(size, n))


def prune_channels(
    model: keras.Model,
    ratio: float,
    *,
    criterion: str = "l1",
    layers: Optional[Sequence[str]] = None,
    round_to: int = DEFAULT_ROUND_TO,
    x: Optional[np.ndarray] = None,
) -> keras.Model:
    """Removes the least important filters, units, embedding dimensions and attention heads: a
    smaller plain model.

    Channels are followed from each producer (Conv1D/2D/3D, Conv1D/2D/3DTranspose,
    SeparableConv1D/2D, Dense) through BatchNormalization, LayerNormalization, element-wise
    activations (PReLU too), dropout, pooling, padding, cropping, up-sampling, Reshape (when the
    channel axis stays last and whole, as in squeeze-excite), DepthwiseConv (its channels follow
    its producer, each input channel's ``depth_multiplier`` outputs with it; a SeparableConv's
    depthwise part follows its input channels), Flatten (spatial x channel index mapping) and
    Concatenate (each input at its channel offset) into the input channels of the next layers.
    Channels joined by Add / Multiply / ... (residual blocks; the excitation of a squeeze-excite
    block) form one group, ranked by the sum of its members' norms and pruned together. The
    model's outputs (the classifier) and the channels touching a layer that cannot be followed
    keep every channel; those layers are named in ``result.surgery_report.not_followed`` and
    logged.

    Sequence models: an Embedding's width is a group like a Dense layer's units, followed through
    positional additions (``Add`` or ``x + position_embedding`` of the same width),
    LayerNormalization, MultiHeadAttention (the query/key/value projections read the kept
    channels; with ``output_shape`` None its output projection is a member of the query's
    group, so a residual ``x + attention(x, x)`` stays one group) and the feed-forward Dense
    layers (their hidden units pruned like any Dense). LSTM, GRU and SimpleRNN lose whole units:
    a unit's columns in every gate (LSTM 4, GRU 3) of the kernel, recurrent kernel and bias go
    together, with the unit's row of the recurrent kernel; the next layer's input rows follow.
    A Bidirectional wrapper keeps the same units in both directions (merge modes concat, sum,
    ave, mul). Multi-head attention loses ``floor(num_heads * ratio)`` whole heads (never all;
    ``round_to`` does not apply): ranked, when ``x`` is given, by each head's contribution to
    the layer's output on ``x`` (mean L2 norm over samples and positions of that head's
    weighted values through its slice of the output projection), else by the norm (the
    ``criterion``'s, l1 for ``"bn"``) of the head's query, key, value and output weights.
    Removed units and heads give exactly the original model with them zeroed; removed embedding
    channels do too except through LayerNormalization, whose mean and variance are then taken
    over the kept channels only (fine-tune after pruning). Return states, ``time_major``,
    EinsumDense and MultiHeadAttention with a multi-axis ``output_shape`` are not followed.

    Args:
        model: a built Sequential or Functional tf_keras model.
        ratio: share of each prunable group's channels to remove, in [0, 1). 0 gives a model
            with identical outputs.
        criterion: ``"l1"`` or ``"l2"`` norm of the producers' filters, or ``"bn"`` (the
            BatchNormalization scale |gamma| of the group; l1 where a group has none).
        layers: names of the producer layers whose groups to prune (default: all).
        round_to: keep each pruned group's channel count at a multiple of this (the nearest
            one, at least ``round_to``; a group of at most ``round_to`` channels is left
            whole). Default 8: XNNPACK ran MobileNetV2 about 9% faster per MAC than with
            unrounded counts (``benchmarks/surgery.py --parts=round_to``); 1 prunes exactly
            ``ratio``.
        x: calibration inputs (one array, a batch or more, e.g. 256 training samples) to rank
            attention heads by their contribution on data; None ranks them by weight norm.

    Returns:
        A new, uncompiled Keras model of the same class, inputs and outputs, with the kept
        weights copied in and a ``surgery_report`` attribute (a :class:`SurgeryReport`, also
        saved with the model: see ``report_of``). Its ``changed`` maps each resized layer to
        its output width ``before`` and ``after`` (units, filters, embedding width); a
        MultiHeadAttention also to ``heads_before``, ``heads_after`` and ``heads_kept`` (the
        indices of its kept heads). ``kept`` maps each pruned producer to its kept channels.

    Raises:
        ConfigError: ratio outside [0, 1), unknown criterion or layer names, bad round_to,
            ``x`` that is not inputs for the model.
        ModelError: a subclassed, unbuilt or Keras 3 model.
    """
    model = ensure_keras2(model)
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise errors.ConfigError(f"ratio={ratio!r}; accepted: a number in [0, 1)")
    if criterion not in CRITERIA:
        raise errors.ConfigError(errors.unknown("criterion", criterion, CRITERIA))
    if not isinstance(round_to, (int, np.integer)) or isinstance(round_to, bool) or round_to < 1:
        raise errors.ConfigError(f"round_to={round_to!r}; accepted: an integer >= 1")
    attention.check_data(model, x)
    config, _, nodes, outputs = graphs.read(model)
    layouts, groups, not_followed = cg.analyse(model, nodes, outputs)
    producers = {p for ps in groups.producers for p in ps}
    if layers is not None:
        bad = [n for n in layers if n not in producers]
        if bad:
            raise errors.ConfigError(errors.unknown(
                "layer to prune", bad[0], sorted(producers) or ["none"]))
    selected = set(producers if layers is None else layers)
    keep, kept, notes = _choose(model, groups, selected, ratio, criterion, int(round_to))
    heads = {name: attention.head_keep(model, nodes, name, ratio, criterion, x)
             for name in groups.attention if name in selected}
    heads = {name: h for name, h in heads.items() if h is not None}
    if heads:
        notes.append("heads ranked by " + ("their output on x" if x is not None
                                           else f"{'l2' if criterion == 'l2' else 'l1'} norm"))
    changed = _resize(nodes, kept, layouts, keep, groups, not_followed)
    for name, h in heads.items():
        width = sum(groups.size[g] for g in groups.attention[name][3])
        entry = changed.setdefault(name, {"before": width, "after": width})  # output channels
        before = model.get_layer(name).get_config()["num_heads"]
        entry.update(heads_before=before, heads_after=len(h), heads_kept=[int(i) for i in h])
        next(n for n in nodes if n.name == name).config["num_heads"] = len(h)
    new = graphs.rebuild(model, config)
    _copy_weights(model, new, nodes, layouts, keep, groups, kept, heads)
    if not_followed:
        logging.warning("prune_channels left these layers whole (not followed): %s",
                        ", ".join(not_followed))
    notes.append(f"round_to={int(round_to)}")
    return attach(new, SurgeryReport("prune_channels", changed, tuple(not_followed), kept,
                                     tuple(notes)))


def _choose(model, groups, selected: set, ratio: float, criterion: str, round_to: int):
    """Kept channel indices: ({group root: indices}, {producer: indices}, notes)."""
    keep, kept, notes = {}, {}, []
    for g in range(len(groups.parent)):
        if groups.find(g) != g or groups.fixed[g] or not selected & set(groups.producers[g]):
            continue
        n_keep = kept_count(groups.size[g], ratio, round_to)
        if n_keep == groups.size[g]:
            continue
        scores, note = _scores(model, groups, g, criterion)
        if note:
            notes.append(note)
        keep[g] = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        for p in groups.producers[g]:
            kept[p] = keep[g]
    return keep, kept, notes


def _resize(nodes, kept: dict, layouts: dict, keep: dict, groups, not_followed) -> dict:
    """Writes the new widths (and Reshape targets) into the config; {producer: before/after}."""
    changed = {}
    for node in nodes:
        if node.cls == cg.ATTENTION and node.name in groups.attention:
            _resize_attention(node, layouts, keep, groups, changed)
        elif node.name in kept:
            cfg = node.config["layer"]["config"] if node.cls == "Bidirectional" else node.config
            field = next(f for f in ("units", "filters", "output_dim") if f in cfg)
            changed[node.name] = {"before": cfg[field], "after": len(kept[node.name])}
            cfg[field] = len(kept[node.name])
        elif node.cls == "Reshape" and node.name not in not_followed:
            idx = cg.indices(layouts[(node.name, 0, 0)], keep, groups)
            shape = list(node.config["target_shape"])
            if idx is not None and shape[-1] != -1:
                node.config["target_shape"] = shape[:-1] + [len(idx)]
    return changed


def _resize_attention(node, layouts, keep, groups, changed) -> None:
    """A MultiHeadAttention's config: the query/key/value widths, and ``output_shape`` when set."""
    cfg = node.config
    for field, layout in zip(("query_shape", "key_shape", "value_shape"),
                             groups.attention[node.name][:3]):
        idx = cg.indices(layout, keep, groups)
        if cfg.get(field) and idx is not None:
            cfg[field] = list(cfg[field][:-1]) + [len(idx)]
    out = groups.attention[node.name][3]
    idx = cg.indices(out, keep, groups)
    if idx is not None:
        before = sum(groups.size[g] for g in out)
        changed[node.name] = {"before": before, "after": len(idx)}
        if cfg.get("output_shape") is not None:
            cfg["output_shape"] = [len(idx)]


def _copy_weights(model, new, nodes, layouts: dict, keep: dict, groups, kept: dict,
                  heads: dict) -> None:
    by_name = {n.name: n for n in nodes}
    for layer in new.layers:
        old = model.get_layer(layer.name)
        node = by_name.get(layer.name)
        weights = old.get_weights()
        if node is not None and node.cls == cg.ATTENTION and node.name in groups.attention:
            q, k, v, out = (cg.indices(x, keep, groups) for x in groups.attention[node.name])
            weights = attention.slice_weights(weights, q, k, v, out, heads.get(node.name))
        elif node is not None and node.inputs and not node.shared and weights:
            in_idx = cg.indices(layouts[node.inputs[0]], keep, groups)
            out_idx = cg.indices(layouts[(node.name, 0, 0)], keep, groups)
            if node.cls in cg.RECURRENT or node.cls == "Bidirectional":
                out_idx = kept.get(node.name)  # the units (a Bidirectional concat lists them twice)
            weights = _slice(node.cls, weights, in_idx, out_idx)
        layer.set_weights(weights)


def _slice(cls: str, weights: list, in_idx, out_idx) -> list:
    """The weights of a layer of class ``cls`` with only the kept channels."""
    take = lambda w, idx, axis: w if idx is None else np.take(w, idx, axis)  # noqa: E731
    if cls == "Embedding":
        return [take(weights[0], out_idx, -1)]
    if cls in cg.RECURRENT:
        return _slice_recurrent(weights, cg.RECURRENT[cls], in_idx, out_idx)
    if cls == "Bidirectional":
        half = len(weights) // 2
        gates = weights[0].shape[-1] // weights[1].shape[0]
        return (_slice_recurrent(weights[:half], gates, in_idx, out_idx)
                + _slice_recurrent(weights[half:], gates, in_idx, out_idx))
    if cls in cg.CONVS or cls == "Dense":
        kernel = take(take(weights[0], in_idx, -2), out_idx, -1)
        return [kernel] + [take(w, out_idx, 0) for w in weights[1:]]
    if cls in cg.TRANSPOSED:  # kernel (..., filters, in)
        kernel = take(take(weights[0], in_idx, -1), out_idx, -2)
        return [kernel] + [take(w, out_idx, 0) for w in weights[1:]]
    if cls in cg.SEPARABLE:  # depthwise (..., in, m), pointwise (..., in * m, filters)
        m = weights[0].shape[-1]
        rows = None if in_idx is None else (in_idx[:, None] * m + np.arange(m)).reshape(-1)
        pointwise = take(take(weights[1], rows, -2), out_idx, -1)
        return [take(weights[0], in_idx, -2), pointwise] + [take(w, out_idx, 0)
                                                          for w in weights[2:]]
    if cls in cg.DEPTHWISE:  # kernel (..., in, m); bias per output channel (in * m)
        return [take(weights[0], in_idx, -2)] + [take(w, out_idx, 0) for w in weights[1:]]
    if cls in cg.NORMS:
        return [take(w, in_idx, 0) for w in weights]
    if cls == "PReLU":
        return [take(w, in_idx, -1) if w.shape[-1] != 1 else w for w in weights]
    return weights


def _slice_recurrent(weights: list, gates: int, in_idx, units) -> list:
    """An RNN's kernel (in, gates*u), recurrent kernel (u, gates*u) and bias (gates*u,) or
    (2, gates*u) with only the kept input rows and units (every gate's column of a unit)."""
    take = lambda w, idx, axis: w if idx is None else np.take(w, idx, axis)  # noqa: E731
    u = weights[1].shape[0]
    cols = None if units is None else np.concatenate([g * u + units for g in range(gates)])
    kernel = take(take(weights[0], in_idx, 0), cols, -1)
    recurrent = take(take(weights[1], units, 0), cols, -1)
    return [kernel, recurrent] + [take(w, cols, -1) for w in weights[2:]]
