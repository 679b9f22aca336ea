"""Model files crafted to run code on loading: each is refused before anything of it runs.

Every malicious file is first shown to be malicious (loaded with the gate off, it writes its
marker file), then refused by ``models.load_model`` / ``tfcompress.convert`` with one line that
names the class, module or op and where it sits, with no marker written.
"""

import json
import os
import re
import sys
import time
import zipfile

import numpy as np
import pytest

import tfcompress
from tfcompress import errors, keras, models, safe_loading
from tfcompress._compat import savedmodel

PLANTED = """
import os
open({marker!r} + ".import", "w").write("imported")

def fn(x):
    open({marker!r}, "w").write("ran")
    return x
"""


def _refused(fn, match, *markers):
    with pytest.raises(errors.ModelError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    for marker in markers:
        assert not os.path.exists(marker) and not os.path.exists(marker + ".import"), marker
    return str(info.value)


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module on sys.path (a .py in the working directory, as a user's folder holds) whose
    import and whose ``fn`` each write a marker file; (module name, marker path)."""
    name = f"planted_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**6}"
    marker = str(tmp_path / "ran.txt")
    (tmp_path / f"{name}.py").write_text(PLANTED.format(marker=marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def _forget(name, marker):
    """As in a fresh process: the module not imported, no marker yet."""
    sys.modules.pop(name, None)
    for path in (marker, marker + ".import"):
        if os.path.exists(path):
            os.remove(path)


def _module_lambda_model(name):
    module = __import__(name)
    return keras.Sequential([keras.Input((4,)), keras.layers.Lambda(module.fn, name="code"),
                             keras.layers.Dense(2, name="dense")])


def _rewrite_keras_config(path, change):
    """Rewrites ``config.json`` inside a ``.keras`` zip with ``change(config)``."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, content in members.items():
            z.writestr(n, content)


def _by_module(config, module, function):
    """The Lambda layer's function named by module (``function_type: function``)."""
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Lambda":
            layer["config"].update(function_type="function", module=module, function={
                "module": module, "class_name": "function", "config": function,
                "registered_name": function})


def test_keras_module_function_lambda_is_refused_and_imports_nothing(tmp_path, planted):
    name, marker = planted
    path = str(tmp_path / "m.keras")
    _module_lambda_model(name).save(path)  # Keras writes the function's bytecode ...
    _rewrite_keras_config(path, lambda c: _by_module(c, name, "fn"))  # ... a file names it
    _forget(name, marker)
    message = _refused(lambda: models.load_model(path), r"holds a Lambda layer 'code'"
                       r".*safe_mode=False", marker)
    assert path in message
    # The same file with the gate off imports the planted module and calls it: it is malicious.
    models.load_model(path, safe_mode=False)
    assert os.path.exists(marker + ".import") and os.path.exists(marker)
    _rewrite_keras_config(path, lambda c: _by_module(c, "os", "system"))
    _refused(lambda: models.load_model(path), r"holds a Lambda layer 'code'")


def test_keras3_files_pass_the_same_gate(tmp_path, planted):
    """A Keras 3 file: a class registered with Keras 3 passes; a module Lambda is refused by
    ``load_model`` and by ``tfcompress.from_keras3(path)`` alike, importing nothing."""
    import keras as k3

    @k3.saving.register_keras_serializable(package="untrusted_k3")
    class Triple(k3.layers.Layer):
        def call(self, x):
            return 3.0 * x

    x = k3.Input((4,))
    path = str(tmp_path / "k3.keras")
    k3.Model(x, k3.layers.Dense(2)(Triple(name="triple")(x))).save(path)
    safe_loading.check_safe(path)
    name, marker = planted
    path = str(tmp_path / "k3_lambda.keras")
    k3.Model(x, k3.layers.Lambda(lambda t: t, output_shape=(4,), name="code")(x)).save(path)
    _rewrite_keras_config(path, lambda c: _by_module(c, name, "fn"))
    _forget(name, marker)
    _refused(lambda: models.load_model(path), r"holds a Lambda layer 'code'", marker)
    _refused(lambda: tfcompress.from_keras3(path), r"holds a Lambda layer 'code'", marker)


def test_h5_lambda_by_module_or_bytecode_is_refused(tmp_path, planted):
    import h5py

    name, marker = planted
    path = str(tmp_path / "m.h5")
    _module_lambda_model(name).save(path)  # bytecode that writes the marker
    _forget(name, marker)
    _refused(lambda: models.load_model(path), r"holds a Lambda layer 'code'", marker)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                layer["config"].update(function="system", module="os", function_type="function")
        f.attrs["model_config"] = json.dumps(config)
    _refused(lambda: models.load_model(path), r"holds a Lambda layer 'code'", marker)


def test_keras_function_by_module_outside_keras_is_refused(tmp_path, planted):
    """Not a Lambda: a Dense whose activation is a function named by the planted module."""
    name, marker = planted
    path = str(tmp_path / "m.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")]).save(path)

    def plant(config):
        config["config"]["layers"][-1]["config"]["activation"] = {
            "module": name, "class_name": "function", "config": "fn", "registered_name": "fn"}

    _rewrite_keras_config(path, plant)
    message = _refused(lambda: models.load_model(path),
                       rf"a function 'fn' of module '{name}' \(layer 'dense'", marker)
    assert "refused in safe mode" in message
    _rewrite_keras_config(path, lambda c: c["config"]["layers"][-1].update(module=name))
    _refused(lambda: models.load_model(path), rf"module path '{name}'", marker)


def test_tf_op_layer_calling_file_io_is_refused(tmp_path):
    import h5py

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs * 2.0))
    path = str(tmp_path / "m.h5")
    model.save(path)
    with h5py.File(path, "r+") as f:
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        assert '"function": "math.multiply"' in text  # the TFOpLambda recorded by Keras
        f.attrs["model_config"] = text.replace('"math.multiply"', '"io.write_file"')
    _refused(lambda: models.load_model(path), r"a TF op layer .* calling tf.io.write_file")
    allowed = safe_loading._safe_tf_function
    assert allowed("math.multiply") and allowed("__operators__.add") and allowed("reshape")
    assert not allowed("py_function") and not allowed("print") and not allowed("io.read_file")


def _h5_with_config(path, value):
    import h5py

    models.digits_cnn(width=0.25).save(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["model_config"]
        f.attrs["model_config"] = value


@pytest.mark.parametrize("case,value,match", [
    ("int array", np.arange(5), r"not JSON text \(a ndarray\)"),
    ("opaque bytes", np.void(b"\x00\x01\xff"), r"not JSON text \(a void\)"),
    ("deep nesting", "[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_h5_configs_that_are_not_json_are_one_line(tmp_path, case, value, match):
    path = str(tmp_path / "m.h5")
    _h5_with_config(path, value)
    _refused(lambda: models.load_model(path), match)


def test_keras_deep_and_huge_configs(tmp_path):
    path = str(tmp_path / "deep.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for n, content in members.items():
            z.writestr(n, b"[" * 200000 + b"]" * 200000 if n == "config.json" else content)
    _refused(lambda: models.load_model(path), "nested too deeply")
    # A 400 KB zip whose config.json decompresses to 300 MB: refused from the zip's header
    # without reading it whole (peak memory stays far below the 300 MB).
    import tracemalloc

    huge = str(tmp_path / "huge.keras")
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("metadata.json", members["metadata.json"])
        with z.open("config.json", "w", force_zip64=True) as f:
            chunk = b" " * 2**20
            for _ in range(300):
                f.write(chunk)
    assert os.path.getsize(huge) < 2 * 2**20
    tracemalloc.start()
    _refused(lambda: models.load_model(huge), r"config.json decompresses to more than 16 MB")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak


# ------------------------------------------------------------------------- SavedModel graphs

def _tf1_savedmodel_with_main_op(path, marker):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([4, 2]))
        y = tf.matmul(x, w, name="y")
        main_op = tf.group(tf.compat.v1.global_variables_initializer(),
                           tf.io.write_file(marker, "ran"), name="main_op")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(w.initializer)
            builder = tf.compat.v1.saved_model.Builder(path)
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": signature},
                main_op=main_op)
            builder.save()


def test_tf1_savedmodel_main_op_writing_a_file_is_refused(tmp_path):
    import tensorflow as tf

    marker, path = str(tmp_path / "ran.txt"), str(tmp_path / "tf1")
    _tf1_savedmodel_with_main_op(path, marker)
    assert not os.path.exists(marker)
    _refused(lambda: tfcompress.convert(path, "float32"),
             r"holds op WriteFile \(node 'WriteFile' in the graph\), an op that touches files",
             marker)
    _refused(lambda: models.load_model(path), r"holds op WriteFile", marker)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:  # malicious: loading runs it
        tf.compat.v1.saved_model.load(sess, ["serve"], path)
    assert os.path.exists(marker)


def test_tf1_main_op_running_the_savers_save_is_refused(tmp_path):
    """Checkpoint ops are allowed in the saver only while no loader-run op depends on them."""
    import tensorflow as tf

    path = str(tmp_path / "tf1_save")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.ones([4, 2]))
        y = tf.matmul(x, w, name="y")
        saver = tf.compat.v1.train.Saver()
        save_op = graph.get_tensor_by_name(saver.saver_def.save_tensor_name).op
        main_op = tf.group(tf.compat.v1.global_variables_initializer(), save_op, name="main_op")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(w.initializer)
            builder = tf.compat.v1.saved_model.Builder(path)
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": signature},
                main_op=main_op, saver=saver)
            builder.save()
    _refused(lambda: tfcompress.convert(path, "float32"),
             r"holds op SaveV2 \(node 'save/SaveV2' in the graph\), an op that touches checkpoint")
    _tf1_savedmodel_with_main_op(str(tmp_path / "plain"), str(tmp_path / "m"))  # its saver passes
    proto = savedmodel.read(str(tmp_path / "plain"))
    saver_ops = [op for op in savedmodel.graph_ops(proto) if op.op in savedmodel.CHECKPOINT_OPS]
    assert saver_ops and all(op.in_saver for op in saver_ops)


def _resource_class(marker):
    import tensorflow as tf

    class Resource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(marker, "ran")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    return Resource


@pytest.mark.parametrize("holder", ["module", "keras"])
def test_tf2_resource_initializer_writing_a_file_is_refused(tmp_path, holder):
    import tensorflow as tf

    marker, path = str(tmp_path / "ran.txt"), str(tmp_path / "tf2")
    if holder == "module":
        obj = tf.Module()
        obj.f = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None, 4])])
        obj.res = _resource_class(marker)()
        tf.saved_model.save(obj, path, signatures=obj.f.get_concrete_function())
    else:  # keras_metadata.pb lists only Keras classes: the graph is what holds the op
        obj = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        obj.res = _resource_class(marker)()
        obj.save(path, save_format="tf")
    if os.path.exists(marker):  # created (and initialized) here, before saving
        os.remove(marker)
    message = _refused(lambda: models.load_model(path),
                       r"holds op WriteFile \(node '.*' in function '.*initialize.*'\)", marker)
    assert "safe_mode=False" in message
    _refused(lambda: tfcompress.convert(path, "float32"), r"holds op WriteFile", marker)
    if holder == "keras":  # the recipe (tfcompress compress --config.model.path=DIR) too
        from ml_collections import ConfigDict

        config = ConfigDict({"model": {"path": path}, "data": {"limit": 100}})
        _refused(lambda: tfcompress.run_recipe(config, str(tmp_path / "run")),
                 r"holds op WriteFile", marker)
    tf.saved_model.load(path)  # malicious: loading runs the initializer
    assert os.path.exists(marker)


def test_op_deny_list_is_complete_against_tensorflows_registry():
    """Every registered op whose name says file, reader, writer, Python, summary, print, debug,
    checkpoint, send/receive, feed, collective or data pipeline is denied, or reviewed here."""
    import tensorflow as tf

    looks = re.compile(r"File|Py|Save|Restore|Checkpoint|Summary|Print|Writer|Reader|Record|Debug|"
                       r"Rpc|Sql|LMDB|Proto|Immutable|Remap|Snapshot|Send|Recv|Outfeed|Infeed|"
                       r"Collective|Distributed|Dataset|Iterator|Matching|TextLine|Vocab|Remote")
    reviewed_harmless = {  # compute on tensors in memory only
        "BoostedTreesExampleDebugOutputs", "DeserializeIterator", "SerializeIterator",
        "ShardedFilename", "ShardedFilespec", "BoostedTreesMakeStatsSummary",
        "Snapshot",  # a copy of a tensor (not tf.data's snapshot, which is *Dataset*)
    }
    ops = [n for n in dir(tf.raw_ops) if not n.startswith("_")]
    assert len(ops) > 1000
    missing = [op for op in ops if looks.search(op) and op not in reviewed_harmless
               and not savedmodel.denied_kind(op)]
    assert missing == []
    for op in ("WriteFile", "ReadFile", "MatchingFiles", "PyFunc", "EagerPyFunc",
               "PyFuncStateless", "PrintV2", "TFRecordDataset", "SaveV2"):
        assert savedmodel.denied_kind(op), op
    assert not savedmodel.denied_kind("MatMul") and not savedmodel.denied_kind("VarHandleOp")


# ------------------------------------------------------------------ legitimate files still load

@pytest.mark.parametrize("fmt", [".keras", ".h5", "savedmodel"])
def test_legitimate_models_load_with_the_gate(tmp_path, fmt):
    """BatchNormalization, tfmot's pruning wrappers and a registered custom layer pass."""
    @keras.utils.register_keras_serializable("untrusted_test")
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    base = models.mini_xception(width=0.25)
    pruned = tfcompress.prune(base, 0.5, epochs=1, steps_per_epoch=8)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, pruned(Double(name="double")(inputs)))
    path = str(tmp_path / ("m" + fmt if fmt != "savedmodel" else "sm"))
    model.save(path) if fmt != "savedmodel" else model.save(path, save_format="tf")
    models.check_safe(path)
    loaded = models.load_model(path)
    x = np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    names = {type(layer).__name__ for layer in loaded.layers}
    assert "Double" in names


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
               for f in files)


def test_gate_takes_under_a_second_on_a_10mb_model(tmp_path):
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(2560, name="a"),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(512, name="b"), keras.layers.Dense(10)])
    seconds = {}
    for fmt in (".keras", ".h5", "sm"):
        path = str(tmp_path / ("m" + fmt))
        model.save(path) if fmt != "sm" else model.save(path, save_format="tf")
        assert _size(path) > 10 * 2**20, (fmt, _size(path))
        start = time.perf_counter()
        models.check_safe(path)
        seconds[fmt] = time.perf_counter() - start
    print("gate seconds:", {k: round(v, 4) for k, v in seconds.items()})
    assert max(seconds.values()) < 1.0, seconds
