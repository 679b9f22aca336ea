"""Structured pruning of text models: ``prune_channels(0.5)`` on an LSTM and a Transformer encoder.

    python benchmarks/sequence_surgery.py                # seed 0, both models (about 3 minutes)
    python benchmarks/sequence_surgery.py --seeds=1 --out=benchmarks/results/sequence_surgery_seed1.json

Data: the bundled fortune-cookie topics (``tfcompress.data.load_text``: 64 token ids, 6 classes);
a stratified fifth of the training split is held out for validation (``_protocol``). Models:
``models.text_transformer()`` (Embedding 32 -> 2-head attention + residual -> LayerNorm ->
feed-forward 64 -> LayerNorm) and an LSTM of the same width (Embedding(2000, 32, mask_zero) ->
LSTM(32) -> Dense softmax). Per model and seed: train ``--epochs`` (best validation epoch kept),
``prune_channels(0.5)`` at the default round_to (attention heads ranked on 256 training
samples), test accuracy right after pruning, then fine-tune ``--finetune_epochs`` at the same
learning rate (best validation epoch) and measure again: the parameter ratio and the paired
test-accuracy difference to the unpruned model with a bootstrap 95% interval; as a control the
unpruned model is then trained as many more epochs, and the pruned one compared with it too.
Writes benchmarks/results/sequence_surgery.json.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import _protocol as protocol  # noqa: E402
import tfcompress  # noqa: E402
from tfcompress import keras, models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0"], "Model seeds (the data split stays seed 0).")
flags.DEFINE_list("models", ["lstm", "transformer"], "Which text models.")
flags.DEFINE_integer("epochs", 8, "Training epochs of the unpruned models.")
flags.DEFINE_integer("finetune_epochs", 4, "Fine-tuning epochs after pruning.")
flags.DEFINE_float("ratio", 0.5, "prune_channels ratio.")
flags.DEFINE_float("lr", 3e-3, "Adam learning rate (training and fine-tuning).")
flags.DEFINE_string("out", "benchmarks/results/sequence_surgery.json", "Output JSON.")


def text_lstm() -> keras.Model:
    L = keras.layers
    inputs = keras.Input((64,), dtype="int32", name="token_ids")
    x = L.Embedding(models.TEXT_VOCABULARY, 32, mask_zero=True, name="embedding")(inputs)
    x = L.LSTM(32, name="lstm")(x)
    return keras.Model(inputs, L.Dense(6, activation="softmax", name="probs")(x), name="lstm")


BUILDERS = {"lstm": text_lstm, "transformer": models.text_transformer}


def run_one(kind: str, seed: int, train, val, test) -> dict:
    keras.utils.set_random_seed(seed)
    model = BUILDERS[kind]()
    start = time.time()
    protocol.fit(model, train, val, FLAGS.epochs, FLAGS.lr)
    base = protocol.correct(model, *test)
    pruned = tfcompress.prune_channels(model, FLAGS.ratio, x=train[0][:256])
    after_surgery = protocol.correct(pruned, *test)
    protocol.fit(pruned, train, val, FLAGS.finetune_epochs, FLAGS.lr)
    tuned = protocol.correct(pruned, *test)
    protocol.fit(model, train, val, FLAGS.finetune_epochs, FLAGS.lr)  # the control: as many
    continued = protocol.correct(model, *test)  # extra epochs for the unpruned model
    report = pruned.surgery_report
    return {
        "model": kind, "seed": seed,
        "params": model.count_params(), "params_pruned": pruned.count_params(),
        "param_ratio": pruned.count_params() / model.count_params(),
        "accuracy": float(base.mean()), "accuracy_pruned_no_finetune": float(after_surgery.mean()),
        "accuracy_pruned_finetuned": float(tuned.mean()),
        "finetuned_minus_base": protocol.paired_difference(base, tuned),
        "accuracy_base_continued": float(continued.mean()),
        "finetuned_minus_base_continued": protocol.paired_difference(continued, tuned),
        "changed": report.changed, "not_followed": list(report.not_followed),
        "notes": list(report.notes), "seconds": time.time() - start,
    }


def main(_):
    (x, y), test = tfcompress.data.load_text(0)
    train, val = protocol.validation_split(x, y)
    rows = [run_one(kind, int(seed), train, val, test)
            for kind in FLAGS.models for seed in FLAGS.seeds]
    for row in rows:
        print(f"{row['model']} seed {row['seed']}: params x{row['param_ratio']:.3f}, accuracy "
              f"{row['accuracy']:.4f} -> {row['accuracy_pruned_no_finetune']:.4f} (pruned) -> "
              f"{row['accuracy_pruned_finetuned']:.4f} (fine-tuned), "
              f"{row['finetuned_minus_base']['points']:+.2f} points "
              f"{row['finetuned_minus_base']['ci95']}; unpruned trained as long "
              f"{row['accuracy_base_continued']:.4f}: "
              f"{row['finetuned_minus_base_continued']['points']:+.2f} points "
              f"{row['finetuned_minus_base_continued']['ci95']}")
    summary = {}
    for kind in FLAGS.models:
        mine = [r for r in rows if r["model"] == kind]
        summary[kind] = {
            "param_ratio": protocol.summary([r["param_ratio"] for r in mine]),
            "points": protocol.summary([r["finetuned_minus_base"]["points"] for r in mine]),
            "points_vs_continued": protocol.summary(
                [r["finetuned_minus_base_continued"]["points"] for r in mine])}
    result = {"command": " ".join(sys.argv), "seeds": [int(s) for s in FLAGS.seeds],
              "epochs": FLAGS.epochs, "finetune_epochs": FLAGS.finetune_epochs,
              "ratio": FLAGS.ratio, "lr": FLAGS.lr, "rows": rows, "summary": summary}
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist")
                  else str(v))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
