"""Report output: report.json and report.md (a Markdown table per recipe run)."""

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
    return "\n".join(parts) + "\n"


def write(report: dict, workdir: str) -> None:
    """Writes report.json and report.md into ``workdir`` (each atomically)."""
    _io.write_text(os.path.join(workdir, "report.json"),
                   json.dumps(report, indent=2, sort_keys=True, default=str))
    _io.write_text(os.path.join(workdir, "report.md"), markdown(report))
