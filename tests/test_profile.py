import gzip

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.profile import profile, tflite_sizes

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
    assert tfcompress.profile.tflite_sizes is tflite_sizes  # tfcompress.profile is the module
