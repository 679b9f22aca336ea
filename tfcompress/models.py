"""Reference models and loading a user's model.

The reference models are tf_keras models (see ``_keras.py``). ``keras.applications`` builders use
``weights=None``: structure only, for size and latency work (no download happens here).
"""

import contextlib
import os
from typing import Sequence

from tfcompress import _io, _surgery_report, errors
from tfcompress._compat import qat_saving
from tfcompress._compat.keras import keras
from tfcompress.keras3 import ensure_keras2, from_keras3
from tfcompress.safe_loading import check_graph, check_safe, saved_by_keras3  # noqa: F401

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
    vocabulary: int = TEXT_VOCABULARY, attention_dropout: float = 0.2
) -> keras.Model:
    """A one-block Transformer encoder on int32 token ids (73k parameters at width 1).

    Embedding(``vocabulary``, 32) -> MultiHeadAttention(2 heads of 16) + residual ->
    LayerNormalization -> Dense(64, ReLU) -> Dense(32) + residual -> LayerNormalization ->
    GlobalAveragePooling1D -> ``logits`` -> softmax. It has no position embedding (a topic
    needs no word order), so it is built from standard layers only and loads in safe mode.

    ``attention_dropout`` (the attention layer's own ``dropout``, on its attention
    probabilities; nothing at inference) makes it quantize well: trained by the text recipe
    without it, its full-integer int8 agreed with Keras on 0.985 / 0.991 / 0.992 (min /
    median / max over seeds 0-2) of the 650 test texts; with 0.2 on 0.992 / 0.992 / 0.994,
    at the same accuracy (``benchmarks/text_int8.py``).
    """
    c, L = _widths(width), keras.layers
    dim = c(32)
    inputs = keras.Input(tuple(input_shape), dtype="int32", name="token_ids")
    x = L.Embedding(vocabulary, dim, name="embedding")(inputs)
    a = L.MultiHeadAttention(2, max(1, dim // 2), dropout=attention_dropout,
                             name="attention")(x, x)
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

    Safe mode runs no code from the file, whatever its format (``safe_loading.check_safe``,
    one gate for all): a ``Lambda`` layer of any function type, a class that is neither Keras', tfmot's nor
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
    A quantize-aware model (tfmot's wrappers, ``quantize_aware``, ``finetune_quantized``)
    loads back from ``.keras`` as from ``.h5``, with its tfmot classes and every variable
    (``_compat.qat_saving`` works around tfmot 0.8.1's ``.keras`` defects); one whose
    quantizers saved variables their config does not rebuild (tfmot's CQAT, PCQAT) is refused.

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
            f"model path {path!r} "
            + ("is a folder without saved_model.pb" if os.path.isdir(path) else "does not exist")
            + "; accepted: a .keras or .h5 file or a SavedModel directory")
    if not is_savedmodel and not path.endswith((".keras", ".h5", ".hdf5")):
        raise errors.ModelError(
            f"model file {path!r} has an unknown extension; accepted: .keras, .h5, "
            "or a SavedModel directory")
    with custom_objects_scope():
        if safe_mode:  # before anything is deserialized or any graph op runs
            check_safe(path)
        if path.endswith(".keras") and saved_by_keras3(path):
            return from_keras3(path)
        try:
            if is_savedmodel:
                model = keras.models.load_model(path, compile=compile)
            elif path.endswith(".keras"):  # QAT layers read back as saved (see _compat)
                with qat_saving.loadable():
                    model = keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
                qat_saving.restore_classes(model)
            else:
                model = keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
        except (ValueError, TypeError, OSError, KeyError, AttributeError) as e:
            raise errors.ModelError(
                f"cannot load model {path!r}: {' '.join(str(e).split())}") from e
    model = ensure_keras2(model)
    report = _surgery_report.report_of(path)
    return _surgery_report.attach(model, report) if report is not None else model


def save_model(model: keras.Model, path: str) -> str:
    """Saves ``model`` atomically (temporary name, then rename); format from the extension."""
    with _io.atomic_path(path) as tmp:
        model.save(tmp)
    return path
