"""Keras 3 models <-> tf_keras (Keras 2) models, checked for identical outputs.

tfmot works only with Keras 2 (``tf_keras``), while TensorFlow 2.21's default Keras is Keras 3.
``from_keras3`` rebuilds a Keras 3 Sequential or Functional model as a ``tf_keras`` model: every
layer by class name with its config translated, the functional graph rewired node by node (several
inputs and outputs, shared layers, nested models, ``keras.ops`` nodes such as ``x + 3.0``), the
weights copied, and both models run on the same random input. ``to_keras3`` is the reverse, for
handing a stripped, compressed model back to Keras 3 code.

What we add over a plain ``from_config``: the small set of translation rules below (dtype policies
to dtype names, Keras 3 serialized objects to plain ``class_name``/``config`` dicts, options one
side does not know dropped only while they hold their default, activations whose formulas differ
rebuilt from the same TF ops), and errors that name the layer and its class when no twin exists.
"""

import inspect
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tfcompress import errors
import tfcompress._compat.keras3_ops as _keras3_ops
import tfcompress._compat.functional as _functional
import tfcompress._compat.keras as _keras
import tfcompress._compat.parity as _parity
import tfcompress.safe_loading as safe_loading
from tfcompress._compat.parity import is_k3_model, k3, max_abs_diff  # noqa: F401  (public here)
from tfcompress._compat.keras import keras as tf_keras

_TO2, _TO3 = "tf_keras", "Keras 3"
_BASE_LAYER_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights",
                      "activity_regularizer", "autocast", "implementation", "trainable", "name",
                      "dtype"}
_SUBCLASSED_HINT = (
    "only Sequential and Functional models can be rebuilt; export it as a SavedModel "
    "(`model.export(dir)` in Keras 3) and pass that directory to tfcompress.convert, or rebuild "
    "it with the functional API")


def _lib(target: str):
    return tf_keras if target == _TO2 else k3()


# --- config translation ------------------------------------------------------------------------

def _init_params(cls) -> tuple:
    """(names accepted by ``cls(**config)``, {name: default}) following ``**kwargs`` up the MRO."""
    names, defaults = set(), {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
                if p.default is not p.empty:
                    defaults.setdefault(p.name, p.default)
        if klass.__name__ == "Layer" and klass.__module__.split(".")[0] in ("keras", "tf_keras"):
            return names | _BASE_LAYER_KWARGS, defaults
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names, defaults


def _plain_dtype(value, where: str):
    """A serialized dtype policy (either Keras) -> its name ("float32", "mixed_float16")."""
    if isinstance(value, dict):
        if "Quantized" in value.get("class_name", "") or "Map" in value.get("class_name", ""):
            raise errors.Keras3ModelError(
                f"{where}: dtype policy {value.get('class_name')!r} (quantized weights) has no "
                "equivalent on the other side; accepted: float dtype policies")
        value = value.get("config", {}).get("name", value.get("config"))
    return value


def _translate_object(obj: dict, target: str, where: str) -> dict:
    """A serialized Keras object (initializer, regularizer, constraint, layer, ...) translated."""
    name = obj["class_name"]
    module = obj.get("module") or ""
    registered = obj.get("registered_name")
    if name in ("DTypePolicy", "Policy", "FloatDTypePolicy"):
        return _plain_dtype(obj, where)
    kind = module.split(".")[1] if module.count(".") >= 1 else ""
    src, dst = _lib(_TO3 if target == _TO2 else _TO2), _lib(target)
    src_cls = getattr(getattr(src, kind, None), name, None)
    dst_cls = getattr(getattr(dst, kind, None), name, None)
    if registered not in (None, name) or module.split(".")[0] not in ("keras", "tf_keras") \
            or dst_cls is None:
        raise errors.Keras3ModelError(
            f"{where}: {registered or name!r} (module {module!r}) has no {target} twin; "
            f"accepted: built-in Keras {kind or 'objects'} available in both Keras 3 and tf_keras")
    if isinstance(obj.get("config"), dict):
        config = _translate_config(obj["config"], src_cls, dst_cls, target, where)
    else:
        config = obj.get("config")
    return {"module": f"keras.{kind}" if kind else None, "class_name": name, "config": config,
            "registered_name": None}


def _translate_config(config: dict, src_cls, dst_cls, target: str, where: str) -> dict:
    """Keeps what ``dst_cls`` accepts; drops unknown options only while they hold their default."""
    accepted, _ = _init_params(dst_cls)
    _, src_defaults = _init_params(src_cls) if src_cls is not None else (set(), {})
    out = {}
    for key, value in config.items():
        if key == "dtype":
            value = _plain_dtype(value, where)
        elif isinstance(value, dict) and "class_name" in value:
            value = _translate_object(value, target, f"{where}, option {key!r}")
        if key in _ALWAYS_DROPPED:
            continue
        if key in accepted:
            out[key] = value
        elif value is None or _same(value, src_defaults.get(key, False)) \
                or _same(value, _IMPLIED.get(key)):
            logging.debug("%s: dropped option %s=%r (default; unknown to %s)", where, key, value,
                          target)
        else:
            raise errors.Keras3ModelError(
                f"{where}: option {key}={value!r} has no {target} equivalent; accepted: the "
                f"default {src_defaults.get(key)!r} (or rebuild the layer without it)")
    return out


def _plain(value):
    """TF tracking wrappers (``ListWrapper``, ``_DictWrapper``) -> plain lists and dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _axis_to_int(config: dict, layer, where: str) -> dict:
    """tf_keras keeps BatchNormalization's axis as a list; Keras 3 takes one int."""
    axis = config.get("axis")
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise errors.Keras3ModelError(
                f"{where}: axis={axis!r}; Keras 3 BatchNormalization accepts one axis")
        config["axis"] = int(axis[0])
    return config


def _unfused(config: dict, layer, where: str) -> dict:
    """Keras 3 runs BatchNormalization as ``tf.nn.batch_normalization``; so does tf_keras with
    ``fused=False``, bit for bit (the fused kernel rounds differently, up to 1e-4 in ResNet50)."""
    config["fused"] = False
    return config


def _attention_shapes(config: dict, layer, where: str) -> dict:
    """tf_keras MultiHeadAttention builds its weights from the shapes kept in its config."""
    shapes = (layer.get_build_config() or {}).get("shapes_dict", {})
    config["query_shape"] = shapes.get("query_shape")
    config["value_shape"] = shapes.get("value_shape")
    config["key_shape"] = shapes.get("key_shape") or shapes.get("value_shape")
    return config


_LAYER_RULES = {  # (target, class name) -> config fix-up for fields that differ between the two
    (_TO3, "BatchNormalization"): _axis_to_int,
    (_TO2, "BatchNormalization"): _unfused,
    (_TO2, "MultiHeadAttention"): _attention_shapes,
}
_RENAMES = {  # (target, class name) -> {source option: target option}
    (_TO2, "LeakyReLU"): {"negative_slope": "alpha"},
    (_TO3, "LeakyReLU"): {"alpha": "negative_slope"},
}
# Options that only repeat what the Input already says, or a default the other side implies.
_ALWAYS_DROPPED = {"batch_input_shape", "query_shape", "key_shape", "value_shape"}
_IMPLIED = {"data_format": "channels_last"}


def _same(a, b) -> bool:
    """``a == b``, where a serialized object equals its short name (``"glorot_uniform"``)."""
    if isinstance(a, dict) and isinstance(b, str) and "class_name" in a:
        snake = "".join("_" + c.lower() if c.isupper() else c for c in a["class_name"]).lstrip("_")
        return snake == b and all(v is None for v in (a.get("config") or {}).values())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # JSON has no tuples
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (arrays and odd types: not equal)
        return False


def _hard_sigmoid_k3_in_tf(x):
    return tf.math.truediv(tf.nn.relu6(tf.math.add(x, 3.0)), 6.0)


def _hard_sigmoid_tf_in_k3(x):
    ops = k3().ops
    return ops.clip(ops.add(ops.multiply(x, 0.2), 0.5), 0.0, 1.0)


# Activations whose formulas differ between the two (Keras 3 hard_sigmoid = relu6(x + 3) / 6,
# tf_keras hard_sigmoid = clip(0.2 x + 0.5, 0, 1)) or that one side lacks (hard_silu): the layer
# gets a linear activation and the source formula follows as op nodes, the same TF ops in the
# same order, so outputs stay bit-identical.
_EXPANSIONS = {
    _TO2: {"hard_sigmoid": _hard_sigmoid_k3_in_tf,
           "hard_silu": lambda x: tf.math.multiply(x, _hard_sigmoid_k3_in_tf(x)),
           "hard_swish": lambda x: tf.math.multiply(x, _hard_sigmoid_k3_in_tf(x))},
    _TO3: {"hard_sigmoid": _hard_sigmoid_tf_in_k3},
}


def _check_activation(value, target: str, where: str):
    """Returns the expansion needed for ``value`` (or None); raises if the target lacks it."""
    if not isinstance(value, str):
        return None
    if value in _EXPANSIONS[target]:
        return _EXPANSIONS[target][value]
    try:
        _lib(target).activations.get(value)
    except (ValueError, TypeError, AttributeError) as e:
        raise errors.Keras3ModelError(
            f"{where}: activation {value!r} has no {target} equivalent; accepted: relu, sigmoid, "
            "softmax, tanh, gelu, silu/swish, elu, selu, softplus, mish, hard_sigmoid, ...") from e
    return None


# --- the graph walk -----------------------------------------------------------------------------

class _Rebuilder:
    """Rebuilds a model of one Keras in the other (``target``), sharing layers by identity."""

    def __init__(self, target: str, custom_objects: Optional[dict]):
        self.target, self.dst = target, _lib(target)
        self.custom_objects = dict(custom_objects or {})
        self.memo = {}    # id(source layer or model) -> target layer or model
        self.pairs = []   # (source layer, target layer) whose weights are copied
        self.probes = []  # (name, source tensor, target tensor) of the top model, for diagnosis
        self.depth = 0    # nesting depth of the model being rebuilt

    # Source-side facts, for either Keras.
    def _is_model(self, obj) -> bool:
        return isinstance(obj, (k3().Model if self.target == _TO2 else tf_keras.Model))

    def _is_sequential(self, obj) -> bool:
        return isinstance(obj, (k3().Sequential if self.target == _TO2 else tf_keras.Sequential))

    def _is_functional(self, obj) -> bool:
        Functional = _keras.functional_class(keras3=self.target == _TO2)
        return isinstance(obj, Functional) and not self._is_sequential(obj)

    def _where(self, layer) -> str:
        cls = type(layer)
        return f"layer {layer.name!r} ({cls.__module__}.{cls.__name__})"

    def _name(self, name: str) -> str:
        """Keras 3 names may not hold "/" (tf_keras' MobileNetV3 has "Conv/BatchNorm")."""
        return name.replace("/", "_") if self.target == _TO3 else name

    def _input(self, x):
        """A target ``Input`` twin of source input tensor ``x``."""
        if self.target == _TO2:
            op = _functional.keras_history(x).operation
            return tf_keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=op.name,
                                  sparse=bool(getattr(x, "sparse", False)))
        sparse = isinstance(x.type_spec, tf.SparseTensorSpec)
        return k3().Input(batch_shape=tuple(x.shape.as_list()), dtype=x.dtype.name,
                          name=self._name(_functional.keras_history(x).layer.name), sparse=sparse)

    def model(self, model):
        if id(model) in self.memo:
            return self.memo[id(model)]
        if not (self._is_sequential(model) or self._is_functional(model)):
            cls = type(model)
            raise errors.Keras3ModelError(
                f"model {model.name!r} ({cls.__module__}.{cls.__name__}) is a subclassed model; "
                + _SUBCLASSED_HINT)
        if not model.built or not getattr(model, "inputs", None):
            raise errors.Keras3ModelError(
                f"model {model.name!r} is not built; build it with an Input (or call it once) "
                "so its input shape is known")
        self.depth += 1
        try:
            new = (self._sequential if self._is_sequential(model) else self._functional)(model)
        finally:
            self.depth -= 1
        new.trainable = model.trainable
        self.memo[id(model)] = new
        return new

    def layer(self, layer):
        """(target layer, activation expansion or None) for a source leaf layer."""
        if id(layer) in self.memo:
            return self.memo[id(layer)]
        where = self._where(layer)
        cls = type(layer)
        builtin = _keras.is_builtin_layer_class(cls, keras3=self.target == _TO2)
        dst_cls = self.custom_objects.get(cls.__name__) or (
            getattr(self.dst.layers, cls.__name__, None) if builtin else None)
        if dst_cls is None:
            hint = ("strip compression wrappers first with tfcompress.strip (QAT models go to "
                    "tfcompress.convert, not back to Keras 3)"
                    if cls.__module__.startswith("tensorflow_model_optimization") else
                    f"pass custom_objects={{{cls.__name__!r}: <its {self.target} class>}}, or "
                    "rebuild the layer from built-in layers")
            raise errors.Keras3ModelError(f"{where} has no {self.target} twin; {hint}")
        config = _plain(dict(layer.get_config()))
        for old, new in _RENAMES.get((self.target, cls.__name__), {}).items():
            if old in config:
                config[new] = config.pop(old)
        expansion = None
        if "activation" in config:
            expansion = _check_activation(config["activation"], self.target, where)
            if expansion is not None:
                config["activation"] = "linear"
        if _check_activation(config.get("recurrent_activation"), self.target, where):
            raise errors.Keras3ModelError(
                f"{where}: recurrent_activation={config['recurrent_activation']!r} differs "
                "between Keras 3 and tf_keras; accepted: sigmoid, tanh, relu, ...")
        src_cls = cls if builtin else getattr(_lib(_TO3 if self.target == _TO2 else _TO2).layers,
                                              cls.__name__, cls)
        config = _translate_config(config, src_cls, dst_cls, self.target, where)
        config["name"] = self._name(layer.name)
        rule = _LAYER_RULES.get((self.target, cls.__name__))
        if rule is not None:  # after the translation: a rule may add what from_config alone takes
            config = rule(config, layer, where)
        try:
            new = dst_cls.from_config(config)
        except (ValueError, TypeError, KeyError) as e:
            raise errors.Keras3ModelError(f"{where}: cannot rebuild it in {self.target}: {e}") \
                from e
        self.pairs.append((layer, new))
        self.memo[id(layer)] = (new, expansion)
        return new, expansion

    def _call(self, op, args, kwargs, where: str):
        """Calls the target twin of source node operation ``op``; returns its outputs."""
        # a recorded ``training`` (Keras 3 stores training=True on the call of an augmentation
        # layer such as RandomFlip) would keep it training at inference: the model's call sets it
        kwargs = {k: v for k, v in kwargs.items()
                  if not (k == "mask" and v is None) and k != "training"}
        if self._is_model(op):
            return self.model(op)(*args, **kwargs)
        if self.target == _TO2 and not isinstance(op, k3().layers.Layer):
            return _keras3_ops.k3_op(op, args, kwargs, where)
        if self.target == _TO3 and type(op).__name__ == "TFOpLambda":
            return _keras3_ops.tf_op(op, args, kwargs, where)
        new, expansion = self.layer(op)
        out = new(*args, **kwargs)
        return out if expansion is None else expansion(out)

    def _nodes(self, model):
        """(operation, node) of ``model``'s graph in the order they can run."""
        by_depth = _functional.nodes_by_depth(model)
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                op = node.operation if self.target == _TO2 else node.layer
                if op is not None and not node.is_input:
                    yield op, node

    def _functional(self, model):
        if self.target == _TO2:
            from keras import tree
            flatten, map_structure = tree.flatten, tree.map_structure
            graph = _functional.k3_graph(model)  # a Keras 3 Sequential's graph
            src_in, src_out = _functional.k3_io_structs(graph)
        else:
            flatten, map_structure = tf.nest.flatten, tf.nest.map_structure
            graph, (src_in, src_out) = model, _functional.k2_io_structs(model)
        tensors = {id(x): self._input(x) for x in graph.inputs}
        top = self.depth == 1
        for op, node in self._nodes(graph):
            where = self._where(op)
            if self.target == _TO2:
                args, kwargs = node.arguments.fill_in(tensors)
                outputs = node.outputs
            else:
                args, kwargs = tf.nest.map_structure(
                    lambda t: tensors.get(id(t), t), (node.call_args, node.call_kwargs))
                outputs = tf.nest.flatten(node.outputs)
            new_out = flatten(self._call(op, list(args), kwargs, where))
            for x, y in zip(outputs, new_out):
                tensors[id(x)] = y
                if top:
                    self.probes.append((op.name, x, y))
        inputs = map_structure(lambda x: tensors[id(x)], src_in)
        outputs = map_structure(lambda x: tensors[id(x)], src_out)
        return self.dst.Model(inputs, outputs, name=self._name(model.name))

    def _sequential(self, model):
        if any(self.layer(l)[1] is not None for l in model.layers if not self._is_model(l)):
            return self._functional(model)  # an expanded activation is op nodes: not a chain
        x = model.inputs[0]
        new = self.dst.Sequential([self._input(x)], name=self._name(model.name))
        for layer in model.layers:
            twin = self.model(layer) if self._is_model(layer) else self.layer(layer)[0]
            new.add(twin)
            if self.depth == 1:
                try:
                    self.probes.append((layer.name, layer.output, twin.output))
                except (AttributeError, ValueError):  # a layer called elsewhere too: skip
                    pass
        return new


# --- weights and the output check ---------------------------------------------------------------

def _copy_weights(pairs, target: str) -> None:
    for src, dst in pairs:
        values = src.get_weights()
        want = [tuple(w.shape) for w in dst.weights]
        if [tuple(v.shape) for v in values] != want:
            raise errors.Keras3ModelError(
                f"layer {src.name!r} ({type(src).__name__}): weight shapes "
                f"{[tuple(v.shape) for v in values]} do not fit its {target} twin's {want}")
        dst.set_weights(values)
        if target == _TO3 and hasattr(dst, "finalize_state"):
            dst.finalize_state()  # Keras 3 preprocessing layers (Normalization) derive their state


def _check(src, new, rebuilder: _Rebuilder, sample, atol: float) -> float:
    """Raises unless max |src - new| <= atol * max(1, max |src|) on the sample."""
    arrays = _parity.inputs_for(src, sample)
    diff, scale = _parity.diff_and_scale(src, new, arrays)
    atol = atol * max(1.0, scale)
    if diff <= atol:
        return diff
    worst = ""
    try:  # locate the first node whose outputs differ, for the message
        names, a, b = zip(*rebuilder.probes)
        pa = _lib(_TO3 if rebuilder.target == _TO2 else _TO2).Model(src.inputs, list(a))
        pb = rebuilder.dst.Model(new.inputs, list(b))
        diffs = [_parity.max_diff(p, q) for p, q in zip(
            _parity.run(pa, arrays, _parity.flatten_for(pa)),
            _parity.run(pb, arrays, _parity.flatten_for(pb)))]
        first = next(i for i, d in enumerate(diffs) if d > atol)
        worst = (f"; first differing layer {names[first]!r} (max abs diff {diffs[first]:.3g}), "
                 f"worst {names[int(np.argmax(diffs))]!r} ({max(diffs):.3g})")
    except Exception as e:  # noqa: BLE001  (diagnosis is best effort)
        logging.debug("could not locate the differing layer: %s", e)
    raise errors.ModelError(
        f"model {src.name!r} rebuilt in {rebuilder.target} gives different outputs: max abs diff "
        f"{diff:.3g} > {atol:g}{worst}")


def _reserve_names(model) -> None:
    """Keras 3 names the ``keras.ops`` nodes that translate tf_keras' TFOpLambda layers itself
    (``multiply``, ``multiply_1``...), from a process-wide counter, and refuses a model where a
    name repeats: count every source layer name as taken first, so an auto-named op never takes
    the name of a layer rebuilt under its own (whatever was built before in the process)."""
    def names(m):
        for layer in getattr(m, "layers", ()):
            yield layer.name
            yield from names(layer)

    taken = {}
    for name in names(model):
        base, _, number = name.rpartition("_")
        if base and number.isdigit():
            taken[base] = max(taken.get(base, 0), int(number) + 1)
        else:
            taken[name] = max(taken.get(name, 0), 1)
    for name, count in taken.items():
        while k3().backend.get_uid(name) < count:
            pass


def _rebuild(model, target: str, custom_objects, check: bool, sample, atol: float):
    if target == _TO3:
        _reserve_names(model)
    rebuilder = _Rebuilder(target, custom_objects)
    new = rebuilder.model(model)
    _copy_weights(rebuilder.pairs, target)
    if check:
        diff = _check(model, new, rebuilder, sample, atol)
        logging.info("model %r rebuilt in %s: %d layers, max abs output diff %.3g",
                     model.name, target, len(rebuilder.pairs), diff)
    return new


# --- public API ---------------------------------------------------------------------------------

def from_keras3(model_or_path, *, custom_objects: Optional[dict] = None, check: bool = True,
                sample=None, atol: float = 1e-5) -> tf_keras.Model:
    """Rebuilds a Keras 3 Sequential or Functional model as a tf_keras model tfmot can compress.

    Every layer is recreated from its class name and translated config, the graph is rewired
    (several inputs/outputs, shared layers, nested models, ``keras.ops`` nodes), the weights are
    copied, and both models are run on the same input. A tf_keras model is returned unchanged.

    Args:
        model_or_path: a Keras 3 model, or a ``.keras`` file saved by Keras 3 (loaded by Keras 3
            with safe mode on).
        custom_objects: ``{Keras 3 class name: tf_keras layer class}`` for custom layers that
            have a Keras 2 twin (the twin must take the same config and weights).
        check: compare outputs of both models (random input unless ``sample`` is given).
        sample: an input batch (array, or list of arrays for several inputs) for the check.
        atol: largest accepted absolute difference between the outputs (relative to the largest
            output magnitude where that exceeds 1, so float rounding of large logits passes).

    Returns:
        A tf_keras model (not compiled) with the same layers, names and weights.

    Raises:
        Keras3ModelError: a layer, option or op has no tf_keras twin (the message names it), or
            the model is subclassed.
        ModelError: not a model or loadable file, or the rebuilt outputs differ by more than
            ``atol`` (the message names the first differing layer).
    """
    if isinstance(model_or_path, tf_keras.Model):
        return model_or_path
    if isinstance(model_or_path, (str, bytes)) or hasattr(model_or_path, "__fspath__"):
        model_or_path = _load_keras3(model_or_path)
    if not is_k3_model(model_or_path):
        raise errors.ModelError(
            f"expected a Keras 3 model or .keras file path, got {type(model_or_path).__name__}")
    return _rebuild(model_or_path, _TO2, custom_objects, check, sample, atol)


def to_keras3(model, *, custom_objects: Optional[dict] = None, check: bool = True, sample=None,
              atol: float = 1e-5):
    """The reverse of ``from_keras3``: a (stripped, compressed) tf_keras model as a Keras 3 model.

    Weights are copied as they are (float values, zeros and shared cluster values exactly);
    a Keras 3 model is returned unchanged.

    Args:
        model: a tf_keras Sequential or Functional model without tfmot wrappers
            (``tfcompress.strip`` removes pruning and clustering wrappers).
        custom_objects: ``{tf_keras class name: Keras 3 layer class}`` for custom layers.
        check, sample, atol: as in ``from_keras3``.

    Raises:
        Keras3ModelError: a layer, option or op has no Keras 3 twin (QAT wrappers included).
        ModelError: not a model, or the outputs differ by more than ``atol``.
    """
    if is_k3_model(model):
        return model
    if not isinstance(model, tf_keras.Model):
        raise errors.ModelError(f"expected a tf_keras model, got {type(model).__name__}")
    return _rebuild(model, _TO3, custom_objects, check, sample, atol)


def _load_keras3(path):
    import os

    path = os.fspath(path)
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise errors.ModelError(
            f"Keras 3 model path {path!r} is not a .keras file; accepted: a .keras file saved by "
            "Keras 3 (a SavedModel directory goes straight to tfcompress.convert)")
    safe_loading.check_safe(path)  # the gate every format passes (issue 27)
    try:
        return k3().saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, OSError) as e:
        raise errors.Keras3ModelError(
            f"cannot load {path!r} with Keras 3: {e} (custom layers must be registered with "
            "keras.saving.register_keras_serializable before loading)") from e


def ensure_keras2(model) -> tf_keras.Model:
    """Returns ``model`` if it is a ``tf_keras`` model, a Keras 3 model rebuilt as one.

    A Keras 3 Sequential or Functional model is rebuilt by ``tfcompress.keras3.from_keras3``
    (same layers, names and weights, outputs checked); the caller's model is left as it is.

    Raises:
        Keras3ModelError: a Keras 3 model that cannot be translated (a custom layer without a
            Keras 2 twin, a subclassed model); the message names the layer.
        ModelError: ``model`` is not a Keras model at all.
    """
    if isinstance(model, tf_keras.Model):
        return model
    if _keras.is_keras3_model(model):
        rebuilt = from_keras3(model)
        logging.info("Keras 3 model %r rebuilt as a tf_keras model for tfmot (%d layers)",
                     getattr(model, "name", ""), len(rebuilt.layers))
        return rebuilt
    raise errors.ModelError(
        f"expected a Keras model, got {type(model).__name__}; "
        "accepted: a tf_keras Model or a path to a .keras/.h5 file or SavedModel directory"
    )
