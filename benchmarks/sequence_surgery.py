"""Structured pruning of text models: ``prune_channels(0.5)`` on an LSTM and a Transformer encoder.

    python benchmarks/sequence_surgery.py --models=transformer \
        --out=benchmarks/results/sequence_surgery_transformer.json      # about 12 minutes
    python benchmarks/sequence_surgery.py --models=lstm \
        --out=benchmarks/results/sequence_surgery_lstm.json             # about 15 minutes
    python benchmarks/sequence_surgery.py --models=transformer --attention_dropout=0 \
        --out=benchmarks/results/sequence_surgery_transformer_dropout0.json  # pre-a8fc071 model

Data: the bundled fortune-cookie topics (``tfcompress.data.load_text``: 64 token ids, 6 classes);
a stratified fifth of the training split is held out for validation (``_protocol``). Models:
``models.text_transformer()`` (Embedding 32 -> 2-head attention + residual -> LayerNorm ->
feed-forward 64 -> LayerNorm) and an LSTM of the same width (Embedding(2000, 32, mask_zero) ->
LSTM(32) -> Dense softmax). Per model and seed (0, 1, 2): train ``--epochs`` (best validation
epoch kept), then ``prune_channels(0.5)`` at the default round_to (attention heads ranked on
256 training samples) and fine-tune each candidate of a small grid, on VALIDATION only:
fine-tuning Adam learning rate (``--finetune_lrs``) x Distiller alpha with the unpruned model
as the teacher (``--alphas``; 1 = the labels alone) x, for the Transformer, heads pruned with
the widths or every head kept (``--heads``); each fine-tuning runs at most
``--finetune_epochs`` and stops ``--patience`` epochs after its best validation epoch, which it
keeps. The candidate with the best mean validation accuracy over the seeds (ties: pruned heads)
is used for every seed, and only then is the test split read: per seed the parameter ratio,
test accuracy of the unpruned model, right after pruning and after fine-tuning, and the paired
test difference to the unpruned model with a bootstrap 95% interval (also pooled over seeds);
as controls, the previous recipe (labels, 4 epochs at 3e-3, best validation epoch) and the
unpruned model trained on with the chosen learning rate and the same early stopping.
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
flags.DEFINE_list("seeds", ["0", "1", "2"], "Model seeds (the data split stays seed 0).")
flags.DEFINE_list("models", ["lstm", "transformer"], "Which text models.")
flags.DEFINE_integer("epochs", 8, "Training epochs of the unpruned models.")
flags.DEFINE_float("ratio", 0.5, "prune_channels ratio.")
flags.DEFINE_float("lr", 3e-3, "Adam learning rate of the unpruned models.")
flags.DEFINE_integer("finetune_epochs", 16, "At most this many fine-tuning epochs after pruning.")
flags.DEFINE_integer("patience", 4, "Fine-tuning stops after this many epochs without a better "
                     "validation accuracy; the best validation epoch is kept.")
flags.DEFINE_list("finetune_lrs", ["3e-3", "1e-3"], "Fine-tuning Adam learning rates tried.")
flags.DEFINE_list("alphas", ["1", "0.5", "0.1"], "Distiller alphas tried (weight of the labels; "
                  "the unpruned model is the teacher); 1: the labels alone, no teacher.")
flags.DEFINE_float("temperature", 2.0, "Distiller temperature.")
flags.DEFINE_list("heads", ["prune", "keep"], "Transformer: prune attention heads with the "
                  "widths (prune_channels' default) or keep every head (only widths: layers= "
                  "every Embedding and Dense layer).")
flags.DEFINE_float("attention_dropout", None, "The Transformer's attention dropout (None: "
                   "models.text_transformer's default, 0.2; 0 was the default before a8fc071).")
flags.DEFINE_string("out", "benchmarks/results/sequence_surgery.json", "Output JSON.")


def text_lstm() -> keras.Model:
    L = keras.layers
    inputs = keras.Input((64,), dtype="int32", name="token_ids")
    x = L.Embedding(models.TEXT_VOCABULARY, 32, mask_zero=True, name="embedding")(inputs)
    x = L.LSTM(32, name="lstm")(x)
    return keras.Model(inputs, L.Dense(6, activation="softmax", name="probs")(x), name="lstm")


def text_transformer() -> keras.Model:
    if FLAGS.attention_dropout is None:
        return models.text_transformer()
    return models.text_transformer(attention_dropout=FLAGS.attention_dropout)


BUILDERS = {"lstm": text_lstm, "transformer": text_transformer}


def prune(model, heads: str, x):
    """prune_channels(ratio), heads ranked on ``x``; ``heads="keep"``: only widths."""
    layers = None
    if heads == "keep":
        layers = [layer.name for layer in model.layers
                  if isinstance(layer, (keras.layers.Embedding, keras.layers.Dense))]
    return tfcompress.prune_channels(model, FLAGS.ratio, layers=layers, x=x)


def fine_tune(student, teacher, train, val, lr: float, alpha: float) -> int:
    """Fits ``student`` (on the labels, or distilled from ``teacher`` when alpha < 1), keeping
    its best validation epoch; returns the number of epochs run."""
    stop = keras.callbacks.EarlyStopping("val_accuracy", patience=FLAGS.patience, mode="max",
                                         restore_best_weights=True)
    fit = dict(validation_data=val, batch_size=32, epochs=FLAGS.finetune_epochs, verbose=0,
               callbacks=[stop])
    if alpha >= 1:
        student.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                        ["accuracy"])
        history = student.fit(*train, **fit)
    else:
        distiller = tfcompress.Distiller(student, teacher, alpha=alpha,
                                         temperature=FLAGS.temperature)
        distiller.compile(keras.optimizers.Adam(lr), metrics=["accuracy"])
        history = distiller.fit(train[0], distiller.precompute(*train), **fit)
    return len(history.history["val_accuracy"])


def grid(kind: str) -> list:
    heads = FLAGS.heads if kind == "transformer" else ["prune"]
    return [(h, float(lr), float(a)) for h in heads for lr in FLAGS.finetune_lrs
            for a in FLAGS.alphas]


def trials(kind: str, seed: int, train, val) -> dict:
    """The unpruned model (best validation epoch) and every candidate's pruned, fine-tuned model
    with its validation correctness. No test data is read here."""
    keras.utils.set_random_seed(seed)
    model = BUILDERS[kind]()
    protocol.fit(model, train, val, FLAGS.epochs, FLAGS.lr)
    out = {"model": model, "val": protocol.correct(model, *val), "trials": {}}
    for candidate in grid(kind):
        start = time.time()
        pruned = prune(model, candidate[0], train[0][:256])
        keras.utils.set_random_seed(seed)
        epochs = fine_tune(pruned, model, train, val, candidate[1], candidate[2])
        out["trials"][candidate] = {"pruned": pruned, "val": protocol.correct(pruned, *val),
                                    "epochs": epochs, "seconds": time.time() - start}
        print(kind, seed, candidate, f"val {out['trials'][candidate]['val'].mean():.4f} "
              f"(unpruned {out['val'].mean():.4f}), {epochs} epochs", flush=True)
    return out


def report(kind: str, seed: int, run: dict, chosen: tuple, train, val, test) -> dict:
    """Test figures of the chosen candidate (the only place test data is read)."""
    model, trial = run["model"], run["trials"][chosen]
    pruned = trial["pruned"]
    base = protocol.correct(model, *test)
    after_surgery = protocol.correct(prune(model, chosen[0], train[0][:256]), *test)
    tuned = protocol.correct(pruned, *test)
    keras.utils.set_random_seed(seed)  # the previous recipe: labels, 4 epochs at 3e-3
    previous = prune(model, "prune", train[0][:256])
    protocol.fit(previous, train, val, 4, 3e-3)
    previous = protocol.correct(previous, *test)
    keras.utils.set_random_seed(seed)  # the control: the unpruned model trained on as long
    fine_tune(model, None, train, val, chosen[1], 1.0)
    continued = protocol.correct(model, *test)
    surgery = pruned.surgery_report
    return {
        "model": kind, "seed": seed,
        "params": model.count_params(), "params_pruned": pruned.count_params(),
        "param_ratio": pruned.count_params() / model.count_params(),
        "val_accuracy": float(run["val"].mean()),
        "val_accuracy_pruned_finetuned": float(trial["val"].mean()),
        "finetune_epochs_run": trial["epochs"],
        "accuracy": float(base.mean()), "accuracy_pruned_no_finetune": float(after_surgery.mean()),
        "accuracy_pruned_finetuned": float(tuned.mean()),
        "finetuned_minus_base": protocol.paired_difference(base, tuned),
        "accuracy_pruned_previous_recipe": float(previous.mean()),
        "previous_recipe_minus_base": protocol.paired_difference(base, previous),
        "accuracy_base_continued": float(continued.mean()),
        "finetuned_minus_base_continued": protocol.paired_difference(continued, tuned),
        "changed": surgery.changed, "not_followed": list(surgery.not_followed),
        "notes": list(surgery.notes),
        "_base": base, "_tuned": tuned,
        "grid_val": [{"heads": c[0], "lr": c[1], "alpha": c[2],
                      "val_accuracy": float(t["val"].mean()), "epochs": t["epochs"],
                      "seconds": t["seconds"]} for c, t in run["trials"].items()],
    }


def main(_):
    (x, y), test = tfcompress.data.load_text(0)
    train, val = protocol.validation_split(x, y)
    rows, summary = [], {}
    for kind in FLAGS.models:
        runs = {int(seed): trials(kind, int(seed), train, val) for seed in FLAGS.seeds}
        # The candidate with the best mean validation accuracy over the seeds, for every seed.
        # Ties (the same number of validation texts right) go to pruned heads (fewer weights).
        chosen = max(grid(kind), key=lambda c: (round(float(np.mean(
            [r["trials"][c]["val"].mean() for r in runs.values()])), 9), c[0] == "prune"))
        mine = [report(kind, seed, run, chosen, train, val, test) for seed, run in runs.items()]
        pooled = protocol.paired_difference(*(np.concatenate([r.pop(k) for r in mine])
                                              for k in ("_base", "_tuned")))
        rows += mine
        summary[kind] = {
            "chosen": {"heads": chosen[0], "finetune_lr": chosen[1], "alpha": chosen[2],
                       "temperature": FLAGS.temperature,
                       "chosen_on": "validation split, mean over the seeds"},
            "param_ratio": protocol.summary([r["param_ratio"] for r in mine]),
            "points": protocol.summary([r["finetuned_minus_base"]["points"] for r in mine]),
            "points_previous_recipe": protocol.summary(
                [r["previous_recipe_minus_base"]["points"] for r in mine]),
            "points_vs_continued": protocol.summary(
                [r["finetuned_minus_base_continued"]["points"] for r in mine]),
            "pooled_points": pooled,
            "within_2_points": sum(r["finetuned_minus_base"]["points"] >= -2 for r in mine)}
    for row in rows:
        print(f"{row['model']} seed {row['seed']}: params x{row['param_ratio']:.3f}, accuracy "
              f"{row['accuracy']:.4f} -> {row['accuracy_pruned_no_finetune']:.4f} (pruned) -> "
              f"{row['accuracy_pruned_finetuned']:.4f} (fine-tuned), "
              f"{row['finetuned_minus_base']['points']:+.2f} points "
              f"{row['finetuned_minus_base']['ci95']}; previous recipe "
              f"{row['previous_recipe_minus_base']['points']:+.2f}; unpruned trained on "
              f"{row['accuracy_base_continued']:.4f}: "
              f"{row['finetuned_minus_base_continued']['points']:+.2f} points "
              f"{row['finetuned_minus_base_continued']['ci95']}")
    for kind, s in summary.items():
        print(kind, json.dumps(s))
    result = {"command": " ".join(sys.argv), "seeds": [int(s) for s in FLAGS.seeds],
              "epochs": FLAGS.epochs, "finetune_epochs": FLAGS.finetune_epochs,
              "patience": FLAGS.patience, "ratio": FLAGS.ratio, "lr": FLAGS.lr,
              "attention_dropout": FLAGS.attention_dropout,
              "rows": rows, "summary": summary}
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist")
                  else str(v))
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
