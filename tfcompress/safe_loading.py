"""The loading gate: a model file is checked before anything of it is deserialized or run.

One gate for every format ``models.load_model`` (and ``tfcompress.convert(path)``, and
``tfcompress.from_keras3(path)``) accepts: a ``.keras`` zip's ``config.json`` (size-capped), an
``.h5`` file's ``model_config`` attribute, a SavedModel's ``keras_metadata.pb`` and its graph
(``saved_model.pb`` parsed as a proto; see ``_compat.savedmodel``). Refused in safe mode: Lambda
layers of any function type, classes that neither Keras, tfmot nor this process's
registrations know, module paths outside Keras and tfmot, TF op layers that call file or Python
functions, and graph ops that touch files, processes or the network. Each refusal names what
it found and where it sits, in one line.
"""

import functools
import os

from tfcompress import errors
from tfcompress._compat import savedmodel
from tfcompress._compat.keras import keras


# Classes that deserialize from their config alone, named by the config but not in the
# keras.* namespaces: the functional model, and the layers the functional API makes for TF ops
# (their config names a TF API function by its path, not code).
_BUILTIN_CLASSES = {"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda",
                    "Policy", "DTypePolicy", "InputLayer", "function",
                    # value markers of Keras' JSON (tuples, shapes, specs): data, not classes
                    "TensorShape", "TypeSpec", "CompositeTensor", "__tuple__", "__ellipsis__",
                    "__bytes__", "__tensor__", "__numpy__", "__typespec__", "__slice__",
                    "__keras_tensor__"}
# Layers whose config carries code (Python bytecode or a function named by module), pickles or
# another model whose graph would run (Keras 3's TFSMLayer loads a SavedModel).
_CODE_CLASSES = ("Lambda", "__lambda__", "TFSMLayer", "TorchModuleWrapper", "JaxLayer",
                 "FlaxLayer")
# Modules a config may name: Keras', tf_keras' and tfmot's own (a registered class may name its
# user module: it resolves from the registry, nothing is imported).
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization")
# Functions a config may name by module (activations, losses, metrics, initializers...).
_FUNCTION_MODULES = tuple(f"{k}.{m}" for k in ("keras", "tf_keras") for m in (
    "activations", "losses", "metrics", "initializers", "regularizers", "constraints",
    "src.activations", "src.losses", "src.metrics", "src.initializers", "src.regularizers",
    "src.constraints", "src.ops", "ops")) + ("tensorflow_model_optimization",)
# TF API paths a TFOpLambda layer (the functional API's record of a TF op) may call: math, not
# files (tf.io), Python (tf.py_function) or printing. Compared after a ``compat.v1.`` prefix.
_TF_OP_NAMESPACES = ("math", "nn", "linalg", "signal", "image", "bitwise", "random", "sparse",
                     "ragged", "strings", "__operators__", "dtypes", "experimental.numpy")
_TF_OP_DENIED = {"print", "py_function", "numpy_function", "load_library", "load_op_library",
                 "function", "init_scope", "Variable", "Module", "py_func", "import_graph_def",
                 "ensure_shape_from_file", "make_template", "while_loop", "cond", "switch_case",
                 "case", "map_fn", "scan", "foldl", "foldr", "vectorized_map", "custom_gradient",
                 "recompute_grad", "numpy"}
_MAX_CONFIG_BYTES = 16 * 2**20  # a .keras config.json (a big model's is a few MB)
_MAX_METADATA_BYTES = 2**20
_SAFE_HINT = ("refused in safe mode; accepted: layers of Keras, tfmot or classes registered "
              "with keras.utils.register_keras_serializable; load a file you trust with "
              "load_model(path, safe_mode=False) (recipe: model.unsafe=True)")


def check_safe(path: str) -> None:
    """Refuses a model file whose configuration or graph holds code that would run on loading.

    Reads only the configuration (``config.json`` inside a ``.keras`` zip, size-capped; the
    ``model_config`` attribute of an ``.h5`` file; the ``keras_metadata.pb`` of a SavedModel)
    and, for a SavedModel, its graph as a proto (see ``check_graph``); nothing is deserialized
    and no graph op runs. Refused: Lambda layers of any function type (bytecode or a function
    named by module), classes neither Keras, tfmot nor this process's registrations know,
    module paths outside Keras and tfmot, TF op layers that call file or Python functions.

    Raises:
        ModelError: naming the class, module, function or op and the layer (or graph node)
            where it sits; or a SavedModel without Keras metadata; or a config that cannot be
            read (not JSON, nested too deep, too large, not text).
    """
    keras3 = False
    if os.path.isdir(path):
        check_graph(path)
        configs = _savedmodel_configs(path)
    elif path.endswith(".keras"):
        configs, keras3 = [_keras_zip_config(path)], saved_by_keras3(path)
    else:
        configs = _h5_config(path)
    for layer, node in _objects(configs):
        problem = _problem(node, keras3, layer)
        if problem:
            raise errors.ModelError(f"model {path!r} holds {problem}; {_SAFE_HINT}")


def _problem(node: dict, keras3: bool, layer: str) -> str:
    """What is unsafe in one ``{"class_name": ...}`` / ``{"module": ...}`` config object."""
    cls, config = node.get("class_name"), node.get("config")
    modules = [(k, v) for k, v in node.items() if k == "module" or k.endswith("_module")]
    if cls in _CODE_CLASSES:
        return f"a {cls} layer {layer!r} (code that would run on loading)"
    if cls in ("TFOpLambda", "SlicingOpLambda") and isinstance(config, dict):
        fn = config.get("function")
        if not _safe_tf_function(fn):
            return (f"a TF op layer {layer!r} calling tf.{fn} (outside the math, NN and array "
                    "ops a model computes with)")
    registered = any(_registered(name, keras3) for name in (node.get("registered_name"), cls))
    if cls == "function":
        module = node.get("module")
        if not registered and not (isinstance(module, str) and module.startswith(_FUNCTION_MODULES)):
            return (f"a function {config!r} of module {module!r} (layer {layer!r}; code that "
                    "would run on loading)")
    elif isinstance(cls, str) and not (registered or _known_class(cls) or (
            keras3 and str(node.get("module", "")).split(".")[0] == "keras")):
        return f"an unknown class {cls!r} (layer {layer!r})"
    for key, module in modules:
        if module is None or (registered and key == "module"):
            continue
        if not (isinstance(module, str) and module.split(".")[0] in _KERAS_MODULES):
            return (f"a {key} path {module!r} (layer {layer!r}; code outside Keras and tfmot "
                    "would be imported)")
    return ""


def _registered(name, keras3: bool = False) -> bool:
    """Whether this process registered ``name`` (with tf_keras, or with Keras 3 for a file
    Keras 3 wrote): it resolves from the registry, nothing is imported."""
    if not isinstance(name, str):
        return False
    if keras.utils.get_registered_object(name) is not None:
        return True
    if keras3:
        import keras as keras3_module  # Keras 3 (tf_keras is ``keras`` here)

        return keras3_module.saving.get_registered_object(name) is not None
    return False


def _safe_tf_function(fn) -> bool:
    """Whether a TFOpLambda's ``function`` path names a TF op of the allowed namespaces."""
    if not isinstance(fn, str):
        return False
    fn = fn.removeprefix("compat.v1.").removeprefix("compat.v2.")
    if "." not in fn:
        return fn not in _TF_OP_DENIED and fn.isidentifier()
    return fn.startswith(tuple(ns + "." for ns in _TF_OP_NAMESPACES)) and "py_func" not in fn


def check_graph(path: str) -> None:
    """Refuses a SavedModel whose graph holds ops that touch files, processes or the network.

    ``saved_model.pb`` is parsed as a proto; every node of the graph (TF1 ``main_op`` and
    initializers included) and of its function library (TF2 resource initializers, restore
    functions, signatures) is checked before anything of it is loaded or run: file, Python,
    network, data-pipeline and summary ops (``_compat.savedmodel`` lists them), checkpoint ops
    outside the saver, and ops this TensorFlow does not know (a custom op library).
    ``tfcompress.convert(path)`` runs this first.

    Raises:
        ModelError: naming the op, its node and the function (or the graph) holding it.
    """
    try:
        proto = savedmodel.read(path)
    except (ValueError, OSError) as e:
        raise errors.ModelError(
            f"cannot read SavedModel {path!r}: {' '.join(str(e).split())}; accepted: a "
            "directory written by tf.saved_model.save or model.save") from e
    functions = savedmodel.library_names(proto)
    for op in savedmodel.graph_ops(proto):
        kind = savedmodel.denied_kind(op.op)
        if kind and not (op.in_saver and op.op in savedmodel.CHECKPOINT_OPS):
            why = f"an op that touches {kind}"
        elif not kind and op.op not in functions and not savedmodel.registered(op.op):
            why = "an op this TensorFlow does not know (a custom op library)"
        else:
            continue
        raise errors.ModelError(
            f"SavedModel {path!r} holds op {op.op} (node {op.node!r} in {op.where}), {why}, "
            "which would run on loading or conversion; refused in safe mode; accepted: graphs "
            "of math, array and NN ops; load one you trust with "
            "tfcompress.models.load_model(path, safe_mode=False)")


def _keras_zip_config(path: str):
    """``config.json`` of a ``.keras`` zip, read up to ``_MAX_CONFIG_BYTES`` decompressed."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            size = z.getinfo("config.json").file_size  # the header's word, checked on reading
            text = b"" if size > _MAX_CONFIG_BYTES else z.open("config.json").read(
                _MAX_CONFIG_BYTES + 1)
    except KeyError as e:
        raise errors.ModelError(
            f"{path!r} holds no config.json; accepted: a .keras file written by model.save"
        ) from e
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise errors.ModelError(
            f"cannot load model {path!r}: not a .keras zip ({' '.join(str(e).split())}); "
            "accepted: a .keras file written by model.save (a damaged one in a workdir: delete "
            "it, the next run remakes it)") from e
    if size > _MAX_CONFIG_BYTES or len(text) > _MAX_CONFIG_BYTES:
        raise errors.ModelError(
            f"{path!r}: config.json decompresses to more than {_MAX_CONFIG_BYTES // 2**20} MB "
            "(refused unread); accepted: a model config of a .keras file written by model.save")
    return _json(text, f"{path}:config.json")


def _h5_config(path: str) -> list:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            text = f.attrs.get("model_config")
    except OSError as e:
        raise errors.ModelError(
            f"cannot read {path!r} as an HDF5 model file ({' '.join(str(e).split())}); "
            "accepted: a .h5 file written by Keras' model.save") from e
    if text is None:
        raise errors.ModelError(
            f"{path!r} holds no model config (weights only?); accepted: a .h5 file written by "
            "Keras' model.save")
    return [_json(text, path)]


def _savedmodel_configs(path: str) -> list:
    meta = os.path.join(path, "keras_metadata.pb")
    if not os.path.exists(meta):
        raise errors.ModelError(
            f"SavedModel {path!r} has no Keras metadata (keras_metadata.pb), so it is not "
            "loaded as a Keras model in safe mode; accepted: tfcompress.convert(path) converts "
            "it from its graph (checked first: no file, Python or network op runs), or "
            "load_model(path, safe_mode=False)")
    from tf_keras.protobuf import saved_metadata_pb2

    proto = saved_metadata_pb2.SavedMetadata()
    with open(meta, "rb") as f:
        try:
            proto.ParseFromString(f.read())
        except Exception as e:  # noqa: BLE001  (protobuf's DecodeError has no common base)
            raise errors.ModelError(f"cannot read {meta!r}: {e}") from e
    return [_json(node.metadata, meta) for node in proto.nodes]


def _json(text, where: str):
    """A config parsed from JSON text; anything else (numbers, opaque bytes) is refused."""
    import json

    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError:
            text = None
    if not isinstance(text, str):
        raise errors.ModelError(
            f"{where!r} holds a model config that is not JSON text (a {type(text).__name__}); "
            "accepted: a file written by Keras' model.save")
    try:
        return json.loads(text)
    except RecursionError:
        raise errors.ModelError(
            f"{where!r} holds a model config nested too deeply to read; accepted: a file "
            "written by Keras' model.save") from None
    except ValueError as e:
        raise errors.ModelError(
            f"{where!r} holds a model config that is not JSON: {' '.join(str(e).split())}"
        ) from e


def _objects(root):
    """(layer name, object) of every config object that names a class or a module, walked
    without recursion (a config may be nested deeper than Python's stack)."""
    todo = [(root, "?")]
    while todo:
        node, layer = todo.pop()
        if isinstance(node, dict):
            config = node.get("config")
            if isinstance(config, dict) and isinstance(config.get("name"), str):
                layer = config["name"]
            elif isinstance(node.get("name"), str):
                layer = node["name"]
            if "class_name" in node or any(k == "module" or k.endswith("_module") for k in node):
                yield layer, node
            todo.extend((v, layer) for v in node.values())
        elif isinstance(node, (list, tuple)):
            todo.extend((v, layer) for v in node)


def _known_class(name: str) -> bool:
    """Whether Keras, tfmot (the scope is entered) or a registration resolves ``name``."""
    if name in _BUILTIN_CLASSES:
        return True
    for module in (keras.layers, keras.initializers, keras.regularizers, keras.constraints,
                   keras.models, keras.activations, keras.losses, keras.metrics,
                   keras.optimizers, keras.mixed_precision, keras.optimizers.schedules):
        if isinstance(getattr(module, name, None), type):
            return True
    return name in _tfmot_classes() or keras.utils.get_registered_object(name) is not None


@functools.lru_cache(maxsize=1)
def _tfmot_classes() -> frozenset:
    """Names of the classes tfmot defines (wrappers, schedules, quantize configs: its
    ``from_config`` resolves them by name from its own modules)."""
    import sys

    import tensorflow_model_optimization  # noqa: F401  (imports its Keras modules)

    return frozenset(
        name for mod_name, module in list(sys.modules.items())
        if mod_name.startswith("tensorflow_model_optimization") and module is not None
        for name, value in vars(module).items()
        if isinstance(value, type) and value.__module__.startswith("tensorflow_model_optimization"))


def saved_by_keras3(path: str) -> bool:
    """Whether a ``.keras`` file's metadata says Keras 3 wrote it."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z, z.open("metadata.json") as f:
            text = f.read(_MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError):
        return False
    if len(text) > _MAX_METADATA_BYTES:  # Keras would read it whole
        raise errors.ModelError(
            f"{path!r}: metadata.json decompresses to more than {_MAX_METADATA_BYTES // 1024} KB "
            "(refused unread); accepted: a .keras file written by model.save")
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(metadata, dict) and str(metadata.get("keras_version", "")).startswith("3.")
