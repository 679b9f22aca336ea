"""prune_channels on sequence models: Embedding widths, attention heads, LSTM/GRU units,
feed-forward units, positional additions (tfcompress.surgery.channels + attention)."""

import numpy as np
import pytest

import model_kinds
from tfcompress import errors, keras, models
from tfcompress.surgery import channels as surgery

L = keras.layers
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _randomize(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


def _tokens(n=8, seq=12, vocab=40, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (n, seq)).astype(np.int32)


def _encoder(norm=False, heads=4, seq=12, position=None):
    """Embedding -> MultiHeadAttention + residual -> [LayerNorm] -> Dense 32 relu -> Dense 16 +
    residual -> [LayerNorm] -> average -> Dense 3. ``position``: "layer" adds a position
    Embedding with an Add layer, "op" with ``x + tensor`` (a TFOpLambda)."""
    inp = keras.Input((seq,), dtype="int32", name="tokens")
    inputs = inp
    x = L.Embedding(40, 16, name="embedding")(inp)
    if position:  # position ids as a second input (an Embedding on a constant has no node)
        inputs = [inp, keras.Input((seq,), dtype="int32", name="positions")]
        pos = L.Embedding(seq, 16, name="position")(inputs[1])
        x = L.Add(name="with_position")([x, pos]) if position == "layer" else x + pos
    a = L.MultiHeadAttention(heads, 4, name="attention")(x, x)
    x = L.Add(name="residual1")([x, a])
    x = L.LayerNormalization(name="norm1")(x) if norm else x
    f = L.Dense(16, name="ffn2")(L.Dense(32, activation="relu", name="ffn1")(x))
    x = L.Add(name="residual2")([x, f])
    x = L.LayerNormalization(name="norm2")(x) if norm else x
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return _randomize(keras.Model(inputs, L.Dense(3, name="out")(x)))


def _silenced(model, pruned):
    """A copy of ``model`` with the removed channels, units and heads zeroed (its weights
    creating them), from the pruned model's report."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    report = pruned.surgery_report
    for name, kept in report.kept.items():
        layer = clone.get_layer(name)
        cls = type(layer).__name__
        ws = layer.get_weights()
        if cls == "MultiHeadAttention":
            ws[-2][..., np.setdiff1d(np.arange(ws[-1].shape[-1]), kept)] = 0
            ws[-1][np.setdiff1d(np.arange(ws[-1].shape[-1]), kept)] = 0
        elif cls in GATES or cls == "Bidirectional":
            per = len(ws) // (2 if cls == "Bidirectional" else 1)
            units = ws[1].shape[0]
            gates = ws[0].shape[-1] // units
            gone = np.setdiff1d(np.arange(units), kept)
            cols = np.concatenate([g * units + gone for g in range(gates)])
            for i, w in enumerate(ws):
                if i % per in (0, 1, 2):  # kernel, recurrent kernel, bias: the unit's columns
                    w[..., cols] = 0
        else:
            gone = np.setdiff1d(np.arange(ws[0].shape[-1]), kept)
            for w in ws:
                w[..., gone] = 0
        layer.set_weights(ws)
    for name, entry in report.changed.items():
        if "heads_kept" in entry:
            layer = clone.get_layer(name)
            ws = layer.get_weights()
            ws[-2][np.setdiff1d(np.arange(entry["heads_before"]), entry["heads_kept"])] = 0
            layer.set_weights(ws)
    return clone


@pytest.mark.parametrize("data", [True, False])
def test_encoder_prunes_heads_embedding_and_feed_forward_exactly(data):
    model = _encoder()
    x = _tokens()
    pruned = surgery.prune_channels(model, 0.5, round_to=1, x=x if data else None)
    attention = pruned.get_layer("attention")
    assert attention.get_config()["num_heads"] == 2
    assert [w.shape for w in attention.get_weights()[::2]] == [
        (8, 2, 4), (8, 2, 4), (8, 2, 4), (2, 4, 8)]
    assert pruned.get_layer("embedding").embeddings.shape == (40, 8)
    assert pruned.get_layer("ffn1").kernel.shape == (8, 16)
    assert pruned.get_layer("ffn2").kernel.shape == (16, 8)
    assert pruned.surgery_report.not_followed == ()
    assert pruned.count_params() <= 0.6 * model.count_params()
    np.testing.assert_allclose(pruned(x), _silenced(model, pruned)(x), atol=1e-5)
    assert not np.allclose(pruned(x), model(x), atol=1e-3)  # something was really removed


def test_heads_are_ranked_on_data_when_given():
    """Head 0 has the largest weights but nearly no output (its values are tiny): ranked by
    weight norm it stays, ranked by its output on data it goes."""
    model = _encoder(heads=2)
    layer = model.get_layer("attention")
    ws = layer.get_weights()
    ws[0][:, 0] *= 20
    ws[2][:, 0] *= 20  # query and key of head 0: large, but they only shape its softmax
    ws[4][:, 0] *= 1e-3
    ws[5][0] = 0  # value of head 0 nearly zero
    layer.set_weights(ws)
    by_data = surgery.prune_channels(model, 0.5, round_to=1, x=_tokens(32), layers=["attention"])
    by_norm = surgery.prune_channels(model, 0.5, round_to=1, layers=["attention"])
    assert by_data.surgery_report.changed["attention"] == {
        "before": 16, "after": 8, "heads_before": 2, "heads_after": 1, "heads_kept": [1]}
    assert by_norm.surgery_report.changed["attention"]["heads_kept"] == [0]
    assert "heads ranked by their output on x" in by_data.surgery_report.notes


def test_layer_normalization_follows_the_embedding_width():
    model = _encoder(norm=True)
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    for name in ("norm1", "norm2"):
        assert [w.shape for w in pruned.get_layer(name).get_weights()] == [(8,), (8,)]
        kept = pruned.surgery_report.kept["embedding"]
        np.testing.assert_array_equal(pruned.get_layer(name).gamma.numpy(),
                                      model.get_layer(name).gamma.numpy()[kept])
    assert pruned(_tokens()).shape == (8, 3)


@pytest.mark.parametrize("position", ["layer", "op"])
def test_position_embeddings_are_pruned_with_the_tokens(position):
    model = _encoder(position=position)
    x = [_tokens(), np.tile(np.arange(12, dtype=np.int32), (8, 1))]
    pruned = surgery.prune_channels(model, 0.5, round_to=1, x=x)  # heads ranked on two inputs
    assert pruned.surgery_report.changed["attention"]["heads_after"] == 2
    kept = pruned.surgery_report.kept
    np.testing.assert_array_equal(kept["position"], kept["embedding"])
    assert pruned.get_layer("position").embeddings.shape == (12, 8)
    assert pruned.surgery_report.not_followed == ()
    np.testing.assert_allclose(pruned(x), _silenced(model, pruned)(x), atol=1e-5)


@pytest.mark.parametrize("kind,layer,units", [("lstm", "lstm", 4), ("gru", "gru", 4),
                                              ("simple_rnn", "rnn", 4), ("bilstm", "bilstm", 3)])
def test_recurrent_units_are_removed_with_all_their_gates(kind, layer, units):
    model, (x, _), _ = model_kinds.KINDS[kind]()
    model = _randomize(model)
    x = x[:8]
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    new = pruned.get_layer(layer)
    cells = [new.forward_layer, new.backward_layer] if kind == "bilstm" else [new]
    inner = type(cells[0]).__name__
    rows = 4  # 4 input features; the lstm kind's Embedding (8) is halved to 4
    for cell in cells:
        assert cell.units == units
        assert cell.cell.kernel.shape == (rows, GATES[inner] * units)
        assert cell.cell.recurrent_kernel.shape == (units, GATES[inner] * units)
    assert pruned.get_layer("probs").kernel.shape[0] == units * len(cells)
    np.testing.assert_allclose(pruned(x), _silenced(model, pruned)(x), atol=1e-5)
    assert pruned.count_params() <= 0.6 * model.count_params()


def test_rnn_returning_states_is_not_followed_and_named():
    inp = keras.Input((12, 4))
    seq, h, c = L.LSTM(8, return_sequences=True, return_state=True, name="lstm")(inp)
    x = L.GlobalAveragePooling1D(name="pool")(L.Dense(8, name="proj")(seq))
    model = _randomize(keras.Model(inp, L.Dense(2, name="out")(L.Concatenate()([x, h]))))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    assert "lstm" in pruned.surgery_report.not_followed
    assert pruned.get_layer("lstm").units == 8
    assert pruned.get_layer("proj").units == 4  # the layers after it are still pruned


def test_bundled_text_models_halve_their_parameters(tmp_path):
    """At the default round_to (8), ratio 0.5 leaves <= 0.6x the parameters of the bundled
    Transformer and of an LSTM of the same width; the pruned models run, save and load."""
    transformer = models.text_transformer()
    inp = keras.Input((64,), dtype="int32")
    x = L.LSTM(32, name="lstm")(L.Embedding(2000, 32, name="embedding")(inp))
    lstm = keras.Model(inp, L.Dense(6, activation="softmax", name="probs")(x))
    x = _tokens(4, 64, 2000)
    for model in (transformer, lstm):
        pruned = surgery.prune_channels(model, 0.5)
        ratio = pruned.count_params() / model.count_params()
        assert ratio <= 0.6, (model.name, ratio)
        path = str(tmp_path / f"{model.name}.keras")
        pruned.save(path)
        np.testing.assert_allclose(models.load_model(path).predict(x, verbose=0),
                                   pruned.predict(x, verbose=0), atol=1e-6)
    assert pruned.get_layer("lstm").units == 16


def test_calibration_data_that_is_not_model_input_is_refused():
    model = _encoder(position="layer")
    for bad in ("tokens", _tokens(), [_tokens(), np.zeros((0, 12), np.int32)]):
        with pytest.raises(errors.ConfigError, match=r"^x=.*accepted: None or calibration"):
            surgery.prune_channels(model, 0.5, x=bad)


def test_attention_returning_its_scores_is_not_followed_and_named():
    inp = keras.Input((12,), dtype="int32")
    x = L.Embedding(40, 16, name="embedding")(inp)
    a, scores = L.MultiHeadAttention(2, 4, name="attention")(x, x, return_attention_scores=True)
    h = L.Dense(16, activation="relu", name="hidden")(L.Add(name="residual")([x, a]))
    pooled = L.GlobalAveragePooling1D(name="pool")(h)
    model = _randomize(keras.Model(inp, [L.Dense(3, name="out")(pooled), scores]))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    assert pruned.surgery_report.not_followed == ("attention",)
    assert pruned.get_layer("attention").get_config()["num_heads"] == 2
    assert pruned.get_layer("embedding").embeddings.shape == (40, 16)
    assert pruned.get_layer("hidden").units == 8  # what follows is still pruned
