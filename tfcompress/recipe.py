"""Recipe runner: ml_collections config -> data, model -> stages -> convert -> validate -> report.

The runner only chains the stages; each stage is a ``model -> model`` function of its own
module. A killed run resumes: the trained baseline and each stage's output are saved in the
workdir under a fingerprint of the config that made them, and reused when it matches.
"""

import dataclasses
import hashlib
import json
import os
from typing import Callable, Optional

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from tfcompress import _io
from tfcompress import data as data_lib
from tfcompress import errors
from tfcompress import lowbit
from tfcompress import models
from tfcompress import profile
from tfcompress import report as report_lib
from tfcompress._keras import ensure_keras2, keras
from tfcompress.convert import available_modes, conversion_info, convert
from tfcompress.validate import load_flatbuffer, validate

DATA_NAMES = ("digits", "npz", "image_folder")


def default_config() -> ConfigDict:
    """Every field a recipe may set, with its default. Unknown fields are an error."""
    c = ConfigDict()
    c.seed = 0
    c.data = ConfigDict(dict(
        name="digits",  # digits | npz | image_folder
        path="",  # .npz file or image folder
        image_size=(32, 32),  # image_folder, or any data with resize=True
        color_mode="rgb",  # image_folder, or any data with resize=True: rgb | grayscale
        resize=False,  # digits/npz: resize to image_size and color_mode (e.g. for MobileNetV2)
        limit=0,  # use at most this many train and test samples (0: all)
    ))
    c.model = ConfigDict(dict(
        name="digits_cnn",  # a models.MODEL_NAMES builder, trained by the recipe
        path="",  # or a user's trained .keras / .h5 / SavedModel, used as the baseline
        width=1.0,  # width multiplier of the reference model
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
    ))
    c.validate = ConfigDict(dict(latency_runs=50, num_threads=1))
    for name, defaults in _STAGE_DEFAULTS.items():
        c[name] = ConfigDict(defaults)
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
    bad = [m for m in merged.convert.modes if m not in available_modes()]
    if bad:
        raise errors.ConfigError(errors.unknown("conversion mode", bad[0], available_modes()))
    if "mixed" in merged.convert.modes and not merged.convert.size_budget > 0:
        raise errors.ConfigError(
            f"mode 'mixed' needs convert.size_budget > 0, got {merged.convert.size_budget!r}; "
            "accepted: a ratio to the float32 bytes in (0, 1] or a byte count > 1")
    try:
        lowbit.parse_overrides(merged.convert.overrides)
    except errors.ConversionError as e:
        raise errors.ConfigError(f"convert.overrides: {e}") from e
    if merged.data.name not in DATA_NAMES:
        raise errors.ConfigError(errors.unknown("data.name", merged.data.name, DATA_NAMES))
    return merged


@dataclasses.dataclass
class Context:
    """What a stage may use besides the model: the data, the recipe, a fit helper."""

    config: ConfigDict
    splits: data_lib.Splits
    workdir: str
    stats: dict = dataclasses.field(default_factory=dict)  # stage name -> measured figures

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.splits[0][0])
        return int(np.ceil(n / self.config.train.batch_size))

    def fit(self, model, epochs: int, *, learning_rate: Optional[float] = None,
            callbacks=(), loss=None):
        """Compiles ``model`` and fits it on the training split for ``epochs``."""
        (x, y), _ = self.splits
        train = self.config.train
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate or train.learning_rate),
            loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=train.from_logits),
            metrics=["accuracy"],
        )
        if epochs:
            model.fit(x, y, batch_size=train.batch_size, epochs=epochs,
                      callbacks=list(callbacks), verbose=2)
        return model

    def accuracy(self, model) -> float:
        (_, _), (x, y) = self.splits
        return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


# A stage: (model, its config section, context) -> model, fine-tuned and ready for the next.
# Stages register themselves from their own modules (importing tfcompress imports them all).
STAGES: dict[str, Callable] = {}
_STAGE_DEFAULTS: dict[str, dict] = {}
# File suffix of a stage's saved output where .keras cannot hold it (tfmot QAT models load
# back only from .h5); the stage's module sets it.
STAGE_SUFFIX: dict[str, str] = {}


def stage(name: str, **defaults):
    """Registers a recipe stage ``fn(model, section, ctx) -> model`` under ``name``.

    ``defaults`` become the recipe section ``config.<name>``: every field the stage accepts.
    """
    def register(fn):
        STAGES[name] = fn
        _STAGE_DEFAULTS[name] = defaults
        return fn
    return register


def load_data(config: ConfigDict) -> data_lib.Splits:
    d = config.data
    if d.name == "digits":
        splits = data_lib.load_digits(seed=config.seed)
    elif d.name == "npz":
        splits = data_lib.load_npz(d.path)
    else:
        splits, _ = data_lib.load_image_folder(
            d.path, d.image_size, color_mode=d.color_mode, seed=config.seed)
    if d.limit:
        splits = tuple((x[: d.limit], y[: d.limit]) for x, y in splits)
    if d.resize and d.name != "image_folder":
        splits = tuple((data_lib.resize_images(x, d.image_size, d.color_mode), y)
                       for x, y in splits)
    return splits


def _fingerprint(*sections) -> str:
    text = json.dumps([s.to_dict() if isinstance(s, ConfigDict) else s for s in sections],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached(path: str, fingerprint: str, make: Callable[[], keras.Model]) -> keras.Model:
    """Loads the model at ``path`` if it was made from the same config, else makes and saves it."""
    stamp = path + ".fingerprint"
    if os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == fingerprint:
        logging.info("resuming from %s", path)
        return models.load_model(path)
    model = make()
    models.save_model(model, path)
    _io.write_text(stamp, fingerprint)
    return model


def run_recipe(config, workdir: str, *, android_dir: Optional[str] = None,
               android_mode: Optional[str] = None,
               after_stage: Optional[Callable[[str, keras.Model, float], None]] = None) -> dict:
    """Runs a recipe end to end and writes its outputs into ``workdir``.

    Writes ``baseline.keras``, one ``<mode>.tflite`` per conversion mode (and, for low-bit
    modes, ``<mode>.recipe.json``: the quantizer recipe), ``report.json`` and ``report.md``.
    With ``android_dir``, also an Android bundle (``android.export_android``) of
    the ``android_mode`` flatbuffer (default: the last of ``convert.modes``).
    ``after_stage(name, model, keras_test_accuracy)`` is called after each stage; whatever it
    raises ends the run there (tfcompress.search stops hopeless candidates this way).

    Returns:
        The report as a dict (also in report.json).

    Raises:
        TfcompressError: bad recipe fields, data, model files or modes.
    """
    config = check_config(config)
    if android_dir and android_mode and android_mode not in config.convert.modes:
        raise errors.ConfigError(errors.unknown("android mode", android_mode, config.convert.modes))
    os.makedirs(workdir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    splits = load_data(config)
    (x_train, y_train), (x_test, y_test) = splits
    ctx = Context(config, splits, workdir)
    num_classes = int(max(y_train.max(), y_test.max())) + 1

    def make_baseline():
        if config.model.path:
            return models.load_model(config.model.path)
        model = models.build(config.model.name, x_train.shape[1:], num_classes, config.model.width)
        return ctx.fit(model, config.train.epochs)

    fingerprint = _fingerprint(config.seed, config.data, config.model, config.train)
    model = _cached(os.path.join(workdir, "baseline.keras"), fingerprint, make_baseline)
    data_lib.check_fits(x_test, model.input_shape, f"data {config.data.name!r}")
    baseline = model
    for i, name in enumerate(config.stages):
        fingerprint = _fingerprint(fingerprint, name, config[name])
        path = os.path.join(workdir, "stages", f"{i}-{name}{STAGE_SUFFIX.get(name, '.keras')}")
        stats_before = ctx.stats.get(name)
        model = _cached(path, fingerprint,
                        lambda m=model, n=name: ensure_keras2(STAGES[n](m, config[n], ctx)))
        # A stage's measured figures are kept beside its model, so a resumed run reports them.
        if ctx.stats.get(name) is not stats_before:
            _io.write_text(path + ".stats.json", json.dumps(ctx.stats[name], default=str))
        elif os.path.exists(path + ".stats.json"):
            with open(path + ".stats.json") as f:
                ctx.stats[name] = json.load(f)
        accuracy = ctx.accuracy(model)
        logging.info("stage %s: test accuracy %.4f", name, accuracy)
        if after_stage is not None:
            after_stage(name, model, accuracy)

    # Ratios are to the uncompressed baseline's float32 flatbuffer.
    baseline_fb = convert(baseline, "float32")
    reference = profile.tflite_sizes(baseline_fb)
    rows = []
    if config.stages:
        rows.append(_measure("baseline float32", baseline_fb, baseline, config, splits))
        rows[-1]["conversion"] = conversion_info(baseline_fb, "float32")
    for mode in config.convert.modes:
        flatbuffer = convert(
            model, mode, representative_data=x_train,
            representative_samples=config.convert.representative_samples,
            options=lowbit.recipe_options(config.convert, mode))
        _io.write_bytes(os.path.join(workdir, f"{mode}.tflite"), flatbuffer)
        rows.append(_measure(mode, flatbuffer, model, config, splits))
        rows[-1]["conversion"] = conversion_info(flatbuffer, mode)
        if mode in lowbit.MODES or mode == "mixed":  # per-layer widths; the quantizer recipe
            rows[-1]["lowbit"] = lowbit.describe(flatbuffer)
            if rows[-1]["lowbit"].get("recipe") is not None:
                lowbit.save_recipe(rows[-1]["lowbit"]["recipe"],
                                   os.path.join(workdir, f"{mode}.recipe.json"))
    for row in rows:
        row["ratio"] = row["bytes"] / reference["bytes"]
        row["gzip_ratio"] = row["gzip_bytes"] / reference["gzip_bytes"]

    report = {
        "config": config.to_dict(),
        "keras_accuracy": {"baseline": ctx.accuracy(baseline), "final": ctx.accuracy(model)},
        "stages": ctx.stats,
        "formats": rows,
        "profile": {"baseline": _profile(baseline), "final": _profile(model)},
    }
    if android_dir:
        report["android"] = _export_android(config, workdir, android_dir, android_mode)
    report_lib.write(report, workdir)
    return report


def _export_android(config, workdir: str, android_dir: str, mode: Optional[str]) -> dict:
    """The Android bundle of one converted mode; its folder and sidecar for the report."""
    from tfcompress import android

    mode = mode or config.convert.modes[-1]
    flatbuffer = load_flatbuffer(os.path.join(workdir, f"{mode}.tflite"))
    std = {"digits": 16.0, "image_folder": 255.0}.get(config.data.name, 1.0)
    labels = data_lib.DIGITS_CLASSES if config.data.name == "digits" else None
    sidecar = android.export_android(
        flatbuffer, android_dir, labels=labels, normalization={"mean": 0.0, "std": std},
        conversion=conversion_info(flatbuffer, mode))
    return {"dir": os.path.abspath(android_dir), "mode": mode, "sidecar": sidecar}


def _profile(model) -> Optional[dict]:
    """Parameters and multiply-accumulates of a Keras model (None if its shape is not fixed)."""
    try:
        p = profile.profile(model)
    except errors.ModelError:
        return None
    return {"params": p["params"], "macs": p["macs"]}


def _measure(name, flatbuffer, model, config, splits) -> dict:
    (_, _), (x_test, y_test) = splits
    result = validate(
        flatbuffer, x_test, y_test, reference=model,
        latency_runs=config.validate.latency_runs, num_threads=config.validate.num_threads)
    return {"format": name, **result.to_dict()}
