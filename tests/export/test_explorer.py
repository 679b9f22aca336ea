"""Model Explorer node data: the per-layer int8 error, read back with the package's own classes
and matched to the nodes its TFLite adapter builds from the exported flatbuffer."""

import dataclasses
import json

import pytest

import tfcompress
from tfcompress import models
from tfcompress.export import explorer
from tfcompress.export.conversion import quantization_report

node_data_builder = pytest.importorskip(
    "model_explorer.node_data_builder", reason="the test extra installs ai-edge-model-explorer")
adapter = pytest.importorskip("ai_edge_model_explorer_adapter")


def _adapter_tensor_names(path: str) -> dict:
    """{output tensor name: node label} of every op node Model Explorer shows for ``path``."""
    from model_explorer.utils import convert_builtin_resp

    graphs = convert_builtin_resp(
        adapter.ConvertFlatbufferDirectlyToJson(adapter.VisualizeConfig(), path))
    names = {}
    for collection in graphs:
        for graph in dataclasses.asdict(collection)["graphs"]:
            for node in graph["nodes"]:
                for meta in node["outputsMetadata"]:
                    for attr in meta["attrs"]:
                        if attr["key"] == "tensor_name":
                            names[attr["value"]] = node["label"]
    return names


def test_quantization_error_node_data(tmp_path):
    (x, y), _ = tfcompress.data.load_digits()
    tfcompress.keras.utils.set_random_seed(0)
    model = models.digits_cnn(width=0.25)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:256], y[:256], epochs=1, verbose=0)
    tflite = tmp_path / "int8.tflite"
    tflite.write_bytes(tfcompress.convert(model, "int8", representative_data=x[:64]))
    path = explorer.write_quantization_error(model, x[:64], str(tflite), representative_samples=64)
    assert path == str(tmp_path / "int8.quant_error.json")
    data = explorer.read_node_data(path)

    # The package's own classes take the file as one graph's node data, unchanged.
    graph = node_data_builder.GraphNodeData(
        results={k: node_data_builder.NodeDataResult(**v) for k, v in data["results"].items()},
        name=data["name"],
        gradient=[node_data_builder.GradientItem(**g) for g in data["gradient"]])
    again = json.loads(graph.to_json_string())
    assert {k: again[k] for k in data} == data

    # Every key is a node Model Explorer builds from the flatbuffer: the quantized ops, all 7.
    nodes = _adapter_tensor_names(str(tflite))
    assert set(data["results"]) <= set(nodes)
    assert sorted(nodes[k].upper() for k in data["results"]) == sorted(
        ["CONV_2D"] * 2 + ["FULLY_CONNECTED"] * 2 + ["MAX_POOL_2D", "RESHAPE", "SOFTMAX"])
    # Values are the report's rmse / quantization step (rounding alone gives about 0.29).
    report = {r["tensor"]: r["rmse_over_scale"]
              for r in quantization_report(model, x[:64], representative_samples=64)}
    assert all(v["value"] == pytest.approx(report[k]) for k, v in data["results"].items())
    assert all(0 <= v["value"] < 5 for v in data["results"].values())
    weighted = [v["value"] for k, v in data["results"].items()
                if nodes[k].upper() in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(weighted) == 4 and min(weighted) > 0.1
