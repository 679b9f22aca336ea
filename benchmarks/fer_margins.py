"""Why fer's emotion classifier loses decisions at 8 bits on lfw faces: how close its top two
classes are, which faces flip under each precision, and how many faces one layer at 8 bits
flips on its own (issue #28's 99.5% bar).

    python benchmarks/fer_margins.py

fer's pretrained mini-Xception (from its wheel) on scikit-image's ``lfw_subset`` faces and
their mirror images, halves by face as ``finetune_fer.py``: one half calibrates (and, with
``recovery=True``, chooses on a quarter of it), the other is measured; then the reverse. Per
fold: quantiles of the float model's top-2 probability gap on the measured faces; per
precision, agreement with the float model, the gaps of the faces that flipped and the 95th
percentile of the largest output deviation; and ``mixed.sensitivity`` at 8 bits (one layer's
weights quantized, float activations, the rest float32): the faces each layer flips alone. No labels are used.

Writes ``benchmarks/results/fer_margins.json``.
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fer_trial  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress import _io  # noqa: E402
from tfcompress.export.mixed import sensitivity  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402

# (mode, recovery): float16 and float activations with int8 weights (weight_only_wi8) bound
# what weights alone cost; int16x8 what 16-bit activations leave; int8 is the full-int8 file.
PRECISIONS = (("float16", False), ("weight_only_wi8", False), ("weight_only_wi8", True),
              ("int16x8", False), ("int16x8", True), ("int8", False))


def fold_figures(model, cal: np.ndarray, held: np.ndarray) -> dict:
    ref = model.predict(held, verbose=0)
    top = np.sort(ref, 1)
    gap = top[:, -1] - top[:, -2]
    row = {"faces": len(held),
           "gap_quantiles": {q: round(float(np.quantile(gap, q)), 4)
                             for q in (0.01, 0.02, 0.05, 0.1)}}
    for mode, recovery in PRECISIONS:
        start = time.perf_counter()
        fb = tfcompress.convert(model, mode, representative_data=cal, recovery=recovery)
        out = predict(fb, held)
        flips = out.argmax(1) != ref.argmax(1)
        row[mode + (" recovery" if recovery else "")] = {
            "agreement": float(1 - flips.mean()),
            "flip_gaps": [round(float(g), 4) for g in gap[flips]],
            "deviation_p95": round(float(np.quantile(np.abs(out - ref).max(1), 0.95)), 4),
            "seconds": round(time.perf_counter() - start, 1)}
    layers = sensitivity(model, held, widths=(8,), execution="weight_only",
                         algorithms=("min_max",))["layers"]
    row["one_layer_at_8_bits"] = {
        l["name"]: round(len(held) * (1 - l["widths"][8]["agreement"]))
        for l in layers if l["widths"].get(8, {}).get("supported")}
    return row


def main() -> None:
    model, x = fer_trial._model_and_faces()
    halves = (x[::2], x[1::2])
    folds = {}
    for fold in (0, 1):
        folds[fold] = fold_figures(model, halves[fold], halves[1 - fold])
        print(json.dumps({fold: folds[fold]}), flush=True)
    out = {"command": "python benchmarks/fer_margins.py", "model": "fer emotion_model.hdf5",
           "inputs": "lfw_subset faces + mirrors, halves by face", "folds": folds}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "fer_margins.json")
    _io.write_text(path, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
