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
    ("format", "format", "{}"),
    ("bytes", "bytes", "{:,}"),
    ("gzip_bytes", "gzip bytes", "{:,}"),
    ("ratio", "ratio to float32", "{:.3f}"),
    ("gzip_ratio", "gzip ratio", "{:.3f}"),
    ("validation.accuracy", "validation accuracy", "{:.4f}"),
    ("accuracy", "test accuracy", "{:.4f}"),
    ("vs_baseline", "test vs baseline, points (95% interval)", None),
    ("agreement", "test agreement", "{:.4f}"),
    ("latency_ms", "latency ms", "{:.3f}"),
)


def _cell(row: dict, key: str, fmt) -> str:
    value = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return "-"
    if key == "vs_baseline":
        return (f"{value['difference_points']:+.2f} [{value['low_points']:+.2f}, "
                f"{value['high_points']:+.2f}]")
    return fmt.format(value)


def table(rows) -> str:
    """A Markdown table of format rows (missing figures shown as '-')."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in COLUMNS) + " |")
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
    acc = report.get("keras_accuracy", {})
    if acc:
        parts.append("Keras validation accuracy: "
                     + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
        parts.append("")
    for name, stats in report.get("stages", {}).items():
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in stats.items() if not isinstance(v, (dict, list)))
        parts.append(f"- stage `{name}`: {figures}")
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
        parts += ["", f"![test accuracy against gzip bytes]({report['plot']})"]
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
        if gpu.get("delegate"):
            d = gpu["delegate"]
            facts.append("GPU delegate: " + (d.get("reason", "") if not d["available"] else
                                             f"agreement {d.get('agreement', float('nan')):.4f}"))
        if facts:
            lines.append(f"- `{row['format']}`: " + "; ".join(facts))
    return "\n".join(lines)


PLOT = Workdir.PLOT


def plot_size_accuracy(rows, path: str) -> str:
    """A PNG of each format's test accuracy against its gzip bytes (log scale), written
    atomically; returns the path. Rows without both figures are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from matplotlib import ticker

    points = [(r["gzip_bytes"], r["accuracy"], r["format"]) for r in rows
              if r.get("gzip_bytes") and r.get("accuracy") is not None]
    staged = any(name.startswith("baseline") for _, _, name in points)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for size, accuracy, name in points:
        baseline = name.startswith("baseline") or (name == "float32" and not staged)
        ax.scatter([size], [accuracy], s=40, marker="s" if baseline else "o",
                   color="#777777" if baseline else "#1f77b4", zorder=3)
        ax.annotate(name, (size, accuracy), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel("gzip bytes of the .tflite (log scale)")
    ax.set_ylabel("test accuracy (LiteRT)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("size against accuracy (grey: baseline)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    return _io.write_bytes(path, buf.getvalue())


def write(result: results.RunResult) -> results.RunResult:
    """Writes report.json (``result.to_dict()``), report.md and, with two or more measured
    formats, the size against accuracy plot (``size_accuracy.png``, embedded in report.md) into
    the result's workdir, each atomically; returns the result with its ``plot`` named."""
    wd = Workdir(result.workdir)
    measured = [r.to_dict() for r in result.formats if r.test_accuracy is not None]
    if len(measured) >= 2:
        plot_size_accuracy(measured, wd.plot)
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "gzip_bytes", "gzip bytes of the .tflite"),
                           (axes[1], "latency_ms", "XNNPACK latency (ms, 1 sample)")):
        pts = [(r[key], r["accuracy"], r["number"] in front) for r in done
               if r.get(key) is not None]
        if pts:
            xs, ys, on = map(np.array, zip(*pts))
            ax.scatter(xs[~on], ys[~on], c="0.6", s=18, label="trial")
            ax.scatter(xs[on], ys[on], c="C0", s=30, label="Pareto front (accuracy vs "
                       f"{summary['objective']})")
        if base.get(key) is not None:  # latency: measured only with latency runs
            ax.scatter([base[key]], [base["accuracy"]], marker="*", s=160, c="C3",
                       label="baseline float32")
        ax.axhline(summary["accuracy_floor"], ls="--", c="C3", lw=1,
                   label=f"budget (-{summary['max_drop_points']:g} points)")
        ax.set_xscale("log" if key == "gzip_bytes" else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy (LiteRT)")
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
    lines = ["# tfcompress search", "",
             "Every choice (the budget, the front, the best) is made on the validation split; "
             "test figures are held out: measured once per exported model, never chosen on.", "",
             f"Baseline float32: validation accuracy {base['accuracy']:.4f}, test accuracy "
             f"{base['test_accuracy']:.4f}, {base['gzip_bytes']:,} gzip bytes, "
             f"{_ms(base['latency_ms'])} ms. Budget: at most {summary['max_drop_points']:g} points "
             f"lower on validation (the one-sided {summary.get('budget_confidence', 0.5):.0%} upper "
             f"bound of the paired drop); objective: "
             f"{summary['objective']}. Trials: "
             + ", ".join(f"{k.lower()} {v}" for k, v in summary["states"].items())
             + f" ({summary['repeats']} repeats of a measured candidate).", ""]
    if best:
        held = best["held_out"]
        lines += [f"Best within the budget: trial {best['number']} ({', '.join(best['stages']) or 'PTQ only'}"
                  f" -> {best['params']['mode']}): validation accuracy {best['accuracy']:.4f}; "
                  f"held-out test accuracy {held['accuracy']:.4f} ({-best['test_drop_points']:+.2f}"
                  f" points against the baseline{_interval(best)}), {held['gzip_bytes']:,} gzip "
                  f"bytes ({held['gzip_ratio']:.3f}x the float32 baseline), latency "
                  f"{_ms(held['latency_ms'])} ms: `best/model.tflite`, recipe `best/recipe.py`.", ""]
    else:
        lines += ["No candidate met the budget.", ""]
    lines += ["## Pareto front", "",
              "| trial | stages | mode | validation accuracy | test accuracy | test vs baseline "
              "(95% interval) | gzip bytes | gzip ratio | latency ms | MACs | within budget "
              "(validation) | test within budget | recipe |", "|" + "---|" * 13]
    for r in summary["front"]:
        lines.append(
            f"| {r['number']} | {', '.join(r['stages']) or '-'} | {r['params']['mode']} | "
            f"{r['accuracy']:.4f} | {r['test_accuracy']:.4f} | {_interval(r, brackets=False)} | "
            f"{r['gzip_bytes']:,} | {r['gzip_ratio']:.3f} | "
            f"{_ms(r['latency_ms'])} | {r['macs'] if r['macs'] is not None else '-'} | "
            f"{'yes' if r['feasible'] else 'no'} | "
            f"{'yes' if r['test_within_budget'] else '**no: beyond the budget on test**'} | "
            f"`front/trial_{r['number']}.py` |")
    lines += ["", "![accuracy against size and latency](pareto.png)", "",
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
