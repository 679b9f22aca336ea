"""The report writer and the typed results it writes: report.json is the result's to_dict(),
report.md its tables, the plot a real PNG; the Workdir's paths are those the runner writes."""

import json
import os
import struct

import numpy as np
import pytest

from tfcompress.pipeline import report, results, stats
from tfcompress.pipeline.workdir import Workdir, fingerprint


def _row(name: str, accuracy, gzip_bytes: int, path=None) -> results.FormatRow:
    a = np.arange(100) < 90
    b = np.arange(100) < (accuracy or 0) * 100
    test = {"bytes": gzip_bytes + 100, "gzip_bytes": gzip_bytes, "accuracy": accuracy,
            "agreement": 0.97, "latency_ms": 0.25, "num_samples": 100,
            "xnnpack": {"delegated": 5, "nodes": 7, "fallback_ops": {"GATHER": 2}}}
    return results.FormatRow(
        format=name, test=test, validation={"accuracy": accuracy, "agreement": 0.98},
        vs_baseline=stats.paired_difference(a, b), validation_vs_baseline=stats.paired_difference(a, a),
        conversion={"inputs": [{"dtype": "int8", "scale": 0.5, "zero_point": -3}]},
        ratio=gzip_bytes / 4000, gzip_ratio=gzip_bytes / 3600, path=path)


def _result(workdir: str, rows) -> results.RunResult:
    stage = results.StageResult("prune", 0, os.path.join(workdir, "stages", "0-prune.keras"),
                                {"target_sparsity": 0.5, "sparsity": {"conv": 0.5, "dense": 0.49}},
                                {"accuracy": 0.9})
    return results.RunResult(
        config={"stages": ["prune"]}, splits={"train": 10, "validation": 5, "test": 100},
        keras_metrics={"baseline": 0.9, "final": 0.88}, stages=(stage,), formats=tuple(rows),
        profile={"baseline": {"params": 1000, "macs": 5000}, "final": {"params": 500, "macs": 2500}},
        workdir=workdir)


def _png_size(path: str) -> tuple:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_write_puts_to_dict_in_report_json_and_names_the_plot(tmp_path):
    wd = Workdir(str(tmp_path))
    rows = [_row("float32", 0.9, 3600, wd.flatbuffer("float32")), _row("int8", 0.87, 1200)]
    written = report.write(_result(str(tmp_path), rows))
    assert written.plot == "size_accuracy.png"
    with open(wd.report_json) as f:
        assert json.load(f) == json.loads(json.dumps(written.to_dict(), default=str))
    assert _png_size(wd.plot) == (792, 506)  # 7.2 x 4.6 inches at 110 dpi (room for labels)
    text = open(wd.report_md).read()
    assert "![test accuracy against gzip bytes](size_accuracy.png)" in text
    assert text.count("| float32 |") == 1 and text.count("| int8 |") == 1
    assert "parameters 1,000 -> 500 (0.500x)" in text
    assert "| conv | 0.5000 |" in text  # the stage's per-layer figures as a table


def test_one_measured_format_gets_no_plot(tmp_path):
    written = report.write(_result(str(tmp_path), [_row("int8", 0.87, 1200)]))
    assert written.plot is None and "plot" not in written.to_dict()
    assert not os.path.exists(Workdir(str(tmp_path)).plot)


def test_table_cells_show_figures_and_dashes_for_missing_ones():
    row = _row("int8", 0.87, 1200).to_dict()
    row["validation"].pop("accuracy")
    lines = report.table([row]).splitlines()
    assert len(lines) == 3 and lines[0].count("|") == len(report.COLUMNS) + 1
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    values = dict(zip([title for _, title, _ in report.COLUMNS], cells))
    assert values["validation accuracy"] == "-"
    assert values["gzip bytes"] == "1,200" and values["test accuracy"] == "0.8700"
    assert values["test vs baseline, points (95% interval)"].startswith("-3.00 [")


def test_format_notes_name_io_types_and_xnnpack_fallbacks():
    notes = report.format_notes([_row("int8", 0.87, 1200).to_dict()])
    assert "input int8 (scale 0.5, zero point -3)" in notes
    assert "XNNPACK 5/7 nodes (fell back: GATHER x2)" in notes


def test_format_row_reads_metrics_by_split_and_flattens_like_the_report():
    row = _row("int8", 0.87, 1200, "/w/int8.tflite")
    assert (row.validation_accuracy, row.test_accuracy) == (0.87, 0.87)
    assert row.metric("agreement", "validation") == 0.98 and row.metric("agreement", "test") == 0.97
    assert row.metric("r2") is None  # a figure the task does not have
    with pytest.raises(ValueError, match="split 'train'; accepted: test, validation"):
        row.metric("accuracy", "train")
    d = row.to_dict()
    assert d["format"] == "int8" and d["gzip_bytes"] == 1200 and d["ratio"] == 0.3
    assert set(d["validation"]) == {"accuracy", "agreement", "vs_baseline"}
    assert d["vs_baseline"]["only_a"] == 3  # 90 right against 87 on the same images


def test_run_result_looks_up_rows_and_stages():
    result = _result("/w", [_row("float32", 0.9, 3600), _row("int8", 0.87, 1200)])
    assert result.row("int8").gzip_bytes == 1200 and result.final_macs == 2500
    assert result.stage("prune").figures["target_sparsity"] == 0.5
    with pytest.raises(KeyError, match="format 'int4'; rows: float32, int8"):
        result.row("int4")
    d = result.to_dict()
    assert set(d) == {"config", "splits", "keras_accuracy", "stages", "formats", "profile"}
    assert d["stages"]["prune"]["sparsity"]["dense"] == 0.49


def test_workdir_owns_the_runner_paths_and_the_fingerprint():
    wd = Workdir("/w")
    assert wd.final_model([]) == "/w/baseline.keras"
    assert wd.final_model([("prune", ".keras"), ("qat", ".h5")]) == "/w/stages/1-qat.h5"
    assert Workdir.stamp(wd.stage(0, "prune")) == "/w/stages/0-prune.keras.fingerprint"
    assert Workdir.stats(wd.stage(0, "prune")) == "/w/stages/0-prune.keras.stats.json"
    assert (wd.flatbuffer("int8"), wd.quantizer_recipe("dynamic_wi4")) == (
        "/w/int8.tflite", "/w/dynamic_wi4.recipe.json")
    assert fingerprint({"a": 1}, "x") == fingerprint({"a": 1}, "x")
    assert fingerprint({"a": 1}, "x") != fingerprint("x", {"a": 1})
    assert len(fingerprint(0)) == 16


def test_search_markdown_says_when_no_candidate_met_the_budget():
    summary = {"baseline": {"accuracy": 0.9, "test_accuracy": 0.88, "gzip_bytes": 3600,
                            "latency_ms": None},  # no latency runs
               "best": None, "max_drop_points": 1.0, "objective": "size",
               "states": {"COMPLETE": 2, "PRUNED": 1}, "repeats": 0, "front": []}
    text = report.search_markdown(summary)
    assert "No candidate met the budget." in text
    assert "Trials: complete 2, pruned 1 (0 repeats" in text
    assert "3,600 gzip bytes, - ms." in text
