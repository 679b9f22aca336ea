"""The evaluation protocol the surgery benchmark shares: a stratified validation split carved
from the training data (numpy, fixed seed), fitting with the best epoch chosen on validation,
test accuracy measured once with a paired bootstrap interval, paired interleaved latency."""

import numpy as np

from tfcompress import keras, tasks
from tfcompress.export.validation import latency_ms


def validation_split(x, y, fraction: float = 0.2, seed: int = 0):
    """((x_train, y_train), (x_val, y_val)): ``fraction`` of each class to validation."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        val[idx[: int(round(len(idx) * fraction))]] = True
    train = rng.permutation(np.flatnonzero(~val))
    return (x[train], y[train]), (x[val], y[val])


def fit(model, train, val, epochs: int, lr: float, batch_size: int = 32):
    """Compiles and fits; keeps the weights of the epoch with the best validation accuracy."""
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    best = keras.callbacks.EarlyStopping("val_accuracy", patience=epochs, mode="max",
                                         restore_best_weights=True)
    history = model.fit(*train, validation_data=val, batch_size=batch_size, epochs=epochs,
                        verbose=0, callbacks=[best])
    return max(history.history["val_accuracy"])


def correct(model, x, y) -> np.ndarray:
    return tasks.correct(model.predict(x, batch_size=256, verbose=0), y)


def paired_difference(base: np.ndarray, new: np.ndarray, samples: int = 2000, seed: int = 0):
    """Accuracy points new - base on the same images, with a paired bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    diff = new.astype(np.float64) - base.astype(np.float64)
    idx = rng.integers(0, len(diff), (samples, len(diff)))
    boot = diff[idx].mean(1) * 100
    return {"points": float(diff.mean() * 100),
            "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}


def paired_latency(flatbuffers: dict, sample, repeats: int, runs: int) -> dict:
    """Median single-thread XNNPACK latency per model over interleaved rounds (order
    alternating), and for each model the median of its per-round ratio to the first one."""
    names, rounds = list(flatbuffers), {n: [] for n in flatbuffers}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            rounds[name].append(latency_ms(flatbuffers[name], sample, runs, num_threads=1))
    first = np.asarray(rounds[names[0]])
    return {n: {"median_ms": float(np.median(v)),
                "paired_ratio_median": float(np.median(np.asarray(v) / first))}
            for n, v in rounds.items()}


def summary(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}
