"""Checks of a recipe's report, shared by the config smoke runs and the default job's command."""

import dataclasses
import gzip
import json
import os

import pytest

# The key paths of report.json of the default job, written by the runner BEFORE the typed
# results (python -m tfcompress compress --workdir=... at commit 5340089), less the recipe echo.
DEFAULT_JOB_KEYS = os.path.join(os.path.dirname(__file__), "data", "default_job_report_keys.json")


def check(report: dict, workdir) -> None:
    """Every converted file is the size its row says; accuracies are counts of test images;
    each paired interval holds its difference; report.md (and, with two rows or more, the size
    against accuracy plot it embeds) is written."""
    assert report["formats"], "no format was converted"
    n_test = report["splits"]["test"]
    for row in report["formats"]:
        if row["format"] in report["config"]["convert"]["modes"]:
            with open(os.path.join(workdir, f"{row['format']}.tflite"), "rb") as f:
                content = f.read()
            assert row["bytes"] == len(content)
            assert row["gzip_bytes"] == len(gzip.compress(content, 9, mtime=0))
        assert row["accuracy"] * n_test == pytest.approx(round(row["accuracy"] * n_test))
        d = row["vs_baseline"]  # paired on the same test images as the baseline
        assert d["n"] == n_test and d["low_points"] <= d["difference_points"] <= d["high_points"]
        assert d["difference_points"] == pytest.approx(100 * (d["only_b"] - d["only_a"]) / n_test)
    with open(os.path.join(workdir, "report.md")) as f:
        markdown = f.read()
    if len(report["formats"]) >= 2:
        with open(os.path.join(workdir, "size_accuracy.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert "](size_accuracy.png)" in markdown


def _key_paths(value, prefix: str = "") -> set:
    """Every key path of a JSON value ('formats[].validation.accuracy'), list items merged."""
    if isinstance(value, dict):
        out = {prefix} if prefix else set()
        for key, item in value.items():
            out |= _key_paths(item, f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(value, list):
        return {prefix}.union(*(_key_paths(item, prefix + "[]") for item in value))
    return {prefix}


def check_default_job_keys(written: dict) -> None:
    """The typed results write report.json with the keys the dict-built report had: none is
    lost, and the runner adds none. A row may gain what the techniques it wraps report (the
    ``ValidationReport`` fields and ``conversion_info``, which grow with tasks and facts such
    as the layers a mode left alone); the recipe echo (``config``) is checked apart."""
    from tfcompress.export.validation import ValidationReport

    with open(DEFAULT_JOB_KEYS) as f:
        before = set(json.load(f))
    now = {k for k in _key_paths(written) if not k.startswith("config.")}
    validator = {f.name for f in dataclasses.fields(ValidationReport)}
    assert before - now == set(), sorted(before - now)
    added = {k for k in now - before
             if not (k.startswith("formats[].") and k.split(".")[1] in validator | {"conversion"})}
    added -= {"formats[].label"}  # issue 29: each row says what made it ("pruned+clustered int8")
    # issue 25: a stage names the layers it left alone (holding > 10% of the weights)
    added -= {"stages.prune.left_alone", "stages.cluster.left_alone"}
    assert added == set(), sorted(added)
    assert set(written["config"]) >= {"data", "model", "train", "convert", "validate", "stages",
                                      "prune", "cluster", "seed"}
