"""Per-layer quantization error as Model Explorer node data, so the graph is coloured by error.

`Model Explorer <https://github.com/google-ai-edge/model-explorer>`_ (``pip install
ai-edge-model-explorer``, or ``tfcompress[explorer]``) shows a ``.tflite`` graph and colours its
nodes by values read from a node-data JSON file::

    model-explorer int8.tflite --node_data_paths=int8.quant_error.json

The file written here is one graph's node data in the package's own format
(``model_explorer.node_data_builder.GraphNodeData``): ``results`` keyed by each op's output
tensor name (Model Explorer matches them with the node's ``tensor_name``), a value per node, and
a green-to-red gradient. The values are ``conversion.quantization_report``'s
``rmse_over_scale``: the root mean squared error of the int8 op's output against the float op
on the same input, in quantization steps (about 0.29 is the rounding floor).

The module needs nothing beyond tfcompress; Model Explorer only reads the file.
"""

import json
import os
from typing import Optional, Sequence, Union

import numpy as np

from tfcompress import _io
from tfcompress.export.conversion import quantization_report

SUFFIX = ".quant_error.json"
GRADIENT = ({"stop": 0, "bgColor": "#1a9850"}, {"stop": 0.5, "bgColor": "#fee08b"},
            {"stop": 1, "bgColor": "#d73027"})


def node_data(rows: Sequence[dict], *, key: str = "tensor", value: str = "rmse_over_scale",
              name: str = "int8 error (rmse / quantization step)") -> dict:
    """Model Explorer's ``GraphNodeData`` (as a dict) from per-op rows.

    Args:
        rows: e.g. ``conversion.quantization_report(...)``: dicts holding ``key`` (an op's output
            tensor name) and a numeric ``value``; non-finite values are left out.
        key, value: the row fields used.
        name: the name Model Explorer shows for this node data.

    Returns:
        {"name", "results": {tensor name: {"value": float}}, "gradient": [...]}.
    """
    results = {}
    for row in rows:
        v = row.get(value)
        if row.get(key) and v is not None and np.isfinite(v):
            results[str(row[key])] = {"value": float(v)}
    return {"name": name, "results": results, "gradient": [dict(g) for g in GRADIENT]}


def write_node_data(data: dict, path: str) -> str:
    """Writes node data (``node_data``'s dict) as JSON, atomically; returns the path."""
    _io.write_text(path, json.dumps(data, indent=2))
    return path


def node_data_path(tflite_path: str) -> str:
    """Where the node data of ``model.tflite`` goes: ``model.quant_error.json`` beside it."""
    root, _ = os.path.splitext(tflite_path)
    return root + SUFFIX


def write_quantization_error(model, representative_data, tflite_path: str, *,
                             representative_samples: int = 100,
                             path: Optional[str] = None) -> str:
    """The per-layer int8 error of ``model`` as node data beside its exported int8 ``.tflite``.

    Args:
        model: the Keras model (or model path) that ``tflite_path`` was converted from.
        representative_data: calibration images, as for ``convert(..., "int8")``.
        tflite_path: the exported int8 flatbuffer (names the output file).
        representative_samples: how many images calibrate and measure the error.
        path: the output file (default: ``node_data_path(tflite_path)``).

    Returns:
        The path written.

    Raises:
        DataError, ModelError: as ``conversion.quantization_report``.
    """
    rows = quantization_report(model, representative_data,
                               representative_samples=representative_samples)
    return write_node_data(node_data(rows), path or node_data_path(tflite_path))


def read_node_data(path: Union[str, os.PathLike]) -> dict:
    """The node data of a file ``write_node_data`` wrote."""
    with open(path) as f:
        return json.load(f)
