"""Where a recipe run keeps its files: one object owns every path of a workdir.

    <root>/baseline.keras                 the trained (or user's) baseline
    <root>/stages/<i>-<name><suffix>       each stage's model (.keras; tfmot QAT: .h5)
    <root>/stages/<i>-<name><suffix>.stats.json   the stage's measured figures (kept on resume)
    <root>/stages/adaround/                learned-rounding checkpoints (per layer)
    <path>.fingerprint                     the config fingerprint a saved model was made from
    <root>/<mode>.tflite                   one flatbuffer per conversion mode
    <root>/<mode>.recipe.json              the LiteRT Quantizer's recipe of that flatbuffer
    <root>/int8.quant_error.json           Model Explorer node data of int8.tflite
    <root>/report.json, report.md, size_accuracy.png
    <root>/recipe.py                       a search trial's recipe as a configs-style file

The runner, the command, the search and the report writer ask this object, so the scheme is
written once. ``fingerprint`` is the hash that decides whether a saved model is reused.
"""

import dataclasses
import hashlib
import json
import os
from typing import Sequence

from ml_collections import ConfigDict


def fingerprint(*sections) -> str:
    """A short hash of config sections (ConfigDicts or JSON-ready values), order-sensitive."""
    text = json.dumps([s.to_dict() if isinstance(s, ConfigDict) else s for s in sections],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one recipe run's folder (nothing is created until written)."""

    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def baseline(self) -> str:
        return self.path("baseline.keras")

    @property
    def stages_dir(self) -> str:
        return self.path("stages")

    def stage(self, index: int, name: str, suffix: str = ".keras") -> str:
        """The model saved after stage ``index`` (0-based) of the recipe, named ``name``."""
        return self.path("stages", f"{index}-{name}{suffix}")

    @staticmethod
    def stats(model_path: str) -> str:
        """The measured figures saved beside a stage's model."""
        return model_path + ".stats.json"

    @staticmethod
    def stamp(model_path: str) -> str:
        """The fingerprint file beside a saved model."""
        return model_path + ".fingerprint"

    def checkpoints(self, name: str) -> str:
        """A stage's own checkpoint folder (e.g. ``adaround``)."""
        return self.path("stages", name)

    def final_model(self, stages: Sequence[tuple[str, str]]) -> str:
        """The model the flatbuffers were converted from: the last stage's, else the baseline.

        Args:
            stages: the recipe's stages in order, each as ``(name, file suffix)``.
        """
        if not stages:
            return self.baseline
        name, suffix = stages[-1]
        return self.stage(len(stages) - 1, name, suffix)

    def flatbuffer(self, mode: str) -> str:
        return self.path(f"{mode}.tflite")

    def quantizer_recipe(self, mode: str) -> str:
        return self.path(f"{mode}.recipe.json")

    def explorer_data(self, mode: str = "int8") -> str:
        return self.path(f"{mode}.quant_error.json")

    @property
    def report_json(self) -> str:
        return self.path("report.json")

    @property
    def report_md(self) -> str:
        return self.path("report.md")

    PLOT = "size_accuracy.png"

    @property
    def plot(self) -> str:
        return self.path(self.PLOT)

    @property
    def recipe_file(self) -> str:
        return self.path("recipe.py")
