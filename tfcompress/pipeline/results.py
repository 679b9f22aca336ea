"""Typed results between the recipe runner, the search, the command and the report writer.

A run's result is a ``RunResult``: its stages (``StageResult``), one ``FormatRow`` per exported
or measured flatbuffer, and the figures around them. ``to_dict()`` gives the JSON-ready report
(``report.json`` is exactly that dict, written by ``report.write``); ``run_recipe`` returns it.
Figures are mappings of name -> value, so a task adds its own metrics (e.g. MSE and R^2 for
regression) without a new field here; ``metric`` reads one by name and split.
"""

import dataclasses
from typing import Any, Mapping, Optional

# The splits a figure may come from: ``test`` is measured once per exported model, for the
# report; every decision (the search's constraint and choice) reads ``validation``.
SPLITS = ("test", "validation")


def _plain(value):
    """A deep copy of a figure with every mapping a dict (leaves kept as they are)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One recipe stage: where its model is saved and what it measured (on validation)."""

    name: str
    index: int
    path: str  # the stage's saved model in the workdir
    figures: Mapping[str, Any]  # the stage's measured figures (report["stages"][name])
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)  # Keras, validation

    def to_dict(self) -> dict:
        return dict(self.figures)


@dataclasses.dataclass(frozen=True)
class FormatRow:
    """One flatbuffer measured by the runner: its test figures (the full validation report:
    metrics, sizes, latency, delegates), its validation metrics, the paired difference to the
    float32 baseline on each split, its conversion facts and its size ratios."""

    format: str  # a conversion mode, or "baseline <mode>"
    test: Mapping[str, Any]  # ``validation.validate(...).to_dict()`` on the test split
    validation: Mapping[str, Any]  # metrics on the validation split (accuracy, agreement, ...)
    vs_baseline: Mapping[str, Any]  # paired test difference to the float32 baseline
    validation_vs_baseline: Mapping[str, Any]  # the same on validation
    conversion: Mapping[str, Any]  # ``conversion.conversion_info`` of the flatbuffer
    ratio: float  # bytes / the baseline float32's bytes
    gzip_ratio: float
    path: Optional[str] = None  # the .tflite in the workdir (None: a baseline row, not written)
    label: str = ""  # what made it, e.g. "pruned+clustered int8" (empty: ``format``)

    def metric(self, name: str, split: str = "validation") -> Optional[float]:
        """A figure by name on ``split`` ("validation" decides, "test" reports); None if the
        row does not hold it (e.g. accuracy for a task without one)."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}; accepted: {', '.join(SPLITS)}")
        return (self.validation if split == "validation" else self.test).get(name)

    @property
    def validation_accuracy(self) -> Optional[float]:
        return self.metric("accuracy", "validation")

    @property
    def test_accuracy(self) -> Optional[float]:
        return self.metric("accuracy", "test")

    @property
    def bytes(self) -> int:
        return int(self.test["bytes"])

    @property
    def gzip_bytes(self) -> int:
        return int(self.test["gzip_bytes"])

    @property
    def latency_ms(self) -> Optional[float]:
        return self.test.get("latency_ms")

    def to_dict(self) -> dict:
        """The report's format row: test figures at the top, ``validation`` nested."""
        return _plain({"format": self.format, "label": self.label or self.format, **self.test,
                       "validation": {**self.validation,
                                      "vs_baseline": self.validation_vs_baseline},
                       "conversion": self.conversion, "vs_baseline": self.vs_baseline,
                       "ratio": self.ratio, "gzip_ratio": self.gzip_ratio})


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A recipe run: config, splits, Keras figures, stages, format rows and profiles."""

    config: Mapping[str, Any]  # the full recipe (``check_config``'s result as a dict)
    splits: Mapping[str, Any]  # sizes of train/validation/test and which figure is from which
    keras_metrics: Mapping[str, float]  # Keras validation accuracy: baseline and final
    stages: tuple[StageResult, ...]
    formats: tuple[FormatRow, ...]
    profile: Mapping[str, Optional[Mapping[str, int]]]  # baseline/final params and MACs
    workdir: str = ""
    android: Optional[Mapping[str, Any]] = None
    plot: Optional[str] = None  # the size/accuracy plot's file name, once written
    task: str = "classification"  # or "regression": the rows hold that task's metrics

    def row(self, fmt: str) -> FormatRow:
        """The row of a format (a mode, or "baseline <mode>")."""
        for row in self.formats:
            if row.format == fmt:
                return row
        raise KeyError(f"format {fmt!r}; rows: {', '.join(r.format for r in self.formats)}")

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)

    @property
    def final_macs(self) -> Optional[int]:
        return (self.profile.get("final") or {}).get("macs")

    def to_dict(self) -> dict:
        """The report (``report.json``): the same keys the runner has always written."""
        out = {"config": _plain(self.config), "splits": _plain(self.splits),
               # Keras validation score: keras_accuracy, or keras_r2 for regression
               f"keras_{'r2' if self.task == 'regression' else 'accuracy'}":
                   dict(self.keras_metrics),
               "stages": {s.name: _plain(s.to_dict()) for s in self.stages},
               "formats": [r.to_dict() for r in self.formats],
               "profile": _plain(self.profile)}
        if self.task != "classification":  # classification's report keeps its keys
            out["task"] = self.task
        if self.android is not None:
            out["android"] = _plain(self.android)
        if self.plot is not None:
            out["plot"] = self.plot
        return out
