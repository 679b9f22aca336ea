"""Weight clustering over tfmot, per-layer cluster counts, measured unique weights, ``strip``.

What this adds to ``tfmot.clustering.keras.cluster_weights``: init by name, per-layer cluster
counts, layer selection (shared with pruning), skipped layers listed instead of a crash, the
caller's model left untouched, ``unique_weights_report`` measured from the weights, and one
``strip`` for every wrapper kind.
"""

from typing import Mapping, Union

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from tfcompress import errors, recipe
from tfcompress import pruning
from tfcompress._keras import ensure_keras2, keras

_cluster = tfmot.clustering.keras
INITS = {
    "kmeans++": _cluster.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": _cluster.CentroidInitialization.LINEAR,
    "density": _cluster.CentroidInitialization.DENSITY_BASED,
    "random": _cluster.CentroidInitialization.RANDOM,
}


def _supports(layer) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    return isinstance(layer, _cluster.ClusterableLayer) or \
        clustering_registry.ClusteringRegistry.supports(layer)


def _is_wrapper(layer) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper

    return isinstance(layer, cluster_wrapper.ClusterWeights)


def _init(init: str):
    if init not in INITS:
        raise errors.ConfigError(errors.unknown("cluster init", init, list(INITS)))
    return INITS[init]


def _check_count(n, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise errors.ConfigError(f"number_of_clusters={n!r}{where}; accepted: an integer >= 2")
    return int(n)


def cluster_layer(layer, number_of_clusters: int, *, init: str = "kmeans++",
                  preserve_sparsity: bool = False):
    """Wraps one layer for clustering: the layer-level route for subclassed models."""
    return _cluster.cluster_weights(
        layer, number_of_clusters=_check_count(number_of_clusters, ""),
        cluster_centroids_init=_init(init), preserve_sparsity=preserve_sparsity)


def cluster(
    model,
    number_of_clusters: Union[int, Mapping[str, int]],
    *,
    init: str = "kmeans++",
    preserve_sparsity: bool = False,
    layers: pruning.LayerSelector = None,
    keep_first_last: bool = False,
) -> keras.Model:
    """Wraps a trained model so each selected kernel holds at most ``number_of_clusters`` values.

    Fine-tune the result briefly (a low learning rate), then ``tfcompress.strip`` it. The input
    model is not modified.

    Args:
        model: a trained Sequential or Functional tf_keras model (strip pruning first).
        number_of_clusters: clusters per kernel, or ``{layer name: clusters}`` for per-layer
            counts (only those layers are clustered unless ``layers`` says otherwise).
        init: centroid initialization: ``kmeans++``, ``linear``, ``density`` or ``random``.
        preserve_sparsity: keep zero weights at zero (for pruned models; one cluster is 0).
        layers: which layers (see ``tfcompress.prune``).
        keep_first_last: leave the first and last layers with weights unclustered.

    Returns:
        A copy of the model with clustering wrappers.

    Raises:
        ConfigError: a bad count, init or layer selection.
        ModelError: a subclassed model (the message explains the layer-level route).
    """
    model = pruning.check_functional(model, "cluster")
    if any(pruning._is_wrapper(l) for l in model.layers):
        raise errors.ModelError(
            "the model still holds pruning wrappers; strip it first: "
            "tfcompress.cluster(tfcompress.strip(model), ..., preserve_sparsity=True)")
    centroids_init = _init(init)
    if isinstance(number_of_clusters, Mapping):
        counts = {k: _check_count(v, f" for layer {k!r}") for k, v in number_of_clusters.items()}
        names = {l.name for l in model.layers}
        missing = sorted(set(counts) - names)
        if missing:
            raise errors.ConfigError(
                f"number_of_clusters names layers {missing} that the model lacks; accepted: "
                + ", ".join(l.name for l in model.layers if l.weights))
        if layers is None:
            layers = sorted(counts)
        default = None
    else:
        default, counts = _check_count(number_of_clusters, ""), {}

    def supports(layer):
        if not _supports(layer):
            return False
        n = counts.get(layer.name, default)
        if n is None:
            return False
        if isinstance(layer, keras.layers.Conv2D):  # tfmot silently skips tiny kernels
            return bool(_cluster_enough(layer, n))
        return True

    chosen, skipped = pruning.select_layers(model, layers, supports,
                                            keep_first_last=keep_first_last, kind="clustered")
    clustered = pruning.wrap_layers(model, chosen, lambda layer: _cluster.cluster_weights(
        layer, number_of_clusters=counts.get(layer.name, default),
        cluster_centroids_init=centroids_init, preserve_sparsity=preserve_sparsity))
    clustered.__dict__["_tfcompress_clustering"] = {
        "clustered": {n: counts.get(n, default) for n in chosen}, "skipped": skipped}
    logging.info("clustering %s", chosen)
    return clustered


def _cluster_enough(layer, n) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras.cluster import (
        layer_has_enough_weights_to_cluster)

    return layer_has_enough_weights_to_cluster(layer, n, False)


def clustering_info(model) -> dict:
    """What ``cluster`` did: ``{"clustered": {name: count}, "skipped": {...}}`` ({} if unknown)."""
    return dict(model.__dict__.get("_tfcompress_clustering", {}))


def unique_weights_report(model) -> dict:
    """Distinct values per kernel, measured from the weights (wrappers stripped first).

    Returns ``{"layers": {name: distinct values}, "max": largest count}``.
    """
    model = strip(ensure_keras2(model))
    per_layer = {name: int(len(np.unique(k))) for name, k in pruning.kernels(model).items()}
    return {"layers": per_layer, "max": max(per_layer.values(), default=0)}


def _is_quantized(model) -> bool:
    return any(type(l).__name__.startswith("Quantize") for l in model.layers)


def strip(model) -> keras.Model:
    """Removes pruning and clustering wrappers, keeping the trained (masked/clustered) weights.

    Quantization-aware wrappers stay: the converter needs them. A model with no pruning or
    clustering wrapper is returned as is. For a CQAT/PCQAT model, the clustering variables
    inside the QAT wrappers are removed (tfmot's ``strip_clustering_cqat``).

    Raises:
        ModelError: not a tf_keras model.
    """
    model = ensure_keras2(model)
    if any(pruning._is_wrapper(l) for l in model.layers):
        model = tfmot.sparsity.keras.strip_pruning(model)
    if any(_is_wrapper(l) for l in model.layers):
        model = _cluster.strip_clustering(model)
    if _is_quantized(model) and any(
            "cluster_centroids_tf" in w.name for w in model.weights):
        model = tfmot.experimental.combine.strip_clustering_cqat(model)
    return model


@recipe.stage("cluster", number_of_clusters=16, init="kmeans++", preserve_sparsity=True,
              epochs=2, layers="", keep_first_last=False, learning_rate=1e-4)
def _cluster_stage(model, section, ctx):
    """Recipe stage: cluster, fine-tune, strip; records unique weights and sparsity."""
    before = ctx.accuracy(model)
    clustered = cluster(model, section.number_of_clusters, init=section.init,
                        preserve_sparsity=section.preserve_sparsity,
                        layers=section.layers or None, keep_first_last=section.keep_first_last)
    ctx.fit(clustered, section.epochs, learning_rate=section.learning_rate or None)
    stripped = strip(clustered)
    uniques = unique_weights_report(stripped)
    sparsity = pruning.sparsity_report(stripped)
    names = list(clustering_info(clustered).get("clustered", {}))
    ctx.stats["cluster"] = {
        "number_of_clusters": section.number_of_clusters,
        "max_unique_weights": max((uniques["layers"][n] for n in names), default=0),
        "global_sparsity": sparsity["global"],
        "accuracy_before": before,
        "accuracy_after": ctx.accuracy(stripped),
        "unique_weights": {n: uniques["layers"][n] for n in names},
        "sparsity": {n: sparsity["layers"][n] for n in names},
    }
    return stripped
