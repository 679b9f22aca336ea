"""Tiny models of every kind users bring, with data they learn in seconds (shared by the tests).

Each ``<kind>()`` returns ``(model, (x_train, y_train), (x_test, y_test))``: a compiled tf_keras
model (not yet fitted) and synthetic data whose rule the model can learn in a few epochs;
``trained(kind)`` fits it once per process and caches it (do not modify the cached model).

Kinds (``KINDS``):
    text       Embedding -> GlobalAveragePooling1D -> Dense, int32 token ids, 3 classes
    lstm       Embedding -> LSTM -> Dense, int32 token ids, 2 classes (dynamic batch)
    gru        float sequences (12, 4) -> GRU -> Dense, 2 classes (dynamic batch)
    simple_rnn float sequences -> SimpleRNN -> Dense, 2 classes (dynamic batch)
    bilstm     float sequences -> Bidirectional(LSTM) -> Dense, 2 classes (dynamic batch)
    regression float signals (16, 1) -> Conv1D -> GlobalAveragePooling1D -> Dense(1), float targets
    two_output 8x8x1 images -> Conv2D -> two heads: class (softmax, 3) and a float value
    transformer int32 token ids -> Embedding -> MultiHeadAttention -> LayerNorm ->
               feed-forward -> LayerNorm -> Dense, 3 classes
    dscnn      (16, 10, 1) keyword features -> DS-CNN with BatchNormalization, 4 classes
"""

from typing import Callable

import numpy as np

from tfcompress import keras

L = keras.layers
VOCAB, SEQ_LEN = 40, 12


def _split(x, y, n_test: int):
    if isinstance(y, (list, tuple)):
        return (x[:-n_test], [v[:-n_test] for v in y]), (x[-n_test:], [v[-n_test:] for v in y])
    return (x[:-n_test], y[:-n_test]), (x[-n_test:], y[-n_test:])


def _tokens(n: int, seed: int):
    """Token ids (n, SEQ_LEN) int32; class = which third of the vocabulary dominates."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = rng.integers(1, VOCAB, (n, SEQ_LEN))
    third = VOCAB // 3
    for i in range(n):  # half of the tokens come from the class's third of the vocabulary
        pos = rng.choice(SEQ_LEN, SEQ_LEN // 2 + 1, replace=False)
        x[i, pos] = rng.integers(y[i] * third + 1, (y[i] + 1) * third, len(pos))
    return x.astype(np.int32), y


def text(seed: int = 0, n: int = 600):
    """Average-embedding text classifier on int32 token ids (3 classes)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SEQ_LEN,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 16, name="embedding")(inputs)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(16, activation="relu", name="dense")(x)
    outputs = L.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="text")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return (model, *_split(*_tokens(n, seed), n // 4))


def _sequences(n: int, seed: int, features: int = 4):
    """Float sequences (n, SEQ_LEN, features); class = whether the first feature rises."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    t = np.linspace(-1, 1, SEQ_LEN, dtype=np.float32)
    x = rng.normal(0, 0.3, (n, SEQ_LEN, features)).astype(np.float32)
    x[:, :, 0] += np.where(y[:, None] == 1, t, -t)
    return x, y


def _recurrent(name: str, layer: Callable, seed: int, n: int, tokens: bool = False,
               mask: bool = False):
    keras.utils.set_random_seed(seed)
    if tokens:
        inputs = keras.Input((SEQ_LEN,), dtype="int32", name="tokens")
        x = L.Embedding(VOCAB, 8, mask_zero=mask, name="embedding")(inputs)
        data = _tokens(n, seed)
        data = (data[0], (data[1] > 0).astype(np.int32))  # class 0 vs the others
        if mask:  # padded with 0 after 4 or more tokens
            lengths = np.random.default_rng(seed).integers(4, SEQ_LEN + 1, n)
            data[0][np.arange(SEQ_LEN)[None, :] >= lengths[:, None]] = 0
    else:
        inputs = keras.Input((SEQ_LEN, 4), name="sequence")
        x = inputs
        data = _sequences(n, seed)
    x = layer(x)
    outputs = L.Dense(2, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return (model, *_split(*data, n // 4))


def lstm(seed: int = 0, n: int = 400):
    """Embedding -> LSTM(8) -> Dense softmax on int32 token ids, dynamic batch."""
    return _recurrent("lstm", L.LSTM(8, name="lstm"), seed, n, tokens=True)


def masked_lstm(seed: int = 0, n: int = 400):
    """Embedding(mask_zero=True) -> LSTM(8) -> Dense softmax on zero-padded int32 token ids."""
    return _recurrent("masked_lstm", L.LSTM(8, name="lstm"), seed, n, tokens=True, mask=True)


def gru(seed: int = 0, n: int = 400):
    """GRU(8) -> Dense softmax on float sequences, dynamic batch."""
    return _recurrent("gru", L.GRU(8, name="gru"), seed, n)


def simple_rnn(seed: int = 0, n: int = 400):
    """SimpleRNN(8) -> Dense softmax on float sequences, dynamic batch."""
    return _recurrent("simple_rnn", L.SimpleRNN(8, name="rnn"), seed, n)


def bilstm(seed: int = 0, n: int = 400):
    """Bidirectional(LSTM(6)) -> Dense softmax on float sequences, dynamic batch."""
    return _recurrent("bilstm", L.Bidirectional(L.LSTM(6), name="bilstm"), seed, n)


def regression(seed: int = 0, n: int = 600):
    """Conv1D regression on float signals (16, 1); the target is a smooth function of them."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.2, 1.0, n).astype(np.float32)
    freq = rng.uniform(1.0, 3.0, n).astype(np.float32)
    t = np.linspace(0, 2 * np.pi, 16, dtype=np.float32)
    x = (amp[:, None] * np.sin(freq[:, None] * t))[..., None]
    x += rng.normal(0, 0.02, x.shape).astype(np.float32)
    y = (2.0 * amp + 0.5 * freq).astype(np.float32)[:, None]
    inputs = keras.Input((16, 1), name="signal")
    h = L.Conv1D(8, 3, activation="relu", name="conv1d")(inputs)
    h = L.Conv1D(8, 3, activation="relu", name="conv1d_2")(h)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    outputs = L.Dense(1, name="value")(h)
    model = keras.Model(inputs, outputs, name="regression")
    model.compile(keras.optimizers.Adam(1e-2), "mse", ["mae"])
    return (model, *_split(x, y, n // 4))


def two_output(seed: int = 0, n: int = 600):
    """8x8x1 images -> Conv2D -> a class head (softmax, 3) and a value head (float)."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    y_class = rng.integers(0, 3, n).astype(np.int32)
    x = rng.uniform(0, 0.2, (n, 8, 8, 1)).astype(np.float32)
    y_value = rng.uniform(0.4, 1.0, (n, 1)).astype(np.float32)
    for i, c in enumerate(y_class):  # a band: its rows name the class, its brightness the value
        x[i, c * 2:c * 2 + 3, :, 0] += y_value[i, 0]
    inputs = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = L.Flatten(name="flatten")(h)
    h = L.Dense(16, activation="relu", name="dense")(h)
    probs = L.Dense(3, activation="softmax", name="class")(h)
    value = L.Dense(1, name="value")(h)
    model = keras.Model(inputs, [probs, value], name="two_output")
    model.compile(keras.optimizers.Adam(1e-2),
                  {"class": "sparse_categorical_crossentropy", "value": "mse"})
    return (model, *_split(x, [y_class, y_value], n // 4))


def transformer(seed: int = 0, n: int = 600):
    """A Transformer encoder block on int32 token ids (3 classes): Embedding ->
    MultiHeadAttention (2 heads) + residual -> LayerNormalization -> feed-forward (Dense 32
    relu -> Dense 16) + residual -> LayerNormalization -> average -> Dense softmax. (No
    position embedding: one built on a constant ``tf.range`` cannot be cloned, which every
    tfmot technique does; the class depends on the token counts only.)"""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SEQ_LEN,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 16, name="embedding")(inputs)
    attended = L.MultiHeadAttention(2, 8, name="attention")(x, x)
    x = L.LayerNormalization(name="norm1")(L.Add(name="residual1")([x, attended]))
    hidden = L.Dense(32, activation="relu", name="ffn1")(x)
    x = L.LayerNormalization(name="norm2")(
        L.Add(name="residual2")([x, L.Dense(16, name="ffn2")(hidden)]))
    x = L.GlobalAveragePooling1D(name="pool")(x)
    outputs = L.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="transformer")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    return (model, *_split(*_tokens(n, seed), n // 4))


def _keywords(n: int, seed: int, frames: int = 16, bins: int = 10):
    """Spectrogram-like (n, frames, bins, 1) float features; class = which band of bins holds
    a tone (4 keywords)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int32)
    x = rng.normal(0, 0.3, (n, frames, bins, 1)).astype(np.float32)
    for i, c in enumerate(y):
        start = rng.integers(0, frames // 2)
        x[i, start:start + frames // 2, 2 * c:2 * c + 3, 0] += 1.0
    return x, y


def dscnn(seed: int = 0, n: int = 600):
    """A keyword-spotting DS-CNN on (16, 10, 1) features, 4 classes: Conv2D -> BN -> ReLU,
    two DepthwiseConv2D -> BN -> ReLU -> 1x1 Conv2D -> BN -> ReLU blocks, average, Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 10, 1), name="features")
    x = L.Conv2D(16, (5, 3), strides=(2, 1), padding="same", use_bias=False, name="conv0")(inputs)
    x = L.ReLU(name="relu0")(L.BatchNormalization(momentum=0.9, name="bn0")(x))
    for i in (1, 2):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = L.ReLU(name=f"dw{i}_relu")(L.BatchNormalization(momentum=0.9, name=f"dw{i}_bn")(x))
        x = L.Conv2D(16, 1, use_bias=False, name=f"pw{i}")(x)
        x = L.ReLU(name=f"pw{i}_relu")(L.BatchNormalization(momentum=0.9, name=f"pw{i}_bn")(x))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="dscnn")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return (model, *_split(*_keywords(n, seed), n // 4))


KINDS = {"text": text, "lstm": lstm, "masked_lstm": masked_lstm, "gru": gru, "simple_rnn": simple_rnn, "bilstm": bilstm,
         "regression": regression, "two_output": two_output,
         "transformer": transformer, "dscnn": dscnn}
EPOCHS = {"text": 15, "lstm": 10, "masked_lstm": 10, "gru": 8, "simple_rnn": 8, "bilstm": 8, "regression": 40,
          "two_output": 25, "transformer": 15, "dscnn": 10}
_TRAINED: dict = {}


def trained(kind: str, seed: int = 0):
    """``KINDS[kind](seed)`` fitted for ``EPOCHS[kind]`` epochs, once per process (shared)."""
    key = (kind, seed)
    if key not in _TRAINED:
        model, (x, y), test = KINDS[kind](seed)
        model.fit(x, y, epochs=EPOCHS[kind], batch_size=32, verbose=0)
        _TRAINED[key] = (model, (x, y), test)
    return _TRAINED[key]
