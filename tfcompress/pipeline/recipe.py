"""Recipe runner: ml_collections config -> data, model -> stages -> convert -> validate -> report.

The runner only chains the stages of ``tfcompress.pipeline.stages.STAGES``; it holds no compression
logic. A killed run resumes: the trained baseline and each stage's output are saved in the
workdir under a fingerprint of the config that made them, and reused when it matches.

Splits: the training data gives a validation split (``data.validation_fraction``, stratified, or
the ``x_val``/``y_val`` of a user's ``.npz``). Fitting sees train; stages and callers decide on
validation (``after_stage`` gets validation accuracy); each exported flatbuffer is measured on
test once, for the report, with its paired difference to the float32 baseline on the same
images. ``report.json``/``report.md`` name the split of every figure.

Tasks: ``data.task`` is ``classification``, ``binary`` (one sigmoid unit, 0/1 labels: binary
cross-entropy, accuracy and agreement at 0.5) or ``regression`` ("" infers it with
``tasks.infer`` from the training targets and, with ``model.path``, the model's outputs). A
model with several outputs is refused in one line (``check_outputs``).
Regression takes float targets (a user's ``.npz`` with ``model.path``), fine-tunes with mean
squared error, scores R^2 wherever classification scores accuracy (stage figures ``r2_*``,
``keras_r2``), and its format rows hold ``r2``/``mse``/``mae``/``r2_drop`` with ``vs_baseline``
in R^2 points from per-sample squared errors; never accuracy or agreement. Integer inputs
(token ids) stay int32 from loading to calibration.
"""

import json
import os
import time
from typing import Callable, Optional

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from tfcompress import _io, console, errors, models, profiling
import tfcompress.pipeline.config_files as configs
import tfcompress._compat.litert as _litert
import tfcompress.export.android as android
import tfcompress.export.runtime as runtime
import tfcompress.pipeline.preflight as preflight
from tfcompress import data as data_lib
import tfcompress.pipeline.report as report_lib
import tfcompress.pipeline.results as results
import tfcompress.pipeline.stats as stats_lib
import tfcompress.tasks as tasks
from tfcompress._compat.keras import keras
from tfcompress.export.conversion import (available_modes, conversion_info, convert, mode_options,
                                          options_from_section, section_options)
from tfcompress.keras3 import ensure_keras2
from tfcompress.pipeline.stages import STAGES, Context
from tfcompress.pipeline.workdir import Workdir, fingerprint
from tfcompress.export.validation import predict, validate

DATA_NAMES = ("digits", "text", "keywords", "npz", "image_folder")


def default_config() -> ConfigDict:
    """Every field a recipe may set, with its default. Unknown fields are an error."""
    c = ConfigDict()
    c.seed = 0
    c.data = ConfigDict(dict(
        name="digits",  # digits | text | keywords (bundled) | npz | image_folder
        path="",  # .npz file or image folder
        image_size=(32, 32),  # image_folder, or any data with resize=True
        color_mode="rgb",  # image_folder, or any data with resize=True: rgb | grayscale
        resize=False,  # digits/npz: resize to image_size and color_mode (e.g. for MobileNetV2)
        limit=0,  # use at most this many train and test samples (0: all)
        validation_fraction=0.15,  # of the training split, for every decision (npz: x_val)
        task="",  # classification | regression ("": inferred from the targets and the model)
    ))
    c.model = ConfigDict(dict(
        name="digits_cnn",  # a models.MODEL_NAMES builder, trained by the recipe
        path="",  # or a user's trained .keras / .h5 / SavedModel, used as the baseline
        width=1.0,  # width multiplier of the reference model
        unsafe=False,  # True: load a trusted model.path that holds Lambda layers / custom code
    ))
    c.train = ConfigDict(dict(epochs=15, batch_size=32, learning_rate=1e-3, from_logits=False))
    c.stages = ()  # stage names in order, each configured by its own section
    c.convert = ConfigDict(dict(
        modes=("float32", "float16", "int8"),
        representative_samples=200,
        overrides=(),  # low-bit modes: per-layer widths, "regex=bits" or "OP_TYPE=bits"
        size_budget=0.0,  # mode "mixed": ratio to float32 bytes (<= 1) or bytes (> 1)
        mixed_widths=(2, 4, 8, 16, 32),  # mode "mixed": candidate widths (16 float16, 32 float)
        mixed_max_layers=0,  # mode "mixed": choose widths for the largest N layers (0: all)
        baseline_modes=(),  # with stages: also convert the baseline so, rows "baseline <mode>"
        # convert(..., options=...) for every mode that takes them ("": the mode's default):
        options=ConfigDict(dict(
            algorithm="",  # low-bit and mixed_a16w8 modes: min_max|octav|mse|gptq|oscar|hadamard
            activation_ranges="",  # int8 and static_*_ai8 modes: min_max | mse | percentile
        )),
    ))
    c.validate = ConfigDict(dict(
        latency_runs=50, num_threads=1,
        litert_benchmark=True,  # also LiteRT's own benchmark_litert_model (with latency_runs)
        compiled_model=("xnnpack",),  # CompiledModel kernel modes checked against Interpreter
    ))
    for name, stage in STAGES.items():
        c[name] = ConfigDict(stage.defaults)
    return c


def check_config(config) -> ConfigDict:
    """The full recipe: ``config`` over the defaults; unknown fields or bad types are errors."""
    merged = default_config()

    def merge(into: ConfigDict, src, prefix: str):
        for key, value in src.items():
            name = f"{prefix}{key}"
            if key not in into:
                raise errors.ConfigError(
                    f"unknown recipe field {name!r}; accepted: {', '.join(sorted(into.keys()))}")
            if isinstance(into[key], ConfigDict):
                if not isinstance(value, (ConfigDict, dict)):
                    raise errors.ConfigError(f"recipe field {name!r} must be a section")
                merge(into[key], value, name + ".")
                continue
            try:
                into[key] = value
            except TypeError as e:
                raise errors.ConfigError(
                    f"recipe field {name!r}={value!r} has the wrong type: {e}") from e

    merge(merged, config.to_dict() if isinstance(config, ConfigDict) else dict(config), "")
    unknown = [s for s in merged.stages if s not in STAGES]
    if unknown:
        raise errors.ConfigError(errors.unknown("stage", unknown[0], sorted(STAGES) or ["none"]))
    bad = [m for m in (*merged.convert.modes, *merged.convert.baseline_modes)
           if m not in available_modes()]
    if bad:
        raise errors.ConfigError(errors.unknown("conversion mode", bad[0], available_modes()))
    for mode in (None, *merged.convert.modes):  # each mode checks the convert fields it reads
        try:
            if mode is None:  # convert.options, whichever modes take them
                section_options(merged.convert)
                continue
            options_from_section(mode, merged.convert)
        except errors.ConversionError as e:
            raise errors.ConfigError(f"convert section for mode {mode!r}: {e}" if mode
                                     else f"convert section: {e}") from e
    if merged.data.name not in DATA_NAMES:
        raise errors.ConfigError(errors.unknown("data.name", merged.data.name, DATA_NAMES))
    if merged.data.task:
        _check_task(merged, merged.data.task, "data.task")
    preflight.check_values(merged, merged.stages)
    for name in merged.stages:  # what each stage's technique refuses without a model
        try:
            if STAGES[name].check_values is not None:
                STAGES[name].check_values(merged[name])
        except errors.ConfigError as e:
            raise errors.ConfigError(f"{name} section: {e}") from e
    bad = [m for m in merged.validate.compiled_model if m not in runtime.KERNEL_MODES]
    if bad:
        raise errors.ConfigError(errors.unknown("validate.compiled_model kernel mode", bad[0],
                                                list(runtime.KERNEL_MODES)))
    return merged


def check_stages(config: ConfigDict, model, ctx: Context) -> None:
    """Each stage's section against ``model`` (the baseline, before it trains) while the stages
    before it keep the model's layers: those with a ``check_model`` (the first stage without
    one ends the checks; the technique checks again when its stage runs)."""
    zeros = {}  # {layer: share of zeros} the stages checked so far leave (prune's target)
    for name in config.stages:
        check = STAGES[name].check_model
        if check is None:
            return
        try:
            zeros = check(model, config[name], ctx, zeros)
        except errors.ConfigError as e:
            raise errors.ConfigError(f"{name} section: {e}") from e


# The tasks a recipe runs (tfcompress.tasks): fine-tuning loss, score and report follow it.
# ``binary``: one sigmoid unit per sample and 0/1 labels (binary cross-entropy, accuracy and
# agreement at the 0.5 threshold).
RECIPE_TASKS = ("classification", "binary", "regression")


def _check_task(config, task: str, where: str) -> str:
    """``task`` if a recipe can run it with this config.

    Raises:
        ConfigError: an unknown task, or binary/regression with a model the recipe would
            build (the builders are softmax classifiers) or a ``distill`` stage (its student
            too).
    """
    if task not in RECIPE_TASKS:
        raise errors.ConfigError(errors.unknown(where, task, RECIPE_TASKS))
    if task != "classification" and not config.model.path:
        raise errors.ConfigError(
            f"{where} is {task!r} but model.path is empty: the recipe's model builders are "
            f"softmax classifiers; accepted: model.path naming your trained {task} model")
    if task != "classification" and "distill" in config.stages:
        raise errors.ConfigError(
            f"{where} is {task!r} and stages hold 'distill', whose student is a softmax "
            "classifier; accepted: the other stages")
    return task


def check_outputs(model) -> None:
    """Refuses a model with several outputs: the recipe runs one output (its data holds one
    target array per split).

    Raises:
        ConfigError: the model has more than one output, named.
    """
    if len(model.outputs) > 1:
        raise errors.ConfigError(
            f"model.path has {len(model.outputs)} outputs ({', '.join(model.output_names)}); "
            "the recipe runs models with one output; accepted: a one-output model (several "
            "outputs: tfcompress.convert, then tfcompress.validate(..., task=[one per output]))")


def resolve_task(config: ConfigDict, model=None) -> str:
    """The recipe's task: ``data.task`` when set, else ``tasks.infer`` from the training
    targets (the bundled data: classification) and, with ``model``, its outputs on them.

    Raises:
        ConfigError: a task the recipe cannot run with this config (``_check_task``).
    """
    d = config.data
    if d.task:
        return _check_task(config, d.task, "data.task")
    if d.name != "npz":
        return "classification"
    y = np.asarray(data_lib.npz_targets(d.path))[:256]
    outputs = None
    if model is not None and len(model.outputs) == 1:
        x = data_lib._npz_arrays(d.path, ("x_train",))["x_train"][: len(y)]
        dtype = getattr(model.inputs[0], "dtype", None) if len(model.inputs) == 1 else None
        try:
            x = data_lib.as_input_dtype(x, getattr(dtype, "name", dtype), "x_train")
            data_lib.check_token_ids(x, model, f"{d.path!r}: x_train")
            outputs = np.asarray(model.predict(x, verbose=0))
        except (errors.TfcompressError, ValueError, TypeError):
            outputs = None  # the data checks say what is wrong with x
    task = tasks.infer(y, outputs)
    return _check_task(config, task, f"the inferred task (from {d.path!r}; set data.task)")


def load_data(config: ConfigDict, task: Optional[str] = None) -> data_lib.DataSplits:
    """The recipe's train, validation and test splits (see the module docstring), checked
    for ``task`` (default ``resolve_task``): class labels, or float targets for regression.
    Float inputs are float32; integer inputs (token ids) stay integers."""
    d = config.data
    task = task or resolve_task(config)
    validation = None
    if d.name == "digits":
        train, test = data_lib.load_digits(seed=config.seed)
    elif d.name in ("text", "keywords"):  # bundled: token ids, keyword-spotting MFCCs
        load = data_lib.load_text if d.name == "text" else data_lib.load_keywords
        train, test = load(seed=config.seed)
    elif d.name == "npz":
        train, test = data_lib.load_npz(d.path, task)
        validation = data_lib.npz_validation(d.path, task)
    else:
        (train, test), _ = data_lib.load_image_folder(
            d.path, d.image_size, color_mode=d.color_mode, seed=config.seed)
    if d.limit:
        train, test = ((x[: d.limit], y[: d.limit]) for x, y in (train, test))
    if validation is None:
        train, validation = data_lib.split_validation(train, d.validation_fraction, config.seed)
    splits = data_lib.check_data(data_lib.DataSplits(train, validation, test), task=task)
    if d.resize and d.name != "image_folder":
        splits = data_lib.DataSplits(*((data_lib.resize_images(x, d.image_size, d.color_mode), y)
                                       for x, y in splits))
    return splits


def _is_cached(path: str, fingerprint: str) -> bool:
    """Whether ``_cached`` will load ``path`` (made from the same config) rather than make it."""
    stamp = Workdir.stamp(path)
    return os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == fingerprint


def _baseline_line(config, ctx: Context, model, seconds: float, resumed: bool) -> str:
    """The console's line for the baseline: what it is, its validation accuracy."""
    what = (f"your model {os.path.basename(config.model.path)}" if config.model.path else
            f"{config.model.name} trained {config.train.epochs} "
            f"epoch{'s' if config.train.epochs != 1 else ''}")
    took = "resumed from the workdir" if resumed else f"{seconds:.0f}s"
    return (f"baseline: {what}, {model.count_params():,} parameters; validation {ctx.metric} "
            f"{ctx.accuracy(model):.4f}; {took}")


def _cached(path: str, fingerprint: str, make: Callable[[], keras.Model],
            safe_mode: bool = True) -> keras.Model:
    """Loads the model at ``path`` if it was made from the same config, else makes and saves it."""
    if _is_cached(path, fingerprint):
        logging.info("resuming from %s", path)
        return models.load_model(path, safe_mode=safe_mode)
    model = make()
    models.save_model(model, path)
    _io.write_text(Workdir.stamp(path), fingerprint)
    return model


def run_recipe(config, workdir: str, *, android_dir: Optional[str] = None,
               android_mode: Optional[str] = None,
               after_stage: Optional[Callable[[str, keras.Model, float], None]] = None) -> dict:
    """Runs a recipe end to end and writes its outputs into ``workdir``; the report as a dict.

    ``run(...)`` with the same arguments returns the typed result
    (``results.RunResult``); this is its ``to_dict()``, the content of report.json.
    """
    return run(config, workdir, android_dir=android_dir, android_mode=android_mode,
               after_stage=after_stage).to_dict()


def run(config, workdir: str, *, android_dir: Optional[str] = None,
        android_mode: Optional[str] = None,
        after_stage: Optional[Callable[[str, keras.Model, float], None]] = None
        ) -> results.RunResult:
    """Runs a recipe end to end and writes its outputs into ``workdir`` (paths: ``Workdir``).

    Writes ``baseline.keras``, one ``<mode>.tflite`` per conversion mode (and, where the
    flatbuffer carries a quantizer recipe, ``<mode>.recipe.json``), ``report.json`` and
    ``report.md``. With ``android_dir``, also an Android bundle (``android.export_android``) of
    the ``android_mode`` flatbuffer (default: the last of ``convert.modes``).
    ``after_stage(name, model, keras_validation_score)`` (accuracy, or R^2 for regression) is
    called after each stage; whatever it raises ends the run there (tfcompress.search stops
    hopeless candidates so).

    Returns:
        The run's typed result (``to_dict()`` is report.json): each format row
        (``results.FormatRow``) holds its test figures (``accuracy``, ``agreement``, sizes,
        latency; regression: ``r2``, ``mse``, ``mae``, ``r2_drop``), its ``validation``
        figures, and ``vs_baseline``: the paired test difference to the float32 baseline in
        the task's points (accuracy, or R^2) with its 95% interval; ``splits`` names the split
        of each figure.

    Raises:
        TfcompressError: bad recipe fields, data, model files or modes; all of them are
            checked before anything trains.
    """
    if isinstance(config, (str, os.PathLike)):  # a recipe file, "configs/x.py[:variant]"
        config = configs.load(os.fspath(config))  # a bundled name or a path, ":variant" kept
    elif not isinstance(config, (ConfigDict, dict)) and not hasattr(config, "to_dict"):
        raise errors.ConfigError(
            f"recipe of type {type(config).__name__}; accepted: a ConfigDict, a dict, or the "
            "path of a recipe file 'configs/<name>.py' (optionally ':<variant>')")
    config = check_config(config)
    if android_dir and android_mode and android_mode not in config.convert.modes:
        raise errors.ConfigError(errors.unknown("android mode", android_mode, config.convert.modes))
    if android_dir:  # the user's files there are never overwritten: refused now, not at the end
        android.check_directory(android_dir)
    preflight.check_workdir(workdir)
    _io.remove_stale(workdir)  # what a killed run left half-written
    keras.utils.set_random_seed(config.seed)
    user_model = None
    if config.model.path:  # loads (safe mode) and fits the data, before anything trains
        user_model = models.load_model(config.model.path, safe_mode=not config.model.unsafe)
        check_outputs(user_model)
    task = resolve_task(config, user_model)
    splits = load_data(config, task)
    if user_model is not None:
        splits = data_lib.check_data(
            splits, _num_classes(user_model) if task == "classification" else None,
            user_model.input_shape, task=task)
        splits = _as_model_inputs(splits, user_model)
        for name, (x, _) in zip(("train", "validation", "test"), splits):
            data_lib.check_token_ids(x, user_model, f"the {name} split")
    wd = Workdir(workdir)
    ctx = Context(config, splits, workdir, task=task)
    out = console.current()
    started, resumed = time.monotonic(), _is_cached(wd.baseline, _baseline_fingerprint(config))
    ctx.step = "baseline"
    model = baseline = _baseline(config, ctx, wd, user_model)
    if out.enabled:  # the line measures validation accuracy: only when someone reads it
        out.line(_baseline_line(config, ctx, baseline, time.monotonic() - started, resumed))
    stamp = _baseline_fingerprint(config)
    done = []
    for i, name in enumerate(config.stages):
        stamp = fingerprint(stamp, name, config[name])
        path = wd.stage(i, name, STAGES[name].suffix)
        stats_before = ctx.stats.get(name)
        started, resumed, ctx.step = time.monotonic(), _is_cached(path, stamp), name
        model = _cached(path, stamp,
                        lambda m=model, n=name, i=i: _run_stage(n, m, config, ctx, i),
                        safe_mode=not config.model.unsafe)
        # A stage's measured figures are kept beside its model, so a resumed run reports them.
        if ctx.stats.get(name) is not stats_before:
            _io.write_text(wd.stats(path), json.dumps(ctx.stats[name], default=str))
        elif os.path.exists(wd.stats(path)):
            with open(wd.stats(path)) as f:
                ctx.stats[name] = json.load(f)
        accuracy = ctx.accuracy(model)  # the task's score: accuracy, or R^2 for regression
        figures = _task_figures(ctx.stats.get(name), ctx.metric)
        logging.info("stage %s: validation %s %.4f", name, ctx.metric, accuracy)
        out.line(report_lib.stage_line(i, len(config.stages), name, figures,
                                       accuracy, time.monotonic() - started, resumed,
                                       metric=ctx.metric))
        done.append(results.StageResult(name, i, path, figures, {ctx.metric: accuracy}))
        if after_stage is not None:
            after_stage(name, model, accuracy)

    started = time.monotonic()
    formats = _formats(config, wd, splits, baseline, model, task)
    out.line(f"converted to {', '.join(config.convert.modes)} and measured {len(formats)} "
             f"models on LiteRT (test split, XNNPACK); {time.monotonic() - started:.0f}s")
    result = results.RunResult(
        config=_shareable_paths(config.to_dict(), workdir),
        splits={"train": len(splits.train[1]), "validation": len(splits.validation[1]),
                "test": len(splits.test[1]),
                "figures": (f"format rows: {', '.join(_ROW_METRICS[task])}, vs_baseline on "
                            "test (measured once per exported model); validation.*, "
                            f"keras_{ctx.metric} and stage figures on validation")},
        keras_metrics={"baseline": ctx.accuracy(baseline), "final": ctx.accuracy(model)},
        task=task,
        stages=tuple(done),
        formats=tuple(formats),
        profile={"baseline": _profile(baseline), "final": _profile(model)},
        workdir=workdir,
        android=(_export_android(config, wd, android_dir, android_mode) if android_dir
                 else None))
    return report_lib.write(result)


def _task_figures(figures, metric: str):
    """A stage's figures with their ``accuracy`` keys named by the task's score (``r2`` for
    regression: ``accuracy_before`` -> ``r2_before``); classification's are unchanged."""
    if metric == "accuracy" or not isinstance(figures, dict):
        return figures
    return {k.replace("accuracy", metric): v for k, v in figures.items()}


def _as_model_inputs(splits, model):
    """The splits' inputs in the dtype of the model's single input (uint8 images for a float
    model become float32; token ids stay integers); other models' unchanged."""
    if len(model.inputs) != 1:
        return splits
    dtype = model.inputs[0].dtype
    dtype = getattr(dtype, "name", dtype)
    return data_lib.DataSplits(*((data_lib.as_input_dtype(x, dtype, f"the {name} split"), y)
                                 for name, (x, y) in zip(data_lib.DataSplits._fields, splits)))


def _shareable_paths(config: dict, workdir: str) -> dict:
    """The config with ``data.path``/``model.path`` relative to the workdir, or the file name
    alone when outside it: report.json is shared, a home directory is not (issue 27)."""
    for section in ("data", "model"):
        path = (config.get(section) or {}).get("path")
        if path:
            rel = os.path.relpath(os.path.abspath(path), os.path.abspath(workdir))
            config[section]["path"] = rel if not rel.startswith("..") else os.path.basename(path)
    return config


def _run_stage(name: str, model, config, ctx: Context, index: int):
    # Seeded per stage: a stage trains the same whether the run was resumed before it or not.
    keras.utils.set_random_seed(config.seed + 1 + index)
    return ensure_keras2(STAGES[name].fn(model, config[name], ctx))


def _baseline_fingerprint(config) -> str:
    return fingerprint(config.seed, config.data, config.model, config.train)


def _num_classes(model) -> Optional[int]:
    """The width of a classifier's single output, if it has one of rank 2."""
    shape = model.output_shape
    return int(shape[-1]) if isinstance(shape, tuple) and len(shape) == 2 and shape[-1] else None


def _baseline(config, ctx: Context, wd: Workdir, user_model=None) -> keras.Model:
    """The trained baseline: the user's model, or a reference model trained here (cached)."""
    x_train = ctx.train[0]

    def make():
        model = user_model if user_model is not None else models.build(
            config.model.name, x_train.shape[1:], ctx.num_classes, config.model.width)
        check_stages(config, model, ctx)  # before the baseline trains
        return model if user_model is not None else ctx.fit(model, config.train.epochs)

    resumed = _is_cached(wd.baseline, _baseline_fingerprint(config))
    model = _cached(wd.baseline, _baseline_fingerprint(config), make,
                    safe_mode=not config.model.unsafe)
    if resumed:  # make() checked a new one
        check_stages(config, model, ctx)
    data_lib.check_fits(ctx.splits.test[0], model.input_shape, f"data {config.data.name!r}")
    return model


# The metrics each task's format rows hold (the rest of ``validate``'s report is the same).
_ROW_METRICS = {"classification": ("accuracy", "agreement"), "binary": ("accuracy", "agreement"),
                "regression": ("r2", "mse", "mae", "r2_drop")}


def _paired(task: str, base_outputs, outputs, y) -> dict:
    """The paired difference to the baseline on the same samples, in the task's metric:
    accuracy points (classification) or R^2 points from per-sample squared errors
    (regression), each with its 95% interval."""
    if task == "regression":
        return stats_lib.paired_regression_difference(base_outputs, outputs, y)
    if task == "binary":  # per label at the 0.5 threshold (argmax of one column is always 0)
        hit = lambda o: ((np.asarray(o).reshape(len(y), -1) > 0.5)  # noqa: E731
                         == (np.asarray(y).reshape(len(y), -1) > 0.5)).reshape(-1)
        return stats_lib.paired_difference(hit(base_outputs), hit(outputs))
    return stats_lib.paired_difference(tasks.correct(base_outputs, y), tasks.correct(outputs, y))


def _formats(config, wd: Workdir, splits, baseline, model, task: str = "classification") -> list:
    """Converts, writes and measures every mode (and the baseline float32 after stages); one
    ``results.FormatRow`` each, with the task's metrics."""
    baseline_fb = convert(baseline, "float32")  # ratios are to the baseline's float32 bytes
    reference = profiling.tflite_sizes(baseline_fb)
    x_test, y_test = splits.test
    x_val, y_val = splits.validation
    base_test, base_val = predict(baseline_fb, x_test), predict(baseline_fb, x_val)
    made = [("baseline float32", baseline_fb, baseline, None)] if config.stages else []
    _warn_unused_options(config)
    for mode in config.convert.baseline_modes if config.stages else ():  # e.g. the plain int8
        made.append((f"baseline {mode}", convert(
            baseline, mode, representative_data=splits.train[0],
            representative_samples=config.convert.representative_samples,
            options=options_from_section(mode, config.convert)), baseline, None))
    bar = console.current().progress("convert", len(config.convert.modes), unit="mode")
    for mode in config.convert.modes:
        bar.note = mode
        bar.draw(force=True)
        flatbuffer = convert(
            model, mode, representative_data=splits.train[0],
            representative_samples=config.convert.representative_samples,
            options=options_from_section(mode, config.convert),
            validation_data=splits.validation)
        _io.write_bytes(wd.flatbuffer(mode), flatbuffer)
        made.append((mode, flatbuffer, model, wd.flatbuffer(mode)))
        bar.update()
    bar.close()
    rows = []
    bar = console.current().progress("validate on LiteRT", len(made), unit="model")
    for name, flatbuffer, keras_model, path in made:
        bar.note = name
        bar.draw(force=True)
        test, validation = _measure(flatbuffer, keras_model, config, splits, task)
        conversion = conversion_info(flatbuffer)
        recipe = conversion["facts"].get("recipe")
        if recipe is not None and name in config.convert.modes:  # the quantizer's own JSON
            _io.write_text(wd.quantizer_recipe(name), json.dumps(recipe, indent=2))
        rows.append(results.FormatRow(
            format=name, test=test, validation=validation,
            vs_baseline=_paired(task, base_test, predict(flatbuffer, x_test), y_test),
            validation_vs_baseline=_paired(  # for decisions
                task, base_val, predict(flatbuffer, x_val), y_val),
            conversion=conversion, ratio=test["bytes"] / reference["bytes"],
            gzip_ratio=test["gzip_bytes"] / reference["gzip_bytes"], path=path,
            label=report_lib.row_label(name, config.stages)))
        bar.update()
    bar.close()
    return rows


def _warn_unused_options(config) -> None:
    """Says which ``convert.options`` no mode of the recipe takes (they change nothing)."""
    converted = (*config.convert.modes, *(config.convert.baseline_modes if config.stages else ()))
    for key, value in section_options(config.convert).items():
        if not any(key in mode_options(m) for m in converted):
            logging.warning("convert.options.%s=%r changes nothing: none of the modes %s takes "
                            "it; modes that do: %s", key, value, ", ".join(converted),
                            ", ".join(m for m in available_modes() if key in mode_options(m)))


def _export_android(config, wd: Workdir, android_dir: str, mode: Optional[str]) -> dict:
    """The Android bundle of one converted mode; its folder and sidecar for the report."""
    mode = mode or config.convert.modes[-1]
    flatbuffer = _litert.load_flatbuffer(wd.flatbuffer(mode))
    std = {"digits": 16.0, "image_folder": 255.0}.get(config.data.name, 1.0)
    labels = {"digits": data_lib.DIGITS_CLASSES, "keywords": data_lib.KEYWORDS_CLASSES,
              "text": data_lib.TEXT_CLASSES}.get(config.data.name)
    sidecar = android.export_android(
        flatbuffer, android_dir, labels=labels, normalization={"mean": 0.0, "std": std},
        conversion=conversion_info(flatbuffer, mode))
    return {"dir": os.path.abspath(android_dir), "mode": mode, "sidecar": sidecar}


def _profile(model) -> Optional[dict]:
    """Parameters and multiply-accumulates of a Keras model (None if its shape is not fixed)."""
    try:
        p = profiling.profile(model)
    except errors.ModelError:
        return None
    return {"params": p["params"], "macs": p["macs"]}


def _measure(flatbuffer, model, config, splits, task: str = "classification") -> tuple:
    """Test figures (the full validation report, less the ratios the runner computes against
    the baseline) and the task's validation metrics (accuracy/agreement; regression: r2, mse,
    mae, r2_drop)."""
    x_test, y_test = splits.test
    result = validate(
        flatbuffer, x_test, y_test, reference=model, task=task,
        latency_runs=config.validate.latency_runs, num_threads=config.validate.num_threads,
        compiled_model=tuple(config.validate.compiled_model),
        litert_benchmark=bool(config.validate.litert_benchmark and config.validate.latency_runs))
    x_val, y_val = splits.validation
    val = validate(flatbuffer, x_val, y_val, reference=model, latency_runs=0,
                   delegate_checks=False, task=task).to_dict()
    test = {k: v for k, v in result.to_dict().items() if k not in ("ratio", "gzip_ratio")}
    return test, {k: val.get(k) for k in _ROW_METRICS[task]}
