"""Spatial and channel SVD of convolutions (tfcompress.surgery.factorization)."""

import numpy as np
import pytest

from tfcompress import errors, keras, models
from tfcompress.surgery import factorization
from tfcompress.surgery import channels as surgery
from tfcompress.profiling import profile

L = keras.layers


def _conv_net(strides=1, padding="same", dilation=1, kernel=(3, 3)):
    inp = keras.Input((9, 9, 4))
    x = L.Conv2D(6, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                 activation="relu", name="conv")(inp)
    x = L.Conv2D(5, 1, name="point")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(3, name="out")(x))


def _separable_rank(kernel_shape, r, seed=0):
    """A k x k kernel of spatial rank r: W[i, j, c, o] = sum_t A[i, c, t] B[t, j, o]."""
    kh, kw, cin, cout = kernel_shape
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(kh, cin, r)), rng.normal(size=(r, kw, cout))
    return np.einsum("ict,tjo->ijco", a, b).astype(np.float32)


@pytest.mark.parametrize("strides,padding,dilation", [
    (1, "same", 1), (2, "same", 1), (1, "valid", 1), (2, "valid", 1), (1, "same", 2)])
def test_spatial_svd_is_exact_at_the_true_rank(strides, padding, dilation):
    model = _conv_net(strides, padding, dilation)
    conv = model.get_layer("conv")
    conv.set_weights([_separable_rank(conv.kernel.shape, 2), np.linspace(-1, 1, 6, dtype="f")])
    new = factorization.factorize(model, energy=0.99999, conv="spatial", layers=["conv"])
    assert new.surgery_report.changed["conv"] == {
        "rank": 2, "before": 3 * 3 * 4 * 6, "after": 3 * 4 * 2 + 3 * 2 * 6, "split": "spatial"}
    first, second = new.get_layer("conv_lowrank"), new.get_layer("conv")
    assert first.kernel.shape == (3, 1, 4, 2) and second.kernel.shape == (1, 3, 2, 6)
    assert first.strides == (strides, 1) and second.strides == (1, strides)
    x = np.random.default_rng(1).random((3, 9, 9, 4), np.float32)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_spatial_svd_truncation_is_the_best_rank_r_fit():
    model = _conv_net()
    kernel = model.get_layer("conv").kernel.numpy()
    new = factorization.factorize(model, rank=3, conv="spatial", layers=["conv"])
    a = new.get_layer("conv_lowrank").kernel.numpy()[:, 0]  # (kh, cin, r)
    b = new.get_layer("conv").kernel.numpy()[0]  # (kw, r, cout)
    approx = np.einsum("ict,jto->ijco", a, b)
    matrix = kernel.transpose(0, 2, 1, 3).reshape(12, 18)
    s = np.linalg.svd(matrix, compute_uv=False)
    error = np.linalg.norm((approx - kernel).ravel())
    np.testing.assert_allclose(error, np.sqrt(np.sum(s[3:] ** 2)), rtol=1e-4)  # Eckart-Young


def test_spatial_svd_on_the_digits_cnn_halves_macs():
    model = models.digits_cnn()
    new = factorization.factorize(model, rank=16, conv="spatial", layers=["conv2"])
    ratio = profile(new)["macs"] / profile(model)["macs"]
    conv2 = 8 * 8 * 3 * 3 * 32 * 64
    expected = profile(model)["macs"] - conv2 + 8 * 8 * (3 * 32 * 16 + 3 * 16 * 64)
    assert profile(new)["macs"] == expected and ratio < 0.5
    assert new.output_shape == model.output_shape


def test_conv_modes_choose_the_split():
    model = _conv_net()
    channel = factorization.factorize(model, rank=2)
    assert channel.get_layer("conv").kernel.shape == (1, 1, 2, 6)  # k x k (r) -> 1 x 1
    assert channel.surgery_report.changed["conv"]["split"] == "channel"
    dense_only = factorization.factorize(model, rank=1, conv="none")
    assert set(dense_only.surgery_report.changed) == {"out"}
    spatial = factorization.factorize(model, rank=2, conv="spatial")
    assert spatial.get_layer("conv_lowrank").kernel.shape == (3, 1, 4, 2)
    assert spatial.get_layer("point").kernel.shape == (1, 1, 2, 5)  # 1 x 1: channel split
    with pytest.raises(errors.ConfigError, match="unknown conv 'depth'; accepted: channel"):
        factorization.factorize(model, rank=2, conv="depth")
    with pytest.raises(errors.ConfigError, match="unknown layer to factorize 'conv'"):
        factorization.factorize(model, rank=2, conv="none", layers=["conv"])


def _low_rank(shape, r, seed=0):
    """A (rows, cols) matrix of rank r."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(shape[0], r)) @ rng.normal(size=(r, shape[1]))).astype(np.float32)


def test_embedding_becomes_embedding_then_dense_albert():
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(50, 16, mask_zero=True, name="embedding")(inp)
    x = L.LSTM(4, name="lstm")(x)
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    table = _low_rank((50, 16), 3)
    model.get_layer("embedding").set_weights([table])
    ids = np.random.default_rng(0).integers(0, 50, (8, 6)).astype(np.int32)
    ids[:, -2:] = 0  # padding: the mask still reaches the LSTM through the Dense
    new = factorization.factorize(model, energy=0.99999, layers=["embedding"])
    first, second = new.get_layer("embedding_lowrank"), new.get_layer("embedding")
    assert (type(first).__name__, type(second).__name__) == ("Embedding", "Dense")
    assert new.surgery_report.changed["embedding"] == {
        "rank": 3, "before": 50 * 16, "after": 50 * 3 + 3 * 16}
    assert second.bias is None and first.get_config()["mask_zero"]
    np.testing.assert_allclose(first.embeddings.numpy() @ second.kernel.numpy(), table,
                               atol=1e-4)
    np.testing.assert_allclose(new(ids), model(ids), atol=1e-4)
    assert new.count_params() - model.count_params() == 50 * 3 + 3 * 16 - 50 * 16


def test_truncated_embedding_is_the_best_rank_r_fit():
    inp = keras.Input((4,), dtype="int32")
    x = L.GlobalAveragePooling1D()(L.Embedding(60, 12, name="embedding")(inp))
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    table = np.random.default_rng(1).normal(size=(60, 12)).astype(np.float32)
    model.get_layer("embedding").set_weights([table])
    new = factorization.factorize(model, rank=4)
    product = new.get_layer("embedding_lowrank").embeddings.numpy() @ \
        new.get_layer("embedding").kernel.numpy()
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    np.testing.assert_allclose(product, (u[:, :4] * s[:4]) @ vt[:4], atol=1e-4)
    assert new.surgery_report.changed["embedding"]["after"] == 60 * 4 + 4 * 12


@pytest.mark.parametrize("strides,padding,dilation", [
    (1, "same", 1), (2, "valid", 1), (1, "causal", 2)])
def test_conv1d_channel_split_is_exact_at_the_true_rank(strides, padding, dilation):
    inp = keras.Input((20, 6))
    x = L.Conv1D(10, 3, strides=strides, padding=padding, dilation_rate=dilation,
                 activation="relu", name="conv")(inp)
    model = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling1D()(x)))
    conv = model.get_layer("conv")
    conv.set_weights([_low_rank((18, 10), 2).reshape(3, 6, 10), np.linspace(-1, 1, 10, dtype="f")])
    new = factorization.factorize(model, energy=0.99999, layers=["conv"])
    assert new.surgery_report.changed["conv"] == {
        "rank": 2, "before": 3 * 6 * 10, "after": 3 * 6 * 2 + 2 * 10, "split": "channel"}
    assert new.get_layer("conv_lowrank").kernel.shape == (3, 6, 2)
    assert new.get_layer("conv").kernel.shape == (1, 2, 10)
    x = np.random.default_rng(0).normal(size=(4, 20, 6)).astype(np.float32)
    np.testing.assert_allclose(new(x), model(x), atol=1e-4)


@pytest.mark.parametrize("equation,shape,bias", [
    ("abc,cd->abd", (7, 10), "d"), ("ab,bc->ac", (10,), None), ("...b,bc->...c", (10,), "c")])
def test_matmul_einsum_dense_is_factorized_exactly(equation, shape, bias):
    inp = keras.Input((7, 12) if len(shape) == 2 else (12,))
    x = L.EinsumDense(equation, output_shape=shape, bias_axes=bias, activation="relu",
                      name="einsum")(inp)
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    layer = model.get_layer("einsum")
    layer.set_weights([_low_rank((12, 10), 3)] + layer.get_weights()[1:])
    new = factorization.factorize(model, energy=0.99999, layers=["einsum"])
    assert new.surgery_report.changed["einsum"] == {
        "rank": 3, "before": 120, "after": 12 * 3 + 3 * 10}
    assert new.get_layer("einsum_lowrank").kernel.shape == (12, 3)
    x = np.random.default_rng(0).normal(size=(4,) + tuple(inp.shape[1:])).astype(np.float32)
    np.testing.assert_allclose(new(x), model(x), atol=1e-4)


def test_what_factorize_does_not_consider_is_listed():
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(50, 16, name="embedding")(inp)
    x = L.MultiHeadAttention(2, 8, name="attention")(x, x)
    x = L.EinsumDense("abc,cde->abde", output_shape=(6, 4, 4), name="heads")(x)
    x = L.LSTM(4, name="lstm")(L.Reshape((6, 16))(x))
    model = keras.Model(inp, L.Dense(2, name="out")(x))
    new = factorization.factorize(model, rank=2)
    note = next(n for n in new.surgery_report.notes if n.startswith("not considered"))
    for name in ("attention (MultiHeadAttention)", "heads (EinsumDense)", "lstm (LSTM)"):
        assert name in note
    assert "embedding" in new.surgery_report.changed and "embedding (" not in note
    with pytest.raises(errors.ConfigError, match="heads"):
        factorization.factorize(model, rank=2, layers=["heads"])
