"""Functional-graph internals of tf_keras and Keras 3, isolated: what a rebuild and a per-call
count need and neither library exposes publicly.

Checked against tf_keras 2.21.0 and Keras 3.15.1. Each function names the private attribute
it reads; nothing else in the package reads them.
"""

from typing import Optional


def nodes_by_depth(model) -> dict:
    """``{depth: [node]}`` of a functional model's graph, deepest (the inputs) first when sorted
    in reverse. ``Functional._nodes_by_depth`` (tf_keras 2.21 and Keras 3.15 alike)."""
    return model._nodes_by_depth


def keras_history(tensor):
    """The record of the layer call that made a symbolic tensor: Keras 3's ``(operation,
    node_index, tensor_index)``, tf_keras' ``(layer, node_index, tensor_index)``.
    ``KerasTensor._keras_history`` (Keras 3.15 and tf_keras 2.21)."""
    return tensor._keras_history


def k3_graph(model):
    """The Functional graph of a Keras 3 model: a Sequential's inner ``_functional`` (Keras 3.15)
    once built, else the model itself."""
    return getattr(model, "_functional", None) or model


def k3_io_structs(graph) -> tuple:
    """``(inputs, outputs)`` as the Keras 3 Functional graph nests them (dicts and lists kept).
    ``Functional._inputs_struct`` / ``_outputs_struct`` (Keras 3.15)."""
    return graph._inputs_struct, graph._outputs_struct


def k2_io_structs(model) -> tuple:
    """``(inputs, outputs)`` as a tf_keras functional model nests them.
    ``Functional._nested_inputs`` / ``_nested_outputs`` (tf_keras 2.21)."""
    return model._nested_inputs, model._nested_outputs


def own_node_keys(model) -> Optional[set]:
    """Keys ``"<layer name>_ib-<node index>"`` of the call nodes that belong to a tf_keras
    functional model's own graph, or None for a model without a graph (subclassed).
    ``Functional._network_nodes`` (tf_keras 2.21): the only record of them."""
    return getattr(model, "_network_nodes", None)


def call_count(layer) -> int:
    """How many call nodes a tf_keras layer holds, in every graph it was ever called in.
    ``Layer._inbound_nodes`` (tf_keras 2.21)."""
    return len(getattr(layer, "_inbound_nodes", []))
