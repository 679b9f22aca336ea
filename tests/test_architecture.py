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
# Each module's layer: imports go to the same family or a lower layer, never up or sideways.
FAMILY_LAYER = {"errors": -1, "_compat": 0, "core": 1, "training": 2, "surgery": 2, "ptq": 2, "export": 3,
                "pipeline": 4, "front": 5}
FRONT = {"tfcompress", "tfcompress.__main__", "tfcompress.cli", "tfcompress.callbacks"}


def _family(module: str) -> str:
    if module in FRONT or module.startswith("tfcompress.configs"):
        return "front"
    if module == "tfcompress.errors":  # the error classes: a leaf every layer raises
        return "errors"
    part = module.split(".")[1]
    return part if part in FAMILY_LAYER else "core"


def _modules() -> dict:
    """{dotted module name: file path} for every module of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE))
                dotted = rel[:-3].replace(os.sep, ".").removesuffix(".__init__")
                found[dotted] = os.path.join(root, name)
    return found


def _imports() -> dict:
    """{module: set of tfcompress modules it imports}, lazy (function-level) imports included."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (module, "tfcompress"):
                    found.add(target)
        graph[module] = found
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


def test_dependencies_point_one_way():
    """pipeline -> export -> training/surgery/ptq -> core -> _compat; the three technique
    families never import each other, and nothing imports a layer above its own."""
    wrong = []
    for module, targets in _imports().items():
        family = _family(module)
        for target in targets:
            other = _family(target)
            up = FAMILY_LAYER[other] > FAMILY_LAYER[family]
            sideways = other != family and FAMILY_LAYER[other] == FAMILY_LAYER[family] == 2
            if up or sideways:
                wrong.append(f"{module} ({family}) -> {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_a_wrong_arrow():
    """The layer rule itself: an arrow from a technique to the pipeline or sideways is wrong."""
    assert FAMILY_LAYER[_family("tfcompress.pipeline.recipe")] > \
        FAMILY_LAYER[_family("tfcompress.training.pruning")]
    assert _family("tfcompress.surgery.channels") != _family("tfcompress.ptq.grids")
    assert _family("tfcompress.wrappers") == "core" and _family("tfcompress.cli") == "front"


def test_techniques_know_nothing_of_recipes():
    graph = _imports()
    above = {m for m in graph if _family(m) in ("pipeline", "front")}
    for module in graph:
        if _family(module) in ("training", "surgery", "ptq", "export", "core", "_compat"):
            reached = _reaches(graph, module) & above
            assert not reached, f"{module} reaches {sorted(reached)}"
    assert "tfcompress.pipeline.stages" in _reaches(graph, "tfcompress.pipeline.recipe")
    assert "tfcompress.pipeline.recipe" in _reaches(graph, "tfcompress.pipeline.search")


def test_every_module_imports_with_the_package_in_a_fresh_process():
    """``import tfcompress`` alone makes every module reachable as an attribute (checked in a
    new process: in this one, other tests have already imported the submodules)."""
    names = sorted(m for m in _modules() if m not in ("tfcompress", "tfcompress.__main__", "tfcompress.cli")
                   and not m.startswith("tfcompress.configs."))  # the command's modules load with it
    code = ("import functools, tfcompress\n"
            f"names = {names!r}\n"
            "missing = [n for n in names if not hasattr(functools.reduce(\n"
            "    lambda o, a: getattr(o, a, None), n.split('.')[1:-1], tfcompress) or object(),\n"
            "    n.split('.')[-1])]\n"
            "print('MISSING', missing)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "MISSING []" in out.stdout, out.stdout + out.stderr[-2000:]


def test_verbs_are_functions_nouns_are_modules():
    assert tfcompress.convert is tfcompress.export.conversion.convert
    assert tfcompress.validate is tfcompress.export.validation.validate
    assert tfcompress.search is tfcompress.pipeline.search.search
    assert tfcompress.profile is tfcompress.profiling.profile
    assert tfcompress.android is tfcompress.export.android
    assert callable(tfcompress.configs.load) and "digits" in tfcompress.configs.names()


def test_quantizer_recipe_travels_in_the_file_to_another_process(tmp_path):
    """A dynamic_wi4 flatbuffer made in a child process reports its recipe and widths here."""
    path = tmp_path / "wi4.tflite"
    code = (
        "import tfcompress\n"
        "m = tfcompress.models.digits_cnn(width=0.25)\n"
        f"open({str(path)!r}, 'wb').write(tfcompress.convert(m, 'dynamic_wi4'))\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    info = tfcompress.export.conversion.conversion_info(str(path))
    recipe = info["facts"]["recipe"]
    assert info["mode"] == "dynamic_wi4" and tfcompress.export.lowbit.recipe_of(str(path)) == recipe
    assert {e["op_config"]["weight_tensor_config"]["num_bits"] for e in recipe} == {4}
    widths = {row["layer"]: row["bits"] for row in info["layers"]}
    assert widths["conv2"] == 4 and widths["dense"] == 4
    notes = tfcompress.pipeline.report.format_notes([{"format": "dynamic_wi4", "conversion": info}])
    assert "4-bit x" in notes


def test_surgery_and_wrapper_facts_survive_saving(tmp_path):
    model = tfcompress.models.digits_cnn(width=0.25)
    pruned = tfcompress.prune(model, 0.5, end_step=20, layers=["dense"])
    path = str(tmp_path / "pruned.h5")
    pruned.save(path)
    with tfcompress.models.custom_objects_scope():
        loaded = tfcompress.keras.models.load_model(path)
    assert tfcompress.training.pruning.pruning_info(loaded)["pruned"] == ["dense"]
    assert tfcompress.training.pruning.pruning_info(loaded)["schedule"]["end_step"] == \
        tfcompress.training.pruning.pruning_info(pruned)["schedule"]["end_step"]
    x = np.zeros((1, 8, 8, 1), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))


OPTIONAL = ("optuna", "sqlalchemy", "scipy", "matplotlib")


def test_import_loads_no_optional_subsystem_in_a_fresh_process():
    """``import tfcompress`` loads neither Optuna nor SQLAlchemy, and no tfcompress module asks
    for Optuna, SQLAlchemy, scipy or matplotlib on import (a search, a statistic or a plot loads
    them when it runs). Every ``import`` statement is recorded with the module that ran it, so a
    module-level import in tfcompress is caught even where another package would load it first;
    and none of the four (nor Keras 3, which tfmot would reach for) is in ``sys.modules`` after
    the import (``_compat/keras.py`` hides scipy and Keras 3 from the two ``try`` imports of
    TensorFlow and tfmot that would load them)."""
    code = (
        "import builtins, json, sys\n"
        f"optional = {OPTIONAL!r}\n"
        "asked, real = [], builtins.__import__\n"
        "def spy(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    importer = (globals or {}).get('__name__', '')\n"
        "    if level == 0 and name.split('.')[0] in optional and importer.startswith('tfcompress'):\n"
        "        asked.append(f'{importer} -> {name}')\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = spy\n"
        "import tfcompress\n"
        "loaded = sorted(m for m in optional + ('keras',) if m in sys.modules)\n"
        "on_import = list(asked)\n"
        "tfcompress.pipeline.stats.paired_difference([True, False], [False, True])\n"
        "print('RESULT', json.dumps({'asked': on_import, 'loaded': loaded,\n"
        "                            'when_used': asked[len(on_import):]}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, out.stdout + out.stderr[-2000:]
    result = __import__("json").loads(line[len("RESULT "):])
    assert result["asked"] == [], result["asked"]
    assert result["loaded"] == [], result["loaded"]
    # The spy sees a tfcompress module's import even of a package already loaded: a statistic
    # asks for scipy when it runs.
    assert "tfcompress.pipeline.stats -> scipy" in result["when_used"], result["when_used"]


# ---------------------------------------------------------------- private APIs only in _compat/

# Imports that reach another package's private modules: Keras' and tf_keras' ``src`` trees,
# TensorFlow's and tfmot's ``python.core``, LiteRT's generated flatbuffer schema, and the
# LiteRT Quantizer's modules beyond its public top level (``Quantizer``, the ``recipe`` helpers).
_PRIVATE_PARTS = (".src.", ".python.core.", ".schema_py_generated.")
_QUANTIZER_PUBLIC = {"Quantizer", "recipe"}
_NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public despite the underscore


def _private_imports(tree) -> list:
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfcompress._compat"):
            wrapped = [a.name for a in node.names
                       if a.name.startswith("_") and not a.name.startswith("__")]
            names = [f"{node.module}.{wrapped[0]}"] if wrapped else []  # a wrapped internal
        for name in names:
            parts = name.split(".")
            quantizer = parts[0] in ("litert_quantizer", "ai_edge_quantizer") and len(parts) > 1 \
                and parts[1] not in _QUANTIZER_PUBLIC
            compat = name.startswith("tfcompress._compat.") and name.split(".")[-1][:1] == "_"
            if quantizer or compat or any(p in f".{name}." for p in _PRIVATE_PARTS):
                found.append((node.lineno, f"import {name}"))
                break  # one finding per import statement
    return found


def _our_module_names(tree) -> set:
    """Names bound to tfcompress modules (``import tfcompress.x as y``, ``from tfcompress
    import errors``): their ``_private`` members are ours to use. Not the ``_compat`` modules:
    their private members are the other packages' internals they wrap."""
    names = {"self", "cls"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names
                      if a.name.split(".")[0] == "tfcompress" and "_compat" not in a.name}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tfcompress":
            base = os.path.join(os.path.dirname(PACKAGE), *node.module.split("."))
            names |= {a.asname or a.name for a in node.names
                      if "_compat" not in f"{node.module}.{a.name}"
                      and (os.path.exists(os.path.join(base, a.name + ".py"))
                           or os.path.isdir(os.path.join(base, a.name)))}
    return names


def _private_attributes(tree) -> list:
    """``obj._name`` (and ``getattr(obj, "_name")``) on anything but self, cls or our modules."""
    ours = _our_module_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attr, base = node.attr, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            attr, base = node.args[1].value, node.args[0]
        else:
            continue
        if not attr.startswith("_") or attr.startswith("__") or attr in _NAMEDTUPLE_API:
            continue
        if isinstance(base, ast.Name) and base.id in ours:
            continue
        found.append((node.lineno, f"{ast.unparse(base)}.{attr}"))
    return found


def private_reaches(source: str) -> list:
    """[(line, what)] of every reach into another package's private API in ``source``."""
    tree = ast.parse(source)
    return sorted(_private_imports(tree) + _private_attributes(tree))


def test_private_apis_are_reached_only_in_compat():
    compat = os.path.join(PACKAGE, "_compat")
    found = []
    for module, path in sorted(_modules().items()):
        if os.path.dirname(path) == compat:
            continue
        found += [f"{module}:{line}: {what}"
                  for line, what in private_reaches(open(path, encoding="utf-8").read())]
    assert not found, "private API reached outside tfcompress/_compat/:\n" + "\n".join(found)


def test_the_private_api_scan_flags_a_planted_reach():
    planted = (
        "import tfcompress.export.lowbit as lowbit\n"
        "from tfcompress import errors\n"
        "from keras.src.models.functional import Functional\n"
        "import tf_keras.src.engine.functional\n"
        "from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry\n"
        "from ai_edge_litert import schema_py_generated as schema\n"
        "from litert_quantizer import qtyping\n"
        "from litert_quantizer.utils import tfl_flatbuffer_utils\n"
        "from litert_quantizer import Quantizer\n"
        "import tfcompress._compat.quantizer as _quantizer\n"
        "from tfcompress._compat.quantizer import _qtyping, recipe_entry\n"
        "def f(model, trial, row):\n"
        "    names = _quantizer._qtyping.TFLOperationName, _quantizer.op_types()\n"
        "    nodes = model._nodes_by_depth\n"
        "    tid = getattr(trial, '_trial_id', None)\n"
        "    ok = self._cache, lowbit._BITS, errors._x, row._replace(a=1), model.__class__\n"
        "    return model.layers[0]._inbound_nodes\n")
    found = [what for _, what in private_reaches(planted)]
    assert found == [
        "import keras.src.models.functional",
        "import tf_keras.src.engine.functional",
        "import tensorflow_model_optimization.python.core.sparsity.keras",
        "import ai_edge_litert.schema_py_generated",
        "import litert_quantizer.qtyping",
        "import litert_quantizer.utils",
        "import tfcompress._compat.quantizer._qtyping",
        "_quantizer._qtyping",
        "model._nodes_by_depth",
        "trial._trial_id",
        "model.layers[0]._inbound_nodes",
    ], found


def test_every_compat_module_names_the_versions_it_was_checked_against():
    import re

    compat = os.path.join(PACKAGE, "_compat")
    unchecked = [name for name in sorted(os.listdir(compat))
                 if name.endswith(".py") and name != "__init__.py"
                 and not re.search(r"[Cc]hecked against[^.]*\d+\.\d+",
                                   ast.get_docstring(ast.parse(open(os.path.join(compat, name),
                                                                    encoding="utf-8").read())) or "")]
    assert not unchecked, f"_compat modules without 'checked against <version>': {unchecked}"
