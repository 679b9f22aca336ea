"""What a model's output means (its task) and the one place its metrics are computed.

A task is ``classification`` (one class per sample: integer or one-hot labels, softmax or
logits), ``binary`` (sigmoid outputs, one or several independent 0/1 labels: binary and
multi-label) or ``regression`` (float targets). ``infer`` reads it from the labels and the
model's output; every caller lets the user override it (``task=``). A model with several outputs
has one task per output.

Every figure the toolkit prints about outputs comes from here: ``top1`` (accuracy),
``agreement`` (between two models' outputs), ``regression`` (MSE, MAE, R^2), ``metrics`` (the
task's figures against labels and against a reference), ``score`` (the task's one
higher-is-better figure, for budgets and keep-or-not decisions) and ``fidelity`` (how close two
models' outputs are, for recovery's check).
"""

from typing import Optional, Sequence, Union

import numpy as np

from tfcompress import errors

TASKS = ("classification", "binary", "regression")
# The headline figure of each task, higher is better, as ``score`` computes it.
PRIMARY = {"classification": "accuracy", "binary": "accuracy", "regression": "r2"}


def check(task: str) -> str:
    """``task`` if it is one of ``TASKS``.

    Raises:
        ConfigError: any other value.
    """
    if task not in TASKS:
        raise errors.ConfigError(errors.unknown("task", task, TASKS))
    return task


def of_output(task, name: str) -> Optional[str]:
    """The task ``task`` gives output ``name``: None (inferred), one task for every output, or
    ``{output name: task}`` (None for an output it does not name); checked."""
    one = task.get(name) if isinstance(task, dict) else task
    return None if one is None else check(one)


def is_whole(y: np.ndarray) -> bool:
    """Whether every label is a whole number (class indices, 0/1)."""
    return y.dtype.kind in "biu" or bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))


def infer(y=None, outputs=None, task: Optional[str] = None) -> str:
    """The task of one output, from its labels and/or the model's outputs.

    Rules, first match wins: ``task`` when given; labels that are not whole numbers ->
    regression; one whole-number label per output row (or per position of a 3-D output) ->
    classification for an output wider than one column, else binary (0/1) or regression;
    labels of the output's shape -> classification (one-hot rows), binary (other 0/1 rows) or
    regression. Without labels: a one-column output in [0, 1] -> binary, else regression; a
    wider one whose rows sum to 1 -> classification, in [0, 1] -> binary, else
    classification (logits). The last axis holds the classes.

    Args:
        y: labels or targets (N,) or (N, K), or None.
        outputs: the model's outputs for the same samples (N, K), or None.
        task: an explicit task (checked), which wins.

    Raises:
        ConfigError: an unknown ``task``.
        DataError: neither labels nor outputs, or non-numeric labels.
    """
    if task is not None:
        return check(task)
    if outputs is not None:
        outputs = np.asarray(outputs)
        if outputs.ndim < 2:
            outputs = outputs.reshape(len(outputs), 1)
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise errors.DataError(f"labels have dtype {y.dtype}; accepted: numbers")
        if not is_whole(y):
            return "regression"
        zero_one = bool(np.isin(y, (0, 1)).all())
        if outputs is not None and y.size * outputs.shape[-1] == outputs.size:
            # one label per row (or per position) of the output
            if outputs.shape[-1] > 1:
                return "classification"
            return "binary" if zero_one else "regression"
        columns = y.shape[-1] if y.ndim > 1 else 1
        if columns == 1:
            return "classification"  # integer class indices (no output to tell otherwise)
        one_hot = zero_one and bool(np.all(y.sum(-1) == 1))
        return "classification" if one_hot else ("binary" if zero_one else "regression")
    if outputs is None:
        raise errors.DataError("cannot infer the task without labels or outputs; accepted: "
                               f"task= one of {', '.join(TASKS)}")
    width = outputs.shape[-1]
    flat = outputs.reshape(-1, width).astype(np.float64)
    unit = bool(np.all((flat >= 0) & (flat <= 1)))
    if width == 1:
        return "binary" if unit else "regression"
    if unit and np.allclose(flat.sum(-1), 1.0, atol=0.02):  # an int8 softmax's rows: within 0.02
        return "classification"
    return "binary" if unit else "classification"


def top1(outputs, y) -> float:
    """Top-1 accuracy: the share of samples (or positions) whose highest output is the label
    (the mean of ``correct``).

    Args:
        outputs: scores (N, K) or (N, ..., K) (probabilities or logits; classes last).
        y: integer labels, one per row (N,) / (N, 1) / (N, ...), or one-hot rows shaped like
            ``outputs``.

    Raises:
        DataError: labels that fit neither form.
    """
    return float(np.mean(correct(outputs, y)))


def correct(outputs, y) -> np.ndarray:
    """Per sample (or position, flattened), whether the highest output is the label: the
    paired outcomes two models' accuracies are compared on. Labels as for ``top1``.

    Raises:
        DataError: labels that fit neither form.
    """
    outputs = np.asarray(outputs)
    if outputs.ndim < 2:
        outputs = outputs.reshape(len(outputs), 1)
    y = np.asarray(y)
    predicted = outputs.argmax(-1).reshape(-1)
    if y.size == predicted.size:
        labels = y.reshape(-1)
    elif y.shape == outputs.shape:
        labels = y.argmax(-1).reshape(-1)
    else:
        raise errors.DataError(
            f"labels of shape {y.shape} do not fit outputs of shape {outputs.shape}; accepted: "
            "one class index per row or one-hot rows of the output's shape")
    return predicted == labels


def agreement(outputs, reference, task: str = "classification") -> float:
    """The share of samples (classification) or labels (binary) two models decide alike.

    Raises:
        DataError: for a regression task (it has no decisions; use ``regression``).
    """
    return float(np.mean(decided_alike(outputs, reference, task)))


def decided_alike(outputs, reference, task: str = "classification") -> np.ndarray:
    """Per sample (classification: the top class) or per label (binary: the 0.5 threshold),
    whether two models decide alike: ``agreement`` is its mean.

    Raises:
        DataError: for a regression task.
    """
    a, b = np.asarray(outputs, np.float32), np.asarray(reference, np.float32)
    if task == "classification":
        return a.argmax(-1) == b.argmax(-1)
    if task == "binary":
        return (a > 0.5) == (b > 0.5)
    raise errors.DataError(f"agreement is not defined for task {task!r}; accepted: "
                           "classification, binary (regression reports mse, mae, r2)")


def binary_accuracy(outputs, y) -> float:
    """The share of 0/1 labels a sigmoid output (threshold 0.5) gets right."""
    a = np.asarray(outputs, np.float32).reshape(len(outputs), -1)
    return float(np.mean((a > 0.5) == (np.asarray(y).reshape(len(a), -1) > 0.5)))


def regression(outputs, y) -> dict:
    """{"mse", "mae", "r2"} of outputs against float targets (R^2 over all target columns)."""
    a = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    t = np.asarray(y, np.float64).reshape(len(a), -1)
    err = a - t
    var = float(np.mean(np.square(t - t.mean(0))))
    mse = float(np.mean(np.square(err)))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))),
            "r2": 1.0 - mse / var if var > 0 else float("nan")}


def output_error(outputs, reference) -> dict:
    """{"max_abs_diff", "mean_abs_diff"} between two models' outputs of the same shape."""
    diff = np.abs(np.asarray(outputs, np.float32) - np.asarray(reference, np.float32))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


def metrics(outputs, task: str, y=None, reference=None) -> dict:
    """The task's figures for one output.

    classification/binary: ``accuracy`` (with labels), ``agreement`` (with a reference);
    regression: ``mse``, ``mae``, ``r2`` (with targets) and, with a reference, the reference's
    ``reference_r2`` against the same targets and ``r2_drop``; always, with a reference, the
    output error (``max_abs_diff``, ``mean_abs_diff``). Keys a task does not have are absent.
    """
    check(task)
    out = {}
    if y is not None:
        if task == "regression":
            out.update(regression(outputs, y))
        else:
            out["accuracy"] = top1(outputs, y) if task == "classification" else binary_accuracy(
                outputs, y)
    if reference is not None:
        if task == "regression":
            if y is not None:
                out["reference_r2"] = regression(reference, y)["r2"]
                out["r2_drop"] = out["reference_r2"] - out["r2"]
        else:
            out["agreement"] = agreement(outputs, reference, task)
        out.update(output_error(outputs, reference))
    return out


def score(outputs, y, task: str) -> float:
    """The task's one higher-is-better figure against labels: accuracy, or R^2 (regression)."""
    check(task)
    if task == "regression":
        return regression(outputs, y)["r2"]
    return top1(outputs, y) if task == "classification" else binary_accuracy(outputs, y)


def per_output(tasks: Union[str, Sequence[Optional[str]], None], count: int) -> list:
    """``tasks`` as one entry (a task name or None: infer) per output of ``count``.

    Raises:
        ConfigError: a list of another length, or an unknown task name.
    """
    if tasks is None or isinstance(tasks, str):
        return [tasks] * count
    tasks = list(tasks)
    if len(tasks) != count:
        raise errors.ConfigError(
            f"task= names {len(tasks)} tasks for {count} outputs; accepted: one task, or one "
            "per output")
    return [None if t is None else check(t) for t in tasks]
