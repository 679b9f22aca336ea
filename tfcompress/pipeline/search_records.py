"""A study's trial records: ``trials.jsonl``, their scores and their Pareto front.

A record is one trial as a JSON-ready dict (parameters, state, the validation score in the
task's metric, the objective, whether it met the budget, and the figures the trial measured).
"""

import json
from typing import Optional

from tfcompress import _io


def label(metric: str) -> str:
    """A metric's name in words: ``r2`` -> ``R^2``."""
    return "R^2" if metric == "r2" else metric


def baseline_score(baseline: dict, split: str = ""):
    """The baseline's validation (``split`` "") or test ("test_") score in its task's metric."""
    metric = baseline.get("metric", "accuracy")  # the metric's own key first, then "score"
    return baseline.get(f"{split}{metric}", baseline.get(f"{split}score"))


def score(record: dict):
    """A record's validation score (its task's metric; records before tasks: accuracy)."""
    return record["score"] if "score" in record else record["accuracy"]


def _record(trial, baseline_floor: Optional[float] = None) -> dict:
    attrs = dict(trial.user_attrs)
    metric = attrs.get("metric", "accuracy")
    rec = {"number": trial.number, "state": trial.state.name, "params": trial.params,
           "score": trial.values[0] if trial.values else None,
           metric: trial.values[0] if trial.values else None,
           "objective": trial.values[1] if trial.values else None,
           "feasible": trial.values is not None and attrs.get("constraint", 1.0) <= 0,
           "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
           "seconds": (trial.duration.total_seconds() if trial.duration else None)}
    rec.update({k: v for k, v in attrs.items() if k not in rec})
    if "failed_trial" in trial.system_attrs:  # queued again after its process died
        rec["retry_of"] = trial.system_attrs["failed_trial"]
    return rec


def export_trials(study, path: str) -> list:
    """Writes every trial of ``study`` as one JSON line to ``path`` (atomically); the records."""
    records = [_record(t) for t in study.get_trials(deepcopy=False)]
    _io.write_text(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n"
                                 for r in records))
    return records


def pareto_front(records: list) -> list:
    """The completed records no other dominates (higher score: accuracy or R^2, lower
    objective), by objective.

    Equal points keep the lowest trial number.
    """
    done = [r for r in records if r["state"] == "COMPLETE"]
    front = []
    for r in done:
        a, o = score(r), r["objective"]
        dominated = any(
            (score(s) >= a and s["objective"] <= o
             and (score(s) > a or s["objective"] < o or s["number"] < r["number"]))
            for s in done if s is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r["objective"], -score(r)))
