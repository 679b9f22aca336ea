"""The house's shape: dependencies point one way, techniques know nothing of recipes, every
public submodule imports with the package, and facts travel with results across processes."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import tfcompress

PACKAGE = os.path.dirname(tfcompress.__file__)
TECHNIQUES = ("pruning", "clustering", "quantization", "distillation", "surgery", "lowbit",
              "mixed", "conversion", "wrappers", "validation", "equalization", "rounding",
              "recovery", "grids", "layerwise")
ABOVE = ("recipe", "stages", "study")  # what no technique may import


def _imports() -> dict:
    """{module: set of tfcompress modules it imports}, lazy (function-level) imports included."""
    graph = {}
    for name in os.listdir(PACKAGE):
        if not name.endswith(".py") or name == "__init__.py":
            continue
        module = name[:-3]
        tree = ast.parse(open(os.path.join(PACKAGE, name), encoding="utf-8").read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "tfcompress":
                    found |= {a.name for a in node.names}
                elif node.module.startswith("tfcompress."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names
                          if a.name.startswith("tfcompress.")}
        graph[module] = found & {n[:-3] for n in os.listdir(PACKAGE) if n.endswith(".py")}
    return graph


def _reaches(graph, start) -> set:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_import_cycle():
    graph = _imports()
    cyclic = sorted(m for m in graph if m in _reaches(graph, m))
    assert not cyclic, f"modules on an import cycle: {cyclic}"


def test_shared_import_cycles_tool_agrees():
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "import-cycles")
    if not os.path.exists(tool):  # CI and sessions have shared/ beside the clone
        pytest.skip("../shared/tools/import-cycles is not beside this checkout")
    out = subprocess.run([sys.executable, tool, PACKAGE], capture_output=True, text=True)
    assert out.returncode == 0 and "no import cycles" in out.stdout, out.stdout


def test_techniques_know_nothing_of_recipes():
    graph = _imports()
    for module in TECHNIQUES:
        reached = _reaches(graph, module) & set(ABOVE)
        assert not reached, f"{module} reaches {sorted(reached)}"
    assert "stages" in _reaches(graph, "recipe") and "recipe" in _reaches(graph, "study")


@pytest.mark.parametrize("name", ["conversion", "validation", "study", "profiling", "android",
                                  "callbacks", "lowbit", "mixed", "stages", "wrappers", "stats"])
def test_public_submodules_import_with_the_package(name):
    module = getattr(tfcompress, name)
    assert module.__name__ == f"tfcompress.{name}" and type(module).__name__ == "module"


def test_verbs_are_functions_nouns_are_modules():
    assert tfcompress.convert is tfcompress.conversion.convert
    assert tfcompress.validate is tfcompress.validation.validate
    assert tfcompress.search is tfcompress.study.search
    assert tfcompress.profile is tfcompress.profiling.profile


def test_quantizer_recipe_travels_in_the_file_to_another_process(tmp_path):
    """A dynamic_wi4 flatbuffer made in a child process reports its recipe and widths here."""
    path = tmp_path / "wi4.tflite"
    code = (
        "import tfcompress\n"
        "m = tfcompress.models.digits_cnn(width=0.25)\n"
        f"open({str(path)!r}, 'wb').write(tfcompress.convert(m, 'dynamic_wi4'))\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    info = tfcompress.conversion.conversion_info(str(path))
    recipe = info["facts"]["recipe"]
    assert info["mode"] == "dynamic_wi4" and tfcompress.lowbit.recipe_of(str(path)) == recipe
    assert {e["op_config"]["weight_tensor_config"]["num_bits"] for e in recipe} == {4}
    widths = {row["layer"]: row["bits"] for row in info["layers"]}
    assert widths["conv2"] == 4 and widths["dense"] == 4
    notes = tfcompress.report.format_notes([{"format": "dynamic_wi4", "conversion": info}])
    assert "4-bit x" in notes


def test_surgery_and_wrapper_facts_survive_saving(tmp_path):
    model = tfcompress.models.digits_cnn(width=0.25)
    pruned = tfcompress.prune(model, 0.5, end_step=20, layers=["dense"])
    path = str(tmp_path / "pruned.h5")
    pruned.save(path)
    with tfcompress.models.custom_objects_scope():
        loaded = tfcompress.keras.models.load_model(path)
    assert tfcompress.pruning.pruning_info(loaded)["pruned"] == ["dense"]
    assert tfcompress.pruning.pruning_info(loaded)["schedule"]["end_step"] == \
        tfcompress.pruning.pruning_info(pruned)["schedule"]["end_step"]
    x = np.zeros((1, 8, 8, 1), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))
