"""The search space: dimensions, the ones a search offers, and the recipe of one candidate.

A dimension (``DIMENSIONS``) sets one field of one stage's section, or turns a stage on
(``recover``, ``finetune_quantized``); ``mode`` is the conversion mode. ``space`` is what a
search config offers (its ``space`` field), with the sequence dimensions where the baseline
model has those layers (``tfcompress.pipeline.sequence_space``); ``parse_params`` reads a seed
candidate (``"mode=int8,sparsity=0.9"``); ``trial_recipe`` is a candidate's recipe, its stages
in canonical order (``tfcompress.pipeline.stages.STAGES``).
"""

from typing import Optional

from ml_collections import ConfigDict

from tfcompress import errors
import tfcompress.export.modes as modes
import tfcompress.pipeline.recipe as recipe
import tfcompress.pipeline.sequence_space as sequence_space
import tfcompress.training.finetune as finetune
from tfcompress.pipeline.stages import STAGES

# Search dimension -> (stage, section field). "mode" is the conversion mode.
DIMENSIONS = {
    "distill_width": ("distill", "width"),
    "block_fraction": ("prune_blocks", "fraction"),  # depth: residual blocks removed
    "channel_ratio": ("prune_channels", "ratio"),
    "factorize_energy": ("factorize", "energy"),
    "factorize_conv": ("factorize", "conv"),  # "channel" or "spatial" SVD (with an energy)
    "sparsity": ("prune", "target_sparsity"),
    "clusters": ("cluster", "number_of_clusters"),
    "recovery": ("recover", None),  # 1: PTQ recovery for the mode (int8, int16x8, 8/4-bit weights)
    "finetune": ("finetune_quantized", None),  # 1: label-free QAT for the mode (int8, int4 weights)
    # Sequence models, offered where the model has the layers (sequence_space sets the fields):
    "unit_ratio": ("prune_channels", None),  # LSTM/GRU and feed-forward units
    "head_ratio": ("prune_channels", None),  # attention heads only
    "encoder_blocks": ("prune_blocks", None),  # whole Transformer encoder blocks
    "embedding_rank": ("factorize", None),  # low rank of the Embedding tables only
    "embedding_bits": ("convert", None),  # int8/int4 tables in dynamic/weight-only modes
}


def space(config: ConfigDict,
          layers: Optional["sequence_space.SequenceLayers"] = None) -> dict:
    """The searched dimensions: ``mode`` and those with a choice that turns their stage on; a
    dimension of how (strings: ``factorize_conv``) only where its stage is searched; with the
    model's ``layers`` (``sequence_space.read``), the sequence dimensions it has layers for."""
    out = {"mode": tuple(config.space.mode)}
    searched = set()
    for dim, (stage, _) in DIMENSIONS.items():
        if dim in sequence_space.DIMENSIONS:
            continue
        choices = tuple(config.space[dim])
        how = all(isinstance(c, str) for c in choices)
        if stage in STAGES and any(choices) and (not how or stage in searched):
            out[dim] = tuple(sorted(set(choices), key=choices.index))
            searched.add(stage)
    if layers is not None:
        out["mode"] = sequence_space.modes_for(config.space, layers)
        out.update(sequence_space.offer(config.space, layers, out["mode"]))
    return out


def parse_params(text: str) -> dict:
    """'mode=int8,sparsity=0.9' -> {'mode': 'int8', 'sparsity': 0.9}."""
    params = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, _, value = item.partition("=")
        if key != "mode" and key not in DIMENSIONS:
            raise errors.ConfigError(errors.unknown("seed field", key, ["mode", *DIMENSIONS]))
        params[key] = value if key in ("mode", "factorize_conv") else (
            int(value) if key in ("clusters", "recovery", "finetune", *sequence_space.INTEGER)
            else float(value))
    return params


def trial_recipe(config: ConfigDict, params: dict, model_path: str, qat: bool = False,
                 layers: Optional["sequence_space.SequenceLayers"] = None):
    """The recipe of one candidate: stages in canonical order, sections set from ``params``
    (sequence dimensions: ``sequence_space.apply`` with the model's ``layers``, read from
    ``model_path`` when not given)."""
    params = sequence_space.effective(params)
    r = ConfigDict(config.recipe.to_dict())
    r.model.path = model_path
    r.convert.modes = (params["mode"],)
    stages = []
    for dim, (stage, field) in DIMENSIONS.items():
        value = params.get(dim)
        if not value or field is None:
            continue
        if isinstance(value, str):  # how, for a stage an earlier dimension turned on
            if stage in stages:
                r[stage][field] = value
            continue
        stages.append(stage)
        r[stage][field] = type(r[stage][field])(value)
    if any(params.get(dim) for dim in sequence_space.DIMENSIONS):
        layers = layers if layers is not None else sequence_space.read(model_path)
        stages += [s for s in sequence_space.apply(r, params, layers) if s not in stages]
        stages.sort(key=list(STAGES).index)
    # PTQ recovery goes last (no fine-tuning after it), onto the grid of the trial's mode;
    # a QAT trial learns its own ranges instead.
    if params.get("recovery") and params["mode"] in modes.recoverable() and not qat:
        stages.append("recover")
        r.recover.mode = params["mode"]
    if params.get("finetune") and params["mode"] in finetune.MODES and not qat:
        stages.append("finetune_quantized")  # from the recovered weights when both ran
        r.finetune_quantized.mode = params["mode"]
        r.finetune_quantized.equalize = "recover" not in stages
    if "cluster" in stages:
        r.cluster.preserve_sparsity = "prune" in stages
    if qat:
        stages.append("qat")
        r.qat.preserve = {(True, True): "sparsity_and_clusters", (True, False): "sparsity",
                          (False, True): "clusters", (False, False): ""}[
            ("prune" in stages, "cluster" in stages)]
    r.stages = tuple(stages)
    return recipe.check_config(r)
