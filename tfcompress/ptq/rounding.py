"""Learned rounding (AdaRound, Nagel et al. 2020) and empirical bias correction.

``adaround(model, x, bits=8)`` decides, weight by weight, whether to round down or up to the grid
the conversion will use (``tfcompress.ptq.grids``), layer by layer in graph order: each layer's
rounding is optimized on calibration images to reproduce the float layer's output on float
inputs from inputs that flow through the already-rounded earlier layers (the asymmetric
reconstruction of the paper). The soft rounding is a rectified sigmoid ``h(V)`` of one variable
per weight, started at the weight's fractional part; the regularizer ``1 - |2h - 1|^beta``
(``beta`` annealed from 20 to 2 after a warm-up) pushes each ``h`` to 0 or 1. The weight with the
largest magnitude of each channel keeps its rounding, so the channel's scale (``max|w| / qmax``)
and hence every integer come out of the conversion exactly as learned. A layer whose learned
rounding does not beat round-to-nearest on the calibration images keeps round-to-nearest.

``correct_bias(model, x, bits=8)`` puts the weights on the grid (round-to-nearest where they
are not on it already) and subtracts, layer by layer, the mean shift of each output channel
(pre-activation) that quantization causes on the calibration images (empirical bias correction,
Nagel et al. 2019, section 4.2), again with the earlier layers already corrected.

Both start by folding BatchNormalization (``equalization.fold_batchnorm``): the folded kernels
are what the conversion quantizes. What this module adds to the papers: the deployed grids
matched exactly, one ``tf.function`` loop per layer (a few hundred Adam steps on batches of the
calibration set), an absl log line per layer with its error before and after, and per-layer
checkpoints (``checkpoint_dir``) that a rerun reuses.
"""

import hashlib
import logging as py_logging
import os
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tfcompress import _io, console, errors
from tfcompress._compat.keras import keras
from tfcompress.ptq.equalization import fold_batchnorm
from tfcompress.ptq.grids import block_kernels, grid, kernels, layer_kind, round_to_nearest
from tfcompress.ptq.layerwise import walk

_ZETA, _GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch


# ---------------------------------------------------------------- layer maths

def linear(layer, x, weights: dict, activation: bool = True):
    """The layer's output on ``x`` with kernels from ``weights`` (attr -> tensor), its
    activation applied unless ``activation`` is False."""
    kind = layer_kind(layer)
    k = lambda attr: weights.get(attr, getattr(layer, attr))  # noqa: E731
    padding = getattr(layer, "padding", "valid").upper()
    if kind == "dense":
        y = tf.matmul(x, k("kernel"))
    elif kind in ("conv", "conv1d") and all(n == 1 for n in layer.kernel_size):
        y = _pointwise(x, k("kernel"), layer.strides)
    elif kind == "conv":
        y = tf.nn.conv2d(x, k("kernel"), strides=layer.strides, padding=padding,
                         dilations=layer.dilation_rate)
    elif kind == "conv1d":
        y = tf.nn.conv1d(x, k("kernel"), stride=layer.strides[0], padding=padding,
                         dilations=layer.dilation_rate[0])
    elif kind == "transpose":
        _, height, width, _ = layer.compute_output_shape(x.shape)
        y = tf.nn.conv2d_transpose(x, k("kernel"), tf.stack([tf.shape(x)[0], height, width,
                                                            layer.filters]),
                                   strides=layer.strides, padding=padding)
    elif kind == "depthwise":
        y = tf.nn.depthwise_conv2d(x, k("depthwise_kernel"), (1, *layer.strides, 1), padding,
                                   dilations=layer.dilation_rate)
    else:
        y = tf.nn.separable_conv2d(x, k("depthwise_kernel"), k("pointwise_kernel"),
                                   (1, *layer.strides, 1), padding,
                                   dilations=layer.dilation_rate)
    if layer.use_bias:
        y = y + layer.bias
    return layer.activation(y) if activation else y


def _pointwise(x, kernel, strides):
    """A 1x1 convolution (Conv2D or Conv1D, any padding: a 1x1 kernel pads nothing) as a matmul
    of the input subsampled at ``strides``: the values of ``tf.nn.conv2d``, and a gradient that
    avoids TF 2.21's oneDNN Conv2DBackpropFilter, which corrupts memory (SIGSEGV, "double free")
    for a strided 1x1 kernel on some shapes, e.g. 8 channels at 60x60 with stride 2 (the
    residual shortcut of fer's pretrained emotion model)."""
    index = (slice(None), *(slice(None, None, s) for s in strides), slice(None))
    return tf.tensordot(x[index], tf.reshape(kernel, kernel.shape[-2:]), 1)


def _outputs(layer, x: np.ndarray, weights: dict, batch_size: int = 256,
             activation: bool = True) -> np.ndarray:
    return np.concatenate([linear(layer, tf.constant(x[i:i + batch_size]), weights,
                                  activation).numpy()
                           for i in range(0, len(x), batch_size)])


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.square(a.astype(np.float64) - b)))


def _selected(model: keras.Model, layers: Optional[Sequence[str]], bits: int) -> list:
    """Layers of ``model`` with kernels on the grid at ``bits``, in graph order."""
    names = [layer.name for layer in model.layers]
    if layers is not None:
        bad = [n for n in layers if n not in names]
        if bad:
            raise errors.ConfigError(errors.unknown("layer", bad[0], names))
    return [layer for layer in model.layers if kernels(layer, bits)
            and (layers is None or layer.name in layers)]


def _check(x, bits: int) -> np.ndarray:
    """Calibration images as float32, checked (the loaders' splits give their train images)."""
    grid(bits)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple):  # data.Splits
        x = x[0][0]
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise errors.DataError(f"calibration data has dtype {x.dtype}; accepted: numeric images")
    x = x.astype(np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise errors.DataError(
            f"calibration data has shape {x.shape}; accepted: images, batch first")
    if not np.all(np.isfinite(x)):
        raise errors.DataError("calibration data holds NaN or Inf; accepted: finite images")
    return x


# ---------------------------------------------------------------- rounding of one kernel

class _Rounding:
    """The soft rounding of one kernel: scale, floor, fixed elements and the variable V."""

    def __init__(self, w: np.ndarray, bits: int, reduce_axes: tuple):
        g = grid(bits)
        self.qmax = g.qmax
        self.scale = g.scale(w, reduce_axes)
        r = w.astype(np.float64) / self.scale
        # The largest magnitude of each channel stays on +-qmax: it fixes the deployed scale.
        mag = np.abs(r)
        fixed = mag >= np.max(mag, axis=reduce_axes, keepdims=True) - 1e-6
        self.fixed = fixed.astype(np.float32)
        floor = np.where(fixed, np.clip(np.rint(r), -g.qmax, g.qmax), np.floor(r))
        self.floor = floor.astype(np.float32)
        frac = np.clip(np.where(fixed, 0.0, r - np.floor(r)), 1e-4, 1 - 1e-4)
        v0 = -np.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1.0)
        self.v = tf.Variable(v0.astype(np.float32))
        self.rtn = g.integers(w, self.scale)

    def soft(self, v):
        h = tf.clip_by_value(tf.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)
        return h * (1.0 - self.fixed)

    def weights(self, v):
        q = tf.clip_by_value(self.floor + self.soft(v), -self.qmax, self.qmax)
        return q * self.scale

    def integers(self) -> np.ndarray:
        h = self.soft(self.v).numpy() >= 0.5
        return np.clip(self.floor + h, -self.qmax, self.qmax).astype(np.int32)


def _optimize(layer, roundings: dict, xq: np.ndarray, target: np.ndarray, *, iterations: int,
              batch_size: int, learning_rate: float, reg_weight: float, warmup: float,
              beta: tuple, seed: int) -> None:
    """Adam on the V variables of ``roundings`` (attr -> _Rounding), in one tf.function loop."""
    attrs = list(roundings)
    vs = [roundings[a].v for a in attrs]
    ms = [tf.Variable(tf.zeros_like(v)) for v in vs]
    ss = [tf.Variable(tf.zeros_like(v)) for v in vs]
    xq, target = tf.constant(xq), tf.constant(target)
    n = int(xq.shape[0])
    batch = min(batch_size, n)
    start = int(warmup * iterations)
    b_hi, b_lo = beta

    rng = tf.random.Generator.from_seed(seed)

    @tf.function
    def run():
        for i in tf.range(iterations):
            idx = rng.uniform((batch,), 0, n, dtype=tf.int32)
            xb, tb = tf.gather(xq, idx), tf.gather(target, idx)
            t = tf.cast(i - start, tf.float32) / float(max(1, iterations - start))
            b = b_lo + 0.5 * (b_hi - b_lo) * (1.0 + tf.cos(np.pi * tf.clip_by_value(t, 0., 1.)))
            reg_on = tf.cast(i >= start, tf.float32)
            with tf.GradientTape() as tape:
                w = {a: roundings[a].weights(v) for a, v in zip(attrs, vs)}
                y = linear(layer, xb, w)
                recon = tf.reduce_mean(tf.reduce_sum(tf.square(y - tb), axis=-1))
                reg = tf.add_n([tf.reduce_sum(1.0 - tf.pow(tf.abs(2.0 * roundings[a].soft(v)
                                                                   - 1.0), b))
                                for a, v in zip(attrs, vs)])
                loss = recon + reg_on * reg_weight * reg
            grads = tape.gradient(loss, vs)
            step = tf.cast(i + 1, tf.float32)
            for v, m, s, g in zip(vs, ms, ss, grads):
                m.assign(0.9 * m + 0.1 * g)
                s.assign(0.999 * s + 0.001 * tf.square(g))
                mhat = m / (1.0 - tf.pow(0.9, step))
                shat = s / (1.0 - tf.pow(0.999, step))
                v.assign_sub(learning_rate * mhat / (tf.sqrt(shat) + 1e-8))

    tf_logger = py_logging.getLogger("tensorflow")
    tf_logger.addFilter(_no_retracing_advice)
    try:
        run()
    finally:
        tf_logger.removeFilter(_no_retracing_advice)


def _no_retracing_advice(record) -> bool:
    """Each layer's loop is its own tf.function (its shapes and ops differ), so TensorFlow's
    advice on repeated tracing ("triggered tf.function retracing") does not apply here."""
    return "tf.function retracing" not in record.getMessage()


# ---------------------------------------------------------------- checkpoints

def _digest(layer, bits: int, settings: str) -> str:
    h = hashlib.sha256(f"{bits}|{settings}".encode())
    for w in layer.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _load(checkpoint_dir: Optional[str], layer, digest: str) -> Optional[dict]:
    if not checkpoint_dir:
        return None
    path = os.path.join(checkpoint_dir, f"{layer.name}.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        if str(f["digest"]) != digest:
            return None
        return {k[2:]: f[k] for k in f.files if k.startswith("w_")}


def _save(checkpoint_dir: Optional[str], layer, digest: str, weights: dict) -> None:
    if not checkpoint_dir:
        return
    path = os.path.join(checkpoint_dir, f"{layer.name}.npz")
    with _io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, digest=np.array(digest), **{f"w_{k}": v for k, v in weights.items()})


# ---------------------------------------------------------------- adaround

def _round_layer(layer, qlayer, xf: np.ndarray, xq: np.ndarray, bits: int, options: dict,
                 checkpoint_dir: Optional[str], digest: str, late: bool = False) -> dict:
    """Learns (or reloads) one layer's rounding, sets it on ``qlayer``; its report entry.
    ``late``: past ``adaround``'s time budget, the layer keeps round-to-nearest unless a
    checkpoint holds its learned rounding."""
    start = time.perf_counter()
    target = _outputs(layer, xf, {})
    roundings = {k.attr: _Rounding(getattr(layer, k.attr).numpy(), bits, k.reduce_axes)
                 for k in kernels(layer, bits)}
    rtn = {a: (r.rtn * r.scale).astype(np.float32) for a, r in roundings.items()}
    err_rtn = _mse(_outputs(qlayer, xq, rtn), target)
    learned = _load(checkpoint_dir, layer, digest)
    resumed = learned is not None
    if learned is None and late:
        learned, err = rtn, err_rtn
    elif learned is None:
        _optimize(qlayer, roundings, xq, target, **options)
        learned = {a: (r.integers() * r.scale).astype(np.float32) for a, r in roundings.items()}
        err = _mse(_outputs(qlayer, xq, learned), target)
        if err > err_rtn:  # learned rounding must beat round-to-nearest on the calibration set
            learned, err = rtn, err_rtn
        _save(checkpoint_dir, layer, digest, learned)
    else:
        err = _mse(_outputs(qlayer, xq, learned), target)
    for attr, w in learned.items():
        getattr(qlayer, attr).assign(w)
    seconds = time.perf_counter() - start
    logging.info("adaround %s (%d bits): output error %.3g -> %.3g (round to nearest -> "
                 "learned), %.1f s%s", layer.name, bits, err_rtn, err, seconds,
                 " (from checkpoint)" if resumed else
                 " (time budget spent: round to nearest)" if late else "")
    return {"mse_nearest": err_rtn, "mse_adaround": err, "seconds": seconds,
            "resumed": resumed, "late": late and not resumed}


def adaround(
    model: keras.Model,
    x,
    *,
    bits: int = 8,
    layers: Optional[Sequence[str]] = None,
    iterations: int = 300,
    batch_size: int = 64,
    samples: int = 512,
    learning_rate: float = 1e-2,
    reg_weight: float = 0.01,
    warmup: float = 0.2,
    beta: tuple = (20.0, 2.0),
    activation_bits: Optional[int] = None,
    checkpoint_dir: Optional[str] = None,
    seed: int = 0,
    block: int = 0,
    max_seconds: Optional[float] = None,
) -> keras.Model:
    """Learned rounding of each layer's kernels onto the grid the conversion at ``bits`` uses.

    Args:
        model: a Sequential or functional tf_keras model (BatchNormalization is folded first).
        x: calibration images (a subset of the training images), batch first.
        bits: 8 (the converter's ``int8``/``dynamic``) or 4 (the quantizer's int4 modes such
            as ``dynamic_wi4``); see ``tfcompress.ptq.grids`` for which kernels each quantizes.
        layers: names of the layers to round (default: every Conv2D, Conv1D, Conv2DTranspose,
            DepthwiseConv2D, SeparableConv2D and Dense the conversion quantizes). Others
            (grouped, dilated transposed or causal convolutions) stay float here and are rounded
            to nearest by the conversion.
        iterations: Adam steps per layer; batch_size: images per step; samples: calibration
            images used at most; learning_rate: Adam's step size for the V variables;
            reg_weight: weight of the rounding regularizer; warmup: fraction of the steps
            without it; beta: the regularizer's exponent, annealed from the first to the second.
        activation_bits: 8 when the model will be converted to full integer (``int8``): the
            quantized path then simulates its int8 activations (``layerwise.walk``), so the
            rounding also compensates for their error; None (float activations) otherwise.
        checkpoint_dir: where each finished layer's weights are saved (atomically); a rerun
            with the same model, data settings and ``bits`` reuses them.
        seed: seeds the batch sampling.
        block: 0 (one scale per output channel); block-wise grids are refused here (their
            scales move with the rounding): ``correct_bias`` takes them.
        max_seconds: a time budget: no layer starts learning its rounding once this many
            seconds have passed since ``adaround`` began; the layers left keep
            round-to-nearest (their report says ``late``). None: no budget. Where the budget
            is not spent the result does not depend on it.

    Returns:
        A new float model (BatchNormalization folded) whose rounded kernels lie exactly on the
        grid; ``model.adaround`` holds each layer's output error (mean squared, on the
        calibration images) with round-to-nearest and with the learned rounding, seconds,
        and whether it came past the time budget (``late``).

    Raises:
        ConfigError: ``bits`` not 8 or 4, an unknown layer name, a block-wise grid, a
            ``max_seconds`` that is not a positive number.
        DataError: calibration data that is empty or not finite.
    """
    if block:
        raise errors.ConfigError(f"adaround rounds onto one scale per output channel, got "
                                 f"block={block}; accepted: block=0 (correct_bias takes "
                                 "block-wise grids)")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float))
                                        and max_seconds > 0):
        raise errors.ConfigError(f"max_seconds={max_seconds!r} is out of range; accepted: a "
                                 "positive number of seconds, or None")
    begin = time.perf_counter()
    x = _check(x, bits)[:samples]
    reference = fold_batchnorm(model)
    quant = fold_batchnorm(reference)
    settings = (f"{len(x)}|{iterations}|{batch_size}|{learning_rate}|{reg_weight}|{seed}|"
                f"{activation_bits}|{hashlib.sha256(x.tobytes()).hexdigest()}")
    selected = {layer.name for layer in _selected(reference, layers, bits)}
    report = {}
    with console.current().progress("adaround", len(selected), unit="layer") as bar:
        for name, xf, xq in walk(reference, quant, x, activation_bits=activation_bits):
            if name not in selected:
                continue
            layer, qlayer = reference.get_layer(name), quant.get_layer(name)
            late = max_seconds is not None and time.perf_counter() - begin > max_seconds
            report[name] = _round_layer(layer, qlayer, xf.numpy(), xq.numpy(), bits, dict(
                iterations=iterations, batch_size=batch_size, learning_rate=learning_rate,
                reg_weight=reg_weight, warmup=warmup, beta=beta, seed=seed),
                checkpoint_dir, _digest(layer, bits, settings), late)
            bar.update(note=name)
    quant.adaround = report
    return quant


# ---------------------------------------------------------------- bias correction

def correct_bias(model: keras.Model, x, *, bits: int = 8, reference: Optional[keras.Model] = None,
                 layers: Optional[Sequence[str]] = None, samples: int = 512,
                 activation_bits: Optional[int] = None, block: int = 0) -> keras.Model:
    """Empirical bias correction: weights on the grid, each output channel's mean shift removed.

    Args:
        model: a tf_keras model; kernels not on the grid are rounded to nearest.
        x: calibration images.
        bits: the grid (8 or 4), as for ``adaround``.
        reference: the float model the shift is measured against (same layers, e.g. the model
            before ``adaround``); default: ``model`` itself before rounding.
        layers: layer names to correct (default: every layer with a bias among the layers
            ``adaround`` would round, and layers downstream whose bias can absorb the shift).
        samples: calibration images used at most.
        activation_bits: 8 to include the simulated int8 activations' shift (full-integer
            conversion), None for float activations.
        block: 0 for the per-channel grids; 32, 64 or 128 for the quantizer's block-wise int4
            modes (``dynamic_wi4_block32``...): Dense kernels and Embedding tables are rounded
            onto that grid (``grids.block_kernels``), so the shift a table's rounding leaves in
            the layers after it (a text model's average of embeddings) is removed too.

    Returns:
        A new model (BatchNormalization folded); ``model.bias_correction`` holds each layer's
        mean and largest absolute shift per channel (on the calibration images) that was
        removed.

    Raises:
        ConfigError, DataError: as for ``adaround``.
    """
    x = _check(x, bits)[:samples]
    reference = fold_batchnorm(reference if reference is not None else model)
    quant = fold_batchnorm(model)
    for layer in quant.layers:
        for k in (block_kernels(layer, block) if block else kernels(layer, bits)):
            var = getattr(layer, k.attr)
            var.assign(round_to_nearest(var.numpy(), bits, k.reduce_axes, k.block))
    names = [layer.name for layer in quant.layers]
    if layers is not None:
        bad = [n for n in layers if n not in names]
        if bad:
            raise errors.ConfigError(errors.unknown("layer", bad[0], names))
    report = {}
    for name, xf, xq in walk(reference, quant, x, activation_bits=activation_bits):
        qlayer = quant.get_layer(name)
        if layer_kind(qlayer) is None or not qlayer.use_bias:
            continue
        if layers is not None and name not in layers:
            continue
        pre_q = _outputs(qlayer, xq.numpy(), {}, activation=False)
        pre_f = _outputs(reference.get_layer(name), xf.numpy(), {}, activation=False)
        axes = tuple(range(pre_f.ndim - 1))
        shift = np.mean(pre_q.astype(np.float64), axis=axes) - np.mean(pre_f, axis=axes)
        qlayer.bias.assign((qlayer.bias.numpy() - shift).astype(np.float32))
        report[name] = {"mean_abs_shift": float(np.mean(np.abs(shift))),
                        "max_abs_shift": float(np.max(np.abs(shift)))}
        logging.info("correct_bias %s (%d bits): mean output shift per channel %.3g (max %.3g) "
                     "removed", name, bits, report[name]["mean_abs_shift"],
                     report[name]["max_abs_shift"])
    quant.bias_correction = report
    return quant

