"""Every bundled recipe (tfcompress/configs) loads by name and runs in-process as its smoke
variant (flax's train_test pattern); variants and names are checked."""

import gzip
import inspect
import os

import pytest

import tfcompress
from tfcompress import configs, errors
from tfcompress.pipeline import recipe
from tfcompress.pipeline import search as study
from tfcompress.configs import common

import recipe_reports

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
@pytest.mark.parametrize("name", [n for n in NAMES if n != "default"])
def test_config_smoke_runs(name, tmp_path):
    """Each recipe runs end to end, without latency and the CompiledModel check (their
    validation runs the same code). The default job runs as the command, with both, in
    tests/test_console.py, where its report gets the same checks."""
    module = configs.module(name)
    config = module.get_config("smoke")
    is_search = getattr(module, "KIND", "recipe") == "search"  # a tfcompress.search config
    section = config.recipe if is_search else config
    section.validate.latency_runs, section.validate.compiled_model = 0, ()
    if is_search:
        summary = tfcompress.search(config, str(tmp_path))
        assert summary["front"] and os.path.exists(tmp_path / "report.md")
        for r in summary["front"]:  # the sizes are those of the trial's own file
            content = open(r["tflite"], "rb").read()
            assert r["gzip_bytes"] == len(gzip.compress(content, 9, mtime=0))
        if summary["best"]:
            assert summary["best"]["accuracy"] >= summary["accuracy_floor"]
        return
    recipe_reports.check(tfcompress.run_recipe(config, str(tmp_path)), tmp_path)
