"""tfmot's private API, isolated: what its public API (tfmot 0.8.1) has no equivalent for.

Checked against tensorflow-model-optimization 0.8.1. Public ``tfmot.sparsity.keras`` has no
``collect_prunable_layers`` nor the wrapper classes; ``tfmot.clustering.keras`` no registry
check or wrapper class; ``tfmot.quantization.keras`` exposes ``QuantizeWrapper`` but not the
default 8-bit registry that says which layers the default scheme can quantize.
"""

import copy

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster as _cluster, cluster_wrapper, clustering_registry)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry)
from tensorflow_model_optimization.python.core.sparsity.keras import (
    prune_registry, pruning_wrapper)

PruneWrapper = pruning_wrapper.PruneLowMagnitude
ClusterWrapper = cluster_wrapper.ClusterWeights
collect_prunable_layers = pruning_wrapper.collect_prunable_layers


def wrapped_weights(wrapper) -> int:
    """How many weights a built pruning or clustering wrapper prunes or clusters: 0 for the
    layers tfmot wraps only to pass them through (its registries give DepthwiseConv2D,
    BatchNormalization, LayerNormalization no weights). Reads the wrapper's
    ``prunable_weights`` / ``original_clusterable_weights`` (tfmot 0.8.1)."""
    if isinstance(wrapper, PruneWrapper):
        return len(getattr(wrapper, "prunable_weights", None) or ())
    if isinstance(wrapper, ClusterWrapper):
        return len(getattr(wrapper, "original_clusterable_weights", None) or {})
    return 0


def prunable(layer) -> bool:
    """Whether tfmot's pruning wrapper accepts ``layer``."""
    return isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or \
        prune_registry.PruneRegistry.supports(layer)


def clusterable(layer) -> bool:
    """Whether tfmot's clustering wrapper accepts ``layer``."""
    return isinstance(layer, tfmot.clustering.keras.ClusterableLayer) or \
        clustering_registry.ClusteringRegistry.supports(layer)


def enough_weights_to_cluster(layer, number_of_clusters: int) -> bool:
    """tfmot silently leaves kernels with fewer weights than clusters unclustered."""
    return bool(_cluster.layer_has_enough_weights_to_cluster(layer, number_of_clusters, False))


def quantizable(layer) -> bool:
    """Whether the default 8-bit QAT scheme has a config for ``layer``."""
    return default_8bit_quantize_registry.Default8BitQuantizeRegistry().supports(layer)


# tfmot 0.8.1 ``quantizers.MovingAverageQuantizer.__call__`` passes ``ema_decay=0.999`` to
# ``quant_ops.MovingAvgQuantize`` (hard-coded; no public setting): a training step moves an
# activation range v to ``MOVING_AVERAGE_DECAY * v + (1 - MOVING_AVERAGE_DECAY) * batch range``.
MOVING_AVERAGE_DECAY = 0.999


def own_weight_quantizer(config):
    """``config`` (a QuantizeConfig of tfmot's collaborative registries) with a weight quantizer
    of its own. tfmot 0.8.1's cluster-preserving registry hands ONE weight quantizer per config
    kind (its ``_config_quantizer_map``) to every Conv2D, and another to every Dense, and that
    quantizer's build sets its ``preserve_sparsity`` to False for a layer without zeros: in
    PCQAT a pruned Conv2D followed by an unpruned one then trained without its sparsity mask
    (kept 0 of its 31 zeros here). A shallow copy per layer (the quantizer holds settings only;
    its variables live in the wrapper) keeps that setting per layer. Reads the config's
    ``weight_quantizer`` attribute (tfmot 0.8.1 ``Default8BitQuantizeConfig``); a config without
    one is returned as it is."""
    quantizer = getattr(config, "weight_quantizer", None)
    if quantizer is not None:
        config.weight_quantizer = copy.copy(quantizer)
    return config
