"""PTQ recovery's one entry point: BatchNormalization folded exactly, steps in their one order,
kernels on the grid the registry names for a mode, a bias shift corrected, clear errors."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras
import tfcompress.export.modes as modes
from tfcompress.ptq.recovery import STEPS, recover


@pytest.fixture(scope="module")
def bn_model(digits):
    """A conv -> BatchNormalization -> ReLU -> dense model, trained a little (BN statistics
    moved away from their initial values)."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="logits"),
    ])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x[:512], y[:512], epochs=2, batch_size=32, verbose=0)
    return model, x[:128]


def _off_grid(w: np.ndarray, qmax: int, reduce_axes: tuple) -> float:
    """The largest distance of ``w / scale`` from an integer, scale = channel max|w| / qmax."""
    scale = np.max(np.abs(w), axis=reduce_axes, keepdims=True) / qmax
    r = w.astype(np.float64) / scale
    return float(np.max(np.abs(r - np.rint(r))))


def test_no_step_only_folds_batchnorm_and_keeps_the_outputs(bn_model):
    model, x = bn_model
    out = recover(model, x, steps=())
    assert [l.name for l in model.layers if l.weights] == ["conv", "bn", "logits"]
    assert [l.name for l in out.layers if l.weights] == ["conv", "logits"]
    np.testing.assert_allclose(out.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-4, rtol=1e-4)
    assert list(out.recovery) == ["equalize"]  # the fold is reported under equalization


def test_steps_run_in_their_one_order_whatever_order_is_given(bn_model):
    model, x = bn_model
    out = recover(model, x, steps=("correct_bias", "equalize"), samples=64)
    assert list(out.recovery) == ["equalize", "correct_bias"]
    assert all(out.recovery[k]["seconds"] >= 0 for k in out.recovery)


@pytest.mark.parametrize("mode", ["dynamic_wi4", "int8"])
def test_recovered_kernels_sit_on_the_grid_the_registry_names(bn_model, mode):
    model, x = bn_model
    settings = modes.recovery_settings(mode)
    qmax = {8: 127, 4: 7}[settings["bits"]]
    before = {l.name: l.get_weights() for l in recover(model, x, steps=()).layers if l.weights}
    out = recover(model, x, steps=STEPS, iterations=20, samples=64, **settings)
    conv, dense = out.get_layer("conv").kernel.numpy(), out.get_layer("logits").kernel.numpy()
    assert _off_grid(conv, qmax, (0, 1, 2)) < 1e-3 and _off_grid(dense, qmax, (0,)) < 1e-3
    assert _off_grid(before["conv"][0], qmax, (0, 1, 2)) > 0.1  # the float kernel was not
    # bias correction moved the biases (the mean output shift of the chosen integers)
    assert not np.allclose(out.get_layer("logits").bias.numpy(), before["logits"][1])
    assert set(out.recovery) == set(STEPS)


def test_bias_correction_removes_the_mean_output_shift(bn_model):
    """After correction the recovered model's mean logits on the calibration images are closer
    to the float model's than round-to-nearest weights alone leave them."""
    model, x = bn_model
    settings = modes.recovery_settings("dynamic_wi4")
    reference = recover(model, x, steps=()).predict(x, verbose=0).mean(0)
    rounded = recover(model, x, steps=(), **settings)
    for layer in rounded.layers:  # round-to-nearest on the same 4-bit grid
        for kernel in tfcompress.ptq.grids.kernels(layer, 4):
            w = getattr(layer, kernel.attr)
            w.assign(tfcompress.ptq.grids.round_to_nearest(w.numpy(), 4, kernel.reduce_axes))
    corrected = recover(model, x, steps=("correct_bias",), samples=128, **settings)
    shift_rtn = np.abs(rounded.predict(x, verbose=0).mean(0) - reference).mean()
    shift_corrected = np.abs(corrected.predict(x, verbose=0).mean(0) - reference).mean()
    assert shift_corrected < shift_rtn


def test_bad_steps_are_one_line_errors(bn_model):
    model, x = bn_model
    with pytest.raises(errors.ConfigError, match="unknown recovery step 'qat'") as e:
        recover(model, x, steps=("equalize", "qat"))
    assert "\n" not in str(e.value) and "adaround" in str(e.value)


def test_block_wise_bias_correction_deploys_its_table_and_removes_its_shift():
    """dynamic_wi4_block32 on a text model whose table rows hold two blocks: the int4 integers
    of the recovered table and Dense kernel are the flatbuffer's, and the mean output shift the
    table's rounding leaves (every text averages it in) is smaller than min-max leaves it."""
    import helpers
    from model_kinds import SEQ_LEN, VOCAB, _tokens
    from tfcompress.export.validation import predict
    from tfcompress.ptq import grids

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SEQ_LEN,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 64, name="emb")(inputs))
    h = keras.layers.Dense(16, activation="relu", name="dense")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    x, y = _tokens(400, 0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:300], y[:300], epochs=5, batch_size=32, verbose=0)
    settings = modes.recovery_settings("dynamic_wi4_block32")
    assert settings["block"] == 32
    out = recover(model, x[:300], steps=("correct_bias",), **settings)
    fb = tfcompress.convert(out, "dynamic_wi4_block32")
    deployed = helpers.flatbuffer_integers(fb)
    table, kernel = out.get_layer("emb").embeddings.numpy(), out.get_layer("dense").kernel.numpy()
    helpers.assert_deployed({
        "emb": np.rint(table / grids.block_scale(table, 4, 1, 32)).astype(np.int32),
        "dense": np.rint(kernel / grids.block_scale(kernel, 4, 0, 32)).astype(np.int32).T},
        deployed)
    reference = model.predict(x[300:], verbose=0).mean(0)
    plain = predict(tfcompress.convert(model, "dynamic_wi4_block32"), x[300:]).mean(0)
    corrected = predict(fb, x[300:]).mean(0)
    assert np.abs(corrected - reference).mean() < np.abs(plain - reference).mean()
    with pytest.raises(errors.ConfigError, match="block-wise grid .block=32.*'adaround'") as e:
        recover(model, x[:64], steps=("adaround",), **settings)
    assert "\n" not in str(e.value) and "correct_bias" in str(e.value)
