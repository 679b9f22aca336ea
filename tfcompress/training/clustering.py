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

from tfcompress import errors, wrappers
import tfcompress._compat.tfmot as _tfmot
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2
from tfcompress.wrappers import strip  # noqa: F401  (re-exported: tfcompress.training.clustering.strip)

_cluster = tfmot.clustering.keras
INITS = {
    "kmeans++": _cluster.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": _cluster.CentroidInitialization.LINEAR,
    "density": _cluster.CentroidInitialization.DENSITY_BASED,
    "random": _cluster.CentroidInitialization.RANDOM,
}


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
    layers: wrappers.LayerSelector = None,
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
    model = wrappers.check_functional(model, "cluster")
    if wrappers.is_pruned(model):
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
        if not _tfmot.clusterable(layer):
            return False
        n = counts.get(layer.name, default)
        if n is None:
            return False
        if isinstance(layer, keras.layers.Conv2D):  # tfmot silently skips tiny kernels
            return _tfmot.enough_weights_to_cluster(layer, n)
        return True

    chosen, skipped = wrappers.select_layers(model, layers, supports,
                                            keep_first_last=keep_first_last, kind="clustered")
    clustered = wrappers.wrap_layers(model, chosen, lambda layer: _cluster.cluster_weights(
        layer, number_of_clusters=counts.get(layer.name, default),
        cluster_centroids_init=centroids_init, preserve_sparsity=preserve_sparsity))
    logging.info("clustering %s", chosen)
    wrappers.warn_left_alone(clustering_info(clustered)["left_alone"], "clustered")
    return clustered


def clustering_info(model) -> dict:
    """What clustering wrappers ``model`` holds, read from the wrappers (so it holds after
    saving and loading): ``{"clustered": {name: count} (the layers whose weights are
    clustered), "skipped": {name: why} (also those tfmot wraps but never clusters, such as
    DepthwiseConv2D and BatchNormalization), "left_alone":
    [(name, share of the parameters), ...]}`` (skipped layers holding more than
    ``wrappers.LEFT_ALONE_SHARE`` each); {} for a model without clustering wrappers."""
    wrapped, skipped = wrappers.wrapped_layers(model, _tfmot.ClusterWrapper, _tfmot.clusterable,
                                               "clustered")
    if not wrappers.is_clustered(model):
        return {}
    return {"clustered": {l.layer.name: int(l.number_of_clusters) for l in wrapped},
            "skipped": skipped,
            "left_alone": wrappers.left_alone(model, skipped) if skipped else []}


def unique_weights_report(model) -> dict:
    """Distinct values per kernel and per layer, measured from the weights (wrappers stripped
    first).

    Every kernel counts (see ``wrappers.layer_kernels``): tfmot clusters each kernel of a
    layer on its own (an LSTM's kernel and recurrent kernel, MultiHeadAttention's query, key,
    value and output kernels, both directions of a Bidirectional), so a layer's figure is the
    largest count over its kernels.

    Returns:
        ``{"layers": {layer name: most distinct values in one of its kernels}, "kernels":
        {weight name: distinct values}, "max": largest count}``.
    """
    model = strip(ensure_keras2(model))
    per_kernel, per_layer = {}, {}
    for layer_name, found in wrappers.kernels(model).items():
        for name, kernel in found.items():
            per_kernel[name] = int(len(np.unique(kernel)))
        per_layer[layer_name] = max(per_kernel[name] for name in found)
    return {"layers": per_layer, "kernels": per_kernel,
            "max": max(per_layer.values(), default=0)}
