"""Running a Keras 3 or tf_keras model on sample inputs and comparing outputs (``keras3``'s
check that a rebuilt model computes what the original does).

Both libraries' models take the same numpy arrays; their nested inputs and outputs are packed
and flattened with each library's own tree functions. Checked against Keras 3.15.1
(``Functional._inputs_struct``) and tf_keras 2.21.0 (``Functional._nested_inputs``).
"""

import numpy as np
import tensorflow as tf


def k3():
    import keras  # Keras 3 (TF 2.21's default Keras); imported lazily, only when needed

    return keras


def is_k3_model(obj) -> bool:
    return isinstance(obj, k3().Model)


def sample(model, batch: int = 2, seed: int = 0) -> list:
    """Random input for every model input (unknown non-batch sizes become 32)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for x in model.inputs:
        shape = [batch] + [32 if d is None else int(d) for d in list(x.shape)[1:]]
        dtype = np.dtype(getattr(x.dtype, "name", x.dtype))
        if np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            arrays.append(rng.random(shape).astype(dtype))
    return arrays


def run(model, arrays, flatten) -> list:
    """The model's outputs (flattened) on the flat input ``arrays``."""
    if is_k3_model(model):
        struct = getattr(model, "_inputs_struct", None)
        inputs = k3().tree.pack_sequence_as(struct, arrays) if struct is not None else arrays
    else:
        struct = getattr(model, "_nested_inputs", None)
        inputs = tf.nest.pack_sequence_as(struct, arrays) if struct is not None else arrays
    if isinstance(inputs, list) and len(inputs) == 1 and struct is None:
        inputs = inputs[0]
    return [np.asarray(o) for o in flatten(model(inputs, training=False))]


def flatten_for(model):
    return k3().tree.flatten if is_k3_model(model) else tf.nest.flatten


def inputs_for(model, given=None) -> list:
    """``given`` (any nest of arrays) flattened, or a random sample for the model's inputs."""
    return sample(model) if given is None else [np.asarray(s) for s in tf.nest.flatten(given)]


def max_diff(p, q) -> float:
    """max |p - q|, where NaN on both sides counts as equal."""
    d = np.where(np.isnan(p) & np.isnan(q), 0.0, np.abs(p - q))
    return float(np.max(d)) if d.size else 0.0


def diff_and_scale(a, b, arrays) -> tuple:
    """(max |a - b| over all outputs, max |a|) on the flat input ``arrays``."""
    ya, yb = run(a, arrays, flatten_for(a)), run(b, arrays, flatten_for(b))
    diff = max(max_diff(p, q) for p, q in zip(ya, yb))
    return diff, max(float(np.nanmax(np.abs(p))) if p.size else 0.0 for p in ya)


def max_abs_diff(a, b, sample=None) -> float:
    """Largest absolute difference between two models' outputs on ``sample`` (random if None)."""
    return diff_and_scale(a, b, inputs_for(a, sample))[0]
