"""The stage table: each stage's adapter run on a tiny model, its recorded figures read back
against the model it returns."""

import numpy as np
import pytest

import tfcompress
from tfcompress import keras
from tfcompress.pipeline import recipe, stages


def _bn_cnn(width: int = 8) -> keras.Model:
    """A tiny CNN with BatchNormalization (as in DS-CNN, MobileNet, ResNet)."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def ctx():
    config = recipe.check_config({"data": {"limit": 300}, "train": {"epochs": 1}})
    return stages.Context(config, recipe.load_data(config), "/nonexistent")


@pytest.fixture(scope="module")
def bn_model(ctx):
    keras.utils.set_random_seed(0)
    return ctx.fit(_bn_cnn(), 2)


def _zeros(model, name: str) -> float:
    kernel = model.get_layer(name).kernel.numpy()
    return float(np.mean(kernel == 0))


def test_context_accuracy_is_validation_top1(ctx, bn_model):
    x, y = ctx.validation
    expected = float(np.mean(bn_model.predict(x, verbose=0).argmax(-1) == y))
    assert ctx.accuracy(bn_model) == expected
    assert ctx.num_classes == 10
    assert ctx.steps_per_epoch == int(np.ceil(len(ctx.train[0]) / 32))


def test_prune_stage_on_a_batchnorm_model(ctx, bn_model):
    """tfmot wraps BatchNormalization but prunes no weight of it: the stage reports the layers
    that hold a pruned kernel, with the sparsity read back from the returned model."""
    section = ctx.config.prune.copy_and_resolve_references()
    section.epochs, section.target_sparsity = 1, 0.5
    out = stages.STAGES["prune"].fn(bn_model, section, ctx)
    stats = ctx.stats["prune"]
    assert "bn0" not in stats["sparsity"] and "bn1" not in stats["sparsity"]
    assert set(stats["sparsity"]) == {"conv0", "conv1", "logits"}
    for name, sparsity in stats["sparsity"].items():
        assert sparsity == pytest.approx(_zeros(out, name), abs=1e-6)
        assert sparsity == pytest.approx(0.5, abs=0.02)
    assert stats["accuracy_after"] == ctx.accuracy(out)
    assert not any(isinstance(layer, keras.layers.Wrapper) for layer in out.layers)


def test_cluster_stage_on_a_batchnorm_model(ctx, bn_model):
    section = ctx.config.cluster.copy_and_resolve_references()
    section.epochs, section.number_of_clusters, section.preserve_sparsity = 1, 4, False
    out = stages.STAGES["cluster"].fn(bn_model, section, ctx)
    stats = ctx.stats["cluster"]
    assert not {"bn0", "bn1"} & set(stats["unique_weights"])
    assert stats["unique_weights"]
    for name, unique in stats["unique_weights"].items():
        assert unique == len(np.unique(out.get_layer(name).kernel.numpy()))
        assert unique <= 4
    assert stats["max_unique_weights"] == max(stats["unique_weights"].values())


def test_prune_and_cluster_stages_record_what_they_left_alone(ctx, bn_model):
    """keep_first_last keeps logits (90 of 802 parameters, 11.2%) dense: the stage stats name it
    with its share, and the recipe report's Markdown shows it (issue 25)."""
    from tfcompress import wrappers
    from tfcompress.pipeline import report
    share = wrappers.weight_shares(bn_model)["logits"]
    assert share > wrappers.LEFT_ALONE_SHARE
    for name in ("prune", "cluster"):
        section = getattr(ctx.config, name).copy_and_resolve_references()
        section.epochs, section.keep_first_last = 1, True
        if name == "cluster":
            section.number_of_clusters, section.preserve_sparsity = 4, False
        stages.STAGES[name].fn(bn_model, section, ctx)
        left = dict(ctx.stats[name]["left_alone"])
        assert left["logits"] == pytest.approx(share, abs=1e-4)
        assert "conv0" not in left  # 72 parameters, 9.0%: under the threshold
        text = report.markdown({"stages": {name: ctx.stats[name]}, "formats": []})
        assert f"left alone: logits ({share:.1%} of the weights)" in text


def test_recipe_runs_the_prune_stage_on_a_batchnorm_model(tmp_path, ctx, bn_model):
    """The recipe on a user's BatchNormalization model (the KeyError 'bn0' of issue 25)."""
    path = str(tmp_path / "bn.keras")
    bn_model.save(path)
    config = recipe.check_config({
        "model": {"path": path}, "data": {"limit": 300}, "stages": ("prune",),
        "prune": {"epochs": 1, "target_sparsity": 0.5},
        "convert": {"modes": ("float32",), "representative_samples": 8},
        "validate": {"latency_runs": 0}})
    report = tfcompress.run_recipe(config, str(tmp_path / "run"))
    assert set(report["stages"]["prune"]["sparsity"]) == {"conv0", "conv1", "logits"}
    assert report["formats"][-1]["format"] == "float32"


@pytest.mark.slow
def test_search_smoke_prunes_a_batchnorm_model(tmp_path, bn_model):
    """One search trial that prunes a BatchNormalization model completes (the KeyError took
    the whole search down) and reports the pruned layers' sparsity from its own folder."""
    import json
    import os

    path = str(tmp_path / "bn.keras")
    bn_model.save(path)
    config = tfcompress.pipeline.search.default_config()
    config.recipe.model.path = path
    config.recipe.data.limit = 300
    config.recipe.convert.representative_samples = 8
    config.recipe.validate.latency_runs = 0
    config.recipe.prune.epochs = 1
    config.space.mode = ("int8",)
    for dim in ("distill_width", "channel_ratio", "factorize_energy"):
        config.space[dim] = (0.0,)
    config.space.sparsity = (0.5,)
    config.space.clusters = (0,)
    config.space.recovery = (0,)
    config.n_trials = 1
    summary = tfcompress.search(config, str(tmp_path / "search"))
    assert summary["states"] == {"COMPLETE": 1}
    (trial,) = summary["front"]
    assert trial["stages"] == ["prune"]
    with open(os.path.join(os.path.dirname(trial["tflite"]), "report.json")) as f:
        sparsity = json.load(f)["stages"]["prune"]["sparsity"]
    assert set(sparsity) == {"conv0", "conv1", "logits"}
    assert all(abs(v - 0.5) < 0.02 for v in sparsity.values())


@pytest.fixture(scope="module")
def text_ctx():
    config = recipe.check_config({"data": {"name": "text", "limit": 300},
                                  "train": {"epochs": 1, "learning_rate": 3e-3}})
    return stages.Context(config, recipe.load_data(config), "/nonexistent")


@pytest.fixture(scope="module")
def text_transformer(text_ctx):
    """The bundled text recipe's Transformer at half width: Embedding(2000, 16), attention of
    2 heads of 8, feed-forward 32, one encoder block; fitted one epoch."""
    from tfcompress import models
    keras.utils.set_random_seed(0)
    model = models.text_transformer((64,), text_ctx.num_classes, width=0.5)
    return text_ctx.fit(model, 1)


def _attention_params_per_head(layer) -> int:
    """Weights one head holds: its query/key/value kernel columns and biases, its rows of the
    output kernel."""
    cfg, dim = layer.get_config(), layer.get_weights()[0].shape[0]
    return 3 * (dim * cfg["key_dim"] + cfg["key_dim"]) + cfg["key_dim"] * dim


def test_prune_channels_stage_removes_heads_ranked_on_calibration_data(text_ctx,
                                                                       text_transformer):
    """The stage passes training samples to prune_channels: heads are ranked by their output
    (the report's note says so); heads_only removes one of the 2 heads and keeps every width."""
    model = text_transformer
    section = text_ctx.config.prune_channels.copy_and_resolve_references()
    section.epochs, section.ratio, section.heads_only = 0, 0.5, True
    out = stages.STAGES["prune_channels"].fn(model, section, text_ctx)
    stats = text_ctx.stats["prune_channels"]
    assert out.get_layer("attention").get_config()["num_heads"] == 1
    assert stats["heads"] == {"attention": [2, 1]}
    assert "heads ranked by their output on x" in out.surgery_report.notes
    assert out.get_layer("embedding").output_dim == model.get_layer("embedding").output_dim
    assert out.get_layer("ffn1").units == model.get_layer("ffn1").units
    removed = _attention_params_per_head(model.get_layer("attention"))
    assert stats["params_before"] - stats["params_after"] == removed
    assert stats["params_after"] == out.count_params()
    # Without heads_only, the same ratio also halves the embedding width and feed-forward units.
    section.heads_only = False
    both = stages.STAGES["prune_channels"].fn(model, section, text_ctx)
    assert both.get_layer("attention").get_config()["num_heads"] == 1
    assert both.get_layer("embedding").output_dim == 8 and both.get_layer("ffn1").units == 16
    assert "heads ranked by their output on x" in both.surgery_report.notes
    assert text_ctx.stats["prune_channels"]["params_after"] == both.count_params()


def test_prune_blocks_stage_removes_a_whole_encoder_block(text_ctx, text_transformer):
    """unit="encoder": attention, feed-forward and both LayerNormalizations go together (the
    residual unit removes one sub-block); the model left is Embedding -> pooling -> logits."""
    model = text_transformer
    section = text_ctx.config.prune_blocks.copy_and_resolve_references()
    section.epochs, section.n, section.unit = 0, 1, "encoder"
    out = stages.STAGES["prune_blocks"].fn(model, section, text_ctx)
    stats = text_ctx.stats["prune_blocks"]
    assert stats["unit"] == "encoder" and stats["blocks_removed"] == ["norm2"]
    names = {layer.name for layer in out.layers}
    assert not names & {"attention", "add1", "norm1", "ffn1", "ffn2", "add2", "norm2"}
    kept = sum(model.get_layer(n).count_params() for n in ("embedding", "logits"))
    assert stats["params_after"] == out.count_params() == kept
    section.unit = "residual"
    one = stages.STAGES["prune_blocks"].fn(model, section, text_ctx)
    left = {layer.name for layer in one.layers}
    assert len(text_ctx.stats["prune_blocks"]["blocks_removed"]) == 1
    assert ("attention" in left) != ("ffn1" in left)  # one sub-block of the two went


def test_finetune_quantized_stage_reports_what_it_measured(ctx, bn_model):
    """The label-free QAT stage (dynamic_wi4): a float model on the int4 grid, the accuracy it
    records read back from the model it returns, the held-out loss no higher than before."""
    section = ctx.config.finetune_quantized.copy_and_resolve_references()
    section.mode, section.epochs, section.samples = "dynamic_wi4", 2, 64
    out = stages.STAGES["finetune_quantized"].fn(bn_model, section, ctx)
    stats = ctx.stats["finetune_quantized"]
    assert stats["accuracy_after"] == ctx.accuracy(out)
    assert stats["held_out_after"]["loss"] <= stats["held_out_before"]["loss"]
    kernel = out.get_layer("conv1").kernel.numpy()
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 7
    np.testing.assert_allclose(kernel / scale, np.rint(kernel / scale), atol=1e-3)


def test_recover_stage_on_a_block_wise_mode_corrects_biases_without_adaround(ctx, bn_model):
    """The default steps on dynamic_wi4_block32: AdaRound (one scale per channel only) is left
    out, the Dense kernel lands on the grid ``grids.block_kernels`` names for it."""
    from tfcompress.ptq import grids
    section = ctx.config.recover.copy_and_resolve_references()
    section.mode, section.samples = "dynamic_wi4_block32", 64
    out = stages.STAGES["recover"].fn(bn_model, section, ctx)
    assert ctx.stats["recover"]["steps"] == ["equalize", "correct_bias"]
    layer = out.get_layer("logits")
    (k,) = grids.block_kernels(layer, 32)
    w = layer.kernel.numpy()
    np.testing.assert_array_equal(grids.round_to_nearest(w, 4, k.reduce_axes, k.block), w)
    assert not np.array_equal(w, bn_model.get_layer("logits").kernel.numpy())
