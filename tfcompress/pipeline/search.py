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

Here: the search config, the study (storage, the baseline, the first candidates) and its
outputs. The dimensions and a candidate's recipe are in ``search_space``, one process' trials
in ``search_trials``, the trial records and the Pareto front in ``search_records``.
"""

import contextlib
import fcntl
import json
import os
import shutil
import warnings
from typing import Optional

from ml_collections import ConfigDict

from tfcompress import _io, console, errors
import tfcompress.pipeline.preflight as preflight
import tfcompress.pipeline.recipe as recipe
import tfcompress.pipeline.search_records as records_lib
import tfcompress.pipeline.search_space as search_space
import tfcompress.pipeline.search_trials as search_trials
import tfcompress.pipeline.shared_storage as shared_study
import tfcompress.pipeline.report as report_lib
import tfcompress.pipeline.sequence_space as sequence_space
import tfcompress.tasks as tasks
from tfcompress._compat.litert import load_flatbuffer
from tfcompress.export.conversion import available_modes, options_from_section
from tfcompress.pipeline.workdir import Workdir, fingerprint
from tfcompress.export.validation import validate

OBJECTIVES = ("size", "latency", "macs")
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
    if "stages" in src and "recipe" not in src:
        raise errors.ConfigError(
            "the config is a recipe (it has stages), not a search config; accepted: a search "
            "config (digits_search) whose recipe field holds the recipe, e.g. "
            "c = search.default_config(); c.recipe = <the recipe's get_config()>")
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
        for dim, value in search_space.parse_params(seed).items():
            # a mode of space.embedding_modes is searched where the model has an Embedding
            allowed = tuple(merged.space[dim]) + (
                tuple(merged.space.embedding_modes) if dim == "mode" else ())
            if value not in allowed:
                raise errors.ConfigError(
                    f"seed {seed!r}: {dim}={value!r} is not among space.{dim}; accepted: "
                    + ", ".join(map(repr, allowed)))
    return merged


@contextlib.contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
        run = search_trials.TrialRunner(config, workdir, baseline, study)
        dims = run.space
        off = {d: (0 if 0 in c else c[0]) for d, c in dims.items()}
        for mode in dims["mode"]:  # cheap candidates first: PTQ only
            study.enqueue_trial({**off, "mode": mode}, skip_if_exists=True)
        for seed in config.seeds:
            params = search_space.parse_params(seed)
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
    records = records_lib.export_trials(study, os.path.join(workdir, "trials.jsonl"))
    front = records_lib.pareto_front(records)
    metric = baseline.get("metric", "accuracy")  # the task's: accuracy, or r2 (regression)
    test_floor = records_lib.baseline_score(baseline, "test_") - config.max_drop / 100.0
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
    best = min(feasible, key=lambda r: (r["objective"], -records_lib.score(r), r["number"]),
               default=None)
    summary = {
        "baseline": {k: v for k, v in baseline.items() if k != "fingerprint"},
        "objective": config.objective, "max_drop_points": config.max_drop,
        "task": baseline.get("task", "classification"), "metric": metric,
        "budget": (f"at most {config.max_drop:g} {records_lib.label(metric)} points (1 point = "
                   f"0.01 {records_lib.label(metric)}) below the float32 baseline on "
                   "validation"),
        f"{metric}_floor": records_lib.baseline_score(baseline) - config.max_drop / 100.0,
        f"test_{metric}_floor": test_floor,
        "budget_confidence": config.budget_confidence,
        "splits": f"{metric}, {metric}_floor, the constraint, the front and best: validation; "
                  f"test_{metric}, test_vs_baseline, best.held_out: test (held out, measured "
                  "once per exported model)",
        "space": {k: list(v) for k, v in (dims or search_space.space(config)).items()},
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
            "test_drop_points": (records_lib.baseline_score(baseline, "test_")
                                 - result[metric]) * 100.0,
            "held_out": {k: result[k] for k in (metric, "bytes", "gzip_bytes", "ratio",
                                                "gzip_ratio", "latency_ms")}}
