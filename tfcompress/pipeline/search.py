"""Automatic compression: search recipes under an accuracy budget, report the Pareto front.

``tfcompress.search`` is this module's ``search``. A trial is a recipe (``tfcompress.pipeline.recipe``):
stages with their sections and one conversion mode, run by ``run_recipe`` in its own folder and
measured on the deployed ``.tflite``: accuracy on the VALIDATION split decides (the budget
constraint, early stops, QAT-or-PTQ, the front and the best candidate); gzip bytes, XNNPACK
latency, or the Keras model's MACs are the objective. The test split is measured once per
exported model and only reported (with its paired 95% interval against the baseline); the
report flags front points whose test drop is beyond the budget. The study is an Optuna
multi-objective study (maximize accuracy, minimize the objective) with a TPE sampler that knows
the accuracy budget as a trial constraint.

The budget is in the task's metric (``recipe.data.task``, inferred when empty): accuracy
points for classification, R^2 points (1 point = 0.01 R^2) for a regression model, whose
paired drop comes from per-sample squared errors (``stats.paired_regression_difference``);
records, search.json and report.md then hold ``r2``/``test_r2``, never accuracy.

What we add over a plain ``study.optimize``:

- The search space holds only the stages in ``stages.STAGES``
  (distill, prune_channels, factorize, prune, cluster; QAT), in that order. Sequence
  dimensions (LSTM/GRU and feed-forward units, attention heads, encoder blocks, Embedding rank
  and table width, int4 table modes) are offered where the baseline model has those layers
  (``sequence_space``).
- Cheap candidates first: PTQ-only trials (one per mode) are enqueued before anything that
  fine-tunes, then the config's ``seeds``. int8 candidates get QAT only when their PTQ result
  misses the budget by at most ``qat_recover`` points ("QAT when PTQ misses the budget").
  A trial's folder ``trials/<key>/`` holds ``ptq/`` and, where QAT was tried, ``qat/`` beside
  it: each a whole recipe run (flatbuffer, report.json/report.md, recipe.py) whose figures are
  those of the flatbuffer in it; QAT resumes from copies of the stages it shares with PTQ. The
  trial records the better by validation accuracy (``chosen``: ``ptq`` or ``qat``).
- Early stop: after every stage the Keras validation accuracy is checked; a candidate already more
  than ``stop_slack`` points below the budget is pruned (``optuna.TrialPruned``). Optuna's
  pruners need ``trial.report``, which multi-objective studies do not support, so the stop is
  this check, and the sampler learns the budget through ``trial.set_constraint``.
- The baseline is trained once (``<workdir>/baseline``, under a file lock so processes sharing
  the folder train it once) and every trial loads it through ``model.path``.
- Storage: ``sqlite:///<workdir>/study.db`` by default, so a rerun resumes the study. Any URL
  Optuna's RDBStorage accepts works (``postgresql://user:pass@host/db``,
  ``mysql+pymysql://...``): start the same search on several machines with the same storage
  and study name and they share the trials (let one process create the study first; processes
  sharing one workdir take turns by a file lock). Heartbeats mark a killed process' trial failed
  after the grace period and re-queue it (Optuna's ``RetryHeartbeatStaleTrialCallback``); its
  folder is named after its parameters, so the retry resumes from the stages already saved
  (in that workdir; another machine starts it afresh). A process whose share is done stays
  while trials run elsewhere and retries any whose process died (``shared_study``), so the
  last one standing leaves no candidate behind. Every trial records its ``worker``
  (``host:pid``); a retry has ``retry_of`` in ``trials.jsonl``. A plain ``postgresql://`` URL
  is served by psycopg 3 when psycopg2 is absent (``pip install tfcompress[postgres]``).
- Outputs in the workdir: ``trials.jsonl`` (every trial, rewritten atomically after each),
  ``front/trial_<n>.py`` (each Pareto point's recipe as a configs-style file that
  ``scripts/compress.py --config=...`` runs), ``best/`` (the smallest candidate meeting the
  budget: ``model.tflite``, ``recipe.py``, ``validation.json``, validated again on LiteRT),
  ``pareto.png``, ``report.md`` and ``search.json``.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import warnings
from typing import Optional

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from tfcompress import _io, console, errors
import tfcompress.pipeline.preflight as preflight
import tfcompress.pipeline.recipe as recipe
import tfcompress.pipeline.shared_storage as shared_study
import tfcompress.export.modes as modes
import tfcompress.training.finetune as finetune
import tfcompress.pipeline.stats as stats_lib
import tfcompress.pipeline.report as report_lib
import tfcompress.pipeline.sequence_space as sequence_space
import tfcompress.tasks as tasks
from tfcompress._compat.litert import load_flatbuffer
from tfcompress.export.conversion import available_modes, options_from_section
from tfcompress.pipeline.stages import STAGES
from tfcompress.pipeline.workdir import Workdir, fingerprint
from tfcompress.export.validation import validate

OBJECTIVES = ("size", "latency", "macs")
# Search dimension -> (stage, section field). "mode" is the conversion mode.
DIMENSIONS = {
    "distill_width": ("distill", "width"),
    "block_fraction": ("prune_blocks", "fraction"),  # depth: residual blocks removed
    "channel_ratio": ("prune_channels", "ratio"),
    "factorize_energy": ("factorize", "energy"),
    "factorize_conv": ("factorize", "conv"),  # "channel" or "spatial" SVD (with an energy)
    "sparsity": ("prune", "target_sparsity"),
    "clusters": ("cluster", "number_of_clusters"),
    "recovery": ("recover", None),  # 1: PTQ recovery for the mode (int8, int16x8, 8/4-bit weights)
    "finetune": ("finetune_quantized", None),  # 1: label-free QAT for the mode (int8, int4 weights)
    # Sequence models, offered where the model has the layers (sequence_space sets the fields):
    "unit_ratio": ("prune_channels", None),  # LSTM/GRU and feed-forward units
    "head_ratio": ("prune_channels", None),  # attention heads only
    "encoder_blocks": ("prune_blocks", None),  # whole Transformer encoder blocks
    "embedding_rank": ("factorize", None),  # low rank of the Embedding tables only
    "embedding_bits": ("convert", None),  # int8/int4 tables in dynamic/weight-only modes
}


def default_config() -> ConfigDict:
    """Every field a search config may set, with its default."""
    c = ConfigDict()
    c.recipe = recipe.default_config()  # data, model, training and stage sections of trials
    c.objective = "size"  # size (gzip bytes) | latency (XNNPACK ms) | macs
    c.max_drop = 1.0  # budget: at most this many points (of accuracy; regression: of R^2,
    #                   1 point = 0.01 R^2) below the float32 baseline
    # A candidate meets the budget when the one-sided upper confidence bound of its paired
    # validation drop (stats.drop_upper_bound) is within max_drop: best-of-N picks on a few
    # hundred images are optimistic (0.5: the observed drop alone).
    c.budget_confidence = 0.9
    c.n_trials = 30  # candidates tried (completed + pruned; a repeat of one already measured
    #                  is answered from it and not counted), across processes and reruns
    c.timeout = 0  # seconds this process searches (0: no limit); the trial in flight finishes
    c.storage = ""  # an Optuna database URL; "" is sqlite:///<workdir>/study.db
    c.study_name = "search"
    c.seed = 0
    c.heartbeat_interval = 30  # seconds; a dead process' trial is retried after 2x this
    c.qat_recover = 3.0  # points: an int8 PTQ miss up to this gets QAT
    c.stop_slack = 2.0  # points below the budget after a stage that stop a trial early
    c.space = ConfigDict(dict(
        mode=("float16", "dynamic", "int8"),
        distill_width=(0.0, 0.5, 0.25),
        block_fraction=(0.0,),  # e.g. (0.0, 0.25) for models with residual blocks
        factorize_conv=("channel", "spatial"),
        channel_ratio=(0.0, 0.25, 0.5),
        factorize_energy=(0.0, 0.95),
        sparsity=(0.0, 0.5, 0.75, 0.9, 0.95),
        clusters=(0, 32, 16, 8),
        recovery=(0, 1),
        finetune=(0,),  # (0, 1) also tries label-free QAT (finetune_quantized) after recovery
        # Offered only where the model has the layers (sequence_space): LSTM/GRU units and
        # attention heads, encoder blocks, Embedding rank and table width; and for a model
        # with an Embedding these modes join ``mode`` (int4 tables per row and block-wise).
        **sequence_space.DEFAULTS,
        embedding_modes=sequence_space.EMBEDDING_MODES,
    ))
    c.seeds = ()  # extra candidates enqueued after PTQ, e.g. "mode=int8,sparsity=0.9,clusters=16"
    return c


def check_config(config) -> ConfigDict:
    """``config`` over the defaults; unknown fields or values are errors."""
    merged = default_config()
    src = config.to_dict() if isinstance(config, ConfigDict) else dict(config)
    for key, value in src.items():
        if key not in merged:
            raise errors.ConfigError(
                f"unknown search field {key!r}; accepted: {', '.join(sorted(merged.keys()))}")
        if key == "recipe":
            merged.recipe = recipe.check_config(value)
        elif key == "space":
            for dim, choices in dict(value).items():
                if dim not in merged.space:
                    raise errors.ConfigError(errors.unknown("search dimension", dim,
                                                            list(merged.space.keys())))
                merged.space[dim] = tuple(choices)
        else:
            merged[key] = value
    merged.recipe = recipe.check_config(merged.recipe)
    if merged.objective not in OBJECTIVES:
        raise errors.ConfigError(errors.unknown("objective", merged.objective, OBJECTIVES))
    if merged.objective == "latency" and not merged.recipe.validate.latency_runs:
        raise errors.ConfigError("objective 'latency' needs recipe.validate.latency_runs > 0")
    if not 0.5 <= merged.budget_confidence < 1.0:
        raise errors.ConfigError(
            f"budget_confidence={merged.budget_confidence!r}; accepted: a number in [0.5, 1)")
    if merged.max_drop < 0:
        raise errors.ConfigError(f"max_drop={merged.max_drop!r}; accepted: points >= 0")
    if merged.storage:  # a PostgreSQL URL without a driver fails here, before any training
        shared_study.storage_url(merged.storage)
    if merged.n_trials < 1:
        raise errors.ConfigError(f"n_trials={merged.n_trials!r}; accepted: >= 1")
    bad = [m for m in (*merged.space.mode, *merged.space.embedding_modes)
           if m not in available_modes()]
    if bad or not merged.space.mode:
        raise errors.ConfigError(errors.unknown("space.mode", bad[0] if bad else (),
                                                available_modes()))
    for mode in (*merged.space.mode, *merged.space.embedding_modes):  # recipe.convert.options
        try:
            options_from_section(mode, merged.recipe.convert)
        except errors.ConversionError as e:
            raise errors.ConfigError(f"space.mode {mode!r} with recipe.convert: {e}") from e
    for seed in merged.seeds:
        for dim, value in parse_params(seed).items():
            # a mode of space.embedding_modes is searched where the model has an Embedding
            allowed = tuple(merged.space[dim]) + (
                tuple(merged.space.embedding_modes) if dim == "mode" else ())
            if value not in allowed:
                raise errors.ConfigError(
                    f"seed {seed!r}: {dim}={value!r} is not among space.{dim}; accepted: "
                    + ", ".join(map(repr, allowed)))
    return merged


def space(config: ConfigDict,
          layers: Optional["sequence_space.SequenceLayers"] = None) -> dict:
    """The searched dimensions: ``mode`` and those with a choice that turns their stage on; a
    dimension of how (strings: ``factorize_conv``) only where its stage is searched; with the
    model's ``layers`` (``sequence_space.read``), the sequence dimensions it has layers for."""
    out = {"mode": tuple(config.space.mode)}
    searched = set()
    for dim, (stage, _) in DIMENSIONS.items():
        if dim in sequence_space.DIMENSIONS:
            continue
        choices = tuple(config.space[dim])
        how = all(isinstance(c, str) for c in choices)
        if stage in STAGES and any(choices) and (not how or stage in searched):
            out[dim] = tuple(sorted(set(choices), key=choices.index))
            searched.add(stage)
    if layers is not None:
        out["mode"] = sequence_space.modes_for(config.space, layers)
        out.update(sequence_space.offer(config.space, layers, out["mode"]))
    return out


def parse_params(text: str) -> dict:
    """'mode=int8,sparsity=0.9' -> {'mode': 'int8', 'sparsity': 0.9}."""
    params = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, _, value = item.partition("=")
        if key != "mode" and key not in DIMENSIONS:
            raise errors.ConfigError(errors.unknown("seed field", key, ["mode", *DIMENSIONS]))
        params[key] = value if key in ("mode", "factorize_conv") else (
            int(value) if key in ("clusters", "recovery", "finetune", *sequence_space.INTEGER)
            else float(value))
    return params


def trial_recipe(config: ConfigDict, params: dict, model_path: str, qat: bool = False,
                 layers: Optional["sequence_space.SequenceLayers"] = None):
    """The recipe of one candidate: stages in canonical order, sections set from ``params``
    (sequence dimensions: ``sequence_space.apply`` with the model's ``layers``, read from
    ``model_path`` when not given)."""
    params = sequence_space.effective(params)
    r = ConfigDict(config.recipe.to_dict())
    r.model.path = model_path
    r.convert.modes = (params["mode"],)
    stages = []
    for dim, (stage, field) in DIMENSIONS.items():
        value = params.get(dim)
        if not value or field is None:
            continue
        if isinstance(value, str):  # how, for a stage an earlier dimension turned on
            if stage in stages:
                r[stage][field] = value
            continue
        stages.append(stage)
        r[stage][field] = type(r[stage][field])(value)
    if any(params.get(dim) for dim in sequence_space.DIMENSIONS):
        layers = layers if layers is not None else sequence_space.read(model_path)
        stages += [s for s in sequence_space.apply(r, params, layers) if s not in stages]
        stages.sort(key=list(STAGES).index)
    # PTQ recovery goes last (no fine-tuning after it), onto the grid of the trial's mode;
    # a QAT trial learns its own ranges instead.
    if params.get("recovery") and params["mode"] in modes.recoverable() and not qat:
        stages.append("recover")
        r.recover.mode = params["mode"]
    if params.get("finetune") and params["mode"] in finetune.MODES and not qat:
        stages.append("finetune_quantized")  # from the recovered weights when both ran
        r.finetune_quantized.mode = params["mode"]
        r.finetune_quantized.equalize = "recover" not in stages
    if "cluster" in stages:
        r.cluster.preserve_sparsity = "prune" in stages
    if qat:
        stages.append("qat")
        r.qat.preserve = {(True, True): "sparsity_and_clusters", (True, False): "sparsity",
                          (False, True): "clusters", (False, False): ""}[
            ("prune" in stages, "cluster" in stages)]
    r.stages = tuple(stages)
    return recipe.check_config(r)


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


def pareto_front(records: list) -> list:
    """The completed records no other dominates (higher score: accuracy or R^2, lower
    objective), by objective.

    Equal points keep the lowest trial number.
    """
    done = [r for r in records if r["state"] == "COMPLETE"]
    front = []
    for r in done:
        a, o = _score(r), r["objective"]
        dominated = any(
            (_score(s) >= a and s["objective"] <= o
             and (_score(s) > a or s["objective"] < o or s["number"] < r["number"]))
            for s in done if s is not r)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r["objective"], -_score(r)))


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _objective_value(result, row, objective: str) -> float:
    """The objective of a run (``results.RunResult``) and its trial's row."""
    if objective == "size":
        return float(row.gzip_bytes)
    if objective == "latency":
        return float(row.latency_ms)
    macs = result.final_macs
    return float(np.nan if macs is None else macs)


def _baseline(config: ConfigDict, workdir: str) -> dict:
    """Trains (once) and measures the float32 baseline; its figures, cached in baseline.json."""
    folder = os.path.join(workdir, "baseline")
    with _locked(os.path.join(workdir, ".baseline.lock")):
        base = ConfigDict(config.recipe.to_dict())
        base.stages = ()
        base.convert.modes = ("float32",)
        key = fingerprint(base)
        cache = os.path.join(folder, "baseline.json")
        if os.path.exists(cache):
            with open(cache) as f:
                info = json.load(f)
            if info.get("fingerprint") == key and "score" in info:
                return info
        result = recipe.run(base, folder)
        row = result.row("float32")
        metric = tasks.PRIMARY[result.task]  # the budget's metric: accuracy, or R^2
        model_path = os.path.abspath(config.recipe.model.path or Workdir(folder).baseline)
        info = {"fingerprint": key, "task": result.task, "metric": metric,
                "score": row.metric(metric, "validation"),
                "test_score": row.metric(metric, "test"),
                metric: row.metric(metric, "validation"),
                f"test_{metric}": row.metric(metric, "test"),
                "bytes": row.bytes,
                "gzip_bytes": row.gzip_bytes, "latency_ms": row.latency_ms,
                "macs": result.final_macs, "model_path": model_path, "tflite": row.path}
        _io.write_text(cache, json.dumps(info, indent=2))
        return info


def _sequence_layers(model_path: str) -> "sequence_space.SequenceLayers":
    """The baseline model's sequence layers; none where safe mode does not load it."""
    try:
        return sequence_space.read(model_path)
    except errors.TfcompressError as e:
        logging.warning("search: no sequence dimensions (the model does not load in safe "
                        "mode: %s)", e)
        return sequence_space.SequenceLayers()


class _Search:
    """One process' view of a study: runs trials, exports, reports progress."""

    def __init__(self, config: ConfigDict, workdir: str, baseline: dict, study):
        self.config, self.workdir, self.baseline, self.study = config, workdir, baseline, study
        self.metric = baseline.get("metric", "accuracy")  # the task's: accuracy, or r2
        self.layers = _sequence_layers(baseline["model_path"])
        self.space = space(config, self.layers)
        if baseline.get("task") == "regression":  # distill's student is a classifier
            self.space.pop("distill_width", None)
        self.floor = _baseline_score(baseline) - config.max_drop / 100.0
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
        cfg = trial_recipe(self.config, params, path, layers=self.layers)
        m = self.metric
        result = self._run(trial, cfg, Workdir(os.path.join(folder, "ptq")), after_stage)
        row = result.row(params["mode"])
        trial.set_user_attr(f"ptq_{m}", row.metric(m))
        miss = self.floor - row.metric(m)
        if (params["mode"] == "int8" and "qat" in STAGES and 0 < miss
                and miss <= self.config.qat_recover / 100.0):
            qat_cfg = trial_recipe(self.config, params, path, qat=True, layers=self.layers)
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
                 f"{cfg.convert.modes[0]}; validation {_label(self.metric)} "
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
        records = export_trials(study, os.path.join(self.workdir, "trials.jsonl"))
        feasible = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
        best = min(feasible, key=lambda r: r["objective"], default=None)
        done = sum(r["state"] in ("COMPLETE", "PRUNED") and "same_as" not in r for r in records)
        short = "acc" if self.metric == "accuracy" else _label(self.metric)
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


def _label(metric: str) -> str:
    """A metric's name in words: ``r2`` -> ``R^2``."""
    return "R^2" if metric == "r2" else metric


def _baseline_score(baseline: dict, split: str = ""):
    """The baseline's validation (``split`` "") or test ("test_") score in its task's metric."""
    metric = baseline.get("metric", "accuracy")  # the metric's own key first, then "score"
    return baseline.get(f"{split}{metric}", baseline.get(f"{split}score"))


def _score(record: dict):
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


def _storage_url(config: ConfigDict, workdir: str) -> str:
    """The study's database URL (a plain postgresql:// served by the driver installed)."""
    return shared_study.storage_url(config.storage) if config.storage else (
        "sqlite:///" + os.path.abspath(os.path.join(workdir, "study.db")))


def _storage(config: ConfigDict, workdir: str):
    import optuna  # loaded when a search runs, not on import

    url = _storage_url(config, workdir)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=int(config.heartbeat_interval),
            grace_period=2 * int(config.heartbeat_interval),
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=2))


def search(config=None, workdir: str = "workdir/search", **overrides) -> dict:
    """Searches compression recipes under an accuracy budget; resumes the study in ``workdir``.

    Example: ``search(cfg, "workdir/s", max_drop=1.0, objective="size", timeout=900)`` where
    ``cfg.recipe.model.path`` names a trained model (or ``cfg.recipe`` trains one) and
    ``cfg.recipe.data`` the data.

    Args:
        config: a search config (see ``default_config``; ``configs/digits_search.py``);
            None: the defaults.
        workdir: the study folder (baseline, trials, outputs; the SQLite study by default).
        **overrides: top-level search fields over ``config`` (``objective``, ``max_drop``,
            ``n_trials``, ``timeout``, ``storage``, ...).

    Returns:
        The summary written to ``search.json``: baseline, budget, Pareto front, best
        candidate within the budget (None if none met it), counts per trial state.

    Raises:
        TfcompressError: bad config fields, data or model.
    """
    import optuna  # loaded when a search runs, not on import

    config = default_config() if config is None else config
    config = check_config({**(config.to_dict() if isinstance(config, ConfigDict) else config),
                           **overrides})
    preflight.check_workdir(workdir)
    # Before the baseline trains: a bad URL, a missing driver or a server down is one line now.
    preflight.check_storage(_storage_url(config, workdir))
    baseline = _baseline(config, workdir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=config.seed, n_startup_trials=len(config.space.mode) + len(config.seeds) + 3)
    # Processes sharing this workdir create the study's tables and enqueue the first candidates
    # one at a time (two at once race on SQLite: "table ... already exists").
    with _locked(os.path.join(workdir, ".study.lock")):
        storage = _storage(config, workdir)
        study = optuna.create_study(
            storage=storage, study_name=config.study_name, load_if_exists=True,
            directions=["maximize", "minimize"], sampler=sampler)
        run = _Search(config, workdir, baseline, study)
        dims = run.space
        off = {d: (0 if 0 in c else c[0]) for d, c in dims.items()}
        for mode in dims["mode"]:  # cheap candidates first: PTQ only
            study.enqueue_trial({**off, "mode": mode}, skip_if_exists=True)
        for seed in config.seeds:
            params = parse_params(seed)
            study.enqueue_trial({d: params.get(d, off[d]) for d in dims}, skip_if_exists=True)
        shared_study.fail_stale(study, storage, 2 * config.heartbeat_interval)
    with console.current().progress("search", config.n_trials, unit="trial") as run.bar:
        shared_study.run_share(
            study, storage, run.objective, n_trials=config.n_trials, counted=run.counted,
            callbacks=[run.after_trial], timeout=config.timeout,
            heartbeat_interval=config.heartbeat_interval,
            catch=(errors.TfcompressError, ValueError, RuntimeError))
    return finish(config, workdir, baseline, study, dims=run.space)


def finish(config: ConfigDict, workdir: str, baseline: dict, study,
           dims: Optional[dict] = None) -> dict:
    """Writes trials.jsonl, the front's recipes, the best model, pareto.png and report.md
    (``dims``: the searched space, default ``space(config)``)."""
    records = export_trials(study, os.path.join(workdir, "trials.jsonl"))
    front = pareto_front(records)
    metric = baseline.get("metric", "accuracy")  # the task's: accuracy, or r2 (regression)
    test_floor = _baseline_score(baseline, "test_") - config.max_drop / 100.0
    front_dir = os.path.join(workdir, "front")
    with _locked(os.path.join(workdir, ".front.lock")):  # processes sharing the workdir
        if os.path.isdir(front_dir):  # a resumed search rewrites the front: no stale point
            shutil.rmtree(front_dir)
        os.makedirs(front_dir)
        for r in front:
            r["config_file"] = os.path.join(front_dir, f"trial_{r['number']}.py")
            shutil.copyfile(r["recipe"], r["config_file"])
    for r in front:  # chosen on validation; a test drop beyond the budget is the warning
        r["test_within_budget"] = r[f"test_{metric}"] >= test_floor
    feasible = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
    best = min(feasible, key=lambda r: (r["objective"], -_score(r), r["number"]),
               default=None)
    summary = {
        "baseline": {k: v for k, v in baseline.items() if k != "fingerprint"},
        "objective": config.objective, "max_drop_points": config.max_drop,
        "task": baseline.get("task", "classification"), "metric": metric,
        "budget": (f"at most {config.max_drop:g} {_label(metric)} points (1 point = 0.01 "
                   f"{_label(metric)}) below the float32 baseline on validation"),
        f"{metric}_floor": _baseline_score(baseline) - config.max_drop / 100.0,
        f"test_{metric}_floor": test_floor,
        "budget_confidence": config.budget_confidence,
        "splits": f"{metric}, {metric}_floor, the constraint, the front and best: validation; "
                  f"test_{metric}, test_vs_baseline, best.held_out: test (held out, measured "
                  "once per exported model)",
        "space": {k: list(v) for k, v in (dims or space(config)).items()},
        "states": {s: sum(r["state"] == s for r in records)
                   for s in sorted({r["state"] for r in records})},
        "repeats": sum("same_as" in r for r in records),  # a candidate sampled again
        "front": front, "best": None,
    }
    if best is not None:
        summary["best"] = _export_best(config, workdir, baseline, best)
    report_lib.write_search(summary, workdir)
    return summary


def _export_best(config: ConfigDict, workdir: str, baseline: dict, best: dict) -> dict:
    """Copies the best candidate to ``best/`` and validates its flatbuffer again."""
    folder = os.path.join(workdir, "best")
    flatbuffer = load_flatbuffer(best["tflite"])
    _io.write_bytes(os.path.join(folder, "model.tflite"), flatbuffer)
    shutil.copyfile(best["recipe"], os.path.join(folder, "recipe.py"))
    task = baseline.get("task", "classification")
    metric = tasks.PRIMARY[task]
    # held out: measured, never chosen on
    x, y = recipe.load_data(config.recipe, task).test
    result = validate(flatbuffer, x, y, latency_runs=config.recipe.validate.latency_runs,
                      num_threads=config.recipe.validate.num_threads, task=task,
                      baseline=load_flatbuffer(baseline["tflite"])).to_dict()
    _io.write_text(os.path.join(folder, "validation.json"),
                   json.dumps(result, indent=2, default=str))
    return {**best, "model": os.path.join(folder, "model.tflite"),
            "config_file": os.path.join(folder, "recipe.py"),
            "test_drop_points": (_baseline_score(baseline, "test_") - result[metric]) * 100.0,
            "held_out": {k: result[k] for k in (metric, "bytes", "gzip_bytes", "ratio",
                                                "gzip_ratio", "latency_ms")}}
