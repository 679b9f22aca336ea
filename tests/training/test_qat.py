"""QAT and the collaborative schemes: int8 parity, zeros and shared weights in the flatbuffer."""

import json
import re

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from ai_edge_litert.interpreter import Interpreter

import tfcompress
from tfcompress import errors, keras, models
from tfcompress.export import lowbit
from tfcompress.training import pruning
from tfcompress.training import qat as quantization
from tfcompress.training import qat_configs
from tfcompress.pipeline import recipe
from tfcompress.pipeline import stages
from tfcompress.export.conversion import conversion_info, convert
from tfcompress.export.validation import predict

import helpers
import model_kinds
from tfmot_helpers import accuracy, fit, small_cnn, steps_per_epoch


@pytest.fixture(scope="module")
def cnn(digits):
    return small_cnn(digits)


@pytest.fixture(scope="module")
def pruned_clustered(cnn, digits):
    """The thin CNN pruned to 80%, then clustered to 8 with its zeros kept (both stripped)."""
    pruned = tfcompress.prune(cnn, 0.8, epochs=2, steps_per_epoch=steps_per_epoch())
    fit(pruned, digits, 2, [tfmot.sparsity.keras.UpdatePruningStep()])
    clustered = tfcompress.cluster(tfcompress.strip(pruned), 8, preserve_sparsity=True)
    fit(clustered, digits, 1, lr=1e-4)
    return tfcompress.strip(clustered)


def _int8(model, digits):
    (x, _), _ = digits
    return convert(model, "int8", representative_data=x, representative_samples=32)


def test_qat_int8_matches_keras(cnn, digits):
    qat = tfcompress.quantize_aware(cnn)
    assert quantization.is_quantize_aware(qat) and not quantization.is_quantize_aware(cnn)
    fit(qat, digits, 1, lr=1e-4)
    _, (xt, yt) = digits
    flatbuffer = _int8(qat, digits)
    agree = np.mean(predict(flatbuffer, xt).argmax(-1) == qat.predict(xt, verbose=0).argmax(-1))
    assert agree >= 0.95
    assert abs(np.mean(predict(flatbuffer, xt).argmax(-1) == yt) - accuracy(qat, digits)) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("preserve, zeros, distinct", [
    ("sparsity_and_clusters", True, True),  # PQAT ("sparsity") runs in the recipe test below
])
def test_collaborative_schemes_keep_structure_in_int8(pruned_clustered, digits, preserve,
                                                      zeros, distinct):
    qat = tfcompress.quantize_aware(pruned_clustered, preserve=preserve)
    fit(qat, digits, 1, lr=1e-3)
    qat = tfcompress.strip(qat)
    tensors = pruning.flatbuffer_sparsity(_int8(qat, digits))
    assert len(tensors) == 4
    kept_zeros = all(t["zeros"] >= 0.79 for t in tensors.values())
    kept_clusters = all(t["distinct_per_channel"] <= 8 for t in tensors.values())
    if zeros:
        assert kept_zeros, tensors
    if distinct:
        assert kept_clusters, tensors


def test_chosen_layers_only(cnn):
    qat = tfcompress.quantize_aware(cnn, layers=["dense", "logits"])
    wrapped = {l.name for l in qat.layers if isinstance(l, tfmot.quantization.keras.QuantizeWrapper)}
    assert {"quant_dense", "quant_logits"} <= wrapped
    assert not {"quant_conv1", "quant_conv2"} & wrapped
    assert {"conv1", "conv2"} <= {l.name for l in qat.layers}


class Scale(keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight("w", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unsupported_layers_listed_with_the_way_out(digits):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten(name="flat")(inp)
    x = Scale(name="scale")(keras.layers.Dense(16, name="d1")(x))
    model = keras.Model(inp, keras.layers.Dense(10, name="d2")(x))
    with pytest.raises(errors.ModelError, match="'scale': 'Scale'.*layers="):
        tfcompress.quantize_aware(model)
    qat = tfcompress.quantize_aware(model, layers=["d1", "d2"])
    assert {l.name for l in qat.layers} >= {"quant_d1", "quant_d2", "scale"}
    with pytest.raises(errors.ModelError, match="scale"):
        tfcompress.quantize_aware(model, layers=["scale"])


def test_batchnorm_after_conv_is_folded_not_refused(digits):
    """Conv+BatchNorm pairs (as in MobileNetV2): tfmot folds them; QAT and int8 conversion work.
    The QAT model is trained a few steps first: untrained, its outputs are the same for every
    input and any conversion would match them."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, use_bias=False)(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, use_bias=False)(x)))
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    qat = tfcompress.quantize_aware(model)
    assert quantization.is_quantize_aware(qat)
    assert not [l for l in qat.layers if isinstance(l, L.BatchNormalization)]
    (x, y), (x_test, _) = digits
    qat.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x[:640], y[:640], batch_size=32, epochs=4, verbose=0)  # 80 steps
    want = qat.predict(x_test[:64], verbose=0)  # measured: each output spans 0.3-1.0 here
    spread = np.ptp(want, axis=0)  # each output's range over the inputs
    assert spread.min() > 0.2 and len(np.unique(want.argmax(-1))) >= 2, spread
    got = predict(convert(qat, "int8"), x_test[:64])
    assert np.max(np.abs(got - want)) < min(0.1, spread.min() / 2)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9


_KEEPS = {None: (False, False), "sparsity": (True, False), "clusters": (False, True),
          "sparsity_and_clusters": (True, True)}


@pytest.mark.parametrize("preserve", list(_KEEPS))
def test_depthwise_kernels_train_and_deploy_per_channel(digits, preserve):
    """A DepthwiseConv2D and a SeparableConv2D (split by tfmot) learn one weight range per
    channel, and the int8 flatbuffer holds exactly those integers (tfmot's own config learns
    one range for the kernel: with channels of very different sizes most integers differ).
    The collaborative schemes do too, keeping what the depthwise kernels hold (tfmot's keep
    nothing there): half the weights zero (kept exactly; so are the first Conv2D's, which tfmot's
    PCQAT lost since the pointwise Conv2D has none) and 4 shared values before the channels'
    scaling (each set of equal weights stays equal, the values train)."""
    L = keras.layers
    zeros, shared = _KEEPS[preserve]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)
    x = L.SeparableConv2D(8, 3, activation="relu")(x)
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    for layer in model.layers[1:4]:
        w = layer.get_weights()
        if shared and layer is not model.layers[1]:
            w[0] = np.array([-0.4, -0.15, 0.1, 0.3], "float32")[rng.integers(0, 4, w[0].shape)]
        if zeros:
            w[0] = w[0] * (rng.random(w[0].shape) < 0.5)
        if layer is not model.layers[1]:  # the depthwise kernels' channels scaled 0.02x .. 3x
            w[0] = w[0] * np.linspace(0.02, 3.0, w[0].shape[2]).reshape(1, 1, -1, 1)
        layer.set_weights(w)
    qat = tfcompress.quantize_aware(model, preserve=preserve)
    kernels = {l.name: w for l in qat.layers
               if isinstance(getattr(l, "layer", None), (L.Conv2D, L.DepthwiseConv2D))
               for w in l.weights if w.name.split("/")[-1] in ("kernel:0", "depthwise_kernel:0")}
    before = {name: w.numpy() for name, w in kernels.items()}
    (x_train, y), _ = digits
    qat.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x_train[:256], y[:256], batch_size=32, epochs=1, verbose=0)
    learned = {}
    for layer in qat.layers:
        if isinstance(getattr(layer, "layer", None), L.DepthwiseConv2D):
            named = {w.name.split("/")[-1]: w for w in layer.weights}
            ranges, kernel = named["depthwise_kernel_max:0"], named["depthwise_kernel:0"].numpy()
            h, w, c, m = kernel.shape
            assert ranges.shape == (c * m,)
            flat = kernel.reshape(1, h, w, c * m)  # the flatbuffer's depthwise filter layout
            scale = ranges.numpy() / 127.0  # the learned ranges (set before the last step)
            ints = np.floor(flat / scale + 0.5)  # halves up, as the fake quant (shared values tie)
            learned[layer.name] = np.clip(ints, -127, 127).astype(np.int32)
            start = before[layer.name]
            assert not np.array_equal(kernel, start)  # trained
            if zeros:
                np.testing.assert_array_equal(kernel == 0, start == 0)
            if shared:
                values = np.unique(start)
                assert len(np.unique(kernel)) == len(values) < start.size, layer.name
                assert all(len(np.unique(kernel[start == v])) == 1 for v in values)
    assert len(learned) == 2
    if zeros:  # the first Conv2D: tfmot's own preserving quantizer, still in the scheme
        (conv,) = [n for n in kernels if n not in learned and before[n].shape[2] == 1]
        np.testing.assert_array_equal(kernels[conv].numpy() == 0, before[conv] == 0)
    helpers.assert_deployed(learned, helpers.flatbuffer_integers(convert(qat, "int8")))


def test_unknown_preserve(cnn):
    with pytest.raises(errors.ConfigError, match="unknown preserve 'zeros'"):
        tfcompress.quantize_aware(cnn, preserve="zeros")


@pytest.mark.parametrize("preserve", [None, "sparsity_and_clusters"])
def test_qat_model_saves_and_loads_as_h5(pruned_clustered, digits, tmp_path, preserve):
    qat = tfcompress.strip(tfcompress.quantize_aware(pruned_clustered, preserve=preserve))
    fit(qat, digits, 1, lr=1e-4, samples=64)
    _, (xt, _) = digits
    path = str(tmp_path / "q.h5")
    models.save_model(qat, path)
    loaded = models.load_model(path)
    assert quantization.is_quantize_aware(loaded)
    np.testing.assert_allclose(loaded.predict(xt[:8], verbose=0), qat.predict(xt[:8], verbose=0),
                               atol=1e-6)
    assert stages.STAGES["qat"].suffix == ".h5"


@pytest.mark.slow
def test_recipe_prune_then_pqat_reports_measured_figures_and_resumes(tmp_path):
    config = recipe.default_config()
    config.data.limit = 192
    config.model.width = 0.25
    config.train.epochs = 1
    config.stages = ("prune", "qat")
    config.prune.update(target_sparsity=0.7, epochs=2, learning_rate=1e-3)
    config.qat.update(preserve="sparsity", epochs=1)
    config.convert.update(modes=("int8",), representative_samples=16)
    config.validate.update(latency_runs=0, compiled_model=())
    report = tfcompress.run_recipe(config, str(tmp_path))
    prune, qat = report["stages"]["prune"], report["stages"]["qat"]
    assert all(abs(s - 0.7) <= 0.01 for s in prune["sparsity"].values()), prune
    assert qat["preserve"] == "sparsity" and qat["int8_min_zeros"] >= 0.69, qat
    assert len(qat["int8_zeros"]) == 4
    markdown = open(tmp_path / "report.md").read()
    assert re.search(r"\| conv2 \| 0\.(69|70)\d\d \|", markdown) and "int8 zeros" in markdown
    assert (tmp_path / "stages" / "1-qat.h5").exists()
    again = tfcompress.run_recipe(config, str(tmp_path))  # resumes from the saved .h5 stage
    int8 = lambda r: [row for row in r["formats"] if row["format"] == "int8"][0]  # noqa: E731
    assert int8(again)["accuracy"] == int8(report)["accuracy"]
    assert int8(again)["bytes"] == int8(report)["bytes"]
    assert again["stages"] == json.loads(json.dumps(report["stages"]))  # figures kept on resume


# ------------------------------------------- Transformers, 1-D and recurrent models (issue 26)

def _op_outputs(flatbuffer: bytes) -> list:
    """[(op type, its first output's stored type)] read from the flatbuffer."""
    import tfcompress._compat.quantizer as _quantizer
    import tfcompress._compat.schema as _schema
    model = _quantizer.read_model(flatbuffer)
    graph = model.subgraphs[0]
    return [(_quantizer.op_type(model, op), _schema.type_name(graph.tensors[op.outputs[0]].type))
            for op in graph.operators]


def _fit_qat(qat, model, x, y, epochs=2):
    qat.compile(keras.optimizers.Adam(1e-3), model.loss)
    history = qat.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return qat


@pytest.mark.parametrize("config", sorted(qat_configs.CONFIGS.values(), key=lambda c: c.__name__))
def test_custom_quantize_configs_round_trip(config):
    made = config()
    assert config.from_config(made.get_config()) == made
    again = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(made))
    assert type(again) is config and again == made


@pytest.mark.parametrize("preserve", [
    None, pytest.param("sparsity_and_clusters", marks=pytest.mark.slow)])
def test_transformer_trains_quantize_aware_and_converts_to_full_int8(preserve):
    model, (x, y), (xt, yt) = model_kinds.trained("transformer")
    qat = tfcompress.quantize_aware(model, preserve=preserve)
    configs = {l.name: type(l.quantize_config).__name__ for l in qat.layers
               if isinstance(l, tfmot.quantization.keras.QuantizeWrapper)}
    assert configs["quant_embedding"] == "EmbeddingQuantizeConfig"
    assert configs["quant_attention"] == "AttentionQuantizeConfig"
    assert configs["quant_norm1"] == configs["quant_norm2"] == "LayerNormalizationQuantizeConfig"
    assert isinstance(qat.get_layer("quant_attention"), qat_configs.AttentionQuantizeWrapper)
    _fit_qat(qat, model, x, y)
    ranges = {w.name.split("/")[-1]: float(w.numpy())
              for w in qat.get_layer("quant_attention").weights
              if w.name.endswith("activation_max:0")}
    assert len(ranges) == 5 and all(v != 6.0 for v in ranges.values()), ranges  # learned (init 6)
    flatbuffer = convert(qat, "int8", representative_data=x, representative_samples=64)
    outputs = _op_outputs(flatbuffer)
    kinds = {op for op, _ in outputs}
    assert {"GATHER", "BATCH_MATMUL", "SOFTMAX", "FULLY_CONNECTED", "RSQRT", "MEAN"} <= kinds
    computed = {(op, t) for op, t in outputs if t != "int32"}  # shape arithmetic stays int32
    assert {t for _, t in computed} == {"int8"}, computed
    (table,) = [l for l in lowbit.weight_layers(flatbuffer) if l.op == "GATHER"]
    assert table.dtype == "int8" and table.shape == (model_kinds.VOCAB, 16)
    got, want = predict(flatbuffer, xt), qat.predict(xt, verbose=0)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.95
    float_accuracy = np.mean(model.predict(xt, verbose=0).argmax(-1) == yt)
    assert np.mean(got.argmax(-1) == yt) >= float_accuracy - 0.03


def test_conv1d_trains_quantize_aware_and_converts_to_int8():
    model, (x, y), (xt, _) = model_kinds.trained("regression")
    qat = tfcompress.quantize_aware(model)
    conv = [l for l in qat.layers if isinstance(l, tfmot.quantization.keras.QuantizeWrapper)
            and isinstance(l.layer, keras.layers.Conv1D)]
    assert conv and all(isinstance(l.quantize_config, qat_configs.Conv1DQuantizeConfig)
                        for l in conv)
    _fit_qat(qat, model, x, y)
    flatbuffer = convert(qat, "int8", representative_data=x, representative_samples=64)
    convs = [l for l in lowbit.weight_layers(flatbuffer) if l.op == "CONV_2D"]
    assert len(convs) == len(conv) and {l.dtype for l in convs} == {"int8"}
    assert ("CONV_2D", "int8") in _op_outputs(flatbuffer)
    got, want = predict(flatbuffer, xt), qat.predict(xt, verbose=0)
    assert np.max(np.abs(got - want)) < 0.1 * np.ptp(want)


def test_recurrent_layer_stays_float_with_one_warning_then_int8(caplog):
    model, (x, y), (xt, _) = model_kinds.trained("lstm")
    with caplog.at_level("WARNING"):
        qat = tfcompress.quantize_aware(model)
    named = [r for r in caplog.records if "'lstm'" in r.getMessage()]
    assert len(named) == 1 and "float" in named[0].getMessage()
    assert type(qat.get_layer("lstm")) is keras.layers.LSTM  # not wrapped
    assert isinstance(qat.get_layer("quant_embedding"), tfmot.quantization.keras.QuantizeWrapper)
    _fit_qat(qat, model, x, y, epochs=1)
    flatbuffer = convert(qat, "int8", representative_data=x, representative_samples=64)
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8") in _op_outputs(flatbuffer)
    got, want = predict(flatbuffer, xt), qat.predict(xt, verbose=0)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9
    caplog.clear()
    chosen = tfcompress.quantize_aware(model, layers=["lstm", "probs"])  # chosen: still float
    assert type(chosen.get_layer("lstm")) is keras.layers.LSTM and "'lstm'" in caplog.text
    assert isinstance(chosen.get_layer("quant_probs"), tfmot.quantization.keras.QuantizeWrapper)


def test_subclass_of_a_covered_layer_is_refused():
    """Conv1DTranspose subclasses Conv1D but holds its kernel the other way round: not covered."""
    inputs = keras.Input((8, 2))
    x = keras.layers.Conv1DTranspose(4, 3, name="up")(keras.layers.Conv1D(4, 3, name="c")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    with pytest.raises(errors.ModelError, match="'up': 'Conv1DTranspose'"):
        tfcompress.quantize_aware(model)


def test_transformer_qat_saves_and_loads_as_h5(tmp_path):
    model, (x, y), (xt, _) = model_kinds.trained("transformer")
    qat = _fit_qat(tfcompress.quantize_aware(model), model, x[:64], y[:64], epochs=1)
    path = str(tmp_path / "transformer_qat.h5")
    models.save_model(qat, path)
    loaded = models.load_model(path)
    assert isinstance(loaded.get_layer("quant_attention"), qat_configs.AttentionQuantizeWrapper)
    np.testing.assert_allclose(loaded.predict(xt[:16], verbose=0),
                               qat.predict(xt[:16], verbose=0), atol=1e-6)


def test_gru_kept_float_converts_to_full_int8_unrolled():
    """The converter crashes calibrating a GRU's WHILE loop: the int8 conversion of its QAT
    model (the GRU kept float by tfmot) gets an unrolled copy, whose ops are all integer and
    which agrees with the Keras model; the user's GRU stays looped."""
    model, (x, _), (xt, _) = model_kinds.trained("gru")
    qat = tfcompress.quantize_aware(model)
    assert type(qat.get_layer("gru")) is keras.layers.GRU
    fb = convert(qat, "int8", representative_data=x, representative_samples=16)
    ops = conversion_info(fb)["ops"]
    assert "WHILE" not in ops and "DEQUANTIZE" not in ops, ops
    assert not qat.get_layer("gru").unroll
    reference = qat.predict(xt[:100], verbose=0).argmax(-1)
    assert np.mean(predict(fb, xt[:100]).argmax(-1) == reference) >= 0.95


# ------------------------------------------------- PReLU and residuals written as `h + a` (issue 28)

def _op_tensors(flatbuffer: bytes, kind: str) -> list:
    """For each op of type ``kind``: its (input and output) tensors as dicts of name, stored
    type, scales, zero points and, for constants, the stored integers."""
    import tfcompress._compat.quantizer as _quantizer
    import tfcompress._compat.schema as _schema
    model = _quantizer.read_model(flatbuffer)
    graph = model.subgraphs[0]

    def tensor(i):
        t, q = graph.tensors[i], graph.tensors[i].quantization
        data = model.buffers[t.buffer].data
        return {"name": _quantizer.tensor_name(t), "type": _schema.type_name(t.type),
                "scales": [] if q is None or q.scale is None else list(q.scale),
                "zero_points": [] if q is None or q.zeroPoint is None else list(q.zeroPoint),
                "ints": (np.frombuffer(bytes(data), np.int8).astype(np.int32)
                         if t.type == 9 and data is not None and len(data) else None)}

    return [{"inputs": [tensor(i) for i in op.inputs if i >= 0],
             "outputs": [tensor(i) for i in op.outputs]}
            for op in graph.operators if _quantizer.op_type(model, op) == kind]


def prelu_model(digits):
    """Conv2D -> PReLU (one slope per channel, MTCNN's shared_axes) -> pooling -> Dense ->
    PReLU -> softmax, trained briefly on the digits; slopes start spread over 0.05-0.6."""
    (x, y), _ = digits
    L = keras.layers
    keras.utils.set_random_seed(0)
    slopes = keras.initializers.RandomUniform(0.05, 0.6, seed=0)
    inputs = keras.Input((8, 8, 1))
    h = L.PReLU(shared_axes=[1, 2], alpha_initializer=slopes, name="prelu1")(
        L.Conv2D(8, 3, padding="same", name="conv")(inputs))
    h = L.Flatten()(L.MaxPooling2D()(h))
    h = L.PReLU(alpha_initializer=slopes, name="prelu2")(L.Dense(16, name="hidden")(h))
    model = keras.Model(inputs, L.Dense(10, activation="softmax", name="probs")(h))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def assert_int8_prelus(flatbuffer: bytes, student) -> None:
    """Both PRELUs of the flatbuffer are int8 (input, slopes, output), their slopes with one
    scale and zero point 0, the integers those the student trained with (max|alpha| on 127)."""
    learned = []
    for layer in student.layers:
        if isinstance(getattr(layer, "layer", None), keras.layers.PReLU):
            assert isinstance(layer.quantize_config, qat_configs.PReLUQuantizeConfig)
            (alpha,) = [w.numpy().ravel() for w in layer.weights if w.name.endswith("alpha:0")]
            learned.append(np.rint(alpha / (np.abs(alpha).max() / 127)).astype(int).tolist())
    deployed = [q.tolist() for q in helpers.int8_prelu_slopes(flatbuffer)]
    assert len(learned) == 2 and sorted(deployed) == sorted(learned), (deployed, learned)


def test_prelu_trains_quantize_aware_and_converts_to_int8_prelu(digits):
    """PReLU (MTCNN's RNet/ONet) trains quantize-aware and converts without calibration data to
    int8 PRELU ops whose slopes are the integers trained, agreeing with the QAT model."""
    model = prelu_model(digits)
    qat = tfcompress.quantize_aware(model)
    (x, y), (xt, _) = digits
    _fit_qat(qat, model, x[:512], y[:512], epochs=1)
    flatbuffer = convert(qat, "int8")
    assert_int8_prelus(flatbuffer, qat)
    assert {t for _, t in _op_outputs(flatbuffer)} == {"int8"}
    signature = Interpreter(model_content=flatbuffer).get_signature_list()["serving_default"]
    assert signature["outputs"] == list(qat.output_names)  # kept (lost with rounding ops inside)
    got, want = predict(flatbuffer, xt), qat.predict(xt, verbose=0)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.97
    assert np.max(np.abs(got - want)) < 0.1


def _residual_as_operator(seed: int = 0):
    """model_kinds' token ids -> Embedding -> MultiHeadAttention, the residual written ``h + a``
    (a TFOpLambda) -> LayerNormalization -> average -> softmax; trained briefly."""
    L = keras.layers
    keras.utils.set_random_seed(seed)
    (x, y), test = model_kinds._split(*model_kinds._tokens(500, seed), 100)
    inputs = keras.Input((model_kinds.SEQ_LEN,), dtype="int32")
    h = L.Embedding(model_kinds.VOCAB, 16, name="embedding")(inputs)
    h = h + L.MultiHeadAttention(2, 8, name="attention")(h, h)
    h = L.GlobalAveragePooling1D()(L.LayerNormalization(name="norm")(h))
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="probs")(h))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model, (x, y), test


def test_residual_written_as_add_operator_trains_and_converts_to_int8_add():
    model, (x, y), (xt, _) = _residual_as_operator()
    (residual,) = [l.name for l in model.layers if type(l).__name__ == "TFOpLambda"]
    rewritten = quantization.adds_as_layers(model)
    assert type(rewritten.get_layer(residual)) is keras.layers.Add
    np.testing.assert_allclose(rewritten.predict(xt, verbose=0), model.predict(xt, verbose=0),
                               atol=1e-6)
    qat = _fit_qat(tfcompress.quantize_aware(model), model, x, y, epochs=1)
    assert type(qat.get_layer("quant_" + residual).layer) is keras.layers.Add
    flatbuffer = convert(qat, "int8", representative_data=x, representative_samples=64)
    # The residual's ADD: reads the embedding lookup (GATHER) and the attention's output.
    gathered = {t["name"] for op in _op_tensors(flatbuffer, "GATHER") for t in op["outputs"]}
    adds = [op for op in _op_tensors(flatbuffer, "ADD")
            if gathered & {t["name"] for t in op["inputs"]}]
    assert len(adds) == 1, adds
    assert {t["type"] for t in adds[0]["inputs"] + adds[0]["outputs"]} == {"int8"}, adds
    got, want = predict(flatbuffer, xt), qat.predict(xt, verbose=0)
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.95


def test_other_op_lambda_is_still_refused_in_one_line():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="d1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(h * 2.0 + h))
    with pytest.raises(errors.ModelError) as info:
        tfcompress.quantize_aware(model)
    message = str(info.value)
    assert "'TFOpLambda(math.multiply)'" in message and "\n" not in message, message
    assert "__operators__.add" not in message  # h * 2 + h: the add reads two tensors: an Add
