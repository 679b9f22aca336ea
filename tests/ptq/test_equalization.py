"""BatchNormalization folding and cross-layer equalization: same outputs, more equal ranges."""

import numpy as np
import pytest
from ptq_models import logits, trained_tiny

import tfcompress
from tfcompress import errors, keras
from tfcompress.ptq.equalization import equalize, find_pairs, fold_batchnorm


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), _ = digits
    return trained_tiny(x, y)


def _relative(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def test_fold_batchnorm_same_outputs_no_batchnorm(trained, digits):
    _, (xt, _) = digits
    folded = fold_batchnorm(trained)
    assert not [l for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert folded.get_layer("sep").use_bias and folded.get_layer("conv").use_bias
    assert _relative(logits(trained, xt), logits(folded, xt)) < 1e-4


def _spread(r: np.ndarray) -> float:
    """Largest over smallest per-channel range (1 = equal)."""
    return float(np.max(r) / np.min(r[r > 0]))


def test_equalize_same_outputs_and_more_equal_ranges(trained, digits):
    _, (xt, _) = digits
    folded = fold_batchnorm(trained)
    eq = equalize(trained)
    assert _relative(logits(trained, xt), logits(eq, xt)) < 1e-4
    # dw -> ReLU -> sep and conv2 -> Flatten -> dense are pairs; conv's output also feeds the
    # Add and the separable's goes to it through a ReLU6: no pair there.
    pairs = {p[:2] for p in find_pairs(folded)}
    assert pairs == {("dw", "sep"), ("conv2", "dense"), ("dense", "logits")}
    for name, attr, axes in (("dw", "depthwise_kernel", (0, 1)), ("conv2", "kernel", (0, 1, 2)),
                             ("dense", "kernel", (0,)), ("sep", "pointwise_kernel", (0, 1, 3))):
        before = np.max(np.abs(getattr(folded.get_layer(name), attr).numpy()), axis=axes)
        after = np.max(np.abs(getattr(eq.get_layer(name), attr).numpy()), axis=axes)
        assert _spread(after.reshape(-1)) < _spread(before.reshape(-1)), name


def test_equalize_relu6_pairs_kept_or_made_relu(digits):
    (x, _), _ = digits
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    h = L.ReLU(6.0, name="r6")(h)
    out = L.Conv2D(2, 1, name="b")(h)
    model = keras.Model(inputs, out)
    model.get_layer("a").set_weights([np.random.RandomState(0).randn(3, 3, 1, 4) * [1, 4, 9, 16],
                                      np.zeros(4)])
    assert find_pairs(model, "keep") == []
    kept = equalize(model, relu6="keep")
    np.testing.assert_array_equal(kept.get_layer("a").kernel.numpy(),
                                  model.get_layer("a").kernel.numpy())
    relu = equalize(model, relu6="relu")
    assert relu.get_layer("r6").max_value is None
    r1 = np.max(np.abs(relu.get_layer("a").kernel.numpy()), axis=(0, 1, 2))
    r2 = np.max(np.abs(relu.get_layer("b").kernel.numpy()), axis=(0, 1, 3))
    r1_before = np.max(np.abs(model.get_layer("a").kernel.numpy()), axis=(0, 1, 2))
    np.testing.assert_allclose(r1, r2, rtol=1e-3)  # each channel's two ranges made equal
    assert not np.allclose(r1, r1_before, rtol=1e-2)
    with pytest.raises(errors.ConfigError, match="relu6"):
        equalize(model, relu6="clip")


def test_equalize_conv1d_pairs(digits):
    """Conv1D -> ReLU -> Conv1D -> MaxPooling1D -> Conv1D -> GlobalAveragePooling1D -> Dense:
    three pairs, the same outputs, the first layer's channel-range spread at least halved."""
    _, (xt, _) = digits
    L = keras.layers
    inputs = keras.Input((8, 8))
    h = L.Conv1D(6, 3, padding="same", activation="relu", name="a")(inputs)
    h = L.Conv1D(6, 3, padding="same", activation="relu", name="b")(h)
    h = L.MaxPooling1D(name="pool")(h)
    h = L.Conv1D(4, 3, name="c")(h)
    out = L.Dense(3, name="d")(L.GlobalAveragePooling1D(name="gap")(h))
    model = keras.Model(inputs, out)
    rng = np.random.RandomState(0)
    model.get_layer("a").set_weights([rng.randn(3, 8, 6) * [1, 4, 9, 16, 25, 36], np.zeros(6)])
    x = xt.reshape(-1, 8, 8)
    assert {p[:2] for p in find_pairs(model)} == {("a", "b"), ("b", "c"), ("c", "d")}
    eq = equalize(model)
    assert _relative(model.predict(x, verbose=0), eq.predict(x, verbose=0)) < 1e-4
    before = np.max(np.abs(model.get_layer("a").kernel.numpy()), axis=(0, 1))
    after = np.max(np.abs(eq.get_layer("a").kernel.numpy()), axis=(0, 1))
    assert _spread(after) < 0.5 * _spread(before), (_spread(after), _spread(before))


def test_equalize_sequential_digits_cnn(trained_cnn, digits):
    _, (xt, _) = digits
    eq = tfcompress.ptq.equalization.equalize(trained_cnn)
    # conv1-conv2, conv2-(pool, flatten)-dense, dense-logits
    assert len(eq.equalization["pairs"]) == 3
    assert _relative(trained_cnn.predict(xt, verbose=0), eq.predict(xt, verbose=0)) < 1e-4


def test_subclassed_model_is_a_clear_error():
    class M(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.ModelError, match="subclassed"):
        equalize(M())
