"""One process' trials of a search: a candidate's recipe runs (PTQ, and QAT where PTQ misses
the budget by little), measured on validation, with early stops after each stage.

``TrialRunner.objective`` is the study's objective: it answers a repeated candidate from the
trial that measured it, runs the candidate's recipe into ``trials/<key>/ptq/`` (and ``qat/``
beside it), and records the figures as the trial's user attributes; ``after_trial`` rewrites
``trials.jsonl`` and reports progress. ``recipe_source`` writes a trial's recipe as a
configs-style file.
"""

import hashlib
import json
import os
import shutil
import socket
import time

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from tfcompress import _io, console, errors
import tfcompress.pipeline.recipe as recipe
import tfcompress.pipeline.search_records as records_lib
import tfcompress.pipeline.search_space as search_space
import tfcompress.pipeline.sequence_space as sequence_space
import tfcompress.pipeline.stats as stats_lib
from tfcompress.pipeline.stages import STAGES
from tfcompress.pipeline.workdir import Workdir


class TrialRunner:
    """One process' view of a study: runs trials, exports, reports progress."""

    def __init__(self, config: ConfigDict, workdir: str, baseline: dict, study):
        self.config, self.workdir, self.baseline, self.study = config, workdir, baseline, study
        self.metric = baseline.get("metric", "accuracy")  # the task's: accuracy, or r2
        self.layers = _sequence_layers(baseline["model_path"])
        self.space = search_space.space(config, self.layers)
        if baseline.get("task") == "regression":  # distill's student is a classifier
            self.space.pop("distill_width", None)
        self.floor = records_lib.baseline_score(baseline) - config.max_drop / 100.0
        self.started = time.time()
        self.bar = None  # the console's trial progress bar (search() draws it)

    def objective(self, trial) -> tuple:
        import optuna  # loaded when a search runs, not on import

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # first: kills
        trial.set_user_attr("pid", os.getpid())
        # The values that act (sequence_space.effective): a candidate differing only in values
        # that do not act is a repeat.
        params = sequence_space.effective({dim: trial.suggest_categorical(dim, list(choices))
                                           for dim, choices in self.space.items()})
        for other in self.study.get_trials(deepcopy=False, states=(
                optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)):
            if sequence_space.effective(other.params) != params:
                continue
            if not other.values:  # the sampler repeated a candidate stopped early
                trial.set_user_attr("same_as", other.number)
                raise optuna.TrialPruned(f"same candidate as trial {other.number}")
            if other.values:  # the sampler repeated a measured candidate
                for key, value in other.user_attrs.items():
                    if key not in ("pid", "worker"):
                        trial.set_user_attr(key, value)
                trial.set_user_attr("same_as", other.number)
                trial.set_constraint("accuracy_budget", other.user_attrs["constraint"])
                return tuple(other.values)
        folder = os.path.join(self.workdir, "trials", _params_key(params))
        trial.set_user_attr("folder", folder)  # ptq/ and, where QAT is tried, qat/ beside it
        stop = self.floor - self.config.stop_slack / 100.0

        def after_stage(name, model, accuracy):
            del model
            if accuracy < stop:
                trial.set_user_attr("stopped_after", name)
                trial.set_user_attr(f"stage_{self.metric}", accuracy)
                raise optuna.TrialPruned(
                    f"Keras {self.metric} {accuracy:.4f} after {name} is below {stop:.4f}")

        path = self.baseline["model_path"]
        # PTQ and QAT run into sibling folders (ptq/, qat/), each a whole recipe run whose
        # report describes the flatbuffer beside it; the trial takes the better by value.
        cfg = search_space.trial_recipe(self.config, params, path, layers=self.layers)
        m = self.metric
        result = self._run(trial, cfg, Workdir(os.path.join(folder, "ptq")), after_stage)
        row = result.row(params["mode"])
        trial.set_user_attr(f"ptq_{m}", row.metric(m))
        miss = self.floor - row.metric(m)
        if (params["mode"] == "int8" and "qat" in STAGES and 0 < miss
                and miss <= self.config.qat_recover / 100.0):
            qat_cfg = search_space.trial_recipe(self.config, params, path, qat=True,
                                                layers=self.layers)
            qat_dir = Workdir(os.path.join(folder, "qat"))
            _share_stages(Workdir(result.workdir), qat_dir, cfg.stages, qat_cfg.stages)
            qat = self._run(trial, qat_cfg, qat_dir)
            qat_row = qat.row("int8")
            trial.set_user_attr(f"qat_{m}", qat_row.metric(m))
            if qat_row.metric(m) > row.metric(m):
                cfg, result, row = qat_cfg, qat, qat_row
        trial.set_user_attr("chosen", os.path.basename(result.workdir))  # "ptq" or "qat"
        value = _objective_value(result, row, self.config.objective)
        accuracy = row.metric(m)  # the task's score on validation: accuracy, or R^2
        trial.set_user_attr("stages", list(cfg.stages))
        trial.set_user_attr("metric", m)
        trial.set_user_attr(m, accuracy)
        trial.set_user_attr(f"test_{m}", row.metric(m, "test"))
        trial.set_user_attr("test_vs_baseline", dict(row.vs_baseline))
        trial.set_user_attr("gzip_bytes", row.gzip_bytes)
        trial.set_user_attr("bytes", row.bytes)
        trial.set_user_attr("latency_ms", row.latency_ms)
        trial.set_user_attr("macs", result.final_macs)
        trial.set_user_attr("gzip_ratio", row.gzip_bytes / self.baseline["gzip_bytes"])
        drop_bound = stats_lib.drop_upper_bound(row.validation_vs_baseline,
                                                self.config.budget_confidence)
        trial.set_user_attr("validation_drop_bound", drop_bound)
        constraint = (drop_bound - self.config.max_drop) / 100.0  # <= 0: within the budget
        trial.set_user_attr("constraint", constraint)
        trial.set_constraint("accuracy_budget", constraint)  # for the sampler (any metric)
        trial.set_user_attr("tflite", row.path)
        trial.set_user_attr("recipe", Workdir(result.workdir).recipe_file)
        return accuracy, value

    def _run(self, trial, cfg: ConfigDict, wd: Workdir, after_stage=None):
        """One recipe run of a trial into ``wd``, with its recipe.py beside its outputs."""
        with console.muted():  # the console shows one line per trial (after_trial)
            result = recipe.run(cfg, wd.root, after_stage=after_stage)
        row = result.row(cfg.convert.modes[0])
        value = _objective_value(result, row, self.config.objective)
        _io.write_text(wd.recipe_file, recipe_source(
            cfg, f"Search trial {trial.number}: {', '.join(cfg.stages) or 'PTQ only'} -> "
                 f"{cfg.convert.modes[0]}; validation {records_lib.label(self.metric)} "
                 f"{row.metric(self.metric):.4f}, "
                 f"{self.config.objective} {value:.6g}."))
        return result

    def counted(self) -> int:
        """Trials toward ``n_trials``: finished or running, a repeated candidate not counted."""
        import optuna  # loaded when a search runs, not on import

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                  optuna.trial.TrialState.RUNNING)
        return sum("same_as" not in t.user_attrs
                   for t in self.study.get_trials(deepcopy=False, states=states))

    def after_trial(self, study, trial) -> None:
        records = records_lib.export_trials(study, os.path.join(self.workdir, "trials.jsonl"))
        feasible = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
        best = min(feasible, key=lambda r: r["objective"], default=None)
        done = sum(r["state"] in ("COMPLETE", "PRUNED") and "same_as" not in r for r in records)
        short = "acc" if self.metric == "accuracy" else records_lib.label(self.metric)
        what = (f"{short} {trial.values[0]:.4f} {self.config.objective} {trial.values[1]:.6g}"
                if trial.values else trial.state.name.lower())
        best_text = (f"trial {best['number']}: {short} {best['score']:.4f}, gzip "
                     f"{best['gzip_ratio']:.3f}x, {self.config.objective} {best['objective']:.6g}"
                     if best else "none yet")
        logging.info("search %d/%d [%.0f s] trial %d %s | best within budget: %s", done,
                     self.config.n_trials, time.time() - self.started, trial.number, what,
                     best_text)
        console.current().line(f"trial {trial.number}: {trial.params.get('mode', '')} "
                               f"{what}; best within budget: {best_text}")
        if self.bar is not None:
            self.bar.update()
        if self.counted() >= self.config.n_trials:
            study.stop()


def _share_stages(src: Workdir, dst: Workdir, src_stages, dst_stages) -> None:
    """Copies the saved models (with fingerprints and figures) of the stages two recipes share
    as a prefix (same names, same order) from ``src`` to ``dst``: the runner in ``dst`` then
    resumes from them instead of training them again (a copy is reused only where its
    fingerprint matches)."""
    for i, (a, b) in enumerate(zip(src_stages, dst_stages)):
        if a != b:
            return
        model = src.stage(i, a, STAGES[a].suffix)
        for path in (model, Workdir.stamp(model), Workdir.stats(model)):
            target = os.path.join(dst.root, os.path.relpath(path, src.root))
            if os.path.exists(path) and not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(path, target)


def _objective_value(result, row, objective: str) -> float:
    """The objective of a run (``results.RunResult``) and its trial's row."""
    if objective == "size":
        return float(row.gzip_bytes)
    if objective == "latency":
        return float(row.latency_ms)
    macs = result.final_macs
    return float(np.nan if macs is None else macs)


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def _sequence_layers(model_path: str) -> "sequence_space.SequenceLayers":
    """The baseline model's sequence layers; none where safe mode does not load it."""
    try:
        return sequence_space.read(model_path)
    except errors.TfcompressError as e:
        logging.warning("search: no sequence dimensions (the model does not load in safe "
                        "mode: %s)", e)
        return sequence_space.SequenceLayers()


def recipe_source(config: ConfigDict, title: str) -> str:
    """A configs-style Python file whose ``get_config()`` returns ``config``."""
    lines = []

    def walk(default, value, prefix):
        for key in value.keys():
            if isinstance(value[key], ConfigDict):
                walk(default[key], value[key], f"{prefix}{key}.")
            elif default[key] != value[key]:
                v = value[key]
                lines.append(f"    config.{prefix}{key} = {tuple(v) if isinstance(v, list) else v!r}")

    walk(recipe.default_config(), config, "")
    return (f'"""{title}\n\n    python scripts/compress.py --config=THIS_FILE.py '
            '--workdir=workdir/NAME\n\nWritten by tfcompress.search.\n"""\n\n'
            "from tfcompress.pipeline.recipe import default_config\n\n\n"
            'def get_config(variant: str = ""):\n    del variant\n'
            "    config = default_config()\n" + "\n".join(lines) + "\n    return config\n")
