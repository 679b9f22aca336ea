"""The one graph reader: nodes and their inbound tensors in every serialization, consumers,
rewiring and rebuilding, and the layer-by-layer walk."""

import numpy as np
import pytest
import tensorflow as tf

import tfcompress.graph as graphs
from tfcompress import errors, keras
from tfcompress.ptq.equalization import fold_batchnorm
from tfcompress.ptq.layerwise import quantized_tensors


def _op_model() -> keras.Model:
    """Dense -> x * 2 (a TFOpLambda: one-tensor node) -> tf.add(a, y=b) (a tensor passed as a
    keyword argument) -> Add -> Dropout(training=False) (a keyword argument on a layer)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((4,), name="x")
    a = keras.layers.Dense(4, name="dense")(i)
    b = a * 2.0
    c = tf.add(a, b)
    d = keras.layers.Add(name="add")([b, c])
    e = keras.layers.Dropout(0.5, name="drop")(d, training=False)
    return keras.Model(i, keras.layers.Dense(3, name="head")(e))


def test_nodes_read_every_inbound_format():
    model = _op_model()
    g = graphs.read(model)
    nodes = {n.name: n for n in g.nodes}
    mul, add_op = [n.name for n in g.nodes if n.cls == "TFOpLambda"]
    assert nodes[mul].inputs == [("dense", 0, 0)]
    assert nodes[add_op].inputs == [("dense", 0, 0), (mul, 0, 0)]  # keyword tensor included
    assert nodes["add"].inputs == [(mul, 0, 0), (add_op, 0, 0)]
    assert g.outputs == [("head", 0, 0)]
    position = {n.name: i for i, n in enumerate(g.nodes)}
    for n in g.nodes:
        assert all(position[k[0]] < position[n.name] for k in n.inputs), n.name


def test_consumers_count_keyword_readers_and_outputs():
    model = _op_model()
    g = graphs.read(model)
    users = graphs.consumers(g)
    mul, add_op = [n.name for n in g.nodes if n.cls == "TFOpLambda"]
    assert users["dense"] == [mul, add_op]
    assert sorted(users[mul]) == sorted([add_op, "add"])
    assert users["head"] == [None]


def test_sequential_graph_has_an_input_node():
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(5,), name="d1"),
                              keras.layers.Dense(2, name="d2")])
    g = graphs.read(model)
    assert [n.inputs for n in g.nodes][-1] == [("d1", 0, 0)]
    assert g.nodes[0].cls == "InputLayer" and g.outputs == [("d2", 0, 0)]


def test_rewire_and_rebuild_drop_a_layer_and_keep_weights():
    model = _op_model()
    g = graphs.read(model)
    g.config["layers"] = [e for e in g.entries if e["config"]["name"] != "drop"]
    graphs.rewire(g.config, {("drop", 0, 0): ("add", 0, 0)})
    new = graphs.rebuild(model, g.config, weights={})
    assert "drop" not in [layer.name for layer in new.layers]
    x = np.random.RandomState(0).rand(8, 4).astype(np.float32)
    np.testing.assert_allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    fresh = graphs.rebuild(model, graphs.read(model).config)  # weights=None: as built
    assert not np.allclose(fresh.get_layer("head").kernel.numpy(),
                           model.get_layer("head").kernel.numpy())


def test_walk_hands_each_layer_its_input_and_applies_the_hook():
    model = _op_model()
    x = np.random.RandomState(1).rand(6, 4).astype(np.float32)
    probe = keras.Model(model.input, model.get_layer("add").output)
    seen = {}

    def zero_add(name, outs):
        return [tf.zeros_like(o) for o in outs] if name == "add" else outs

    for name, (inp,) in graphs.walk([model], x):
        seen[name] = inp
    np.testing.assert_allclose(seen["drop"].numpy(), probe.predict(x, verbose=0), rtol=1e-6)
    after = dict((name, ins[1]) for name, ins in graphs.walk([model, model], x, after=zero_add))
    assert np.all(after["drop"].numpy() == 0) and np.any(seen["drop"].numpy() != 0)


def test_walk_refuses_a_shared_layer():
    i = keras.Input((4,))
    dense = keras.layers.Dense(4, name="shared")
    model = keras.Model(i, dense(dense(i)))
    with pytest.raises(errors.ModelError, match="called more than once"):
        next(graphs.walk([model], np.zeros((1, 4), np.float32)))


def test_functional_refuses_a_subclassed_model():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(errors.ModelError, match="subclassed"):
        graphs.functional(Sub())


def test_post_training_passes_read_op_nodes():
    """Folding and the converter's tensor rule on a model with TFOpLambda nodes (their
    one-tensor inbound format broke the per-module readers)."""
    model = _op_model()
    folded = fold_batchnorm(model)
    x = np.random.RandomState(2).rand(5, 4).astype(np.float32)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    names = quantized_tensors(model)
    assert "dense" in names and "head" not in names  # the output is read by no layer
