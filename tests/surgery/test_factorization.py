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
