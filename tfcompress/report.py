"""Report output: report.json, report.md (a Markdown table per recipe run) and its plot."""

import io
import json
import os

from tfcompress import _io

COLUMNS = (
    ("format", "format", "{}"),
    ("bytes", "bytes", "{:,}"),
    ("gzip_bytes", "gzip bytes", "{:,}"),
    ("ratio", "ratio to float32", "{:.3f}"),
    ("gzip_ratio", "gzip ratio", "{:.3f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("agreement", "agreement", "{:.4f}"),
    ("latency_ms", "latency ms", "{:.3f}"),
)


def table(rows) -> str:
    """A Markdown table of format rows (missing figures shown as '-')."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-"
                 for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def models_table(rows) -> str:
    """A Markdown table of a stage's models side by side (one dict per model, same keys)."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else (  # noqa: E731
        f"{v:,}" if isinstance(v, int) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "-")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    parts = ["# tfcompress report", ""]
    acc = report.get("keras_accuracy", {})
    if acc:
        parts.append("Keras test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
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


PLOT = "size_accuracy.png"


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


def write(report: dict, workdir: str) -> None:
    """Writes report.json, report.md and, with two or more measured formats, the size against
    accuracy plot (``size_accuracy.png``, embedded in report.md) into ``workdir``, each
    atomically."""
    measured = [r for r in report.get("formats", []) if r.get("accuracy") is not None]
    if len(measured) >= 2:
        plot_size_accuracy(measured, os.path.join(workdir, PLOT))
        report["plot"] = PLOT
    _io.write_text(os.path.join(workdir, "report.json"),
                   json.dumps(report, indent=2, sort_keys=True, default=str))
    _io.write_text(os.path.join(workdir, "report.md"), markdown(report))
