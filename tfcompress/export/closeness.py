"""Which candidate flatbuffer is closest to the float model on validation samples: the choice
``convert(..., recovery=True)`` makes among min-max, the recovered weights and label-free QAT.

Agreement on a few dozen held-out images moves by whole images (1 of 25 is 4 points), so for a
classification output it decides only where two candidates differ beyond chance (McNemar's exact
test on the samples they decide differently, at ``ALPHA``). Otherwise the lower mean squared
output difference decides: it is continuous, and on fer's faces it ranked min-max and label-free
QAT as their agreement on the other fold did (4 of 4; ``benchmarks/finetune_fer.py``) where the
check's agreement on 25 faces had kept the worse one.
"""

import numpy as np

from tfcompress import errors
import tfcompress.tasks as tasks_lib
from tfcompress._compat.keras import keras
from tfcompress.export.validation import predict, predict_by_name

ALPHA = 0.05
"""A candidate whose agreement is lower than another's at this two-sided significance (McNemar's
exact test) is not kept, whatever its output error."""


def choose(model: keras.Model, candidates: dict, x, y=None, task=None) -> dict:
    """Which flatbuffer of ``candidates`` (name -> bytes, e.g. ``recovered``, ``finetuned``,
    ``min_max``; the first wins a tie) to keep, by its outputs on validation samples ``x``
    (labels ``y`` only tell the task): among those whose agreement with the float model is not
    lower than another's beyond chance (``decides_worse``; regression: all), the one with the
    lowest mean squared output difference. Several outputs: ``_choose_outputs``. ``task``: one
    task, or {output name: task}, for outputs whose labels do not tell it (else inferred).

    Returns:
        ``{"validation": {name: {"output_error", "agreement"}}, "kept": name, "task": task}``.
    """
    if len(model.outputs) > 1:
        return _choose_outputs(model, candidates, x, y, task)
    reference = model.predict(x, verbose=0)
    task = tasks_lib.infer(y, reference, tasks_lib.of_output(task, model.output_names[0]))
    scores, alike = {}, {}
    for name, flatbuffer in candidates.items():
        out = predict(flatbuffer, x)
        scores[name] = {"output_error": _finite(
            np.mean(np.square(np.asarray(out, np.float64) - reference)))}
        if task != "regression":
            alike[name] = tasks_lib.decided_alike(out, reference, task).ravel()
            scores[name]["agreement"] = float(np.mean(alike[name]))
    eligible = [n for n in candidates
                if not any(decides_worse(alike[n], alike[m]) for m in alike)] if alike \
        else list(candidates)
    kept = min(eligible, key=lambda n: scores[n]["output_error"])
    return {"validation": scores, "kept": kept, "task": task}


def decides_worse(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> bool:
    """Whether candidate ``a`` agrees with the reference less often than ``b`` beyond chance:
    ``a``'s and ``b``'s per-sample agreement (booleans on the same samples), McNemar's exact
    test on the samples only one of them decides alike, two-sided at ``alpha``."""
    only_b = int(np.sum(b & ~a))
    only_a = int(np.sum(a & ~b))
    if only_b <= only_a:
        return False
    from scipy import stats  # loaded when a check runs, not on import
    return stats.binomtest(only_a, only_a + only_b, 0.5).pvalue < alpha


def _closeness(out: np.ndarray, reference: np.ndarray, task: str) -> float:
    """One output's closeness to the reference's, higher is closer, about [0, 1] for every task:
    agreement (classification/binary) or R^2 of the outputs against the reference's
    (regression)."""
    if task == "regression":
        return float(np.nan_to_num(tasks_lib.regression(out, reference)["r2"], nan=0.0))
    return tasks_lib.agreement(out, reference, task)


def _choose_outputs(model: keras.Model, candidates: dict, x, y=None, task=None) -> dict:
    """``choose`` for a model with several outputs: each output's task (from its labels,
    a list in the model's output order or a dict by name, and its outputs) and closeness
    (``outputs_closeness``); the flatbuffer with the higher mean closeness over the outputs is
    kept (then the lower mean squared output difference)."""
    names = list(model.output_names)
    references = dict(zip(names, (np.asarray(r) for r in model.predict(x, verbose=0))))
    tasks = output_tasks(references, y, task)
    scores = {kind: outputs_closeness(flatbuffer, x, references, tasks)
              for kind, flatbuffer in candidates.items()}
    kept = max(scores, key=lambda k: (scores[k]["closeness"], -scores[k]["output_error"]))
    return {"validation": scores, "kept": kept, "task": "multi-output"}


def output_tasks(references: dict, y=None, task=None) -> dict:
    """{output name: task} of a model with several outputs (``references``: {name: outputs}, in
    the model's order): ``task``'s (one task, or {name: task}) where it names one, else inferred
    from each output's labels (``y``: a list in that order, a dict by name, or None) and its
    outputs.

    Raises:
        DataError: a list of labels whose length is not the number of outputs.
    """
    names = list(references)
    labels = ([y.get(n) for n in names] if isinstance(y, dict)
              else list(y) if isinstance(y, (list, tuple)) else [None] * len(names))
    if len(labels) != len(names):
        raise errors.DataError(
            f"validation_data has {len(labels)} label arrays for {len(names)} outputs "
            f"({', '.join(names)}); accepted: one per output, a list or a dict by name")
    return {n: tasks_lib.infer(l, references[n], tasks_lib.of_output(task, n))
            for n, l in zip(names, labels)}


def outputs_closeness(flatbuffer: bytes, x, references: dict, tasks: dict) -> dict:
    """How close a flatbuffer's outputs on ``x`` are to ``references`` ({output name: outputs}),
    output by output with its task (``tasks``, ``output_tasks``; ``_closeness``).

    Returns:
        ``{"closeness": mean over outputs, "output_error": mean over outputs of the mean squared
        difference (inf if not finite), "outputs": {name: {"task", "closeness",
        "output_error"}}}``.
    """
    names = list(references)
    named = predict_by_name(flatbuffer, x)
    outs = ([named[n] for n in names] if sorted(named) == sorted(names)
            else list(named.values()))  # the flatbuffer's order where names differ
    outs = [np.asarray(o).reshape(references[n].shape) for o, n in zip(outs, names)]
    closeness = [_closeness(o, references[n], tasks[n]) for o, n in zip(outs, names)]
    errors_ = [float(np.mean(np.square(o - references[n]))) for o, n in zip(outs, names)]
    return {"closeness": float(np.mean(closeness)),
            "output_error": _finite(np.mean(errors_)),
            "outputs": {n: {"task": tasks[n], "closeness": c, "output_error": e}
                        for n, c, e in zip(names, closeness, errors_)}}


def _finite(error) -> float:
    """A mean squared error as a float, inf where it is not finite (a candidate whose outputs
    overflowed is never the closest)."""
    error = float(error)
    return error if np.isfinite(error) else float("inf")
