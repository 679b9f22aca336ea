"""Keras callbacks that add compression to a user's own ``model.fit(...)``.

    model = tfcompress.prune(model, 0.8, epochs=4, steps_per_epoch=len(x) // 32 + 1)
    model.compile(...)
    model.fit(x, y, epochs=4, validation_data=(xv, yv), callbacks=[
        tfcompress.callbacks.Pruning(log_dir="logs"),     # step update + TensorBoard sparsity
        tfcompress.callbacks.CompressionLog(),            # one line per epoch
        tfcompress.callbacks.BestStrippedCheckpoint("best.keras"),
        tfcompress.callbacks.TFLiteExport("model.tflite", "int8", x, validation_data=(xv, yv)),
    ])

``ProgressBar`` draws one line of progress instead of Keras' epoch lines (pass ``verbose=0`` to
``fit``): the recipe runner uses it when the command's console is on.

Keras' own progress bars stay as they are; ``CompressionLog`` adds its figures to the epoch's
``logs``, so they also show in the bar's epoch line and in ``History``.
"""

import json
import os
from typing import Optional

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from tfcompress import _io, errors, models, wrappers
import tfcompress._compat.tfmot as _tfmot
import tfcompress.training.clustering as clustering
import tfcompress.export.conversion as conversion
import tfcompress.export.modes as modes
import tfcompress.training.pruning as pruning
from tfcompress._compat.keras import keras
from tfcompress.export.validation import validate
from tfcompress.progress import ProgressBar  # noqa: F401  (the recipe runner's; for users too)


class Pruning(keras.callbacks.Callback):
    """tfmot's pruning step update, optional TensorBoard sparsity summaries, and a check.

    At the end of training it warns when a pruned kernel did not reach its schedule's target
    (the plan given to ``prune`` was longer than the training that ran).

    Args:
        log_dir: if set, tfmot's ``PruningSummaries`` write per-layer sparsity for TensorBoard.
        update_freq: how often summaries are written (``"epoch"`` or a batch count).
    """

    def __init__(self, log_dir: Optional[str] = None, update_freq="epoch"):
        super().__init__()
        self.log_dir, self.update_freq = log_dir, update_freq
        self._inner = [tfmot.sparsity.keras.UpdatePruningStep()]
        if log_dir:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise errors.ConfigError(
                    f"log_dir={log_dir!r} asks for TensorBoard sparsity summaries, but the "
                    "tensorboard package is not installed; accepted: `pip install tensorboard`, "
                    "or log_dir=None (tfcompress.callbacks.CompressionLog logs sparsity too)")
            self._inner.append(tfmot.sparsity.keras.PruningSummaries(
                log_dir=log_dir, update_freq=update_freq))

    def set_model(self, model):
        super().set_model(model)
        for cb in self._inner:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self._inner:
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        if not pruning.is_pruned(self.model):
            raise errors.ModelError(
                "callbacks.Pruning is for a model with pruning wrappers; build it with "
                "tfcompress.prune(model, ...) first")
        unbuilt = [l.name for l in _tfmot.collect_prunable_layers(self.model)
                   if not l.built]
        if unbuilt:
            raise errors.ModelError(
                f"pruned layers {unbuilt} are not built yet (a subclassed model builds on its "
                "first call): call the model on one batch, e.g. model(x[:1]), before fit")
        for cb in self._inner:
            cb.on_train_begin(logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self._inner:
            cb.on_train_batch_begin(batch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self._inner:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self._inner:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self._inner:
            cb.on_train_end(logs)
        target = pruning.pruning_info(self.model).get("schedule", {}).get("target_sparsity")
        if target is None or pruning.pruning_info(self.model).get("m_by_n"):
            return
        names = pruning.pruning_info(self.model)["pruned"]
        reached = pruning.sparsity_report(self.model)["layers"]
        short = {n: round(reached[n], 4) for n in names if reached.get(n, 1) < target - 0.01}
        if short:
            logging.warning("pruning target %.2f not reached by %s: train for the whole plan "
                            "given to tfcompress.prune", target, short)


class CompressionLog(keras.callbacks.Callback):
    """Logs one line per epoch: global sparsity and the most distinct values in a kernel.

    Adds ``sparsity`` and ``max_unique_weights`` to the epoch's ``logs`` (so ``History``
    keeps them). Measured on the stripped weights, so it works for pruned, clustered and
    plain models.

    Args:
        every: log every this many epochs.
        print_fn: where the line goes (``print`` by default, like Keras' ``summary``;
            e.g. ``absl.logging.info``).
    """

    def __init__(self, every: int = 1, print_fn=print):
        super().__init__()
        self.every, self.print_fn = every, print_fn

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        sparsity = pruning.sparsity_report(self.model)
        uniques = (clustering.unique_weights_report(self.model)
                   if not wrappers.is_quantize_aware(self.model) else None)
        line = f"epoch {epoch + 1}: sparsity {sparsity['global']:.4f}"
        if logs is not None:
            logs["sparsity"] = sparsity["global"]
        if uniques:
            line += f", max unique weights per kernel {uniques['max']}"
            if logs is not None:
                logs["max_unique_weights"] = uniques["max"]
        self.print_fn(line)


class BestStrippedCheckpoint(keras.callbacks.Callback):
    """Saves the stripped model (wrappers removed, QAT kept) whenever ``monitor`` improves.

    The file is ready for ``tfcompress.convert``; it is written atomically.

    Args:
        filepath: a ``.keras`` or ``.h5`` path (use ``.h5`` for QAT models).
        monitor: a ``logs`` key, e.g. ``val_accuracy`` or ``val_loss``.
        mode: ``max``, ``min`` or ``auto`` (``min`` for keys with "loss", else ``max``).
    """

    def __init__(self, filepath: str, monitor: str = "val_accuracy", mode: str = "auto"):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise errors.ConfigError(errors.unknown("mode", mode, ("auto", "min", "max")))
        if mode == "auto":
            mode = "min" if "loss" in monitor else "max"
        self.filepath, self.monitor, self.mode = os.fspath(filepath), monitor, mode
        self.best = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise errors.ConfigError(
                f"BestStrippedCheckpoint monitors {self.monitor!r} but the logs hold "
                f"{sorted(logs or {})}; pass validation_data to fit for val_* keys")
        better = self.best is None or (value > self.best if self.mode == "max" else
                                       value < self.best)
        if better:
            from tfcompress.training.clustering import strip

            self.best, self.best_epoch = float(value), epoch + 1
            models.save_model(strip(self.model), self.filepath)
            logging.info("epoch %d: %s %.4f, saved the stripped model to %s",
                         epoch + 1, self.monitor, value, self.filepath)


class TFLiteExport(keras.callbacks.Callback):
    """At the end of training: strip, convert to ``mode``, write the ``.tflite`` and validate.

    Writes ``path`` and, with ``validation_data``, ``<path>.json`` holding the LiteRT
    validation report (accuracy, agreement with the Keras model, sizes, latency).

    Args:
        path: the ``.tflite`` file to write.
        mode: a ``tfcompress.convert`` mode (``float32``, ``float16``, ``int8``, ...).
        representative_data: calibration images for integer modes.
        validation_data: ``(x, y)`` to validate the flatbuffer on.
        latency_runs: latency repetitions in the report.
    """

    def __init__(self, path: str, mode: str = "int8", representative_data=None, *,
                 validation_data=None, latency_runs: int = 10):
        super().__init__()
        if mode not in conversion.available_modes():
            raise errors.ConfigError(
                errors.unknown("conversion mode", mode, conversion.available_modes()))
        self.path, self.mode = os.fspath(path), mode
        self.representative_data = representative_data
        self.validation_data = validation_data
        self.latency_runs = latency_runs
        self.report = None

    def on_train_begin(self, logs=None):
        """Refuses now, not after training, a mode the model cannot convert to without
        calibration data (a quantize-aware model carries its own ranges)."""
        if (self.representative_data is None and modes.get(self.mode).needs_representative_data
                and not wrappers.is_quantize_aware(self.model)):
            raise errors.ConversionError(
                f"TFLiteExport mode {self.mode!r} needs representative_data (calibration "
                "images) for a model that is not quantize-aware; accepted: "
                "TFLiteExport(path, mode, representative_data=x_train[:200]) or a float mode")

    def on_train_end(self, logs=None):
        model = wrappers.strip(self.model)
        flatbuffer = conversion.convert(model, self.mode,
                                        representative_data=self.representative_data)
        _io.write_bytes(self.path, flatbuffer)
        if self.validation_data is not None:
            x, y = self.validation_data
            self.report = validate(flatbuffer, np.asarray(x), np.asarray(y), reference=model,
                                   latency_runs=self.latency_runs).to_dict()
            _io.write_text(self.path + ".json",
                           json.dumps(self.report, indent=2, sort_keys=True, default=str))
        logging.info("wrote %s (%s, %d bytes)", self.path, self.mode, len(flatbuffer))
