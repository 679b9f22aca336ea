"""Report output: a recipe run's report.json, report.md and its size/accuracy plot; a search's
search.json, report.md and pareto.png."""

import dataclasses
import io
import json
import os
from typing import Union

import numpy as np

from tfcompress import _io
import tfcompress.pipeline.results as results
from tfcompress.pipeline.workdir import Workdir

COLUMNS = (
    ("label", "model", "{}"),
    ("bytes", "bytes", "{:,}"),
    ("gzip_bytes", "gzip bytes", "{:,}"),
    ("ratio", "ratio to float32", "{:.3f}"),
    ("gzip_ratio", "gzip ratio", "{:.3f}"),
    ("validation.accuracy", "validation accuracy", "{:.4f}"),
    ("accuracy", "test accuracy", "{:.4f}"),
    ("vs_baseline", "test vs baseline, points (95% interval)", None),
    ("agreement", "test agreement", "{:.4f}"),
    ("latency_ms", "latency ms", "{:.3f}"),
    ("litert_benchmark.latency.median_ms", "LiteRT benchmark ms", "{:.3f}"),
)
# A regression model's rows: its R^2 and errors, never accuracy or agreement.
REGRESSION_COLUMNS = (
    COLUMNS[:5] + (
        ("validation.r2", "validation R^2", "{:.4f}"),
        ("r2", "test R^2", "{:.4f}"),
        ("vs_baseline", "test vs baseline, R^2 points (95% interval)", None),
        ("mse", "test MSE", "{:.4g}"),
        ("mae", "test MAE", "{:.4g}"),
        ("max_abs_diff", "max output difference", "{:.3g}"),
    ) + COLUMNS[-2:])


def _regression(rows) -> bool:
    """Whether format rows are a regression model's (R^2 and no accuracy)."""
    rows = list(rows)
    return bool(rows) and all(r.get("r2") is not None or r.get("accuracy") is None for r in rows) \
        and any(r.get("r2") is not None for r in rows)


# What each stage did to the model, in the words a row label uses ("pruned+clustered int8").
MADE_BY = {"distill": "distilled", "prune_blocks": "block-pruned",
           "prune_channels": "channel-pruned", "factorize": "factorized", "prune": "pruned",
           "cluster": "clustered", "qat": "QAT", "equalize": "equalized",
           "correct_bias": "bias-corrected", "adaround": "AdaRound", "recover": "recovered"}


def row_label(fmt: str, stages) -> str:
    """What made a format row: ``baseline float32`` (the plain model), ``pruned+clustered
    int8`` (the stages' model converted to int8), or the mode alone when no stage ran."""
    if fmt.startswith("baseline") or not stages:
        return fmt
    return "+".join(MADE_BY.get(name, name) for name in stages) + " " + fmt


def _pct(value) -> str:
    return f"{100 * value:.0f}%"


def stage_summary(name: str, figures: dict) -> str:
    """What a stage did, in a few words, from its measured figures (``ctx.stats[name]``)."""
    f = figures or {}
    layers = lambda key: ", ".join(f.get(key) or {})  # noqa: E731
    if name == "prune" and "global_sparsity" in f:
        return (f"{_pct(f['global_sparsity'])} of the weights zeroed (target "
                f"{_pct(f['target_sparsity'])} of {layers('sparsity') or 'the selected layers'})")
    if name == "cluster" and "max_unique_weights" in f:
        return (f"at most {f['max_unique_weights']} distinct values per kernel in "
                f"{layers('unique_weights') or 'no layer'}")
    if name == "qat" and "preserve" in f:
        return "quantization-aware fine-tuning" + (
            f", preserving {f['preserve']}" if f["preserve"] != "none" else "")
    if name == "distill" and "student_params" in f:
        return (f"student of {f['student_params']:,} parameters learned from a teacher of "
                f"{f['teacher_params']:,}")
    if "params_before" in f:  # the surgery stages
        return (f"parameters {f['params_before']:,} -> {f['params_after']:,} "
                f"({f['params_ratio']:.2f}x), MACs {f['macs_ratio']:.2f}x")
    if name == "equalize" and "pairs" in f:
        return f"{f['pairs']} layer pairs equalized"
    if "mode" in f:
        return f"weights placed on the {f['mode']} grid"
    return "done"


def stage_line(index: int, count: int, name: str, figures: dict, accuracy: float,
               seconds: float, resumed: bool = False, metric: str = "accuracy") -> str:
    """The console's line for a finished stage: what it did, its validation score
    (``metric``: accuracy, or r2 for regression)."""
    before = (figures or {}).get(f"{metric}_before")
    was = f" (before {before:.4f})" if isinstance(before, float) else ""
    took = "resumed from the workdir" if resumed else f"{seconds:.0f}s"
    return (f"[{index + 1}/{count}] {name}: {stage_summary(name, figures)}; validation "
            f"{'R^2' if metric == 'r2' else metric} {accuracy:.4f}{was}; {took}")


def summary_table(rows) -> str:
    """A compact plain-text table of format rows for the console (report.md has them all)."""
    metric = "r2" if _regression(rows) else "accuracy"
    head = ("model", "KB", "gzip KB", "gzip ratio", "test R^2" if metric == "r2" else "test acc",
            "vs baseline (95%)", "ms", "LiteRT ms")
    body = []
    for r in rows:
        vs = r.get("vs_baseline") or {}
        acc = r.get(metric)
        body.append((
            r.get("label") or r["format"], f"{r['bytes'] / 1000:,.0f}",
            f"{r['gzip_bytes'] / 1000:,.0f}", f"{r['gzip_ratio']:.3f}",
            "-" if acc is None else f"{acc:.4f}",
            (f"{vs['difference_points']:+.2f} [{vs['low_points']:+.2f}, "
             f"{vs['high_points']:+.2f}]") if vs else "-",
            _ms(r.get("latency_ms")),
            _ms(((r.get("litert_benchmark") or {}).get("latency") or {}).get("median_ms"))))
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    fmt = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head)] + [fmt(b) for b in body])


def _cell(row: dict, key: str, fmt) -> str:
    value = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if key == "label" and value is None:  # rows written before labels, ``validate``'s row
        value = row.get("format")
    if value is None:
        return "-"
    if key == "vs_baseline":
        return (f"{value['difference_points']:+.2f} [{value['low_points']:+.2f}, "
                f"{value['high_points']:+.2f}]")
    return fmt.format(value)


def table(rows) -> str:
    """A Markdown table of format rows (missing figures shown as '-'); a regression model's
    rows show R^2, MSE, MAE and the output difference instead of accuracy and agreement."""
    columns = REGRESSION_COLUMNS if _regression(rows) else COLUMNS
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


def models_table(rows) -> str:
    """A Markdown table of a stage's models side by side (one dict per model, same keys)."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else (  # noqa: E731
        f"{v:,}" if isinstance(v, int) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "-")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def markdown(report: Union[dict, results.RunResult]) -> str:
    """report.md of a run (its typed result or the report dict)."""
    if isinstance(report, results.RunResult):
        report = report.to_dict()
    parts = ["# tfcompress report", ""]
    splits = report.get("splits")
    if splits:
        parts.append(f"Splits: train {splits['train']}, validation {splits['validation']}, test "
                     f"{splits['test']} images. Every decision (fine-tuning, stage figures, "
                     "calibration and width choices) uses validation; each exported model is "
                     "measured on test once, paired with the float32 baseline on the same images.")
        parts.append("")
    acc = report.get("keras_accuracy") or report.get("keras_r2") or {}
    if acc:
        parts.append(f"Keras validation {'R^2' if 'keras_r2' in report else 'accuracy'}: "
                     + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
        parts.append("")
    if report.get("task") == "regression":
        parts += ["Task: regression (float targets; fine-tuned with mean squared error). Rows "
                  "show R^2, MSE and MAE; the difference to the baseline is in R^2 points "
                  "(100 x R^2) from per-sample squared errors, with its paired 95% interval.",
                  ""]
    for name, stats in report.get("stages", {}).items():
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in stats.items() if not isinstance(v, (dict, list)))
        parts.append(f"- stage `{name}`: {figures}")
        left = stats.get("left_alone") or []
        if left:  # the layers the stage left alone that hold a sizeable share of the weights
            parts.append("  - left alone: " + ", ".join(f"{n} ({share:.1%} of the weights)"
                                                         for n, share in left))
        rows = stats.get("models")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            parts += ["", models_table(rows), ""]  # models side by side
        per_layer = layer_table(stats)
        if per_layer:
            parts += ["", per_layer, ""]
    if report.get("stages"):
        parts.append("")
    prof = report.get("profile") or {}
    if prof.get("baseline") and prof.get("final"):
        b, f = prof["baseline"], prof["final"]
        parts.append(
            f"Keras model: parameters {b['params']:,} -> {f['params']:,} "
            f"({f['params'] / max(b['params'], 1):.3f}x), multiply-accumulates {b['macs']:,} -> "
            f"{f['macs']:,} ({f['macs'] / max(b['macs'], 1):.3f}x)")
        parts.append("")
    parts.append(table(report["formats"]))
    notes = format_notes(report["formats"])
    if notes:
        parts += ["", notes]
    if report.get("plot"):
        what = "R^2" if report.get("task") == "regression" else "accuracy"
        parts += ["", f"![test {what} against gzip bytes]({report['plot']})"]
    return "\n".join(parts) + "\n"


def layer_table(stats: dict) -> str:
    """A Markdown table of a stage's per-layer figures: its ``{layer: value}`` stats as columns."""
    columns = [k for k, v in stats.items() if isinstance(v, dict) and v
               and all(isinstance(x, (int, float, str)) for x in v.values())]
    if not columns:
        return ""
    names = list(dict.fromkeys(n for c in columns for n in stats[c]))
    cell = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| layer | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
             "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([n] + [cell(stats[c].get(n)) for c in columns]) + " |"
              for n in names]
    return "\n".join(lines)


def format_notes(rows) -> str:
    """Per format: IO types and quantization, XNNPACK coverage, GPU verdict (where measured)."""
    lines = []
    for row in rows:
        facts = []
        conv = row.get("conversion") or {}
        for side in ("inputs", "outputs"):
            for d in conv.get(side, [])[:1]:
                q = f" (scale {d['scale']:.6g}, zero point {d['zero_point']})" if d["scale"] else ""
                facts.append(f"{side[:-1]} {d['dtype']}{q}")
        widths = [layer["bits"] for layer in conv.get("layers", [])]
        if widths:  # low-bit modes: how many layers got each weight width
            facts.append("weights " + ", ".join(
                f"{b}-bit x{widths.count(b)}" for b in sorted(set(widths))))
        xnn = row.get("xnnpack") or {}
        if xnn:
            fell = ", ".join(f"{op} x{n}" for op, n in xnn["fallback_ops"].items())
            facts.append(f"XNNPACK {xnn['delegated']}/{xnn['nodes']} nodes"
                         + (f" (fell back: {fell})" if fell else ""))
        gpu = row.get("gpu") or {}
        if gpu.get("analyzer"):
            bad = ", ".join(o["op"] for o in gpu["analyzer"]["incompatible_ops"])
            facts.append("GPU analyzer: " + ("compatible" if gpu["analyzer"]["compatible"]
                                             else f"not compatible ({bad or 'see warnings'})"))
        cm = row.get("compiled_model") or {}
        if cm.get("compared"):
            facts.append("CompiledModel vs Interpreter: " + ", ".join(
                (f"{r['kernel_mode']}{'+ynnpack' if r['ynnpack'] else ''} max difference "
                 f"{r['max_abs_diff']:.3g}" if r["error"] is None else
                 f"{r['kernel_mode']}{'+ynnpack' if r['ynnpack'] else ''} failed")
                for r in cm["runs"]))
        bench = row.get("litert_benchmark") or {}
        if bench.get("error"):
            facts.append(f"LiteRT benchmark: {bench['error']}")
        if gpu.get("delegate"):
            d = gpu["delegate"]
            facts.append("GPU delegate: " + (d.get("reason", "") if not d["available"] else
                                             f"agreement {d.get('agreement', float('nan')):.4f}"))
        if facts:
            lines.append(f"- `{row.get('label') or row['format']}`: " + "; ".join(facts))
    return "\n".join(lines)


PLOT = Workdir.PLOT


def plot_size_accuracy(rows, path: str, metric: str = "accuracy") -> str:
    """A PNG of each format's test accuracy (``metric``: or R^2, "r2") against its gzip bytes
    (log scale), written atomically; returns the path. Rows without both figures are left
    out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from matplotlib import ticker

    points = [(r["gzip_bytes"], r[metric], r.get("label") or r["format"]) for r in rows
              if r.get("gzip_bytes") and r.get(metric) is not None]
    staged = any(name.startswith("baseline") for _, _, name in points)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for size, accuracy, name in points:
        baseline = name.startswith("baseline") or (name == "float32" and not staged)
        ax.scatter([size], [accuracy], s=40, marker="s" if baseline else "o",
                   color="#777777" if baseline else "#1f77b4", zorder=3)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel("gzip bytes of the .tflite (log scale)")
    ax.set_ylabel(f"test {'R^2' if metric == 'r2' else metric} (LiteRT)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("size against accuracy (grey: baseline)")
    fig.tight_layout()
    place_labels(ax, points)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    return _io.write_bytes(path, buf.getvalue())


# Label offsets tried in turn (points): beside the marker, then further above and below it.
_OFFSETS = [(dx, dy) for k in range(16) for dy in ((4 + 12 * k), -(12 + 12 * k))
            for dx in (6, -6)]


def place_labels(ax, points) -> list:
    """Annotates each ``(x, y, label)`` where its text overlaps no label placed before and
    stays inside the axes (larger offsets get a leader line); returns the text artists.

    Labels are placed from the rightmost point to the leftmost and never cover a marker; the
    text extents come from the figure's renderer, so this is what the PNG shows."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    half = 5 * ax.figure.dpi / 72  # a marker's half width in pixels (s=40: about 6 points)
    markers = [Bbox.from_bounds(px - half, py - half, 2 * half, 2 * half)
               for px, py in ax.transData.transform([(p[0], p[1]) for p in points])]
    placed, texts = list(markers), []
    for x, y, label in sorted(points, key=lambda p: (-p[0], -p[1])):
        text = None
        for dx, dy in _OFFSETS:
            if text is not None:
                text.remove()
            far = abs(dy) > 4  # away from its marker: a leader line says whose it is
            text = ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                ha="left" if dx > 0 else "right", va="center",
                arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6) if far else None)
            box = _text_box(text, renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(_text_box(text, renderer))
        texts.append(text)
    return texts


def _text_box(text, renderer):
    """The pixels of an annotation's text alone (its leader line left out)."""
    from matplotlib.text import Text

    text.update_positions(renderer)  # where the offset puts the text (as drawing does)
    return Text.get_window_extent(text, renderer)


def write(result: results.RunResult) -> results.RunResult:
    """Writes report.json (``result.to_dict()``), report.md and, with two or more measured
    formats, the size against accuracy plot (``size_accuracy.png``, embedded in report.md) into
    the result's workdir, each atomically; returns the result with its ``plot`` named."""
    wd = Workdir(result.workdir)
    metric = "r2" if result.task == "regression" else "accuracy"
    measured = [r.to_dict() for r in result.formats if r.metric(metric, "test") is not None]
    if len(measured) >= 2:
        plot_size_accuracy(measured, wd.plot, metric)
        result = dataclasses.replace(result, plot=PLOT)
    report = result.to_dict()
    _io.write_text(wd.report_json, json.dumps(report, indent=2, sort_keys=True, default=str))
    _io.write_text(wd.report_md, markdown(report))
    return result


# ---------------------------------------------------------------- a search's report

def pareto_plot(summary: dict, records: list, path: str) -> str:
    """pareto.png: accuracy against gzip bytes and against latency, baseline and front marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    done = [r for r in records if r["state"] == "COMPLETE"]
    front = {r["number"] for r in summary["front"]}
    base = summary["baseline"]
    metric = summary.get("metric", "accuracy")  # accuracy, or r2 for a regression model
    score = lambda r: r.get("score", r.get(metric))  # noqa: E731
    what = "R^2" if metric == "r2" else metric
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "gzip_bytes", "gzip bytes of the .tflite"),
                           (axes[1], "latency_ms", "XNNPACK latency (ms, 1 sample)")):
        pts = [(r[key], score(r), r["number"] in front) for r in done
               if r.get(key) is not None]
        if pts:
            xs, ys, on = map(np.array, zip(*pts))
            ax.scatter(xs[~on], ys[~on], c="0.6", s=18, label="trial")
            ax.scatter(xs[on], ys[on], c="C0", s=30, label=f"Pareto front ({what} vs "
                       f"{summary['objective']})")
        if base.get(key) is not None:  # latency: measured only with latency runs
            ax.scatter([base[key]], [score(base)], marker="*", s=160, c="C3",
                       label="baseline float32")
        ax.axhline(summary[f"{metric}_floor"], ls="--", c="C3", lw=1,
                   label=f"budget (-{summary['max_drop_points']:g} points)")
        ax.set_xscale("log" if key == "gzip_bytes" else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel(f"validation {what} (LiteRT)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with _io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def search_markdown(summary: dict) -> str:
    """A search's report.md: baseline, budget, best candidate, the front, pareto.png."""
    base, best = summary["baseline"], summary["best"]
    m = summary.get("metric", "accuracy")  # accuracy, or r2 for a regression model
    what = "R^2" if m == "r2" else m
    lines = ["# tfcompress search", "",
             "Every choice (the budget, the front, the best) is made on the validation split; "
             "test figures are held out: measured once per exported model, never chosen on.", "",
             f"Baseline float32: validation {what} {base[m]:.4f}, test {what} "
             f"{base[f'test_{m}']:.4f}, {base['gzip_bytes']:,} gzip bytes, "
             f"{_ms(base['latency_ms'])} ms. Budget: at most {summary['max_drop_points']:g} "
             f"{'R^2 points (1 point = 0.01 R^2)' if m == 'r2' else 'points'} "
             f"lower on validation (the one-sided {summary.get('budget_confidence', 0.5):.0%} upper "
             f"bound of the paired drop); objective: "
             f"{summary['objective']}. Trials: "
             + ", ".join(f"{k.lower()} {v}" for k, v in summary["states"].items())
             + f" ({summary['repeats']} repeats of a measured candidate).", ""]
    if best:
        held = best["held_out"]
        lines += [f"Best within the budget: trial {best['number']} ({', '.join(best['stages']) or 'PTQ only'}"
                  f" -> {best['params']['mode']}): validation {what} {best[m]:.4f}; "
                  f"held-out test {what} {held[m]:.4f} ({-best['test_drop_points']:+.2f}"
                  f" points against the baseline{_interval(best)}), {held['gzip_bytes']:,} gzip "
                  f"bytes ({held['gzip_ratio']:.3f}x the float32 baseline), latency "
                  f"{_ms(held['latency_ms'])} ms: `best/model.tflite`, recipe `best/recipe.py`.", ""]
    else:
        lines += ["No candidate met the budget.", ""]
    lines += ["## Pareto front", "",
              f"| trial | stages | mode | validation {what} | test {what} | test vs baseline "
              f"({'R^2 points, ' if m == 'r2' else ''}95% interval) | gzip bytes | gzip ratio | latency ms | MACs | within budget "
              "(validation) | test within budget | recipe |", "|" + "---|" * 13]
    for r in summary["front"]:
        lines.append(
            f"| {r['number']} | {', '.join(r['stages']) or '-'} | {r['params']['mode']} | "
            f"{r[m]:.4f} | {r[f'test_{m}']:.4f} | {_interval(r, brackets=False)} | "
            f"{r['gzip_bytes']:,} | {r['gzip_ratio']:.3f} | "
            f"{_ms(r['latency_ms'])} | {r['macs'] if r['macs'] is not None else '-'} | "
            f"{'yes' if r['feasible'] else 'no'} | "
            f"{'yes' if r['test_within_budget'] else '**no: beyond the budget on test**'} | "
            f"`front/trial_{r['number']}.py` |")
    lines += ["", f"![{what} against size and latency](pareto.png)", "",
              "Run a front point: `python scripts/compress.py --config=front/trial_N.py "
              "--workdir=workdir/trial_N`.", ""]
    return "\n".join(lines)


def _ms(value) -> str:
    """A latency in ms, or '-' where none was measured (``validate.latency_runs`` 0)."""
    return "-" if value is None else f"{value:.3f}"


def _interval(record: dict, brackets: bool = True) -> str:
    d = record.get("test_vs_baseline") or {}
    if not d:
        return ""
    text = (f"{d['difference_points']:+.2f} [{d['low_points']:+.2f}, {d['high_points']:+.2f}]")
    return f", paired 95% interval {text}" if brackets else text


def write_search(summary: dict, workdir: str) -> None:
    """A search's search.json, pareto.png and report.md in ``workdir``."""
    with open(os.path.join(workdir, "trials.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    pareto_plot(summary, records, os.path.join(workdir, "pareto.png"))
    _io.write_text(os.path.join(workdir, "search.json"),
                   json.dumps(summary, indent=2, sort_keys=True, default=str))
    _io.write_text(os.path.join(workdir, "report.md"), search_markdown(summary))
