"""The one reader of Sequential and functional Keras graphs: nodes, inbound tensors, consumers,
a rebuild from an edited config, and a layer-by-layer run.

``read(model)`` copies the model's config and turns each call of a layer into a ``Node`` in
topological order. A node's ``inputs`` are the tensor keys ``(layer name, node index, tensor
index)`` it reads, whatever the serialization: a list of tensors, one tensor (``[name, node,
index, kwargs]``, as TFOpLambda nodes are written) and tensors passed as keyword arguments
(``tf.add(a, y=b)``). Surgery and the post-training passes edit ``Graph.config`` (a node's
``config`` is the layer's config inside it) and ``rebuild`` the model from it; ``redirect``
rewires tensor references; ``walk`` runs models with the same graph one layer at a time.
"""

import copy
import dataclasses
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfcompress import errors
from tfcompress._compat.keras import is_functional, keras, unsafe_deserialization
from tfcompress._surgery_report import REPORT_KEY
from tfcompress.keras3 import ensure_keras2

INPUT = "__input__"  # the input node of a Sequential model whose config names no InputLayer


@dataclasses.dataclass
class Node:
    """One call of a layer in the model's config."""

    name: str
    cls: str
    config: dict  # the layer's config inside the graph's config copy (edit it in place)
    inputs: list  # tensor keys (layer name, node index, tensor index): positional, then keyword
    key_index: int  # which call of the layer this is
    shared: bool  # the layer is called more than once
    numeric_args: bool = True  # every non-tensor call argument is a plain number (or a name)
    call: list = dataclasses.field(default_factory=list)  # [[name, node, tensor, kwargs], ...]


class Graph(NamedTuple):
    """A model's config copy, its layer entries, its nodes in topological order, output keys."""

    config: dict
    entries: list
    nodes: list
    outputs: list


def functional(model: keras.Model) -> keras.Model:
    """``model`` as a functional model (a Sequential model is called on a new Input; the layer
    objects are the same).

    Raises:
        ModelError: a subclassed model.
    """
    model = ensure_keras2(model)
    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.input_shape)
        x = inputs
        for layer in model.layers:
            x = layer(x)
        model = keras.Model(inputs, x, name=model.name)
    if not is_functional(model):
        raise errors.ModelError(
            f"model {model.name!r} is subclassed; accepted: Sequential or functional models")
    return model


def tensor_refs(value, names) -> list:
    """Keys of the tensors referenced inside serialized call arguments."""
    if isinstance(value, dict):
        return [k for v in value.values() for k in tensor_refs(v, names)]
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and value[0] in names \
                and isinstance(value[1], int) and isinstance(value[2], int):
            return [tuple(value[:3])]
        return [k for v in value for k in tensor_refs(v, names)]
    return []


def _calls(entry: dict) -> list:
    """The entry's calls, each a list of [name, node, tensor, kwargs] tensors."""
    calls = []
    for call in entry.get("inbound_nodes") or []:
        if isinstance(call, dict):  # another serialization format: not followed
            call = []
        if call and isinstance(call[0], str):  # one tensor: [name, node, index, kwargs]
            call = [call]
        calls.append(call)
    return calls


def read(model: keras.Model) -> Graph:
    """The graph of a built Sequential or functional model (its config deep-copied).

    Raises:
        ModelError: a subclassed or unbuilt model, a graph that cannot be ordered.
    """
    if not is_functional(model):
        raise errors.ModelError(
            f"model {model.name!r} is a subclassed Keras model; accepted: a Sequential or "
            "Functional model (surgery rebuilds the model from its config)")
    if not model.built:
        raise errors.ModelError(f"model {model.name!r} is not built; give it an Input first")
    config = copy.deepcopy(model.get_config())
    config.pop(REPORT_KEY, None)  # an earlier surgery's report: not this model's
    entries = config["layers"]
    for entry in entries:
        entry.pop("build_config", None)
    nodes = []
    if isinstance(model, keras.Sequential):
        prev = None
        if not entries or entries[0]["class_name"] != "InputLayer":
            prev = (INPUT, 0, 0)
            nodes.append(Node(INPUT, "InputLayer", {}, [], 0, False))
        for entry in entries:
            name = entry["config"]["name"]
            call = [[*prev, {}]] if prev else []
            nodes.append(Node(name, entry["class_name"], entry["config"],
                              [prev] if prev else [], 0, False, call=call))
            prev = (name, 0, 0)
        return Graph(config, entries, nodes, [prev])
    pending, names = [], {e["config"]["name"] for e in entries}
    for entry in entries:
        calls = _calls(entry)
        name = entry["config"]["name"]
        if not calls:
            pending.append(Node(name, entry["class_name"], entry["config"], [], 0, False))
        for i, call in enumerate(calls):
            keys = [tuple(t[:3]) for t in call]
            for t in call:  # tensors passed as keyword arguments are inputs too
                keys += [k for k in tensor_refs(t[3:], names) if k not in keys]
            numeric = all(isinstance(v, (int, float, str, type(None)))
                          for t in call for kw in t[3:4] if isinstance(kw, dict)
                          for v in kw.values())
            pending.append(Node(name, entry["class_name"], entry["config"], keys, i,
                                len(calls) > 1, numeric, call))
    done = set()
    while pending:  # topological order
        ready = [n for n in pending if all(k[:2] in done for k in n.inputs)]
        if not ready:
            raise errors.ModelError(f"cannot order the layers of model {model.name!r}")
        for n in ready:
            nodes.append(n)
            done.add((n.name, n.key_index))
            pending.remove(n)
    return Graph(config, entries, nodes, [tuple(o[:3]) for o in config["output_layers"]])


def consumers(graph: Graph) -> dict:
    """Layer name -> names of the layers that read its outputs, once per tensor read, in config
    order; a model output adds ``None``."""
    users = {n.name: [] for n in graph.nodes}
    order = {e["config"]["name"]: i for i, e in enumerate(graph.entries)}
    for n in sorted(graph.nodes, key=lambda n: order.get(n.name, -1)):
        for key in n.inputs:
            users[key[0]].append(n.name)
    for key in graph.outputs:
        users[key[0]].append(None)
    return users


def redirect(value, moves: dict):
    """Serialized call arguments (or output list) with each tensor reference in ``moves``
    (tensor key -> tensor key) replaced; other values unchanged."""
    if isinstance(value, dict):
        return {k: redirect(v, moves) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) \
                and isinstance(value[2], int) and tuple(value[:3]) in moves:
            return list(moves[tuple(value[:3])]) + redirect(list(value[3:]), moves)
        return type(value)(redirect(v, moves) for v in value)
    return value


def rewire(config: dict, moves: dict) -> None:
    """Points every read of a tensor in ``moves`` (inbound nodes and model outputs) at its
    replacement, in place."""
    for entry in config["layers"]:
        entry["inbound_nodes"] = redirect(entry.get("inbound_nodes", []), moves)
    config["output_layers"] = redirect(config["output_layers"], moves)


def rebuild(model: keras.Model, config: dict, weights: Optional[dict] = None) -> keras.Model:
    """The model class of ``model`` from an edited config.

    Lambda layers are allowed: the config comes from the caller's model in memory (code already
    running), not from a file.

    Args:
        model: the model the config was read from.
        config: the edited config.
        weights: None leaves the new layers' weights as built (the caller sets them); a dict
            ``{layer name: weight list}`` sets those layers' and copies every other layer's
            weights from the same-named layer of ``model``.
    """
    from tfcompress.models import custom_objects_scope  # models imports the surgery report

    with custom_objects_scope(), unsafe_deserialization():
        new = type(model).from_config(config)
    if weights is not None:
        for layer in new.layers:
            if layer.name in weights:
                layer.set_weights(weights[layer.name])
            elif layer.weights:
                layer.set_weights(model.get_layer(layer.name).get_weights())
    return new


def _resolve(value, values: list):
    """Serialized keyword arguments with each tensor reference replaced by its value (one per
    model in ``values``: a list of {tensor key: tensor}); a list of such, one per model."""
    if isinstance(value, dict):
        per = {k: _resolve(v, values) for k, v in value.items()}
        return [{k: per[k][i] for k in per} for i in range(len(values))]
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) \
                and isinstance(value[2], int) and tuple(value[:3]) in values[0]:
            return [v[tuple(value[:3])] for v in values]
        per = [_resolve(v, values) for v in value]
        return [type(value)(p[i] for p in per) for i in range(len(values))]
    return [value] * len(values)


def walk(models: Sequence[keras.Model], x: np.ndarray, *,
         after: Optional[Callable[[str, list], list]] = None) -> Iterator[tuple]:
    """Runs models with the same graph side by side, one layer at a time, in config order.

    Yields ``(name, inputs)`` before each layer's output is computed, ``inputs`` holding the
    layer's input in each model (a tensor, or a list for a layer of several inputs); whatever
    the caller changes in a layer is used for its output and everything after it. ``after(name,
    outputs)`` may replace a layer's outputs (one per model) before later layers read them.

    Args:
        models: Sequential or functional models with the same layer names and graph (the first
            one's graph is read), each layer called once.
        x: the input, one batch.
        after: a hook on each layer's outputs (the input layer's too).

    Raises:
        ModelError: a layer used more than once or a layer with several outputs.
    """
    graph = read(models[-1])
    for node in graph.nodes:
        if node.shared:
            raise errors.ModelError(
                f"layer {node.name!r} is called more than once; accepted: models where each "
                "layer is used once")
        for key in node.inputs:
            if key[2] != 0:
                raise errors.ModelError(
                    f"layer {key[0]!r} has several outputs; accepted: single-output layers")
    order = {e["config"]["name"]: i for i, e in enumerate(graph.entries)}
    nodes = sorted(graph.nodes, key=lambda n: order.get(n.name, -1))  # config order: topological
    left: dict = {}
    for node in nodes:
        for key in node.inputs:
            left[key[0]] = left.get(key[0], 0) + 1
    values = [{} for _ in models]  # per model: layer name -> output
    for node in nodes:
        name = node.name
        if node.cls == "InputLayer":
            outs = [tf.constant(x) for _ in models]
        else:
            args = [tuple(t[:3]) for t in node.call]
            inputs = [[v[k[0]] for k in args] for v in values]
            inputs = [i[0] if len(args) == 1 else i for i in inputs]
            kwargs = [{}] * len(models)
            if len(args) == 1 and len(node.call[0]) > 3 and isinstance(node.call[0][3], dict):
                kwargs = _resolve(node.call[0][3], [
                    {(k, 0, 0): t for k, t in v.items()} for v in values])
            yield name, inputs
            outs = [m.get_layer(name)(i, **{**kw, "training": False})
                    for m, i, kw in zip(models, inputs, kwargs)]
            for key in node.inputs:
                left[key[0]] -= 1
                if left[key[0]] == 0:
                    for v in values:
                        del v[key[0]]
        if after is not None:
            outs = after(name, outs)
        if left.get(name):
            for v, out in zip(values, outs):
                v[name] = out
