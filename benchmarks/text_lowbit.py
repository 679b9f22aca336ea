"""Low-bit text models, measured; writes benchmarks/results/text_lowbit.json.

    python benchmarks/text_lowbit.py                         # both parts, 3 seeds (~4 min, 2 cores)
    python benchmarks/text_lowbit.py --parts=bow --seeds=0

Parts:
  bow          ``models.text_bow`` (Embedding(2000, 16 * width) -> average -> Dense) trained on
               ``data.load_text(seed)`` (the text recipe's training: Adam 3e-3, batch 32, best of
               --epochs epochs on a 20% validation split), at widths 1 and 2. Per seed and width:
               float32, ``dynamic_wi4`` (embedding table included: one int4 scale per row),
               ``dynamic_wi4_block32`` (one scale per 32 values of a row where the row is wide
               enough) and ``dynamic_wi4_block32_recovery`` (``convert(..., recovery=True)``:
               equalization and bias correction on the block grid, calibrated on 512 training
               texts, kept over min-max only where it agrees better with the float model on the
               validation split; the choice and both agreements are in the JSON): bytes and
               ratio to float32, test accuracy (650 texts), the paired difference against
               float32 with its 95% bootstrap interval, the test agreement with float32, and the
               table's width read back from the flatbuffer. Summary: min / median / max over
               seeds, each seed's interval, and whether every seed is <= 0.2x within 1 point.
  transformer  ``models.text_transformer`` trained as above, then ``quantize_aware`` (every
               layer, the attention included) fine-tuned for --qat_epochs, converted to full
               int8 (``convert(qat, "int8", representative_data=...)``), against the float
               model's float32 flatbuffer on the test split, and against post-training int8.

Measured (2026-12-06, seeds 0-2, 650 test texts; one text is 0.15 point; differences paired
against float32 with their 95% bootstrap interval in the JSON):
  bow width 1 (Embedding(2000, 16)): dynamic_wi4 0.333x float32, -0.15 / +0.15 / +0.77 points
      (min / median / max); block32 cannot split a 16-wide row, so it also stores one scale per
      row (0.334x): per row the schema keeps a float32 scale and an int64 zero point, 12 bytes
      beside 8 bytes of int4 data, so no per-row int4 table of this width reaches 0.2x.
  bow width 2 (Embedding(2000, 32)): dynamic_wi4_block32_recovery 0.1545x on every seed,
      -0.62 / 0.00 / +0.15 points (seeds 0, 1, 2: 0.00 [-0.92, 0.92], +0.15 [-1.08, 1.38],
      -0.62 [-1.69, 0.31]); validation kept the recovered weights on every seed (agreement with
      float 0.979 / 0.977 / 0.961 against min-max's 0.921 / 0.948 / 0.877; test agreement
      0.979 / 0.952 / 0.968). The text averages the pad row (57% of the ids) into every text,
      so its rounding error is one shift shared by all texts, which bias correction removes.
      Plain min-max dynamic_wi4_block32 0.154x, -1.23 / -0.77 / -0.46 points (test agreement
      0.88-0.92); dynamic_wi4 (per row) 0.230x, -1.38 / -0.77 / +0.46. The 650 test texts do
      not resolve 1 point: the intervals span 1.8-2.5 points.
  bow width 1 with recovery: 0.335x, -0.15 / +0.31 / +0.46 points (test agreement 0.97-0.98).
  transformer: QAT full int8 (every op int8) -0.15 / 0.00 / +1.54 points against float32
      (float 0.586 / 0.592 / 0.608); post-training int8 -0.15 / +0.15 / +0.15: this model
      quantizes well without QAT.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _parts  # noqa: E402
import _protocol  # noqa: E402
import tfcompress  # noqa: E402
from tfcompress import keras, models  # noqa: E402
from tfcompress.export import lowbit  # noqa: E402
from tfcompress.export.conversion import conversion_info  # noqa: E402
from tfcompress.export.validation import predict  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["bow", "transformer"], "Parts to run.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (data order, initialization).")
flags.DEFINE_integer("epochs", 10, "Float training epochs (configs/text.py: 10).")
flags.DEFINE_integer("qat_epochs", 3, "Quantize-aware fine-tuning epochs.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "text_lowbit.json"), "Output JSON.")

BOW_MODES = ("dynamic_wi4", "dynamic_wi4_block32", "dynamic_wi4_block32_recovery")
RECOVERY_SAMPLES = 512  # training texts the recovery calibrates on


def _trained(build, seed: int):
    (x, y), (xt, yt) = tfcompress.data.load_text(seed)
    train, val = _protocol.validation_split(x, y, seed=seed)
    keras.utils.set_random_seed(seed)
    model = build()
    _protocol.fit(model, train, val, FLAGS.epochs, 3e-3)
    return model, train, val, (xt, yt)


def _correct(flatbuffer: bytes, x, y) -> np.ndarray:
    return predict(flatbuffer, x).argmax(-1) == y


def _table_bits(flatbuffer: bytes) -> dict:
    return {l.name: {"op": l.op, "dtype": l.dtype, "block_size": l.block_size,
                     "weight_bytes": l.weight_bytes}
            for l in lowbit.weight_layers(flatbuffer) if l.name == "embedding"}


def _bow_flatbuffer(model, name: str, train, val) -> bytes:
    """``name``: a mode, or ``<mode>_recovery``: ``convert(..., recovery=True)`` calibrated on
    training texts, which keeps min-max or the recovered weights by their agreement with the
    float model on the validation split (never the test split)."""
    if not name.endswith("_recovery"):
        return tfcompress.convert(model, name)
    return tfcompress.convert(model, name[:-len("_recovery")], recovery=True,
                              representative_data=train[0],
                              representative_samples=RECOVERY_SAMPLES, validation_data=val)


def part_bow() -> dict:
    runs = {}
    for width in (1, 2):
        for seed in (int(s) for s in FLAGS.seeds):
            model, train, val, (xt, yt) = _trained(lambda: models.text_bow(width=width), seed)
            f32 = tfcompress.convert(model, "float32")
            base_top = predict(f32, xt).argmax(-1)
            base = base_top == yt
            row = {"float32": {"bytes": len(f32), "accuracy": float(base.mean())}}
            for mode in BOW_MODES:
                fb = _bow_flatbuffer(model, mode, train, val)
                top = predict(fb, xt).argmax(-1)
                ok = top == yt
                row[mode] = {"bytes": len(fb), "ratio": len(fb) / len(f32),
                             "accuracy": float(ok.mean()),
                             "vs_float32": _protocol.paired_difference(base, ok),
                             "test_agreement_with_float32": float(np.mean(top == base_top)),
                             "table": _table_bits(fb)}
                facts = conversion_info(fb)["facts"]
                if "recovery_check" in facts:  # the choice, made on the validation split
                    check = facts["recovery_check"]
                    row[mode]["chosen_on_validation"] = {
                        "kept": check["kept"], "steps": facts.get("recovery", []),
                        "agreement_with_float": {k: v["agreement"]
                                                 for k, v in check["validation"].items()}}
                logging.info("bow width %d seed %d %s: %.3fx, accuracy %.4f (float %.4f)",
                             width, seed, mode, len(fb) / len(f32), ok.mean(), base.mean())
            runs[f"width{width}_seed{seed}"] = row
    summary = {}
    for width in (1, 2):
        rows = [r for k, r in runs.items() if k.startswith(f"width{width}_")]
        summary[f"width{width}"] = {
            mode: {"ratio": _protocol.summary([r[mode]["ratio"] for r in rows]),
                   "difference_points": _protocol.summary(
                       [r[mode]["vs_float32"]["points"] for r in rows]),
                   "ci95_per_seed": [r[mode]["vs_float32"]["ci95"] for r in rows],
                   "within_1_point_and_0.2x": all(
                       r[mode]["ratio"] <= 0.2 and r[mode]["vs_float32"]["points"] >= -1
                       for r in rows)}
            for mode in BOW_MODES}
    return {"runs": runs, "summary": summary}


def part_transformer() -> dict:
    runs = {}
    for seed in (int(s) for s in FLAGS.seeds):
        model, train, val, (xt, yt) = _trained(models.text_transformer, seed)
        f32 = tfcompress.convert(model, "float32")
        ptq = tfcompress.convert(model, "int8", representative_data=train[0])
        qat = tfcompress.quantize_aware(model)
        qat.compile(keras.optimizers.Adam(3e-4), "sparse_categorical_crossentropy", ["accuracy"])
        qat.fit(*train, validation_data=val, batch_size=32, epochs=FLAGS.qat_epochs, verbose=0)
        int8 = tfcompress.convert(qat, "int8", representative_data=train[0])
        base = _correct(f32, xt, yt)
        row = {"float32": {"bytes": len(f32), "accuracy": float(base.mean())}}
        for name, fb in (("ptq_int8", ptq), ("qat_int8", int8)):
            ok = _correct(fb, xt, yt)
            info = conversion_info(fb)
            row[name] = {"bytes": len(fb), "ratio": len(fb) / len(f32),
                         "accuracy": float(ok.mean()),
                         "vs_float32": _protocol.paired_difference(base, ok),
                         "activation_dtype": info["activation_dtype"], "ops": info["ops"]}
            logging.info("transformer seed %d %s: accuracy %.4f (float %.4f)", seed, name,
                         ok.mean(), base.mean())
        runs[f"seed{seed}"] = row
    summary = {name: {"difference_points": _protocol.summary(
        [r[name]["vs_float32"]["points"] for r in runs.values()]),
        "accuracy": _protocol.summary([r[name]["accuracy"] for r in runs.values()])}
        for name in ("ptq_int8", "qat_int8")}
    summary["qat_within_1_point"] = all(r["qat_int8"]["vs_float32"]["points"] >= -1
                                        for r in runs.values())
    return {"runs": runs, "summary": summary}


def main(_):
    _parts.run({"bow": part_bow, "transformer": part_transformer}, FLAGS.parts, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
