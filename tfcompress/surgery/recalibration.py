"""BatchNormalization statistics re-estimated on data after surgery (``recalibrate_batchnorm``).

Removing channels, blocks or ranks changes what every later BatchNormalization sees, while its
moving mean and variance still describe the model before the surgery; the inference-mode outputs
are then off until fine-tuning has replaced those statistics (with Keras' momentum of 0.99, a
few hundred steps). ``recalibrate_batchnorm`` sets each one to the exact mean and variance of
its input on a few hundred training images, in graph order, so each layer sees inputs normalized
by the layers before it already recalibrated ("adaptive BatchNorm", Li et al. 2020, EagleEye).
Nothing is trained; the other weights are unchanged.
"""

import numpy as np

import tfcompress.graph as graphs
from tfcompress import data, errors
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2


def recalibrate_batchnorm(model: keras.Model, x, *, samples: int = 512) -> keras.Model:
    """A copy of ``model`` whose BatchNormalization moving statistics are those of ``x``.

    Args:
        model: a Sequential or functional tf_keras model, each layer called once.
        x: images the model is meant for (a subset of the training images), batch first.
        samples: images used at most (they run as one batch).

    Returns:
        A new model of the same class with the same weights except the BatchNormalization moving
        means and variances; ``model.batchnorm_recalibration`` maps each BatchNormalization to
        the largest change of its mean and of its variance.

    Raises:
        ConfigError: ``samples`` below 2.
        DataError: images that do not fit the model or hold NaN/Inf.
        ModelError: a subclassed model, a layer called more than once, a BatchNormalization
            fed by several tensors.
    """
    if not isinstance(samples, int) or samples < 2:
        raise errors.ConfigError(f"samples={samples!r}; accepted: an integer >= 2")
    model = ensure_keras2(model)
    x = data.check_images(x, "recalibration data")[:samples].astype(np.float32)
    data.check_fits(x, model.input_shape, "recalibration data")
    new = keras.models.clone_model(model)
    new.set_weights(model.get_weights())
    graph = graphs.functional(new)  # the same layer objects as ``new``, called once each
    report = {}
    for name, (inputs,) in graphs.walk([graph], x):
        layer = graph.get_layer(name)
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        v = inputs.numpy().astype(np.float64)
        axes = [a % v.ndim for a in layer.axis]
        reduce = tuple(i for i in range(v.ndim) if i not in axes)
        mean, var = v.mean(axis=reduce), v.var(axis=reduce)
        report[name] = {
            "max_mean_change": float(np.max(np.abs(mean - layer.moving_mean.numpy()))),
            "max_variance_change": float(np.max(np.abs(var - layer.moving_variance.numpy())))}
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    new.batchnorm_recalibration = report
    return new
