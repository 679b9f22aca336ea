"""The recovery check's choice: agreement decides only beyond chance, else output error."""
import numpy as np
import pytest

import tfcompress.export.closeness as closeness
from tfcompress._compat.keras import keras


def test_decides_worse_only_beyond_chance():
    b = np.ones(40, bool)
    a = b.copy()
    a[:2] = False  # 2 samples of 40: chance (p = 0.5)
    assert not closeness.decides_worse(a, b)
    a[:7] = False  # 7 of 7 discordant samples one way: p = 0.016
    assert closeness.decides_worse(a, b)
    assert not closeness.decides_worse(b, a)
    assert not closeness.decides_worse(b, b)


@pytest.fixture
def softmax_model():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([0.05 * w for w in dense.get_weights()])  # near ties: flips cost little
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    return model, x


def _flip(out, count):
    out = out.copy()
    out[:count] = out[:count, ::-1]  # reverses the top class where it is not the middle one
    return out


def test_choose_keeps_the_lower_output_error_unless_agreement_is_worse_beyond_chance(
        softmax_model, monkeypatch):
    model, x = softmax_model
    reference = model.predict(x, verbose=0)
    middle = reference.argmax(-1) == 1
    x, reference = x[~middle], reference[~middle]  # every flip changes the top class
    outputs = {b"noisy": reference + 0.1,                 # same top class, larger error
               b"one_flip": _flip(reference, 1),
               b"many_flips": _flip(reference, 8)}
    monkeypatch.setattr(closeness, "predict", lambda fb, _: outputs[fb])
    check = closeness.choose(model, {"recovered": b"noisy", "finetuned": b"one_flip"}, x)
    scores = check["validation"]
    assert scores["recovered"]["agreement"] == 1.0
    assert scores["finetuned"]["agreement"] < 1.0
    assert scores["finetuned"]["output_error"] < scores["recovered"]["output_error"]
    assert check["kept"] == "finetuned"  # one flip is chance; its error is lower
    check = closeness.choose(model, {"recovered": b"noisy", "finetuned": b"many_flips"}, x)
    scores = check["validation"]
    assert scores["finetuned"]["output_error"] < scores["recovered"]["output_error"]
    assert check["kept"] == "recovered"  # 8 flips of 8 discordant samples: beyond chance
