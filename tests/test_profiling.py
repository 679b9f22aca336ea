import gzip

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.profiling import profile, tflite_sizes

L = keras.layers


def _digits_cnn_macs(width=1.0):
    c = lambda n: max(1, int(round(n * width)))  # noqa: E731
    c1, c2, d = c(32), c(64), c(128)
    return 64 * 9 * 1 * c1 + 64 * 9 * c1 * c2 + (16 * c2) * d + d * 10


def test_digits_cnn_profile_by_hand():
    p = profile(models.digits_cnn())
    rows = {r["name"]: r for r in p["layers"]}
    assert rows["conv1"]["macs"] == 8 * 8 * 3 * 3 * 1 * 32
    assert rows["conv2"]["macs"] == 8 * 8 * 3 * 3 * 32 * 64
    assert rows["dense"]["macs"] == 1024 * 128 and rows["logits"]["macs"] == 1280
    assert rows["pool"]["macs"] == 0 and rows["flatten"]["params"] == 0
    assert p["macs"] == _digits_cnn_macs() == sum(r["macs"] for r in p["layers"])
    assert p["params"] == p["trainable_params"] == 151_306 == sum(r["params"] for r in p["layers"])


@pytest.mark.parametrize("width", [0.25, 0.5, 2.0])
def test_width_multiplier_scales_params_and_macs(width):
    """models.build(..., width) makes a thinner or wider reference model."""
    model = models.build("digits_cnn", (8, 8, 1), 10, width=width)
    assert profile(model)["macs"] == _digits_cnn_macs(width)
    assert (model.count_params() < 151_306) == (width < 1)


def test_mobilenet_v2_macs_match_the_paper_and_alpha_scales():
    # MobileNetV2 1.0 at 224x224: 300M multiply-adds, 3.47M parameters (Sandler et al., table 3).
    full = profile(models.build("mobilenet_v2", (224, 224, 3), 1000))
    assert abs(full["macs"] - 300e6) / 300e6 < 0.02
    assert abs(full["params"] - 3.47e6) / 3.47e6 < 0.03
    thin = profile(models.build("mobilenet_v2", (224, 224, 3), 1000, width=0.5))
    assert 0.2 * full["macs"] < thin["macs"] < 0.4 * full["macs"]  # paper: 97M
    assert thin["params"] < 0.6 * full["params"]


def test_other_layer_kinds_by_hand():
    inp = keras.Input((10, 10, 4))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inp)  # 8x8x8 out
    x = L.SeparableConv2D(6, 3, padding="same", name="sep")(x)  # 8x8x6 out
    x = L.Conv2DTranspose(5, 2, strides=2, name="tconv")(x)  # in 8x8x6
    x = L.Reshape((16 * 16, 5))(x)
    x = L.Conv1D(3, 4, name="c1d")(x)  # 253x3 out
    out = L.Dense(7, name="dense3d")(x)  # on (253, 3)
    inner = keras.Model(inp, out, name="inner")
    outer = keras.Sequential([keras.Input((10, 10, 4)), inner], name="outer")
    rows = {r["name"]: r["macs"] for r in profile(outer)["layers"]}
    assert rows["inner/dw"] == 64 * 9 * 4 * 2
    assert rows["inner/sep"] == 64 * (9 * 8 + 8 * 6)
    assert rows["inner/tconv"] == 64 * 2 * 2 * 5 * 6
    assert rows["inner/c1d"] == 253 * 4 * 5 * 3
    assert rows["inner/dense3d"] == 253 * 3 * 7


def test_unknown_dimensions_are_an_error():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, L.Conv2D(4, 3, name="conv")(inp))
    with pytest.raises(errors.ModelError, match="layer 'conv' has unknown dimensions"):
        profile(model)


def test_tflite_sizes():
    data = bytes(1000) + np.random.default_rng(0).bytes(1000)
    sizes = tflite_sizes(data)
    assert sizes == {"bytes": 2000, "gzip_bytes": len(gzip.compress(data, 9, mtime=0))}
    assert 1000 < sizes["gzip_bytes"] < 1100


def test_package_names():
    assert tfcompress.profile_model is profile
    assert tfcompress.profiling.tflite_sizes is tflite_sizes
    assert tfcompress.profile is profile and tfcompress.profile_model is profile  # the verb


def test_each_call_in_the_model_graph_counts_once(tmp_path):
    """strip() clones: its layers also hold the nodes of the wrapped graph. The stripped model in
    memory, the same model saved and loaded, and the unpruned model have the same MACs."""
    model = models.digits_cnn(width=0.5)
    stripped = tfcompress.strip(tfcompress.prune(model, 0.5, epochs=1, steps_per_epoch=10))
    assert max(len(layer._inbound_nodes) for layer in stripped.layers) >= 2  # the history
    path = str(tmp_path / "stripped.keras")
    models.save_model(stripped, path)
    loaded = models.load_model(path)
    assert profile(stripped)["macs"] == profile(loaded)["macs"] == profile(model)["macs"]
    assert profile(model)["macs"] == _digits_cnn_macs(0.5)
    # A layer reused by a second model still counts once in each.
    again = keras.Sequential([keras.Input((8, 8, 1))] + model.layers)
    assert profile(again)["macs"] == profile(model)["macs"]


def test_a_layer_shared_inside_the_graph_counts_per_call():
    inp = keras.Input((6,))
    shared = L.Dense(6, name="shared")
    out = L.Dense(2, name="head")(shared(shared(inp)))  # called twice in the graph
    rows = {r["name"]: r["macs"] for r in profile(keras.Model(inp, out))["layers"]}
    assert rows["shared"] == 2 * 6 * 6 and rows["head"] == 6 * 2


def test_recurrent_layers_by_hand():
    """LSTM 4*(in*u + u*u + u), GRU 3*(...), SimpleRNN 1*(...) per timestep; a Bidirectional
    layer counts both directions; the Embedding before them is a lookup (0 MACs)."""
    tokens = keras.Input((7,), dtype="int32")
    x = L.Embedding(50, 6, name="embedding")(tokens)  # (7, 6)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)  # in 6, u 5
    x = L.GRU(4, return_sequences=True, name="gru")(x)  # in 5, u 4
    x = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), name="bi")(x)  # in 4, u 3 (x2)
    x = L.Bidirectional(L.LSTM(2), name="bi_lstm")(x)  # in 6, u 2 (x2)
    model = keras.Model(tokens, L.Dense(2, name="out")(x))
    p = profile(model)
    rows = {r["name"]: r for r in p["layers"]}
    assert rows["embedding"]["macs"] == 0 and rows["embedding"]["params"] == 300
    assert rows["lstm"]["macs"] == 7 * 4 * (6 * 5 + 5 * 5 + 5)
    assert rows["gru"]["macs"] == 7 * 3 * (5 * 4 + 4 * 4 + 4)
    assert rows["bi"]["macs"] == 2 * 7 * (4 * 3 + 3 * 3 + 3)
    assert rows["bi_lstm"]["macs"] == 2 * 7 * 4 * (6 * 2 + 2 * 2 + 2)
    assert p["params"] == model.count_params()
    # tfmot wrappers are seen through: the pruned copy costs the same
    pruned = tfcompress.prune(model, 0.5, end_step=10)
    assert profile(pruned)["macs"] == p["macs"]


def test_attention_einsum_and_layer_norm_by_hand():
    """MultiHeadAttention: Tq*|Wq| + Tv*(|Wk| + |Wv|) + H*Tq*Tv*(key_dim + value_dim) + Tq*|Wo|;
    EinsumDense: the product of every index's size; LayerNormalization: gamma and beta are
    parameters, 0 MACs."""
    q_in, v_in = keras.Input((6, 8)), keras.Input((9, 5))
    self_att = L.MultiHeadAttention(2, 4, name="self")(q_in, q_in)  # Tq = Tv = 6, d 8
    cross = L.MultiHeadAttention(3, 2, value_dim=5, name="cross")(q_in, v_in)  # Tv 9, dv 5
    x = L.LayerNormalization(name="norm")(L.Add()([self_att, cross]))
    x = L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), name="einsum")(x)
    model = keras.Model([q_in, v_in], x)
    rows = {r["name"]: r for r in profile(model)["layers"]}
    wq = wk = wv = wo = 8 * 2 * 4
    assert rows["self"]["macs"] == 6 * wq + 6 * (wk + wv) + 2 * 6 * 6 * (4 + 4) + 6 * wo
    wq, wk, wv, wo = 8 * 3 * 2, 5 * 3 * 2, 5 * 3 * 5, 3 * 5 * 8
    assert rows["cross"]["macs"] == 6 * wq + 9 * (wk + wv) + 3 * 6 * 9 * (2 + 5) + 6 * wo
    assert rows["norm"]["macs"] == 0 and rows["norm"]["params"] == 2 * 8
    assert rows["einsum"]["macs"] == 6 * 8 * 2 * 3
