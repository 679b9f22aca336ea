"""Weight clustering over tfmot, per-layer cluster counts, measured unique weights, ``strip``.

What this adds to ``tfmot.clustering.keras.cluster_weights``: init by name, per-layer cluster
counts, layer selection (shared with pruning), skipped layers listed instead of a crash, the
caller's model left untouched, ``unique_weights_report`` measured from the weights, and one
``strip`` for every wrapper kind.
"""

from typing import Mapping, Optional, Union

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


def _check_count(n, where: str, preserve_sparsity: bool = False) -> int:
    low = 3 if preserve_sparsity else 2  # tfmot: one of them is the zero's
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < low:
        raise errors.ConfigError(
            f"number_of_clusters={n!r}{where}; accepted: an integer >= {low}"
            + (" with preserve_sparsity (one cluster is the zeros')" if preserve_sparsity else ""))
    return int(n)


def check_options(number_of_clusters, init: str = "kmeans++",
                  preserve_sparsity: bool = False) -> None:
    """Refuses what ``cluster`` would refuse before it sees a model (a recipe checks its values
    so before anything trains): a bad count (or ``{layer: count}``) or init."""
    _init(init)
    if isinstance(number_of_clusters, Mapping):
        for k, v in number_of_clusters.items():
            _check_count(v, f" for layer {k!r}", preserve_sparsity)
    else:
        _check_count(number_of_clusters, "", preserve_sparsity)


def _most_clusters(layer, preserve_sparsity: bool, zeros: Optional[float] = None
                   ) -> Optional[int]:
    """The most clusters tfmot's centroid initialization takes for each kernel of ``layer``:
    kmeans++ samples them from the kernel's weights (with ``preserve_sparsity``, from its
    nonzero weights, plus the zeros' cluster; ``zeros``: the share of zeros the kernels will
    hold, if not the one they hold now); None for a layer without a kernel."""
    sizes = [int(k.size) if not preserve_sparsity else 1 + int(
        np.count_nonzero(k) if zeros is None else round(k.size * (1 - zeros)))
        for k in wrappers.layer_kernels(layer).values()]
    return min(sizes, default=None)


def cluster_layer(layer, number_of_clusters: int, *, init: str = "kmeans++",
                  preserve_sparsity: bool = False):
    """Wraps one layer for clustering: the layer-level route for subclassed models."""
    return _cluster.cluster_weights(
        layer, number_of_clusters=_check_count(number_of_clusters, "", preserve_sparsity),
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
    counts = check(model, number_of_clusters, init=init, preserve_sparsity=preserve_sparsity,
                   layers=layers, keep_first_last=keep_first_last, warn=True)
    centroids_init = _init(init)
    clustered = wrappers.wrap_layers(model, list(counts), lambda layer: _cluster.cluster_weights(
        layer, number_of_clusters=counts[layer.name],
        cluster_centroids_init=centroids_init, preserve_sparsity=preserve_sparsity))
    logging.info("clustering %s", sorted(counts))
    wrappers.warn_left_alone(clustering_info(clustered)["left_alone"], "clustered")
    return clustered


def check(model, number_of_clusters: Union[int, Mapping[str, int]], *, init: str = "kmeans++",
          preserve_sparsity: bool = False, layers: wrappers.LayerSelector = None,
          keep_first_last: bool = False, warn: bool = False,
          zeros: Optional[Mapping[str, float]] = None) -> dict:
    """Everything ``cluster`` refuses (same arguments), wrapping nothing: a recipe calls it on
    its baseline before that trains. ``warn``: log the layers left unclustered; ``zeros``:
    {layer name: share of zeros} its kernels will hold when clustered (a pruning step before).

    Returns:
        {name of a layer to cluster: its number of clusters}.

    Raises:
        ConfigError: a bad count or init, a layer selection that selects nothing, or a count
            above what a selected kernel holds (``_most_clusters``; tfmot's kmeans++ would
            crash on it).
    """
    check_options(number_of_clusters, init, preserve_sparsity)
    if isinstance(number_of_clusters, Mapping):
        counts = {k: int(v) for k, v in number_of_clusters.items()}
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
        default, counts = int(number_of_clusters), {}

    def supports(layer):
        if not _tfmot.clusterable(layer):
            return False
        n = counts.get(layer.name, default)
        if n is None:
            return False
        if isinstance(layer, keras.layers.Conv2D):  # tfmot silently skips tiny kernels
            return _tfmot.enough_weights_to_cluster(layer, n)
        return True

    chosen, _ = wrappers.select_layers(model, layers, supports, keep_first_last=keep_first_last,
                                       kind="clustered", warn=warn)
    chosen = {name: counts.get(name, default) for name in chosen}
    most = {name: _most_clusters(model.get_layer(name), preserve_sparsity,
                                 (zeros or {}).get(name)) for name in chosen}
    for name in sorted((n for n in chosen if most[n] is not None), key=most.get):
        if chosen[name] > most[name]:  # the smallest kernel first: its figure bounds them all
            own = name in counts
            raise errors.ConfigError(
                f"number_of_clusters={chosen[name]}{f' for layer {name!r}' if own else ''} is "
                f"more than layer {name!r} holds ({most[name]}: the "
                f"{'nonzero weights + 1' if preserve_sparsity else 'weights'} of its smallest "
                f"kernel); accepted: an integer from {3 if preserve_sparsity else 2} to "
                f"{most[name]}" + ("" if own else ", the fewest among the layers clustered"))
    return chosen


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
