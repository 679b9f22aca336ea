"""Reference models and loading a user's model.

The reference models are tf_keras models (see ``_keras.py``). ``keras.applications`` builders use
``weights=None``: structure only, for size and latency work (no download happens here).
"""

import contextlib
import functools
import os
from typing import Sequence

from tfcompress import _io, _surgery_report, errors
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2, from_keras3

_APPLICATIONS = {
    "mobilenet_v2": lambda **kw: keras.applications.MobileNetV2(**kw),
    "mobilenet_v3_small": lambda **kw: keras.applications.MobileNetV3Small(
        include_preprocessing=False, **kw),
}
MODEL_NAMES = ("digits_cnn", "mini_xception", "digits_conv1d", "digits_unet",
               "se_mobilenet", "text_bow", "text_transformer", "kws_dscnn") + tuple(_APPLICATIONS)


def digits_cnn(
    input_shape: Sequence[int] = (8, 8, 1), num_classes: int = 10, width: float = 1.0
) -> keras.Model:
    """A small CNN for the 8x8 digits (151k parameters at width 1).

    Conv(32) -> Conv(64) -> MaxPool -> Flatten -> Dense(128) -> Dense(classes) logits -> softmax.
    The logits layer is named ``logits`` so distillation can reach it; the output is probabilities.

    Args:
        width: multiplier for every hidden layer's channels/units (a thinner or wider model).
    """
    if width <= 0:
        raise errors.ConfigError(f"width={width!r}; accepted: a number > 0")
    c = lambda n: max(1, int(round(n * width)))  # noqa: E731
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(tuple(input_shape)),
            layers.Conv2D(c(32), 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(c(64), 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(c(128), activation="relu", name="dense"),
            layers.Dense(num_classes, name="logits"),
            layers.Activation("softmax", name="probs"),
        ],
        name="digits_cnn",
    )


def mini_xception(
    input_shape: Sequence[int] = (8, 8, 1), num_classes: int = 10, width: float = 1.0
) -> keras.Model:
    """A small model of the Keras Xception family (66k parameters at width 1).

    Conv+BN+ReLU stem, then two residual blocks of SeparableConv2D+BN (ReLU between) whose
    shortcut is a strided 1x1 Conv2D+BN, added; a last SeparableConv2D+BN+ReLU, global average
    pooling, ``logits`` Dense and softmax.
    """
    if width <= 0:
        raise errors.ConfigError(f"width={width!r}; accepted: a number > 0")
    c = lambda n: max(1, int(round(n * width)))  # noqa: E731
    L = keras.layers
    inputs = keras.Input(tuple(input_shape))
    x = L.Conv2D(c(32), 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    for i, filters in enumerate((c(64), c(128)), start=1):
        shortcut = L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False,
                            name=f"block{i}_skip_conv")(x)
        shortcut = L.BatchNormalization(name=f"block{i}_skip_bn")(shortcut)
        y = L.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{i}_sep1")(x)
        y = L.BatchNormalization(name=f"block{i}_sep1_bn")(y)
        y = L.Activation("relu", name=f"block{i}_sep1_relu")(y)
        y = L.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{i}_sep2")(y)
        y = L.BatchNormalization(name=f"block{i}_sep2_bn")(y)
        y = L.MaxPooling2D(3, strides=2, padding="same", name=f"block{i}_pool")(y)
        x = L.Add(name=f"block{i}_add")([y, shortcut])
    x = L.SeparableConv2D(c(128), 3, padding="same", use_bias=False, name="exit_sep")(x)
    x = L.BatchNormalization(name="exit_bn")(x)
    x = L.Activation("relu", name="exit_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(num_classes, name="logits")(x)
    outputs = L.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mini_xception")


def _widths(width: float):
    if width <= 0:
        raise errors.ConfigError(f"width={width!r}; accepted: a number > 0")
    return lambda n: max(1, int(round(n * width)))


def digits_conv1d(
    input_shape: Sequence[int] = (8, 8), num_classes: int = 10, width: float = 1.0
) -> keras.Model:
    """A Conv1D model over the digits' rows (input (8, 8): rows as time steps, columns as
    features; ``x[..., 0]`` of ``load_digits``). 24k parameters at width 1.

    Conv1D(32)+BN+ReLU -> Conv1D(64)+BN+ReLU -> MaxPooling1D -> Conv1D(64, ReLU) -> global
    average pooling -> Dense(64, ReLU) -> Dropout -> ``logits`` Dense -> softmax.
    """
    c, L = _widths(width), keras.layers
    inputs = keras.Input(tuple(input_shape))
    x = L.Conv1D(c(32), 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv1D(c(64), 3, padding="same", use_bias=False, name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.Conv1D(c(64), 3, padding="same", activation="relu", name="conv3")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    x = L.Dense(c(64), activation="relu", name="dense")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="digits_conv1d")


def digits_unet(
    input_shape: Sequence[int] = (8, 8, 1), num_classes: int = 10, width: float = 1.0
) -> keras.Model:
    """A small U-Net-style classifier: an encoder, a Conv2DTranspose decoder step concatenated
    with the encoder's skip tensor, then a classification head. 26k parameters at width 1.

    2x Conv(16) -> MaxPool -> 2x Conv(32) -> Conv2DTranspose(16, stride 2) ; Concatenate with
    the first block's output -> 2x Conv(16) -> global average pooling -> ``logits`` -> softmax.
    """
    c, L = _widths(width), keras.layers
    inputs = keras.Input(tuple(input_shape))
    e = L.Conv2D(c(16), 3, padding="same", activation="relu", name="enc1a")(inputs)
    e = L.Conv2D(c(16), 3, padding="same", activation="relu", name="enc1b")(e)
    x = L.MaxPooling2D(2, name="down")(e)
    x = L.Conv2D(c(32), 3, padding="same", activation="relu", name="mid_a")(x)
    x = L.Conv2D(c(32), 3, padding="same", activation="relu", name="mid_b")(x)
    x = L.Conv2DTranspose(c(16), 2, strides=2, padding="same", activation="relu", name="up")(x)
    x = L.Concatenate(name="concat")([x, e])
    x = L.Conv2D(c(16), 3, padding="same", activation="relu", name="dec_a")(x)
    x = L.Conv2D(c(16), 3, padding="same", activation="relu", name="dec_b")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="digits_unet")


def _hard_sigmoid(x):
    return keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _hard_swish(x):
    return keras.layers.Multiply()([x, _hard_sigmoid(x)])


def se_mobilenet(
    input_shape: Sequence[int] = (8, 8, 1), num_classes: int = 10, width: float = 1.0
) -> keras.Model:
    """A MobileNetV3Small-style model: hard-swish, inverted residual blocks with squeeze-excite
    written the older Keras way (GlobalAveragePooling2D -> Dense -> ReLU -> Dense -> hard sigmoid
    -> Reshape(1, 1, C) -> Multiply), residual Adds, global pooling and a ``logits`` Dense (19k
    parameters at width 1).
    """
    c, L = _widths(width), keras.layers
    inputs = keras.Input(tuple(input_shape))
    x = L.Conv2D(c(16), 3, padding="same", use_bias=False, name="stem")(inputs)
    x = _hard_swish(L.BatchNormalization(name="stem_bn")(x))
    for i, (expand, out, stride) in enumerate(((32, 16, 1), (64, 24, 2), (72, 24, 1)), 1):
        y = L.Conv2D(c(expand), 1, use_bias=False, name=f"b{i}_expand")(x)
        y = _hard_swish(L.BatchNormalization(name=f"b{i}_expand_bn")(y))
        y = L.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"b{i}_dw")(y)
        y = _hard_swish(L.BatchNormalization(name=f"b{i}_dw_bn")(y))
        s = L.GlobalAveragePooling2D(name=f"b{i}_se_pool")(y)
        s = L.Dense(max(1, c(expand) // 4), activation="relu", name=f"b{i}_se_reduce")(s)
        s = _hard_sigmoid(L.Dense(c(expand), name=f"b{i}_se_expand")(s))
        s = L.Reshape((1, 1, c(expand)), name=f"b{i}_se_reshape")(s)
        y = L.Multiply(name=f"b{i}_se_mul")([y, s])
        y = L.Conv2D(c(out), 1, use_bias=False, name=f"b{i}_project")(y)
        y = L.BatchNormalization(name=f"b{i}_project_bn")(y)
        x = L.Add(name=f"b{i}_add")([x, y]) if stride == 1 and x.shape[-1] == y.shape[-1] else y
    x = _hard_swish(L.Conv2D(c(96), 1, name="head")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="se_mobilenet")


TEXT_VOCABULARY = 2000  # the bundled text data's vocabulary (data.load_text)


def text_bow(
    input_shape: Sequence[int] = (64,), num_classes: int = 6, width: float = 1.0,
    vocabulary: int = TEXT_VOCABULARY
) -> keras.Model:
    """An average-embedding text classifier on int32 token ids (32k parameters at width 1).

    Embedding(``vocabulary``, 16) -> GlobalAveragePooling1D -> Dense(16, ReLU) -> ``logits``
    -> softmax. Id 0 pads (averaged in like any id); ids must be below ``vocabulary``.
    """
    c, L = _widths(width), keras.layers
    inputs = keras.Input(tuple(input_shape), dtype="int32", name="token_ids")
    x = L.Embedding(vocabulary, c(16), name="embedding")(inputs)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    x = L.Dense(c(16), activation="relu", name="dense")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="text_bow")


def text_transformer(
    input_shape: Sequence[int] = (64,), num_classes: int = 6, width: float = 1.0,
    vocabulary: int = TEXT_VOCABULARY
) -> keras.Model:
    """A one-block Transformer encoder on int32 token ids (73k parameters at width 1).

    Embedding(``vocabulary``, 32) -> MultiHeadAttention(2 heads of 16) + residual ->
    LayerNormalization -> Dense(64, ReLU) -> Dense(32) + residual -> LayerNormalization ->
    GlobalAveragePooling1D -> ``logits`` -> softmax. It has no position embedding (a topic
    needs no word order), so it is built from standard layers only and loads in safe mode.
    """
    c, L = _widths(width), keras.layers
    dim = c(32)
    inputs = keras.Input(tuple(input_shape), dtype="int32", name="token_ids")
    x = L.Embedding(vocabulary, dim, name="embedding")(inputs)
    a = L.MultiHeadAttention(2, max(1, dim // 2), name="attention")(x, x)
    x = L.LayerNormalization(name="norm1")(L.Add(name="add1")([x, a]))
    f = L.Dense(c(64), activation="relu", name="ffn1")(x)
    f = L.Dense(dim, name="ffn2")(f)
    x = L.LayerNormalization(name="norm2")(L.Add(name="add2")([x, f]))
    x = L.GlobalAveragePooling1D(name="gap")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="text_transformer")


def kws_dscnn(
    input_shape: Sequence[int] = (49, 10, 1), num_classes: int = 12, width: float = 1.0
) -> keras.Model:
    """A keyword-spotting DS-CNN ("Hello Edge", small) on MFCCs (24k parameters at width 1).

    Conv2D(64, 10x4, stride 2)+BN+ReLU, then four blocks of DepthwiseConv2D(3x3)+BN+ReLU ->
    Conv2D(64, 1x1)+BN+ReLU, global average pooling, Dropout, ``logits`` Dense -> softmax.
    """
    c, L = _widths(width), keras.layers
    inputs = keras.Input(tuple(input_shape))
    x = L.Conv2D(c(64), (10, 4), strides=2, padding="same", use_bias=False, name="conv0")(inputs)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="relu0")(x)
    for i in range(1, 5):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = L.BatchNormalization(name=f"dw{i}_bn")(x)
        x = L.ReLU(name=f"dw{i}_relu")(x)
        x = L.Conv2D(c(64), 1, use_bias=False, name=f"pw{i}")(x)
        x = L.BatchNormalization(name=f"pw{i}_bn")(x)
        x = L.ReLU(name=f"pw{i}_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="kws_dscnn")


def build(name: str, input_shape: Sequence[int], num_classes: int, width: float = 1.0):
    """A reference model by name (see ``MODEL_NAMES``), untrained.

    ``width`` is the digits CNN's width multiplier or the applications' ``alpha``.
    """
    if name == "digits_cnn":
        return digits_cnn(input_shape, num_classes, width)
    if name == "mini_xception":
        return mini_xception(input_shape, num_classes, width)
    builders = {"digits_conv1d": digits_conv1d, "digits_unet": digits_unet,
                "se_mobilenet": se_mobilenet, "text_bow": text_bow,
                "text_transformer": text_transformer, "kws_dscnn": kws_dscnn}
    if name in builders:
        return builders[name](input_shape, num_classes, width)
    if name not in _APPLICATIONS:
        raise errors.ConfigError(errors.unknown("model", name, MODEL_NAMES))
    model = _APPLICATIONS[name](
        input_shape=tuple(input_shape), classes=num_classes, alpha=width, weights=None)
    # The applications' BatchNormalization momentum (0.999) suits ImageNet-length training;
    # trained from scratch on a small dataset its moving statistics lag the weights (MobileNetV2
    # on the digits at 32x32: 0.94 training accuracy, chance at inference). Keras' 0.99 keeps up.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99
    return model


def custom_objects_scope():
    """A scope holding tfmot's custom objects, so compressed models load back."""
    import tensorflow_model_optimization as tfmot

    stack = contextlib.ExitStack()
    stack.enter_context(tfmot.quantization.keras.quantize_scope())
    stack.enter_context(tfmot.sparsity.keras.prune_scope())
    stack.enter_context(tfmot.clustering.keras.cluster_scope())
    return stack


def load_model(path: str, *, compile: bool = False, safe_mode: bool = True) -> keras.Model:
    """Loads a user's ``.keras`` / ``.h5`` file or SavedModel directory, with safe mode on.

    Safe mode runs no code from the file, whatever its format (``check_safe``, one gate for
    all): a ``Lambda`` layer of any function type, a class that is neither Keras', tfmot's nor
    registered in this process (``keras.utils.register_keras_serializable``), a module path
    outside Keras and tfmot, and, in a SavedModel's graph, ops that touch files, processes or
    the network are refused before anything is deserialized or any graph op runs. For
    ``.keras`` the zip's ``config.json`` is read (size-capped), for ``.h5`` the model config in
    the file's attributes, for a SavedModel its Keras metadata (``keras_metadata.pb``) and its
    graph (``saved_model.pb``, parsed as a proto); a SavedModel without Keras metadata is not
    loaded as a Keras model (``tfcompress.convert(path)`` converts it from its graph, checked
    the same way). A ``.keras`` file saved by Keras 3 is loaded by Keras 3 and rebuilt as a
    tf_keras model.

    Args:
        path: the file or SavedModel directory.
        compile: also restore the training configuration.
        safe_mode: False loads files you trust that hold Lambda layers or unregistered
            classes (the recipe field ``model.unsafe=True``).

    A model saved after surgery gets its ``surgery_report`` back (see ``surgery.report_of``).

    Raises:
        ModelError: the path does not exist, is not one of the accepted kinds, cannot be read,
            or (safe mode) holds a Lambda layer, an unknown class or module, or a graph op
            that touches files, processes or the network, named with where it sits.
        Keras3ModelError: a ``.keras`` file written by Keras 3 (rebuilt as a tf_keras model
            by ``tfcompress.from_keras3``) holds a layer that cannot be translated.
    """
    path = os.fspath(path)
    is_savedmodel = os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))
    if not (is_savedmodel or os.path.isfile(path)):
        raise errors.ModelError(
            f"model path {path!r} does not exist; accepted: a .keras or .h5 file or a "
            "SavedModel directory")
    if not is_savedmodel and not path.endswith((".keras", ".h5", ".hdf5")):
        raise errors.ModelError(
            f"model file {path!r} has an unknown extension; accepted: .keras, .h5, "
            "or a SavedModel directory")
    with custom_objects_scope():
        if safe_mode:  # before anything is deserialized or any graph op runs
            check_safe(path)
        if path.endswith(".keras") and _saved_by_keras3(path):
            return from_keras3(path)
        try:
            if is_savedmodel:
                model = keras.models.load_model(path, compile=compile)
            else:
                model = keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
        except (ValueError, TypeError, OSError, KeyError, AttributeError) as e:
            raise errors.ModelError(
                f"cannot load model {path!r}: {' '.join(str(e).split())}") from e
    model = ensure_keras2(model)
    report = _surgery_report.report_of(path)
    return _surgery_report.attach(model, report) if report is not None else model


# Classes that deserialize from their config alone, named by the config but not in the
# keras.* namespaces: the functional model, and the layers the functional API makes for TF ops
# (their config names a TF API function by its path, not code).
_BUILTIN_CLASSES = {"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda",
                    "Policy", "DTypePolicy", "InputLayer", "function",
                    # value markers of Keras' JSON (tuples, shapes, specs): data, not classes
                    "TensorShape", "TypeSpec", "CompositeTensor", "__tuple__", "__ellipsis__",
                    "__bytes__", "__tensor__", "__numpy__", "__typespec__"}
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
        configs, keras3 = [_keras_zip_config(path)], _saved_by_keras3(path)
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
    if cls == "TFOpLambda" and isinstance(config, dict):
        fn = config.get("function")
        if not _safe_tf_function(fn):
            return (f"a TF op layer {layer!r} calling tf.{fn} (outside the math, NN and array "
                    "ops a model computes with)")
    registered = _registered(node.get("registered_name")) or _registered(cls)
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


def _registered(name) -> bool:
    return isinstance(name, str) and keras.utils.get_registered_object(name) is not None


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
    from tfcompress._compat import savedmodel

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
            "accepted: a .keras file written by model.save") from e
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


def _saved_by_keras3(path: str) -> bool:
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


def save_model(model: keras.Model, path: str) -> str:
    """Saves ``model`` atomically (temporary name, then rename); format from the extension."""
    with _io.atomic_path(path) as tmp:
        model.save(tmp)
    return path
