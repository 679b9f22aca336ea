"""keras.ops nodes (Keras 3) <-> TF op layers (tf_keras, ``TFOpLambda``), for ``keras3``.

Functional models hold plain ops between layers (MobileNetV3's ``x + 3.0``, a ``reshape``):
Keras 3 records them as ``keras.ops`` nodes, tf_keras as ``TFOpLambda`` layers over a TF
function. These tables translate the common ones; any other is an error naming it.

Checked against Keras 3.15.1 (its ops' attribute names: ``axis``, ``keepdims``, ``newshape``...)
and tf_keras 2.21.0 (``TFOpLambda``).
"""

import inspect

import tensorflow as tf

from tfcompress import errors

_K3_OPS = {  # Keras 3 op class name -> TF function of the call arguments (TFOpLambda in tf_keras)
    "Add": tf.math.add, "Subtract": tf.math.subtract, "Multiply": tf.math.multiply,
    "Divide": tf.math.truediv, "TrueDivide": tf.math.truediv, "Maximum": tf.math.maximum,
    "Minimum": tf.math.minimum, "Matmul": tf.linalg.matmul, "Negative": tf.math.negative,
    "Relu": tf.nn.relu, "Relu6": tf.nn.relu6, "Sigmoid": tf.math.sigmoid, "Tanh": tf.math.tanh,
    "Silu": tf.nn.silu,
}
_K3_OPS_WITH_ATTRIBUTES = {  # ... and those whose attributes are arguments too
    "Reshape": lambda op, x: tf.reshape(x, op.newshape),
    "Transpose": lambda op, x: tf.transpose(x, op.axes),
    "Concatenate": lambda op, xs: tf.concat(list(xs), op.axis),
    "Mean": lambda op, x: tf.math.reduce_mean(x, op.axis, op.keepdims),
    "Sum": lambda op, x: tf.math.reduce_sum(x, op.axis, op.keepdims),
    "ExpandDims": lambda op, x: tf.expand_dims(x, op.axis),
    "Squeeze": lambda op, x: tf.squeeze(x, op.axis),
    "GetItem": lambda op, x, key: x[tuple(key) if isinstance(key, list) else key],
}

_TF_OPS = {  # tf_keras TFOpLambda symbol -> (keras.ops name, the TF parameters it takes, in order)
    "__operators__.add": ("add", ("x", "y")), "math.add": ("add", ("x", "y")),
    "math.subtract": ("subtract", ("x", "y")), "math.multiply": ("multiply", ("x", "y")),
    "math.truediv": ("divide", ("x", "y")), "math.divide": ("divide", ("x", "y")),
    "math.maximum": ("maximum", ("x", "y")), "math.minimum": ("minimum", ("x", "y")),
    "linalg.matmul": ("matmul", ("a", "b")), "math.negative": ("negative", ("x",)),
    "nn.relu": ("relu", ("features",)), "nn.relu6": ("relu6", ("features",)),
    "math.sigmoid": ("sigmoid", ("x",)), "math.tanh": ("tanh", ("x",)),
    "nn.silu": ("silu", ("features",)), "reshape": ("reshape", ("tensor", "shape")),
    "concat": ("concatenate", ("values", "axis")),
    "math.reduce_mean": ("mean", ("input_tensor", "axis", "keepdims")),
    "math.reduce_sum": ("sum", ("input_tensor", "axis", "keepdims")),
    "expand_dims": ("expand_dims", ("input", "axis")),
}


def k3_op(op, args, kwargs, where: str):
    """The TF function call (in a tf_keras graph) for Keras 3 op node ``op`` on ``args``."""
    name = type(op).__name__
    if name in _K3_OPS and not kwargs:
        return _K3_OPS[name](*args)
    if name in _K3_OPS_WITH_ATTRIBUTES and not kwargs:
        return _K3_OPS_WITH_ATTRIBUTES[name](op, *args)
    raise errors.Keras3ModelError(
        f"{where}: keras.ops node of class {name} has no tf_keras translation; accepted ops: "
        f"{', '.join(sorted({**_K3_OPS, **_K3_OPS_WITH_ATTRIBUTES}))} (or use a Keras layer)")


def tf_op(layer, args, kwargs, where: str):
    """The ``keras.ops`` call (in a Keras 3 graph) for tf_keras ``TFOpLambda`` ``layer``."""
    entry = _TF_OPS.get(getattr(layer, "symbol", None))
    if entry is None:
        raise errors.Keras3ModelError(
            f"{where}: TF op {getattr(layer, 'symbol', '?')!r} has no Keras 3 translation; "
            f"accepted: {', '.join(sorted(_TF_OPS))}")
    name, params = entry
    bound = inspect.signature(layer.function).bind(*args, **kwargs)
    bound.apply_defaults()
    import keras  # Keras 3, imported only when a model goes back to it

    return getattr(keras.ops, name)(*(bound.arguments[p] for p in params))
