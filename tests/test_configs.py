"""Every recipe in configs/ runs in-process as its smoke variant (flax's train_test pattern)."""

import glob
import importlib.util
import os

import pytest

import tfcompress

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_exist():
    assert CONFIGS, "configs/ holds no recipe"


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_smoke_runs(path, tmp_path):
    module = _load(path)
    if getattr(module, "KIND", "recipe") == "search":  # a search config (tfcompress.search)
        assert module.__doc__ and "scripts/search.py" in module.__doc__, "docstring lacks its command"
        summary = tfcompress.search(module.get_config("smoke"), str(tmp_path))
        assert summary["front"] and os.path.exists(tmp_path / "report.md")
        assert all(0.0 <= r["accuracy"] <= 1.0 and r["gzip_bytes"] > 0 for r in summary["front"])
        return
    assert module.__doc__ and "scripts/compress.py" in module.__doc__, "docstring lacks its command"
    report = tfcompress.run_recipe(module.get_config("smoke"), str(tmp_path))
    assert report["formats"], "no format was converted"
    for row in report["formats"]:
        assert row["bytes"] > 0 and 0.0 <= row["accuracy"] <= 1.0
        assert os.path.exists(tmp_path / "report.md")
