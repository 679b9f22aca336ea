"""Depth surgery: removing whole residual blocks (``tfcompress.prune_blocks``).

A residual block is a branch that starts at a tensor ``x`` and ends in an ``Add(x, branch(x))``
whose other input is ``x`` itself (an identity skip, as in MobileNetV2 and ResNet): every path
into the branch starts at ``x`` and nothing outside the block reads the branch's tensors. Without
the block, ``Add(x, branch(x))`` becomes ``x``: the model stays a valid, shallower plain Keras
model with the other layers' weights as they were, ready to fine-tune.

A Transformer encoder block (``encoder_blocks``) is two such blocks in a row, a residual
attention block and a residual feed-forward block, with the LayerNormalization between them and,
post-norm, the one after the second ``Add``: without it, the block's input goes on.
"""

import dataclasses
import itertools
import math
from typing import Optional, Union

import numpy as np
from absl import logging

import tfcompress.graph as graphs
from tfcompress import errors
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2
from tfcompress._surgery_report import SurgeryReport, attach

CRITERIA = ("loss", "loss_per_mac")
UNITS = ("residual", "encoder")
_BETWEEN = {"LayerNormalization", "Dropout"}  # what may sit between attention and feed-forward


@dataclasses.dataclass(frozen=True)
class Block:
    """A removable residual block: its ``Add``, the skip tensor key and the branch's layers."""

    add: str
    skip: tuple
    layers: tuple


def residual_blocks(model: keras.Model) -> list:
    """The model's residual blocks with an identity skip, in graph order (a list of Block)."""
    model = ensure_keras2(model)
    _, _, nodes, outputs = graphs.read(model)
    by_key = {(n.name, n.key_index): n for n in nodes}
    readers = {}
    for n in nodes:
        for k in n.inputs:
            readers.setdefault(k[:2], set()).add(n.name)
    out_nodes = {k[:2] for k in outputs}
    blocks = []
    for node in nodes:
        if node.cls != "Add" or node.shared or len(node.inputs) != 2:
            continue
        for skip, end in (node.inputs, node.inputs[::-1]):
            members = _branch(by_key, skip, end)
            if members is None or any(by_key[(m, 0)].shared for m in members):
                continue
            inside = set(members) | {node.name}
            if any(readers.get((m, 0), set()) - inside or (m, 0) in out_nodes for m in members):
                continue
            if model.get_layer(node.name).output_shape != _shape(model, skip):
                continue
            order = [n.name for n in nodes if n.name in members]
            blocks.append(Block(node.name, tuple(skip), tuple(order)))
            break
    return blocks


def encoder_blocks(model: keras.Model) -> list:
    """The model's Transformer encoder blocks, in graph order (a list of Block whose ``add`` is
    the block's last layer): a residual block holding a MultiHeadAttention, followed (through
    LayerNormalization or Dropout only) by the skip of a second residual block, ending at that
    block's ``Add`` or at the LayerNormalization that alone reads it (post-norm); nothing outside
    reads the tensors inside and the output has the input's shape."""
    model = ensure_keras2(model)
    _, _, nodes, outputs = graphs.read(model)
    by_key = {(n.name, n.key_index): n for n in nodes}
    readers = {}
    for n in nodes:
        for k in n.inputs:
            readers.setdefault(k[:2], []).append(n.name)
    out_nodes = {k[:2] for k in outputs}
    residual = residual_blocks(model)
    found = []
    for first in residual:
        if not any(by_key[(m, 0)].cls == "MultiHeadAttention" for m in first.layers):
            continue
        for second in residual:
            if _leads_to(by_key, second.skip, (first.add, 0, 0)):
                end = second.add
                after = readers.get((end, 0), [])
                if len(after) == 1 and (end, 0) not in out_nodes \
                        and by_key[(after[0], 0)].cls == "LayerNormalization":
                    end = after[0]
                members = _branch(by_key, first.skip, (end, 0, 0))
                if members is None or any(by_key[(m, 0)].shared for m in members):
                    break
                inside = members - {end}
                if any(set(readers.get((m, 0), [])) - members or (m, 0) in out_nodes
                       for m in inside) or model.get_layer(end).output_shape != _shape(
                           model, first.skip):
                    break
                order = [n.name for n in nodes if n.name in inside]
                found.append(Block(end, tuple(first.skip), tuple(order)))
                break
    return found


def _leads_to(by_key, key, target) -> bool:
    """Whether tensor ``key`` is ``target`` or comes from it through LayerNormalization or
    Dropout layers only."""
    key = tuple(key)
    while key != tuple(target):
        node = by_key[key[:2]]
        if node.cls not in _BETWEEN or len(node.inputs) != 1:
            return False
        key = tuple(node.inputs[0])
    return True


def _shape(model, key):
    layer = model.get_layer(key[0])
    shape = layer.get_output_shape_at(key[1])
    return shape[key[2]] if isinstance(shape, list) else shape


def _branch(by_key, skip, end) -> Optional[set]:
    """Names of the layers between ``skip`` and ``end`` if every path into ``end`` starts at
    ``skip`` (None otherwise, or when ``end`` is ``skip``)."""
    if tuple(end) == tuple(skip):
        return None
    members, stack = set(), [tuple(end)]
    while stack:
        key = stack.pop()
        if key == tuple(skip):
            continue
        node = by_key[key[:2]]
        if not node.inputs or node.cls == "InputLayer":
            return None  # reached the model's input without passing the skip
        if node.name not in members:
            members.add(node.name)
            stack.extend(tuple(k) for k in node.inputs)
    return members


def remove_blocks(model: keras.Model, blocks) -> keras.Model:
    """``model`` without ``blocks`` (each ``Add`` replaced by its skip), weights copied."""
    config = graphs.read(model).config
    gone = {name for b in blocks for name in b.layers + (b.add,)}
    moves = {(b.add, 0, 0): tuple(b.skip) for b in blocks}
    for key in list(moves):  # consecutive blocks: follow the chain to a tensor that stays
        target = moves[key]
        while target in moves:
            target = moves[target]
        moves[key] = target
    config["layers"] = [e for e in config["layers"] if e["config"]["name"] not in gone]
    graphs.rewire(config, moves)
    return graphs.rebuild(model, config, weights={})


def _loss(model, x, y, loss, batch_size: int = 256) -> float:
    """Mean loss in inference mode (direct calls: no tf.function traced per candidate)."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        yb = y[i:i + batch_size]
        value = np.asarray(loss(yb, model(x[i:i + batch_size], training=False)))
        total += float(value.sum()) if value.ndim else float(value) * len(yb)  # a reduced Loss
    return total / len(x)


def _count(n_or_fraction, total: int) -> int:
    if isinstance(n_or_fraction, (bool, np.bool_)) or not isinstance(
            n_or_fraction, (int, float, np.integer, np.floating)):
        raise errors.ConfigError(f"n_or_fraction={n_or_fraction!r}; accepted: an integer >= 1 "
                                 "or a fraction in (0, 1)")
    if isinstance(n_or_fraction, (int, np.integer)):
        if not 1 <= n_or_fraction <= total:
            raise errors.ConfigError(
                f"n_or_fraction={n_or_fraction!r}; accepted: 1 to {total} (the model has {total} "
                "residual blocks) or a fraction in (0, 1)")
        return int(n_or_fraction)
    if not 0 < n_or_fraction < 1:
        raise errors.ConfigError(
            f"n_or_fraction={n_or_fraction!r}; accepted: an integer >= 1 or a fraction in (0, 1)")
    return max(1, int(np.floor(n_or_fraction * total + 0.5)))


def prune_blocks(
    model: keras.Model,
    n_or_fraction: Union[int, float],
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    loss=None,
    criterion: str = "loss",
    max_macs_ratio: Optional[float] = None,
    unit: str = "residual",
) -> keras.Model:
    """Removes the residual blocks (or whole Transformer encoder blocks) whose absence raises
    the validation loss least.

    Each residual block with an identity skip (see ``residual_blocks``) is removed on its own
    and the model's loss on ``(x_val, y_val)`` measured; the blocks with the smallest rise are
    then removed together (nested blocks: an inner block inside a removed one is not counted
    again). The result is a smaller plain Keras model, uncompiled, to fine-tune.

    Args:
        model: a built Functional tf_keras model.
        n_or_fraction: how many blocks to remove (an integer), or a share of them (a float in
            (0, 1), rounded half up, at least one).
        x_val, y_val: validation data (the decision is made on it; keep test data out).
        loss: a Keras loss (name or callable) on the model's outputs; default the model's
            compiled loss, else sparse categorical cross-entropy on probabilities.
        criterion: ``"loss"`` (the rise) or ``"loss_per_mac"`` (the rise per multiply-
            accumulate the block costs: prefers removing expensive blocks).
        max_macs_ratio: if given, in (0, 1]: the blocks removed are, among the sets of that
            many blocks that leave at most this share of the model's MACs, the set with the
            smallest summed score (single-block rises taken as additive; every set is tried up
            to 50,000 sets, greedily by rise per MAC beyond). No set reaching it: the set that
            saves the most MACs, and a note says so.
        unit: ``"residual"``: every residual block with an identity skip (in a Transformer,
            the attention and the feed-forward sub-blocks each); ``"encoder"``: whole
            Transformer encoder blocks (see ``encoder_blocks``).

    Returns:
        The model without the chosen blocks, with a ``surgery_report`` (saved with it):
        ``changed`` maps each removed block's ``Add`` to its layers, loss rise and MACs; the
        notes list every candidate's loss rise.

    Raises:
        ConfigError: a bad count or fraction, an unknown criterion or unit, a bad
            max_macs_ratio, a model without blocks of that unit.
        ModelError: a subclassed, unbuilt or Keras 3 model.
    """
    from tfcompress.profiling import profile

    model = ensure_keras2(model)
    if criterion not in CRITERIA:
        raise errors.ConfigError(errors.unknown("criterion", criterion, CRITERIA))
    if max_macs_ratio is not None and not (
            isinstance(max_macs_ratio, (int, float)) and 0 < max_macs_ratio <= 1):
        raise errors.ConfigError(f"max_macs_ratio={max_macs_ratio!r}; accepted: None or a "
                                 "number in (0, 1]")
    if unit not in UNITS:
        raise errors.ConfigError(errors.unknown("unit", unit, UNITS))
    blocks = residual_blocks(model) if unit == "residual" else encoder_blocks(model)
    if not blocks:
        what = ("residual block with an identity skip (Add(x, branch(x)))" if unit == "residual"
                else "Transformer encoder block (residual attention then residual feed-forward)")
        raise errors.ConfigError(f"model {model.name!r} has no {what}; accepted: a model with "
                                 f"such blocks, or another unit of {UNITS}")
    n = _count(n_or_fraction, len(blocks))
    loss = keras.losses.get(loss or getattr(model, "loss", None)
                            or "sparse_categorical_crossentropy")
    base = _loss(model, x_val, y_val, loss)
    rows = profile(model)
    macs = {row["name"]: row["macs"] for row in rows["layers"]}
    rise, cost = {}, {}
    for b in blocks:
        rise[b.add] = _loss(remove_blocks(model, [b]), x_val, y_val, loss) - base
        cost[b.add] = int(sum(macs.get(name, 0) for name in b.layers))
    score = {a: rise[a] / max(cost[a], 1) if criterion == "loss_per_mac" else rise[a]
             for a in rise}
    need = 0 if max_macs_ratio is None else rows["macs"] * (1 - max_macs_ratio)
    chosen = _choose(blocks, score, cost, n, need)
    notes = [f"validation loss {base:.4f}; rise without each block: "
             + ", ".join(f"{a} {r:+.4f}" for a, r in rise.items()), f"criterion={criterion}"]
    left = 1 - sum(cost[b.add] for b in chosen) / max(rows["macs"], 1)
    if need and left > max_macs_ratio:
        notes.append(f"no {n} blocks found that reach max_macs_ratio={max_macs_ratio}: the "
                     f"removed ones leave {left:.3f} of the MACs")
    new = remove_blocks(model, chosen)
    changed = {b.add: {"layers": list(b.layers), "loss_rise": rise[b.add], "macs": cost[b.add]}
               for b in chosen}
    logging.info("prune_blocks removed %s", ", ".join(changed))
    return attach(new, SurgeryReport("prune_blocks", changed, (), {}, tuple(notes)))


def _disjoint(combo) -> bool:
    seen = set()
    for b in combo:
        names = set(b.layers) | {b.add}
        if names & seen:
            return False
        seen |= names
    return True


def _choose(blocks, score: dict, cost: dict, n: int, need: float) -> list:
    """``n`` disjoint blocks with the smallest summed score among the sets whose MACs reach
    ``need`` (the most MACs if none does)."""
    if need > 0 and math.comb(len(blocks), n) <= 50_000:
        best = None
        for combo in itertools.combinations(blocks, n):
            if not _disjoint(combo):
                continue
            saved = sum(cost[b.add] for b in combo)
            key = (0, sum(score[b.add] for b in combo)) if saved >= need else (1, -saved)
            if best is None or key < best[0]:
                best = (key, list(combo))
        if best is not None:
            return best[1]
    order = sorted(blocks, key=lambda b: score[b.add])
    if need > 0:  # greedy: the cheapest loss per MAC first until the MACs are saved
        order = sorted(blocks, key=lambda b: score[b.add] / max(cost[b.add], 1))
    chosen = []
    for b in order:
        if len(chosen) < n and _disjoint(chosen + [b]):
            chosen.append(b)
    return chosen
