"""Tiny models for the PTQ recovery tests: every layer kind the recovery rounds, BN after each."""

import numpy as np

from tfcompress import keras


def tiny_model(seed: int = 0) -> keras.Model:
    """Conv2D+BN+ReLU -> DepthwiseConv2D+BN+ReLU -> SeparableConv2D+BN+ReLU6 -> residual Add
    -> Conv2D(relu) -> Flatten -> Dense(relu) -> Dense logits -> softmax (8x8x1 inputs)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = L.BatchNormalization(name="conv_bn")(x)
    x = L.ReLU(name="conv_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(name="dw_relu")(y)
    y = L.SeparableConv2D(8, 3, padding="same", use_bias=False, name="sep")(y)
    y = L.BatchNormalization(name="sep_bn")(y)
    y = L.ReLU(6.0, name="sep_relu6")(y)
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(32, activation="relu", name="dense")(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="tiny")


def mixed_model(seed: int = 0) -> keras.Model:
    """What users bring around the rounded layers: squeeze-excite (Multiply), Concatenate, a
    Conv2DTranspose and a Conv1D (BN folded into each; the Conv1D paired with the Dense across a
    GlobalAveragePooling1D) and a BN after a ReLU (not foldable); 8x8x1 inputs."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = L.BatchNormalization(name="conv_bn")(x)
    s = L.GlobalAveragePooling2D(name="se_pool")(x)
    s = L.Dense(4, activation="relu", name="se_reduce")(s)
    s = L.Dense(8, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se")([x, L.Reshape((1, 1, 8), name="se_shape")(s)])
    a = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(x)
    b = L.Conv2D(4, 1, activation="relu", name="side")(x)
    x = L.Concatenate(name="concat")([a, b])
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", use_bias=False, name="up")(x)
    x = L.ReLU(name="up_relu")(L.BatchNormalization(name="up_bn")(x))
    x = L.Reshape((16 * 16, 6), name="rows")(x)
    x = L.Conv1D(8, 3, padding="same", use_bias=False, name="conv1d")(x)
    x = L.ReLU(name="conv1d_relu")(L.BatchNormalization(name="conv1d_bn")(x))
    x = L.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, L.Activation("softmax", name="probs")(x), name="mixed")


def trained_tiny(x: np.ndarray, y: np.ndarray, epochs: int = 4) -> keras.Model:
    model = tiny_model()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's pre-softmax output."""
    return keras.Model(model.inputs, model.get_layer("logits").output).predict(x, verbose=0)
