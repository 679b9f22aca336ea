"""The one place that selects Keras 2 (``tf_keras``) for tfmot.

tensorflow-model-optimization works only with Keras 2, while TensorFlow 2.21's default
``tf.keras`` is Keras 3. Setting ``TF_USE_LEGACY_KERAS`` before TensorFlow is first imported
makes ``tf.keras`` resolve to ``tf_keras`` too, so models built either way are Keras 2 models.
Nothing else in the package touches that variable.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_keras as keras  # noqa: E402  (must follow the environment set-up)

from tfcompress import errors  # noqa: E402


def is_keras3_model(model) -> bool:
    """True for a model built with Keras 3 (``keras`` >= 3), subclasses included."""
    return not isinstance(model, keras.Model) and any(
        cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)


def ensure_keras2(model) -> keras.Model:
    """Returns ``model`` if it is a ``tf_keras`` model, a Keras 3 model rebuilt as one.

    A Keras 3 Sequential or Functional model is rebuilt by ``tfcompress.keras3.from_keras3``
    (same layers, names and weights, outputs checked); the caller's model is left as it is.

    Raises:
        Keras3ModelError: a Keras 3 model that cannot be translated (a custom layer without a
            Keras 2 twin, a subclassed model); the message names the layer.
        ModelError: ``model`` is not a Keras model at all.
    """
    if isinstance(model, keras.Model):
        return model
    if is_keras3_model(model):
        from absl import logging

        from tfcompress.keras3 import from_keras3  # lazy: keras3 imports this module

        rebuilt = from_keras3(model)
        logging.info("Keras 3 model %r rebuilt as a tf_keras model for tfmot (%d layers)",
                     getattr(model, "name", ""), len(rebuilt.layers))
        return rebuilt
    raise errors.ModelError(
        f"expected a Keras model, got {type(model).__name__}; "
        "accepted: a tf_keras Model or a path to a .keras/.h5 file or SavedModel directory"
    )


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
