"""tf_keras ``MultiHeadAttention`` internals, isolated: its projections and its softmax.

Checked against tf_keras 2.21 (``tf_keras/src/layers/attention/multi_head_attention.py``). The
layer keeps its four ``EinsumDense`` projections in ``_query_dense``, ``_key_dense``,
``_value_dense`` and ``_output_dense`` (built by ``_build_from_signature``, which ``from_config``
calls when the config holds the input shapes) and applies ``self._softmax(scores, mask)`` (a
``Softmax`` layer) in ``_masked_softmax``; it has no public accessors for them, nor for the
input shapes (``_query_shape``, ``_key_shape``, ``_value_shape``), ``_num_heads`` and
``_value_dim``. Quantization-aware training reaches them only through the functions below.
"""

from typing import Callable

import tensorflow as tf

_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")


def built(layer) -> bool:
    """Whether the attention layer has created its projections (weights exist)."""
    return bool(getattr(layer, "_built_from_signature", False))


def projections(layer) -> list:
    """The four ``EinsumDense`` projections (query, key, value, output), in that order."""
    return [getattr(layer, name) for name in _PROJECTIONS]


def build_projections(layer) -> None:
    """Creates the projections' weights where the layer has not been called yet (a layer made by
    ``from_config`` has its projections but builds them on its first call)."""
    query, key, value = layer._query_shape, layer._key_shape, layer._value_shape  # noqa: SLF001
    heads, value_dim = layer._num_heads, layer._value_dim  # noqa: SLF001
    attended = query[:-1].concatenate([heads, value_dim])
    for dense, shape in zip(projections(layer), (query, key, value, attended)):
        if not dense.built:
            with tf.name_scope(dense.name):  # "<wrapper>/query/kernel", as the layer's own call
                dense.build(shape)


def softmax(layer) -> Callable:
    """The attention softmax, called as ``softmax(scores, mask)``."""
    return layer._softmax  # noqa: SLF001


def set_softmax(layer, fn: Callable) -> None:
    """Replaces the attention softmax by ``fn(scores, mask)``."""
    layer._softmax = fn  # noqa: SLF001
