"""Shared fixtures: the bundled digits and a briefly trained digits CNN (per test session)."""

import pytest

import tfcompress
from tfcompress import keras


@pytest.fixture(scope="session")
def digits():
    return tfcompress.data.load_digits()


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """The digits CNN after a few epochs (about 0.95 test accuracy); do not modify it."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = tfcompress.models.digits_cnn()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model
