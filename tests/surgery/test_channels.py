import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.pipeline import recipe
from tfcompress.pipeline import stages
from tfcompress.surgery import channels as surgery
from tfcompress.surgery import factorization
from tfcompress.profiling import profile

from helpers import keras_accuracy

L = keras.layers


def _x(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(shape), np.float32)


def _randomize(model, seed=1):
    """Non-trivial weights everywhere (BatchNorm statistics and biases included)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        new = []
        for w, v in zip(ws, layer.weights):
            if "moving_variance" in v.name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            else:
                new.append(rng.normal(0, 0.3, w.shape).astype(np.float32))
        layer.set_weights(new)
    return model


def residual_net(bn=True, classes=5):
    """Functional: conv stem, two residual branches (Add), depthwise, concat, flatten, dense."""
    inp = keras.Input((8, 8, 3))
    norm = (lambda name: L.BatchNormalization(name=name)) if bn else (
        lambda name: L.Activation("linear", name=name))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = norm("stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="branch_a")(x)
    x = L.Add(name="add1")([x, a])
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.DepthwiseConv2D(3, use_bias=False, name="dw")(x)
    x = norm("dw_bn")(x)
    b = L.Conv2D(6, 1, name="branch_b")(x)
    c = L.Conv2D(4, 1, activation="relu", name="branch_c")(x)
    x = L.Concatenate(name="concat")([b, c])
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Flatten(name="flat")(x)
    x = norm("flat_bn")(x)
    x = L.Dense(12, activation="relu", name="fc")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="residual_net")


def _zeroed_like(model, pruned):
    """A copy of ``model`` whose removed producer channels are zero (the same function when the
    graph has no BatchNorm and no biases after the producers)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for name, kept in pruned.surgery_report.kept.items():
        layer = clone.get_layer(name)
        ws = layer.get_weights()
        mask = np.zeros(ws[0].shape[-1], bool)
        mask[kept] = True
        layer.set_weights([w * mask for w in ws])
    return clone


@pytest.mark.parametrize("build", [
    lambda: models.digits_cnn(width=0.5),
    lambda: residual_net(bn=True),
    lambda: models.build("mobilenet_v2", (32, 32, 3), 7, width=0.35),
    lambda: models.build("mobilenet_v3_small", (32, 32, 3), 7, width=0.75),
], ids=["sequential_cnn", "functional_residual", "mobilenet_v2", "mobilenet_v3_small"])
def test_ratio_zero_gives_identical_outputs(build):
    model = _randomize(build())
    pruned = surgery.prune_channels(model, 0.0)
    x = _x(model.input_shape[1:])
    np.testing.assert_allclose(pruned(x).numpy(), model(x).numpy(), atol=1e-5)
    assert pruned.count_params() == model.count_params()
    assert type(pruned) is type(model)
    half = surgery.prune_channels(model, 0.5, round_to=1)
    assert half.surgery_report.not_followed == ()  # squeeze-excite, hard-swish ops followed
    assert half(x).shape == model(x).shape
    assert profile(half)["macs"] < 0.55 * profile(model)["macs"]


def test_pruned_model_computes_the_zeroed_model():
    """Removing channels equals zeroing them in the original: every index mapping is right."""
    model = _randomize(residual_net(bn=False))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    x = _x((8, 8, 3), n=8)
    np.testing.assert_allclose(pruned(x).numpy(), _zeroed_like(model, pruned)(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert pruned.surgery_report.not_followed == ()
    # the residual group (stem + branch_a) keeps one shared index set
    np.testing.assert_array_equal(pruned.surgery_report.kept["stem"],
                                  pruned.surgery_report.kept["branch_a"])
    widths = {k: v["after"] for k, v in pruned.surgery_report.changed.items()}
    assert widths == {"stem": 4, "branch_a": 4, "branch_b": 3, "branch_c": 2, "fc": 6}
    assert pruned.get_layer("dw").depthwise_kernel.shape[2] == 4
    assert pruned.output_shape == model.output_shape  # the classifier keeps its outputs
    assert profile(pruned)["macs"] < 0.35 * profile(model)["macs"]


def test_batchnorm_model_and_bn_criterion():
    model = _randomize(residual_net(bn=True))
    gamma = np.array([5, 0.1, 4, 0.2, 3, 0.3, 2, 0.4], np.float32)
    bn = model.get_layer("stem_bn")
    bn.set_weights([gamma] + bn.get_weights()[1:])
    pruned = surgery.prune_channels(model, 0.5, criterion="bn", round_to=1)
    np.testing.assert_array_equal(pruned.surgery_report.kept["stem"], [0, 2, 4, 6])
    assert pruned.get_layer("stem_bn").gamma.numpy().tolist() == [5, 4, 3, 2]
    assert pruned.get_layer("dw_bn").gamma.shape == (4,)
    # after Flatten: 4x4 positions x (6 + 4 concatenated channels), kept ones in order
    kept = pruned.surgery_report.kept
    channels = np.concatenate([kept["branch_b"], 6 + kept["branch_c"]])
    flat_gamma = model.get_layer("flat_bn").gamma.numpy().reshape(16, 10)[:, channels]
    np.testing.assert_array_equal(pruned.get_layer("flat_bn").gamma.numpy(), flat_gamma.ravel())
    # a group without BatchNorm (branch_b, branch_c) falls back to l1, and says so
    assert any("ranked by l1" in n for n in pruned.surgery_report.notes)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_keep_the_largest_filters(criterion):
    model = _randomize(models.digits_cnn(width=0.25))
    k = model.get_layer("conv1").kernel.numpy().reshape(-1, 8)
    norm = np.abs(k).sum(0) if criterion == "l1" else np.sqrt((k ** 2).sum(0))
    pruned = surgery.prune_channels(model, 0.5, criterion=criterion, layers=["conv1"],
                                    round_to=1)
    np.testing.assert_array_equal(pruned.surgery_report.kept["conv1"],
                                  np.sort(np.argsort(-norm)[:4]))
    assert set(pruned.surgery_report.changed) == {"conv1"}  # only the selected layer
    assert pruned.get_layer("conv2").kernel.shape == (3, 3, 4, 16)


def test_unfollowed_layer_is_left_whole_and_named():
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = L.Reshape((4, 8, 4), name="reshape")(x)  # channels mixed with a spatial axis
    x = L.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, activation="softmax", name="out")(x)
    model = _randomize(keras.Model(inp, out))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    assert pruned.surgery_report.not_followed == ("reshape",)
    assert pruned.get_layer("c1").filters == 8  # feeds the unfollowed layer: whole
    assert pruned.get_layer("c2").filters == 4
    x = _x((6, 6, 2))
    assert pruned(x).shape == model(x).shape


def test_tf_op_with_a_tensor_argument_is_not_followed():
    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(inp)
    x = keras.layers.Lambda(lambda t: t, name="id")(a)
    y = tfcompress.keras.backend.relu(a + 1.0)  # element-wise with numbers: followed
    z = L.Add(name="add")([y, x])
    w = L.Conv2D(8, 1, name="c")(z)
    out = L.GlobalAveragePooling2D()(w * b)  # tensor x tensor TF op: not followed
    model = keras.Model(inp, L.Dense(2, name="out")(out))
    pruned = surgery.prune_channels(_randomize(model), 0.5, round_to=1)
    ops = [layer.name for layer in model.layers if type(layer).__name__ == "TFOpLambda"]
    assert set(pruned.surgery_report.not_followed) == {"id", ops[-1]}
    assert [pruned.get_layer(n).filters for n in "abc"] == [8, 8, 8]
    assert pruned(_x((6, 6, 2))).shape == (4, 2)


def test_pruned_digits_cnn_fine_tunes_back(digits, trained_cnn):
    (x, y), (xt, yt) = digits
    base = keras_accuracy(trained_cnn, xt, yt)
    pruned = surgery.prune_channels(trained_cnn, 0.5)
    assert pruned.count_params() < 0.3 * trained_cnn.count_params()
    keras.utils.set_random_seed(0)
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    pruned.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert keras_accuracy(pruned, xt, yt) >= base - 0.03


@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_surgery_results_save_and_load(tmp_path, fmt):
    model = _randomize(residual_net())
    x = _x((8, 8, 3))
    for new in (surgery.prune_channels(model, 0.5), factorization.factorize(model, rank=2)):
        path = models.save_model(new, str(tmp_path / (new.surgery_report.kind + fmt)))
        np.testing.assert_allclose(models.load_model(path)(x).numpy(), new(x).numpy(), atol=1e-6)


def test_prune_channels_errors():
    model = models.digits_cnn(width=0.25)
    with pytest.raises(errors.ConfigError, match=r"ratio=1.0; accepted: a number in \[0, 1\)"):
        surgery.prune_channels(model, 1.0)
    with pytest.raises(errors.ConfigError, match="unknown criterion 'l3'; accepted: l1, l2, bn"):
        surgery.prune_channels(model, 0.5, criterion="l3")
    with pytest.raises(errors.ConfigError, match="unknown layer to prune 'pool'; accepted: conv1"):
        surgery.prune_channels(model, 0.5, layers=["pool"])

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.ModelError, match="subclassed"):
        surgery.prune_channels(Sub(), 0.5)


# ----------------------------------------------------------------------------- factorize


def _low_rank_reference(model, name, r):
    """``model`` with layer ``name``'s kernel replaced by its rank-r SVD approximation."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    layer = clone.get_layer(name)
    k, *rest = layer.get_weights()
    u, s, vt = np.linalg.svd(k.reshape(-1, k.shape[-1]), full_matrices=False)
    approx = (u[:, :r] * s[:r]) @ vt[:r]
    layer.set_weights([approx.reshape(k.shape)] + rest)
    return clone


@pytest.mark.parametrize("name,r", [("fc", 3), ("branch_a", 2), ("stem", 3)])
def test_factorize_equals_truncated_svd(name, r):
    model = _randomize(residual_net(bn=True))
    new = factorization.factorize(model, rank=r, layers=[name])
    x = _x((8, 8, 3))
    np.testing.assert_allclose(new(x).numpy(), _low_rank_reference(model, name, r)(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    low, second = new.get_layer(f"{name}_lowrank"), new.get_layer(name)
    assert not low.use_bias and second.use_bias == model.get_layer(name).use_bias
    assert second.activation is model.get_layer(name).activation
    assert new.surgery_report.changed[name]["rank"] == r
    assert new.count_params() < model.count_params()


def test_factorize_energy_finds_the_true_rank():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((40,)), L.Dense(60, activation="relu", name="d"),
                              L.Dense(4, name="out")])
    kernel = (rng.normal(size=(40, 3)) @ rng.normal(size=(3, 60))).astype(np.float32)
    model.get_layer("d").set_weights([kernel, rng.normal(size=60).astype(np.float32)])
    new = factorization.factorize(model, energy=0.9999)
    assert isinstance(new, keras.Sequential)
    assert new.surgery_report.changed == {"d": {"rank": 3, "before": 2400, "after": 300}}
    assert any("out: rank" in n for n in new.surgery_report.notes)  # 60x4 would grow: kept
    x = rng.random((5, 40), np.float32)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
    assert profile(new)["params"] == model.count_params() - 2400 + 300


def test_factorize_errors():
    model = models.digits_cnn(width=0.25)
    with pytest.raises(errors.ConfigError, match="exactly one of them"):
        factorization.factorize(model)
    with pytest.raises(errors.ConfigError, match="exactly one of them"):
        factorization.factorize(model, energy=0.9, rank=3)
    with pytest.raises(errors.ConfigError, match=r"energy=1.5; accepted: a number in \(0, 1\]"):
        factorization.factorize(model, energy=1.5)
    with pytest.raises(errors.ConfigError, match="rank=0; accepted: an integer >= 1"):
        factorization.factorize(model, rank=0)
    with pytest.raises(errors.ConfigError, match="unknown layer to factorize 'pool'"):
        factorization.factorize(model, rank=2, layers=["pool"])


def test_public_api_and_stages_registered():
    assert tfcompress.prune_channels is surgery.prune_channels
    assert tfcompress.factorize is factorization.factorize
    assert {"prune_channels", "factorize"} <= set(stages.STAGES)
    config = recipe.default_config()
    assert config.prune_channels.ratio == 0.5 and config.factorize.energy == 0.9


@pytest.mark.slow
def test_prune_channels_stage_in_a_recipe(tmp_path):
    config = recipe.default_config()
    config.data.limit = 256
    config.train.epochs = 1
    config.stages = ("prune_channels",)
    config.prune_channels.epochs = 1
    config.convert.modes = ("float32",)
    config.validate.latency_runs = 2
    report = tfcompress.run_recipe(config, str(tmp_path))
    stats = report["stages"]["prune_channels"]
    assert stats["params_after"] == profile(models.digits_cnn(width=0.5))["params"]
    assert stats["macs_ratio"] < 0.3 and stats["not_followed"] == []
    assert report["profile"]["final"]["params"] == stats["params_after"]
    text = (tmp_path / "report.md").read_text()
    assert f"parameters {stats['params_before']:,} -> {stats['params_after']:,}" in text
    assert stats["batchnorm_recalibrated"] == 0  # the digits CNN has no BatchNormalization


@pytest.mark.slow
def test_surgery_stage_recalibrates_batchnorm(tmp_path):
    config = recipe.default_config()
    config.data.limit = 256
    config.model.name, config.model.width = "mini_xception", 0.5
    config.train.epochs = 1
    config.stages = ("prune_channels",)
    config.prune_channels.update(ratio=0.25, round_to=1, epochs=0)
    config.convert.modes = ("float32",)
    config.validate.latency_runs = 2
    report = tfcompress.run_recipe(config, str(tmp_path))
    stats = report["stages"]["prune_channels"]
    bns = [layer for layer in models.mini_xception(width=0.5).layers
           if isinstance(layer, L.BatchNormalization)]
    assert stats["batchnorm_recalibrated"] == len(bns) > 0


# ----------------------------------------------------------------------------- real architectures


@pytest.mark.parametrize("name,shape", [
    ("mini_xception", (8, 8, 1)), ("digits_conv1d", (8, 8)), ("digits_unet", (8, 8, 1)),
    ("se_mobilenet", (8, 8, 1))])
def test_reference_architectures_are_followed(name, shape):
    model = _randomize(models.build(name, shape, 10, width=0.5))
    x = _x(shape)
    same = surgery.prune_channels(model, 0.0)
    np.testing.assert_allclose(same(x).numpy(), model(x).numpy(), atol=1e-5)
    half = surgery.prune_channels(model, 0.5, round_to=1)
    assert half.surgery_report.not_followed == ()
    assert half(x).shape == model(x).shape
    assert profile(half)["macs"] < 0.35 * profile(model)["macs"]


def _chain_net():
    """SeparableConv (depth multiplier 2), transposed conv, shape-only layers, Concatenate;
    no biases and no normalization, so removing a channel equals zeroing its filter."""
    inp = keras.Input((6, 6, 3))
    a = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, use_bias=False,
                          activation="relu", name="sep_a")(inp)
    b = L.Conv2DTranspose(6, 2, strides=2, use_bias=False, name="up")(a)  # 12x12
    b = L.PReLU(shared_axes=[1, 2], name="prelu")(b)
    b = L.ZeroPadding2D(1, name="pad")(b)
    b = L.Cropping2D(2, name="crop")(b)  # 10x10
    b = L.AveragePooling2D(2, name="pool")(b)  # 5x5
    b = L.UpSampling2D(2, name="ups")(b)  # 10x10
    c = L.SeparableConv2D(10, 3, use_bias=False, name="sep_c")(b)  # 8x8
    c = L.Cropping2D(1, name="crop_c")(c)  # 6x6
    d = L.Concatenate(name="concat")([c, a])
    d = L.Conv2D(6, 1, use_bias=False, name="mix")(d)
    d = L.GlobalAveragePooling2D(name="gap")(d)
    return keras.Model(inp, L.Dense(3, name="out")(d))


def _zero_removed(model, pruned):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for name, kept in pruned.surgery_report.kept.items():
        layer = clone.get_layer(name)
        ws = layer.get_weights()
        axis = -2 if "Transpose" in type(layer).__name__ else -1
        index = 1 if "Separable" in type(layer).__name__ else 0
        mask = np.zeros(ws[index].shape[axis], np.float32)
        mask[kept] = 1
        ws[index] = ws[index] * (mask[:, None] if axis == -2 else mask)
        layer.set_weights(ws)
    return clone


def test_separable_transposed_and_concat_equal_the_zeroed_model():
    model = _randomize(_chain_net())
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    report = pruned.surgery_report
    assert report.not_followed == ()
    assert {k: v["after"] for k, v in report.changed.items()} == {
        "sep_a": 4, "up": 3, "sep_c": 5, "mix": 3}
    sep_a, sep_c = pruned.get_layer("sep_a"), pruned.get_layer("sep_c")
    assert sep_a.depthwise_kernel.shape == (3, 3, 3, 2)  # input channels and multiplier kept
    assert sep_a.pointwise_kernel.shape == (1, 1, 6, 4)
    assert sep_c.depthwise_kernel.shape == (3, 3, 3, 1)
    assert pruned.get_layer("up").kernel.shape == (2, 2, 3, 4)
    assert pruned.get_layer("mix").kernel.shape == (1, 1, 5 + 4, 3)
    x = _x((6, 6, 3), n=6)
    np.testing.assert_allclose(pruned(x).numpy(), _zero_removed(model, pruned)(x).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_squeeze_excite_with_reshape_follows_the_pruned_channels():
    model = _randomize(models.se_mobilenet(width=0.5))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    kept = pruned.surgery_report.kept
    np.testing.assert_array_equal(kept["b1_se_expand"], kept["b1_expand"])  # one group
    c = len(kept["b1_expand"])
    assert pruned.get_layer("b1_se_reshape").target_shape == (1, 1, c)
    assert pruned.get_layer("b1_se_expand").kernel.shape == (
        len(kept["b1_se_reduce"]), c)
    assert pruned.get_layer("b1_dw").depthwise_kernel.shape[2] == c


def test_layer_normalization_and_conv1d_are_followed():
    inp = keras.Input((8, 8))
    x = L.Conv1D(12, 3, padding="same", name="c1")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Reshape((4, 2, 12), name="reshape")(x)  # channels stay last: followed
    x = L.Conv2D(10, 2, name="c2")(x)
    x = L.Flatten(name="flat")(x)
    model = _randomize(keras.Model(inp, L.Dense(3, name="out")(x)))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    assert pruned.surgery_report.not_followed == ()
    assert pruned.get_layer("ln").gamma.shape == (6,)
    kept = pruned.surgery_report.kept["c1"]
    np.testing.assert_array_equal(pruned.get_layer("ln").beta.numpy(),
                                  model.get_layer("ln").beta.numpy()[kept])
    assert pruned.get_layer("reshape").target_shape == (4, 2, 6)
    assert pruned.get_layer("out").kernel.shape == (3 * 1 * 5, 3)


@pytest.mark.parametrize("round_to,widths", [(1, [17, 34]), (4, [16, 36]), (8, [16, 32]),
                                             (16, [16, 32])])
def test_round_to_keeps_kernel_friendly_channel_counts(round_to, widths):
    model = _randomize(models.digits_cnn(width=0.75))  # 24, 48 channels
    pruned = surgery.prune_channels(model, 0.3, round_to=round_to)
    assert [pruned.get_layer(n).filters for n in ("conv1", "conv2")] == widths
    default = surgery.prune_channels(model, 0.3)
    assert [default.get_layer(n).filters for n in ("conv1", "conv2")] == [16, 32]  # round_to 8
    assert surgery.kept_count(12, 0.3, 16) == 12  # a group smaller than round_to: whole
    with pytest.raises(errors.ConfigError, match="round_to=0; accepted: an integer >= 1"):
        surgery.prune_channels(model, 0.3, round_to=0)


@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_report_survives_plain_keras_save(tmp_path, fmt):
    model = _randomize(residual_net())
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    path = str(tmp_path / ("m" + fmt))
    pruned.save(path)  # Keras' own save, not ours
    plain = keras.models.load_model(path, compile=False)  # still a plain Keras model
    assert plain.get_layer("stem").filters == 4
    for report in (surgery.report_of(path), models.load_model(path).surgery_report):
        assert report.changed == pruned.surgery_report.changed
        assert report.not_followed == pruned.surgery_report.not_followed
        np.testing.assert_array_equal(report.kept["stem"], pruned.surgery_report.kept["stem"])
    assert surgery.report_of(models.digits_cnn()) is None


def test_keras2_h5_functional_model_loads_prunes_trains_and_converts(tmp_path, digits):
    (x, y), _ = digits
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(10, activation="softmax", name="out")(h)
    path = str(tmp_path / "user.h5")
    keras.Model(inp, out).save(path, save_format="h5")
    model = models.load_model(path)
    pruned = surgery.prune_channels(model, 0.5)
    assert pruned.surgery_report.not_followed == ()
    assert [pruned.get_layer(n).filters for n in ("c1", "sep")] == [8, 8]
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    history = pruned.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    from tfcompress.export.validation import predict

    out = predict(tfcompress.convert(pruned, "float32"), x[:5])
    np.testing.assert_allclose(out, pruned.predict(x[:5], verbose=0), atol=1e-5)


def _multiplier_net(bn: bool):
    """DepthwiseConv2D with depth_multiplier 2 in two branches joined by Add (BN optional)."""
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", use_bias=False, activation="relu", name="c1")(inp)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=bn, name="dw")(a)
    if bn:
        b = L.BatchNormalization(name="bn")(b)
    b = L.ReLU(name="relu")(b)
    c = L.DepthwiseConv2D(1, depth_multiplier=2, use_bias=False, name="dw2")(a)
    d = L.Add(name="add")([b, c])
    d = L.Conv2D(6, 1, use_bias=False, name="c2")(d)
    d = L.GlobalAveragePooling2D(name="gap")(d)
    return keras.Model(inp, L.Dense(3, name="out")(d))


def test_depth_multiplier_channels_follow_their_input_channel():
    model = _randomize(_multiplier_net(bn=False))
    x = _x((8, 8, 3))
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    report = pruned.surgery_report
    assert report.not_followed == ()
    assert {k: v["after"] for k, v in report.changed.items()} == {"c1": 4, "c2": 3}
    assert pruned.get_layer("dw").depthwise_kernel.shape == (3, 3, 4, 2)
    assert pruned.get_layer("dw2").depthwise_kernel.shape == (1, 1, 4, 2)
    assert pruned.get_layer("c2").kernel.shape == (1, 1, 8, 3)
    np.testing.assert_allclose(pruned(x).numpy(), _zero_removed(model, pruned)(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    # Input channel c owns outputs 2c and 2c + 1: BatchNormalization and the bias follow them.
    model = _randomize(_multiplier_net(bn=True))
    np.testing.assert_allclose(surgery.prune_channels(model, 0.0)(x).numpy(), model(x).numpy(),
                               atol=1e-5)
    pruned = surgery.prune_channels(model, 0.5, round_to=1)
    kept = pruned.surgery_report.kept["c1"]
    rows = (kept[:, None] * 2 + np.arange(2)).reshape(-1)
    np.testing.assert_array_equal(pruned.get_layer("bn").get_weights()[0],
                                  model.get_layer("bn").get_weights()[0][rows])
    np.testing.assert_array_equal(pruned.get_layer("dw").bias.numpy(),
                                  model.get_layer("dw").bias.numpy()[rows])
    assert pruned(x).shape == (4, 3)
