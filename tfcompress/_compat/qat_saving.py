"""Loading a tfmot quantize-aware model back from a ``.keras`` file (tfmot 0.8.1, tf_keras 2.21).

tf_keras' ``.keras`` format restores each layer's variables by position: ``save_own_variables``
writes ``layer._trainable_weights + layer._non_trainable_weights`` as ``0, 1, 2, ...`` (no
names) and ``load_own_variables`` refuses a layer whose rebuilt list has another length. Two
tfmot 0.8.1 defects make a QAT model's lists differ between the saved model and the loaded one
(tfmot PR #1123 proposes a fix, unmerged):

- ``QuantizeLayer.build`` never sets ``built``, so on loading it is built twice, once by
  ``build_from_config`` and again when the functional graph calls it: 5 variables for 3 saved;
- ``QuantizeWrapperV2.build`` first copies the wrapped layer's trainable weights into its own
  list, then builds that layer: a wrapper made from a trained (built) layer, as ``quantize_apply``
  makes it, saves them (``kernel, bias, kernel, ...``: the kernel twice, since tfmot also adds
  every quantized weight), one rebuilt from its config saves none.

``loadable()`` is the scope (thread-local, as Keras' custom object scopes) that fixes both
while a model is deserialized and its variables are read: each QuantizeLayer / QuantizeWrapper
class is replaced, by name, with a subclass that is built only when the graph calls it (under
its name scope, so its variables keep their names) and that reads a store with or without that
copied prefix (``load_positional``).
``restore_classes(model)`` then turns those layers back into tfmot's (or the registered) classes,
so the loaded model is the model that was saved. Checked against tfmot 0.8.1 and tf_keras 2.21:
``Layer.build_from_config``, ``Layer.load_own_variables``, ``Layer._trainable_weights`` and
``Layer._non_trainable_weights`` (the lists tf_keras' ``.keras`` format reads and writes).
"""

import contextlib

import tensorflow_model_optimization as tfmot

from tfcompress._compat.keras import keras

_q = tfmot.quantization.keras


def _quantize_layer_class() -> type:
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    return quantize_layer.QuantizeLayer


def load_positional(layer, store) -> None:
    """Assigns a positional variable store to ``layer``'s own variables, aligned at the end.

    The store and the layer's list may differ only by a leading copy of the wrapped layer's
    weights (values also saved in the wrapped layer's own entry and, for a quantized weight,
    in the wrapper's list after it): those extra entries are skipped, once their shapes are
    found among the wrapped layer's weights.

    Raises:
        ValueError: the lists differ otherwise, or a shape differs where they are aligned (a
            quantizer whose variables its config does not rebuild, as tfmot's CQAT and PCQAT
            quantizers), in one line naming the layer, its classes and what is accepted.
    """
    own = list(layer._trainable_weights) + list(layer._non_trainable_weights)
    saved = [store[str(i)] for i in range(len(store.keys()))]
    n = min(len(own), len(saved))
    longer = own if len(own) > len(saved) else saved
    wrapped = getattr(layer, "layer", None)
    shapes = [tuple(v.shape) for v in list(layer._trainable_weights)
              + list(getattr(wrapped, "weights", []))]
    pairs = list(zip(own[len(own) - n:], saved[len(saved) - n:]))
    mismatch = any(tuple(v.shape) != tuple(value.shape) for v, value in pairs)
    for entry in longer[:len(longer) - n]:  # the copy: each shape one of the wrapped layer's
        mismatch = mismatch or tuple(entry.shape) not in shapes
        if not mismatch:
            shapes.remove(tuple(entry.shape))
    if mismatch:
        config = getattr(layer, "quantize_config", None)
        kind = type(layer).__name__ + (f" of {type(config).__name__}" if config else "")
        raise ValueError(
            f"layer {layer.name!r} ({kind}) saved {len(saved)} variables of shapes "
            f"{[tuple(v.shape) for v in saved]}, its config rebuilds {len(own)} of shapes "
            f"{[tuple(v.shape) for v in own]} (quantizer state its config does not save, as "
            "tfmot's cluster-preserving QAT's); accepted: quantize-aware models whose "
            "QuantizeConfigs and quantizers rebuild every variable from their config (tfmot's "
            "8-bit QAT and PQAT, tfcompress's configs); convert a CQAT or PCQAT model before "
            "saving it")
    for variable, value in pairs:
        variable.assign(value)


class _Loadable:
    """Built when the functional graph calls it; reads a store with or without the prefix."""

    def build_from_config(self, config) -> None:
        pass  # built by the functional graph's call, as when the model was made

    def load_own_variables(self, store) -> None:
        load_positional(self, store)


def _stand_ins(custom_objects: dict) -> dict:
    """{name: subclass} for every QuantizeLayer / QuantizeWrapper class named in
    ``custom_objects`` (tfmot's, ours, a user's registered subclass)."""
    bases = (_quantize_layer_class(), _q.QuantizeWrapper)
    return {name: type(cls.__name__, (_Loadable, cls), {"_tfcompress_base": cls})
            for name, cls in custom_objects.items()
            if isinstance(cls, type) and issubclass(cls, bases)}


@contextlib.contextmanager
def loadable():
    """The scope in which a QAT model's ``.keras`` file loads (enter it inside tfmot's
    ``quantize_scope``); call ``restore_classes`` on the loaded model afterwards."""
    names = dict(keras.utils.get_custom_objects())  # registered: ours, a user's
    names.update({c.__name__: c for c in (_quantize_layer_class(), _q.QuantizeWrapper,
                                          _q.QuantizeWrapperV2)})  # tfmot's (no subclasses)
    with keras.utils.custom_object_scope(_stand_ins(names)):
        yield


def restore_classes(model) -> None:
    """Turns the stand-in layers ``loadable`` made back into their own classes."""
    for layer in [model, *model.submodules]:
        base = vars(type(layer)).get("_tfcompress_base")
        if base is not None:
            layer.__class__ = base
