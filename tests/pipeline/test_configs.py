"""Every bundled recipe (tfcompress/configs) loads by name and runs in-process as its smoke
variant (flax's train_test pattern); variants and names are checked."""

import dataclasses
import gzip
import inspect
import json
import os

import pytest

import tfcompress
from tfcompress import configs, errors
from tfcompress.pipeline import recipe
from tfcompress.pipeline import search as study
from tfcompress.configs import common

NAMES = configs.names()


def test_configs_exist_and_share_common():
    assert "default" in NAMES and "digits_pcqat" in NAMES and "common" not in NAMES
    for name in NAMES:
        source = inspect.getsource(configs.module(name))
        assert "common.check_variant(variant)" in source and "common.smoke(" in source, name


@pytest.mark.parametrize("name", NAMES)
def test_config_docstring_and_variants(name):
    module = configs.module(name)
    kind = getattr(module, "KIND", "recipe")
    command = "search" if kind == "search" else "compress"
    assert f"tfcompress {command} --config={name}" in module.__doc__, "docstring lacks its command"
    for variant in common.VARIANTS:  # every variant is a valid recipe (or search config)
        config = configs.load(f"{name}:{variant}" if variant else name)
        (study if kind == "search" else recipe).check_config(config)
    smoke = configs.load(f"{name}:smoke")
    section = smoke.recipe if kind == "search" else smoke
    assert section.data.limit and section.data.limit <= 256 and section.train.epochs == 1
    with pytest.raises(errors.ConfigError, match=r"variant 'smoek'; accepted: \(none\), smoke"):
        configs.load(f"{name}:smoek")


def test_names_and_paths_resolve(tmp_path):
    assert configs.path("digits_pcqat:smoke") == os.path.join(configs.HERE, "digits_pcqat.py:smoke")
    own = tmp_path / "mine.py"
    own.write_text("from tfcompress.pipeline.recipe import default_config\n"
                   "def get_config(variant=''):\n    return default_config()\n")
    assert configs.path(f"{own}:x") == f"{own}:x"
    assert configs.load(str(own)).train.epochs == recipe.default_config().train.epochs
    with pytest.raises(errors.ConfigError, match="'digits_pcqta' is neither.*digits_pcqat"):
        configs.path("digits_pcqta")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_config_smoke_runs(name, tmp_path):
    """Each recipe runs end to end; latency and the CompiledModel check are measured on the
    default job only (its report keeps its keys, below; the command runs it in test_console),
    the others skip them (their validation runs the same code)."""
    module = configs.module(name)
    config = module.get_config("smoke")
    if name != "default":
        section = config.recipe if getattr(module, "KIND", "recipe") == "search" else config
        section.validate.latency_runs, section.validate.compiled_model = 0, ()
    if getattr(module, "KIND", "recipe") == "search":  # a search config (tfcompress.search)
        summary = tfcompress.search(config, str(tmp_path))
        assert summary["front"] and os.path.exists(tmp_path / "report.md")
        for r in summary["front"]:  # the sizes are those of the trial's own file
            content = open(r["tflite"], "rb").read()
            assert r["gzip_bytes"] == len(gzip.compress(content, 9, mtime=0))
        if summary["best"]:
            assert summary["best"]["accuracy"] >= summary["accuracy_floor"]
        return
    report = tfcompress.run_recipe(config, str(tmp_path))
    assert report["formats"], "no format was converted"
    n_test = report["splits"]["test"]
    for row in report["formats"]:
        if row["format"] in report["config"]["convert"]["modes"]:
            content = (tmp_path / f"{row['format']}.tflite").read_bytes()
            assert row["bytes"] == len(content)
            assert row["gzip_bytes"] == len(gzip.compress(content, 9, mtime=0))
        assert row["accuracy"] * n_test == pytest.approx(round(row["accuracy"] * n_test))
        d = row["vs_baseline"]  # paired on the same test images as the baseline
        assert d["n"] == n_test and d["low_points"] <= d["difference_points"] <= d["high_points"]
        assert d["difference_points"] == pytest.approx(100 * (d["only_b"] - d["only_a"]) / n_test)
    assert os.path.exists(tmp_path / "report.md")
    if len(report["formats"]) >= 2:  # the size against accuracy plot, embedded in report.md
        assert open(tmp_path / "size_accuracy.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert "](size_accuracy.png)" in open(tmp_path / "report.md").read()
    if name == "default":
        _keeps_the_default_jobs_keys(report, tmp_path)


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


# The key paths of report.json of the default job, written by the runner BEFORE the typed
# results (python -m tfcompress compress --workdir=... at commit 5340089), less the recipe echo.
REPORT_KEYS = os.path.join(os.path.dirname(__file__), "..", "data", "default_job_report_keys.json")


def _keeps_the_default_jobs_keys(report, tmp_path):
    """The typed results write report.json with the keys the dict-built report had: none is
    lost, and the runner adds none. A row may gain what the techniques it wraps report (the
    ``ValidationReport`` fields and ``conversion_info``, which grow with tasks and facts such
    as the layers a mode left alone); the recipe echo (``config``) is checked apart."""
    from tfcompress.export.validation import ValidationReport

    with open(os.path.join(str(tmp_path), "report.json")) as f:
        written = json.load(f)
    assert _key_paths(written) == _key_paths(json.loads(json.dumps(report, default=str)))
    with open(REPORT_KEYS) as f:
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
