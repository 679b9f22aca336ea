"""tfcompress.wrappers: layer selection, telling tfmot wrappers apart, copying, kernels, weight
shares and ``strip`` (tiny models, a few seconds)."""

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, wrappers
from tfcompress._compat import tfmot as _tfmot

L = keras.layers


def _mlp(seed: int = 0) -> keras.Model:
    """Dense 16->32 (544 params), BatchNormalization (128), Dense 32->4 (132)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16,))
    x = L.Dense(32, activation="relu", name="big")(inp)
    x = L.BatchNormalization(name="bn")(x)
    return keras.Model(inp, L.Dense(4, name="head")(x), name="mlp")


def _x(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, 16), np.float32)


@pytest.mark.parametrize("selector, chosen", [
    (None, ["big", "bn", "head"]),
    ("b.*", ["big", "bn"]),  # a regex over the whole name
    ("bi", []),  # fullmatch: a prefix is not a match
    (["head", L.BatchNormalization], ["bn", "head"]),
    (L.Dense, ["big", "head"]),
    (lambda layer: layer.name.endswith("d"), ["head"]),
])
def test_layer_matcher_forms(selector, chosen):
    match = wrappers.layer_matcher(selector)
    model = _mlp()
    assert [layer.name for layer in model.layers if layer.weights and match(layer)] == chosen


def test_layer_matcher_refuses_other_forms_in_one_line():
    with pytest.raises(errors.ConfigError, match=r"layers=\['big', 3\]; accepted: None, a regex") \
            as info:
        wrappers.layer_matcher(["big", 3])
    assert "\n" not in str(info.value)


def test_check_functional_refuses_a_subclassed_model_with_the_way_out():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.ModelError, match="Sub 'sub' is a subclassed model; prune needs") \
            as info:
        wrappers.check_functional(Sub(name="sub"), "prune")
    assert "prune_layer" in str(info.value)
    model = _mlp()
    assert wrappers.check_functional(model, "prune") is model


def test_select_layers_chosen_skipped_and_edges():
    model = _mlp()
    chosen, skipped = wrappers.select_layers(model, None, lambda l: isinstance(l, L.Dense))
    assert chosen == ["big", "head"]
    assert skipped == {"bn": "tfmot cannot wrap BatchNormalization to be pruned"}
    chosen, skipped = wrappers.select_layers(model, None, lambda l: True, keep_first_last=True)
    assert chosen == ["bn"] and set(skipped) == {"big", "head"}
    with pytest.raises(errors.ConfigError, match=r"selects no layer that can be clustered; "
                                                 r"layers with weights: big \(Dense\), bn"):
        wrappers.select_layers(model, ["bn"], lambda l: False, kind="clustered")


def test_weight_shares_and_left_alone_measure_parameters():
    model = _mlp()
    shares = wrappers.weight_shares(model)
    total = 16 * 32 + 32 + 4 * 32 + 32 * 4 + 4
    assert shares == pytest.approx({"big": 544 / total, "bn": 128 / total, "head": 132 / total})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert wrappers.left_alone(model, ["bn", "big", "head"]) == [
        ("big", round(544 / total, 4)), ("head", round(132 / total, 4)),
        ("bn", round(128 / total, 4))]
    assert wrappers.left_alone(model, ["bn", "head"], threshold=0.16) == [
        ("head", round(132 / total, 4))]


def test_copy_model_is_independent_and_wrap_layers_replaces_only_the_named():
    model = _mlp()
    copy = wrappers.copy_model(model)
    x = _x()
    np.testing.assert_array_equal(copy.predict(x, verbose=0), model.predict(x, verbose=0))
    copy.get_layer("big").kernel.assign(np.zeros((16, 32), np.float32))
    assert np.any(model.get_layer("big").kernel.numpy() != 0)  # the caller's model untouched
    wrapped = wrappers.wrap_layers(model, ["head"], lambda layer: L.Dense(
        4, name="head", kernel_initializer="zeros", bias_initializer="ones"))
    np.testing.assert_array_equal(wrapped.predict(x, verbose=0), np.ones((8, 4), np.float32))
    np.testing.assert_array_equal(wrapped.get_layer("big").kernel.numpy(),
                                  model.get_layer("big").kernel.numpy())


def test_kernels_see_through_pruning_and_clustering():
    model = _mlp()
    assert set(wrappers.kernels(model)) == {"big", "head"}  # BatchNormalization has none
    assert set(wrappers.layer_kernels(model.get_layer("big"))) == {"big/kernel"}
    pruned = tfcompress.prune(model, 0.5, end_step=20, layers=["big"])
    assert wrappers.is_pruned(pruned) and not wrappers.is_clustered(pruned)
    assert isinstance(pruned.get_layer("prune_low_magnitude_big"), _tfmot.PruneWrapper)
    np.testing.assert_array_equal(wrappers.kernels(pruned)["big"]["big/kernel"],
                                  model.get_layer("big").kernel.numpy())
    clustered = tfcompress.cluster(model, 4, layers=["big"])
    assert wrappers.is_clustered(clustered) and not wrappers.is_pruned(clustered)
    big = wrappers.kernels(clustered)["big"]["big/kernel"]
    assert len(np.unique(big)) == 4  # read stripped: the clustered kernel, 4 values
    wrapped, skipped = wrappers.wrapped_layers(clustered, _tfmot.ClusterWrapper,
                                               lambda l: not isinstance(l, L.BatchNormalization),
                                               "clustered")
    assert [w.name for w in wrapped] == ["cluster_big"]
    assert skipped == {"bn": "tfmot cannot wrap BatchNormalization to be clustered",
                       "head": "not selected"}


def test_strip_removes_pruning_and_clustering_keeps_qat():
    model = _mlp()
    pruned = tfcompress.prune(model, 0.5, end_step=20, layers=["big"])
    x = _x(64)
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((64, 4), np.float32), batch_size=8, epochs=3, verbose=0,
               callbacks=[tfcompress.callbacks.Pruning()])
    stripped = wrappers.strip(pruned)
    assert not wrappers.is_pruned(stripped)
    assert [l.name for l in stripped.layers] == [l.name for l in model.layers]
    assert np.mean(stripped.get_layer("big").kernel.numpy() == 0) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-6)
    assert wrappers.strip(model) is model  # nothing to strip: the same model
    qat = tfcompress.quantize_aware(keras.Model(model.input, model.get_layer("big").output))
    assert wrappers.is_quantize_aware(qat) and not wrappers.is_quantize_aware(model)
    assert wrappers.is_quantize_aware(wrappers.strip(qat))  # QAT wrappers stay
    nested = keras.Sequential([keras.Input((16,)), qat])
    assert wrappers.is_quantize_aware(nested)  # found inside a nested model
