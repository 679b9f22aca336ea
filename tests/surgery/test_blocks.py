"""Residual-block removal (tfcompress.surgery.blocks, tfcompress.prune_blocks)."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.surgery import blocks
from tfcompress.surgery import channels as surgery
from tfcompress.profiling import profile

L = keras.layers


def _resnet(n_blocks=3, mid=(6, 6, 6)):
    """Stem, then identity blocks Conv-ReLU-Conv + Add, a projection block, then a head."""
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inp)
    for i in range(n_blocks):
        y = L.Conv2D(mid[i], 3, padding="same", activation="relu", name=f"r{i}_a")(x)
        y = L.Conv2D(6, 3, padding="same", name=f"r{i}_b")(y)
        x = L.Add(name=f"r{i}_add")([x, y])
    y = L.Conv2D(8, 3, padding="same", name="proj_branch")(x)
    s = L.Conv2D(8, 1, name="proj_skip")(x)  # a projection shortcut: no identity skip
    x = L.Add(name="proj_add")([y, s])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(4, activation="softmax", name="out")(x))


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 2), np.float32), rng.integers(0, 4, n)


def test_identity_blocks_are_found_and_projection_shortcuts_are_not():
    found = blocks.residual_blocks(_resnet())
    assert [b.add for b in found] == ["r0_add", "r1_add", "r2_add"]
    assert found[1].layers == ("r1_a", "r1_b") and found[1].skip == ("r0_add", 0, 0)
    assert blocks.residual_blocks(models.mini_xception()) == []  # strided 1x1 shortcuts
    mobilenet = blocks.residual_blocks(models.build("mobilenet_v2", (32, 32, 3), 10, 0.35))
    assert len(mobilenet) == 10 and mobilenet[0].add == "block_2_add"
    assert len(mobilenet[0].layers) == 8  # expand, BN, ReLU, depthwise, BN, ReLU, project, BN


def test_a_block_that_does_nothing_is_removed_first_and_exactly():
    model = _resnet()
    silent = model.get_layer("r1_b")
    silent.set_weights([np.zeros_like(w) for w in silent.get_weights()])  # r1 adds zero
    x, _ = _data()
    target = model(x).numpy()  # the loss is 0 for the model itself and for it without r1
    new = tfcompress.prune_blocks(model, 1, x, target, loss="mse")
    report = new.surgery_report
    assert list(report.changed) == ["r1_add"] and report.changed["r1_add"]["loss_rise"] == 0.0
    assert {"r1_a", "r1_b", "r1_add"}.isdisjoint(layer.name for layer in new.layers)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-6)
    saved = 2 * 8 * 8 * 3 * 3 * 6 * 6
    assert profile(new)["macs"] == profile(model)["macs"] - saved
    assert report.changed["r1_add"]["macs"] == saved


def test_a_macs_budget_picks_the_block_that_reaches_it():
    model = _resnet(mid=(24, 6, 6))  # r0 costs 4x the others
    silent = model.get_layer("r1_b")
    silent.set_weights([np.zeros_like(w) for w in silent.get_weights()])
    x, _ = _data()
    target, total = model(x).numpy(), profile(model)["macs"]
    r0 = 2 * 8 * 8 * 3 * 3 * 6 * 24
    new = blocks.prune_blocks(model, 1, x, target, loss="mse", max_macs_ratio=1 - r0 / total)
    assert list(new.surgery_report.changed) == ["r0_add"]  # r1 rises 0 but saves too little
    assert profile(new)["macs"] == total - r0
    tight = blocks.prune_blocks(model, 1, x, target, loss="mse", max_macs_ratio=0.1)
    assert list(tight.surgery_report.changed) == ["r0_add"]
    assert any("no 1 blocks found that reach max_macs_ratio=0.1" in n
               for n in tight.surgery_report.notes)
    with pytest.raises(errors.ConfigError, match="max_macs_ratio=0; accepted: None or a number"):
        blocks.prune_blocks(model, 1, x, target, max_macs_ratio=0)


def test_consecutive_blocks_removed_together_rewire_to_the_stem():
    model = _resnet()
    x, y = _data()
    new = blocks.remove_blocks(model, blocks.residual_blocks(model))
    stem = keras.Model(model.input, model.get_layer("stem").output)
    head = ["proj_branch", "proj_skip"]
    assert [n.inbound_layers.name for h in head for n in new.get_layer(h)._inbound_nodes] == [
        "stem", "stem"]
    assert len(new.layers) == len(model.layers) - 9
    # Without its blocks the model computes what it computes with every branch silenced
    # (Add(x, 0) = x), with the other layers' weights as they were.
    for i in range(3):
        b = model.get_layer(f"r{i}_b")
        b.set_weights([np.zeros_like(w) for w in b.get_weights()])
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    rest = keras.Model(model.get_layer("proj_branch").input, model.output)
    np.testing.assert_allclose(new(x).numpy(), rest(stem(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_fraction_rounds_half_up_and_the_result_saves(tmp_path):
    model = _resnet(n_blocks=3)
    x, y = _data()
    new = tfcompress.prune_blocks(model, 0.5, x, y, criterion="loss_per_mac")
    assert len(new.surgery_report.changed) == 2  # 0.5 * 3 = 1.5 -> 2
    path = models.save_model(new, str(tmp_path / "b.keras"))
    assert surgery.report_of(path).changed.keys() == new.surgery_report.changed.keys()


def test_prune_blocks_errors():
    model = _resnet()
    x, y = _data(8)
    with pytest.raises(errors.ConfigError, match="n_or_fraction=4; accepted: 1 to 3"):
        blocks.prune_blocks(model, 4, x, y)
    with pytest.raises(errors.ConfigError, match=r"n_or_fraction=1.5; accepted: .*\(0, 1\)"):
        blocks.prune_blocks(model, 1.5, x, y)
    with pytest.raises(errors.ConfigError, match="unknown criterion 'flops'"):
        blocks.prune_blocks(model, 1, x, y, criterion="flops")
    with pytest.raises(errors.ConfigError, match="has no residual block"):
        blocks.prune_blocks(models.digits_cnn(width=0.25), 1, x[..., :1], y)


def _encoder_net(n_blocks=2, pre_norm=False):
    """Embedding, then Transformer encoder blocks (attention + residual, feed-forward +
    residual, LayerNormalization after each Add or, pre-norm, before each branch), a head."""
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(30, 8, name="embedding")(inp)
    for i in range(n_blocks):
        h = L.LayerNormalization(name=f"b{i}_pre1")(x) if pre_norm else x
        x = L.Add(name=f"b{i}_add1")([x, L.MultiHeadAttention(2, 4, name=f"b{i}_att")(h, h)])
        x = x if pre_norm else L.LayerNormalization(name=f"b{i}_norm1")(x)
        h = L.LayerNormalization(name=f"b{i}_pre2")(x) if pre_norm else x
        f = L.Dense(8, name=f"b{i}_ffn2")(L.Dense(16, activation="relu", name=f"b{i}_ffn1")(h))
        x = L.Add(name=f"b{i}_add2")([x, f])
        x = x if pre_norm else L.LayerNormalization(name=f"b{i}_norm2")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="out")(x))


@pytest.mark.parametrize("pre_norm", [False, True])
def test_transformer_encoder_blocks_are_found_whole(pre_norm):
    found = blocks.encoder_blocks(_encoder_net(2, pre_norm))
    end = "norm2" if not pre_norm else "add2"
    assert [b.add for b in found] == [f"b0_{end}", f"b1_{end}"]
    assert found[1].skip == (f"b0_{end}", 0, 0)
    inner = {"att", "add1", "ffn1", "ffn2"} | ({"pre1", "pre2"} if pre_norm else {
        "norm1", "add2"})
    assert set(found[0].layers) == {f"b0_{n}" for n in inner}
    assert len(blocks.encoder_blocks(models.text_transformer())) == 1
    assert blocks.encoder_blocks(_resnet()) == []  # residual blocks without attention


def test_prune_blocks_removes_a_whole_encoder_block():
    """Removing encoder block b0 leaves Embedding -> b1 -> head: the same function as that
    model built by hand from the same layers."""
    model = _encoder_net(2)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 30, (32, 6)).astype(np.int32), rng.integers(0, 3, 32)
    b0 = model.get_layer("b0_ffn2")
    b0.set_weights([w * 0 for w in b0.get_weights()])  # b0's feed-forward adds nothing
    new = tfcompress.prune_blocks(model, 1, x, y, unit="encoder")
    removed = {f"b0_{n}" for n in ("att", "add1", "norm1", "ffn1", "ffn2", "add2", "norm2")}
    gone = removed if "b0_norm2" in new.surgery_report.changed else {
        n.replace("b0", "b1") for n in removed}
    assert gone.isdisjoint(layer.name for layer in new.layers)
    assert len(new.layers) == len(model.layers) - 7
    keep = "b1" if "b0_norm2" in new.surgery_report.changed else "b0"
    inp = keras.Input((6,), dtype="int32")
    h = model.get_layer("embedding")(inp)
    a = model.get_layer(f"{keep}_att")
    h = model.get_layer(f"{keep}_norm1")(model.get_layer(f"{keep}_add1")([h, a(h, h)]))
    f = model.get_layer(f"{keep}_ffn2")(model.get_layer(f"{keep}_ffn1")(h))
    h = model.get_layer(f"{keep}_norm2")(model.get_layer(f"{keep}_add2")([h, f]))
    by_hand = keras.Model(inp, model.get_layer("out")(model.get_layer("gap")(h)))
    np.testing.assert_allclose(new(x), by_hand(x), atol=1e-6)
    with pytest.raises(errors.ConfigError, match="no Transformer encoder block"):
        tfcompress.prune_blocks(_resnet(), 1, *_data(), unit="encoder")
    with pytest.raises(errors.ConfigError, match="unit"):
        tfcompress.prune_blocks(model, 1, x, y, unit="layer")
