"""Helpers shared by the pruning, clustering, quantization and callbacks tests (not fixtures)."""

import numpy as np

import tfcompress
from tfcompress import keras

from helpers import keras_accuracy

BATCH = 32
SAMPLES = 320  # 10 steps per epoch: fine-tunes of a few seconds


def small_cnn(digits, width: float = 0.25, epochs: int = 2):
    """A thin digits CNN trained briefly (about 0.85-0.9 test accuracy)."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = tfcompress.models.digits_cnn(width=width)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    return model


def fit(model, digits, epochs: int, callbacks=(), lr: float = 1e-3, samples: int = SAMPLES):
    (x, y), _ = digits
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    return model.fit(x[:samples], y[:samples], batch_size=BATCH, epochs=epochs,
                     callbacks=list(callbacks), verbose=0)


def steps_per_epoch(samples: int = SAMPLES) -> int:
    return int(np.ceil(samples / BATCH))


def accuracy(model, digits) -> float:
    """Top-1 accuracy on the digits test split."""
    _, (x, y) = digits
    return keras_accuracy(model, x, y)
