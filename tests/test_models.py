import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tfcompress import errors, keras, models


def test_digits_cnn_size_and_width():
    model = models.digits_cnn()
    assert model.count_params() == 151_306
    assert model.get_layer("logits").activation is keras.activations.linear
    thin = models.digits_cnn(width=0.5)
    assert thin.count_params() < 0.3 * model.count_params()
    with pytest.raises(errors.ConfigError, match="width=0"):
        models.digits_cnn(width=0)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_applications_build_without_weights(name):
    model = models.build(name, (96, 96, 3), 7, width=0.35)
    assert model.output_shape == (None, 7)
    assert isinstance(model, keras.Model)


def test_unknown_model_name():
    with pytest.raises(errors.ConfigError, match="unknown model 'resnet9'; accepted: digits_cnn"):
        models.build("resnet9", (8, 8, 1), 10)


@pytest.mark.parametrize("fmt", [".keras", ".h5", "savedmodel"])
def test_save_and_load_round_trip(tmp_path, fmt):
    model = models.digits_cnn(width=0.25)
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    path = str(tmp_path / ("m" + fmt if fmt != "savedmodel" else "sm"))
    if fmt == "savedmodel":
        model.save(path, save_format="tf")
    else:
        models.save_model(model, path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.rsplit("/", 1)[1]]  # no temp files


def test_load_model_errors(tmp_path):
    with pytest.raises(errors.ModelError, match="does not exist"):
        models.load_model(str(tmp_path / "nope.keras"))
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(errors.ModelError, match="unknown extension; accepted: .keras, .h5"):
        models.load_model(str(tmp_path / "m.pt"))
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(errors.ModelError, match="cannot load model"):
        models.load_model(str(tmp_path / "bad.keras"))


@pytest.mark.parametrize("kind", ["pruned", "clustered", "qat"])
def test_safe_mode_loads_tfmot_models_from_h5(tmp_path, kind):
    """The safe policy refuses code and unknown classes, not tfmot's wrappers and schedules."""
    import tfcompress

    keras.utils.set_random_seed(0)
    base = models.digits_cnn(width=0.25)
    model = {"pruned": lambda: tfcompress.prune(base, 0.5, epochs=1, steps_per_epoch=10),
             "clustered": lambda: tfcompress.cluster(base, 8),
             "qat": lambda: tfcompress.quantize_aware(base)}[kind]()
    (x, y), (x_test, _) = tfcompress.data.load_digits()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()] if kind == "pruned" else []
    model.fit(x[:320], y[:320], batch_size=32, epochs=3, callbacks=callbacks, verbose=0)
    want = model.predict(x_test[:16], verbose=0)
    assert np.ptp(want, axis=0).max() > 0.1  # trained a few steps: outputs vary with the input
    path = str(tmp_path / "m.h5")
    model.save(path)
    loaded = models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x_test[:16], verbose=0), want, atol=1e-5)


def test_check_safe_names_the_layer_of_an_unknown_class(tmp_path):
    import h5py
    import json

    path = str(tmp_path / "m.h5")
    models.digits_cnn(width=0.25).save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][2]["class_name"] = "EvilLayer"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(errors.ModelError, match=r"unknown class 'EvilLayer' \(layer 'conv2'\)"):
        models.load_model(path)


@pytest.mark.parametrize("name,shape,classes,params", [
    ("text_bow", (64,), 6, (30_000, 35_000)), ("text_transformer", (64,), 6, (70_000, 76_000)),
    ("kws_dscnn", (49, 10, 1), 12, (20_000, 40_000))])
def test_text_and_keyword_models_build_save_and_load(name, shape, classes, params, tmp_path):
    model = models.build(name, shape, classes)
    assert params[0] <= model.count_params() <= params[1]
    text = name.startswith("text")
    assert model.input.dtype == ("int32" if text else "float32")
    x = (np.arange(2 * 64, dtype=np.int32).reshape(2, 64) % 2000 if text
         else np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32))
    y = model.predict(x, verbose=0)
    assert y.shape == (2, classes) and np.allclose(y.sum(-1), 1, atol=1e-5)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(norms) == (0 if text else 9)
    path = models.save_model(model, str(tmp_path / "m.keras"))  # safe mode: standard layers only
    np.testing.assert_allclose(models.load_model(path).predict(x, verbose=0), y, atol=1e-6)


def test_text_transformer_attention_dropout_acts_in_training_only():
    model = models.text_transformer(width=0.5)
    ids = np.random.default_rng(0).integers(0, models.TEXT_VOCABULARY, (4, 64)).astype(np.int32)
    inference = model(ids, training=False).numpy()
    assert np.array_equal(inference, model(ids, training=False).numpy())
    assert not np.allclose(inference, model(ids, training=True).numpy())
    plain = models.text_transformer(width=0.5, attention_dropout=0.0)
    plain.set_weights(model.get_weights())
    assert np.allclose(plain(ids, training=True).numpy(), inference, atol=1e-6)
