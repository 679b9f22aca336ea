"""Callbacks for user training loops (the stages under distribution strategies are in
test_multiworker)."""

import glob
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress import callbacks, errors, models
from tfcompress.training import pruning

from tfmot_helpers import SAMPLES, fit, small_cnn, steps_per_epoch



def _mask_sparsity_summaries(log_dir: str) -> dict:
    """{tag: [(step, value), ...]} of the ``.../sparsity`` scalars written under ``log_dir``."""
    out = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                if v.tag.endswith("/sparsity"):
                    out.setdefault(v.tag, []).append(
                        (event.step, float(tf.make_ndarray(v.tensor))))
    return out


@pytest.fixture(scope="module")
def cnn(digits):
    return small_cnn(digits)


def test_user_fit_with_all_callbacks(cnn, digits, tmp_path):
    (x, y), (xt, yt) = digits
    pruned = tfcompress.prune(cnn, 0.6, epochs=3, steps_per_epoch=steps_per_epoch())
    best = str(tmp_path / "best.keras")
    export = callbacks.TFLiteExport(str(tmp_path / "m.tflite"), "int8", x[:32],
                                    validation_data=(xt, yt), latency_runs=2)
    lines = []
    log = callbacks.CompressionLog(print_fn=lines.append)
    checkpoint = callbacks.BestStrippedCheckpoint(best, monitor="val_accuracy")
    pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    log_dir = str(tmp_path / "tb")
    history = pruned.fit(
        x[:SAMPLES], y[:SAMPLES], batch_size=32, epochs=3, validation_data=(xt, yt), verbose=0,
        callbacks=[callbacks.Pruning(log_dir=log_dir), log, checkpoint, export])
    # per-epoch figures reach History; the last epoch is at the target
    assert len(history.history["sparsity"]) == 3
    assert history.history["sparsity"][0] < history.history["sparsity"][-1]
    assert history.history["sparsity"][-1] == pytest.approx(0.6, abs=0.01)
    assert max(history.history["max_unique_weights"]) > 16
    assert len(lines) == 3 and lines[-1].startswith("epoch 3: sparsity ")
    assert float(lines[-1].split()[3].rstrip(",")) == pytest.approx(
        history.history["sparsity"][-1], abs=1e-4)
    # TensorBoard got each pruned layer's mask sparsity at every epoch's first step
    masks = _mask_sparsity_summaries(log_dir)
    assert sorted(tag.split("/")[0] for tag in masks) == sorted(
        "prune_low_magnitude_" + name for name in pruning.pruning_info(pruned)["pruned"])
    spe = steps_per_epoch()
    for tag, points in masks.items():
        assert [step for step, _ in points] == [0, spe, 2 * spe], tag
        values = [value for _, value in points]
        assert values[0] == 0.0 and values[0] < values[1] < values[2] <= 0.6 + 0.01, (tag, values)
    # the best checkpoint is a stripped model from the epoch with the best val_accuracy
    loaded = models.load_model(best)
    assert not pruning.is_pruned(loaded)
    best_epoch = int(np.argmax(history.history["val_accuracy"])) + 1
    assert checkpoint.best_epoch == best_epoch
    assert checkpoint.best == pytest.approx(max(history.history["val_accuracy"]))
    # the exporter wrote the int8 flatbuffer and its LiteRT report
    report = json.load(open(tmp_path / "m.tflite.json"))
    assert report["input_dtype"].endswith("int8") and report["accuracy"] > 0.5
    assert report["bytes"] == os.path.getsize(tmp_path / "m.tflite")
    assert export.report["agreement"] >= 0.9


def test_summaries_without_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    with pytest.raises(errors.ConfigError, match="tensorboard package is not installed"):
        callbacks.Pruning(log_dir=str(tmp_path))


def test_pruning_callback_needs_a_pruned_model(cnn, digits):
    with pytest.raises(errors.ModelError, match="tfcompress.prune"):
        fit(tfcompress.models.digits_cnn(width=0.25), digits, 1, [callbacks.Pruning()])


def test_checkpoint_monitor_missing_is_clear(cnn, digits, tmp_path):
    model = tfcompress.models.digits_cnn(width=0.25)
    with pytest.raises(errors.ConfigError, match="val_accuracy.*validation_data"):
        fit(model, digits, 1, [callbacks.BestStrippedCheckpoint(str(tmp_path / "b.keras"))])


def test_int8_export_without_calibration_data_is_refused_before_training(digits, tmp_path):
    """A float model to int8 needs calibration images: refused when fit starts (one line), not
    after the epochs; no file written."""
    model = tfcompress.models.digits_cnn(width=0.25)
    epochs = []
    marker = tfcompress.keras.callbacks.LambdaCallback(on_epoch_end=lambda e, l: epochs.append(e))
    with pytest.raises(errors.ConversionError, match="needs representative_data") as info:
        fit(model, digits, 2, [callbacks.TFLiteExport(str(tmp_path / "m.tflite"), "int8"), marker])
    assert epochs == [] and not (tmp_path / "m.tflite").exists()
    assert "\n" not in str(info.value)


def test_bad_export_mode_and_checkpoint_mode(tmp_path):
    with pytest.raises(errors.ConfigError, match="conversion mode 'int3'"):
        callbacks.TFLiteExport(str(tmp_path / "m.tflite"), "int3")
    with pytest.raises(errors.ConfigError, match="mode 'best'"):
        callbacks.BestStrippedCheckpoint(str(tmp_path / "b.keras"), mode="best")
