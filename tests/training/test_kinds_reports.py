"""Reports see every weight: sparsity and unique values of pruned and clustered recurrent,
attention, Conv1D and Embedding models, checked against the weights read by their attributes;
what a training stage leaves alone is named with its share."""

import numpy as np
import pytest

import tfcompress
from tfcompress import keras
from tfcompress.training import clustering, pruning

import model_kinds

L = keras.layers
KINDS = ["text", "lstm", "gru", "bilstm", "transformer", "regression"]


def _named(layer, suffix):
    return [w.numpy() for w in layer.weights if w.name.split(":")[0].endswith(suffix)]


def kernels_by_attribute(model) -> dict:
    """{layer name: [kernel arrays]} read through each class's own attributes (not the
    name rule the reports use): what the reports must cover."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, L.Bidirectional):
            cells = [layer.forward_layer.cell, layer.backward_layer.cell]
            out[layer.name] = [w.numpy() for c in cells for w in (c.kernel, c.recurrent_kernel)]
        elif isinstance(layer, L.RNN):
            out[layer.name] = [layer.cell.kernel.numpy(), layer.cell.recurrent_kernel.numpy()]
        elif isinstance(layer, L.MultiHeadAttention):
            out[layer.name] = [a for part in ("query", "key", "value", "attention_output")
                               for a in _named(layer, f"{part}/kernel")]
        elif isinstance(layer, L.Embedding):
            out[layer.name] = [layer.embeddings.numpy()]
        elif hasattr(layer, "kernel"):
            out[layer.name] = [layer.kernel.numpy()]
    return out


def _fit(model, loss, data, steps, callbacks=()):
    x, y = data
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(x[:steps * 16], y[:steps * 16], batch_size=16, epochs=1, verbose=0,
              callbacks=list(callbacks))


@pytest.mark.parametrize("kind", KINDS)
def test_sparsity_report_counts_every_pruned_kernel(kind):
    model, train, _ = model_kinds.KINDS[kind]()
    pruned = tfcompress.prune(model, 0.5, end_step=2, schedule="constant")
    _fit(pruned, model.loss, train, 2, [tfcompress.callbacks.Pruning()])
    info = pruning.pruning_info(pruned)
    stripped = tfcompress.strip(pruned)
    report = tfcompress.sparsity_report(stripped)
    expected = kernels_by_attribute(stripped)
    assert set(report["layers"]) == set(expected)
    for name, arrays in expected.items():
        zeros = sum(int(np.count_nonzero(a == 0)) for a in arrays)
        size = sum(a.size for a in arrays)
        assert report["layers"][name] == pytest.approx(zeros / size), name
        mine = sorted(v for k, v in report["kernels"].items() if k.startswith(name + "/"))
        assert mine == pytest.approx(sorted(np.count_nonzero(a == 0) / a.size for a in arrays))
        if name in info["pruned"]:  # tfmot prunes each kernel to the target
            assert all(abs(np.mean(a == 0) - 0.5) < 0.02 for a in arrays), name
    assert report["weights"] == sum(a.size for arrays in expected.values() for a in arrays)
    # the recurrent and attention layers were pruned and the report shows it
    for layer in stripped.layers:
        if isinstance(layer, (L.LSTM, L.GRU, L.MultiHeadAttention, L.Embedding, L.Conv1D)):
            assert layer.name in info["pruned"] and report["layers"][layer.name] > 0.45


@pytest.mark.parametrize("kind", KINDS)
def test_unique_weights_report_counts_every_clustered_kernel(kind):
    model, train, _ = model_kinds.KINDS[kind]()
    clustered = tfcompress.cluster(model, 4)
    _fit(clustered, model.loss, train, 2)
    names = set(clustering.clustering_info(clustered)["clustered"])
    report = tfcompress.unique_weights_report(clustered)
    expected = kernels_by_attribute(tfcompress.strip(clustered))
    assert set(report["layers"]) == set(expected)
    for name, arrays in expected.items():
        counts = sorted(len(np.unique(a)) for a in arrays)
        assert sorted(v for k, v in report["kernels"].items()
                      if k.startswith(name + "/")) == counts
        assert report["layers"][name] == max(counts)
        if name in names:
            assert max(counts) <= 4, name
    recurrent = [l.name for l in model.layers
                 if isinstance(l, (L.RNN, L.Bidirectional, L.MultiHeadAttention))]
    assert all(n in names and report["layers"][n] <= 4 for n in recurrent)


def test_kernel_names_are_the_same_before_and_after_strip():
    model, _, _ = model_kinds.bilstm()
    clustered = tfcompress.cluster(model, 4)
    assert set(tfcompress.unique_weights_report(clustered)["kernels"]) == set(
        tfcompress.sparsity_report(model)["kernels"]) == {
        f"bilstm/{d}/lstm_cell/{k}" for d in ("forward", "backward")
        for k in ("kernel", "recurrent_kernel")} | {"probs/kernel"}


def test_prune_names_the_layer_it_leaves_alone_with_its_share(caplog):
    """tfmot cannot prune a Bidirectional layer: it holds most of the weights, so pruning_info
    names it with its share and prune logs it."""
    model, _, _ = model_kinds.bilstm()
    caplog.set_level("WARNING")
    pruned = tfcompress.prune(model, 0.5, end_step=8)
    bi = model.get_layer("bilstm").count_params()
    share = bi / model.count_params()
    assert share > 0.9
    left = pruning.pruning_info(pruned)["left_alone"]
    assert left == [("bilstm", pytest.approx(share, abs=1e-4))]
    assert "bilstm" in caplog.text and f"{share:.1%}" in caplog.text


def test_cluster_names_the_layer_it_leaves_alone():
    """An EinsumDense layer cannot be clustered by tfmot; holding most weights, it is named."""
    inputs = keras.Input((6, 4))
    x = L.EinsumDense("abc,cd->abd", output_shape=(None, 64), name="einsum")(inputs)
    outputs = L.Dense(2, name="out")(L.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    info = clustering.clustering_info(tfcompress.cluster(model, 4))
    share = 4 * 64 / model.count_params()
    assert info["clustered"] == {"out": 4}
    assert info["left_alone"] == [("einsum", pytest.approx(share, abs=1e-4))]


def test_factorize_names_the_layers_it_leaves_alone(caplog):
    """factorize cannot split an LSTM: the LSTM model's recurrent layer, which holds most of
    its weights, is named with its share in the surgery report (saved with the model) and in
    a warning; every layer named there is one it left as it was."""
    model, _, _ = model_kinds.lstm()
    caplog.set_level("WARNING")
    result = tfcompress.factorize(model, energy=0.9)
    report = result.surgery_report
    left = dict(report.left_alone)
    share = model.get_layer("lstm").count_params() / model.count_params()
    assert share > 0.5 and left["lstm"] == pytest.approx(share, abs=1e-4)
    assert not set(left) & set(report.changed)
    assert all(share > 0.1 for share in left.values())
    assert "lstm (LSTM)" in caplog.text
    assert dict(report.to_dict()["left_alone"]) == pytest.approx(left)


def test_a_quantizing_mode_names_the_embedding_it_leaves_in_float():
    """The converter's dynamic range mode quantizes only tensors of 1024 elements or more, so
    it leaves the text model's Embedding (and Dense) in float32: the flatbuffer's facts name
    them with their share of the constant weights, and conversion_info reads them back."""
    from tfcompress.export.conversion import conversion_info, convert

    model, _, _ = model_kinds.text()
    info = conversion_info(convert(model, "dynamic"))
    kernels = sum(w.size for arrays in tfcompress.wrappers.kernels(model).values()
                  for w in arrays.values())
    (name, share), *_ = info["left_alone"]
    assert name == "embedding"
    assert share == pytest.approx(model.get_layer("embedding").count_params() / kernels,
                                  abs=0.03)
    assert info["facts"]["left_alone"][0][0] == "embedding"
    assert conversion_info(convert(model, "float32"))["left_alone"] == []


def test_left_alone_names_the_layer_when_the_model_shares_its_name():
    """The LSTM model is named 'lstm' like its LSTM layer: the float32 Embedding that the
    dynamic range mode leaves (too small to quantize) is still named 'embedding'."""
    from tfcompress.export.conversion import conversion_info, convert

    model, _, _ = model_kinds.lstm()
    left = dict(conversion_info(convert(model, "dynamic"))["left_alone"])
    assert "embedding" in left and left["embedding"] > 0.3


def test_layers_tfmot_wraps_but_never_prunes_are_skipped_and_named():
    """tfmot wraps DepthwiseConv2D and BatchNormalization but prunes and clusters none of their
    weights: pruning_info/clustering_info list them as skipped, not pruned, and a depthwise
    layer holding more than 10% of the weights is left alone, with its share."""
    inputs = keras.Input((8, 8, 4))
    x = L.DepthwiseConv2D(5, depth_multiplier=4, name="dw")(inputs)  # 400 weights + 16 bias
    x = L.BatchNormalization(name="bn")(x)
    outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    shares = {n: model.get_layer(n).count_params() / model.count_params() for n in ("dw", "bn")}
    assert shares["dw"] > 0.8 and shares["bn"] > 0.1
    info = pruning.pruning_info(tfcompress.prune(model, 0.5, end_step=10))
    assert info["pruned"] == ["out"] and {"dw", "bn"} <= set(info["skipped"])
    assert dict(info["left_alone"]) == pytest.approx(shares, abs=1e-4)
    info = clustering.clustering_info(tfcompress.cluster(model, 4))
    assert info["clustered"] == {"out": 4} and {"dw", "bn"} <= set(info["skipped"])
    assert dict(info["left_alone"]) == pytest.approx(shares, abs=1e-4)
