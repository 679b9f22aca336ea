"""What the tfmot techniques share: layer selection, wrapper detection, copying, ``strip``.

Pruning, clustering and quantization-aware training all wrap chosen layers of a copy of the
caller's model with tfmot wrappers; this module is their one home for choosing the layers,
telling the wrappers apart, seeing through them and removing them again.
"""

import re
from typing import Callable, Sequence, Union

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from tfcompress import errors
import tfcompress._compat.tfmot as _tfmot
from tfcompress._compat.keras import is_functional, keras, unwrap
from tfcompress.keras3 import ensure_keras2

LayerSelector = Union[None, str, Sequence[str], type, Sequence[type], Callable]


def layer_matcher(layers: LayerSelector) -> Callable:
    """A predicate ``layer -> bool`` for a selector: None (all), a regex over full layer names,
    a list of names and/or classes, a class, or a function.

    Raises:
        ConfigError: a selector of none of these forms.
    """
    if layers is None:
        return lambda layer: True
    if isinstance(layers, str):
        try:
            pattern = re.compile(layers)
        except re.error as e:
            raise errors.ConfigError(f"layers={layers!r} is not a regex ({e}); accepted: a "
                                     "regex over full layer names, e.g. 'conv.*'") from e
        return lambda layer: bool(pattern.fullmatch(layer.name))
    if isinstance(layers, type):
        return lambda layer: isinstance(layer, layers)
    if callable(layers):
        return layers
    items = list(layers)
    names = {x for x in items if isinstance(x, str)}
    classes = tuple(x for x in items if isinstance(x, type))
    if len(names) + len(classes) != len(items):
        raise errors.ConfigError(
            f"layers={layers!r}; accepted: None, a regex, a list of layer names or classes, "
            "or a function layer -> bool")
    return lambda layer: layer.name in names or isinstance(layer, classes)


def check_functional(model, what: str) -> keras.Model:
    """The model as tf_keras; ModelError for a subclassed one, with the layer-level route."""
    model = ensure_keras2(model)
    if not is_functional(model):
        raise errors.ModelError(
            f"{type(model).__name__} {model.name!r} is a subclassed model; {what} needs a "
            "Sequential or Functional model, since it rebuilds the model layer by layer. "
            "For a subclassed model wrap the layers themselves in its __init__, e.g. "
            "`self.dense = tfcompress.training.pruning.prune_layer(Dense(128), 0.8, epochs=..., "
            "steps_per_epoch=...)` (or tfcompress.training.clustering.cluster_layer), then train "
            "with tfcompress.callbacks.Pruning().")
    return model


def select_layers(model, layers: LayerSelector, supports: Callable, *,
                  keep_first_last: bool = False, kind: str = "pruned", warn: bool = True):
    """(names to wrap, {name: why skipped}) for the model's layers with weights; ``warn``:
    log the skipped ones."""
    match = layer_matcher(layers)
    weighted = [layer for layer in model.layers if layer.weights]
    chosen, skipped = [], {}
    edge = {weighted[0].name, weighted[-1].name} if keep_first_last and weighted else set()
    for layer in weighted:
        if not match(layer):
            continue
        if layer.name in edge:
            skipped[layer.name] = "first or last layer kept dense"
        elif not supports(layer):
            skipped[layer.name] = f"tfmot cannot wrap {type(layer).__name__} to be {kind}"
        else:
            chosen.append(layer.name)
    if layers is not None and not chosen:
        raise errors.ConfigError(
            f"layers={layers!r} selects no layer that can be {kind}; layers with weights: "
            + ", ".join(f"{l.name} ({type(l).__name__})" for l in weighted))
    if weighted and not chosen:
        raise errors.ConfigError(
            f"no layer of model {model.name!r} can be {kind}: "
            + "; ".join(f"{name}: {why}" for name, why in skipped.items())
            + ("; accepted: keep_first_last=False" if edge else ""))
    if skipped and warn:
        logging.warning("layers not %s: %s", kind, skipped)
    return chosen, skipped


def warn_left_alone(left: list, kind: str) -> None:
    """Logs the layers a step left alone (``left_alone``'s list), if any."""
    if left:
        logging.warning("layers left alone (not %s) hold more than %.0f%% of the weights each: "
                        "%s", kind, 100 * LEFT_ALONE_SHARE,
                        ", ".join(f"{n} {share:.1%}" for n, share in left))


def copy_model(model) -> keras.Model:
    """A deep copy (new layers, same weights) so wrapping never touches the caller's model."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def wrap_layers(model, names: Sequence[str], wrap: Callable) -> keras.Model:
    """A copy of ``model`` whose layers named in ``names`` are replaced by ``wrap(layer)``."""
    source = copy_model(model)
    names = set(names)

    def clone(layer):
        return wrap(layer) if layer.name in names else layer

    return keras.models.clone_model(source, clone_function=clone)


# ---------------------------------------------------------------- telling wrappers apart

def is_pruned(model) -> bool:
    """True if ``model`` holds pruning wrappers."""
    return any(isinstance(layer, _tfmot.PruneWrapper) for layer in model.layers)


def is_clustered(model) -> bool:
    """True if ``model`` holds clustering wrappers."""
    return any(isinstance(layer, _tfmot.ClusterWrapper) for layer in model.layers)


def is_quantize_aware(model) -> bool:
    """True if ``model`` (or a model nested in it) holds tfmot QAT layers."""
    def layers(m):
        for layer in getattr(m, "layers", ()):
            yield layer
            yield from layers(layer)

    return any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
               or type(layer).__name__ == "QuantizeLayer" for layer in layers(model))


def wrapped_layers(model, wrapper: type, supports, kind: str) -> tuple[list, dict]:
    """(the ``wrapper`` layers of ``model`` that act on weights, {name: why not} of its other
    layers with weights), read from the model itself, so it holds for a model saved and loaded
    again. A layer tfmot wraps only to pass it through (DepthwiseConv2D, BatchNormalization,
    LayerNormalization: its registries give them no weights) is not ``kind``: it is skipped."""
    wrapped = [l for l in model.layers if isinstance(l, wrapper)]
    acting = [l for l in wrapped if _tfmot.wrapped_weights(l)]
    skipped = {l.name: (f"tfmot cannot wrap {type(l).__name__} to be {kind}"
                        if not supports(l) else "not selected")
               for l in model.layers if l.weights and l not in wrapped}
    skipped.update({l.layer.name: f"tfmot wraps {type(l.layer).__name__} but leaves its "
                    f"weights as they are (not {kind})"
                    for l in wrapped if l not in acting and l.layer.weights})
    return acting, skipped


# The weights that pruning and clustering act on, by their own (last) name: Dense/Conv/EinsumDense
# ``kernel``, RNN cells' ``kernel`` and ``recurrent_kernel``, depthwise and pointwise kernels,
# Embedding ``embeddings``. Biases, LayerNormalization's gamma/beta and BatchNormalization's
# statistics are never pruned or clustered (they still count as parameters in ``profile``).
KERNEL_NAMES = ("kernel", "recurrent_kernel", "depthwise_kernel", "pointwise_kernel",
                "embeddings")
LEFT_ALONE_SHARE = 0.10  # a step that leaves layers holding more than this share says so


def _flat_layers(model):
    """The model's layers, nested models' layers in their place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def layer_kernels(layer) -> dict:
    """{weight name: array} of every kernel of one layer (wrappers see through).

    A weight is a kernel when its own name is one of ``KERNEL_NAMES``; the key is the layer's
    name and the weight's path inside the layer, e.g. ``lstm/lstm_cell/recurrent_kernel``,
    ``bidirectional/backward/lstm_cell/kernel``, ``mha/query/kernel``, ``dense/kernel``
    (the same before and after ``strip``, which renames the variables). So an LSTM/GRU/
    SimpleRNN layer has two kernels, a Bidirectional one four, a MultiHeadAttention four
    (query, key, value, attention_output) and a LayerNormalization none.
    """
    inner = unwrap(layer)
    if isinstance(inner, keras.layers.Bidirectional):  # its sublayers' names change per copy
        return {f"{inner.name}/{side}/{name.split('/', 1)[1]}": kernel
                for side in ("forward", "backward")
                for name, kernel in layer_kernels(getattr(inner, f"{side}_layer")).items()}
    out = {}
    for weight in inner.weights:
        path = "/" + weight.name.split(":")[0]
        if path.rsplit("/", 1)[-1] not in KERNEL_NAMES or not hasattr(weight, "numpy"):
            continue
        own = path.find(f"/{inner.name}/")
        path = path[own + len(inner.name) + 2:] if own >= 0 else path[1:]
        out[f"{inner.name}/{path}"] = np.asarray(weight.numpy())
    return out


def kernels(model) -> dict:
    """{layer name: {weight name: kernel array}} of every layer with a kernel (see
    ``layer_kernels``), nested models' layers included.

    Pruning wrappers are seen through (their kernels hold the masked weights); a model holding
    clustering wrappers is read stripped (the wrapper computes the clustered kernel).
    """
    if is_clustered(model) and is_functional(model):  # strip cannot rebuild a subclassed one
        model = strip(model)
    out = {}
    for layer in _flat_layers(model):
        found = layer_kernels(layer)
        if found:
            out[unwrap(layer).name] = found
    return out


def _own_size(layer) -> int:
    """Parameters of a layer as the user built it: the inner layer's weights; a clustering
    wrapper also holds each clustered kernel as one integer index per weight (its pulling
    indices), and not as a weight of the inner layer. Masks, thresholds, centroids and
    steps that wrappers add do not count."""
    size = sum(int(np.prod(w.shape, dtype=np.int64)) for w in unwrap(layer).weights)
    if isinstance(layer, _tfmot.ClusterWrapper):
        size += sum(int(np.prod(w.shape, dtype=np.int64)) for w in layer.weights
                    if w.dtype.is_integer)
    return size


def weight_shares(model) -> dict:
    """{layer name: the layer's share of the model's parameters} (nested models' layers in
    their place; see ``_own_size`` for wrapped layers)."""
    sizes = {unwrap(l).name: _own_size(l) for l in _flat_layers(model)}
    total = sum(sizes.values())
    return {name: size / total for name, size in sizes.items() if size} if total else {}


def left_alone(model, untouched, threshold: float = LEFT_ALONE_SHARE) -> list:
    """[(layer name, share), ...] of the ``untouched`` layers that each hold more than
    ``threshold`` of the model's parameters, largest first (see ``weight_shares``)."""
    shares = weight_shares(model)
    found = [(name, round(shares[name], 4)) for name in untouched
             if shares.get(name, 0.0) > threshold]
    return sorted(found, key=lambda item: -item[1])


def strip(model) -> keras.Model:
    """Removes pruning and clustering wrappers, keeping the trained (masked/clustered) weights.

    Quantization-aware wrappers stay: the converter needs them. A model with no pruning or
    clustering wrapper is returned as is. For a CQAT/PCQAT model, the clustering variables
    inside the QAT wrappers are removed (tfmot's ``strip_clustering_cqat``).

    Raises:
        ModelError: not a tf_keras model.
    """
    model = ensure_keras2(model)
    if is_pruned(model):
        model = tfmot.sparsity.keras.strip_pruning(model)
    if is_clustered(model):
        model = tfmot.clustering.keras.strip_clustering(model)
    if is_quantize_aware(model) and any("cluster_centroids_tf" in w.name for w in model.weights):
        model = tfmot.experimental.combine.strip_clustering_cqat(model)
    return model
