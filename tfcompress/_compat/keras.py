"""The one place that selects Keras 2 (``tf_keras``) for tfmot.

tensorflow-model-optimization works only with Keras 2, while TensorFlow 2.21's default
``tf.keras`` is Keras 3. Setting ``TF_USE_LEGACY_KERAS`` before TensorFlow is first imported
makes ``tf.keras`` resolve to ``tf_keras`` too, so models built either way are Keras 2 models.
Nothing else in the package touches that variable.

Private symbols reached here, checked against tf_keras 2.21.0 and Keras 3.15.1:
``Functional._is_graph_network``, ``tf_keras.src.engine.functional.Functional``,
``keras.src.models.functional.Functional``, ``tf_keras.src.saving.serialization_lib``,
``KerasTensor._keras_mask``.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib  # noqa: E402
import sys  # noqa: E402


@contextlib.contextmanager
def _hidden(*names: str):
    """Makes ``import NAME`` raise ImportError inside the block, for the names this process has
    not imported yet; they import normally afterwards.

    Used once, below, so that ``import tfcompress`` loads neither Keras 3 nor scipy nor
    matplotlib (about 2 s): TensorFlow 2.21's legacy ``tensorflow.python.keras`` (loaded by
    ``import tensorflow``) tries ``from scipy.sparse import issparse`` for TF1 training loops with
    sparse inputs, and tfmot 0.8.1's ``prune_registry`` tries ``from keras.src.engine import
    base_layer``, which loads all of Keras 3 (``matplotlib.pyplot`` with it) only to fail, since
    Keras 3 has no ``keras.src.engine``. Both sit in ``try``/``except ImportError`` and take their
    fallback (``issparse = None``; ``tf._keras_internal``'s base layer) at once. Checked against
    TF 2.21, tf_keras 2.21 and tfmot 0.8.1.
    """
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # an import of it raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


with _hidden("keras", "scipy"):
    import tf_keras as keras  # noqa: E402  (must follow the environment set-up)
    import tensorflow_model_optimization  # noqa: E402, F401


def is_keras3_model(model) -> bool:
    """True for a model built with Keras 3 (``keras`` >= 3), subclasses included."""
    return not isinstance(model, keras.Model) and any(
        cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def is_builtin_layer_class(cls, *, keras3: bool) -> bool:
    """True for a layer class Keras itself defines: Keras 3 keeps them under ``keras.src``,
    tf_keras under ``tf_keras`` (checked against Keras 3.15 and tf_keras 2.21)."""
    return cls.__module__.startswith("keras.src." if keras3 else "tf_keras.")


def unwrap(layer):
    """The layer inside any wrapper (tfmot's pruning, clustering and QAT wrappers are Keras
    ``Wrapper`` layers holding ``.layer``), or the layer itself. A Bidirectional layer is
    itself the layer: its ``.layer`` is an unbuilt template, its weights live in
    ``forward_layer`` and ``backward_layer``."""
    while isinstance(getattr(layer, "layer", None), keras.layers.Layer) \
            and not isinstance(layer, keras.layers.Bidirectional):
        layer = layer.layer
    return layer


# ---------------------------------------------------------------- private Keras API, isolated
# Checked against tf_keras 2.21 and keras 3.15 (the versions setup.cfg pins). Each has no
# public equivalent: Keras tells a functional model from a subclassed one only by its class.

def is_functional(model) -> bool:
    """Whether a tf_keras model is Sequential or Functional (its layers form a graph we can
    rebuild), not a subclassed model."""
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def functional_class(keras3: bool) -> type:
    """The Functional model class of Keras 3 (``keras3=True``) or of tf_keras."""
    if keras3:
        from keras.src.models.functional import Functional
    else:
        from tf_keras.src.engine.functional import Functional
    return Functional


def unsafe_deserialization():
    """tf_keras' scope that lets ``from_config`` rebuild Lambda layers (safe mode off)."""
    from tf_keras.src.saving import serialization_lib

    return serialization_lib.SafeModeScope(False)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's and the converter's INFO chatter (for scripts; warnings still show).

    TensorFlow logs through its own ``tensorflow`` logger and, in places (SavedModel export),
    through absl's; both are filtered so only our own INFO lines remain.
    """
    import logging

    from absl import logging as absl_logging

    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    tf_dir = os.path.dirname(os.path.dirname(keras.__file__))  # site-packages
    noisy = tuple(os.path.join(tf_dir, name) for name in ("tensorflow", "tf_keras"))

    def keep(record) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(noisy)

    absl_logging.get_absl_handler().addFilter(keep)


def call_input_shapes(layer, index: int) -> list:
    """The shapes of every Keras tensor passed to the ``index``-th call of ``layer`` (e.g. a
    MultiHeadAttention's query, value and key), in call order; [] when unknown.

    ``get_input_shape_at`` gives only the first argument's shape for such calls. Semi-private
    tf_keras API (checked against 2.21): ``Layer.inbound_nodes[i].keras_inputs``.
    """
    try:
        return [tuple(t.shape) for t in layer.inbound_nodes[index].keras_inputs]
    except (AttributeError, IndexError, TypeError):
        return []


def gets_mask(layer) -> bool:
    """Whether ``layer``, called once in a functional model, gets a mask (from
    ``Embedding(mask_zero=True)`` or ``Masking``). Private tf_keras API (checked against 2.21):
    the mask Keras attaches to the Keras tensor it passes, ``KerasTensor._keras_mask``."""
    try:
        inputs = layer.input
    except (AttributeError, ValueError, RuntimeError):  # not called, or called more than once
        return False
    inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
    return getattr(inputs, "_keras_mask", None) is not None
