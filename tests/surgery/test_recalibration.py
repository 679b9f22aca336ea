"""BatchNormalization recalibration after surgery: statistics equal the data's, loss falls."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.surgery import channels as surgery
from tfcompress.surgery.recalibration import recalibrate_batchnorm

L = keras.layers


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = models.mini_xception(width=0.5)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def _loss(model, x, y) -> float:
    p = model.predict(x, verbose=0)
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, p)))


def test_statistics_are_the_data_and_the_pruned_model_recovers(trained, digits):
    (x, y), (xt, yt) = digits
    pruned = surgery.prune_channels(trained, 0.25, round_to=1)  # no fine-tuning
    new = recalibrate_batchnorm(pruned, x[:400], samples=400)
    bns = [layer for layer in new.layers if isinstance(layer, L.BatchNormalization)]
    assert set(new.batchnorm_recalibration) == {layer.name for layer in bns}
    for bn in bns:  # each moving mean/variance is its input's, with the earlier ones updated
        seen = keras.Model(new.inputs, bn.input).predict(x[:400], verbose=0)
        seen = seen.reshape(-1, seen.shape[-1]).astype(np.float64)
        np.testing.assert_allclose(bn.moving_mean.numpy(), seen.mean(0), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(bn.moving_variance.numpy(), seen.var(0), rtol=1e-3,
                                   atol=1e-4)
    for a, b in zip(pruned.layers, new.layers):  # nothing else changed
        if not isinstance(a, L.BatchNormalization):
            for wa, wb in zip(a.get_weights(), b.get_weights()):
                np.testing.assert_array_equal(wa, wb)
    # Three epochs leave the moving statistics far from the data's (momentum 0.99): the model
    # is near chance in inference mode until they are recalibrated (measured: 2.38 -> 0.62).
    assert _loss(new, xt, yt) < 0.5 * _loss(pruned, xt, yt)


def test_sequential_stays_sequential_and_bad_input_is_refused(digits):
    (x, _), _ = digits
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="c"),
                              L.BatchNormalization(name="bn"), L.Flatten(), L.Dense(3)])
    assert tfcompress.recalibrate_batchnorm is recalibrate_batchnorm
    new = recalibrate_batchnorm(model, x[:64])
    assert isinstance(new, keras.Sequential)
    assert new.get_layer("bn").moving_variance.numpy().min() > 0
    with pytest.raises(errors.ConfigError, match="samples=1"):
        recalibrate_batchnorm(model, x[:64], samples=1)
    bad = x[:8].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(errors.DataError, match="NaN"):
        recalibrate_batchnorm(model, bad)
    with pytest.raises(errors.DataError, match="sample shape"):
        recalibrate_batchnorm(model, np.zeros((4, 6, 6, 1), np.float32))
