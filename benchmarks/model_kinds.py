"""Issue 25's acceptance table: every kind of model users bring through every feature.

    .venv/bin/python benchmarks/model_kinds.py                 # all kinds, all features
    .venv/bin/python benchmarks/model_kinds.py --kinds lstm,text --features convert,prune

Kinds are the tiny models of ``tests/model_kinds.py`` (trained there in seconds on their
synthetic data): text (average embedding on int32 token ids), lstm, gru, bilstm
(Bidirectional), transformer (MultiHeadAttention + LayerNormalization encoder block), dscnn
(keyword-spotting DS-CNN with BatchNormalization), regression (Conv1D, float targets),
two_output (a class head and a value head). Features: convert in every registered mode (each
flatbuffer validated on LiteRT against the Keras model on the test split), validate (the
float32 flatbuffer against the labels), prune, cluster, qat, prune_channels, factorize,
distill, mixed (mixed precision within 0.9x the float32 bytes: these flatbuffers are mostly
overhead), recovery (int8 with PTQ recovery). A convert cell also names the layers the mode left
in float32 (``conversion_info(...)["left_alone"]``), and, where a regression output lost more than
0.1 R^2 in a low-bit weight mode, whether rounding one layer's weights to that width in Keras
alone gives the same R^2 ("int4 grid limit: ...": the width's loss, not our calibration).

Each cell holds the measured figure, or the one-line message of the ``TfcompressError`` the
feature raised; any other exception is recorded as ``TRACEBACK: <class>: <message>`` (the full
traceback in the JSON) so a crash is never mistaken for a refusal. Figures: size as a ratio to
the float32 flatbuffer; for classification agreement with Keras (``agr``) and accuracy
(``acc``), for regression R^2, per output for a two-output model. Keras-side features
(prune, cluster, distill, surgery) are measured on the Keras model after one or two short
fine-tuning epochs: plumbing figures for tiny models, not accuracy claims.

Writes ``benchmarks/results/model_kinds.json`` and ``benchmarks/results/model_kinds.md``.
"""

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

KINDS = ("text", "lstm", "gru", "bilstm", "transformer", "dscnn", "regression", "two_output")
FEATURES = ("convert", "validate", "prune", "cluster", "qat", "prune_channels", "factorize",
            "distill", "mixed", "recovery")
N_TEST = 60  # test samples each flatbuffer is validated on
CALIBRATION = 64  # representative samples
MIXED_BUDGET = 0.9  # of the float32 bytes: tiny models' flatbuffers are mostly overhead
OUT = os.path.join(HERE, "results")


# ---------------------------------------------------------------- measuring

def _is_regression(y) -> bool:
    return np.asarray(y).dtype.kind == "f"


def _r2(pred, y) -> float:
    pred, y = np.asarray(pred, np.float64).reshape(len(y), -1), np.asarray(y, np.float64)
    y = y.reshape(len(y), -1)
    return float(1 - np.sum((pred - y) ** 2) / max(np.sum((y - y.mean(0)) ** 2), 1e-12))


def _keras_figure(model, x, y) -> str:
    """The Keras model's own metric on the test split: accuracy, or R^2, per output."""
    outs = model.predict(x, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    ys = y if isinstance(y, list) else [y]
    parts = []
    for out, target in zip(outs, ys):
        if _is_regression(target):
            parts.append(f"r2 {_r2(out, target):.3f}")
        else:
            parts.append(f"acc {np.mean(out.argmax(-1) == target):.3f}")
    return ", ".join(parts)


def _report_figure(report) -> str:
    """agr/acc or r2 from a ValidationReport (per output for several outputs)."""
    entries = report.outputs if report.outputs else [report.to_dict()]
    parts = []
    for e in entries:
        e = e if isinstance(e, dict) else dict(e)
        if e.get("task") == "regression":
            parts.append(f"r2 {e.get('r2'):.3f}")
        else:
            agr, acc = e.get("agreement"), e.get("accuracy")
            parts.append(" ".join(s for s in (f"agr {agr:.3f}" if agr is not None else "",
                                              f"acc {acc:.3f}" if acc is not None else "") if s))
    return ", ".join(parts)


def _validate(flatbuffer, model, test, float32_bytes, mode: str = "") -> tuple:
    import tfcompress

    x, y = test
    report = tfcompress.validate(flatbuffer, x[:N_TEST], _head(y, N_TEST), reference=model,
                                 latency_runs=1, threads=(1,), delegate_checks=False)
    left = tfcompress.export.conversion.conversion_info(flatbuffer)["left_alone"]
    figure = f"{len(flatbuffer) / float32_bytes:.2f}x, {_report_figure(report)}" + "".join(
        f", float32 {name} {share:.0%}" for name, share in left)
    outs = tfcompress.export.validation.predict(flatbuffer, x[:N_TEST])
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    bad = sum(int(np.size(o) - np.isfinite(o).sum()) for o in outs)
    if bad:  # a figure such as R^2 -inf says less than this
        figure += (f"; {bad} of {sum(np.size(o) for o in outs)} outputs are inf/NaN (computed "
                   "so by the flatbuffer on LiteRT)")
    return figure + _grid_limit(model, mode, report, test), {**report.to_dict(), "left_alone": left}


def _grid_limit(model, mode: str, report, test) -> str:
    """For a regression output that lost > 0.1 R^2 in a low-bit weight mode: whether the
    weight grid alone explains it, in one line. Each Dense/Conv kernel alone is rounded in Keras
    to the mode's width, per output channel, symmetric (the quantizer's weight grid); the layer
    whose rounding alone gives an R^2 within 0.1 (or 5%) of the flatbuffer's is named: the
    loss is that width's, not our feeding or calibration."""
    import re

    bits = re.search(r"wi(\d+)", mode or "")
    entries = report.outputs if report.outputs else [report.to_dict()]
    ys = test[1] if isinstance(test[1], list) else [test[1]]
    lost = [(i, dict(e)) for i, e in enumerate(entries) if dict(e).get("task") == "regression"
            and (dict(e).get("r2_drop") or 0) > 0.1]
    if not bits or not lost:
        return ""
    bits, x = int(bits.group(1)), test[0][:N_TEST]
    weights, found = model.get_weights(), []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or getattr(layer, "depthwise_kernel", None) is not None:
            continue
        w = kernel.numpy()
        scale = np.abs(w).max(axis=tuple(range(w.ndim - 1)), keepdims=True) / (2 ** (bits - 1) - 1)
        kernel.assign(np.round(w / np.where(scale > 0, scale, 1)) * scale)
        outs = model.predict(x, verbose=0)
        outs = outs if isinstance(outs, list) else [outs]
        found += [(layer.name, i, _r2(outs[i], ys[i][:N_TEST]), e["r2"]) for i, e in lost]
        model.set_weights(weights)
    name, i, r2, got = min(found, key=lambda f: f[2])
    if not (np.isfinite(got) and abs(r2 - got) <= max(0.1, 0.05 * abs(got))):
        return ""
    return (f"; int{bits} grid limit: {name}'s weights alone rounded to int{bits} in Keras give "
            f"output {i} R^2 {r2:.3f} (keep it wider: options={{'overrides': {{'{name}': 8}}}})")


def _head(y, n):
    return [v[:n] for v in y] if isinstance(y, list) else y[:n]


def _fit(model, loss, train, epochs, callbacks=(), lr=1e-3):
    from tfcompress import keras

    x, y = train
    model.compile(keras.optimizers.Adam(lr), loss)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return model


def _steps(train) -> int:
    return int(np.ceil(len(train[0]) / 32))


# ---------------------------------------------------------------- features

def f_convert(ctx) -> dict:
    import tfcompress
    from tfcompress.export import conversion

    cells = {}
    for mode in conversion.available_modes():
        if mode == "mixed":  # needs a budget: the ``mixed`` feature
            continue
        cells[f"convert:{mode}"] = lambda mode=mode: _validate(
            tfcompress.convert(ctx["model"], mode, representative_data=ctx["train"][0],
                               representative_samples=CALIBRATION),
            ctx["model"], ctx["test"], ctx["float32_bytes"], mode)
    return cells


def f_validate(ctx) -> dict:
    def run():
        import tfcompress

        x, y = ctx["test"]
        report = tfcompress.validate(ctx["float32"], x[:N_TEST], _head(y, N_TEST),
                                     latency_runs=1, threads=(1,), delegate_checks=False)
        return _report_figure(report), report.to_dict()
    return {"validate": run}


def f_prune(ctx) -> dict:
    def run():
        import tfcompress
        from tfcompress.training import pruning

        pruned = tfcompress.prune(ctx["model"], 0.5, epochs=1, steps_per_epoch=_steps(ctx["train"]))
        _fit(pruned, ctx["loss"], ctx["train"], 1, [tfcompress.callbacks.Pruning()])
        info = pruning.pruning_info(pruned)
        stripped = tfcompress.strip(pruned)
        report = tfcompress.sparsity_report(stripped)
        left = "".join(f", left alone {n} {s:.0%}" for n, s in info["left_alone"])
        return (f"sparsity {report['global']:.2f}, {_keras_figure(stripped, *ctx['test'])}{left}",
                {"sparsity": report, "info": info})
    return {"prune": run}


def f_cluster(ctx) -> dict:
    def run():
        import tfcompress
        from tfcompress.training import clustering

        clustered = tfcompress.cluster(ctx["model"], 8)
        _fit(clustered, ctx["loss"], ctx["train"], 1, lr=1e-4)
        info = clustering.clustering_info(clustered)
        stripped = tfcompress.strip(clustered)
        uniques = tfcompress.unique_weights_report(stripped)
        left = "".join(f", left alone {n} {s:.0%}" for n, s in info["left_alone"])
        top = max((uniques["layers"][n] for n in info["clustered"] if n in uniques["layers"]),
                  default=0)
        return (f"max unique {top}, {_keras_figure(stripped, *ctx['test'])}{left}",
                {"unique": uniques, "info": info})
    return {"cluster": run}


def f_qat(ctx) -> dict:
    def run():
        import tfcompress

        qat = tfcompress.quantize_aware(ctx["model"])
        _fit(qat, ctx["loss"], ctx["train"], 1, lr=1e-4)
        flatbuffer = tfcompress.convert(qat, "int8")
        return _validate(flatbuffer, ctx["model"], ctx["test"], ctx["float32_bytes"])
    return {"qat": run}


def f_prune_channels(ctx) -> dict:
    def run():
        import tfcompress

        small = tfcompress.prune_channels(ctx["model"], 0.5)
        ratio = small.count_params() / ctx["model"].count_params()
        return (f"params {ratio:.2f}x, no fine-tune {_keras_figure(small, *ctx['test'])}",
                small.surgery_report.to_dict())
    return {"prune_channels": run}


def f_factorize(ctx) -> dict:
    def run():
        import tfcompress

        small = tfcompress.factorize(ctx["model"], energy=0.9)
        ratio = small.count_params() / ctx["model"].count_params()
        report = small.surgery_report
        left = "".join(f", left alone {n} {s:.0%}" for n, s in report.left_alone)
        return (f"params {ratio:.2f}x ({len(report.changed)} split), "
                f"{_keras_figure(small, *ctx['test'])}{left}", report.to_dict())
    return {"factorize": run}


def f_distill(ctx) -> dict:
    def run():
        import model_kinds
        import tfcompress
        from tfcompress import keras

        student = model_kinds.KINDS[ctx["kind"]](seed=1)[0]  # same architecture, fresh weights
        distiller = tfcompress.Distiller(student, ctx["model"])
        distiller.compile(keras.optimizers.Adam(1e-2))
        distiller.fit(*ctx["train"], batch_size=32, epochs=3, verbose=0)
        return f"student {_keras_figure(distiller.student, *ctx['test'])}", {}
    return {"distill": run}


def f_mixed(ctx) -> dict:
    def run():
        import tfcompress

        x, y = ctx["test"]
        result = tfcompress.mixed_precision(ctx["model"], x[:N_TEST], _head(y, N_TEST),
                                            size_budget=MIXED_BUDGET)
        figure, report = _validate(result.flatbuffer, ctx["model"], ctx["test"],
                                   ctx["float32_bytes"])
        return figure, {"validation": report, "layers": result.layers}
    return {"mixed": run}


def f_recovery(ctx) -> dict:
    def run():
        import tfcompress

        x, y = ctx["test"]
        flatbuffer = tfcompress.convert(ctx["model"], "int8", representative_data=ctx["train"][0],
                                        representative_samples=CALIBRATION, recovery=True,
                                        validation_data=(x[:N_TEST], _head(y, N_TEST)))
        figure, report = _validate(flatbuffer, ctx["model"], ctx["test"], ctx["float32_bytes"])
        info = tfcompress.export.conversion.conversion_info(flatbuffer)
        kept = info["facts"].get("recovery_check", {}).get("kept", "")
        return f"{figure}{', kept ' + kept if kept else ''}", {"validation": report,
                                                               "facts": info["facts"]}
    return {"recovery": run}


# ---------------------------------------------------------------- the table

def _cell(fn) -> dict:
    from tfcompress.errors import TfcompressError

    start = time.time()
    try:
        figure, detail = fn()
        out = {"ok": True, "figure": figure, "detail": detail}
    except TfcompressError as e:
        out = {"ok": False, "figure": str(e).splitlines()[0] if str(e) else type(e).__name__,
               "error": type(e).__name__}
    except Exception as e:  # noqa: BLE001  (recorded, never hidden)
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        # tf.function errors start "in user code:" and end with the error itself
        line = lines[-1] if lines and lines[0].startswith("in user code") else (lines or [""])[0]
        out = {"ok": False, "figure": f"TRACEBACK: {type(e).__name__}: {line[:200]}",
               "traceback": traceback.format_exc()}
    out["seconds"] = round(time.time() - start, 2)
    return out


def run_kind(kind: str, features) -> dict:
    import model_kinds
    import tfcompress

    model, train, test = model_kinds.trained(kind)
    float32 = tfcompress.convert(model, "float32")
    loss = model.loss  # a dict by output name would not match wrapped outputs' new names
    loss = [loss[name] for name in model.output_names] if isinstance(loss, dict) else loss
    ctx = {"kind": kind, "model": model, "train": train, "test": test, "loss": loss,
           "float32": float32, "float32_bytes": len(float32)}
    cells = {}
    for feature in features:
        for name, fn in globals()[f"f_{feature}"](ctx).items():
            cells[name] = _cell(fn)
            print(f"{kind:12s} {name:28s} {cells[name]['seconds']:6.1f}s  "
                  f"{cells[name]['figure']}", flush=True)
    return {"params": int(model.count_params()), "keras": _keras_figure(model, *test),
            "float32_bytes": len(float32), "cells": cells}


def markdown(results: dict) -> str:
    """One row per feature (convert modes first), one column per kind."""
    kinds = [k for k in KINDS if k in results["kinds"]] + [
        k for k in results["kinds"] if k not in KINDS]
    rows = []
    for k in kinds:
        for name in results["kinds"][k]["cells"]:
            if name not in rows:
                rows.append(name)
    lines = ["| feature | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|",
             "| Keras (test) | " + " | ".join(
                 f"{results['kinds'][k]['keras']}, {results['kinds'][k]['params']} params"
                 for k in kinds) + " |"]
    for name in rows:
        cells = [results["kinds"][k]["cells"].get(name, {}).get("figure", "")
                 .replace("|", "/") for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--features", default=",".join(FEATURES))
    parser.add_argument("--out", default=os.path.join(OUT, "model_kinds"))
    args = parser.parse_args(argv)
    import tfcompress

    tfcompress.quiet_tensorflow()
    kinds = [k for k in args.kinds.split(",") if k]
    features = [f for f in args.features.split(",") if f]
    bad = [f for f in features if f not in FEATURES]
    if bad:
        parser.error(f"unknown features {bad}; accepted: {', '.join(FEATURES)}")
    start = time.time()
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": " ".join(["benchmarks/model_kinds.py"] + (argv or sys.argv[1:])),
               "kinds": {}}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    for kind in kinds:  # written after each kind, so a long run leaves what it measured
        results["kinds"][kind] = run_kind(kind, features)
        results["seconds"] = round(time.time() - start, 1)
        with open(args.out + ".json", "w") as f:
            json.dump(results, f, indent=1, default=str)
        table = markdown(results)
        with open(args.out + ".md", "w") as f:
            f.write(f"Command: `{results['command']}` ({results['seconds']} s)\n\n" + table)
    print(table)
    print("wrote", args.out + ".json", args.out + ".md")
    return results


if __name__ == "__main__":
    main()
