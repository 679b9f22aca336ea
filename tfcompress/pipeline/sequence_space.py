"""The search dimensions of text, audio and other sequence models, offered where the model has
the layers they act on (``tfcompress.pipeline.search`` reads the baseline model with ``read``).

=================  ==========================================================================
dimension          what a trial does with a non-zero value
=================  ==========================================================================
``unit_ratio``     ``prune_channels`` of the LSTM/GRU/SimpleRNN units (all gates of a unit
                   together) and the feed-forward hidden units of attention models, at this
                   ratio; the embedding width (the residual stream) stays (``layers`` lists
                   them). Offered when the model has such layers.
``head_ratio``     ``prune_channels`` with ``heads_only``: this share of each
                   MultiHeadAttention's heads, ranked by their output on training samples.
                   Offered when an attention layer has at least 2 heads.
``encoder_blocks`` ``prune_blocks`` with ``unit="encoder"``: this many whole Transformer encoder
                   blocks (attention and feed-forward with their residuals and norms). Offered
                   up to the number of encoder blocks the model has.
``embedding_rank`` ``factorize`` of the Embedding tables only, at this rank (V x d -> V x r,
                   then r x d). Offered ranks are below the narrowest table's width.
``embedding_bits`` ``convert.overrides`` ``EMBEDDING_LOOKUP=<bits>``: the tables at int8 or int4
                   whatever the mode's width, in the LiteRT Quantizer's dynamic and weight-only
                   modes (per row; a block-wise mode keeps its blocks and takes 4 only).
=================  ==========================================================================

The model's Embedding also adds ``space.embedding_modes`` (per-row ``dynamic_wi4`` and
block-wise ``dynamic_wi4_block32`` by default) to the searched modes: the modes whose int4
tables shrink a text model.

One stage has one section per trial, so where a general dimension of the same stage is on it
wins: ``channel_ratio`` (every channel group, heads included) over ``unit_ratio`` over
``head_ratio``; ``block_fraction`` over ``encoder_blocks``; ``factorize_energy`` (every
layer, Embedding included) over ``embedding_rank``. Blocks are removed before channels are
pruned, so a trial that removes blocks (either kind) prunes no units or heads by name.
``effective`` zeroes the values that do not act, so two trials that differ only there are one
candidate.
"""

import dataclasses
from typing import Optional, Union

from tfcompress import errors
from tfcompress._compat.keras import keras
import tfcompress.export.lowbit as lowbit
import tfcompress.export.modes as modes
import tfcompress.graph as graphs
import tfcompress.surgery.blocks as blocks
import tfcompress.surgery.channel_graph as cg

# dimension -> default choices (0: off); the search config's ``space`` holds them.
DEFAULTS = {
    "unit_ratio": (0.0, 0.25, 0.5),
    "head_ratio": (0.0, 0.5),
    "encoder_blocks": (0, 1),
    "embedding_rank": (0, 16, 8),
    "embedding_bits": (0, 8, 4),
}
DIMENSIONS = tuple(DEFAULTS)
INTEGER = ("encoder_blocks", "embedding_rank", "embedding_bits")
EMBEDDING_MODES = ("dynamic_wi4", "dynamic_wi4_block32")
_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
# A general dimension of the same stage that, when on, wins over these (in this order).
# Blocks go before channels (the stages' order), so a trial that drops blocks prunes no units or
# heads by name.
_DISPLACED_BY = {
    "encoder_blocks": ("block_fraction",),
    "unit_ratio": ("channel_ratio", "block_fraction", "encoder_blocks"),
    "head_ratio": ("channel_ratio", "unit_ratio", "block_fraction", "encoder_blocks"),
    "embedding_rank": ("factorize_energy",),
}


@dataclasses.dataclass(frozen=True)
class SequenceLayers:
    """What a model offers the sequence dimensions.

    Attributes:
        embeddings: {Embedding layer name: its width}.
        attention: MultiHeadAttention layers with at least 2 heads.
        units: the producers ``unit_ratio`` prunes: recurrent layers and the feed-forward
            hidden Dense layers (of a model with attention) whose channels reach no Embedding
            or attention.
        encoder_blocks: how many Transformer encoder blocks ``prune_blocks`` finds.
    """

    embeddings: dict = dataclasses.field(default_factory=dict)
    attention: tuple = ()
    units: tuple = ()
    encoder_blocks: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read(model_or_path: Union[keras.Model, str]) -> SequenceLayers:
    """The sequence layers of a model (or of the model file at a path, loaded in safe mode)."""
    if isinstance(model_or_path, str):
        from tfcompress import models
        model_or_path = models.load_model(model_or_path)
    model = model_or_path
    embeddings = {l.name: int(l.output_dim) for l in model.layers
                  if isinstance(l, keras.layers.Embedding)}
    attention = tuple(l.name for l in model.layers
                      if isinstance(l, keras.layers.MultiHeadAttention)
                      and l.get_config()["num_heads"] >= 2)
    recurrent = [l.name for l in model.layers if type(l).__name__ in _RECURRENT]
    has_attention = any(isinstance(l, keras.layers.MultiHeadAttention) for l in model.layers)
    units, n_blocks = [], 0
    if recurrent or has_attention:
        try:
            _, _, nodes, outputs = graphs.read(model)
            _, groups, _ = cg.analyse(model, nodes, outputs)
        except (errors.TfcompressError, KeyError, ValueError):  # a graph it cannot follow
            groups = None
        for g in range(len(groups.parent) if groups is not None else 0):
            members = groups.producers[g]
            if groups.find(g) != g or groups.fixed[g] or not members:
                continue
            kinds = {type(model.get_layer(n)).__name__ for n in members}
            if kinds <= set(_RECURRENT) or (has_attention and kinds == {"Dense"}):
                units += [n for n in members if n not in units]
    if has_attention:
        try:
            n_blocks = len(blocks.encoder_blocks(model))
        except (errors.TfcompressError, KeyError, ValueError):  # a graph it cannot follow
            n_blocks = 0
    return SequenceLayers(embeddings, attention, tuple(units), n_blocks)


def _lowbit_spec(mode: str) -> Optional["modes.Quantizer"]:
    """The quantizer settings of a dynamic or weight-only LiteRT Quantizer mode, else None."""
    if mode not in modes.names():
        return None
    spec = modes.get(mode).quantizer
    return spec if spec is not None and not spec.activation_bits else None


def _table_widths(mode: str) -> tuple:
    """The widths an embedding table may take in ``mode`` (() where no override applies)."""
    spec = _lowbit_spec(mode)
    if spec is None:
        return ()
    return lowbit.supported_widths("EMBEDDING_LOOKUP", execution=spec.execution,
                                   block=spec.block)


def offer(space, layers: SequenceLayers, searched_modes) -> dict:
    """{dimension: choices} of the sequence dimensions ``layers`` gives a reason to search
    (choices from the search config's ``space``, those the model cannot take dropped)."""
    out = {}

    def add(dim, keep=lambda c: True):
        choices = tuple(c for c in dict.fromkeys(space[dim]) if not c or keep(c))
        if any(choices):
            out[dim] = choices

    if layers.units:
        add("unit_ratio")
    if layers.attention:
        add("head_ratio")
    if layers.encoder_blocks:
        add("encoder_blocks", lambda c: c <= layers.encoder_blocks)
    if layers.embeddings:
        add("embedding_rank", lambda c: c < min(layers.embeddings.values()))
        if any(_table_widths(m) for m in searched_modes):
            add("embedding_bits")
    return out


def modes_for(space, layers: SequenceLayers) -> tuple:
    """The searched modes: ``space.mode``, and ``space.embedding_modes`` for a model with an
    Embedding."""
    extra = tuple(space.embedding_modes) if layers.embeddings else ()
    return tuple(dict.fromkeys(tuple(space.mode) + extra))


def effective(params: dict) -> dict:
    """``params`` with the sequence values that would not act set to 0 (a general dimension of
    the same stage is on; a table width the mode cannot take or already gives)."""
    out = dict(params)
    for dim, general in _DISPLACED_BY.items():
        if out.get(dim) and any(out.get(g) for g in general):
            out[dim] = type(out[dim])(0)
    bits = out.get("embedding_bits")
    if bits:
        spec = _lowbit_spec(out.get("mode", ""))
        if spec is None or bits == spec.bits or bits not in _table_widths(out["mode"]):
            out["embedding_bits"] = 0
    return out


def apply(r, params: dict, layers: Optional[SequenceLayers]) -> list:
    """Sets the sections of recipe ``r`` for the sequence values of (effective) ``params``;
    the stages they turn on."""
    stages = []
    if params.get("unit_ratio"):
        stages.append("prune_channels")
        r.prune_channels.ratio = float(params["unit_ratio"])
        r.prune_channels.layers = tuple(layers.units)
    elif params.get("head_ratio"):
        stages.append("prune_channels")
        r.prune_channels.ratio = float(params["head_ratio"])
        r.prune_channels.heads_only = True
    if params.get("encoder_blocks"):
        stages.append("prune_blocks")
        r.prune_blocks.n = int(params["encoder_blocks"])
        r.prune_blocks.unit = "encoder"
    if params.get("embedding_rank"):
        stages.append("factorize")
        r.factorize.rank = int(params["embedding_rank"])
        r.factorize.layers = tuple(layers.embeddings)
    if params.get("embedding_bits"):
        r.convert.overrides = tuple(r.convert.overrides) + (
            f"EMBEDDING_LOOKUP={int(params['embedding_bits'])}",)
    return stages
