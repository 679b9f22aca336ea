"""Clustering: unique weights per kernel, per-layer counts, sparsity preservation, strip."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.training import clustering

from tfmot_helpers import fit, small_cnn, steps_per_epoch


@pytest.fixture(scope="module")
def cnn(digits):
    return small_cnn(digits)


@pytest.fixture(scope="module")
def pruned_cnn(cnn, digits):
    pruned = tfcompress.prune(cnn, 0.8, epochs=2, steps_per_epoch=steps_per_epoch())
    fit(pruned, digits, 2, [tfmot.sparsity.keras.UpdatePruningStep()])
    return tfcompress.strip(pruned)


@pytest.mark.parametrize("init", ["kmeans++", "linear"])
def test_cluster_limits_unique_weights_per_kernel(cnn, digits, init):
    before = [w.copy() for w in cnn.get_weights()]
    clustered = tfcompress.cluster(cnn, 8, init=init)
    fit(clustered, digits, 1, lr=1e-4)
    stripped = tfcompress.strip(clustered)
    report = tfcompress.unique_weights_report(stripped)
    assert set(report["layers"]) == {"conv1", "conv2", "dense", "logits"}
    assert all(2 <= n <= 8 for n in report["layers"].values()), report
    assert not tfcompress.wrappers.is_clustered(stripped)
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_per_layer_counts(cnn):
    clustered = tfcompress.cluster(cnn, {"dense": 4, "logits": 16})
    report = tfcompress.unique_weights_report(clustered)
    assert report["layers"]["dense"] <= 4 and report["layers"]["logits"] <= 16
    assert report["layers"]["conv2"] > 100, "layers without a count stay unclustered"
    assert clustering.clustering_info(clustered)["clustered"] == {"dense": 4, "logits": 16}


def test_preserve_sparsity_keeps_pruned_zeros(pruned_cnn, digits):
    clustered = tfcompress.cluster(pruned_cnn, 8, preserve_sparsity=True)
    fit(clustered, digits, 1, lr=1e-4)
    stripped = tfcompress.strip(clustered)
    sparsity = tfcompress.sparsity_report(stripped)["layers"]
    uniques = tfcompress.unique_weights_report(stripped)["layers"]
    for name in ("conv2", "dense", "logits"):
        assert sparsity[name] >= 0.79, (name, sparsity[name])
        assert uniques[name] <= 8, (name, uniques[name])


@pytest.mark.parametrize("kwargs, match", [
    (dict(number_of_clusters=1), "number_of_clusters=1"),
    (dict(number_of_clusters=8, init="fancy"), "unknown cluster init 'fancy'"),
    (dict(number_of_clusters={"nope": 4}), "lacks"),
    (dict(number_of_clusters=8, layers="nope"), "selects no layer"),
    # more clusters than a kernel's weights: tfmot's kmeans++ raised InvalidArgumentError
    (dict(number_of_clusters=100000), r"number_of_clusters=100000 is more than layer 'logits' "
     r"holds \(\d+: the weights of its smallest kernel\); accepted: an integer from 2 to"),
    (dict(number_of_clusters=2, preserve_sparsity=True), "accepted: an integer >= 3 with"),
])
def test_bad_arguments_are_clear_errors(cnn, kwargs, match):
    with pytest.raises(errors.ConfigError, match=match):
        tfcompress.cluster(cnn, **kwargs)


def test_pruning_wrappers_must_be_stripped_first(cnn):
    wrapped = tfcompress.prune(cnn, 0.5, end_step=100)
    with pytest.raises(errors.ModelError, match="strip it first"):
        tfcompress.cluster(wrapped, 8)


def test_subclassed_model_gets_layer_level_advice():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(errors.ModelError, match="subclassed.*cluster_layer"):
        tfcompress.cluster(Sub(), 8)
    layer = clustering.cluster_layer(keras.layers.Dense(4), 4)
    model = keras.Sequential([keras.Input((6,)), layer])
    assert len(np.unique(tfcompress.strip(model).layers[0].kernel.numpy())) <= 4


def test_strip_of_plain_model_is_identity(cnn):
    assert tfcompress.strip(cnn) is cnn


def test_clustered_stage_output_saves_and_loads(cnn, digits, tmp_path):
    stripped = tfcompress.strip(tfcompress.cluster(cnn, 4))
    _, (xt, _) = digits
    path = str(tmp_path / "c.keras")
    models.save_model(stripped, path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(xt[:8], verbose=0),
                               stripped.predict(xt[:8], verbose=0), atol=1e-6)
    assert tfcompress.unique_weights_report(loaded)["max"] <= 4
